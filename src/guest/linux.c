/* The Linux contract: the kernel's own command line. Kernel parameters (the image's default
 * line before its "--", or all of it), ip= when static, the environment as KEY=value words
 * (the kernel hands unknown ones to init), then "--" and init's arguments. Words are split
 * by the kernel's next_arg: "…" groups a word, a '"' inside one cannot be carried. */
#include <stdio.h>
#include <string.h>

#include "contract.h"
#include "probe.h"

/* CONFIG_INIT_ENV_ARG_LIMIT (32): init's environment holds HOME and TERM and 30 more, its
 * argv init's name and 31 more; one past either and the kernel panics at boot. */
#define LINUX_MAX_ENVS 30
#define LINUX_MAX_ARGS 31

static const char *nz(const char *s)
{
	return s ? s : "";
}

/* ip=<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>
 * (Documentation/admin-guide/nfs/nfsroot.rst) */
static int add_ip(struct guest_line *l, const struct guest_net *n, uk_error *err)
{
	char w[512], mask[16];
	snprintf(w, sizeof(w), "ip=%s::%s:%s:%s:eth0:off", n->ip, nz(n->gateway), guest_net_mask(n, mask),
		 nz(n->hostname));
	if (n->dns && *n->dns)
		guest_textf(w, sizeof(w), ":%s", n->dns);
	if (guest_line_raw(l, w, strlen(w)) < 0)
		return uk_err(err, E2BIG, "the ip= parameter makes the kernel command line longer than %zu bytes",
			      l->cap - 1);
	return 0;
}

static int add_envs(struct guest_line *l, const struct guest_cmdline_in *in, uk_error *err)
{
	if (in->n_envs > LINUX_MAX_ENVS)
		return uk_err(err, E2BIG, "%senvs has %zu entries; the Linux kernel hands init at most %d (CONFIG_INIT_ENV_ARG_LIMIT 32, HOME and TERM included) and panics past that",
			      l->prefix, in->n_envs, LINUX_MAX_ENVS);
	for (size_t i = 0; i < in->n_envs; i++) {
		if (in->envs[i].key && strchr(in->envs[i].key, '.'))
			return uk_err(err, EINVAL, "%senvs[%zu].key holds a \".\": the Linux kernel takes such a word for a module parameter and does not hand it to init",
				      l->prefix, i);
		int r = guest_line_env(l, GUEST_QUOTING_LINUX, false, &in->envs[i], i, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* A "--" among init's arguments would end them: the kernel drops what follows. */
static int check_init_words(const struct guest_line *l, const char *const *w, size_t n, const char *field,
			    size_t *count, uk_error *err)
{
	for (size_t i = 0; i < n; i++) {
		if (!w[i] || !*w[i])
			continue;
		if (strcmp(w[i], "--") == 0)
			return uk_err(err, EINVAL, "%s%s[%zu] is \"--\", which the Linux kernel reads as the end of init's arguments",
				      l->prefix, field, i);
		(*count)++;
	}
	return 0;
}

static int add_init(struct guest_line *l, const struct guest_cmdline_in *in, const char *img,
		    const struct guest_span *defaults, uk_error *err)
{
	size_t count = in->n_command ? 0 : guest_count_words(img + defaults->at, defaults->len, GUEST_QUOTING_LINUX);
	int r;
	if ((r = check_init_words(l, in->command, in->n_command, "command", &count, err)) < 0 ||
	    (r = check_init_words(l, in->args, in->n_args, "args", &count, err)) < 0)
		return r;
	if (count > LINUX_MAX_ARGS)
		return uk_err(err, E2BIG, "%scommand and %sargs make %zu arguments for init; the Linux kernel hands it at most %d (CONFIG_INIT_ENV_ARG_LIMIT 32) and panics past that",
			      l->prefix, l->prefix, count, LINUX_MAX_ARGS);
	if (count == 0)
		return 0;
	if (guest_line_raw(l, "--", 2) < 0 ||
	    (!in->n_command && guest_line_raw(l, img + defaults->at, defaults->len) < 0))
		return uk_err(err, E2BIG, "the image's default command line makes the kernel command line longer than %zu bytes",
			      l->cap - 1);
	if ((r = guest_line_words(l, GUEST_QUOTING_LINUX, in->command, in->n_command, "command", err)) < 0)
		return r;
	return guest_line_words(l, GUEST_QUOTING_LINUX, in->args, in->n_args, "args", err);
}

static int cmdline(const struct guest_facts *f, struct guest_plan *p, bool static_net, uk_error *err)
{
	const struct guest_cmdline_in *in = &f->cmd;
	const char *img = nz(in->image_cmdline);
	struct guest_span params, defaults;
	bool dashes;
	struct guest_line l;
	int r;
	guest_split_dashes(img, GUEST_QUOTING_LINUX, &params, &defaults, &dashes);
	/* x86 Linux keeps COMMAND_LINE_SIZE (2048) bytes of it, NUL included; a longer line
	 * hangs the boot before the console (measured: Debian 6.1 on microvm). */
	_Static_assert(GUEST_LINUX_CMDLINE_MAX <= sizeof(p->cmdline), "the plan's buffer holds a Linux line");
	guest_line_init(&l, p->cmdline, GUEST_LINUX_CMDLINE_MAX, in->field_prefix);
	if (guest_line_raw(&l, img + params.at, params.len) < 0)
		return uk_err(err, E2BIG, "the image's default command line is longer than %zu bytes", l.cap - 1);
	if (static_net && (r = add_ip(&l, f->net, err)) < 0)
		return r;
	if ((r = guest_volumes_linux(&l, p, err)) < 0)
		return r;
	if ((r = add_envs(&l, in, err)) < 0)
		return r;
	return add_init(&l, in, img, &defaults, err);
}

static int plan(const struct guest_facts *f, struct guest_plan *p, uk_error *err)
{
	int r;
	enum guest_boot boot = f->bin ? f->bin->boot : GUEST_BOOT_UNKNOWN;
	p->machine = boot == GUEST_BOOT_BZIMAGE || boot == GUEST_BOOT_PVH ? GUEST_MACHINE_MICROVM : GUEST_MACHINE_AUTO;
	p->firmware = GUEST_FW_AUTO;
	p->exit = GUEST_EXIT_DEFAULT;
	/* Under KVM: kvmclock gives the TSC's frequency and the LAPIC timer does the ticks
	 * (QEMU's documented minimal microvm has pit=off). Under TCG the idle kernel wakes QEMU
	 * ~500 times a second by its own LAPIC tick whatever the PIT (measured, docs/guests.md),
	 * and without tsc_early_khz it would calibrate its TSC against the PIT: it stays. Other
	 * machines boot through firmware that may time itself by the PIT. */
	if (p->machine == GUEST_MACHINE_MICROVM)
		guest_set_pit(p, GUEST_PIT_OFF_UNDER_KVM,
			      "off under KVM (kvmclock and the LAPIC timer); on under TCG (no idle gain measured, and the "
			      "TSC may have nothing else to calibrate against)");
	else
		guest_set_pit(p, GUEST_PIT_ON, "on: the machine boots through firmware that may time itself by the PIT");
	guest_why(p, "Linux%s%s: %s", p->version[0] ? " " : "", p->version,
		  p->machine == GUEST_MACHINE_MICROVM ? "microvm (a bzImage or PVH kernel boots there fastest)"
						      : "machine from its boot protocol");
	if ((r = guest_default_devices(f, p, err)) < 0 || (r = guest_blockdevs_add(f, p, true, err)) < 0 ||
	    (r = guest_mounts_linux(f, p, err)) < 0)
		return r;
	guest_why_devices(p);
	guest_why_volumes(p);
	bool static_net = guest_net_static(f, p, false);
	p->dhcp = guest_plan_has_net(p) && !static_net;
	if ((r = cmdline(f, p, static_net, err)) < 0) {
		p->cmdline[0] = '\0';
		return r;
	}
	guest_why_net(p, static_net, "ip=");
	guest_why(p, "command line: kernel parameters%s, the environment, --, then init's arguments",
		  p->n_mounts || p->n_blockdevs ? " (the volumes in unikd.9p, unikd.blk)" : "");
	guest_why(p, "exit: the isa-debug-exit value, else QEMU's");
	return 0;
}

const struct guest_contract guest_contract_linux = { .framework = GUEST_LINUX, .plan = plan };
