/* The Unikraft contract: pc with SeaBIOS, virtio devices, and a command line of library
 * parameters (netdev.ip, env.vars), "--", then the application's arguments, as
 * ukargparse and uklibparam read it (README.md). Its halt is 41 and its crash 42. */
#include <stdio.h>
#include <string.h>

#include "contract.h"

/* Unikraft's argv holds CONFIG_LIBUKBOOT_MAXNBARGS (60 by default) words, the kernel path
 * included; past that, the rest of the line is glued into the last word. */
#define UK_MAX_WORDS 59
/* env.vars keeps CONFIG_LIBPOSIX_ENVIRON_LIBPARAM_MAXCOUNT (8 by default) variables. */
#define UK_ENV_DEFAULT_MAX 8

static const char *nz(const char *s)
{
	return s ? s : "";
}

/* Before 0.16.1 the address took three parameters (urunc's UnikraftCompatVersion); an
 * unknown version gets the current form. */
static bool legacy_version(const char *v)
{
	unsigned x[3];
	return guest_version_parse(v, x) && x[0] == 0 && (x[1] < 16 || (x[1] == 16 && x[2] < 1));
}

static int add_netdev(struct guest_line *l, const struct guest_net *n, bool legacy, uk_error *err)
{
	char w[3][256] = { "", "", "" }, mask[16];
	if (legacy) {
		snprintf(w[0], sizeof(w[0]), "netdev.ipv4_addr=%s", n->ip);
		if (n->gateway && *n->gateway)
			snprintf(w[1], sizeof(w[1]), "netdev.ipv4_gw_addr=%s", n->gateway);
		snprintf(w[2], sizeof(w[2]), "netdev.ipv4_subnet_mask=%s", guest_net_mask(n, mask));
	} else {
		/* cidr[:gw[:dns0[:dns1[:hostname[:domain]]]]] (lib/uknetdev) */
		snprintf(w[0], sizeof(w[0]), "netdev.ip=%s/%u", n->ip, n->prefix);
		if (n->gateway && *n->gateway) {
			guest_textf(w[0], sizeof(w[0]), ":%s", n->gateway);
			if (n->dns && *n->dns)
				guest_textf(w[0], sizeof(w[0]), ":%s", n->dns);
		}
	}
	for (size_t i = 0; i < 3; i++)
		if (guest_line_raw(l, w[i], strlen(w[i])) < 0)
			return uk_err(err, E2BIG, "the network parameters make the kernel command line longer than %zu bytes",
				      l->cap - 1);
	return 0;
}

/* env.vars=[ "K=V" ... ]: a list item whose last byte is ']' would end the list. */
static int add_envs(struct guest_line *l, const struct guest_cmdline_in *in, uk_error *err)
{
	if (!in->n_envs)
		return 0;
	for (size_t i = 0; i < in->n_envs; i++) {
		const char *v = nz(in->envs[i].value);
		if (*v && v[strlen(v) - 1] == ']')
			return uk_err(err, EINVAL, "%senvs[%zu] ends with \"]\", which ends Unikraft's env.vars list",
				      l->prefix, i);
	}
	if (guest_line_raw(l, "env.vars=[", 10) < 0)
		return guest_line_too_long(l, "envs", 0, err);
	for (size_t i = 0; i < in->n_envs; i++) {
		int r = guest_line_env(l, GUEST_QUOTING_UNIKRAFT, true, &in->envs[i], i, err);
		if (r < 0)
			return r;
	}
	if (guest_line_raw(l, "]", 1) < 0)
		return guest_line_too_long(l, "envs", in->n_envs - 1, err);
	return 0;
}

/* The image's parameters (before its "--"), "--", then the command or the image's default
 * arguments (after its "--", or its whole line without one: Unikraft's own reading), then
 * the args. */
static int add_app(struct guest_line *l, const struct guest_cmdline_in *in, const struct guest_plan *p, uk_error *err)
{
	const char *img = nz(in->image_cmdline);
	struct guest_span before, after;
	bool dashes;
	int r;
	guest_split_dashes(img, GUEST_QUOTING_UNIKRAFT, &before, &after, &dashes);
	struct guest_span app = dashes ? after : before;
	if (dashes && guest_line_raw(l, img + before.at, before.len) < 0)
		return uk_err(err, E2BIG, "the image's default command line makes the kernel command line longer than %zu bytes",
			      l->cap - 1);
	/* After the image's parameters: its own vfs.fstab (an initrd root) is mounted first. */
	if ((r = guest_mounts_fstab(l, p, err)) < 0)
		return r;
	if (guest_line_raw(l, "--", 2) < 0 || (!in->n_command && guest_line_raw(l, img + app.at, app.len) < 0))
		return uk_err(err, E2BIG, "the image's default command line makes the kernel command line longer than %zu bytes",
			      l->cap - 1);
	r = guest_line_words(l, GUEST_QUOTING_UNIKRAFT, in->command, in->n_command, "command", err);
	if (r < 0)
		return r;
	return guest_line_words(l, GUEST_QUOTING_UNIKRAFT, in->args, in->n_args, "args", err);
}

/* Does a word of the line, as written, end with "]" once its quotes are gone? (How
 * uklibparam sees the end of a list.) */
static bool ends_list(const char *w, size_t n)
{
	if (n >= 2 && (w[n - 1] == '"' || w[n - 1] == '\''))
		n--;
	return n >= 1 && w[n - 1] == ']';
}

/* How many vfs.fstab entries the image's parameters (before its "--") give: uklibparam adds
 * ours to them, in one table of UK_FSTAB_MAX. A word "vfs.fstab=X" is one; a list
 * "vfs.fstab=[ A B ]" as many as it holds. */
static size_t image_fstab_entries(const char *img)
{
	struct guest_span before, after, w;
	bool dashes, list = false;
	size_t pos = 0, count = 0;
	guest_split_dashes(img, GUEST_QUOTING_UNIKRAFT, &before, &after, &dashes);
	if (!dashes)
		return 0;
	while (guest_next_word(img + before.at, before.len, &pos, GUEST_QUOTING_UNIKRAFT, &w)) {
		const char *t = img + before.at + w.at;
		size_t n = w.len;
		if (!list && (n < 10 || strncmp(t, "vfs.fstab=", 10) != 0))
			continue;
		if (!list) {
			t += 10, n -= 10;
			list = n > 0 && t[0] == '[';
			if (list)
				t++, n--;
		}
		bool end = list && ends_list(t, n);
		count += n > (size_t)end; /* "]" alone ends the list and is no entry */
		list = list && !end;
	}
	return count;
}

static int cmdline(const struct guest_facts *f, struct guest_plan *p, bool legacy, bool static_net, uk_error *err)
{
	const struct guest_cmdline_in *in = &f->cmd;
	struct guest_line l;
	int r;
	guest_line_init(&l, p->cmdline, sizeof(p->cmdline), in->field_prefix);
	if (static_net && (r = add_netdev(&l, f->net, legacy, err)) < 0)
		return r;
	if (!legacy && (r = add_envs(&l, in, err)) < 0)
		return r;
	if ((r = add_app(&l, in, p, err)) < 0)
		return r;
	if (strcmp(l.buf, "--") == 0)
		l.buf[0] = '\0'; /* nothing to pass */
	size_t words = guest_count_words(l.buf, strlen(l.buf), GUEST_QUOTING_UNIKRAFT);
	if (words > UK_MAX_WORDS)
		return uk_err(err, E2BIG, "%senvs, %scommand and %sargs%s make a Unikraft command line of %zu words; Unikraft reads %d (CONFIG_LIBUKBOOT_MAXNBARGS 60, the kernel path included) and glues the rest into the last",
			      l.prefix, l.prefix, l.prefix, p->n_mounts ? " (with the mounts' vfs.fstab)" : "", words,
			      UK_MAX_WORDS);
	return 0;
}

static int plan(const struct guest_facts *f, struct guest_plan *p, uk_error *err)
{
	int r;
	p->machine = GUEST_MACHINE_PC;
	p->firmware = GUEST_FW_SEABIOS;
	p->exit = GUEST_EXIT_UNIKRAFT;
	/* plat/kvm's tscclock.c: without a TSC frequency from the hypervisor (CPUID
	 * 0x40000010, which QEMU's default CPU lacks, under KVM too) it counts 0.1 s on i8254
	 * channel 0, which without a PIT never ends. */
	guest_set_pit(p, GUEST_PIT_ON,
		      "Unikraft calibrates its TSC against the i8254 (0.17 without a PIT: stuck at 100% of a core in "
		      "\"Calibrating TSC clock against i8254 timer\")");
	guest_why(p, "Unikraft %s: pc with SeaBIOS (Unikraft 0.17's memory map breaks under qboot and microvm)",
		  p->version[0] ? p->version : "(version unknown: the current parameter forms)");
	if ((r = guest_default_devices(f, p, err)) < 0 || (r = guest_blockdevs_add(f, p, false, err)) < 0 ||
	    (r = guest_mounts_unikraft(f, p, image_fstab_entries(nz(f->cmd.image_cmdline)), err)) < 0)
		return r;
	guest_why_devices(p);
	guest_why_volumes(p);
	bool legacy = legacy_version(p->version), static_net = guest_net_static(f, p, true);
	p->dhcp = guest_plan_has_net(p) && !static_net;
	if ((r = cmdline(f, p, legacy, static_net, err)) < 0) {
		p->cmdline[0] = '\0';
		return r;
	}
	guest_why_net(p, static_net,
		      legacy ? "netdev.ipv4_addr, netdev.ipv4_gw_addr, netdev.ipv4_subnet_mask: before 0.16.1"
			     : "netdev.ip");
	guest_why(p, "command line: library parameters%s, --, then the application's arguments",
		  p->n_mounts ? " (the mounts in vfs.fstab)" : "");
	if (legacy && f->cmd.n_envs)
		guest_why(p, "environment not passed: Unikraft before 0.16.1 takes no env.vars");
	else if (f->cmd.n_envs > UK_ENV_DEFAULT_MAX)
		guest_why(p, "env.vars has %zu variables; a default Unikraft build keeps the first %d",
			  f->cmd.n_envs, UK_ENV_DEFAULT_MAX);
	guest_why(p, "exit: 41 is a halt, 42 a crash");
	return 0;
}

const struct guest_contract guest_contract_unikraft = { .framework = GUEST_UNIKRAFT, .plan = plan };
