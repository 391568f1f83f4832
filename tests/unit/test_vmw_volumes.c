/* Unit tests for vmwrapper's shares (virtio-9p) and block devices (virtio-blk): the spec's
 * "shares", "blockdevs" and "blockdev" device kind, good and hostile, on real files in a
 * scratch directory, and the exact QEMU arguments they become on pc and microvm. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/common/util.h"
#include "../../src/guest/probe.h"
#include "../../vmwrapper/qemu_argv.h"
#include "../../vmwrapper/spec.h"

/* The scratch directory: dirs d1 and d2, a regular file, a FIFO, a block device node, a
 * symbolic link to d1. */
struct fx {
	char dir[64];
	char d1[96], d2[96], file[96], fifo[96], blk[96], dlink[96];
};

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	*state = f;
	snprintf(f->dir, sizeof(f->dir), "/tmp/uk-test-vmwvol-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->d1, sizeof(f->d1), "%s/d1", f->dir);
	snprintf(f->d2, sizeof(f->d2), "%s/d2", f->dir);
	snprintf(f->file, sizeof(f->file), "%s/disk.raw", f->dir);
	snprintf(f->fifo, sizeof(f->fifo), "%s/fifo", f->dir);
	snprintf(f->blk, sizeof(f->blk), "%s/blk", f->dir);
	snprintf(f->dlink, sizeof(f->dlink), "%s/dlink", f->dir);
	int fd = open(f->file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	close(fd);
	/* A block device node needs root (CAP_MKNOD), as the integration tests do. */
	if (mkdir(f->d1, 0700) < 0 || mkdir(f->d2, 0700) < 0 || mkfifo(f->fifo, 0600) < 0 ||
	    mknod(f->blk, S_IFBLK | 0600, makedev(7, 0)) < 0 || symlink(f->d1, f->dlink) < 0) {
		fprintf(stderr, "cannot make the scratch files in %s: %m\n", f->dir);
		return -1;
	}
	return 0;
}

/* cmocka runs it even when an assertion failed. */
static int fx_teardown(void **state)
{
	struct fx *f = *state;
	int r = f->dir[0] ? uk_rm_rf(f->dir, NULL) : 0;
	free(f);
	return r;
}

/* A spec whose members after the required ones are extra (JSON text without braces). */
static int parse_with(const char *extra, struct vm_spec **s, uk_error *err)
{
	_cleanup_free_ char *json = uk_strf("{\"version\":1,\"id\":\"a\",\"kernel\":\"/bin/sh\",\"state_dir\":\"/x\",%s}",
					    extra);
	assert_non_null(json);
	memset(err, 0, sizeof(*err));
	*s = NULL;
	return vm_spec_parse(json, s, err);
}

static void spec_volumes_good(void **state)
{
	struct fx *f = *state;
	struct vm_spec *s = NULL;
	uk_error err;
	_cleanup_free_ char *extra = uk_strf(
		"\"shares\":[{\"tag\":\"ukv0\",\"path\":\"%s\",\"readonly\":true},"
		"{\"tag\":\"a.b_c-31-bytes-xxxxxxxxxxxxxxxx\",\"path\":\"%s\"}],"
		"\"blockdevs\":[{\"path\":\"%s\",\"serial\":\"ukd0\",\"readonly\":false},"
		"{\"path\":\"%s\",\"serial\":\"twenty-bytes-serial0\",\"readonly\":true}],"
		"\"devices\":[\"blockdev\",\"blockdev\"]",
		f->d1, f->dlink, f->file, f->blk);
	if (parse_with(extra, &s, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(s->n_shares, 2);
	assert_string_equal(s->shares[0].tag, "ukv0");
	assert_string_equal(s->shares[0].path, f->d1);
	assert_true(s->shares[0].readonly);
	/* A link to a directory is a directory, as QEMU opens it; readonly defaults to false. */
	assert_string_equal(s->shares[1].path, f->dlink);
	assert_false(s->shares[1].readonly);
	assert_int_equal(s->n_blockdevs, 2);
	assert_string_equal(s->blockdevs[0].path, f->file);
	assert_string_equal(s->blockdevs[0].serial, "ukd0");
	assert_false(s->blockdevs[0].readonly);
	assert_string_equal(s->blockdevs[1].serial, "twenty-bytes-serial0");
	assert_true(s->blockdevs[1].readonly);
	assert_int_equal(s->n_devices, 2);
	assert_int_equal(s->devices[0], VM_DEV_BLOCKDEV);
	vm_spec_free(s);

	/* The most of each; null and [] are none. */
	char *big = strdup("\"shares\":[");
	for (int i = 0; i < VM_SHARES_MAX; i++) {
		char *n = uk_strf("%s%s{\"tag\":\"t%d\",\"path\":\"%s\"}", big, i ? "," : "", i, f->d2);
		free(big);
		big = n;
	}
	char *n = uk_strf("%s],\"blockdevs\":null", big);
	free(big);
	big = n;
	if (parse_with(big, &s, &err) < 0)
		fail_msg("%s", err.msg);
	free(big);
	assert_int_equal(s->n_shares, VM_SHARES_MAX);
	assert_int_equal(s->n_blockdevs, 0);
	vm_spec_free(s);
	assert_int_equal(parse_with("\"shares\":[],\"blockdevs\":[]", &s, &err), 0);
	assert_int_equal(s->n_shares + s->n_blockdevs, 0);
	vm_spec_free(s);
}

/* n entries of the array name, each made from fmt with its index (and the path). */
static char *entries(const char *name, int n, const char *fmt, const char *path)
{
	char *out = uk_strf("\"%s\":[", name);
	for (int i = 0; i < n; i++) {
		_cleanup_free_ char *e = uk_strf(fmt, i, path);
		char *next = uk_strf("%s%s%s", out, i ? "," : "", e);
		free(out);
		out = next;
	}
	char *done = uk_strf("%s]", out);
	free(out);
	return done;
}

/* Every refusal names the field, down to the entry and its member. */
static void spec_volumes_hostile(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *many_shares = entries("shares", VM_SHARES_MAX + 1, "{\"tag\":\"t%d\",\"path\":\"%s\"}", f->d1);
	_cleanup_free_ char *many_bdevs = entries("blockdevs", VM_BLOCKDEVS_MAX + 1, "{\"serial\":\"s%d\",\"path\":\"%s\"}",
						  f->file);
	const char *d1 = f->d1, *file = f->file;
	struct {
		char *extra;
		const char *needle;
	} cases[] = {
		{ strdup(many_shares), "field \"shares\" has 17 entries, at most 16" },
		{ strdup(many_bdevs), "field \"blockdevs\" has 17 entries, at most 16" },
		{ uk_strf("\"shares\":{\"tag\":\"a\",\"path\":\"%s\"}", d1), "field \"shares\" must be an array" },
		{ uk_strf("\"blockdevs\":\"%s\"", file), "field \"blockdevs\" must be an array" },
		{ uk_strf("\"shares\":[\"%s\"]", d1), "field \"shares[0]\" must be an object" },
		{ uk_strf("\"shares\":[{\"path\":\"%s\"}]", d1), "field \"shares[0].tag\" is required" },
		{ uk_strf("\"shares\":[{\"tag\":7,\"path\":\"%s\"}]", d1), "field \"shares[0].tag\" must be a string" },
		{ uk_strf("\"shares\":[{\"tag\":\"a\",\"path\":null}]"), "field \"shares[0].path\" is required" },
		{ uk_strf("\"shares\":[{\"tag\":\"a\",\"path\":\"%s\",\"readonly\":\"yes\"}]", d1),
		  "field \"shares[0].readonly\" must be true or false" },
		{ uk_strf("\"shares\":[{\"tag\":\"a\",\"path\":\"%s\",\"readonly\":1}]", d1),
		  "field \"shares[0].readonly\" must be true or false" },
		{ uk_strf("\"shares\":[{\"tag\":\"a\",\"path\":\"%s\"},{\"tag\":\"\",\"path\":\"%s\"}]", d1, d1),
		  "field \"shares[1].tag\" must be 1..31 bytes of [A-Za-z0-9_.-]" },
		{ uk_strf("\"shares\":[{\"tag\":\"a234567890123456789012345678901x\",\"path\":\"%s\"}]", d1),
		  "field \"shares[0].tag\" must be 1..31 bytes" },
		{ uk_strf("\"shares\":[{\"tag\":\"a,b\",\"path\":\"%s\"}]", d1), "field \"shares[0].tag\" must be" },
		{ uk_strf("\"shares\":[{\"tag\":\"a:b\",\"path\":\"%s\"}]", d1), "field \"shares[0].tag\" must be" },
		{ uk_strf("\"shares\":[{\"tag\":\"a/b\",\"path\":\"%s\"}]", d1), "field \"shares[0].tag\" must be" },
		{ uk_strf("\"shares\":[{\"tag\":\"..\",\"path\":\"%s\"}]", d1), "field \"shares[0].tag\" must be" },
		{ uk_strf("\"shares\":[{\"tag\":\"a\\u0000b\",\"path\":\"%s\"}]", d1), "field \"shares[0].tag\" must not hold a NUL character" },
		{ uk_strf("\"shares\":[{\"tag\":\"x\",\"path\":\"%s\"},{\"tag\":\"y\",\"path\":\"%s\"},"
			  "{\"tag\":\"x\",\"path\":\"%s\"}]", d1, d1, d1),
		  "field \"shares[2].tag\" is \"x\", as shares[0] is: each must be unique" },
		{ uk_strf("\"shares\":[{\"tag\":\"a\",\"path\":\"tmp/d\"}]"),
		  "field \"shares[0].path\" must be an absolute path, got \"tmp/d\"" },
		{ uk_strf("\"shares\":[{\"tag\":\"a\",\"path\":\"%s/nothing\"}]", d1),
		  "field \"shares[0].path\": " },
		{ uk_strf("\"shares\":[{\"tag\":\"a\",\"path\":\"%s\"}]", file), "field \"shares[0].path\": " },
		{ uk_strf("\"blockdevs\":[{\"path\":\"%s\"}]", file), "field \"blockdevs[0].serial\" is required" },
		{ uk_strf("\"blockdevs\":[{\"path\":\"%s\",\"serial\":\"123456789012345678901\"}]", file),
		  "field \"blockdevs[0].serial\" must be 1..20 bytes" },
		{ uk_strf("\"blockdevs\":[{\"path\":\"%s\",\"serial\":\"a b\"}]", file), "field \"blockdevs[0].serial\" must be" },
		{ uk_strf("\"blockdevs\":[{\"path\":\"%s\",\"serial\":\"d\"},{\"path\":\"%s\",\"serial\":\"d\"}]", file, file),
		  "field \"blockdevs[1].serial\" is \"d\", as blockdevs[0] is: each must be unique" },
		{ uk_strf("\"blockdevs\":[{\"path\":\"disk.raw\",\"serial\":\"d\"}]"),
		  "field \"blockdevs[0].path\" must be an absolute path" },
		{ uk_strf("\"blockdevs\":[{\"path\":\"%s\",\"serial\":\"d\"}]", f->fifo),
		  "is not a regular file or a block device" },
		{ uk_strf("\"blockdevs\":[{\"path\":\"/dev/null\",\"serial\":\"d\"}]"),
		  "field \"blockdevs[0].path\": /dev/null is not a regular file or a block device" },
		{ uk_strf("\"blockdevs\":[{\"path\":\"%s\",\"serial\":\"d\"}]", d1), "field \"blockdevs[0].path\": " },
		{ uk_strf("\"blockdevs\":[{\"path\":\"%s.gone\",\"serial\":\"d\"}]", file), "field \"blockdevs[0].path\": " },
		{ uk_strf("\"blockdevs\":[{\"path\":\"%s\",\"serial\":\"d\",\"readonly\":null,\"x\":1}],"
			  "\"devices\":[\"blockdev\",\"blockdev\"]", file),
		  "field \"devices[1]\" is \"blockdev\" number 2, but \"blockdevs\" has 1 entries" },
		{ uk_strf("\"blockdevs\":[{\"path\":\"%s\",\"serial\":\"d\"},{\"path\":\"%s\",\"serial\":\"e\"}],"
			  "\"devices\":[\"blockdev\"]", file, file),
		  "field \"devices\" leaves out blockdevs[1]: it must list every block device" },
		{ uk_strf("\"devices\":[\"blockdevs\"]"), "field \"devices[0]\" must be \"block\" or \"net\" or \"blockdev\"" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct vm_spec *s = NULL;
		uk_error err;
		assert_non_null(cases[i].extra);
		int r = parse_with(cases[i].extra, &s, &err);
		if (r >= 0 || !strstr(err.msg, cases[i].needle))
			fail_msg("case %zu: r=%d msg=\"%s\", wanted \"%s\"", i, r, err.msg, cases[i].needle);
		assert_null(s);
		free(cases[i].extra);
	}
}

/* The reasons behind the path errors, which the table only matches by field. */
static void spec_volumes_path_reasons(void **state)
{
	struct fx *f = *state;
	struct vm_spec *s = NULL;
	uk_error err;
	_cleanup_free_ char *a = uk_strf("\"shares\":[{\"tag\":\"a\",\"path\":\"%s\"}]", f->file);
	assert_int_equal(parse_with(a, &s, &err), -ENOTDIR);
	assert_non_null(strstr(err.msg, "is not a directory"));
	_cleanup_free_ char *b = uk_strf("\"shares\":[{\"tag\":\"a\",\"path\":\"%s/none\"}]", f->d1);
	assert_int_equal(parse_with(b, &s, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "No such file or directory"));
	_cleanup_free_ char *c = uk_strf("\"blockdevs\":[{\"path\":\"%s\",\"serial\":\"d\"}]", f->d1);
	assert_int_equal(parse_with(c, &s, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "is not a regular file or a block device"));
}

static struct vm_spec *mk_volumes(void)
{
	struct vm_spec *s = vm_spec_new();
	s->id = strdup("vm1");
	s->kernel = strdup("/bin/sh");
	s->state_dir = strdup("/tmp/x");
	s->n_nets = 1;
	s->nets[0].tap_fd = 20;
	s->nets[0].mac = strdup("02:00:00:00:00:01");
	s->n_blockdevs = 2;
	s->blockdevs[0] = (struct vm_blockdev){ strdup("/d/a,b.raw"), strdup("ukd0"), false };
	s->blockdevs[1] = (struct vm_blockdev){ strdup("/dev/sdz"), strdup("ukd1"), true };
	s->n_shares = 2;
	s->shares[0] = (struct vm_share){ strdup("ukv0"), strdup("/v/conf,,ig"), true, NULL };
	s->shares[1] = (struct vm_share){ strdup("ukv1"), strdup("/v/data"), false, NULL };
	return s;
}

/* argv from its first device on: the devices are the end of QEMU's command line. */
static void devices_are(char **argv, const char *const *want)
{
	size_t at = 0, n = 0;
	while (argv[at] && strcmp(argv[at], "-drive") != 0 && strcmp(argv[at], "-netdev") != 0)
		at++;
	for (; want[n]; n++)
		if (!argv[at + n] || strcmp(argv[at + n], want[n]) != 0)
			fail_msg("argument %zu is \"%s\", wanted \"%s\"", n, argv[at + n] ? argv[at + n] : "(end)", want[n]);
	if (argv[at + n])
		fail_msg("an extra argument \"%s\"", argv[at + n]);
}

static void build(const struct vm_spec *s, enum guest_boot kind, char ***argv)
{
	struct vm_plan p;
	uk_error err = { 0 };
	if (vm_plan_resolve(s, kind, false, &p, &err) < 0 || qemu_build_argv(s, &p, argv, &err) < 0)
		fail_msg("%s", err.msg);
}

/* pc: PCI devices in the spec's order (a block device, the NIC, the other block device), the
 * shares after them; commas in paths doubled; each readonly honoured by QEMU itself. */
static void argv_volumes_pc(void **state)
{
	(void)state;
	struct vm_spec *s = mk_volumes();
	s->has_device_order = true;
	s->n_devices = 3;
	s->devices[0] = VM_DEV_BLOCKDEV;
	s->devices[1] = VM_DEV_NET;
	s->devices[2] = VM_DEV_BLOCKDEV;
	char **argv = NULL;
	build(s, GUEST_BOOT_MULTIBOOT, &argv);
	static const char *const want[] = {
		"-drive", "file=/d/a,,b.raw,format=raw,if=none,id=ukblk0",
		"-device", "virtio-blk-pci,drive=ukblk0,serial=ukd0",
		"-netdev", "tap,id=net0,fd=7",
		"-device", "virtio-net-pci,netdev=net0,mac=02:00:00:00:00:01",
		"-drive", "file=/dev/sdz,format=raw,if=none,id=ukblk1,readonly=on",
		"-device", "virtio-blk-pci,drive=ukblk1,serial=ukd1",
		"-fsdev", "local,id=ukfs0,path=/v/conf,,,,ig,security_model=passthrough,multidevs=remap,readonly=on",
		"-device", "virtio-9p-pci,fsdev=ukfs0,mount_tag=ukv0",
		"-fsdev", "local,id=ukfs1,path=/v/data,security_model=mapped-xattr,multidevs=remap",
		"-device", "virtio-9p-pci,fsdev=ukfs1,mount_tag=ukv1",
		NULL,
	};
	devices_are(argv, want);
	strv_free(argv);
	vm_spec_free(s);
}

/* microvm: the same over virtio-mmio; without an order, the NIC then the block devices. */
static void argv_volumes_microvm(void **state)
{
	(void)state;
	struct vm_spec *s = mk_volumes();
	char **argv = NULL;
	build(s, GUEST_BOOT_PVH, &argv);
	assert_string_equal(argv[4], "microvm");
	static const char *const want[] = {
		"-netdev", "tap,id=net0,fd=7",
		"-device", "virtio-net-device,netdev=net0,mac=02:00:00:00:00:01",
		"-drive", "file=/d/a,,b.raw,format=raw,if=none,id=ukblk0",
		"-device", "virtio-blk-device,drive=ukblk0,serial=ukd0",
		"-drive", "file=/dev/sdz,format=raw,if=none,id=ukblk1,readonly=on",
		"-device", "virtio-blk-device,drive=ukblk1,serial=ukd1",
		"-fsdev", "local,id=ukfs0,path=/v/conf,,,,ig,security_model=passthrough,multidevs=remap,readonly=on",
		"-device", "virtio-9p-device,fsdev=ukfs0,mount_tag=ukv0",
		"-fsdev", "local,id=ukfs1,path=/v/data,security_model=mapped-xattr,multidevs=remap",
		"-device", "virtio-9p-device,fsdev=ukfs1,mount_tag=ukv1",
		NULL,
	};
	devices_are(argv, want);
	strv_free(argv);
	vm_spec_free(s);
}

/* Shares alone (no NIC, no disk) still come out, after nothing. */
static void argv_shares_alone(void **state)
{
	(void)state;
	struct vm_spec *s = mk_volumes();
	s->n_blockdevs = 0;
	for (unsigned i = 0; i < 2; i++) {
		free(s->blockdevs[i].path);
		free(s->blockdevs[i].serial);
	}
	s->n_nets = 0;
	free(s->nets[0].mac);
	char **argv = NULL;
	build(s, GUEST_BOOT_MULTIBOOT, &argv);
	size_t fsdevs = 0, devices = 0;
	for (char **a = argv; *a; a++) {
		fsdevs += strcmp(*a, "-fsdev") == 0;
		devices += strcmp(*a, "-device") == 0 && strncmp(a[1], "virtio-", 7) == 0;
		assert_false(strcmp(*a, "-drive") == 0 || strcmp(*a, "-netdev") == 0);
	}
	assert_int_equal(fsdevs, 2);
	assert_int_equal(devices, 2);
	strv_free(argv);
	vm_spec_free(s);
}

/* The most devices a spec can hold do not fit the machine: refused before QEMU, named. */
static void room_on_the_bus(void **state)
{
	(void)state;
	struct vm_spec *s = mk_volumes();
	struct vm_plan p;
	uk_error err = { 0 };
	/* 1 NIC + 2 block devices + 2 shares = 5, then up to each limit. */
	for (unsigned i = s->n_shares; i < VM_SHARES_MAX; i++)
		s->shares[i] = (struct vm_share){ uk_strf("t%u", i), strdup("/v"), false, NULL };
	s->n_shares = VM_SHARES_MAX;
	for (unsigned i = s->n_blockdevs; i < VM_BLOCKDEVS_MAX; i++)
		s->blockdevs[i] = (struct vm_blockdev){ strdup("/b"), uk_strf("s%u", i), false };
	s->n_blockdevs = VM_BLOCKDEVS_MAX;
	/* 33 */
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_MULTIBOOT, false, &p, &err), -E2BIG);
	assert_non_null(strstr(err.msg, "\"blockdevs\" and \"shares\" make 33 virtio devices, machine pc has room for 30"));
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_PVH, false, &p, &err), -E2BIG);
	assert_non_null(strstr(err.msg, "make 33 virtio devices, machine microvm has room for 24"));
	/* 30 fit pc and q35, and 24 microvm. */
	s->n_shares -= 3;
	s->machine = VM_MACHINE_Q35;
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_MULTIBOOT, false, &p, &err), 0);
	s->machine = VM_MACHINE_AUTO;
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_MULTIBOOT, false, &p, &err), 0);
	s->n_shares -= 6;
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_PVH, false, &p, &err), 0);
	s->n_shares = VM_SHARES_MAX;
	vm_spec_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(spec_volumes_good, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(spec_volumes_hostile, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(spec_volumes_path_reasons, fx_setup, fx_teardown),
		cmocka_unit_test(argv_volumes_pc),
		cmocka_unit_test(argv_volumes_microvm),
		cmocka_unit_test(argv_shares_alone),
		cmocka_unit_test(room_on_the_bus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
