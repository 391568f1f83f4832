/* The generic contract: a kernel no framework claims (the project's hello guest, PVH and
 * multiboot kernels, disk images). The machine follows its boot protocol in vmwrapper (PVH:
 * microvm, multiboot: pc with qboot); the command line is guest_cmdline_build's. */
#include "contract.h"
#include "probe.h"

static int plan(const struct guest_facts *f, struct guest_plan *p, uk_error *err)
{
	int r;
	p->machine = GUEST_MACHINE_AUTO;
	p->firmware = GUEST_FW_AUTO;
	p->exit = GUEST_EXIT_DEFAULT;
	/* Nothing says how the kernel keeps time; unikd's own hello guest sleeps by the PIT. */
	guest_set_pit(p, GUEST_PIT_ON, "a kernel no framework claims may keep time by the PIT (unikd's hello guest "
				       "sleeps by it); unikd.io/pit: off drops it");
	if ((r = guest_default_devices(f, p, err)) < 0 || (r = guest_blockdevs_add(f, p, false, err)) < 0 ||
	    (r = guest_mounts_none(f, p, "generic",
				   "unikd has no way to tell a kernel no framework claims where to mount a share", err)) < 0)
		return r;
	if ((r = guest_cmdline_build(&f->cmd, p->cmdline, sizeof(p->cmdline), err)) < 0)
		return r;
	/* Static: unikd adds nothing, the command line's placeholders carry the address. */
	p->dhcp = guest_plan_has_net(p) && f->netcfg != GUEST_NETCFG_STATIC;
	guest_why(p, "generic kernel: machine and firmware from its boot protocol (%s)",
		  f->bin ? guest_boot_name(f->bin->boot) : "none: a disk image");
	guest_why_devices(p);
	guest_why_volumes(p);
	guest_why_net(p, false, "");
	guest_why(p, "command line: envs, command, args as plain words");
	guest_why(p, "exit: the isa-debug-exit value");
	return 0;
}

const struct guest_contract guest_contract_generic = { .framework = GUEST_GENERIC, .plan = plan };
