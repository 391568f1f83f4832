/* Unit tests for src/store/image_format.c (urunc and containerDisk layouts, in fake
 * rootfs directories) and src/store/overlay.c (qcow2 overlays; the qemu-img tests are
 * skipped when /usr/bin/qemu-img is missing). Each test works in its own mkdtemp
 * directory, removed in teardown. */
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "common/util.h"
#include "store/image_format.h"
#include "store/overlay.h"

struct fx {
	char dir[64];
	char rootfs[96];
};

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/uk-test-imgfmt-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->rootfs, sizeof(f->rootfs), "%s/rootfs", f->dir);
	if (mkdir(f->rootfs, 0755) < 0)
		return -1;
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	int r = uk_rm_rf(f->dir, NULL);
	free(f);
	return r;
}

/* rootfs/rel with data (parents made). */
static void put(struct fx *f, const char *rel, const void *data, size_t len)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", f->rootfs, rel);
	char *slash = strrchr(p, '/');
	*slash = '\0';
	assert_int_equal(uk_mkdir_p(p, 0755, NULL), 0);
	*slash = '/';
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(uk_write_all(fd, data, len), 0);
	close(fd);
}

static void put_text(struct fx *f, const char *rel, const char *text)
{
	put(f, rel, text, strlen(text));
}

static void put_link(struct fx *f, const char *rel, const char *target)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", f->rootfs, rel);
	assert_int_equal(symlink(target, p), 0);
}

/* The canonical host path of rootfs/rel. */
static char *host(struct fx *f, const char *rel)
{
	static char out[PATH_MAX];
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", f->rootfs, rel);
	assert_non_null(realpath(p, out));
	return out;
}

static json_object *J(const char *text)
{
	json_object *j = json_tokener_parse(text);
	assert_non_null(j);
	return j;
}

static int detect(struct fx *f, const char *annotations, const char *config,
		  struct image_format *ret, uk_error *err)
{
	_cleanup_json_ json_object *a = annotations ? J(annotations) : NULL;
	_cleanup_json_ json_object *c = config ? J(config) : NULL;
	memset(err, 0, sizeof(*err));
	memset(ret, 0, sizeof(*ret));
	return image_format_detect(a, c, f->rootfs, ret, err);
}

static void assert_msg(const uk_error *err, const char *needle)
{
	if (!strstr(err->msg, needle))
		fail_msg("message \"%s\" lacks \"%s\"", err->msg, needle);
}

#define U "com.urunc.unikernel."

/* ---- urunc ---- */

static void urunc_annotations(void **state)
{
	struct fx *f = *state;
	put_text(f, "unikernel/kernel", "ELF");
	put_text(f, "unikernel/initrd", "cpio");
	put_text(f, "block.img", "ext2");
	struct image_format fmt;
	uk_error err;
	int r = detect(f, "{\"" U "unikernelType\":\"unikraft\",\"" U "hypervisor\":\"qemu\","
			  "\"" U "binary\":\"/unikernel/kernel\",\"" U "cmdline\":\"/chttp -p 80\","
			  "\"" U "initrd\":\"unikernel//./initrd\",\"" U "block\":\"/block.img\","
			  "\"org.opencontainers.image.title\":\"x\"}",
		       NULL, &fmt, &err);
	if (r)
		fail_msg("%s", err.msg);
	assert_string_equal(fmt.kind, IMAGE_FORMAT_URUNC);
	assert_string_equal(fmt.kernel, host(f, "unikernel/kernel"));
	assert_string_equal(fmt.initrd, host(f, "unikernel/initrd"));
	assert_string_equal(fmt.block, host(f, "block.img"));
	assert_string_equal(fmt.cmdline, "/chttp -p 80");
	assert_string_equal(fmt.unikernel_type, "unikraft");
	assert_string_equal(fmt.hypervisor, "qemu");
	assert_null(fmt.disk);
	assert_null(fmt.disk_format);
	image_format_clear(&fmt);
	image_format_clear(&fmt); /* twice is fine */

	/* the minimum: binary only; empty values count as unset */
	r = detect(f, "{\"" U "binary\":\"unikernel/kernel\",\"" U "initrd\":\"\"}", NULL, &fmt, &err);
	assert_int_equal(r, 0);
	assert_string_equal(fmt.cmdline, "");
	assert_null(fmt.initrd);
	assert_null(fmt.unikernel_type);
	image_format_clear(&fmt);
}

static void urunc_labels_and_precedence(void **state)
{
	struct fx *f = *state;
	put_text(f, "a", "A");
	put_text(f, "b", "B");
	struct image_format fmt;
	uk_error err;
	/* labels in config.Labels; annotations without a binary do not count */
	int r = detect(f, "{\"" U "unikernelType\":\"rumprun\"}",
		       "{\"architecture\":\"amd64\",\"config\":{\"Labels\":{\"" U "binary\":\"/b\","
		       "\"" U "hypervisor\":\"qemu\"}}}",
		       &fmt, &err);
	if (r)
		fail_msg("%s", err.msg);
	assert_string_equal(fmt.kernel, host(f, "b"));
	assert_string_equal(fmt.hypervisor, "qemu");
	assert_null(fmt.unikernel_type); /* sources are not mixed */
	image_format_clear(&fmt);

	/* annotations win over labels */
	r = detect(f, "{\"" U "binary\":\"/a\"}", "{\"config\":{\"Labels\":{\"" U "binary\":\"/b\"}}}",
		   &fmt, &err);
	assert_int_equal(r, 0);
	assert_string_equal(fmt.kernel, host(f, "a"));
	image_format_clear(&fmt);

	/* Labels at the top level, and null Labels */
	r = detect(f, NULL, "{\"Labels\":{\"" U "binary\":\"/b\"}}", &fmt, &err);
	assert_int_equal(r, 0);
	assert_string_equal(fmt.kernel, host(f, "b"));
	image_format_clear(&fmt);
	assert_int_equal(detect(f, NULL, "{\"config\":{\"Labels\":null}}", &fmt, &err), -ENOEXEC);

	/* urunc keys but no binary anywhere */
	assert_int_equal(detect(f, "{\"" U "unikernelType\":\"unikraft\"}", NULL, &fmt, &err),
			 -ENOEXEC);
	assert_msg(&err, U "binary");
	assert_msg(&err, "annotation");
}

static char *b64(const char *s)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = strlen(s);
	char *o = malloc(n / 3 * 4 + 8), *p = o;
	const unsigned char *u = (const unsigned char *)s;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t w = (uint32_t)u[i] << 16 | (i + 1 < n ? (uint32_t)u[i + 1] << 8 : 0) |
			     (i + 2 < n ? u[i + 2] : 0);
		*p++ = t[w >> 18 & 63];
		*p++ = t[w >> 12 & 63];
		*p++ = i + 1 < n ? t[w >> 6 & 63] : '=';
		*p++ = i + 2 < n ? t[w & 63] : '=';
	}
	*p = '\0';
	return o;
}

static void urunc_json(void **state)
{
	struct fx *f = *state;
	put_text(f, "unikernel/redis.hvt", "ELF");
	_cleanup_free_ char *bin = b64("/unikernel/redis.hvt");
	_cleanup_free_ char *cmd = b64("redis-server /data/conf/redis.conf");
	_cleanup_free_ char *typ = b64("rumprun");
	_cleanup_free_ char *hv = b64("qemu");
	_cleanup_free_ char *one = b64("ab"); /* one '=' of padding */
	char doc[1024];
	snprintf(doc, sizeof(doc),
		 "{\"" U "binary\":\"%s\",\"" U "cmdline\":\"%s\",\"" U "unikernelType\":\"%s\","
		 "\"" U "hypervisor\":\"%s\",\"" U "blkMntPoint\":\"%s\"}",
		 bin, cmd, typ, hv, one);
	put_text(f, "urunc.json", doc);
	struct image_format fmt;
	uk_error err;
	int r = detect(f, "{}", "{\"config\":{}}", &fmt, &err);
	if (r)
		fail_msg("%s", err.msg);
	assert_string_equal(fmt.kind, "urunc");
	assert_string_equal(fmt.kernel, host(f, "unikernel/redis.hvt"));
	assert_string_equal(fmt.cmdline, "redis-server /data/conf/redis.conf");
	assert_string_equal(fmt.unikernel_type, "rumprun");
	assert_string_equal(fmt.hypervisor, "qemu");
	image_format_clear(&fmt);

	/* not base64 */
	put_text(f, "urunc.json", "{\"" U "binary\":\"/unikernel/redis.hvt\"}");
	assert_int_equal(detect(f, NULL, NULL, &fmt, &err), -EINVAL);
	assert_msg(&err, "/urunc.json");
	assert_msg(&err, U "binary");
	assert_msg(&err, "base64");
	/* bad padding, NUL inside */
	put_text(f, "urunc.json", "{\"" U "binary\":\"YQ=a\"}");
	assert_int_equal(detect(f, NULL, NULL, &fmt, &err), -EINVAL);
	put_text(f, "urunc.json", "{\"" U "binary\":\"YQBi\"}"); /* "a\0b" */
	assert_int_equal(detect(f, NULL, NULL, &fmt, &err), -EINVAL);
	/* not JSON, trailing data, not an object, not strings */
	put_text(f, "urunc.json", "{\"" U "binary\":");
	assert_int_equal(detect(f, NULL, NULL, &fmt, &err), -EINVAL);
	assert_msg(&err, "JSON");
	put_text(f, "urunc.json", "{} {}");
	assert_int_equal(detect(f, NULL, NULL, &fmt, &err), -EINVAL);
	put_text(f, "urunc.json", "[1]");
	assert_int_equal(detect(f, NULL, NULL, &fmt, &err), -EINVAL);
	put_text(f, "urunc.json", "{\"" U "binary\":7}");
	assert_int_equal(detect(f, NULL, NULL, &fmt, &err), -EINVAL);
	assert_msg(&err, "not a string");
	/* too big */
	char *big = malloc(URUNC_JSON_MAX + 2);
	memset(big, ' ', URUNC_JSON_MAX + 1);
	big[0] = '{';
	big[URUNC_JSON_MAX] = '}';
	big[URUNC_JSON_MAX + 1] = '\0';
	put_text(f, "urunc.json", big);
	free(big);
	assert_int_equal(detect(f, NULL, NULL, &fmt, &err), -EFBIG);
	/* annotations with a binary: urunc.json is not even read */
	assert_int_equal(detect(f, "{\"" U "binary\":\"/unikernel/redis.hvt\"}", NULL, &fmt, &err), 0);
	image_format_clear(&fmt);
	/* a symlink urunc.json pointing outside */
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/urunc.json", f->rootfs);
	unlink(p);
	put_link(f, "urunc.json", "/etc/hostname");
	assert_int_equal(detect(f, NULL, NULL, &fmt, &err), -EPERM);
}

static void urunc_bad_values(void **state)
{
	struct fx *f = *state;
	put_text(f, "real/kernel", "ELF");
	put_link(f, "inside", "real/kernel");
	put_link(f, "abs", "/etc/passwd");
	put_link(f, "up", "../../../../../../etc/passwd");
	put_link(f, "absin", "/real/kernel"); /* absolute, even pointing inside: refused */
	put_link(f, "dirlink", "real");
	struct image_format fmt;
	uk_error err;

	/* a symlink that stays inside is followed, and the result is the real file */
	assert_int_equal(detect(f, "{\"" U "binary\":\"/inside\"}", NULL, &fmt, &err), 0);
	assert_string_equal(fmt.kernel, host(f, "real/kernel"));
	image_format_clear(&fmt);
	assert_int_equal(detect(f, "{\"" U "binary\":\"/dirlink/kernel\"}", NULL, &fmt, &err), 0);
	assert_string_equal(fmt.kernel, host(f, "real/kernel"));
	image_format_clear(&fmt);

	static const struct {
		const char *doc, *needle;
		int r;
	} bad[] = {
		{ "{\"" U "binary\":\"../../etc/passwd\"}", "escapes", -EPERM },
		{ "{\"" U "binary\":\"/real/../../x\"}", "escapes", -EPERM },
		{ "{\"" U "binary\":\"/abs\"}", "leaves", -EPERM },
		{ "{\"" U "binary\":\"/up\"}", "leaves", -EPERM },
		{ "{\"" U "binary\":\"/absin\"}", "leaves", -EPERM },
		{ "{\"" U "binary\":\"/etc/passwd\"}", "not found", -ENOENT },
		{ "{\"" U "binary\":\"/real\"}", "not a regular file", -EINVAL },
		{ "{\"" U "binary\":\"/\"}", "not a file path", -EINVAL },
		{ "{\"" U "binary\":\"/real/kernel/x\"}", "not found", -ENOENT },
		{ "{\"" U "binary\":\"/real/kernel\",\"" U "initrd\":\"/nope\"}", U "initrd", -ENOENT },
		{ "{\"" U "binary\":\"/real/kernel\",\"" U "block\":\"/up\"}", U "block", -EPERM },
		{ "{\"" U "binary\":\"/real/kernel\",\"" U "unikernelType\":\"uni kraft\"}",
		  U "unikernelType", -EINVAL },
		{ "{\"" U "binary\":\"/real/kernel\",\"" U "cmdline\":\"a\\nb\"}", "control", -EINVAL },
		{ "{\"" U "binary\":[\"/real/kernel\"]}", "not a string", -EINVAL },
		{ "[\"" U "binary\"]", "not a JSON object", -EINVAL },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		int r = detect(f, bad[i].doc, NULL, &fmt, &err);
		if (r != bad[i].r)
			fail_msg("case %zu: %d (%s)", i, r, err.msg);
		assert_msg(&err, bad[i].needle);
		assert_null(fmt.kernel);
	}
	/* a command line at the limit and over it */
	char doc[8192];
	char line[4097];
	memset(line, 'c', sizeof(line));
	line[4095] = '\0';
	snprintf(doc, sizeof(doc), "{\"" U "binary\":\"/real/kernel\",\"" U "cmdline\":\"%s\"}", line);
	assert_int_equal(detect(f, doc, NULL, &fmt, &err), 0);
	image_format_clear(&fmt);
	line[4095] = 'c';
	line[4096] = '\0';
	snprintf(doc, sizeof(doc), "{\"" U "binary\":\"/real/kernel\",\"" U "cmdline\":\"%s\"}", line);
	assert_int_equal(detect(f, doc, NULL, &fmt, &err), -EINVAL);
}

/* ---- containerDisk ---- */

/* A qcow2 header: version, backing file offset, incompatible features. */
static void put_qcow2(struct fx *f, const char *rel, uint32_t version, uint64_t backing,
		      uint64_t incompat)
{
	unsigned char h[512] = { 'Q', 'F', 'I', 0xfb };
	for (int i = 0; i < 4; i++)
		h[4 + i] = (unsigned char)(version >> (24 - 8 * i));
	for (int i = 0; i < 8; i++) {
		h[8 + i] = (unsigned char)(backing >> (56 - 8 * i));
		h[72 + i] = (unsigned char)(incompat >> (56 - 8 * i));
	}
	put(f, rel, h, sizeof(h));
}

static void containerdisk(void **state)
{
	struct fx *f = *state;
	struct image_format fmt;
	uk_error err;
	put_qcow2(f, "disk/fedora.qcow2", 3, 0, 0);
	put_text(f, "disk/README", "not a disk");
	int r = detect(f, "{\"org.opencontainers.image.title\":\"fedora\"}", "{\"config\":{}}", &fmt,
		       &err);
	if (r)
		fail_msg("%s", err.msg);
	assert_string_equal(fmt.kind, IMAGE_FORMAT_CONTAINERDISK);
	assert_string_equal(fmt.disk, host(f, "disk/fedora.qcow2"));
	assert_string_equal(fmt.disk_format, "qcow2");
	assert_null(fmt.kernel);
	image_format_clear(&fmt);

	/* two disks: both named */
	char zeros[4096] = { 0 };
	put(f, "disk/extra.img", zeros, sizeof(zeros));
	assert_int_equal(detect(f, NULL, NULL, &fmt, &err), -EINVAL);
	assert_msg(&err, "extra.img and fedora.qcow2");
	assert_null(fmt.disk);

	/* a raw disk; .img holding qcow2 is qcow2 (cloud images are named so) */
	assert_int_equal(unlink(host(f, "disk/fedora.qcow2")), 0);
	assert_int_equal(detect(f, NULL, NULL, &fmt, &err), 0);
	assert_string_equal(fmt.disk_format, "raw");
	assert_string_equal(fmt.disk, host(f, "disk/extra.img"));
	image_format_clear(&fmt);
	put_qcow2(f, "disk/extra.img", 2, 0, 0);
	assert_int_equal(detect(f, NULL, NULL, &fmt, &err), 0);
	assert_string_equal(fmt.disk_format, "qcow2");
	image_format_clear(&fmt);

	/* qcow2 that names host files, or is not qcow2 at all */
	put_qcow2(f, "disk/extra.img", 3, 512, 0);
	assert_int_equal(detect(f, NULL, NULL, &fmt, &err), -EPERM);
	assert_msg(&err, "backing file");
	put_qcow2(f, "disk/extra.img", 3, 0, 1u << 2);
	assert_int_equal(detect(f, NULL, NULL, &fmt, &err), -EPERM);
	assert_msg(&err, "external data file");
	put_qcow2(f, "disk/extra.img", 9, 0, 0);
	assert_int_equal(detect(f, NULL, NULL, &fmt, &err), -EINVAL);
	assert_int_equal(unlink(host(f, "disk/extra.img")), 0);
	put(f, "disk/x.qcow2", zeros, sizeof(zeros));
	assert_int_equal(detect(f, NULL, NULL, &fmt, &err), -EINVAL);
	assert_msg(&err, "x.qcow2");
	assert_msg(&err, "not a qcow2");
	assert_int_equal(unlink(host(f, "disk/x.qcow2")), 0);

	/* a disk that is a symlink out of the rootfs, or a directory */
	put_link(f, "disk/host.raw", "/etc/hostname");
	assert_int_equal(detect(f, NULL, NULL, &fmt, &err), -EPERM);
	assert_msg(&err, "host.raw");
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/disk/host.raw", f->rootfs);
	assert_int_equal(unlink(p), 0);
	snprintf(p, sizeof(p), "%s/disk/dir.raw", f->rootfs);
	assert_int_equal(mkdir(p, 0755), 0);
	assert_int_equal(detect(f, NULL, NULL, &fmt, &err), -EINVAL);
	assert_msg(&err, "not a regular file");
}

static void containerdisk_dir_symlink(void **state)
{
	struct fx *f = *state;
	struct image_format fmt;
	uk_error err;
	/* /disk itself a symlink leaving the rootfs, to a directory that has a disk */
	char outside[PATH_MAX];
	snprintf(outside, sizeof(outside), "%s/outside", f->dir);
	assert_int_equal(mkdir(outside, 0755), 0);
	char p[PATH_MAX + 16];
	snprintf(p, sizeof(p), "%s/d.raw", outside);
	assert_int_equal(uk_write_file_atomic(p, "x", 1, 0644, NULL), 0);
	put_link(f, "disk", outside);
	assert_int_equal(detect(f, NULL, NULL, &fmt, &err), -EPERM);
	assert_msg(&err, "/disk");
}

static void nothing_runnable(void **state)
{
	struct fx *f = *state;
	struct image_format fmt;
	uk_error err;
	put_text(f, "bin/sh", "ELF");
	put_text(f, "disk/notes.txt", "no disk here");
	assert_int_equal(detect(f, "{\"a\":\"b\"}", "{\"config\":{\"Labels\":{\"x\":\"y\"}}}", &fmt,
				&err), -ENOEXEC);
	assert_msg(&err, U "binary");
	assert_msg(&err, "/urunc.json");
	assert_msg(&err, "/disk/");
	assert_msg(&err, "*.qcow2");
	assert_null(fmt.kernel);
	/* a rootfs that does not exist */
	_cleanup_json_ json_object *a = J("{}");
	assert_int_equal(image_format_detect(a, NULL, "/nonexistent/rootfs", &fmt, &err), -ENOENT);
}

static void urunc_beats_containerdisk(void **state)
{
	struct fx *f = *state;
	struct image_format fmt;
	uk_error err;
	put_text(f, "kernel", "ELF");
	put_qcow2(f, "disk/d.qcow2", 3, 0, 0);
	assert_int_equal(detect(f, "{\"" U "binary\":\"/kernel\"}", NULL, &fmt, &err), 0);
	assert_string_equal(fmt.kind, "urunc");
	assert_null(fmt.disk);
	image_format_clear(&fmt);
}

/* ---- overlays ---- */

static bool have_qemu_img(void)
{
	return access(OVERLAY_QEMU_IMG, X_OK) == 0;
}

/* Run argv and return its stdout (at most 64 KiB), or NULL when it fails. */
static char *capture(const char *const argv[])
{
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(p[1], 1);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	static char buf[65536];
	size_t len = 0;
	ssize_t n;
	while ((n = read(p[0], buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	close(p[0]);
	buf[len] = '\0';
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? buf : NULL;
}

static void overlay_on_raw_base(void **state)
{
	struct fx *f = *state;
	if (!have_qemu_img())
		skip();
	char base[128], ov[128];
	snprintf(base, sizeof(base), "%s/base.raw", f->dir);
	snprintf(ov, sizeof(ov), "%s/overlay.qcow2", f->dir);
	int fd = open(base, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 64 << 20), 0); /* 64 MiB, sparse */
	close(fd);

	uk_error err = { 0 };
	int r = overlay_create(base, "raw", ov, &err);
	if (r)
		fail_msg("%s", err.msg);
	struct stat st;
	assert_int_equal(stat(ov, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_true(st.st_size < (1 << 20));
	assert_true((uint64_t)st.st_blocks * 512 < (1 << 20));

	const char *argv[] = { OVERLAY_QEMU_IMG, "info", "--output=json", ov, NULL };
	char *out = capture(argv);
	assert_non_null(out);
	_cleanup_json_ json_object *info = J(out);
	json_object *j;
	assert_true(json_object_object_get_ex(info, "format", &j));
	assert_string_equal(json_object_get_string(j), "qcow2");
	assert_true(json_object_object_get_ex(info, "backing-filename", &j));
	assert_string_equal(json_object_get_string(j), base);
	assert_true(json_object_object_get_ex(info, "backing-filename-format", &j));
	assert_string_equal(json_object_get_string(j), "raw");
	assert_true(json_object_object_get_ex(info, "virtual-size", &j));
	assert_int_equal(json_object_get_int64(j), 64 << 20);

	/* never overwrites */
	assert_int_equal(overlay_create(base, "raw", ov, &err), -EEXIST);
	assert_msg(&err, ov);

	/* a qcow2 overlay over the overlay: a chain works too */
	char ov2[128];
	snprintf(ov2, sizeof(ov2), "%s/ov2.qcow2", f->dir);
	assert_int_equal(overlay_create(ov, "qcow2", ov2, &err), 0);
}

static void overlay_errors(void **state)
{
	struct fx *f = *state;
	char base[128], ov[128];
	snprintf(base, sizeof(base), "%s/base.raw", f->dir);
	snprintf(ov, sizeof(ov), "%s/ov.qcow2", f->dir);
	assert_int_equal(uk_write_file_atomic(base, "0123456789abcdef", 16, 0644, NULL), 0);
	uk_error err = { 0 };
	assert_int_equal(overlay_create("base.raw", "raw", ov, &err), -EINVAL);
	assert_msg(&err, "absolute");
	assert_int_equal(overlay_create(base, "vmdk", ov, &err), -EINVAL);
	assert_msg(&err, "vmdk");
	assert_int_equal(overlay_create(base, NULL, ov, &err), -EINVAL);
	assert_int_equal(overlay_create(base, "raw", "", &err), -EINVAL);
	char missing[160];
	snprintf(missing, sizeof(missing), "%s/missing.raw", f->dir);
	assert_int_equal(overlay_create(missing, "raw", ov, &err), -ENOENT);
	assert_msg(&err, "missing.raw");
	assert_int_equal(overlay_create(f->dir, "raw", ov, &err), -EINVAL);
	assert_int_equal(overlay_create_with("/nonexistent/qemu-img", base, "raw", ov, &err), -ENOENT);
	assert_msg(&err, "qemu-utils");

	/* a failing qemu-img: the overlay is removed again */
	assert_int_equal(overlay_create_with("/bin/false", base, "raw", ov, &err), -EIO);
	assert_msg(&err, "status 1");
	assert_int_equal(access(ov, F_OK), -1);

	if (!have_qemu_img())
		return;
	/* qemu-img's own complaint reaches the message: a raw file called qcow2 */
	assert_int_equal(overlay_create(base, "qcow2", ov, &err), -EIO);
	assert_msg(&err, "qemu-img exited with status 1");
	assert_msg(&err, "qcow2");
	assert_int_equal(access(ov, F_OK), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(urunc_annotations, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(urunc_labels_and_precedence, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(urunc_json, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(urunc_bad_values, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(containerdisk, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(containerdisk_dir_symlink, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(nothing_runnable, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(urunc_beats_containerdisk, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(overlay_on_raw_base, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(overlay_errors, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests_name("image_format", tests, NULL, NULL);
}
