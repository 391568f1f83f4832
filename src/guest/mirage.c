/* The MirageOS contract: a Solo5 virtio guest (solo5.c decides the VM) whose command line
 * mirage-bootvar splits ("…" groups, '\' escapes) and Mirage's runtime reads as options:
 * the static address is --ipv4=IP/PREFIX --ipv4-gateway=GW, as urunc gives it. */
#include <stdio.h>
#include <string.h>

#include "contract.h"

static int add_net(struct guest_line *l, const struct guest_net *n, uk_error *err)
{
	char ip[96], gw[96] = "";
	snprintf(ip, sizeof(ip), "--ipv4=%s/%u", n->ip, n->prefix);
	if (n->gateway && *n->gateway)
		snprintf(gw, sizeof(gw), "--ipv4-gateway=%s", n->gateway);
	if (guest_line_raw(l, ip, strlen(ip)) < 0 || guest_line_raw(l, gw, strlen(gw)) < 0)
		return uk_err(err, E2BIG, "the network options make the kernel command line longer than %zu bytes",
			      l->cap - 1);
	return 0;
}

static int cmdline(const struct guest_facts *f, struct guest_plan *p, bool static_net, uk_error *err)
{
	const struct guest_cmdline_in *in = &f->cmd;
	struct guest_line l;
	int r;
	guest_line_init(&l, p->cmdline, sizeof(p->cmdline), in->field_prefix);
	if (static_net && (r = add_net(&l, f->net, err)) < 0)
		return r;
	if (in->n_command) {
		r = guest_line_words(&l, GUEST_QUOTING_MIRAGE, in->command, in->n_command, "command", err);
		if (r < 0)
			return r;
	} else if (in->image_cmdline && guest_line_raw(&l, in->image_cmdline, strlen(in->image_cmdline)) < 0) {
		return uk_err(err, E2BIG, "the image's default command line makes the kernel command line longer than %zu bytes",
			      l.cap - 1);
	}
	return guest_line_words(&l, GUEST_QUOTING_MIRAGE, in->args, in->n_args, "args", err);
}

static int plan(const struct guest_facts *f, struct guest_plan *p, uk_error *err)
{
	int r;
	char label[48];
	snprintf(label, sizeof(label), "MirageOS%s%s", p->version[0] ? " " : "", p->version);
	if ((r = guest_solo5_vm(f, p, label, err)) < 0)
		return r;
	bool static_net = guest_net_static(f, p, true);
	p->dhcp = guest_plan_has_net(p) && !static_net;
	if ((r = cmdline(f, p, static_net, err)) < 0) {
		p->cmdline[0] = '\0';
		return r;
	}
	guest_why_net(p, static_net, "--ipv4, --ipv4-gateway");
	guest_why(p, "command line: options, then command and args, double-quoted where needed");
	if (f->cmd.n_envs)
		guest_why(p, "environment not passed: MirageOS has none");
	guest_why(p, "exit: the last solo5_exit(N) on the console, solo5_abort() a crash");
	return 0;
}

const struct guest_contract guest_contract_mirage = { .framework = GUEST_MIRAGE, .plan = plan };
