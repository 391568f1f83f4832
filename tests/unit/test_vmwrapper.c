/* Unit tests for vmwrapper's logic: spec parsing, options, kernel probing, QEMU argv, exit
 * classification, and how the console log file is opened (on a real file system). */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "../../src/common/util.h"
#include "../../vmwrapper/args.h"
#include "../../vmwrapper/exit_status.h"
#include "../../src/guest/probe.h"
#include "../../vmwrapper/logfile.h"
#include "../../vmwrapper/qemu_argv.h"
#include "../../vmwrapper/spec.h"

/* /bin/sh is always readable; the spec only needs readable files here. */
#define READABLE "/bin/sh"

static int parse(const char *json, struct vm_spec **s, uk_error *err)
{
	memset(err, 0, sizeof(*err));
	return vm_spec_parse(json, s, err);
}

static void spec_minimal(void **state)
{
	(void)state;
	struct vm_spec *s = NULL;
	uk_error err;
	assert_int_equal(parse("{\"version\":1,\"id\":\"vm1\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/tmp/x\"}",
			       &s, &err), 0);
	assert_string_equal(s->id, "vm1");
	assert_int_equal(s->vcpus, 1);
	assert_int_equal(s->memory_mib, 64);
	assert_int_equal(s->machine, VM_MACHINE_AUTO);
	assert_int_equal(s->accel, VM_ACCEL_AUTO);
	assert_int_equal(s->pit, VM_PIT_ON); /* as before the field */
	assert_null(s->console_log);
	vm_spec_free(s);
}

static void spec_full(void **state)
{
	(void)state;
	struct vm_spec *s = NULL;
	uk_error err;
	assert_int_equal(parse("{\"version\":1,\"id\":\"a.b-c_d\",\"kernel\":\"" READABLE "\",\"initrd\":\"" READABLE
			       "\",\"cmdline\":\"x y\",\"machine\":\"q35\",\"accel\":\"tcg\",\"pit\":\"off-under-kvm\",\"firmware\":\"qboot\","
			       "\"vcpus\":4,\"memory_mib\":256,\"cpu\":\"host,-arch-capabilities\","
			       "\"console_log\":\"/tmp/l\",\"state_dir\":\"/tmp/x\",\"qemu\":\"/usr/bin/q\","
			       "\"net\":[{\"tap_fd\":9,\"vhost_fd\":10,\"mac\":\"02:00:00:00:00:01\"}]}",
			       &s, &err), 0);
	assert_int_equal(s->vcpus, 4);
	assert_int_equal(s->memory_mib, 256);
	assert_int_equal(s->machine, VM_MACHINE_Q35);
	assert_int_equal(s->accel, VM_ACCEL_TCG);
	assert_int_equal(s->pit, VM_PIT_OFF_UNDER_KVM);
	assert_int_equal(s->firmware, VM_FW_QBOOT);
	assert_int_equal(s->n_nets, 1);
	assert_int_equal(s->nets[0].tap_fd, 9);
	assert_string_equal(s->nets[0].mac, "02:00:00:00:00:01");
	vm_spec_free(s);
}

/* Every rejection names the field it is about. */
static void spec_errors(void **state)
{
	(void)state;
	static const struct {
		const char *json, *needle;
	} cases[] = {
		{ "not json", "not JSON" },
		{ "[1]", "JSON object" },
		{ "{\"version\":2,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\"}", "\"version\"" },
		{ "{\"version\":1,\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\"}", "\"id\"" },
		{ "{\"version\":1,\"id\":\"../etc\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\"}", "\"id\"" },
		{ "{\"version\":1,\"id\":\"a/b\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\"}", "\"id\"" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"/nonexistent/k\",\"state_dir\":\"/x\"}", "\"kernel\"" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"rel\",\"state_dir\":\"/x\"}", "\"kernel\"" },
		{ "{\"version\":1,\"id\":\"a\",\"state_dir\":\"/x\"}", "\"kernel\" and \"disk\"" },
		{ "{\"version\":1,\"id\":\"a\",\"disk\":\"" READABLE "\",\"disk_snapshot\":\"no\",\"state_dir\":\"/x\"}",
		  "\"disk_snapshot\"" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"memory_mib\":1,\"state_dir\":\"/x\"}",
		  "\"memory_mib\"" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"memory_mib\":99999999999,\"state_dir\":\"/x\"}",
		  "\"memory_mib\"" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"memory_mib\":\"64\",\"state_dir\":\"/x\"}",
		  "\"memory_mib\"" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"vcpus\":0,\"state_dir\":\"/x\"}", "\"vcpus\"" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"machine\":\"virt\",\"state_dir\":\"/x\"}",
		  "\"machine\"" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"accel\":\"hvf\",\"state_dir\":\"/x\"}", "\"accel\"" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"pit\":\"auto\",\"state_dir\":\"/x\"}", "\"pit\"" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"pit\":false,\"state_dir\":\"/x\"}", "\"pit\"" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\"}", "\"state_dir\"" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"cpu\":\"a b\",\"state_dir\":\"/x\"}", "\"cpu\"" },
		{ "{\"version\":1,\"id\":\"a\",\"disk\":\"" READABLE "\",\"machine\":\"microvm\",\"state_dir\":\"/x\"}",
		  "\"machine\"" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\",\"net\":[{\"tap_fd\":1,\"mac\":\"02:00:00:00:00:01\"}]}",
		  "tap_fd" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\",\"net\":[{\"tap_fd\":9,\"mac\":\"zz\"}]}",
		  "mac" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\",\"exit\":\"mirage\"}",
		  "field \"exit\" has unknown value \"mirage\"" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\",\"exit\":41}",
		  "field \"exit\" must be a string" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\",\"devices\":\"net\"}",
		  "field \"devices\" must be an array" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"disk\":\"" READABLE "\",\"state_dir\":\"/x\","
		  "\"devices\":[\"block\",\"gpu\"]}",
		  "field \"devices[1]\" must be \"block\" or \"net\" or \"blockdev\"" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"disk\":\"" READABLE "\",\"state_dir\":\"/x\","
		  "\"devices\":[7]}",
		  "field \"devices[0]\" must be \"block\" or \"net\" or \"blockdev\"" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\",\"devices\":[\"block\"]}",
		  "field \"devices[0]\" is \"block\", but there is no \"disk\"" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"disk\":\"" READABLE "\",\"state_dir\":\"/x\","
		  "\"devices\":[\"block\",\"block\"]}",
		  "field \"devices[1]\" names the disk a second time" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"disk\":\"" READABLE "\",\"state_dir\":\"/x\","
		  "\"devices\":[]}",
		  "field \"devices\" leaves out the disk" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\",\"devices\":[\"net\"]}",
		  "field \"devices[0]\" is \"net\" number 1, but \"net\" has 0 entries" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\",\"devices\":[\"net\"],"
		  "\"net\":[{\"tap_fd\":9,\"mac\":\"02:00:00:00:00:01\"},{\"tap_fd\":10,\"mac\":\"02:00:00:00:00:02\"}]}",
		  "field \"devices\" leaves out net[1]" },
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\","
		  "\"devices\":[\"net\",\"net\",\"net\",\"net\",\"net\",\"net\",\"net\",\"block\",\"blockdev\",\"blockdev\","
		  "\"blockdev\",\"blockdev\",\"blockdev\",\"blockdev\",\"blockdev\",\"blockdev\",\"blockdev\",\"blockdev\","
		  "\"blockdev\",\"blockdev\",\"blockdev\",\"blockdev\",\"blockdev\",\"blockdev\"]}",
		  "field \"devices\" has 24 entries, at most 23" },
		/* Every NIC's fds must fit what uk_spawn hands QEMU. */
		{ "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\",\"net\":[{\"tap_fd\":9,\"mac\":\"02:00:00:00:00:01\"},{\"tap_fd\":9,\"mac\":\"02:00:00:00:00:01\"},{\"tap_fd\":9,\"mac\":\"02:00:00:00:00:01\"},{\"tap_fd\":9,\"mac\":\"02:00:00:00:00:01\"},{\"tap_fd\":9,\"mac\":\"02:00:00:00:00:01\"},{\"tap_fd\":9,\"mac\":\"02:00:00:00:00:01\"},{\"tap_fd\":9,\"mac\":\"02:00:00:00:00:01\"}]}",
		  "\"net\" has 7 entries, at most 6" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vm_spec *s = NULL;
		uk_error err;
		int r = parse(cases[i].json, &s, &err);
		if (r >= 0 || !strstr(err.msg, cases[i].needle))
			fail_msg("case %zu: r=%d msg=\"%s\", wanted \"%s\"", i, r, err.msg, cases[i].needle);
		assert_null(s);
	}
}

static struct vm_spec *mk(void)
{
	struct vm_spec *s = vm_spec_new();
	s->id = strdup("vm1");
	s->kernel = strdup(READABLE);
	s->state_dir = strdup("/tmp/x");
	return s;
}

static void plan_choices(void **state)
{
	(void)state;
	struct vm_spec *s = mk();
	struct vm_plan p;
	uk_error err = { 0 };

	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_PVH, true, &p, &err), 0);
	assert_int_equal(p.machine, VM_MACHINE_MICROVM);
	assert_int_equal(p.accel, VM_ACCEL_KVM);
	assert_null(p.firmware);
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_PVH, false, &p, &err), 0);
	assert_int_equal(p.accel, VM_ACCEL_TCG);
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_MULTIBOOT, true, &p, &err), 0);
	assert_int_equal(p.machine, VM_MACHINE_PC);
	assert_string_equal(p.firmware, QEMU_QBOOT_ROM);
	assert_true(vm_plan_resolve(s, GUEST_BOOT_ELF, true, &p, &err) < 0);
	assert_non_null(strstr(err.msg, "not a PVH ELF"));

	s->accel = VM_ACCEL_KVM;
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_PVH, false, &p, &err), -ENODEV);
	s->accel = VM_ACCEL_TCG;
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_PVH, true, &p, &err), 0);
	assert_int_equal(p.accel, VM_ACCEL_TCG);

	s->machine = VM_MACHINE_MICROVM;
	assert_true(vm_plan_resolve(s, GUEST_BOOT_MULTIBOOT, true, &p, &err) < 0);

	free(s->kernel);
	s->kernel = NULL;
	s->disk = strdup(READABLE);
	s->machine = VM_MACHINE_AUTO;
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_UNKNOWN, true, &p, &err), 0);
	assert_int_equal(p.machine, VM_MACHINE_Q35);
	assert_null(p.firmware); /* SeaBIOS */
	s->firmware = VM_FW_QBOOT;
	assert_true(vm_plan_resolve(s, GUEST_BOOT_UNKNOWN, true, &p, &err) < 0);
	vm_spec_free(s);
}

static bool has_pair(char **argv, const char *opt, const char *val);

/* The PIT: every spec value under each accelerator (docs/guests.md, "Timers"). */
static void plan_pit(void **state)
{
	(void)state;
	static const struct {
		enum vm_pit pit;
		enum vm_accel accel;
		bool kvm_ok, want;
	} cases[] = {
		{ VM_PIT_ON, VM_ACCEL_AUTO, true, true },
		{ VM_PIT_ON, VM_ACCEL_TCG, true, true },
		{ VM_PIT_OFF, VM_ACCEL_AUTO, false, false },
		{ VM_PIT_OFF, VM_ACCEL_KVM, true, false },
		{ VM_PIT_OFF_UNDER_KVM, VM_ACCEL_AUTO, true, false },  /* auto picks kvm */
		{ VM_PIT_OFF_UNDER_KVM, VM_ACCEL_AUTO, false, true },  /* auto picks tcg */
		{ VM_PIT_OFF_UNDER_KVM, VM_ACCEL_KVM, true, false },
		{ VM_PIT_OFF_UNDER_KVM, VM_ACCEL_TCG, true, true },   /* tcg asked, kvm there */
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct vm_spec *s = mk();
		s->pit = cases[i].pit;
		s->accel = cases[i].accel;
		struct vm_plan p;
		char **argv = NULL;
		uk_error err = { 0 };
		assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_PVH, cases[i].kvm_ok, &p, &err), 0);
		if (p.pit != cases[i].want)
			fail_msg("case %zu: pit %d, want %d (%s)", i, p.pit, cases[i].want, p.why_pit);
		assert_non_null(p.why_pit);
		assert_int_equal(qemu_build_argv(s, &p, &argv, &err), 0);
		assert_true(has_pair(argv, "-machine", cases[i].want ? "microvm" : "microvm,pit=off"));
		strv_free(argv);
		vm_spec_free(s);
	}
	/* On pc too, after the machine name. */
	struct vm_spec *s = mk();
	s->pit = VM_PIT_OFF;
	struct vm_plan p;
	char **argv = NULL;
	uk_error err = { 0 };
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_MULTIBOOT, false, &p, &err), 0);
	assert_int_equal(qemu_build_argv(s, &p, &argv, &err), 0);
	assert_true(has_pair(argv, "-machine", "pc,pit=off"));
	strv_free(argv);
	vm_spec_free(s);
}

static bool has_pair(char **argv, const char *opt, const char *val)
{
	for (char **p = argv; p[0] && p[1]; p++)
		if (strcmp(p[0], opt) == 0 && strcmp(p[1], val) == 0)
			return true;
	return false;
}

static bool has(char **argv, const char *opt)
{
	for (char **p = argv; *p; p++)
		if (strcmp(*p, opt) == 0)
			return true;
	return false;
}

static void argv_kernel_microvm(void **state)
{
	(void)state;
	struct vm_spec *s = mk();
	s->cmdline = strdup("print:hi exit:3");
	s->vcpus = 2;
	s->memory_mib = 128;
	s->n_nets = 1;
	s->nets[0].tap_fd = 20;
	s->nets[0].vhost_fd = 21;
	s->nets[0].mac = strdup("02:00:00:00:00:01");
	struct vm_plan p;
	char **argv = NULL;
	uk_error err = { 0 };
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_PVH, true, &p, &err), 0);
	assert_int_equal(qemu_build_argv(s, &p, &argv, &err), 0);
	assert_string_equal(argv[0], QEMU_DEFAULT_BINARY);
	assert_true(has_pair(argv, "-machine", "microvm"));
	assert_true(has_pair(argv, "-accel", "kvm"));
	assert_true(has_pair(argv, "-smp", "2"));
	assert_true(has_pair(argv, "-m", "128"));
	assert_true(has_pair(argv, "-kernel", READABLE));
	assert_true(has_pair(argv, "-append", "print:hi exit:3"));
	assert_true(has_pair(argv, "-device", "isa-debug-exit"));
	assert_true(has_pair(argv, "-device", "pvpanic"));
	assert_true(has_pair(argv, "-chardev", "socket,id=console,fd=3"));
	assert_true(has_pair(argv, "-chardev", "socket,id=qmp,fd=5,server=on,wait=off"));
	assert_true(has_pair(argv, "-chardev", "socket,id=qmp-debug,fd=6,server=on,wait=off"));
	assert_true(has_pair(argv, "-netdev", "tap,id=net0,fd=7,vhost=on,vhostfd=8"));
	assert_true(has_pair(argv, "-device", "virtio-net-device,netdev=net0,mac=02:00:00:00:00:01"));
	assert_true(has(argv, "-nodefaults"));
	assert_true(has(argv, "-no-user-config"));
	assert_true(has(argv, "-no-reboot"));
	assert_true(has_pair(argv, "-display", "none"));
	assert_false(has(argv, "-bios"));
	assert_false(has(argv, "-cpu"));
	strv_free(argv);
	vm_spec_free(s);
}

/* A pool VM: paused at start (-S), without a log or stdin of its own (the claim gives them). */
static void spec_pool(void **state)
{
	(void)state;
	struct vm_spec *s = NULL;
	uk_error err;
#define POOL_SPEC(extra) "{\"version\":1,\"id\":\"pool-1\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/tmp/x\"" extra "}"
	assert_int_equal(parse(POOL_SPEC(""), &s, &err), 0);
	assert_false(s->pool);
	vm_spec_free(s);
	assert_int_equal(parse(POOL_SPEC(",\"pool\":true"), &s, &err), 0);
	assert_true(s->pool);
	assert_null(s->console_log);
	struct vm_plan p;
	char **argv = NULL;
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_PVH, false, &p, &err), 0);
	assert_int_equal(qemu_build_argv(s, &p, &argv, &err), 0);
	assert_true(has(argv, "-S"));
	strv_free(argv);
	s->pool = false;
	assert_int_equal(qemu_build_argv(s, &p, &argv, &err), 0);
	assert_false(has(argv, "-S"));
	strv_free(argv);
	vm_spec_free(s);
	static const struct {
		const char *json, *needle;
	} bad[] = {
		{ POOL_SPEC(",\"pool\":1"), "field \"pool\" must be true or false" },
		{ POOL_SPEC(",\"pool\":\"yes\""), "field \"pool\" must be true or false" },
		{ POOL_SPEC(",\"pool\":true,\"console_log\":\"/tmp/l\""), "field \"console_log\" must not be given with \"pool\"" },
		{ POOL_SPEC(",\"pool\":true,\"stdin\":true"), "field \"stdin\" must not be given with \"pool\"" },
	};
#undef POOL_SPEC
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		s = NULL;
		if (parse(bad[i].json, &s, &err) >= 0 || !strstr(err.msg, bad[i].needle))
			fail_msg("case %zu: \"%s\"", i, err.msg);
		assert_null(s);
	}
}

static int device_at(char **argv, const char *prefix);

/* A pool VM whose NICs come at the claim: no NIC on QEMU's command line, a machine with PCI,
 * the NICs last in the order. */
static void spec_nics_at_claim(void **state)
{
	(void)state;
	struct vm_spec *s = NULL;
	uk_error err = { 0 };
#define NIC_SPEC(extra) "{\"version\":1,\"id\":\"pool-1\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/tmp/x\"" extra "}"
#define POOL_PC ",\"pool\":true,\"machine\":\"pc\""
	assert_int_equal(parse(NIC_SPEC(POOL_PC), &s, &err), 0);
	assert_int_equal(s->nics_at_claim, 0);
	vm_spec_free(s);
	assert_int_equal(parse(NIC_SPEC(POOL_PC ",\"nics_at_claim\":2,\"disk\":\"" READABLE "\","
					"\"devices\":[\"block\",\"net\",\"net\"]"),
			       &s, &err),
			 0);
	assert_int_equal(s->nics_at_claim, 2);
	assert_int_equal(s->n_nets, 0);
	struct vm_plan p;
	char **argv = NULL;
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_MULTIBOOT, false, &p, &err), 0);
	assert_int_equal(p.machine, VM_MACHINE_PC);
	assert_int_equal(qemu_build_argv(s, &p, &argv, &err), 0);
	/* No NIC at all, the disk still there, paused. */
	assert_false(has(argv, "-netdev"));
	assert_int_equal(device_at(argv, "virtio-net"), -1);
	assert_true(device_at(argv, "virtio-blk-pci,drive=disk0") > 0);
	assert_true(has(argv, "-S"));
	strv_free(argv);
	/* A spec made otherwise (the command line) is still refused microvm by the plan. */
	s->machine = VM_MACHINE_MICROVM;
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_PVH, false, &p, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "\"nics_at_claim\""));
	vm_spec_free(s);
	/* Not q35 (its PCIe root bus takes no device after start), nor "auto" booting a disk (q35). */
	assert_int_equal(parse(NIC_SPEC(",\"pool\":true,\"machine\":\"q35\",\"nics_at_claim\":1"), &s, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "field \"machine\" is q35"));
	assert_int_equal(parse("{\"version\":1,\"id\":\"p\",\"disk\":\"" READABLE "\",\"state_dir\":\"/tmp/x\",\"pool\":true,"
			       "\"nics_at_claim\":1}",
			       &s, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "field \"machine\" is auto"));
	static const struct {
		const char *json, *needle;
	} bad[] = {
		{ NIC_SPEC(POOL_PC ",\"nics_at_claim\":1,\"net\":[{\"tap_fd\":9,\"mac\":\"02:00:00:00:00:01\"}]"),
		  "field \"nics_at_claim\" must not be given with \"net\"" },
		{ NIC_SPEC(",\"machine\":\"pc\",\"nics_at_claim\":1"), "field \"nics_at_claim\" needs \"pool\"" },
		{ NIC_SPEC(",\"pool\":true,\"machine\":\"microvm\",\"nics_at_claim\":1"),
		  "field \"machine\" is microvm: \"nics_at_claim\" needs pc" },
		{ NIC_SPEC(",\"pool\":true,\"nics_at_claim\":1"), "field \"machine\" is auto: \"nics_at_claim\" needs pc" },
		{ NIC_SPEC(POOL_PC ",\"nics_at_claim\":1,\"disk\":\"" READABLE "\",\"devices\":[\"net\",\"block\"]"),
		  "field \"devices[1]\" is \"block\" after a \"net\"" },
		{ NIC_SPEC(POOL_PC ",\"nics_at_claim\":1,\"devices\":[\"net\",\"net\"]"),
		  "field \"devices[1]\" is \"net\" number 2, but \"nics_at_claim\" is 1" },
		{ NIC_SPEC(POOL_PC ",\"nics_at_claim\":2,\"devices\":[\"net\"]"),
		  "field \"devices\" names 1 \"net\", but \"nics_at_claim\" is 2" },
		{ NIC_SPEC(POOL_PC ",\"nics_at_claim\":1,\"blockdevs\":[{\"path\":\"" READABLE "\",\"serial\":\"d0\","
				   "\"readonly\":true}]"),
		  "field \"devices\" is required with \"nics_at_claim\" and \"blockdevs\"" },
		{ NIC_SPEC(POOL_PC ",\"nics_at_claim\":7"), "field \"nics_at_claim\" is 7, must be within 0..6" },
		{ NIC_SPEC(POOL_PC ",\"nics_at_claim\":\"1\""), "field \"nics_at_claim\" must be an integer" },
	};
#undef POOL_PC
#undef NIC_SPEC
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		s = NULL;
		if (parse(bad[i].json, &s, &err) >= 0 || !strstr(err.msg, bad[i].needle))
			fail_msg("case %zu: \"%s\"", i, err.msg);
		assert_null(s);
	}
}

/* One description of a NIC for the argv and for QMP's netdev_add and device_add. */
static void nic_description(void **state)
{
	(void)state;
	_cleanup_json_ json_object *nd = qemu_nic_netdev(1, "uknet1", "uknet1vhost");
	_cleanup_json_ json_object *nd2 = qemu_nic_netdev(0, "uknet0", NULL);
	_cleanup_json_ json_object *dev = qemu_nic_device(1, "02:11:22:33:44:55", false);
	assert_string_equal(json_object_to_json_string_ext(nd, JSON_C_TO_STRING_PLAIN),
			    "{\"type\":\"tap\",\"id\":\"net1\",\"fd\":\"uknet1\",\"vhost\":true,\"vhostfd\":\"uknet1vhost\"}");
	assert_string_equal(json_object_to_json_string_ext(nd2, JSON_C_TO_STRING_PLAIN),
			    "{\"type\":\"tap\",\"id\":\"net0\",\"fd\":\"uknet0\"}");
	assert_string_equal(json_object_to_json_string_ext(dev, JSON_C_TO_STRING_PLAIN),
			    "{\"driver\":\"virtio-net-pci\",\"netdev\":\"net1\",\"mac\":\"02:11:22:33:44:55\"}");
}

/* A kernel with a disk (urunc's block image): the kernel boots, the disk is a data disk. */
static void kernel_and_data_disk(void **state)
{
	(void)state;
	struct vm_spec *s = NULL;
	uk_error err = { 0 };
	assert_int_equal(parse("{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"disk\":\"" READABLE
			       "\",\"disk_format\":\"qcow2\",\"disk_snapshot\":false,\"state_dir\":\"/x\"}",
			       &s, &err), 0);
	assert_false(s->disk_snapshot);
	struct vm_plan p;
	char **argv = NULL;
	/* The kernel picks the machine and the firmware, not the disk. */
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_PVH, true, &p, &err), 0);
	assert_int_equal(p.machine, VM_MACHINE_MICROVM);
	assert_int_equal(qemu_build_argv(s, &p, &argv, &err), 0);
	assert_true(has_pair(argv, "-kernel", READABLE));
	assert_true(has_pair(argv, "-drive", "file=" READABLE ",format=qcow2,if=none,id=disk0"));
	assert_true(has_pair(argv, "-device", "virtio-blk-device,drive=disk0"));
	strv_free(argv);
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_MULTIBOOT, true, &p, &err), 0);
	assert_int_equal(p.machine, VM_MACHINE_PC);
	assert_string_equal(p.firmware, QEMU_QBOOT_ROM);
	assert_int_equal(qemu_build_argv(s, &p, &argv, &err), 0);
	assert_true(has_pair(argv, "-device", "virtio-blk-pci,drive=disk0"));
	strv_free(argv);
	/* microvm takes a data disk, just not a boot disk. */
	s->machine = VM_MACHINE_MICROVM;
	assert_int_equal(vm_spec_validate(s, &err), 0);
	vm_spec_free(s);
}

static void argv_disk_q35(void **state)
{
	(void)state;
	struct vm_spec *s = mk();
	free(s->kernel);
	s->kernel = NULL;
	s->disk = strdup("/images/a,b.qcow2");
	s->disk_format = VM_DISK_QCOW2;
	s->cpu_model = strdup("host,-arch-capabilities");
	s->n_nets = 1;
	s->nets[0].tap_fd = 20;
	s->nets[0].mac = strdup("02:00:00:00:00:02");
	struct vm_plan p;
	char **argv = NULL;
	uk_error err = { 0 };
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_UNKNOWN, false, &p, &err), 0);
	assert_int_equal(qemu_build_argv(s, &p, &argv, &err), 0);
	assert_true(has_pair(argv, "-machine", "q35"));
	assert_true(has_pair(argv, "-accel", "tcg"));
	assert_true(has_pair(argv, "-cpu", "host,-arch-capabilities"));
	/* The comma in the path is doubled, as QemuOpts wants. */
	assert_true(has_pair(argv, "-drive", "file=/images/a,,b.qcow2,format=qcow2,if=none,id=disk0,snapshot=on"));
	assert_true(has_pair(argv, "-netdev", "tap,id=net0,fd=7"));
	assert_true(has_pair(argv, "-device", "virtio-net-pci,netdev=net0,mac=02:00:00:00:00:02"));
	assert_false(has(argv, "-kernel"));
	strv_free(argv);
	vm_spec_free(s);
}

static void spec_exit_and_devices(void **state)
{
	(void)state;
	struct vm_spec *s = NULL;
	uk_error err = { 0 };
	assert_int_equal(parse("{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\"}", &s, &err), 0);
	assert_int_equal(s->exit_contract, VM_EXIT_DEFAULT);
	assert_false(s->has_device_order);
	vm_spec_free(s);
	static const char *const contracts[] = { "default", "unikraft", "solo5" };
	for (size_t i = 0; i < ARRAY_SIZE(contracts); i++) {
		char json[256];
		snprintf(json, sizeof(json),
			 "{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\",\"exit\":\"%s\"}",
			 contracts[i]);
		assert_int_equal(parse(json, &s, &err), 0);
		assert_int_equal(s->exit_contract, (int)i);
		assert_string_equal(vm_exit_contract_name(s->exit_contract), contracts[i]);
		vm_spec_free(s);
	}
	assert_int_equal(parse("{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"disk\":\"" READABLE
			       "\",\"state_dir\":\"/x\",\"devices\":[\"net\",\"block\",\"net\"],\"net\":["
			       "{\"tap_fd\":9,\"mac\":\"02:00:00:00:00:01\"},{\"tap_fd\":10,\"mac\":\"02:00:00:00:00:02\"}]}",
			       &s, &err), 0);
	assert_true(s->has_device_order);
	assert_int_equal(s->n_devices, 3);
	assert_int_equal(s->devices[0], VM_DEV_NET);
	assert_int_equal(s->devices[1], VM_DEV_BLOCK);
	assert_int_equal(s->devices[2], VM_DEV_NET);
	vm_spec_free(s);
	/* No disk and no NIC: an empty list is the whole of nothing. */
	assert_int_equal(parse("{\"version\":1,\"id\":\"a\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\","
			       "\"devices\":[]}", &s, &err), 0);
	assert_true(s->has_device_order);
	vm_spec_free(s);
}

/* The index in argv of the -device whose value starts with prefix, -1 if none. */
static int device_at(char **argv, const char *prefix)
{
	for (int i = 0; argv[i] && argv[i + 1]; i++)
		if (strcmp(argv[i], "-device") == 0 && strncmp(argv[i + 1], prefix, strlen(prefix)) == 0)
			return i;
	return -1;
}

static struct vm_spec *mk_devices(void)
{
	struct vm_spec *s = mk();
	s->disk = strdup(READABLE);
	s->n_nets = 2;
	for (unsigned i = 0; i < 2; i++) {
		s->nets[i].tap_fd = 20 + (int)i;
		s->nets[i].mac = strdup(i ? "02:00:00:00:00:02" : "02:00:00:00:00:01");
	}
	return s;
}

/* QEMU gives PCI slots in command-line order: the devices come in the spec's order. */
static void argv_device_order(void **state)
{
	(void)state;
	struct vm_spec *s = mk_devices();
	struct vm_plan p;
	char **argv = NULL;
	uk_error err = { 0 };
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_MULTIBOOT, false, &p, &err), 0);
	/* Without an order: the disk, then the NICs in "net" order. */
	assert_int_equal(qemu_build_argv(s, &p, &argv, &err), 0);
	int blk = device_at(argv, "virtio-blk-pci,drive=disk0"), n0 = device_at(argv, "virtio-net-pci,netdev=net0"),
	    n1 = device_at(argv, "virtio-net-pci,netdev=net1");
	assert_true(blk > 0 && blk < n0 && n0 < n1);
	strv_free(argv);

	static const enum vm_device_kind orders[][3] = {
		{ VM_DEV_NET, VM_DEV_BLOCK, VM_DEV_NET },
		{ VM_DEV_NET, VM_DEV_NET, VM_DEV_BLOCK },
		{ VM_DEV_BLOCK, VM_DEV_NET, VM_DEV_NET },
	};
	for (size_t k = 0; k < ARRAY_SIZE(orders); k++) {
		s->has_device_order = true;
		s->n_devices = 3;
		memcpy(s->devices, orders[k], sizeof(orders[k]));
		assert_int_equal(vm_spec_validate(s, &err), 0);
		assert_int_equal(qemu_build_argv(s, &p, &argv, &err), 0);
		int at[3] = { -1, -1, -1 }, nets = 0;
		for (int i = 0; i < 3; i++)
			at[i] = orders[k][i] == VM_DEV_BLOCK ? device_at(argv, "virtio-blk-pci,drive=disk0")
			      : device_at(argv, nets++ ? "virtio-net-pci,netdev=net1,mac=02:00:00:00:00:02"
						       : "virtio-net-pci,netdev=net0,mac=02:00:00:00:00:01");
		if (!(at[0] > 0 && at[0] < at[1] && at[1] < at[2]))
			fail_msg("order %zu: at %d %d %d", k, at[0], at[1], at[2]);
		/* Each device once, each NIC with its own tap. */
		size_t devices = 0;
		for (char **a = argv; *a; a++)
			devices += strcmp(*a, "-device") == 0 && strncmp(a[1], "virtio-", 7) == 0;
		assert_int_equal(devices, 3);
		assert_true(has_pair(argv, "-netdev", "tap,id=net0,fd=7"));
		assert_true(has_pair(argv, "-netdev", "tap,id=net1,fd=9"));
		strv_free(argv);
	}
	/* On microvm, the same order over virtio-mmio. */
	assert_int_equal(vm_plan_resolve(s, GUEST_BOOT_PVH, false, &p, &err), 0);
	assert_int_equal(qemu_build_argv(s, &p, &argv, &err), 0);
	assert_true(device_at(argv, "virtio-blk-device") < device_at(argv, "virtio-net-device,netdev=net0"));
	strv_free(argv);
	vm_spec_free(s);
}

static struct vm_exit classify(bool started, const char *reason, bool panicked, int status, const char *tail)
{
	struct vm_facts f = { .started = started, .shutdown_reason = reason, .panicked = panicked,
			      .wait_status = status, .stderr_tail = tail };
	struct vm_exit e;
	vm_exit_classify(&f, &e);
	return e;
}

#define EXITED(c) ((c) << 8)
#define SIGNALED(s) (s)

static void exit_classes(void **state)
{
	(void)state;
	struct vm_exit e;

	e = classify(true, NULL, false, EXITED((42 << 1) | 1), NULL);
	assert_int_equal(e.end, VM_END_GUEST_EXIT);
	assert_int_equal(e.exit_code, 42);
	assert_string_equal(e.reason, "Error");
	e = classify(true, NULL, false, EXITED(1), NULL);
	assert_int_equal(e.end, VM_END_GUEST_EXIT);
	assert_int_equal(e.exit_code, 0);
	assert_string_equal(e.reason, "Completed");
	/* The guest may exit before the monitor handshake: still the guest's code. */
	e = classify(false, NULL, false, EXITED((3 << 1) | 1), NULL);
	assert_int_equal(e.end, VM_END_GUEST_EXIT);
	assert_int_equal(e.exit_code, 3);
	/* A warning on stderr does not make it a QEMU failure. */
	e = classify(true, NULL, false, EXITED(1), "qemu-system-x86_64: warning: host doesn't support feature\n");
	assert_int_equal(e.end, VM_END_GUEST_EXIT);

	e = classify(false, NULL, false, EXITED(1), "qemu-system-x86_64: -kernel x: No such file\n");
	assert_int_equal(e.end, VM_END_QEMU_ERROR);
	assert_int_equal(e.exit_code, 1);
	e = classify(false, NULL, false, EXITED(127), "vmwrapper: cannot execute QEMU\n");
	assert_int_equal(e.end, VM_END_QEMU_ERROR);
	assert_int_equal(e.exit_code, 127);

	e = classify(true, "guest-shutdown", false, EXITED(0), NULL);
	assert_int_equal(e.end, VM_END_POWEROFF);
	assert_int_equal(e.exit_code, 0);
	e = classify(true, "guest-panic", true, EXITED(0), NULL);
	assert_int_equal(e.end, VM_END_PANIC);
	assert_int_not_equal(e.exit_code, 0);
	assert_string_equal(e.reason, "GuestPanicked");
	e = classify(true, "guest-reset", false, EXITED(0), NULL);
	assert_int_equal(e.end, VM_END_RESET);
	e = classify(true, "host-qmp-quit", false, EXITED(0), NULL);
	assert_int_equal(e.end, VM_END_HOST_QUIT);
	assert_int_equal(e.exit_code, 137);

	e = classify(true, NULL, false, SIGNALED(9), NULL);
	assert_int_equal(e.end, VM_END_SIGNAL);
	assert_int_equal(e.signal, 9);
	assert_int_equal(e.exit_code, 137);

	struct vm_facts f = { .started = true, .wait_status = SIGNALED(9) };
	e = classify(true, NULL, false, SIGNALED(9), NULL);
	json_object *o = vm_exit_to_json(&e, &f, 1, 2);
	json_object *v;
	assert_true(json_object_object_get_ex(o, "signal", &v));
	assert_int_equal(json_object_get_int(v), 9);
	assert_true(json_object_object_get_ex(o, "end", &v));
	assert_string_equal(json_object_get_string(v), "signal");
	json_object_put(o);
}

/* ---- the console log file (logfile.c) and the options (args.c), in a scratch directory ---- */

static int tmpdir_setup(void **state)
{
	static char dir[64];
	snprintf(dir, sizeof(dir), "/tmp/uk-test-vmwrapper-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	*state = dir;
	return 0;
}

/* cmocka runs it even when an assertion failed. */
static int tmpdir_teardown(void **state)
{
	return uk_rm_rf(*state, NULL);
}

static char *path_in(const char *dir, const char *name)
{
	char *p = NULL;
	assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

static void file_is(const char *path, const char *content)
{
	char *data = NULL;
	uk_error err = { 0 };
	assert_int_equal(uk_read_file(path, 1024, &data, NULL, &err), 0);
	assert_string_equal(data, content);
	free(data);
}

static void logfile_regular(void **state)
{
	const char *dir = *state;
	_cleanup_free_ char *p = path_in(dir, "0.log");
	uk_error err = { 0 };
	/* Missing: created, 0640 (less what the umask takes). */
	int fd = logfile_open(p, &err);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "a", 1), 1);
	close(fd);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	mode_t um = umask(0);
	umask(um);
	assert_int_equal(st.st_mode & 07777, 0640 & ~um);
	/* There: appended to, and the descriptor is close-on-exec and blocking. */
	fd = logfile_open(p, &err);
	assert_true(fd >= 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_false(fcntl(fd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(fd, F_GETFL) & O_APPEND);
	assert_int_equal(write(fd, "b", 1), 1);
	close(fd);
	file_is(p, "ab");
}

static void logfile_refuses_links(void **state)
{
	const char *dir = *state;
	_cleanup_free_ char *target = path_in(dir, "target");
	_cleanup_free_ char *link = path_in(dir, "0.log");
	_cleanup_free_ char *dangling = path_in(dir, "1.log");
	_cleanup_free_ char *gone = path_in(dir, "nothing-here");
	uk_error err = { 0 };
	int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "secret", 6), 6);
	close(fd);
	assert_int_equal(symlink(target, link), 0);
	assert_int_equal(logfile_open(link, &err), -ELOOP);
	assert_non_null(strstr(err.msg, link));
	assert_non_null(strstr(err.msg, "symbolic link"));
	file_is(target, "secret");
	/* A link to nothing: refused too, and its target is not created. */
	assert_int_equal(symlink(gone, dangling), 0);
	assert_int_equal(logfile_open(dangling, &err), -ELOOP);
	assert_int_equal(access(gone, F_OK), -1);
}

/* Each kind of file that is not a regular one, made at a path in the scratch directory. */
static void make_kind(const char *path, const char *kind)
{
	if (strcmp(kind, "a FIFO") == 0) {
		assert_int_equal(mkfifo(path, 0600), 0);
	} else if (strcmp(kind, "a directory") == 0) {
		assert_int_equal(mkdir(path, 0700), 0);
	} else {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		assert_true(strlen(path) < sizeof(sa.sun_path));
		memcpy(sa.sun_path, path, strlen(path) + 1);
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
		close(s);
	}
}

static void logfile_refuses_other_kinds(void **state)
{
	const char *dir = *state;
	static const char *const kinds[] = { "a FIFO", "a directory", "a socket" };
	uk_error err = { 0 };
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
		char name[16];
		snprintf(name, sizeof(name), "%zu.log", i);
		_cleanup_free_ char *p = path_in(dir, name);
		make_kind(p, kinds[i]);
		/* A FIFO nobody reads would block an open for writing: it is never opened. A
		 * hang here fails the test through SIGALRM. */
		alarm(10);
		int r = logfile_open(p, &err);
		alarm(0);
		if (r != -EINVAL || !strstr(err.msg, kinds[i]) || !strstr(err.msg, p))
			fail_msg("%s: r=%d msg=\"%s\"", kinds[i], r, err.msg);
	}
	assert_int_equal(logfile_open("/dev/null", &err), -EINVAL);
	assert_non_null(strstr(err.msg, "a character device"));
	/* A directory that is not there. */
	_cleanup_free_ char *missing = path_in(dir, "no-dir/0.log");
	assert_int_equal(logfile_open(missing, &err), -ENOENT);
	assert_non_null(strstr(err.msg, missing));
}

static int parse_argv(struct vmw_args *a, uk_error *err, ...)
{
	char *argv[32] = { "vmwrapper" };
	int argc = 1;
	va_list ap;
	va_start(ap, err);
	for (char *s; argc < 31 && (s = va_arg(ap, char *));)
		argv[argc++] = s;
	va_end(ap);
	*a = (struct vmw_args){ .sync_fd = -1 };
	memset(err, 0, sizeof(*err));
	return vmw_args_parse(argc, argv, a, err);
}

static void args_person(void **state)
{
	const char *dir = *state;
	_cleanup_free_ char *sd = path_in(dir, "state/deep");
	struct vmw_args a;
	uk_error err;
	char cwd[PATH_MAX];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(dir), 0);
	int r = parse_argv(&a, &err, "--kernel", READABLE, "--state-dir", "state/deep", "--console-log", "c.log",
			   "--log-format", "cri", "--memory", "128", "--machine", "pc", "--firmware", "seabios",
			   "--exit", "solo5", "-v", NULL);
	assert_int_equal(chdir(cwd), 0);
	if (r < 0)
		fail_msg("%s", err.msg);
	assert_true(a.person);
	assert_true(a.verbose);
	assert_int_equal(a.action, VMW_RUN);
	assert_int_equal(a.log_format, LOG_FORMAT_CRI);
	assert_int_equal(a.spec->memory_mib, 128);
	assert_int_equal(a.spec->machine, VM_MACHINE_PC);
	assert_int_equal(a.spec->firmware, VM_FW_SEABIOS);
	assert_int_equal(a.spec->exit_contract, VM_EXIT_SOLO5);
	assert_string_equal(a.spec->id, "vm");
	/* Relative paths become absolute; the state directory is made. */
	assert_string_equal(a.spec->state_dir, sd);
	assert_int_equal(access(sd, F_OK), 0);
	_cleanup_free_ char *log = path_in(dir, "c.log");
	assert_string_equal(a.spec->console_log, log);
	assert_null(a.tmp_state_dir);
	vmw_args_done(&a);
}

static void args_help_and_errors(void **state)
{
	const char *dir = *state;
	_cleanup_free_ char *sd = path_in(dir, "s");
	struct vmw_args a;
	uk_error err;
	assert_int_equal(parse_argv(&a, &err, "--help", "--bogus", NULL), 0);
	assert_int_equal(a.action, VMW_HELP);
	assert_int_equal(parse_argv(&a, &err, "--version", NULL), 0);
	assert_int_equal(a.action, VMW_VERSION);
	static const struct {
		const char *argv[6];
		const char *needle;
	} cases[] = {
		{ { "--bogus" }, "\"--bogus\"" },
		{ { "--kernel" }, "\"--kernel\"" },
		{ { "--kernel", READABLE, "--memory", "1" }, "--memory" },
		{ { "--kernel", READABLE, "--cpus", "x" }, "--cpus" },
		{ { "--kernel", READABLE, "--accel", "hvf" }, "--accel" },
		{ { "--kernel", READABLE, "--log-format", "json" }, "--log-format" },
		{ { "--kernel", READABLE, "--exit", "mirage" }, "--exit: unknown value \"mirage\"" },
		{ { "--kernel", READABLE, "--firmware", "ovmf" }, "--firmware: unknown value \"ovmf\"" },
		{ { "--spec", "/x.json", "--exit", "solo5" }, "cannot be combined" },
		{ { "--kernel", READABLE, "--sync-fd", "5" }, "--sync-fd needs --spec" },
		{ { "--kernel", READABLE, "--sync-fd", "2" }, "--sync-fd" },
		{ { "--spec", "/x.json", "--kernel", READABLE }, "cannot be combined" },
		{ { "--append", "x" }, "--kernel or --disk" },
		{ { "--kernel", READABLE, "extra" }, "\"extra\"" },
		{ { "--spec", "/nonexistent/spec.json" }, "spec /nonexistent/spec.json" },
		{ { "--kernel", READABLE, "--go-fd", "5" }, "--go-fd and --cgroup-procs need --spec" },
		{ { "--spec", "/x.json", "--go-fd", "1" }, "--go-fd: \"1\"" },
		{ { "--spec", "/x.json", "--cgroup-procs", "/a" }, "--cgroup-procs needs --go-fd" },
		{ { "--spec", "/x.json", "--cgroup-procs", "rel/procs" }, "--cgroup-procs: \"rel/procs\"" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const char *const *v = cases[i].argv;
		int r = parse_argv(&a, &err, v[0], v[1], v[2], v[3], "--state-dir", sd, NULL);
		if (r >= 0 || !strstr(err.msg, cases[i].needle))
			fail_msg("case %zu: r=%d msg=\"%s\", wanted \"%s\"", i, r, err.msg, cases[i].needle);
		vmw_args_done(&a);
	}
	/* The sync fd is known even when a later option is bad, so the error can go through it. */
	assert_true(parse_argv(&a, &err, "--sync-fd", "7", "--bogus", NULL) < 0);
	assert_int_equal(a.sync_fd, 7);
}

/* unikd's start: the go-ahead fd and the cgroups to join on it, in their order. */
static void args_go(void **state)
{
	const char *dir = *state;
	_cleanup_free_ char *spec = path_in(dir, "spec.json");
	struct vmw_args a;
	uk_error err;
	static const char json[] = "{\"version\":1,\"id\":\"v\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\"}";
	assert_int_equal(uk_write_file_atomic(spec, json, strlen(json), 0600, &err), 0);
	assert_int_equal(parse_argv(&a, &err, "--spec", spec, "--sync-fd", "3", "--go-fd", "6", "--cgroup-procs", "/c/a",
				    "--cgroup-procs", "/c/b", NULL),
			 0);
	assert_int_equal(a.go_fd, 6);
	assert_int_equal(a.n_cgroup_procs, 2);
	assert_string_equal(a.cgroup_procs[0], "/c/a");
	assert_string_equal(a.cgroup_procs[1], "/c/b");
	vmw_args_done(&a);
	const char *many[2 * VMW_CGROUP_PROCS_MAX + 8] = { "vmwrapper", "--spec", spec, "--go-fd", "6" };
	int n = 5;
	for (int i = 0; i <= VMW_CGROUP_PROCS_MAX; i++) {
		many[n++] = "--cgroup-procs";
		many[n++] = "/c/x";
	}
	a = (struct vmw_args){ .sync_fd = -1 };
	assert_int_equal(vmw_args_parse(n, (char **)many, &a, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "more than"));
	vmw_args_done(&a);
}

static void args_spec(void **state)
{
	const char *dir = *state;
	_cleanup_free_ char *spec = path_in(dir, "spec.json");
	struct vmw_args a;
	uk_error err;
	static const char json[] = "{\"version\":1,\"id\":\"v\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\","
				   "\"console_log\":\"/l/0.log\"}";
	assert_int_equal(uk_write_file_atomic(spec, json, strlen(json), 0600, &err), 0);
	assert_int_equal(parse_argv(&a, &err, "--spec", spec, "--sync-fd", "9", NULL), 0);
	assert_false(a.person);
	assert_int_equal(a.sync_fd, 9);
	assert_int_equal(a.go_fd, -1);
	/* With a log file, kubelet's format by default. */
	assert_int_equal(a.log_format, LOG_FORMAT_CRI);
	assert_string_equal(a.spec->console_log, "/l/0.log");
	vmw_args_done(&a);
	static const char raw[] = "{\"version\":1,\"id\":\"v\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\","
				  "\"console_log\":\"/l/0.log\",\"log_format\":\"raw\"}";
	assert_int_equal(uk_write_file_atomic(spec, raw, strlen(raw), 0600, &err), 0);
	assert_int_equal(parse_argv(&a, &err, "--spec", spec, NULL), 0);
	assert_int_equal(a.log_format, LOG_FORMAT_RAW);
	vmw_args_done(&a);
	static const char bad[] = "{\"version\":1,\"id\":\"v\",\"kernel\":\"" READABLE "\",\"state_dir\":\"/x\","
				  "\"log_format\":7}";
	assert_int_equal(uk_write_file_atomic(spec, bad, strlen(bad), 0600, &err), 0);
	assert_int_equal(parse_argv(&a, &err, "--spec", spec, NULL), -EINVAL);
	assert_non_null(strstr(err.msg, "\"log_format\""));
	vmw_args_done(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(spec_minimal),    cmocka_unit_test(spec_full),
		cmocka_unit_test(spec_errors),
		cmocka_unit_test(spec_pool),
		cmocka_unit_test(spec_nics_at_claim),
		cmocka_unit_test(nic_description),
		cmocka_unit_test(plan_choices),    cmocka_unit_test(plan_pit),    cmocka_unit_test(argv_kernel_microvm),
		cmocka_unit_test(argv_disk_q35),   cmocka_unit_test(kernel_and_data_disk),
		cmocka_unit_test(exit_classes),    cmocka_unit_test(spec_exit_and_devices),
		cmocka_unit_test(argv_device_order),
		cmocka_unit_test_setup_teardown(logfile_regular, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(logfile_refuses_links, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(logfile_refuses_other_kinds, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(args_person, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(args_help_and_errors, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(args_go, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(args_spec, tmpdir_setup, tmpdir_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
