/* Unit tests for what the guest contracts make of a container's mounts and block devices
 * (src/guest/volumes.c and each framework): the exact vfs.fstab and unikd.9p / unikd.blk
 * words, kubelet defaults left out where there is no filesystem, Solo5's block devices
 * matched by name in manifest order, the limits, and hostile paths, each error naming its
 * field. */
#include <elf.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/guest/guest.h"
#include "../../src/guest/probe.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define SA "/var/run/secrets/kubernetes.io/serviceaccount"

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

static const struct guest_binary UNIKRAFT = { .boot = GUEST_BOOT_MULTIBOOT, .unikraft = true,
					     .unikraft_version = "0.17.0", .unikraft_9pfs = true };
static const struct guest_binary LINUX = { .boot = GUEST_BOOT_BZIMAGE };
/* test_blk's manifest, with a net device between two block devices. */
static const struct guest_binary SOLO5 = {
	.boot = GUEST_BOOT_MULTIBOOT, .elf64 = true, .solo5 = true, .solo5_abi_target = 3, .solo5_abi_version = 1,
	.n_mft = 3, .mft = { { GUEST_DEV_BLOCK, "storage" }, { GUEST_DEV_NET, "service0" }, { GUEST_DEV_BLOCK, "backup" } },
};
static const struct guest_binary SOLO5_ONE = { .boot = GUEST_BOOT_MULTIBOOT, .solo5 = true, .n_mft = 1,
					      .mft = { { GUEST_DEV_BLOCK, "storage" } } };
static const struct guest_binary SOLO5_NONE = { .boot = GUEST_BOOT_MULTIBOOT, .solo5 = true };

/* What kubelet gives every pod, then a pod's own volumes. */
static const struct guest_mount POD[] = {
	{ SA, true, false, true },                       /* 0: service-account token */
	{ "/etc/hosts", false, true, true },             /* 1 */
	{ "/dev/termination-log", false, true, true },   /* 2 */
	{ "/data", false, false, false },                /* 3: emptyDir / hostPath dir */
	{ "/etc/config", true, false, false },           /* 4: ConfigMap */
	{ "/srv/app.conf", true, true, false },          /* 5: hostPath file */
};
static const char *const ARGS[] = { "hello" };

static struct guest_facts facts(const struct guest_binary *bin, const struct guest_mount *m, size_t nm,
				const struct guest_blockdev *d, size_t nd)
{
	struct guest_facts f = { .bin = bin, .mounts = m, .n_mounts = nm, .blockdevs = d, .n_blockdevs = nd };
	f.cmd.field_prefix = "config.";
	f.cmd.args = ARGS;
	f.cmd.n_args = N(ARGS);
	return f;
}

/* Resolve f: want 0, a plan; or the error -want, whose message must name n1 and n2. */
static struct guest_plan resolve(const struct guest_facts *f, int want, const char *n1, const char *n2)
{
	struct guest_plan p = { 0 };
	uk_error err = { 0 };
	int r = guest_plan_resolve(f, &p, &err);
	if (r != -want)
		fail_msg("want %d, got %d (%s)", -want, r, err.msg);
	if (n1)
		assert_contains(err.msg, n1);
	if (n2)
		assert_contains(err.msg, n2);
	return p;
}
#define resolve_ok(f) resolve((f), 0, NULL, NULL)
#define resolve_fails(f, want, n1, n2) (void)resolve((f), (want), (n1), (n2))

static void assert_fates(const struct guest_plan *p, const char *want)
{
	char got[256] = "";
	for (size_t i = 0; i < p->n_mounts; i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i ? " " : "",
			 p->mounts[i].fate == GUEST_MOUNT_TAKEN ? p->mounts[i].tag
								 : guest_mount_fate_name(p->mounts[i].fate));
	assert_string_equal(got, want);
}

static void assert_devices(const struct guest_plan *p, const char *want)
{
	static const char *const kinds[] = { "?", "block", "net", "volume" };
	char got[512] = "";
	for (size_t i = 0; i < p->n_devices; i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s:%s", i ? " " : "",
			 kinds[p->devices[i].kind], p->devices[i].name);
	assert_string_equal(got, want);
}

/* Unikraft: vfs.fstab, parents first, 0x1 for read-only, mkmp for every mount point below
 * /; a file's share at its directory; /etc/hosts gives way to the pod's /etc/config, and
 * /dev/termination-log to Unikraft's devfs. */
static void unikraft_fstab(void **state)
{
	(void)state;
	const struct guest_binary *b = &UNIKRAFT;
	struct guest_facts f = facts(b, POD, N(POD), NULL, 0);
	struct guest_plan p = resolve_ok(&f);
	assert_string_equal(p.cmdline, "vfs.fstab=[ \"ukv3:/data:9pfs:::mkmp\" \"ukv5:/srv:9pfs:0x1::mkmp\" "
				       "\"ukv4:/etc/config:9pfs:0x1::mkmp\" "
				       "\"ukv0:" SA ":9pfs:0x1::mkmp\" ] -- hello");
	assert_fates(&p, "ukv0 skipped skipped ukv3 ukv4 ukv5");
	assert_string_equal(p.mounts[5].mount_at, "/srv");
	assert_string_equal(p.mounts[5].file, "app.conf");
	assert_string_equal(p.mounts[5].why, "9p share ukv5, holding only app.conf, at /srv, read-only");
	assert_string_equal(p.mounts[3].why, "9p share ukv3 at /data, read-write");
	assert_contains(p.mounts[1].why, "kubelet default left out");
	assert_contains(p.mounts[1].why, "mounts[4] (/etc/config)");
	assert_contains(p.mounts[2].why, "devfs");
	assert_contains(p.why, "mounts: 4 as 9p shares, 2 kubelet defaults left out");
	assert_int_equal(p.n_devices, 0); /* the VM's 9p devices are the mounts' tags, not devices[] */

	/* Without the pod's /etc/config, /etc/hosts is taken (its share mounted at /etc). */
	f = facts(b, POD, 3, NULL, 0);
	p = resolve_ok(&f);
	assert_string_equal(p.cmdline, "vfs.fstab=[ \"ukv1:/etc:9pfs:::mkmp\" \"ukv0:" SA
				       ":9pfs:0x1::mkmp\" ] -- hello");
	assert_string_equal(p.mounts[1].file, "hosts");

	/* A mount over "/" (Unikraft's root is empty): first, and without mkmp. */
	static const struct guest_mount root[] = { { "/data", false, false, false }, { "/", true, false, false } };
	f = facts(b, root, N(root), NULL, 0);
	p = resolve_ok(&f);
	assert_string_equal(p.cmdline, "vfs.fstab=[ \"ukv1:/:9pfs:0x1::\" \"ukv0:/data:9pfs:::mkmp\" ] -- hello");

	/* With the environment and a static address: netdev, env.vars, vfs.fstab, --. */
	static const struct guest_net net = { .ip = "10.0.0.2", .prefix = 24, .gateway = "10.0.0.1" };
	static const struct guest_env env[] = { { "A", "1" } };
	f = facts(b, root, 1, NULL, 0);
	f.net = &net;
	f.cmd.envs = env;
	f.cmd.n_envs = 1;
	p = resolve_ok(&f);
	assert_string_equal(p.cmdline, "netdev.ip=10.0.0.2/24:10.0.0.1 env.vars=[ \"A=1\" ] "
				       "vfs.fstab=[ \"ukv0:/data:9pfs:::mkmp\" ] -- hello");
}

/* Unikraft: what it cannot take. */
static void unikraft_refusals(void **state)
{
	(void)state;
	const struct guest_binary *b = &UNIKRAFT;
	/* A user's file whose directory another mount uses: refused, naming both. */
	static const struct guest_mount clash[] = { { "/etc/conf", false, false, false },
						    { "/etc/a.conf", true, true, false } };
	struct guest_facts f = facts(b, clash, N(clash), NULL, 0);
	resolve_fails(&f, EINVAL, "config.mounts[1] (/etc/a.conf): the unikraft guest cannot take it", "mounts[0]");
	static const struct guest_mount clash2[] = { { "/etc/a.conf", true, true, false },
						     { "/etc/b.conf", true, true, false } };
	f = facts(b, clash2, N(clash2), NULL, 0);
	resolve_fails(&f, EINVAL, "config.mounts[1]", "clashes");
	static const struct guest_mount top[] = { { "/app.conf", true, true, false } };
	f = facts(b, top, N(top), NULL, 0);
	resolve_fails(&f, EINVAL, "config.mounts[0]", "the root");
	static const struct guest_mount dev[] = { { "/dev/shm", false, false, false } };
	f = facts(b, dev, N(dev), NULL, 0);
	resolve_fails(&f, EINVAL, "config.mounts[0] (/dev/shm)", "devfs");
	static const struct guest_mount colon[] = { { "/a:b", false, false, false } };
	f = facts(b, colon, N(colon), NULL, 0);
	resolve_fails(&f, EINVAL, "config.mounts[0] (/a:b)", "\":\"");

	/* A Unikraft binary without the 9pfs driver (helloworld): kubelet's mounts left out, the
	 * pod's refused; an annotation without a binary the probe knows gets them. */
	static const struct guest_binary no9p = { .boot = GUEST_BOOT_MULTIBOOT, .unikraft = true };
	f = facts(&no9p, POD, 3, NULL, 0);
	struct guest_plan q = resolve_ok(&f);
	assert_fates(&q, "skipped skipped skipped");
	assert_contains(q.mounts[0].why, "no 9pfs driver");
	assert_string_equal(q.cmdline, "-- hello");
	f = facts(&no9p, POD, 4, NULL, 0);
	resolve_fails(&f, EINVAL, "config.mounts[3] (/data): the unikraft guest cannot take it", "no 9pfs driver");
	static const struct guest_binary unknown = { .boot = GUEST_BOOT_MULTIBOOT };
	f = facts(&unknown, POD, 4, NULL, 0);
	f.urunc_type = "unikraft";
	q = resolve_ok(&f);
	assert_fates(&q, "ukv0 ukv1 skipped ukv3");

	/* An image whose own line sets vfs.fstab (an initrd root): ours follow its parameters,
	 * and the table holds 16 entries in all. */
	f = facts(b, POD, 4, NULL, 0);
	f.cmd.image_cmdline = "vfs.fstab=[ \"initrd0:/:extract:::\" ] -- app";
	struct guest_plan p = resolve_ok(&f);
	assert_string_equal(p.cmdline, "vfs.fstab=[ \"initrd0:/:extract:::\" ] vfs.fstab=[ \"ukv1:/etc:9pfs:::mkmp\" "
				       "\"ukv3:/data:9pfs:::mkmp\" \"ukv0:" SA ":9pfs:0x1::mkmp\" ] -- app hello");
	/* 15 of the image's (single words, a list opened on its first entry, a quoted last one):
	 * room for the pod's /data only; the kubelet defaults give way. */
	char img[1024] = "vfs.fstab=a:/a:9pfs vfs.fstab=[b:/b:9pfs c:/c:9pfs] vfs.fstab=[ ";
	for (int i = 0; i < 11; i++)
		snprintf(img + strlen(img), sizeof(img) - strlen(img), "x%d:/x%d:9pfs ", i, i);
	snprintf(img + strlen(img), sizeof(img) - strlen(img), "\"y:/y:9pfs]\" -- app");
	f.cmd.image_cmdline = img;
	p = resolve_ok(&f);
	assert_fates(&p, "skipped skipped skipped ukv3");
	assert_contains(p.mounts[0].why, "vfs.fstab holds 16 entries");
	/* 16: the pod's own mount does not fit. */
	snprintf(strstr(img, " -- app"), 64, " vfs.fstab=z:/z:9pfs -- app");
	resolve_fails(&f, E2BIG, "config.mounts[3] (/data): the unikraft guest cannot take it",
		      "vfs.fstab holds 16 entries");
}

/* Hostile paths: quoted as ukargparse reads them for Unikraft, %XX for Linux; refused when
 * relative, with "." or "..", control bytes, or too long; normalised otherwise. */
static void hostile_paths(void **state)
{
	(void)state;
	const struct guest_binary *uk = &UNIKRAFT, *lx = &LINUX;
	static const struct guest_mount odd[] = { { "/my dir", false, false, false },
						  { "/say\"hi\"", true, false, false },
						  { "//srv//x/", false, false, false } };
	struct guest_facts f = facts(uk, odd, N(odd), NULL, 0);
	struct guest_plan p = resolve_ok(&f);
	assert_string_equal(p.cmdline, "vfs.fstab=[ \"ukv0:/my dir:9pfs:::mkmp\" 'ukv1:/say\"hi\":9pfs:0x1::mkmp' "
				       "\"ukv2:/srv/x:9pfs:::mkmp\" ] -- hello");
	assert_string_equal(p.mounts[2].path, "/srv/x");

	static const struct guest_mount enc[] = { { "/a:b,c d%e\xc3\xa9", false, false, false } };
	f = facts(lx, enc, N(enc), NULL, 0);
	p = resolve_ok(&f);
	assert_string_equal(p.cmdline, "unikd.9p=ukv0:/a%3Ab%2Cc%20d%25e%C3%A9:rw:dir -- hello");

	static const struct {
		const char *path;
		const char *want;
	} bad[] = {
		{ "data", "config.mounts[0].container_path \"data\" is not absolute" },
		{ "", "config.mounts[0].container_path is empty" },
		{ NULL, "config.mounts[0].container_path is empty" },
		{ "/a/../etc", "holds a \".\" or \"..\" component" },
		{ "/a/./b", "holds a \".\" or \"..\" component" },
		{ "/..", "holds a \".\" or \"..\" component" },
		{ "/a\nb", "config.mounts[0].container_path holds a control byte (0x0a at 2)" },
		{ "/a\x7f", "control byte (0x7f" },
	};
	for (size_t i = 0; i < N(bad); i++) {
		struct guest_mount m = { bad[i].path, false, false, false };
		f = facts(lx, &m, 1, NULL, 0);
		resolve_fails(&f, EINVAL, bad[i].want, NULL);
	}
	char longp[GUEST_PATH_MAX + 2];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	struct guest_mount m = { longp, false, false, false };
	f = facts(lx, &m, 1, NULL, 0);
	resolve_fails(&f, EINVAL, "config.mounts[0].container_path is longer than 255 bytes", NULL);
	longp[GUEST_PATH_MAX] = '\0'; /* exactly 255: fine */
	p = resolve_ok(&f);
	assert_int_equal(strlen(p.mounts[0].path), GUEST_PATH_MAX);

	/* The same place twice (after normalisation); a file at "/"; a mount over Linux's root. */
	static const struct guest_mount twice[] = { { "/data", false, false, false }, { "/data/", true, false, false } };
	f = facts(lx, twice, N(twice), NULL, 0);
	resolve_fails(&f, EINVAL, "config.mounts[1].container_path \"/data\" is also config.mounts[0]'s", NULL);
	static const struct guest_mount rootfile[] = { { "/", false, true, false } };
	f = facts(uk, rootfile, 1, NULL, 0);
	resolve_fails(&f, EINVAL, "config.mounts[0] mounts a file at \"/\"", NULL);
	static const struct guest_mount root[] = { { "//", false, false, false } };
	f = facts(lx, root, 1, NULL, 0);
	resolve_fails(&f, EINVAL, "config.mounts[0] (/): the linux guest cannot take a mount over its root", NULL);

	/* Devices: the same checks, and Linux wants an absolute path. */
	static const struct guest_blockdev dbad[] = { { "/dev/../x", false } };
	f = facts(lx, NULL, 0, dbad, 1);
	resolve_fails(&f, EINVAL, "config.devices[0].container_path", "\"..\"");
	static const struct guest_blockdev drel[] = { { "storage", false } };
	f = facts(lx, NULL, 0, drel, 1);
	resolve_fails(&f, EINVAL, "config.devices[0].container_path \"storage\" is not absolute", NULL);
	static const struct guest_blockdev dslash[] = { { "dev/storage", false } };
	f = facts(uk, NULL, 0, dslash, 1);
	resolve_fails(&f, EINVAL, "config.devices[0].container_path \"dev/storage\" is neither absolute nor a plain name",
		      NULL);
	static const struct guest_blockdev dtwice[] = { { "/dev/a", false }, { "/dev//a", false } };
	f = facts(uk, NULL, 0, dtwice, 2);
	resolve_fails(&f, EINVAL, "config.devices[1].container_path \"/dev/a\" is also config.devices[0]'s", NULL);
	static const struct guest_blockdev dctl[] = { { "sto\trage", false } };
	f = facts(uk, NULL, 0, dctl, 1);
	resolve_fails(&f, EINVAL, "config.devices[0].container_path holds a control byte", NULL);
}

/* Linux: every mount taken, in unikd.9p (parents first); devices in unikd.blk, before the
 * environment and "--". */
static void linux_words(void **state)
{
	(void)state;
	const struct guest_binary *b = &LINUX;
	static const struct guest_blockdev devs[] = { { "/dev/xvdb", true }, { "/dev/data disk", false } };
	static const struct guest_env env[] = { { "A", "1" } };
	struct guest_facts f = facts(b, POD, N(POD), devs, N(devs));
	f.cmd.envs = env;
	f.cmd.n_envs = 1;
	struct guest_plan p = resolve_ok(&f);
	assert_string_equal(p.cmdline,
			    "unikd.9p=ukv3:/data:rw:dir,ukv1:/etc/hosts:rw:file,ukv2:/dev/termination-log:rw:file,"
			    "ukv4:/etc/config:ro:dir,ukv5:/srv/app.conf:ro:file,"
			    "ukv0:/var/run/secrets/kubernetes.io/serviceaccount:ro:dir "
			    "unikd.blk=ukd0:/dev/xvdb:ro,ukd1:/dev/data%20disk:rw A=1 -- hello");
	assert_fates(&p, "ukv0 ukv1 ukv2 ukv3 ukv4 ukv5");
	assert_string_equal(p.mounts[1].mount_at, "/etc/hosts");
	assert_string_equal(p.mounts[1].file, "hosts");
	assert_string_equal(p.mounts[1].why, "9p share ukv1, holding only hosts, bound by /init to /etc/hosts, read-write");
	assert_devices(&p, "volume:ukd0 volume:ukd1");
	assert_string_equal(p.blockdevs[1].serial, "ukd1");
	assert_int_equal(p.blockdevs[1].device, 1);
	assert_contains(p.why, "ukd0 (a CRI device)");

	/* With the image's disk and the pod's NIC: they come first. */
	static const struct guest_net net = { .ip = "10.0.0.2", .prefix = 24, .gateway = "10.0.0.1" };
	f = facts(b, NULL, 0, devs, 1);
	f.has_block_disk = true;
	f.net = &net;
	p = resolve_ok(&f);
	assert_devices(&p, "block:disk net:net volume:ukd0");
	assert_int_equal(p.blockdevs[0].device, 2);
	assert_string_equal(p.cmdline, "unikd.blk=ukd0:/dev/xvdb:ro -- hello");
}

/* Solo5 and MirageOS have no filesystem, nor has the generic path a mount contract: the
 * kubelet defaults are left out, one why each; any other mount is refused, naming it. */
static void no_filesystem(void **state)
{
	(void)state;
	static const struct guest_binary gen = { .boot = GUEST_BOOT_PVH };
	struct {
		const char *type;
		const struct guest_binary *bin;
		const char *label, *why;
	} cases[] = {
		{ NULL, &SOLO5_NONE, "solo5", "Solo5 has no filesystem" },
		{ "mirage", &SOLO5_NONE, "mirage", "Solo5 has no filesystem" },
		{ NULL, &gen, "generic", "no way to tell a kernel" },
		{ NULL, NULL, "generic", "no way to tell a kernel" },
	};
	for (size_t i = 0; i < N(cases); i++) {
		struct guest_facts f = facts(cases[i].bin, POD, 3, NULL, 0);
		f.urunc_type = cases[i].type;
		struct guest_plan p = resolve_ok(&f);
		assert_fates(&p, "skipped skipped skipped");
		assert_contains(p.mounts[2].why, "kubelet default left out: ");
		assert_contains(p.mounts[2].why, cases[i].why);
		assert_contains(p.why, "mounts: 0 as 9p shares, 3 kubelet defaults left out");
		f = facts(cases[i].bin, POD, 4, NULL, 0);
		f.urunc_type = cases[i].type;
		char want[96];
		snprintf(want, sizeof(want), "config.mounts[3] (/data): the %s guest cannot take it", cases[i].label);
		resolve_fails(&f, EINVAL, want, cases[i].why);
	}
	/* The generic path attaches CRI devices with their serials. */
	static const struct guest_blockdev devs[] = { { "/dev/vdb", true } };
	struct guest_facts f = facts(&gen, NULL, 0, devs, 1);
	struct guest_plan p = resolve_ok(&f);
	assert_devices(&p, "volume:ukd0");
}

/* Solo5: the manifest's BLOCK entries, in its order, each from the CRI device named so. */
static void solo5_blocks(void **state)
{
	(void)state;
	static const struct guest_net net = { .ip = "10.0.0.2", .prefix = 24, .gateway = "10.0.0.1" };
	const struct guest_binary *b = &SOLO5;
	static const struct guest_blockdev devs[] = { { "backup", false }, { "/dev/storage", true } };
	struct guest_facts f = facts(b, NULL, 0, devs, N(devs));
	f.net = &net;
	f.has_block_disk = true; /* left out: the devices take the block entries */
	struct guest_plan p = resolve_ok(&f);
	assert_devices(&p, "volume:storage net:service0 volume:backup");
	assert_int_equal(p.blockdevs[0].device, 2);
	assert_int_equal(p.blockdevs[1].device, 0);
	assert_string_equal(p.blockdevs[1].serial, "ukd1");
	assert_contains(p.why, "the image's block disk is left out: the container's devices take");

	/* A device the manifest does not declare; a BLOCK entry no device is named as; two
	 * devices with one name. */
	static const struct guest_blockdev extra[] = { { "backup", false }, { "/dev/storage", true }, { "/dev/other", false } };
	f.blockdevs = extra;
	f.n_blockdevs = N(extra);
	resolve_fails(&f, EINVAL, "config.devices[2] (/dev/other): the Solo5 manifest declares no block device \"other\"",
		      NULL);
	f.n_blockdevs = 1;
	resolve_fails(&f, EINVAL, "config.devices: the Solo5 manifest declares block device \"storage\"",
		      "no device is named so");
	static const struct guest_blockdev same[] = { { "/a/storage", false }, { "/b/storage", false } };
	f.blockdevs = same;
	f.n_blockdevs = N(same);
	resolve_fails(&f, EINVAL, "config.devices[1] (/b/storage) has the Solo5 name \"storage\" of config.devices[0]", NULL);

	/* Without devices, the image's disk is the BLOCK entry, as before. */
	f = facts(&SOLO5_ONE, NULL, 0, NULL, 0);
	f.has_block_disk = true;
	p = resolve_ok(&f);
	assert_devices(&p, "block:storage");
}

/* At most 16 mounts and 16 devices; every entry fits the line or the error names it. */
static void limits(void **state)
{
	(void)state;
	const struct guest_binary *uk = &UNIKRAFT, *lx = &LINUX;
	char paths[GUEST_MOUNTS_MAX + 1][GUEST_PATH_MAX + 1];
	struct guest_mount m[GUEST_MOUNTS_MAX + 1];
	struct guest_blockdev d[GUEST_BLOCKDEVS_MAX + 1];
	for (size_t i = 0; i < N(m); i++) {
		snprintf(paths[i], sizeof(paths[i]), "/v%zu", i);
		m[i] = (struct guest_mount){ paths[i], false, false, false };
		d[i] = (struct guest_blockdev){ paths[i], false };
	}
	struct guest_facts f = facts(uk, m, N(m), NULL, 0);
	resolve_fails(&f, E2BIG, "config.mounts has 17 entries; a guest takes at most 16", NULL);
	f = facts(lx, NULL, 0, d, N(d));
	resolve_fails(&f, E2BIG, "config.devices has 17 entries; a guest takes at most 16", NULL);
	f = facts(uk, m, GUEST_MOUNTS_MAX, d, GUEST_BLOCKDEVS_MAX);
	struct guest_plan p = resolve_ok(&f);
	assert_string_equal(p.mounts[15].tag, "ukv15");
	assert_string_equal(p.blockdevs[15].serial, "ukd15");
	assert_int_equal(p.n_devices, GUEST_BLOCKDEVS_MAX);
	assert_contains(p.cmdline, "\"ukv15:/v15:9pfs:::mkmp\" ] -- hello");

	/* The fstab's words count toward Unikraft's 59: "vfs.fstab=[", 16 entries, "]", "--"
	 * and 41 arguments are 60. */
	static const char *const many[41] = { "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n",
					       "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z", "A", "B",
					       "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "N", "O" };
	f = facts(uk, m, GUEST_MOUNTS_MAX, NULL, 0);
	f.cmd.args = many;
	f.cmd.n_args = 40;
	(void)resolve_ok(&f);
	f.cmd.n_args = 41;
	resolve_fails(&f, E2BIG, "config.args (with the mounts' vfs.fstab) make a Unikraft command line of 60 words", NULL);

	/* 16 long paths, each byte written %20 for Linux: past the line, naming the mount. */
	for (size_t i = 0; i < GUEST_MOUNTS_MAX; i++) {
		memset(paths[i], ' ', GUEST_PATH_MAX);
		paths[i][0] = '/';
		paths[i][1] = (char)('a' + i);
		paths[i][GUEST_PATH_MAX] = '\0';
	}
	f = facts(lx, m, GUEST_MOUNTS_MAX, NULL, 0); /* x86 Linux: COMMAND_LINE_SIZE */
	resolve_fails(&f, E2BIG, "config.mounts[5]", "makes the kernel command line longer than 2047 bytes");
	f = facts(uk, m, GUEST_MOUNTS_MAX, NULL, 0);
	resolve_fails(&f, E2BIG, "config.mounts[", "makes the kernel command line longer than 4095 bytes");
}

/* The probe marks a Unikraft binary's 9pfs driver by the name it registers ("9pfs" and its
 * NUL) in the bytes a PT_LOAD segment loads, and only those. */
static void probe_9pfs(void **state)
{
	(void)state;
	static const char text[] = "Unikraft Calypso 0.17.0\0..9pfs\0";
	struct {
		Elf64_Ehdr h;
		Elf64_Phdr ph[2];
		char load[64], other[16];
	} elf = { 0 };
	memcpy(elf.h.e_ident, ELFMAG, SELFMAG);
	elf.h.e_ident[EI_CLASS] = ELFCLASS64;
	elf.h.e_ident[EI_DATA] = ELFDATA2LSB;
	elf.h.e_ident[EI_VERSION] = EV_CURRENT;
	elf.h.e_phoff = offsetof(__typeof__(elf), ph);
	elf.h.e_phentsize = sizeof(Elf64_Phdr);
	elf.h.e_phnum = 1;
	elf.ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_offset = offsetof(__typeof__(elf), load),
				  .p_filesz = sizeof(text) };
	memcpy(elf.load, text, sizeof(text));
	struct guest_binary b;
	uk_error err = { 0 };
	assert_int_equal(guest_probe_buf((const uint8_t *)&elf, sizeof(elf), &b, &err), 0);
	assert_true(b.unikraft);
	assert_true(b.unikraft_9pfs);
	assert_non_null(strstr(b.why, "; 9pfs driver"));
	/* "9pfs" without its NUL (a longer name), or outside the loaded bytes: no driver. */
	elf.load[sizeof(text) - 2] = 'x';
	memcpy(elf.other, "9pfs", 5);
	assert_int_equal(guest_probe_buf((const uint8_t *)&elf, sizeof(elf), &b, &err), 0);
	assert_true(b.unikraft);
	assert_false(b.unikraft_9pfs);
	assert_non_null(strstr(b.why, "; no 9pfs driver"));
	/* Not Unikraft: no mark either way. */
	memcpy(elf.load, "NoBanner", 8);
	memcpy(elf.load + sizeof(text) - 6, "9pfs", 5);
	assert_int_equal(guest_probe_buf((const uint8_t *)&elf, sizeof(elf), &b, &err), 0);
	assert_false(b.unikraft);
	assert_false(b.unikraft_9pfs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(unikraft_fstab), cmocka_unit_test(unikraft_refusals), cmocka_unit_test(hostile_paths),
		cmocka_unit_test(linux_words),    cmocka_unit_test(no_filesystem),     cmocka_unit_test(solo5_blocks),
		cmocka_unit_test(limits),         cmocka_unit_test(probe_9pfs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
