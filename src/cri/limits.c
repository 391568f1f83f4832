/* The limits of CRI requests: one table for the lists, Kubernetes' key rules, resources,
 * enums. Pure; see limits.h and docs/cri.md ("Limits"). */
#include <inttypes.h>
#include <limits.h>
#include <string.h>

#include "../guest/cmdline.h"
#include "limits.h"

#define KiB 1024
#define MiB (INT64_C(1) << 20)
#define CMDLINE_BYTES (GUEST_CMDLINE_MAX - 1)

_Static_assert(GUEST_CMDLINE_MAX == VM_CMDLINE_MAX, "the guest's command line is the VM spec's");

/* Counts are generous for what kubelet sends (a pod with hundreds of labels or ports is
 * rare) and small enough that per-item overhead (json-c objects in the records, protobuf-c
 * entries in list responses) stays well within a MiB per object. */
const struct cri_limit cri_limits[CRI_LIM__COUNT] = {
	[CRI_LIM_LABELS] = { "labels; label_selector of filters", 1024, CRI_KEY_MAX, CRI_LABEL_VALUE_MAX, 256 * KiB },
	[CRI_LIM_ANNOTATIONS] = { "annotations", 1024, CRI_KEY_MAX, CRI_ANNOTATIONS_TOTAL_MAX,
				  CRI_ANNOTATIONS_TOTAL_MAX },
	[CRI_LIM_COMMAND] = { "command", 1024, 0, CMDLINE_BYTES, CMDLINE_BYTES },
	[CRI_LIM_ARGS] = { "args", 1024, 0, CMDLINE_BYTES, CMDLINE_BYTES },
	[CRI_LIM_ENVS] = { "envs", 1024, CMDLINE_BYTES, CMDLINE_BYTES, CMDLINE_BYTES },
	[CRI_LIM_MOUNTS] = { "mounts: container_path, host_path, image_sub_path", 256, 0, CRI_PATH_MAX, 256 * KiB },
	/* The kernel takes at most 340 lines in a uid_map or gid_map. */
	[CRI_LIM_ID_MAPPINGS] = { "uidMappings, gidMappings; userns uids, gids", 340, 0, 0, 0 },
	[CRI_LIM_DEVICES] = { "devices: container_path, host_path, permissions", 256, 0, CRI_PATH_MAX, 256 * KiB },
	[CRI_LIM_CDI_DEVICES] = { "CDI_devices: name", 256, 0, 1024, 64 * KiB },
	[CRI_LIM_PORT_MAPPINGS] = { "port_mappings: host_ip", 1024, 0, CRI_NAME_MAX, 64 * KiB },
	[CRI_LIM_DNS_SERVERS] = { "dns_config.servers", 32, 0, CRI_NAME_MAX, 32 * CRI_NAME_MAX },
	[CRI_LIM_DNS_SEARCHES] = { "dns_config.searches", 32, 0, CRI_NAME_MAX, 32 * CRI_NAME_MAX },
	[CRI_LIM_DNS_OPTIONS] = { "dns_config.options", 32, 0, 63, 32 * 63 },
	[CRI_LIM_SYSCTLS] = { "linux.sysctls", 256, CRI_NAME_MAX, CRI_PATH_MAX, 64 * KiB },
	/* NGROUPS_MAX */
	[CRI_LIM_SUPPLEMENTAL_GROUPS] = { "supplemental_groups", 65536, 0, 0, 0 },
	[CRI_LIM_CAPABILITIES] = { "capabilities: add, drop, add_ambient (each)", 64, 0, 64, 4 * KiB },
	[CRI_LIM_SECURITY_PATHS] = { "masked_paths, readonly_paths (each)", 256, 0, CRI_PATH_MAX, 256 * KiB },
	[CRI_LIM_HUGEPAGE_LIMITS] = { "resources.hugepage_limits: page_size", 16, 0, 16, 256 },
	[CRI_LIM_UNIFIED] = { "resources.unified", 64, 255, CRI_PATH_MAX, 64 * KiB },
};

static const char *nz(const char *s)
{
	return s ? s : "";
}

static int check_count(enum cri_limit_id id, const char *field, size_t n, uk_error *err)
{
	if (n > cri_limits[id].count)
		return uk_err(err, E2BIG, "%s has %zu items, at most %zu", field, n, cri_limits[id].count);
	return 0;
}

/* Adds one item's length to *total; -E2BIG (naming field) past the row's total. */
static int add_total(enum cri_limit_id id, const char *field, size_t *total, size_t len, uk_error *err)
{
	*total += len;
	if (*total > cri_limits[id].total)
		return uk_err(err, E2BIG, "%s holds more than %zu bytes in all", field, cri_limits[id].total);
	return 0;
}

/* The length of s, or max + 1 when longer: never scans past what the limit needs. */
static size_t len_upto(const char *s, size_t max)
{
	return strnlen(nz(s), max + 1);
}

int cri_check_strings(enum cri_limit_id id, const char *field, size_t n, char *const *v, uk_error *err)
{
	const struct cri_limit *l = &cri_limits[id];
	size_t total = 0;
	int r;
	if ((r = check_count(id, field, n, err)) < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		size_t len = len_upto(v[i], l->item);
		if (len > l->item)
			return uk_err(err, E2BIG, "%s[%zu] is longer than %zu bytes", field, i, l->item);
		if ((r = add_total(id, field, &total, len, err)) < 0)
			return r;
	}
	return 0;
}

/* ---- Kubernetes' names ---- */

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9], n bytes (label names and values). */
static bool name_part_ok(const char *s, size_t n)
{
	if (n == 0 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

/* A DNS-1123 subdomain: lower-case labels [a-z0-9]([-a-z0-9]*[a-z0-9])? joined by '.'. */
static bool subdomain_ok(const char *s, size_t n)
{
	if (n == 0 || n > CRI_KEY_PREFIX_MAX)
		return false;
	for (size_t i = 0; i < n;) {
		size_t k = i;
		while (k < n && s[k] != '.')
			k++;
		if (k == i || s[i] == '-' || s[k - 1] == '-')
			return false;
		for (size_t j = i; j < k; j++)
			if (!((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= '0' && s[j] <= '9') || s[j] == '-'))
				return false;
		if (k < n && k + 1 == n)
			return false; /* a trailing '.' */
		i = k + 1;
	}
	return true;
}

bool cri_qualified_name_ok(const char *key)
{
	key = nz(key);
	size_t n = len_upto(key, CRI_KEY_MAX);
	if (n > CRI_KEY_MAX)
		return false;
	const char *slash = memchr(key, '/', n);
	const char *name = slash ? slash + 1 : key;
	size_t name_len = n - (size_t)(name - key);
	if (slash && !subdomain_ok(key, (size_t)(slash - key)))
		return false;
	return name_len <= CRI_KEY_NAME_MAX && name_part_ok(name, name_len);
}

bool cri_label_value_ok(const char *value)
{
	size_t n = len_upto(value, CRI_LABEL_VALUE_MAX);
	return n == 0 || (n <= CRI_LABEL_VALUE_MAX && name_part_ok(value, n));
}

/* ---- maps ---- */

/* Every map<string,string> entry, and KeyValue, has this layout (see cri.h). */
typedef Runtime__V1__PodSandboxConfig__LabelsEntry map_entry;

int cri_check_map(enum cri_limit_id id, const char *field, size_t n, void *const *entries, uk_error *err)
{
	const struct cri_limit *l = &cri_limits[id];
	bool k8s = id == CRI_LIM_LABELS || id == CRI_LIM_ANNOTATIONS;
	size_t total = 0;
	int r;
	if ((r = check_count(id, field, n, err)) < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		const map_entry *e = entries[i];
		size_t klen = len_upto(e->key, l->key), vlen = len_upto(e->value, l->item);
		if (klen > l->key)
			return uk_err(err, E2BIG, "%s[%zu]: the key is longer than %zu bytes", field, i, l->key);
		if (k8s && !cri_qualified_name_ok(e->key))
			return uk_err(err, EINVAL,
				      "%s[%zu]: the key is not a Kubernetes qualified name: [prefix/]name, the name "
				      "at most %d bytes of [A-Za-z0-9._-] with a letter or digit at each end, the prefix a "
				      "DNS subdomain of at most %d bytes",
				      field, i, CRI_KEY_NAME_MAX, CRI_KEY_PREFIX_MAX);
		/* A key that passed the rules above is safe to quote; others are named by index. */
		if (vlen > l->item)
			return k8s ? uk_err(err, E2BIG, "%s[\"%s\"]: the value is longer than %zu bytes", field, e->key,
					    l->item)
				   : uk_err(err, E2BIG, "%s[%zu]: the value is longer than %zu bytes", field, i, l->item);
		if (id == CRI_LIM_LABELS && !cri_label_value_ok(e->value))
			return uk_err(err, EINVAL,
				      "%s[\"%s\"]: the value must be empty or [A-Za-z0-9._-] with a letter or digit at "
				      "each end",
				      field, e->key);
		if ((r = add_total(id, field, &total, klen + vlen, err)) < 0)
			return r;
	}
	return 0;
}

int cri_check_selector(const char *field, size_t n, void *const *sel, uk_error *err)
{
	return cri_check_map(CRI_LIM_LABELS, field, n, sel, err);
}

/* ---- scalars, enums ---- */

void cri_quote(char out[CRI_QUOTE_MAX], const char *v)
{
	size_t n = 0;
	v = nz(v);
	for (; v[n] && n < CRI_QUOTE_MAX - 4; n++)
		out[n] = v[n] >= 0x20 && v[n] < 0x7f ? v[n] : '?';
	strcpy(out + n, v[n] ? "..." : "");
}

int cri_require(const char *v, const char *field, uk_error *err)
{
	if (!v || !*v)
		return uk_err(err, EINVAL, "%s is required", field);
	if (len_upto(v, CRI_NAME_MAX) > CRI_NAME_MAX)
		return uk_err(err, EINVAL, "%s is longer than %d bytes", field, CRI_NAME_MAX);
	return 0;
}

static int check_len(const char *v, size_t max, const char *field, uk_error *err)
{
	if (len_upto(v, max) > max)
		return uk_err(err, E2BIG, "%s is longer than %zu bytes", field, max);
	return 0;
}

/* protobuf-c keeps any number it finds in an enum field; only the .proto's are taken. */
static int check_enum(const ProtobufCEnumDescriptor *d, int v, const char *field, uk_error *err)
{
	if (!protobuf_c_enum_descriptor_get_value(d, v))
		return uk_err(err, EINVAL, "%s: unknown value %d", field, v);
	return 0;
}

/* ---- resources ---- */

static int check_resource_lists(const Runtime__V1__LinuxContainerResources *r, const char *p, uk_error *err)
{
	char f[128];
	size_t total = 0;
	int rc;
	snprintf(f, sizeof(f), "%shugepage_limits", p);
	if ((rc = check_count(CRI_LIM_HUGEPAGE_LIMITS, f, r->n_hugepage_limits, err)) < 0)
		return rc;
	for (size_t i = 0; i < r->n_hugepage_limits; i++) {
		size_t len = len_upto(r->hugepage_limits[i]->page_size, cri_limits[CRI_LIM_HUGEPAGE_LIMITS].item);
		if (len > cri_limits[CRI_LIM_HUGEPAGE_LIMITS].item)
			return uk_err(err, E2BIG, "%s[%zu].page_size is longer than %zu bytes", f, i,
				      cri_limits[CRI_LIM_HUGEPAGE_LIMITS].item);
		if ((rc = add_total(CRI_LIM_HUGEPAGE_LIMITS, f, &total, len, err)) < 0)
			return rc;
	}
	snprintf(f, sizeof(f), "%sunified", p);
	return cri_check_map(CRI_LIM_UNIFIED, f, r->n_unified, (void *const *)r->unified, err);
}

static int check_memory(int64_t bytes, const char *p, struct cri_resources *out, uk_error *err)
{
	if (bytes < 0)
		return uk_err(err, EINVAL, "%smemory_limit_in_bytes %" PRId64 " is negative (0 means not specified)", p,
			      bytes);
	if (bytes == 0)
		return 0;
	int64_t mib = bytes / MiB + (bytes % MiB != 0);
	if (mib < CRI_MEMORY_MIN_MIB || mib > CRI_MEMORY_MAX_MIB)
		return uk_err(err, EINVAL, "%smemory_limit_in_bytes is %" PRId64 ": a VM needs 16 MiB to 1 TiB", p, bytes);
	out->memory_limit = bytes;
	out->memory_mib = (unsigned)mib;
	return 0;
}

/* The kernel's own bounds (tg_set_cfs_bandwidth), then the VM's: quota/period in vCPUs. */
static int check_cpu(const Runtime__V1__LinuxContainerResources *r, const char *p, struct cri_resources *out,
		     uk_error *err)
{
	int64_t period = r->cpu_period, quota = r->cpu_quota;
	if (period < 0)
		return uk_err(err, EINVAL, "%scpu_period %" PRId64 " is negative (0 means not specified)", p, period);
	if (period > 0 && (period < CG_CPU_PERIOD_MIN || period > CG_CPU_PERIOD_MAX))
		return uk_err(err, EINVAL, "%scpu_period %" PRId64 " us is outside the kernel's %d..%d us", p, period,
			      CG_CPU_PERIOD_MIN, CG_CPU_PERIOD_MAX);
	if (quota < -1)
		return uk_err(err, EINVAL, "%scpu_quota %" PRId64 " is negative; only -1 (no quota) is", p, quota);
	if (quota > 0 && quota < CG_CPU_QUOTA_MIN)
		return uk_err(err, EINVAL, "%scpu_quota %" PRId64 " us is below the kernel's minimum, %d us", p, quota,
			      CG_CPU_QUOTA_MIN);
	if (quota > CG_CPU_QUOTA_MAX)
		return uk_err(err, EINVAL, "%scpu_quota %" PRId64 " us is above the kernel's maximum, %" PRId64 " us", p,
			      quota, CG_CPU_QUOTA_MAX);
	if (quota > 0) {
		int64_t per = period ? period : CG_CPU_PERIOD_DEFAULT;
		int64_t n = quota / per + (quota % per != 0);
		if (n > CRI_VCPUS_MAX)
			return uk_err(err, EINVAL, "%scpu_quota %" PRId64 " over a period of %" PRId64 " us asks for %" PRId64
				      " vCPUs, at most %d", p, quota, per, n, CRI_VCPUS_MAX);
		out->vcpus = (unsigned)n;
	}
	if (r->cpu_shares < 0 || (r->cpu_shares > 0 && (r->cpu_shares < CG_SHARES_MIN || r->cpu_shares > CG_SHARES_MAX)))
		return uk_err(err, EINVAL, "%scpu_shares %" PRId64 " is outside %d..%d (0 means not specified)", p,
			      r->cpu_shares, CG_SHARES_MIN, CG_SHARES_MAX);
	out->cpu_period = period;
	out->cpu_quota = quota;
	out->cpu_shares = r->cpu_shares;
	return 0;
}

int cri_check_resources(const Runtime__V1__LinuxContainerResources *r, const char *field_prefix,
			struct cri_resources *out, uk_error *err)
{
	const char *p = nz(field_prefix);
	struct cri_resources res = { 0 };
	int rc;
	*out = res;
	if (!r)
		return 0;
	if ((rc = check_memory(r->memory_limit_in_bytes, p, &res, err)) < 0 || (rc = check_cpu(r, p, &res, err)) < 0 ||
	    (rc = check_resource_lists(r, p, err)) < 0)
		return rc;
	*out = res;
	return 0;
}

/* ---- security contexts ---- */

static int check_ns_options(const Runtime__V1__NamespaceOption *o, const char *p, uk_error *err)
{
	char f[128];
	int r;
	if (!o)
		return 0;
	const struct {
		const char *name;
		int v;
	} modes[] = { { "network", o->network }, { "pid", o->pid }, { "ipc", o->ipc } };
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		snprintf(f, sizeof(f), "%snamespace_options.%s", p, modes[i].name);
		if ((r = check_enum(&runtime__v1__namespace_mode__descriptor, modes[i].v, f, err)) < 0)
			return r;
	}
	snprintf(f, sizeof(f), "%snamespace_options.target_id", p);
	if ((r = check_len(o->target_id, CRI_NAME_MAX, f, err)) < 0)
		return r;
	const Runtime__V1__UserNamespace *u = o->userns_options;
	if (!u)
		return 0;
	snprintf(f, sizeof(f), "%snamespace_options.userns_options.mode", p);
	if ((r = check_enum(&runtime__v1__namespace_mode__descriptor, u->mode, f, err)) < 0)
		return r;
	snprintf(f, sizeof(f), "%snamespace_options.userns_options.uids", p);
	if ((r = check_count(CRI_LIM_ID_MAPPINGS, f, u->n_uids, err)) < 0)
		return r;
	snprintf(f, sizeof(f), "%snamespace_options.userns_options.gids", p);
	return check_count(CRI_LIM_ID_MAPPINGS, f, u->n_gids, err);
}

static int check_profile(const Runtime__V1__SecurityProfile *sp, const char *p, const char *name, uk_error *err)
{
	char f[128];
	int r;
	if (!sp)
		return 0;
	snprintf(f, sizeof(f), "%s%s.profile_type", p, name);
	if ((r = check_enum(&runtime__v1__security_profile__profile_type__descriptor, sp->profile_type, f, err)) < 0)
		return r;
	snprintf(f, sizeof(f), "%s%s.localhost_ref", p, name);
	return check_len(sp->localhost_ref, CRI_PATH_MAX, f, err);
}

/* What the pod's and the container's security contexts share. */
static int check_security_common(const char *p, const Runtime__V1__NamespaceOption *ns, size_t n_groups, int policy,
				 const Runtime__V1__SecurityProfile *seccomp,
				 const Runtime__V1__SecurityProfile *apparmor, uk_error *err)
{
	char f[128];
	int r;
	snprintf(f, sizeof(f), "%ssupplemental_groups", p);
	if ((r = check_count(CRI_LIM_SUPPLEMENTAL_GROUPS, f, n_groups, err)) < 0)
		return r;
	snprintf(f, sizeof(f), "%ssupplemental_groups_policy", p);
	if ((r = check_enum(&runtime__v1__supplemental_groups_policy__descriptor, policy, f, err)) < 0 ||
	    (r = check_ns_options(ns, p, err)) < 0 || (r = check_profile(seccomp, p, "seccomp", err)) < 0 ||
	    (r = check_profile(apparmor, p, "apparmor", err)) < 0)
		return r;
	return 0;
}

static int check_pod_security(const Runtime__V1__LinuxPodSandboxConfig *lx, uk_error *err)
{
	const char *p = "config.linux.security_context.";
	const Runtime__V1__LinuxSandboxSecurityContext *sc = lx->security_context;
	int r;
	if (!sc)
		return 0;
	if ((r = check_security_common(p, sc->namespace_options, sc->n_supplemental_groups, sc->supplemental_groups_policy,
				       sc->seccomp, sc->apparmor, err)) < 0)
		return r;
	if (sc->namespace_options && sc->namespace_options->network == RUNTIME__V1__NAMESPACE_MODE__NODE)
		return uk_err(err, EINVAL,
			      "config.linux.security_context.namespace_options.network is NODE: a VM cannot share "
			      "the node's network namespace; unikd runs no host-network pods");
	return 0;
}

static int check_container_security(const Runtime__V1__LinuxContainerSecurityContext *sc, uk_error *err)
{
	const char *p = "config.linux.security_context.";
	int r;
	if (!sc)
		return 0;
	if ((r = check_security_common(p, sc->namespace_options, sc->n_supplemental_groups, sc->supplemental_groups_policy,
				       sc->seccomp, sc->apparmor, err)) < 0 ||
	    (r = check_len(sc->run_as_username, CRI_NAME_MAX, "config.linux.security_context.run_as_username", err)) < 0 ||
	    (r = cri_check_strings(CRI_LIM_SECURITY_PATHS, "config.linux.security_context.masked_paths",
				   sc->n_masked_paths, sc->masked_paths, err)) < 0 ||
	    (r = cri_check_strings(CRI_LIM_SECURITY_PATHS, "config.linux.security_context.readonly_paths",
				   sc->n_readonly_paths, sc->readonly_paths, err)) < 0)
		return r;
	const Runtime__V1__Capability *c = sc->capabilities;
	if (c && ((r = cri_check_strings(CRI_LIM_CAPABILITIES, "config.linux.security_context.capabilities.add_capabilities",
					 c->n_add_capabilities, c->add_capabilities, err)) < 0 ||
		  (r = cri_check_strings(CRI_LIM_CAPABILITIES, "config.linux.security_context.capabilities.drop_capabilities",
					 c->n_drop_capabilities, c->drop_capabilities, err)) < 0 ||
		  (r = cri_check_strings(CRI_LIM_CAPABILITIES,
					 "config.linux.security_context.capabilities.add_ambient_capabilities",
					 c->n_add_ambient_capabilities, c->add_ambient_capabilities, err)) < 0))
		return r;
	return 0;
}

/* ---- RunPodSandbox ---- */

/* Host names, DNS servers and search domains as dnsmasq and guests take them. */
static bool dns_word_ok(const char *w)
{
	size_t n = len_upto(w, CRI_NAME_MAX);
	if (n == 0 || n > CRI_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(w[i]) && w[i] != '.' && w[i] != '-' && w[i] != ':' && w[i] != '_')
			return false;
	return true;
}

/* A path kubelet gives us: relative parts must not climb out with "..". */
static bool path_climbs(const char *p)
{
	for (const char *s = p; (s = strstr(s, "..")); s += 2)
		if ((s == p || s[-1] == '/') && (s[2] == '\0' || s[2] == '/'))
			return true;
	return false;
}

static int check_ports(const Runtime__V1__PodSandboxConfig *cfg, uk_error *err)
{
	size_t total = 0;
	int r;
	if ((r = check_count(CRI_LIM_PORT_MAPPINGS, "config.port_mappings", cfg->n_port_mappings, err)) < 0)
		return r;
	for (size_t i = 0; i < cfg->n_port_mappings; i++) {
		const Runtime__V1__PortMapping *pm = cfg->port_mappings[i];
		char f[64];
		snprintf(f, sizeof(f), "config.port_mappings[%zu].protocol", i);
		if ((r = check_enum(&runtime__v1__protocol__descriptor, pm->protocol, f, err)) < 0)
			return r;
		if (pm->protocol == RUNTIME__V1__PROTOCOL__SCTP)
			return uk_err(err, EINVAL, "config.port_mappings[%zu].protocol SCTP is not supported", i);
		if (pm->host_port < 0 || pm->host_port > 65535 || pm->container_port < 0 || pm->container_port > 65535)
			return uk_err(err, EINVAL, "config.port_mappings[%zu]: ports must be within 0..65535", i);
		if (pm->host_port > 0 && pm->container_port == 0)
			return uk_err(err, EINVAL, "config.port_mappings[%zu].container_port is required with host_port", i);
		size_t len = len_upto(pm->host_ip, CRI_NAME_MAX);
		if (len && !dns_word_ok(pm->host_ip))
			return uk_err(err, EINVAL, "config.port_mappings[%zu].host_ip is not an address", i);
		if ((r = add_total(CRI_LIM_PORT_MAPPINGS, "config.port_mappings", &total, len, err)) < 0)
			return r;
	}
	return 0;
}

static int check_dns(const Runtime__V1__DNSConfig *d, uk_error *err)
{
	int r;
	if (!d)
		return 0;
	if ((r = cri_check_strings(CRI_LIM_DNS_SERVERS, "config.dns_config.servers", d->n_servers, d->servers, err)) < 0 ||
	    (r = cri_check_strings(CRI_LIM_DNS_SEARCHES, "config.dns_config.searches", d->n_searches, d->searches,
				   err)) < 0 ||
	    (r = cri_check_strings(CRI_LIM_DNS_OPTIONS, "config.dns_config.options", d->n_options, d->options, err)) < 0)
		return r;
	for (size_t i = 0; i < d->n_servers; i++)
		if (!dns_word_ok(d->servers[i]))
			return uk_err(err, EINVAL, "config.dns_config.servers[%zu] is not an address", i);
	for (size_t i = 0; i < d->n_searches; i++)
		if (!dns_word_ok(d->searches[i]))
			return uk_err(err, EINVAL, "config.dns_config.searches[%zu] is not a domain: [A-Za-z0-9.:_-]", i);
	for (size_t i = 0; i < d->n_options; i++)
		if (!*nz(d->options[i]))
			return uk_err(err, EINVAL, "config.dns_config.options[%zu] is empty", i);
	return 0;
}

static int check_pod_linux(const Runtime__V1__LinuxPodSandboxConfig *lx, uk_error *err)
{
	int r;
	if (!lx)
		return 0;
	if ((r = check_len(lx->cgroup_parent, CRI_PATH_MAX, "config.linux.cgroup_parent", err)) < 0 ||
	    (r = cri_check_map(CRI_LIM_SYSCTLS, "config.linux.sysctls", lx->n_sysctls, (void *const *)lx->sysctls,
			       err)) < 0 ||
	    (r = check_pod_security(lx, err)) < 0)
		return r;
	/* Pod-level resources: unikd does not read them, so only their lists are bounded. */
	if (lx->overhead && (r = check_resource_lists(lx->overhead, "config.linux.overhead.", err)) < 0)
		return r;
	if (lx->resources && (r = check_resource_lists(lx->resources, "config.linux.resources.", err)) < 0)
		return r;
	return 0;
}

int cri_check_pod_config(const Runtime__V1__PodSandboxConfig *cfg, uk_error *err)
{
	int r;
	if (!cfg)
		return uk_err(err, EINVAL, "config is required");
	if (!cfg->metadata)
		return uk_err(err, EINVAL, "config.metadata is required");
	if ((r = cri_require(cfg->metadata->name, "config.metadata.name", err)) < 0 ||
	    (r = cri_require(cfg->metadata->uid, "config.metadata.uid", err)) < 0 ||
	    (r = cri_require(cfg->metadata->namespace_, "config.metadata.namespace", err)) < 0)
		return r;
	if (*nz(cfg->hostname) && !dns_word_ok(cfg->hostname))
		return uk_err(err, EINVAL, "config.hostname is not a host name: at most %d bytes of [A-Za-z0-9.:_-]",
			      CRI_NAME_MAX);
	const char *ld = nz(cfg->log_directory);
	if (*ld && (ld[0] != '/' || path_climbs(ld)))
		return uk_err(err, EINVAL, "config.log_directory must be an absolute path without \"..\"");
	if ((r = check_len(ld, CRI_PATH_MAX, "config.log_directory", err)) < 0 ||
	    (r = cri_check_map(CRI_LIM_LABELS, "config.labels", cfg->n_labels, (void *const *)cfg->labels, err)) < 0 ||
	    (r = cri_check_map(CRI_LIM_ANNOTATIONS, "config.annotations", cfg->n_annotations,
			       (void *const *)cfg->annotations, err)) < 0 ||
	    (r = check_ports(cfg, err)) < 0 || (r = check_dns(cfg->dns_config, err)) < 0 ||
	    (r = check_pod_linux(cfg->linux, err)) < 0)
		return r;
	return 0;
}

/* ---- CreateContainer ---- */

int cri_check_image_spec(const Runtime__V1__ImageSpec *s, const char *field, uk_error *err)
{
	char f[128];
	int r;
	if (!s)
		return 0;
	snprintf(f, sizeof(f), "%s.image", field);
	if ((r = check_len(s->image, CRI_PATH_MAX, f, err)) < 0)
		return r;
	snprintf(f, sizeof(f), "%s.annotations", field);
	return cri_check_map(CRI_LIM_ANNOTATIONS, f, s->n_annotations, (void *const *)s->annotations, err);
}

/* A list of structs with path strings, against row id: count, each string, the total. */
static int check_paths(enum cri_limit_id id, const char *field, size_t i, const char *const *paths,
		       const char *const *names, size_t n, size_t *total, uk_error *err)
{
	size_t max = cri_limits[id].item;
	int r;
	for (size_t k = 0; k < n; k++) {
		size_t len = len_upto(paths[k], max);
		if (len > max)
			return uk_err(err, E2BIG, "%s[%zu].%s is longer than %zu bytes", field, i, names[k], max);
		if ((r = add_total(id, field, total, len, err)) < 0)
			return r;
	}
	return 0;
}

static int check_mounts(const Runtime__V1__ContainerConfig *cfg, uk_error *err)
{
	static const char *const names[] = { "container_path", "host_path", "image_sub_path" };
	size_t total = 0;
	char f[64];
	int r;
	if ((r = check_count(CRI_LIM_MOUNTS, "config.mounts", cfg->n_mounts, err)) < 0)
		return r;
	for (size_t i = 0; i < cfg->n_mounts; i++) {
		const Runtime__V1__Mount *m = cfg->mounts[i];
		const char *paths[] = { m->container_path, m->host_path, m->image_sub_path };
		if ((r = check_paths(CRI_LIM_MOUNTS, "config.mounts", i, paths, names, 3, &total, err)) < 0)
			return r;
		snprintf(f, sizeof(f), "config.mounts[%zu].propagation", i);
		if ((r = check_enum(&runtime__v1__mount_propagation__descriptor, m->propagation, f, err)) < 0)
			return r;
		snprintf(f, sizeof(f), "config.mounts[%zu].uidMappings", i);
		if ((r = check_count(CRI_LIM_ID_MAPPINGS, f, m->n_uidmappings, err)) < 0)
			return r;
		snprintf(f, sizeof(f), "config.mounts[%zu].gidMappings", i);
		if ((r = check_count(CRI_LIM_ID_MAPPINGS, f, m->n_gidmappings, err)) < 0)
			return r;
		snprintf(f, sizeof(f), "config.mounts[%zu].image", i);
		if ((r = cri_check_image_spec(m->image, f, err)) < 0)
			return r;
	}
	return 0;
}

static int check_devices(const Runtime__V1__ContainerConfig *cfg, uk_error *err)
{
	static const char *const names[] = { "container_path", "host_path", "permissions" };
	size_t total = 0;
	int r;
	if ((r = check_count(CRI_LIM_DEVICES, "config.devices", cfg->n_devices, err)) < 0)
		return r;
	for (size_t i = 0; i < cfg->n_devices; i++) {
		const Runtime__V1__Device *d = cfg->devices[i];
		const char *paths[] = { d->container_path, d->host_path, d->permissions };
		if ((r = check_paths(CRI_LIM_DEVICES, "config.devices", i, paths, names, 3, &total, err)) < 0)
			return r;
	}
	total = 0;
	if ((r = check_count(CRI_LIM_CDI_DEVICES, "config.CDI_devices", cfg->n_cdi_devices, err)) < 0)
		return r;
	for (size_t i = 0; i < cfg->n_cdi_devices; i++) {
		const char *name = cfg->cdi_devices[i]->name;
		if ((r = check_paths(CRI_LIM_CDI_DEVICES, "config.CDI_devices", i, &name, (const char *const[]){ "name" }, 1,
				     &total, err)) < 0)
			return r;
	}
	return 0;
}

/* What becomes the kernel command line: counts and items here, the line itself in
 * src/guest/cmdline. */
static int check_cmdline_parts(const Runtime__V1__ContainerConfig *cfg, uk_error *err)
{
	int r;
	if ((r = cri_check_strings(CRI_LIM_COMMAND, "config.command", cfg->n_command, cfg->command, err)) < 0 ||
	    (r = cri_check_strings(CRI_LIM_ARGS, "config.args", cfg->n_args, cfg->args, err)) < 0 ||
	    (r = cri_check_map(CRI_LIM_ENVS, "config.envs", cfg->n_envs, (void *const *)cfg->envs, err)) < 0)
		return r;
	return 0;
}

int cri_check_container_config(const Runtime__V1__ContainerConfig *cfg, struct cri_resources *res, uk_error *err)
{
	int r;
	*res = (struct cri_resources){ 0 };
	if (!cfg)
		return uk_err(err, EINVAL, "config is required");
	if (!cfg->metadata)
		return uk_err(err, EINVAL, "config.metadata is required");
	if ((r = cri_require(cfg->metadata->name, "config.metadata.name", err)) < 0)
		return r;
	if (!cfg->image || !cfg->image->image || !*cfg->image->image)
		return uk_err(err, EINVAL, "config.image.image is required");
	const char *lp = nz(cfg->log_path);
	if (*lp && (lp[0] == '/' || path_climbs(lp)))
		return uk_err(err, EINVAL, "config.log_path must be relative to the pod's log_directory, without \"..\"");
	/* stdin reaches the serial port through attach; a serial console has no terminal to size. */
	if (cfg->tty)
		return uk_err(err, EINVAL, "config.tty is not supported: a VM's serial console has no terminal; "
					   "use stdin without tty and kubectl attach -i");
	if ((r = check_len(lp, CRI_PATH_MAX, "config.log_path", err)) < 0 ||
	    (r = cri_check_image_spec(cfg->image, "config.image", err)) < 0 ||
	    (r = check_len(cfg->working_dir, CRI_PATH_MAX, "config.working_dir", err)) < 0 ||
	    (r = check_cmdline_parts(cfg, err)) < 0 || (r = check_mounts(cfg, err)) < 0 ||
	    (r = check_devices(cfg, err)) < 0 ||
	    (r = cri_check_map(CRI_LIM_LABELS, "config.labels", cfg->n_labels, (void *const *)cfg->labels, err)) < 0 ||
	    (r = cri_check_map(CRI_LIM_ANNOTATIONS, "config.annotations", cfg->n_annotations,
			       (void *const *)cfg->annotations, err)) < 0 ||
	    (r = check_enum(&runtime__v1__signal__descriptor, cfg->stop_signal, "config.stop_signal", err)) < 0)
		return r;
	if (!cfg->linux)
		return 0;
	if ((r = check_container_security(cfg->linux->security_context, err)) < 0)
		return r;
	return cri_check_resources(cfg->linux->resources, "config.linux.resources.", res, err);
}

/* ---- UpdateContainerResources, filters, log path ---- */

int cri_check_update(const Runtime__V1__UpdateContainerResourcesRequest *q, struct cri_resources *res, uk_error *err)
{
	int r;
	*res = (struct cri_resources){ 0 };
	if (!q->linux)
		return uk_err(err, EINVAL, "linux is required: the new CPU and memory limits");
	if ((r = cri_check_map(CRI_LIM_ANNOTATIONS, "annotations", q->n_annotations, (void *const *)q->annotations,
			       err)) < 0)
		return r;
	return cri_check_resources(q->linux, "linux.", res, err);
}

int cri_check_pod_filter(const Runtime__V1__PodSandboxFilter *f, uk_error *err)
{
	int r;
	if (!f)
		return 0;
	if ((r = check_len(f->id, CRI_NAME_MAX, "filter.id", err)) < 0 ||
	    (f->state && (r = check_enum(&runtime__v1__pod_sandbox_state__descriptor, f->state->state,
					 "filter.state.state", err)) < 0))
		return r;
	return cri_check_selector("filter.label_selector", f->n_label_selector, (void *const *)f->label_selector, err);
}

int cri_check_container_filter(const Runtime__V1__ContainerFilter *f, uk_error *err)
{
	int r;
	if (!f)
		return 0;
	if ((r = check_len(f->id, CRI_NAME_MAX, "filter.id", err)) < 0 ||
	    (r = check_len(f->pod_sandbox_id, CRI_NAME_MAX, "filter.pod_sandbox_id", err)) < 0 ||
	    (f->state && (r = check_enum(&runtime__v1__container_state__descriptor, f->state->state,
					 "filter.state.state", err)) < 0))
		return r;
	return cri_check_selector("filter.label_selector", f->n_label_selector, (void *const *)f->label_selector, err);
}

int cri_log_path_join(const char *log_directory, const char *log_path, char *out, size_t len, uk_error *err)
{
	int n = snprintf(out, len, "%s/%s", nz(log_directory), nz(log_path));
	if (n < 0 || (size_t)n >= len) {
		if (len)
			out[0] = '\0';
		return uk_err(err, ENAMETOOLONG,
			      "config.log_path: the pod's log_directory, \"/\" and log_path make %d bytes, more than %zu",
			      n, len ? len - 1 : 0);
	}
	/* open() and mkdir() refuse a component longer than NAME_MAX. */
	for (const char *p = out; *p;) {
		size_t c = strcspn(p, "/");
		if (c > NAME_MAX) {
			out[0] = '\0';
			return uk_err(err, ENAMETOOLONG, "config.log_path: a component of the log file's path is longer than %d bytes",
				      NAME_MAX);
		}
		p += c;
		p += *p == '/';
	}
	return 0;
}
