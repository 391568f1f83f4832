/* Unit tests for src/cri/volumes.c: ContainerConfig.mounts and .devices built in C against
 * a temporary directory of real files, directories, symlinks (kubelet's ConfigMap layout
 * among them), a FIFO, a unix socket, a character device (/dev/null) and a block device
 * node. Good requests, each refusal with the exact field in its message, the limits, and
 * hostile strings; the SAN build checks that nothing leaks, refused or not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/common/util.h"
#include "../../src/cri/limits.h"
#include "../../src/cri/volumes.h"

#define MAXN 24

static char g_dir[PATH_MAX];  /* the temporary directory, resolved */
static char g_blk[PATH_MAX + 16];  /* a block device node */
static bool g_blk_own;        /* made here by mknod, so a second node of it can be made */
static char *g_pool[1024];    /* the strings at() made */
static size_t g_n_pool;

/* g_dir/name, kept until the end. */
static char *at(const char *name)
{
	assert_true(g_n_pool < sizeof(g_pool) / sizeof(g_pool[0]));
	char *s = uk_strf("%s/%s", g_dir, name);
	assert_non_null(s);
	return g_pool[g_n_pool++] = s;
}

/* An absolute path of len bytes, a '/' before every comp bytes of 'x', malloc'd. */
static char *long_path(size_t len, size_t comp)
{
	char *s = malloc(len + 1);
	assert_non_null(s);
	for (size_t k = 0; k < len; k++)
		s[k] = k % (comp + 1) == 0 ? '/' : 'x';
	s[len] = '\0';
	return s;
}

/* ---- the temporary tree ---- */

static void make_file(const char *name, const char *text)
{
	FILE *f = fopen(at(name), "we");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void make_link(const char *target, const char *name)
{
	assert_int_equal(symlink(target, at(name)), 0);
}

static void make_socket(const char *name)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	const char *path = at(name);
	assert_true(strlen(path) < sizeof(a.sun_path));
	strcpy(a.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	close(fd); /* the socket file stays */
}

/* A block device node: made here (root), else the first one in /dev. */
static void find_block_device(void)
{
	struct stat st;
	snprintf(g_blk, sizeof(g_blk), "%s/blk", g_dir);
	if (mknod(g_blk, S_IFBLK | 0600, makedev(7, 0)) == 0) {
		g_blk_own = true;
		return;
	}
	DIR *d = opendir("/dev");
	assert_non_null(d);
	for (struct dirent *e; (e = readdir(d));) {
		snprintf(g_blk, sizeof(g_blk), "/dev/%s", e->d_name);
		if (lstat(g_blk, &st) == 0 && S_ISBLK(st.st_mode)) {
			closedir(d);
			return;
		}
	}
	closedir(d);
	fail_msg("no block device node: mknod failed and /dev has none");
}

static int setup(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/test_cri_volumes-XXXXXX";
	if (!mkdtemp(tmpl) || !realpath(tmpl, g_dir))
		return -1;
	/* dir/, file, symlinks to both, a dangling one, a FIFO, a socket, disk images. */
	assert_int_equal(mkdir(at("dir"), 0755), 0);
	assert_int_equal(mkdir(at("dir/sub"), 0755), 0);
	make_file("file", "127.0.0.1 localhost\n");
	make_link("dir", "link-dir");
	make_link("file", "link-file");
	make_link("nowhere", "dangling");
	assert_int_equal(mkfifo(at("fifo"), 0644), 0);
	make_socket("sock");
	make_link("sock", "link-sock");
	for (int i = 0; i <= CRI_VOL_DEVICES_MAX; i++) {
		char name[32];
		snprintf(name, sizeof(name), "disk%d.img", i);
		make_file(name, "");
	}
	make_link("disk0.img", "link-disk0");
	/* kubelet's atomic writer: cm/..2024_x/key, cm/..data -> ..2024_x, cm/key -> ..data/key */
	assert_int_equal(mkdir(at("cm"), 0755), 0);
	assert_int_equal(mkdir(at("cm/..2024_x"), 0755), 0);
	make_file("cm/..2024_x/key", "value\n");
	make_link("..2024_x", "cm/..data");
	make_link("..data/key", "cm/key");
	/* A symlink inside a read-write tree that points out of it: accepted, the 9p server
	 * never follows it on the host (volumes.c). */
	make_link("/etc", "dir/escape");
	find_block_device();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	uk_error err = { 0 };
	int r = uk_rm_rf(g_dir, &err);
	for (size_t i = 0; i < g_n_pool; i++)
		free(g_pool[i]);
	return r;
}

/* ---- requests ---- */

struct req {
	Runtime__V1__ContainerConfig c;
	Runtime__V1__Mount m[MAXN], *mp[MAXN];
	Runtime__V1__Device d[MAXN], *dp[MAXN];
	Runtime__V1__IDMapping idm, *idmp[1];
	Runtime__V1__ImageSpec img;
};

static void req_init(struct req *q)
{
	memset(q, 0, sizeof(*q));
	runtime__v1__container_config__init(&q->c);
	q->c.mounts = q->mp;
	q->c.devices = q->dp;
	runtime__v1__idmapping__init(&q->idm);
	q->idmp[0] = &q->idm;
	runtime__v1__image_spec__init(&q->img);
}

static Runtime__V1__Mount *mnt(struct req *q, const char *cpath, const char *hpath, bool ro)
{
	assert_true(q->c.n_mounts < MAXN);
	Runtime__V1__Mount *m = &q->m[q->c.n_mounts];
	runtime__v1__mount__init(m);
	m->container_path = (char *)cpath;
	m->host_path = (char *)hpath;
	m->readonly = ro;
	q->mp[q->c.n_mounts++] = m;
	return m;
}

static Runtime__V1__Device *dev(struct req *q, const char *cpath, const char *hpath, const char *perm)
{
	assert_true(q->c.n_devices < MAXN);
	Runtime__V1__Device *d = &q->d[q->c.n_devices];
	runtime__v1__device__init(d);
	d->container_path = (char *)cpath;
	d->host_path = (char *)hpath;
	d->permissions = (char *)perm;
	q->dp[q->c.n_devices++] = d;
	return d;
}

static void accepted(struct req *q, struct cri_volumes *v)
{
	uk_error err = { 0 };
	int r = cri_volumes_parse(&q->c, v, &err);
	if (r < 0)
		fail_msg("refused (%d): %s", r, err.msg);
}

/* Refused with -code, the message holding needle, nothing handed out. */
static void refused_msg(struct req *q, int code, const char *needle)
{
	struct cri_volumes v;
	uk_error err = { 0 };
	memset(&v, 0xa5, sizeof(v)); /* must be reset */
	assert_int_equal(cri_volumes_parse(&q->c, &v, &err), -code);
	if (!strstr(err.msg, needle))
		fail_msg("\"%s\" does not contain \"%s\"", err.msg, needle);
	assert_true(strlen(err.msg) < 400); /* quoted values are cut */
	assert_null(v.mounts);
	assert_null(v.devices);
	assert_int_equal(v.n_mounts, 0);
	assert_int_equal(v.n_devices, 0);
}

static void refused(struct req *q, const char *needle)
{
	refused_msg(q, EINVAL, needle);
}

/* ---- good requests ---- */

static void kubelet_pod(void **state)
{
	(void)state;
	struct req q;
	struct cri_volumes v;
	req_init(&q);
	mnt(&q, "/etc/hosts", at("file"), false);
	mnt(&q, "/dev/termination-log", at("link-file"), false);
	mnt(&q, "/var/run/secrets/kubernetes.io/serviceaccount/", at("cm"), true);
	mnt(&q, "/etc/config", at("cm"), true)->selinux_relabel = true;
	mnt(&q, "//data/./sub//", at("link-dir"), false);
	mnt(&q, "/data/sub/inner", at("dir/sub/"), false);
	dev(&q, "/dev/xvda", at("disk0.img"), "rw");
	dev(&q, "/dev/xvdb", g_blk, "r");
	dev(&q, "/dev/xvdc", at("disk1.img"), "");
	dev(&q, "/dev/xvdd", at("disk2.img"), "mrw");
	dev(&q, "/dev/xvde", at("disk3.img"), "rm");
	accepted(&q, &v);

	assert_int_equal(v.n_mounts, 6);
	struct {
		const char *cpath, *hpath;
		bool ro, dflt;
		enum cri_vol_kind kind;
	} want[] = {
		{ "/etc/hosts", "file", false, true, CRI_VOL_FILE },
		{ "/dev/termination-log", "file", false, true, CRI_VOL_FILE },
		{ "/var/run/secrets/kubernetes.io/serviceaccount", "cm", true, true, CRI_VOL_DIR },
		{ "/etc/config", "cm", true, false, CRI_VOL_DIR },
		{ "/data/sub", "dir", false, false, CRI_VOL_DIR },
		{ "/data/sub/inner", "dir/sub", false, false, CRI_VOL_DIR },
	};
	for (size_t i = 0; i < v.n_mounts; i++) {
		assert_string_equal(v.mounts[i].container_path, want[i].cpath);
		assert_string_equal(v.mounts[i].host_path, at(want[i].hpath)); /* symlinks resolved */
		assert_int_equal(v.mounts[i].readonly, want[i].ro);
		assert_int_equal(v.mounts[i].kubelet_default, want[i].dflt);
		assert_int_equal(v.mounts[i].kind, want[i].kind);
	}
	assert_int_equal(v.n_devices, 5);
	char blk[PATH_MAX];
	assert_non_null(realpath(g_blk, blk));
	assert_string_equal(v.devices[0].host_path, at("disk0.img"));
	assert_string_equal(v.devices[1].host_path, blk);
	assert_string_equal(v.devices[1].container_path, "/dev/xvdb");
	bool ro[] = { false, true, false, false, true }, block[] = { false, true, false, false, false };
	for (size_t i = 0; i < v.n_devices; i++) {
		assert_int_equal(v.devices[i].readonly, ro[i]);
		assert_int_equal(v.devices[i].block, block[i]);
	}
	cri_volumes_free(&v);
	assert_null(v.mounts);
	cri_volumes_free(&v);   /* twice is fine */
	cri_volumes_free(NULL);
}

static void nothing_asked(void **state)
{
	(void)state;
	struct req q;
	struct cri_volumes v;
	uk_error err = { 0 };
	req_init(&q);
	accepted(&q, &v);
	assert_null(v.mounts);
	assert_null(v.devices);
	assert_int_equal(v.n_mounts + v.n_devices, 0);
	assert_int_equal(cri_volumes_parse(NULL, &v, &err), -EINVAL);
	assert_string_equal(err.msg, "config is required");
}

/* ---- limits ---- */

static void counts(void **state)
{
	(void)state;
	struct req q;
	struct cri_volumes v;
	char cpath[CRI_VOL_MOUNTS_MAX + 1][32];
	char *disk[CRI_VOL_DEVICES_MAX + 1];
	req_init(&q);
	for (int i = 0; i < CRI_VOL_MOUNTS_MAX; i++) {
		snprintf(cpath[i], sizeof(cpath[i]), "/m%d", i);
		mnt(&q, cpath[i], at("dir"), i % 2);
	}
	for (int i = 0; i < CRI_VOL_DEVICES_MAX; i++) {
		char name[32];
		snprintf(name, sizeof(name), "disk%d.img", i);
		disk[i] = at(name);
		dev(&q, cpath[i], disk[i], "rw"); /* the same paths as the mounts: refused below */
	}
	refused(&q, "config.devices[0].container_path \"/m0\" is also config.mounts[0]'s");
	for (int i = 0; i < CRI_VOL_DEVICES_MAX; i++)
		q.d[i].container_path = (char *)at(cpath[i] + 1); /* "/tmp/.../m0": unique */
	accepted(&q, &v);
	assert_int_equal(v.n_mounts, CRI_VOL_MOUNTS_MAX);
	assert_int_equal(v.n_devices, CRI_VOL_DEVICES_MAX);
	cri_volumes_free(&v);

	snprintf(cpath[CRI_VOL_MOUNTS_MAX], sizeof(cpath[0]), "/m%d", CRI_VOL_MOUNTS_MAX);
	mnt(&q, cpath[CRI_VOL_MOUNTS_MAX], at("dir"), false);
	refused_msg(&q, E2BIG, "config.mounts has 17 items, at most 16");
	q.c.n_mounts--;
	dev(&q, "/dev/x17", at("disk16.img"), "rw");
	refused_msg(&q, E2BIG, "config.devices has 17 items, at most 16");
}

/* ---- paths ---- */

/* Each bad path, as container_path then host_path of mount 1 and device 1 (item 0 is good
 * each time, so the index is checked too). */
static void bad_path_everywhere(const char *path, const char *why)
{
	char want[256];
	static const char *const fields[] = { "mounts[1].container_path", "mounts[1].host_path",
					      "devices[1].container_path", "devices[1].host_path" };
	for (size_t f = 0; f < 4; f++) {
		struct req q;
		req_init(&q);
		mnt(&q, "/ok", at("dir"), false);
		mnt(&q, f == 0 ? path : "/ok2", f == 1 ? path : at("dir"), false);
		dev(&q, "/dev/ok", at("disk0.img"), "rw");
		dev(&q, f == 2 ? path : "/dev/ok2", f == 3 ? path : at("disk1.img"), "rw");
		snprintf(want, sizeof(want), "config.%s", fields[f]);
		refused(&q, want);
		refused(&q, why);
	}
}

static void paths(void **state)
{
	(void)state;
	bad_path_everywhere("", "is required");
	bad_path_everywhere(NULL, "is required");
	bad_path_everywhere("relative/path", "\"relative/path\" is not an absolute path");
	bad_path_everywhere("/a/../b", "\"/a/../b\" has a \"..\" component");
	bad_path_everywhere("/..", "has a \"..\" component");
	bad_path_everywhere("/a/..", "has a \"..\" component");
	bad_path_everywhere("/a/b\nc", "\"/a/b?c\" holds a control character at byte 4");
	bad_path_everywhere("/\x01", "holds a control character at byte 1");
	bad_path_everywhere("/\x7f", "holds a control character");
	bad_path_everywhere("/a\tb", "holds a control character");
	bad_path_everywhere("/\033[2J", "holds a control character");

	/* Too long: one byte past CRI_PATH_MAX, and a hostile MiB; a component past NAME_MAX. */
	char *lng = long_path(CRI_PATH_MAX + 1, NAME_MAX), *huge = long_path(1 << 20, NAME_MAX);
	char *comp = long_path(NAME_MAX + 2, NAME_MAX + 1);
	bad_path_everywhere(lng, "is longer than 4095 bytes");
	bad_path_everywhere(huge, "is longer than 4095 bytes");
	bad_path_everywhere(comp, "has a component longer than 255 bytes");
	free(lng);
	free(huge);
	free(comp);

	/* A container path of exactly CRI_PATH_MAX bytes, components of NAME_MAX: taken. Names
	 * that only look like "..": taken. */
	char *max = long_path(CRI_PATH_MAX, NAME_MAX);
	struct req q;
	struct cri_volumes v;
	req_init(&q);
	mnt(&q, max, at("dir"), false);
	mnt(&q, "/a..b/..c/d../...", at("dir"), false);
	accepted(&q, &v);
	assert_string_equal(v.mounts[0].container_path, max);
	assert_string_equal(v.mounts[1].container_path, "/a..b/..c/d../...");
	cri_volumes_free(&v);
	free(max);

	/* A host path that would resolve, but says "..": refused all the same. */
	req_init(&q);
	mnt(&q, "/x", at("dir/../file"), false);
	refused(&q, "config.mounts[0].host_path");
	refused(&q, "has a \"..\" component");
}

static void container_paths_unique(void **state)
{
	(void)state;
	struct req q;
	req_init(&q);
	mnt(&q, "/data", at("dir"), false);
	mnt(&q, "/data/", at("cm"), true);
	refused(&q, "config.mounts[1].container_path \"/data\" is also config.mounts[0]'s");
	q.m[1].container_path = "//data/.";
	refused(&q, "config.mounts[1].container_path \"/data\" is also config.mounts[0]'s");

	req_init(&q);
	mnt(&q, "/a", at("dir"), false);
	dev(&q, "/dev/a", at("disk0.img"), "rw");
	dev(&q, "/dev/./a", at("disk1.img"), "rw");
	refused(&q, "config.devices[1].container_path \"/dev/a\" is also config.devices[0]'s");

	static const char *const roots[] = { "/", "//", "/./", "/." };
	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		req_init(&q);
		mnt(&q, roots[i], at("dir"), false);
		refused(&q, "config.mounts[0].container_path is \"/\": a volume cannot cover the guest's root");
		req_init(&q);
		dev(&q, roots[i], at("disk0.img"), "rw");
		refused(&q, "config.devices[0].container_path is \"/\"");
	}
}

/* ---- what a host path may be ---- */

static void mount_host_types(void **state)
{
	(void)state;
	struct {
		const char *host; /* NULL: the block device */
		const char *why;
	} bad[] = {
		{ "missing", "does not exist" },
		{ "dangling", "does not exist (or a symlink on the way dangles)" },
		{ "missing/below", "does not exist" },
		{ "file/below", "cannot be resolved: Not a directory" },
		{ "fifo", "is a FIFO: a mount takes a directory or a regular file" },
		{ "sock", "is a socket: a mount takes a directory or a regular file" },
		{ "link-sock", "is a socket" },
		{ "/dev/null", "\"/dev/null\" is a character device: a mount takes a directory or a regular file" },
		{ NULL, "is a block device: a mount takes" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct req q;
		req_init(&q);
		mnt(&q, "/ok", at("dir"), false);
		const char *h = !bad[i].host ? g_blk : bad[i].host[0] == '/' ? bad[i].host : at(bad[i].host);
		mnt(&q, "/bad", h, false);
		refused(&q, "config.mounts[1].host_path");
		refused(&q, bad[i].why);
	}
	/* The symlink the socket is reached through is resolved: the message names the socket. */
	struct req q;
	req_init(&q);
	mnt(&q, "/bad", at("link-sock"), false);
	char want[PATH_MAX + 32];
	snprintf(want, sizeof(want), "\"%s\" is a socket", at("sock"));
	refused(&q, want);
}

static void refused_features(void **state)
{
	(void)state;
	struct req q;
	static const struct {
		int v;
		const char *why;
	} prop[] = {
		{ RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER,
		  "config.mounts[1].propagation PROPAGATION_HOST_TO_CONTAINER is not supported" },
		{ RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL,
		  "config.mounts[1].propagation PROPAGATION_BIDIRECTIONAL is not supported" },
		{ 7, "config.mounts[1].propagation (unknown value) is not supported" },
	};
	for (size_t i = 0; i < sizeof(prop) / sizeof(prop[0]); i++) {
		req_init(&q);
		mnt(&q, "/ok", at("dir"), false);
		mnt(&q, "/p", at("dir"), false)->propagation = prop[i].v;
		refused(&q, prop[i].why);
		refused(&q, "only PROPAGATION_PRIVATE");
	}
	req_init(&q);
	Runtime__V1__Mount *m = mnt(&q, "/p", at("dir"), false);
	m->n_uidmappings = 1;
	m->uidmappings = q.idmp;
	refused(&q, "config.mounts[0].uidMappings is not supported");
	m->n_uidmappings = 0;
	m->n_gidmappings = 1;
	m->gidmappings = q.idmp;
	refused(&q, "config.mounts[0].gidMappings is not supported");
	m->n_gidmappings = 0;
	m->recursive_read_only = true;
	m->readonly = true;
	refused(&q, "config.mounts[0].recursive_read_only is not supported");
	m->recursive_read_only = false;
	m->image = &q.img;
	q.img.image = "docker.io/library/busybox:latest";
	refused(&q, "config.mounts[0].image is not supported");
	q.img.image = "";
	struct cri_volumes v;
	accepted(&q, &v); /* an empty ImageSpec is no image */
	cri_volumes_free(&v);
	m->image_sub_path = "sub";
	refused(&q, "config.mounts[0].image_sub_path is not supported");
	/* The refusals come before the host path is looked at. */
	m->image_sub_path = "";
	m->propagation = RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL;
	m->host_path = at("missing");
	refused(&q, "propagation PROPAGATION_BIDIRECTIONAL");
}

/* ---- devices ---- */

static void device_host_types(void **state)
{
	(void)state;
	struct req q;
	static const struct {
		const char *host, *why;
	} bad[] = {
		{ "dir", "is a directory: a device takes a block device or a regular file (a disk image)" },
		{ "link-dir", "is a directory" },
		{ "fifo", "is a FIFO: a device takes" },
		{ "sock", "is a socket: a device takes" },
		{ "/dev/null", "\"/dev/null\" is a character device: a device takes" },
		{ "missing", "does not exist" },
		{ "dangling", "does not exist" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		req_init(&q);
		mnt(&q, "/m", at("dir"), false);
		dev(&q, "/dev/ok", at("disk0.img"), "rw");
		dev(&q, "/dev/bad", bad[i].host[0] == '/' ? bad[i].host : at(bad[i].host), "rw");
		refused(&q, "config.devices[1].host_path");
		refused(&q, bad[i].why);
	}

	/* The same disk twice: by a symlink, and by a second node of the same block device. */
	req_init(&q);
	dev(&q, "/dev/a", at("disk0.img"), "rw");
	dev(&q, "/dev/b", at("disk1.img"), "r");
	dev(&q, "/dev/c", at("link-disk0"), "r");
	refused(&q, "config.devices[2].host_path");
	refused(&q, "is the disk of config.devices[0] too: a disk is attached once");
	if (g_blk_own) {
		char *twin = at("blk-twin");
		assert_int_equal(mknod(twin, S_IFBLK | 0600, makedev(7, 0)), 0);
		req_init(&q);
		dev(&q, "/dev/a", g_blk, "r");
		dev(&q, "/dev/b", twin, "r");
		refused(&q, "config.devices[1].host_path");
		refused(&q, "is the disk of config.devices[0] too");
	}
}

static void device_permissions(void **state)
{
	(void)state;
	static const struct {
		const char *perm;
		bool ro;
	} good[] = { { "", false }, { "rwm", false }, { "mwr", false }, { "rw", false }, { "r", true }, { "rm", true } };
	static const struct {
		const char *perm, *why;
	} bad[] = {
		{ "x", "\"x\" must be letters of \"rwm\", each at most once" },
		{ "rwx", "must be letters of \"rwm\"" },
		{ "rr", "\"rr\" must be letters of \"rwm\", each at most once" },
		{ "R", "must be letters of \"rwm\"" },
		{ "r\n", "\"r?\" must be letters" },
		{ "w", "\"w\" lacks 'r': a disk the guest cannot read cannot be attached" },
		{ "m", "lacks 'r'" },
		{ "wm", "lacks 'r'" },
	};
	struct req q;
	struct cri_volumes v;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		req_init(&q);
		dev(&q, "/dev/a", at("disk0.img"), good[i].perm);
		accepted(&q, &v);
		assert_int_equal(v.devices[0].readonly, good[i].ro);
		cri_volumes_free(&v);
	}
	req_init(&q);
	dev(&q, "/dev/a", at("disk0.img"), NULL); /* as "" */
	accepted(&q, &v);
	assert_false(v.devices[0].readonly);
	cri_volumes_free(&v);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		req_init(&q);
		dev(&q, "/dev/a", at("disk0.img"), "r");
		dev(&q, "/dev/b", at("disk1.img"), bad[i].perm);
		refused(&q, "config.devices[1].permissions");
		refused(&q, bad[i].why);
	}
	/* A long hostile value stops at its first repeat; its quote is cut. */
	char *junk = calloc(1, 1 << 16);
	assert_non_null(junk);
	memset(junk, 'r', (1 << 16) - 1);
	req_init(&q);
	dev(&q, "/dev/a", at("disk0.img"), junk);
	refused(&q, "config.devices[0].permissions \"rrrr");
	refused(&q, "...\" must be letters");
	free(junk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(kubelet_pod),
		cmocka_unit_test(nothing_asked),
		cmocka_unit_test(counts),
		cmocka_unit_test(paths),
		cmocka_unit_test(container_paths_unique),
		cmocka_unit_test(mount_host_types),
		cmocka_unit_test(refused_features),
		cmocka_unit_test(device_host_types),
		cmocka_unit_test(device_permissions),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
