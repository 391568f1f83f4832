/* The dispatcher: which framework's contract a guest gets, and how that was found (from the
 * urunc annotation, else the binary, else the generic path); and the steps contracts share. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "contract.h"
#include "probe.h"

#define URUNC_TYPE "annotation com.urunc.unikernel.unikernelType"
#define URUNC_VERSION "annotation com.urunc.unikernel.unikernelVersion"
#define VERSION_MAX (sizeof(((struct guest_plan *)0)->version) - 1)

/* urunc's unikernel types (pkg/unikontainers/unikernels): those unikd has a contract for,
 * and those it knows but cannot run. */
static const struct {
	const char *type;
	const struct guest_contract *contract;
} urunc_types[] = {
	{ "unikraft", &guest_contract_unikraft }, { "mirage", &guest_contract_mirage },
	{ "linux", &guest_contract_linux },       { "rumprun", NULL },
	{ "hermit", NULL },                       { "mewz", NULL },
	{ "includeos", NULL },                    { "osv", NULL },
	{ "freebsd", NULL },                      { "ukl", NULL },
};

const char *guest_framework_name(enum guest_framework f)
{
	static const char *const names[] = { "generic", "unikraft", "solo5", "mirage", "linux" };
	return (size_t)f < ARRAY_SIZE(names) ? names[f] : "generic";
}

const char *guest_exit_name(enum guest_exit e)
{
	static const char *const names[] = { "default", "unikraft", "solo5" };
	return (size_t)e < ARRAY_SIZE(names) ? names[e] : "default";
}

const char *guest_machine_name(enum guest_machine m)
{
	static const char *const names[] = { "auto", "microvm", "pc", "q35" };
	return (size_t)m < ARRAY_SIZE(names) ? names[m] : "auto";
}

const char *guest_firmware_name(enum guest_firmware fw)
{
	static const char *const names[] = { "auto", "qboot", "seabios" };
	return (size_t)fw < ARRAY_SIZE(names) ? names[fw] : "auto";
}

const char *guest_pit_name(enum guest_pit p)
{
	static const char *const names[] = { "on", "off", "off-under-kvm" };
	return (size_t)p < ARRAY_SIZE(names) ? names[p] : "on";
}

void guest_set_pit(struct guest_plan *p, enum guest_pit pit, const char *why)
{
	p->pit = pit;
	guest_textf(p->pit_why, sizeof(p->pit_why), "%s", why);
}

void guest_why(struct guest_plan *p, const char *fmt, ...)
{
	char part[sizeof(p->why)];
	va_list ap;
	va_start(ap, fmt);
	(void)vsnprintf(part, sizeof(part), fmt, ap); /* cut at the why's own size anyway */
	va_end(ap);
	guest_textf(p->why, sizeof(p->why), "%s%s", p->why[0] ? "; " : "", part);
}

int guest_add_device(struct guest_plan *p, enum guest_dev_kind kind, const char *name, uk_error *err)
{
	if (p->n_devices >= GUEST_MAX_DEVICES)
		return uk_err(err, E2BIG, "the guest needs more than %d devices", GUEST_MAX_DEVICES);
	size_t n = strlen(name);
	if (n > GUEST_MFT_NAME_MAX)
		return uk_err(err, EINVAL, "device name \"%.16s...\" is longer than %d bytes", name,
			      GUEST_MFT_NAME_MAX);
	struct guest_device *d = &p->devices[p->n_devices++];
	d->kind = kind;
	memcpy(d->name, name, n + 1);
	return 0;
}

int guest_default_devices(const struct guest_facts *f, struct guest_plan *p, uk_error *err)
{
	int r;
	if (f->has_block_disk && (r = guest_add_device(p, GUEST_DEV_BLOCK, "disk", err)) < 0)
		return r;
	if (f->net && (r = guest_add_device(p, GUEST_DEV_NET, "net", err)) < 0)
		return r;
	return 0;
}

void guest_why_devices(struct guest_plan *p)
{
	char list[GUEST_MAX_DEVICES * (GUEST_MFT_NAME_MAX + 12)] = "";
	for (size_t i = 0; i < p->n_devices; i++)
		guest_textf(list, sizeof(list), "%s%s (%s)", i ? ", " : "", p->devices[i].name,
			    p->devices[i].kind == GUEST_DEV_NET     ? "the pod's NIC"
			    : p->devices[i].kind == GUEST_DEV_VOLUME ? "a CRI device"
								     : "the image's disk");
	guest_why(p, "devices: %s", p->n_devices ? list : "none");
}

void guest_why_net(struct guest_plan *p, bool static_net, const char *how)
{
	if (!guest_plan_has_net(p))
		return;
	if (static_net)
		guest_why(p, "address static on the command line (%s)", how);
	else if (p->dhcp)
		guest_why(p, "address by DHCP from unikd's dnsmasq");
	else
		guest_why(p, "no address from unikd (network config static: the command line's {{ip}} placeholders carry it)");
}

bool guest_plan_has_net(const struct guest_plan *p)
{
	for (size_t i = 0; i < p->n_devices; i++)
		if (p->devices[i].kind == GUEST_DEV_NET)
			return true;
	return false;
}

bool guest_net_static(const struct guest_facts *f, const struct guest_plan *p, bool static_by_default)
{
	if (!f->net || !guest_plan_has_net(p))
		return false;
	return f->netcfg == GUEST_NETCFG_STATIC || (f->netcfg == GUEST_NETCFG_AUTO && static_by_default);
}

const char *guest_net_mask(const struct guest_net *net, char buf[16])
{
	if (net->mask && *net->mask)
		return net->mask;
	uint32_t m = net->prefix ? ~0u << (32 - net->prefix) : 0;
	snprintf(buf, 16, "%u.%u.%u.%u", m >> 24, (m >> 16) & 0xff, (m >> 8) & 0xff, m & 0xff);
	return buf;
}

bool guest_version_parse(const char *s, unsigned v[3])
{
	if (!s)
		return false;
	if (*s == 'v' || *s == 'V')
		s++;
	v[0] = v[1] = v[2] = 0;
	for (int i = 0; i < 3; i++) {
		size_t d = 0;
		unsigned n = 0;
		for (; s[d] >= '0' && s[d] <= '9'; d++) {
			if (d >= 6)
				return false;
			n = n * 10 + (unsigned)(s[d] - '0');
		}
		if (d == 0)
			return false;
		v[i] = n;
		s += d;
		if (i == 2)
			break;
		if (*s != '.')
			return i == 1; /* "X.Y" is X.Y.0; "X" alone is not a version */
		s++;
	}
	return true;
}

/* A field of the pod network goes into a command line as it is: an address, or a {{...}}
 * placeholder the runtime expands later. Nothing that a parser would split or quote. */
static int net_field_check(const char *what, const char *s, bool required, uk_error *err)
{
	if (!s || !*s)
		return required ? uk_err(err, EINVAL, "pod network: no %s", what) : 0;
	if (strlen(s) > 64)
		return uk_err(err, EINVAL, "pod network: the %s is longer than 64 bytes", what);
	for (const char *c = s; *c; c++)
		if (*c <= ' ' || *c > '~' || strchr("\"'\\:,[]", *c))
			return uk_err(err, EINVAL, "pod network: the %s \"%s\" holds a byte a command line cannot take", what,
				      s);
	return 0;
}

static int net_check(const struct guest_net *n, uk_error *err)
{
	int r;
	if (n->prefix > 32)
		return uk_err(err, EINVAL, "pod network: prefix length %u is more than 32", n->prefix);
	if ((r = net_field_check("address", n->ip, true, err)) < 0 ||
	    (r = net_field_check("gateway", n->gateway, false, err)) < 0 ||
	    (r = net_field_check("netmask", n->mask, false, err)) < 0 ||
	    (r = net_field_check("DNS server", n->dns, false, err)) < 0 ||
	    (r = net_field_check("hostname", n->hostname, false, err)) < 0)
		return r;
	return 0;
}

/* The urunc annotations: type and version, checked; the contract for the type. */
static int from_urunc(const struct guest_facts *f, struct guest_plan *p, const struct guest_contract **c,
		      uk_error *err)
{
	const char *t = f->urunc_type;
	for (size_t i = 0; i < ARRAY_SIZE(urunc_types); i++) {
		if (strcmp(t, urunc_types[i].type) != 0)
			continue;
		if (!urunc_types[i].contract)
			return uk_err(err, EINVAL, URUNC_TYPE "=\"%s\": unikd has no contract for this urunc type; it runs unikraft, mirage and linux, and reads the binary when the annotation is absent",
				      t);
		*c = urunc_types[i].contract;
		snprintf(p->found_by, sizeof(p->found_by), "urunc annotation unikernelType=%s", t);
		return 0;
	}
	return uk_err(err, EINVAL, URUNC_TYPE "=\"%.64s\" is not a unikernel type unikd knows (unikraft, mirage, linux)",
		      t);
}

static int version_check(const char *v, uk_error *err)
{
	size_t n = strlen(v);
	if (n > VERSION_MAX)
		return uk_err(err, EINVAL, URUNC_VERSION " is longer than %zu bytes", VERSION_MAX);
	for (size_t i = 0; i < n; i++)
		if (!strchr("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-+~_", v[i]))
			return uk_err(err, EINVAL, URUNC_VERSION "=\"%s\" holds a byte other than letters, digits and .-+~_",
				      v);
	return 0;
}

/* Without the annotation: what the binary says, else the generic path. */
static const struct guest_contract *from_binary(const struct guest_binary *b, struct guest_plan *p)
{
	if (!b) {
		snprintf(p->found_by, sizeof(p->found_by), "no kernel (a disk image): the generic path");
		return &guest_contract_generic;
	}
	if (b->solo5) {
		snprintf(p->found_by, sizeof(p->found_by), "the binary's Solo5 notes (%zu manifest device%s)", b->n_mft,
			 b->n_mft == 1 ? "" : "s");
		return &guest_contract_solo5;
	}
	if (b->unikraft) {
		snprintf(p->found_by, sizeof(p->found_by), "the binary's Unikraft marks (%s%s)",
			 b->unikraft_version[0] ? "banner version " : "a .uk_* section, no banner",
			 b->unikraft_version);
		return &guest_contract_unikraft;
	}
	if (b->boot == GUEST_BOOT_BZIMAGE) {
		snprintf(p->found_by, sizeof(p->found_by), "the binary's Linux boot protocol header (bzImage)");
		return &guest_contract_linux;
	}
	snprintf(p->found_by, sizeof(p->found_by), "no framework in the binary (%s): the generic path",
		 guest_boot_name(b->boot));
	return &guest_contract_generic;
}

int guest_plan_resolve(const struct guest_facts *f, struct guest_plan *ret, uk_error *err)
{
	struct guest_plan p = { 0 };
	const struct guest_contract *c = NULL;
	int r;
	bool typed = f->urunc_type && *f->urunc_type;
	if (typed && (r = from_urunc(f, &p, &c, err)) < 0)
		return r;
	if (!typed)
		c = from_binary(f->bin, &p);
	const char *v = f->urunc_version && *f->urunc_version ? f->urunc_version : NULL;
	if (v && (r = version_check(v, err)) < 0)
		return r;
	if (v && typed)
		guest_textf(p.found_by, sizeof(p.found_by), " unikernelVersion=%s", v);
	if (!v && c == &guest_contract_unikraft && f->bin)
		v = f->bin->unikraft_version;
	snprintf(p.version, sizeof(p.version), "%s", v ? v : "");
	if (f->net && (r = net_check(f->net, err)) < 0)
		return r;
	if ((r = guest_volumes_check(f, &p, err)) < 0)
		return r;
	p.framework = c->framework;
	if ((r = c->plan(f, &p, err)) < 0)
		return r;
	if (!p.pit_why[0]) /* a contract's bug: the PIT stays, as before the choice existed */
		guest_set_pit(&p, GUEST_PIT_ON, "the contract did not decide: kept");
	for (size_t i = 0; i < p.n_mounts; i++)
		if (p.mounts[i].fate == GUEST_MOUNT_UNDECIDED) /* a contract's bug: never silently dropped */
			return uk_err(err, EINVAL, "%smounts[%zu]: the %s contract did not decide it",
				      f->cmd.field_prefix ? f->cmd.field_prefix : "", i, guest_framework_name(p.framework));
	*ret = p;
	return 0;
}
