/* Unit tests for the guest contracts (src/guest/guest.c and one file per framework): from
 * facts, each framework's machine, firmware, devices, DHCP and exact command line; and the
 * errors, each naming its field or device. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/guest/guest.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

static const struct guest_net NET = { .ip = "10.77.0.5", .prefix = 16, .gateway = "10.77.0.1",
				      .mask = "255.255.0.0", .dns = "10.96.0.10", .hostname = "pod1" };
static const struct guest_net NET_NODNS = { .ip = "10.0.0.2", .prefix = 24, .gateway = "10.0.0.1" };

static struct guest_binary unikraft_bin(void)
{
	struct guest_binary b = { .boot = GUEST_BOOT_MULTIBOOT, .unikraft = true, .unikraft_version = "0.17.0" };
	return b;
}

static struct guest_binary solo5_bin(const char *const *names, const enum guest_dev_kind *kinds, size_t n)
{
	struct guest_binary b = { .boot = GUEST_BOOT_MULTIBOOT, .elf64 = true, .solo5 = true,
				  .solo5_abi_target = 3, .solo5_abi_version = 1, .n_mft = n };
	for (size_t i = 0; i < n; i++) {
		b.mft[i].kind = kinds[i];
		snprintf(b.mft[i].name, sizeof(b.mft[i].name), "%s", names[i]);
	}
	return b;
}

static struct guest_binary boot_bin(enum guest_boot boot)
{
	struct guest_binary b = { .boot = boot };
	return b;
}

static const char *const HELLO_ARGS[] = { "hello", "hello, world" };
static const struct guest_env ENVS[] = { { "A", "1" }, { "B", "two words" } };

/* A facts builder: the CRI field prefix is always "config.". */
static struct guest_facts facts(const char *type, const struct guest_binary *bin, const struct guest_net *net,
				enum guest_netcfg cfg)
{
	struct guest_facts f = { .urunc_type = type, .bin = bin, .net = net, .netcfg = cfg };
	f.cmd.field_prefix = "config.";
	return f;
}

static struct guest_plan resolve_ok(const struct guest_facts *f)
{
	struct guest_plan p;
	uk_error err = { 0 };
	if (guest_plan_resolve(f, &p, &err) < 0)
		fail_msg("resolve: %s", err.msg);
	return p;
}

static void assert_devices(const struct guest_plan *p, const char *want)
{
	char got[256] = "";
	for (size_t i = 0; i < p->n_devices; i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s:%s", i ? " " : "",
			 p->devices[i].kind == GUEST_DEV_NET ? "net" : "block", p->devices[i].name);
	assert_string_equal(got, want);
}

/* Each framework's VM: machine, firmware, exit, devices, DHCP. */
static void vms(void **state)
{
	(void)state;
	struct guest_binary uk = unikraft_bin(), bz = boot_bin(GUEST_BOOT_BZIMAGE), pvh = boot_bin(GUEST_BOOT_PVH),
			    mb = boot_bin(GUEST_BOOT_MULTIBOOT);
	const char *blk_n[] = { "storage" }, *net_n[] = { "service0" };
	enum guest_dev_kind blk_k[] = { GUEST_DEV_BLOCK }, net_k[] = { GUEST_DEV_NET };
	struct guest_binary s_blk = solo5_bin(blk_n, blk_k, 1), s_net = solo5_bin(net_n, net_k, 1),
			    s_none = solo5_bin(NULL, NULL, 0);
	const struct {
		const char *type;
		const struct guest_binary *bin;
		bool net, disk;
		enum guest_netcfg cfg;
		enum guest_framework fw;
		enum guest_machine machine;
		enum guest_firmware firmware;
		enum guest_exit exit;
		const char *devices;
		bool dhcp;
		const char *found_by;
	} cases[] = {
		{ "unikraft", NULL, true, false, GUEST_NETCFG_AUTO, GUEST_UNIKRAFT, GUEST_MACHINE_PC, GUEST_FW_SEABIOS,
		  GUEST_EXIT_UNIKRAFT, "net:net", false, "urunc annotation unikernelType=unikraft" },
		{ NULL, &uk, true, true, GUEST_NETCFG_DHCP, GUEST_UNIKRAFT, GUEST_MACHINE_PC, GUEST_FW_SEABIOS,
		  GUEST_EXIT_UNIKRAFT, "block:disk net:net", true, "Unikraft marks" },
		/* A device needs SeaBIOS: qboot gives virtio devices no I/O space. */
		{ NULL, &s_blk, true, true, GUEST_NETCFG_AUTO, GUEST_SOLO5, GUEST_MACHINE_PC, GUEST_FW_SEABIOS,
		  GUEST_EXIT_SOLO5, "block:storage", false, "Solo5 notes (1 manifest device)" },
		{ NULL, &s_net, true, false, GUEST_NETCFG_AUTO, GUEST_SOLO5, GUEST_MACHINE_PC, GUEST_FW_SEABIOS,
		  GUEST_EXIT_SOLO5, "net:service0", true, "Solo5 notes" },
		/* No manifest device: no NIC although the pod has a network; the disk left out. */
		{ NULL, &s_none, true, true, GUEST_NETCFG_AUTO, GUEST_SOLO5, GUEST_MACHINE_PC, GUEST_FW_QBOOT,
		  GUEST_EXIT_SOLO5, "", false, "Solo5 notes (0 manifest devices)" },
		{ "mirage", &s_net, true, false, GUEST_NETCFG_AUTO, GUEST_MIRAGE, GUEST_MACHINE_PC, GUEST_FW_SEABIOS,
		  GUEST_EXIT_SOLO5, "net:service0", false, "unikernelType=mirage" },
		{ "mirage", &s_net, true, false, GUEST_NETCFG_DHCP, GUEST_MIRAGE, GUEST_MACHINE_PC, GUEST_FW_SEABIOS,
		  GUEST_EXIT_SOLO5, "net:service0", true, "unikernelType=mirage" },
		{ NULL, &bz, true, false, GUEST_NETCFG_AUTO, GUEST_LINUX, GUEST_MACHINE_MICROVM, GUEST_FW_AUTO,
		  GUEST_EXIT_DEFAULT, "net:net", true, "Linux boot protocol header" },
		{ "linux", &pvh, true, true, GUEST_NETCFG_STATIC, GUEST_LINUX, GUEST_MACHINE_MICROVM, GUEST_FW_AUTO,
		  GUEST_EXIT_DEFAULT, "block:disk net:net", false, "unikernelType=linux" },
		{ "linux", &mb, false, false, GUEST_NETCFG_AUTO, GUEST_LINUX, GUEST_MACHINE_AUTO, GUEST_FW_AUTO,
		  GUEST_EXIT_DEFAULT, "", false, "unikernelType=linux" },
		{ NULL, &pvh, true, false, GUEST_NETCFG_AUTO, GUEST_GENERIC, GUEST_MACHINE_AUTO, GUEST_FW_AUTO,
		  GUEST_EXIT_DEFAULT, "net:net", true, "no framework in the binary (pvh)" },
		/* Static on a generic guest: unikd adds nothing, the {{ip}} placeholders carry it. */
		{ NULL, &mb, true, false, GUEST_NETCFG_STATIC, GUEST_GENERIC, GUEST_MACHINE_AUTO, GUEST_FW_AUTO,
		  GUEST_EXIT_DEFAULT, "net:net", false, "(multiboot)" },
		{ NULL, NULL, false, true, GUEST_NETCFG_AUTO, GUEST_GENERIC, GUEST_MACHINE_AUTO, GUEST_FW_AUTO,
		  GUEST_EXIT_DEFAULT, "block:disk", false, "no kernel" },
		/* The annotation wins over the binary. */
		{ "linux", &uk, false, false, GUEST_NETCFG_AUTO, GUEST_LINUX, GUEST_MACHINE_AUTO, GUEST_FW_AUTO,
		  GUEST_EXIT_DEFAULT, "", false, "unikernelType=linux" },
	};
	for (size_t i = 0; i < N(cases); i++) {
		struct guest_facts f = facts(cases[i].type, cases[i].bin, cases[i].net ? &NET : NULL, cases[i].cfg);
		f.has_block_disk = cases[i].disk;
		struct guest_plan p = resolve_ok(&f);
		if (p.framework != cases[i].fw || p.machine != cases[i].machine || p.firmware != cases[i].firmware ||
		    p.exit != cases[i].exit || p.dhcp != cases[i].dhcp)
			fail_msg("case %zu: %s %s %s %s dhcp=%d", i, guest_framework_name(p.framework),
				 guest_machine_name(p.machine), guest_firmware_name(p.firmware), guest_exit_name(p.exit),
				 p.dhcp);
		assert_devices(&p, cases[i].devices);
		assert_contains(p.found_by, cases[i].found_by);
		assert_true(p.why[0] != '\0');
	}
}

/* The PIT per framework (docs/guests.md, "Timers"): only Linux on microvm goes without it,
 * and only under KVM (vmwrapper resolves "off-under-kvm" by the accelerator: test_vmwrapper's
 * plan_pit); each choice has its reason. */
static void pits(void **state)
{
	(void)state;
	struct guest_binary uk = unikraft_bin(), bz = boot_bin(GUEST_BOOT_BZIMAGE), pvh = boot_bin(GUEST_BOOT_PVH),
			    mb = boot_bin(GUEST_BOOT_MULTIBOOT);
	const char *net_n[] = { "service0" };
	enum guest_dev_kind net_k[] = { GUEST_DEV_NET };
	struct guest_binary s_net = solo5_bin(net_n, net_k, 1);
	const struct {
		const char *type;
		const struct guest_binary *bin;
		enum guest_pit pit;
		const char *why;
	} cases[] = {
		{ NULL, &uk, GUEST_PIT_ON, "Unikraft calibrates its TSC against the i8254" },
		{ "unikraft", NULL, GUEST_PIT_ON, "Unikraft calibrates its TSC against the i8254" },
		{ NULL, &s_net, GUEST_PIT_ON, "Solo5's virtio bindings calibrate the TSC against the i8254" },
		{ "mirage", &s_net, GUEST_PIT_ON, "Solo5's virtio bindings calibrate the TSC against the i8254" },
		{ NULL, &bz, GUEST_PIT_OFF_UNDER_KVM, "off under KVM (kvmclock and the LAPIC timer); on under TCG" },
		{ "linux", &pvh, GUEST_PIT_OFF_UNDER_KVM, "off under KVM" },
		{ "linux", &mb, GUEST_PIT_ON, "firmware that may time itself by the PIT" },
		{ NULL, &pvh, GUEST_PIT_ON, "unikd's hello guest sleeps by it" },
		{ NULL, &mb, GUEST_PIT_ON, "unikd's hello guest sleeps by it" },
		{ NULL, NULL, GUEST_PIT_ON, "unikd's hello guest sleeps by it" },
	};
	for (size_t i = 0; i < N(cases); i++) {
		struct guest_facts f = facts(cases[i].type, cases[i].bin, &NET, GUEST_NETCFG_AUTO);
		f.has_block_disk = !cases[i].bin;
		struct guest_plan p = resolve_ok(&f);
		if (p.pit != cases[i].pit)
			fail_msg("case %zu (%s): pit %s", i, guest_framework_name(p.framework), guest_pit_name(p.pit));
		assert_contains(p.pit_why, cases[i].why);
		assert_null(strstr(p.pit_why, "..."));
	}
	/* The names are vmwrapper's spec values. */
	assert_string_equal(guest_pit_name(GUEST_PIT_ON), "on");
	assert_string_equal(guest_pit_name(GUEST_PIT_OFF), "off");
	assert_string_equal(guest_pit_name(GUEST_PIT_OFF_UNDER_KVM), "off-under-kvm");
	assert_string_equal(guest_pit_name((enum guest_pit)99), "on");
}

/* The exact command lines. */
static void cmdlines(void **state)
{
	(void)state;
	struct guest_binary uk = unikraft_bin(), bz = boot_bin(GUEST_BOOT_BZIMAGE), pvh = boot_bin(GUEST_BOOT_PVH);
	struct guest_binary uk_old = unikraft_bin();
	snprintf(uk_old.unikraft_version, sizeof(uk_old.unikraft_version), "0.15.0");
	const char *net_n[] = { "service0" };
	enum guest_dev_kind net_k[] = { GUEST_DEV_NET };
	struct guest_binary s_net = solo5_bin(net_n, net_k, 1), s_none = solo5_bin(NULL, NULL, 0);
	static const char *const ECHO[] = { "echo", "hello, world" };
	static const char *const QUOTES[] = { "say \"hi\"", "it's", "a\\b", "it's \"x\"", "" };
	static const char *const APP[] = { "/app" };
	static const char *const X[] = { "x" };
	static const struct guest_env MIRAGE_ENV[] = { { "IGNORED", "1" } };
	const struct {
		const char *type;
		const struct guest_binary *bin;
		const struct guest_net *net;
		enum guest_netcfg cfg;
		struct guest_cmdline_in cmd;
		const char *version, *want;
	} cases[] = {
		/* Unikraft: parameters, "--", arguments; a word with a space double-quoted. */
		{ "unikraft", NULL, &NET, GUEST_NETCFG_AUTO, { .args = HELLO_ARGS, .n_args = 2 }, "0.17.0",
		  "netdev.ip=10.77.0.5/16:10.77.0.1:10.96.0.10 -- hello \"hello, world\"" },
		{ NULL, &uk, NULL, GUEST_NETCFG_AUTO, { .args = HELLO_ARGS, .n_args = 2 }, NULL,
		  "-- hello \"hello, world\"" },
		{ NULL, &uk, &NET_NODNS, GUEST_NETCFG_STATIC,
		  { .envs = ENVS, .n_envs = 2, .command = APP, .n_command = 1, .args = X, .n_args = 1 }, NULL,
		  "netdev.ip=10.0.0.2/24:10.0.0.1 env.vars=[ \"A=1\" \"B=two words\" ] -- /app x" },
		/* By DHCP: no address parameters. */
		{ NULL, &uk, &NET, GUEST_NETCFG_DHCP, { .args = X, .n_args = 1 }, NULL, "-- x" },
		/* Before 0.16.1: the three address parameters, and no env.vars. */
		{ NULL, &uk_old, &NET, GUEST_NETCFG_AUTO, { .envs = ENVS, .n_envs = 2, .args = X, .n_args = 1 }, NULL,
		  "netdev.ipv4_addr=10.77.0.5 netdev.ipv4_gw_addr=10.77.0.1 netdev.ipv4_subnet_mask=255.255.0.0 -- x" },
		{ "unikraft", NULL, &NET_NODNS, GUEST_NETCFG_AUTO, { 0 }, "v0.16.0",
		  "netdev.ipv4_addr=10.0.0.2 netdev.ipv4_gw_addr=10.0.0.1 netdev.ipv4_subnet_mask=255.255.255.0 --" },
		{ "unikraft", NULL, &NET_NODNS, GUEST_NETCFG_AUTO, { 0 }, "0.16.1",
		  "netdev.ip=10.0.0.2/24:10.0.0.1 --" },
		/* The image's line: its parameters stay before "--", its arguments give way to a command. */
		{ NULL, &uk, &NET, GUEST_NETCFG_DHCP,
		  { .image_cmdline = " vfs.fstab=[ \"fs0:/:9pfs\" ] -- /bin/app -v ", .args = X, .n_args = 1 }, NULL,
		  "vfs.fstab=[ \"fs0:/:9pfs\" ] -- /bin/app -v x" },
		{ NULL, &uk, &NET, GUEST_NETCFG_DHCP,
		  { .image_cmdline = "vfs.fstab=[ \"fs0:/:9pfs\" ] -- /bin/app -v", .command = APP, .n_command = 1 },
		  NULL, "vfs.fstab=[ \"fs0:/:9pfs\" ] -- /app" },
		/* Without "--", Unikraft reads the whole line as arguments; a quoted "--" is a word. */
		{ NULL, &uk, NULL, GUEST_NETCFG_AUTO, { .image_cmdline = "a \"b -- c\"", .args = X, .n_args = 1 }, NULL,
		  "-- a \"b -- c\" x" },
		{ NULL, &uk, NULL, GUEST_NETCFG_AUTO, { 0 }, NULL, "" },
		/* Quotes: '...' (literal in every release) where '"' or '\' is in the word. */
		{ NULL, &uk, NULL, GUEST_NETCFG_AUTO, { .args = QUOTES, .n_args = 5 }, NULL,
		  "-- 'say \"hi\"' \"it's\" 'a\\b' 'it'\"'\"'s \"x\"'" },
		/* Solo5: the plain words. */
		{ NULL, &s_none, &NET, GUEST_NETCFG_AUTO,
		  { .envs = ENVS, .n_envs = 1, .image_cmdline = "arg1 arg2", .args = X, .n_args = 1 }, NULL,
		  "A=1 arg1 arg2 x" },
		/* MirageOS: options, then words, "..." with '\' escapes; no environment. */
		{ "mirage", &s_net, &NET, GUEST_NETCFG_AUTO,
		  { .envs = MIRAGE_ENV, .n_envs = 1, .args = QUOTES, .n_args = 4 }, NULL,
		  "--ipv4=10.77.0.5/16 --ipv4-gateway=10.77.0.1 \"say \\\"hi\\\"\" it's \"a\\\\b\" \"it's \\\"x\\\"\"" },
		{ "mirage", &s_none, &NET, GUEST_NETCFG_AUTO, { .image_cmdline = "--hello=x" }, NULL, "--hello=x" },
		/* Linux: the image's kernel parameters, ip=, the environment, --, init's arguments. */
		{ NULL, &bz, &NET, GUEST_NETCFG_AUTO,
		  { .envs = ENVS, .n_envs = 2, .command = ECHO, .n_command = 2, .image_cmdline = "console=ttyS0 quiet" },
		  NULL, "console=ttyS0 quiet A=1 \"B=two words\" -- echo \"hello, world\"" },
		{ "linux", &bz, &NET, GUEST_NETCFG_STATIC, { .image_cmdline = "console=ttyS0", .args = X, .n_args = 1 },
		  NULL, "console=ttyS0 ip=10.77.0.5::10.77.0.1:255.255.0.0:pod1:eth0:off:10.96.0.10 -- x" },
		{ "linux", &bz, &NET_NODNS, GUEST_NETCFG_STATIC, { 0 }, NULL,
		  "ip=10.0.0.2::10.0.0.1:255.255.255.0::eth0:off" },
		{ NULL, &bz, NULL, GUEST_NETCFG_AUTO,
		  { .image_cmdline = "console=ttyS0 -- /bin/sh -c true", .args = X, .n_args = 1 }, NULL,
		  "console=ttyS0 -- /bin/sh -c true x" },
		{ NULL, &bz, NULL, GUEST_NETCFG_AUTO,
		  { .image_cmdline = "console=ttyS0 -- /bin/sh", .command = ECHO, .n_command = 2 }, NULL,
		  "console=ttyS0 -- echo \"hello, world\"" },
		/* Generic: today's guest_cmdline_build. */
		{ NULL, &pvh, &NET, GUEST_NETCFG_AUTO,
		  { .envs = ENVS, .n_envs = 1, .image_cmdline = "print:{{ip}}", .args = X, .n_args = 1 }, NULL,
		  "A=1 print:{{ip}} x" },
	};
	for (size_t i = 0; i < N(cases); i++) {
		struct guest_facts f = facts(cases[i].type, cases[i].bin, cases[i].net, cases[i].cfg);
		f.urunc_version = cases[i].version;
		f.cmd = cases[i].cmd;
		f.cmd.field_prefix = "config.";
		struct guest_plan p;
		uk_error err = { 0 };
		if (guest_plan_resolve(&f, &p, &err) < 0)
			fail_msg("case %zu: %s", i, err.msg);
		if (strcmp(p.cmdline, cases[i].want) != 0)
			fail_msg("case %zu:\n got: %s\nwant: %s", i, p.cmdline, cases[i].want);
	}
}

/* Every refusal names its field or device, and leaves the caller's plan as it was. */
static void refusals(void **state)
{
	(void)state;
	struct guest_binary uk = unikraft_bin(), bz = boot_bin(GUEST_BOOT_BZIMAGE), pvh = boot_bin(GUEST_BOOT_PVH);
	const char *n2[] = { "service0", "service1" }, *b2[] = { "storage", "b2" }, *s1[] = { "storage" };
	enum guest_dev_kind k_nn[] = { GUEST_DEV_NET, GUEST_DEV_NET }, k_bb[] = { GUEST_DEV_BLOCK, GUEST_DEV_BLOCK },
			    k_b[] = { GUEST_DEV_BLOCK }, k_n[] = { GUEST_DEV_NET };
	struct guest_binary two_nets = solo5_bin(n2, k_nn, 2), two_blocks = solo5_bin(b2, k_bb, 2),
			    one_block = solo5_bin(s1, k_b, 1), one_net = solo5_bin(n2, k_n, 1);
	struct guest_binary hvt = solo5_bin(NULL, NULL, 0);
	hvt.solo5_abi_target = 1;
	static const char *const SPACE[] = { "ok", "hello, world" };
	static const char *const DQ[] = { "say \"hi\"" };
	static const char *const DASHES[] = { "sh", "--", "x" };
	static const struct guest_env DOT[] = { { "a.b", "1" } };
	static const struct guest_env BRACKET[] = { { "OK", "1" }, { "L", "[a]" } };
	static const struct guest_net BAD_HOST = { .ip = "10.0.0.2", .prefix = 24, .hostname = "a b" };
	static const struct guest_net BAD_PREFIX = { .ip = "10.0.0.2", .prefix = 33 };
	static const struct guest_net NO_IP = { .prefix = 24 };
	const struct {
		const char *type, *version;
		const struct guest_binary *bin;
		const struct guest_net *net;
		bool disk;
		struct guest_cmdline_in cmd;
		int rc;
		const char *msg;
	} cases[] = {
		{ "foo", NULL, NULL, NULL, false, { 0 }, -EINVAL,
		  "annotation com.urunc.unikernel.unikernelType=\"foo\" is not a unikernel type" },
		{ "hermit", NULL, NULL, NULL, false, { 0 }, -EINVAL,
		  "annotation com.urunc.unikernel.unikernelType=\"hermit\": unikd has no contract" },
		{ "Unikraft", NULL, NULL, NULL, false, { 0 }, -EINVAL, "unikernelType=\"Unikraft\"" },
		{ "unikraft", "0.17.0 beta", NULL, NULL, false, { 0 }, -EINVAL,
		  "annotation com.urunc.unikernel.unikernelVersion=\"0.17.0 beta\"" },
		{ "unikraft", "0123456789012345678901234567890123", NULL, NULL, false, { 0 }, -EINVAL,
		  "annotation com.urunc.unikernel.unikernelVersion is longer than 31 bytes" },
		/* Devices the manifest declares but the pod cannot provide. */
		{ NULL, NULL, &one_net, NULL, false, { 0 }, -EINVAL,
		  "the Solo5 manifest declares net device \"service0\", but the pod has no network" },
		{ NULL, NULL, &two_nets, &NET, false, { 0 }, -EINVAL,
		  "the Solo5 manifest declares net device \"service1\", but a pod has one network interface" },
		{ NULL, NULL, &one_block, &NET, false, { 0 }, -EINVAL,
		  "the Solo5 manifest declares block device \"storage\", but the image has no urunc block disk" },
		{ NULL, NULL, &two_blocks, NULL, true, { 0 }, -EINVAL,
		  "the Solo5 manifest declares block device \"b2\", but the image has one urunc block disk" },
		{ "mirage", NULL, &two_nets, &NET, false, { 0 }, -EINVAL, "net device \"service1\"" },
		{ NULL, NULL, &hvt, NULL, false, { 0 }, -EINVAL, "built for the hvt target" },
		/* Words a framework cannot carry. */
		{ NULL, NULL, &hvt, NULL, false, { 0 }, -EINVAL, "hvt" },
		{ NULL, NULL, &pvh, NULL, false, { .args = SPACE, .n_args = 2 }, -EINVAL,
		  "config.args[1] holds white space" },
		{ NULL, NULL, &one_block, NULL, true, { .args = SPACE, .n_args = 2 }, -EINVAL,
		  "config.args[1] holds white space" },
		{ NULL, NULL, &bz, NULL, false, { .args = DQ, .n_args = 1 }, -EINVAL,
		  "config.args[0] holds a double quote" },
		{ NULL, NULL, &bz, NULL, false, { .command = DQ, .n_command = 1 }, -EINVAL,
		  "config.command[0] holds a double quote" },
		{ NULL, NULL, &bz, NULL, false, { .command = DASHES, .n_command = 3 }, -EINVAL,
		  "config.command[1] is \"--\"" },
		{ NULL, NULL, &bz, NULL, false, { .envs = DOT, .n_envs = 1 }, -EINVAL, "config.envs[0].key holds a \".\"" },
		{ NULL, NULL, &uk, NULL, false, { .envs = BRACKET, .n_envs = 2 }, -EINVAL,
		  "config.envs[1] ends with \"]\"" },
		/* The pod network's fields go into command lines as they are. */
		{ NULL, NULL, &uk, &BAD_HOST, false, { 0 }, -EINVAL, "pod network: the hostname \"a b\"" },
		{ NULL, NULL, &uk, &BAD_PREFIX, false, { 0 }, -EINVAL, "pod network: prefix length 33" },
		{ NULL, NULL, &uk, &NO_IP, false, { 0 }, -EINVAL, "pod network: no address" },
	};
	for (size_t i = 0; i < N(cases); i++) {
		struct guest_facts f = facts(cases[i].type, cases[i].bin, cases[i].net, GUEST_NETCFG_AUTO);
		f.urunc_version = cases[i].version;
		f.has_block_disk = cases[i].disk;
		f.cmd = cases[i].cmd;
		f.cmd.field_prefix = "config.";
		struct guest_plan p;
		memset(&p, 0x5a, sizeof(p));
		uk_error err = { 0 };
		int r = guest_plan_resolve(&f, &p, &err);
		if (r != cases[i].rc)
			fail_msg("case %zu: got %d (%s), want %d", i, r, err.msg, cases[i].rc);
		assert_contains(err.msg, cases[i].msg);
		assert_int_equal(p.cmdline[0], 0x5a);
	}
}

/* The kernel's and Unikraft's limits on words: at the limit it builds, one past is -E2BIG. */
static void word_limits(void **state)
{
	(void)state;
	struct guest_binary bz = boot_bin(GUEST_BOOT_BZIMAGE), uk = unikraft_bin();
	static const char *words[64];
	static struct guest_env envs[40];
	for (size_t i = 0; i < N(words); i++)
		words[i] = "w";
	for (size_t i = 0; i < N(envs); i++)
		envs[i] = (struct guest_env){ "K", "v" };
	struct guest_plan p;
	uk_error err = { 0 };

	struct guest_facts f = facts(NULL, &bz, NULL, GUEST_NETCFG_AUTO);
	f.cmd.envs = envs;
	f.cmd.n_envs = 30;
	f.cmd.args = words;
	f.cmd.n_args = 31;
	assert_int_equal(guest_plan_resolve(&f, &p, &err), 0);
	f.cmd.n_envs = 31;
	assert_int_equal(guest_plan_resolve(&f, &p, &err), -E2BIG);
	assert_contains(err.msg, "config.envs has 31 entries");
	f.cmd.n_envs = 0;
	f.cmd.n_args = 32;
	assert_int_equal(guest_plan_resolve(&f, &p, &err), -E2BIG);
	assert_contains(err.msg, "32 arguments for init");

	/* Unikraft: "--" and 58 arguments fill its 59 words. */
	f = facts(NULL, &uk, NULL, GUEST_NETCFG_AUTO);
	f.cmd.args = words;
	f.cmd.n_args = 58;
	assert_int_equal(guest_plan_resolve(&f, &p, &err), 0);
	f.cmd.n_args = 59;
	assert_int_equal(guest_plan_resolve(&f, &p, &err), -E2BIG);
	assert_contains(err.msg, "config.envs, config.command and config.args make a Unikraft command line of 60 words");
	/* env.vars=[ and ] count too: 1 + 7 + 1, "--", 49 arguments. */
	f.cmd.n_args = 49;
	f.cmd.envs = envs;
	f.cmd.n_envs = 7;
	assert_int_equal(guest_plan_resolve(&f, &p, &err), 0);
	f.cmd.n_envs = 8;
	assert_int_equal(guest_plan_resolve(&f, &p, &err), -E2BIG);

	/* The line's own bound names the item that overflows it. */
	static char big[GUEST_CMDLINE_MAX];
	memset(big, 'b', sizeof(big) - 1);
	const char *args[] = { big };
	f = facts("unikraft", NULL, NULL, GUEST_NETCFG_AUTO);
	f.cmd.args = args;
	f.cmd.n_args = 1;
	assert_int_equal(guest_plan_resolve(&f, &p, &err), -E2BIG);
	assert_contains(err.msg, "config.args[0] makes the kernel command line longer than 4095 bytes");
}

static void names(void **state)
{
	(void)state;
	assert_string_equal(guest_framework_name(GUEST_UNIKRAFT), "unikraft");
	assert_string_equal(guest_framework_name(GUEST_SOLO5), "solo5");
	assert_string_equal(guest_framework_name(GUEST_MIRAGE), "mirage");
	assert_string_equal(guest_framework_name(GUEST_LINUX), "linux");
	assert_string_equal(guest_framework_name(GUEST_GENERIC), "generic");
	assert_string_equal(guest_exit_name(GUEST_EXIT_SOLO5), "solo5");
	assert_string_equal(guest_machine_name(GUEST_MACHINE_Q35), "q35");
	assert_string_equal(guest_firmware_name(GUEST_FW_SEABIOS), "seabios");
	assert_string_equal(guest_firmware_name((enum guest_firmware)99), "auto");
}

/* The version: the annotation's, else the banner's; the why says what was chosen. */
static void version_and_why(void **state)
{
	(void)state;
	struct guest_binary uk = unikraft_bin();
	struct guest_facts f = facts(NULL, &uk, &NET, GUEST_NETCFG_AUTO);
	struct guest_plan p = resolve_ok(&f);
	assert_string_equal(p.version, "0.17.0");
	assert_contains(p.why, "SeaBIOS");
	assert_contains(p.why, "netdev.ip");
	f.urunc_type = "unikraft";
	f.urunc_version = "0.16.1";
	p = resolve_ok(&f);
	assert_string_equal(p.version, "0.16.1");
	assert_contains(p.found_by, "unikernelType=unikraft unikernelVersion=0.16.1");
	/* A version unikd cannot read gets the current forms. */
	f.urunc_version = "latest";
	p = resolve_ok(&f);
	assert_contains(p.cmdline, "netdev.ip=10.77.0.5/16");

	/* What is left out is said. */
	static struct guest_env nine[9];
	for (size_t i = 0; i < N(nine); i++)
		nine[i] = (struct guest_env){ "K", "v" };
	f.cmd.envs = nine;
	f.cmd.n_envs = 9;
	p = resolve_ok(&f);
	assert_contains(p.why, "env.vars has 9 variables; a default Unikraft build keeps the first 8");
	f.urunc_version = "0.16.0";
	p = resolve_ok(&f);
	assert_contains(p.why, "environment not passed: Unikraft before 0.16.1");
	assert_null(strstr(p.cmdline, "env.vars"));
	struct guest_binary s_none = solo5_bin(NULL, NULL, 0);
	f = facts(NULL, &s_none, &NET, GUEST_NETCFG_AUTO);
	f.has_block_disk = true;
	p = resolve_ok(&f);
	assert_contains(p.why, "Solo5 (virtio): pc (Solo5's virtio target needs PCI) with qboot (no devices");
	assert_contains(p.why, "devices: none; no NIC: the manifest declares no net device");
	assert_contains(p.why, "the image's block disk is left out");
	assert_null(strstr(p.why, "..."));
	f.urunc_type = "mirage";
	f.cmd.envs = nine;
	f.cmd.n_envs = 1;
	p = resolve_ok(&f);
	assert_contains(p.why, "MirageOS: pc (Solo5's virtio target needs PCI) with");
	assert_contains(p.why, "environment not passed: MirageOS has none");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(vms),
		cmocka_unit_test(pits),
		cmocka_unit_test(cmdlines),
		cmocka_unit_test(refusals),
		cmocka_unit_test(word_limits),
		cmocka_unit_test(names),
		cmocka_unit_test(version_and_why),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
