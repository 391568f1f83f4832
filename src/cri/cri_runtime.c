/* RuntimeService: the CRI's pod and container calls, mapped onto the runtime core. */
#include <limits.h>
#include <string.h>

#include "../common/util.h"
#include "cri.h"

#define NAME_MAX_LEN 253
#define WORD_MAX 4096
#define MAP_ENTRY_DESC (&runtime__v1__pod_sandbox_config__labels_entry__descriptor)

#define REQ(type, var) const type *var = (const type *)req
#define NEW_RESP(a, type, var, init)                                                                         \
	type *var = arena_new0(a, type);                                                                     \
	*var = (type)init;                                                                                   \
	*resp = (ProtobufCMessage *)var

static const char *nz(const char *s)
{
	return s ? s : "";
}

static int require(const char *v, const char *field, uk_error *err)
{
	if (!v || !*v)
		return uk_err(err, EINVAL, "%s is required", field);
	if (strlen(v) > NAME_MAX_LEN)
		return uk_err(err, EINVAL, "%s is longer than %d bytes", field, NAME_MAX_LEN);
	return 0;
}

static bool has_space(const char *s)
{
	for (; *s; s++)
		if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\v' || *s == '\f')
			return true;
	return false;
}

/* A path kubelet gives us: relative parts must not climb out with "..". */
static bool path_climbs(const char *p)
{
	for (const char *s = p; (s = strstr(s, "..")); s += 2)
		if ((s == p || s[-1] == '/') && (s[2] == '\0' || s[2] == '/'))
			return true;
	return false;
}

static const char *annotation(json_object *ann, const char *key)
{
	json_object *v;
	return ann && json_object_object_get_ex(ann, key, &v) ? json_object_get_string(v) : NULL;
}

static int check_choice(const char *v, const char *field, const char *const *ok, uk_error *err)
{
	if (!v)
		return 0;
	for (; *ok; ok++)
		if (strcmp(v, *ok) == 0)
			return 0;
	return uk_err(err, EINVAL, "%s: unknown value \"%s\"", field, v);
}

static const char *const accels[] = { "auto", "kvm", "tcg", NULL };
static const char *const machines[] = { "auto", "microvm", "pc", "q35", NULL };

CRI_HANDLER(cri_version)
{
	(void)ud;
	(void)req;
	(void)err;
	NEW_RESP(a, Runtime__V1__VersionResponse, r, RUNTIME__V1__VERSION_RESPONSE__INIT);
	r->version = "0.1.0";
	r->runtime_name = CRI_RUNTIME_NAME;
	r->runtime_version = UNIKD_VERSION;
	r->runtime_api_version = CRI_API_VERSION;
	return 0;
}

static Runtime__V1__RuntimeCondition *condition(arena *a, const char *type, bool ok, const char *reason,
						const char *msg)
{
	Runtime__V1__RuntimeCondition *c = arena_new0(a, Runtime__V1__RuntimeCondition);
	*c = (Runtime__V1__RuntimeCondition)RUNTIME__V1__RUNTIME_CONDITION__INIT;
	c->type = (char *)type;
	c->status = ok;
	c->reason = (char *)(ok ? "" : reason);
	c->message = (char *)(ok ? "" : msg);
	return c;
}

CRI_HANDLER(cri_status)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__StatusRequest, q);
	(void)err;
	NEW_RESP(a, Runtime__V1__StatusResponse, r, RUNTIME__V1__STATUS_RESPONSE__INIT);
	Runtime__V1__RuntimeStatus *st = arena_new0(a, Runtime__V1__RuntimeStatus);
	*st = (Runtime__V1__RuntimeStatus)RUNTIME__V1__RUNTIME_STATUS__INIT;
	st->n_conditions = 2;
	st->conditions = arena_array(a, Runtime__V1__RuntimeCondition *, 2);
	bool qemu_ok = ctx->qemu_version != NULL;
	st->conditions[0] = condition(a, "RuntimeReady", qemu_ok, "QemuMissing",
				      "qemu-system-x86_64 could not be run; install qemu-system-x86");
	char why[512];
	bool net_ok = rt_net_ready(ctx->rt->net, why, sizeof(why));
	st->conditions[1] = condition(a, "NetworkReady", net_ok, "NetworkNotReady", arena_strdup(a, why));
	r->status = st;
	if (q->verbose) {
		_cleanup_json_ json_object *o = json_object_new_object();
		json_object_object_add(o, "config", json_object_get(ctx->config_info));
		json_object_object_add(o, "qemuVersion", json_object_new_string(nz(ctx->qemu_version)));
		json_object_object_add(o, "kvmAvailable", json_object_new_boolean(ctx->kvm_available));
		static const char *cgv[] = { "none", "v1", "v2" };
		json_object *cg = json_object_new_object();
		json_object_object_add(cg, "version", json_object_new_string(cgv[ctx->rt->cg.version]));
		if (ctx->rt->cg.version == CG_NONE)
			json_object_object_add(cg, "why", json_object_new_string(ctx->rt->cg.why));
		json_object_object_add(o, "cgroups", cg);
		_cleanup_json_ json_object *info = json_object_new_object();
		json_object_object_add(info, "info", json_object_new_string(json_object_to_json_string(o)));
		cri_json_to_map(a, info, &r->n_info, (void ***)&r->info, MAP_ENTRY_DESC);
	}
	return 0;
}

static bool dns_word_ok(const char *w)
{
	if (!w || !*w || strlen(w) > 253)
		return false;
	for (; *w; w++)
		if (!((*w >= 'a' && *w <= 'z') || (*w >= 'A' && *w <= 'Z') || (*w >= '0' && *w <= '9') || *w == '.' ||
		      *w == '-' || *w == ':' || *w == '_'))
			return false;
	return true;
}

/* port_mappings and dns_config, checked and kept in the record as JSON. */
static int ports_and_dns(const Runtime__V1__PodSandboxConfig *cfg, struct sandbox *s, uk_error *err)
{
	if (cfg->hostname && *cfg->hostname && !dns_word_ok(cfg->hostname))
		return uk_err(err, EINVAL, "config.hostname \"%s\" is not a host name", cfg->hostname);
	s->port_mappings = json_object_new_array();
	for (size_t i = 0; i < cfg->n_port_mappings; i++) {
		const Runtime__V1__PortMapping *pm = cfg->port_mappings[i];
		if (pm->protocol == RUNTIME__V1__PROTOCOL__SCTP)
			return uk_err(err, EINVAL, "config.port_mappings[%zu].protocol SCTP is not supported", i);
		if (pm->host_port < 0 || pm->host_port > 65535 || pm->container_port < 0 || pm->container_port > 65535)
			return uk_err(err, EINVAL, "config.port_mappings[%zu]: ports must be within 0..65535", i);
		if (pm->host_port > 0 && pm->container_port == 0)
			return uk_err(err, EINVAL, "config.port_mappings[%zu].container_port is required with host_port", i);
		if (pm->host_ip && *pm->host_ip && !dns_word_ok(pm->host_ip))
			return uk_err(err, EINVAL, "config.port_mappings[%zu].host_ip is not an address", i);
		json_object *e = json_object_new_object();
		json_object_object_add(e, "proto", json_object_new_string(pm->protocol == RUNTIME__V1__PROTOCOL__UDP ? "udp" : "tcp"));
		json_object_object_add(e, "host_port", json_object_new_int(pm->host_port));
		json_object_object_add(e, "container_port", json_object_new_int(pm->container_port));
		json_object_object_add(e, "host_ip", json_object_new_string(nz(pm->host_ip)));
		json_object_array_add(s->port_mappings, e);
	}
	const Runtime__V1__DNSConfig *d = cfg->dns_config;
	s->dns = json_object_new_object();
	struct {
		const char *key;
		size_t n;
		char **v;
	} lists[] = { { "servers", d ? d->n_servers : 0, d ? d->servers : NULL },
		      { "searches", d ? d->n_searches : 0, d ? d->searches : NULL },
		      { "options", d ? d->n_options : 0, d ? d->options : NULL } };
	for (size_t k = 0; k < 3; k++) {
		json_object *arr = json_object_new_array();
		if (lists[k].n > 32)
			return uk_err(err, E2BIG, "config.dns_config.%s has more than 32 entries", lists[k].key);
		for (size_t i = 0; i < lists[k].n; i++) {
			if (!dns_word_ok(lists[k].v[i]) && !(k == 2 && lists[k].v[i] && strlen(lists[k].v[i]) < 64)) {
				json_object_put(arr);
				return uk_err(err, EINVAL, "config.dns_config.%s[%zu] \"%s\" is not valid", lists[k].key, i,
					      nz(lists[k].v[i]));
			}
			json_object_array_add(arr, json_object_new_string(lists[k].v[i]));
		}
		json_object_object_add(s->dns, lists[k].key, arr);
	}
	return 0;
}

CRI_HANDLER(cri_run_pod_sandbox)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__RunPodSandboxRequest, q);
	const Runtime__V1__PodSandboxConfig *cfg = q->config;
	int r;
	if (!cfg)
		return uk_err(err, EINVAL, "config is required");
	if (!cfg->metadata)
		return uk_err(err, EINVAL, "config.metadata is required");
	if ((r = require(cfg->metadata->name, "config.metadata.name", err)) < 0 ||
	    (r = require(cfg->metadata->uid, "config.metadata.uid", err)) < 0 ||
	    (r = require(cfg->metadata->namespace_, "config.metadata.namespace", err)) < 0)
		return r;
	if (q->runtime_handler && *q->runtime_handler && strcmp(q->runtime_handler, CRI_HANDLER_NAME) != 0)
		return uk_err(err, EINVAL, "runtime_handler \"%s\" is not served here; use \"\" or \"%s\"",
			      q->runtime_handler, CRI_HANDLER_NAME);
	if (cfg->log_directory && *cfg->log_directory &&
	    (cfg->log_directory[0] != '/' || path_climbs(cfg->log_directory)))
		return uk_err(err, EINVAL, "config.log_directory must be an absolute path without \"..\"");
	if (cfg->linux && cfg->linux->security_context && cfg->linux->security_context->namespace_options &&
	    cfg->linux->security_context->namespace_options->network == RUNTIME__V1__NAMESPACE_MODE__NODE)
		return uk_err(err, EINVAL,
			      "config.linux.security_context.namespace_options.network is NODE: a VM cannot share "
			      "the node's network namespace; unikd runs no host-network pods");
	struct sandbox *s = calloc(1, sizeof(*s));
	if (!s)
		return uk_err(err, ENOMEM, "out of memory");
	s->name = strdup(cfg->metadata->name);
	s->uid = strdup(cfg->metadata->uid);
	s->ns = strdup(cfg->metadata->namespace_);
	s->attempt = cfg->metadata->attempt;
	s->labels = cri_map_to_json(cfg->n_labels, (void **)cfg->labels);
	s->annotations = cri_map_to_json(cfg->n_annotations, (void **)cfg->annotations);
	s->log_directory = cfg->log_directory && *cfg->log_directory ? strdup(cfg->log_directory) : NULL;
	s->runtime_handler = strdup(nz(q->runtime_handler));
	s->hostname = cfg->hostname && *cfg->hostname ? strdup(cfg->hostname) : NULL;
	s->cgroup_parent = cfg->linux && cfg->linux->cgroup_parent && *cfg->linux->cgroup_parent
				   ? strdup(cfg->linux->cgroup_parent)
				   : NULL;
	if ((r = ports_and_dns(cfg, s, err)) < 0) {
		sandbox_free(s);
		return r;
	}
	if ((r = check_choice(annotation(s->annotations, ANN_ACCEL), "config.annotations[" ANN_ACCEL "]", accels, err)) < 0 ||
	    (r = check_choice(annotation(s->annotations, ANN_MACHINE), "config.annotations[" ANN_MACHINE "]", machines, err)) < 0) {
		sandbox_free(s);
		return r;
	}
	char id[UK_FULL_ID_LEN + 1];
	if ((r = rt_sandbox_create(ctx->rt, s, id, err)) < 0)
		return r;
	NEW_RESP(a, Runtime__V1__RunPodSandboxResponse, resp_, RUNTIME__V1__RUN_POD_SANDBOX_RESPONSE__INIT);
	resp_->pod_sandbox_id = arena_strdup(a, id);
	return 0;
}

CRI_HANDLER(cri_stop_pod_sandbox)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__StopPodSandboxRequest, q);
	int r;
	if ((r = require(q->pod_sandbox_id, "pod_sandbox_id", err)) < 0 ||
	    (r = rt_sandbox_stop(ctx->rt, q->pod_sandbox_id, err)) < 0)
		return r;
	NEW_RESP(a, Runtime__V1__StopPodSandboxResponse, x, RUNTIME__V1__STOP_POD_SANDBOX_RESPONSE__INIT);
	(void)x;
	return 0;
}

CRI_HANDLER(cri_remove_pod_sandbox)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__RemovePodSandboxRequest, q);
	int r;
	if ((r = require(q->pod_sandbox_id, "pod_sandbox_id", err)) < 0 ||
	    (r = rt_sandbox_remove(ctx->rt, q->pod_sandbox_id, err)) < 0)
		return r;
	NEW_RESP(a, Runtime__V1__RemovePodSandboxResponse, x, RUNTIME__V1__REMOVE_POD_SANDBOX_RESPONSE__INIT);
	(void)x;
	return 0;
}

Runtime__V1__PodSandboxMetadata *cri_sandbox_metadata(arena *a, const struct sandbox *s)
{
	Runtime__V1__PodSandboxMetadata *m = arena_new0(a, Runtime__V1__PodSandboxMetadata);
	*m = (Runtime__V1__PodSandboxMetadata)RUNTIME__V1__POD_SANDBOX_METADATA__INIT;
	m->name = arena_strdup(a, s->name);
	m->uid = arena_strdup(a, s->uid);
	m->namespace_ = arena_strdup(a, s->ns);
	m->attempt = s->attempt;
	return m;
}

CRI_HANDLER(cri_pod_sandbox_status)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__PodSandboxStatusRequest, q);
	struct sandbox *s;
	int r;
	if ((r = require(q->pod_sandbox_id, "pod_sandbox_id", err)) < 0)
		return r;
	rt_lock(ctx->rt);
	if ((r = rt_find_sandbox(ctx->rt, q->pod_sandbox_id, &s, err)) < 0) {
		rt_unlock(ctx->rt);
		return r;
	}
	NEW_RESP(a, Runtime__V1__PodSandboxStatusResponse, resp_, RUNTIME__V1__POD_SANDBOX_STATUS_RESPONSE__INIT);
	Runtime__V1__PodSandboxStatus *st = arena_new0(a, Runtime__V1__PodSandboxStatus);
	*st = (Runtime__V1__PodSandboxStatus)RUNTIME__V1__POD_SANDBOX_STATUS__INIT;
	st->id = arena_strdup(a, s->id);
	st->metadata = cri_sandbox_metadata(a, s);
	st->state = s->state == SANDBOX_READY ? RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY
					      : RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY;
	st->created_at = s->created_ns;
	Runtime__V1__PodSandboxNetworkStatus *net = arena_new0(a, Runtime__V1__PodSandboxNetworkStatus);
	*net = (Runtime__V1__PodSandboxNetworkStatus)RUNTIME__V1__POD_SANDBOX_NETWORK_STATUS__INIT;
	net->ip = arena_strdup(a, nz(s->ip));
	st->network = net;
	Runtime__V1__LinuxPodSandboxStatus *lx = arena_new0(a, Runtime__V1__LinuxPodSandboxStatus);
	*lx = (Runtime__V1__LinuxPodSandboxStatus)RUNTIME__V1__LINUX_POD_SANDBOX_STATUS__INIT;
	Runtime__V1__Namespace *ns = arena_new0(a, Runtime__V1__Namespace);
	*ns = (Runtime__V1__Namespace)RUNTIME__V1__NAMESPACE__INIT;
	Runtime__V1__NamespaceOption *opt = arena_new0(a, Runtime__V1__NamespaceOption);
	*opt = (Runtime__V1__NamespaceOption)RUNTIME__V1__NAMESPACE_OPTION__INIT;
	ns->options = opt;
	lx->namespaces = ns;
	st->linux = lx;
	cri_json_to_map(a, s->labels, &st->n_labels, (void ***)&st->labels, MAP_ENTRY_DESC);
	cri_json_to_map(a, s->annotations, &st->n_annotations, (void ***)&st->annotations, MAP_ENTRY_DESC);
	st->runtime_handler = arena_strdup(a, nz(s->runtime_handler));
	resp_->status = st;
	resp_->timestamp = (int64_t)uk_now_realtime_ns();
	if (q->verbose) {
		_cleanup_json_ json_object *o = sandbox_to_json(s);
		int64_t expiry = 0;
		int leased = rt_net_lease(ctx->rt->net, s, &expiry);
		json_object *lease = json_object_new_object();
		json_object_object_add(lease, "taken", json_object_new_boolean(leased > 0));
		if (leased > 0)
			json_object_object_add(lease, "expiry", json_object_new_int64(expiry));
		json_object_object_add(o, "lease", lease);
		_cleanup_json_ json_object *info = json_object_new_object();
		json_object_object_add(info, "info", json_object_new_string(json_object_to_json_string(o)));
		cri_json_to_map(a, info, &resp_->n_info, (void ***)&resp_->info, MAP_ENTRY_DESC);
	}
	rt_unlock(ctx->rt);
	return 0;
}

CRI_HANDLER(cri_list_pod_sandbox)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__ListPodSandboxRequest, q);
	const Runtime__V1__PodSandboxFilter *f = q->filter;
	(void)err;
	NEW_RESP(a, Runtime__V1__ListPodSandboxResponse, resp_, RUNTIME__V1__LIST_POD_SANDBOX_RESPONSE__INIT);
	rt_lock(ctx->rt);
	resp_->items = arena_array(a, Runtime__V1__PodSandbox *, ctx->rt->n_sb);
	for (size_t i = 0; i < ctx->rt->n_sb; i++) {
		struct sandbox *s = ctx->rt->sb[i];
		if (f && !cri_sandbox_matches(s, f->id, f->state ? (int)f->state->state : -1, f->n_label_selector,
					      (void **)f->label_selector))
			continue;
		Runtime__V1__PodSandbox *p = arena_new0(a, Runtime__V1__PodSandbox);
		*p = (Runtime__V1__PodSandbox)RUNTIME__V1__POD_SANDBOX__INIT;
		p->id = arena_strdup(a, s->id);
		p->metadata = cri_sandbox_metadata(a, s);
		p->state = s->state == SANDBOX_READY ? RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY
						     : RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY;
		p->created_at = s->created_ns;
		cri_json_to_map(a, s->labels, &p->n_labels, (void ***)&p->labels, MAP_ENTRY_DESC);
		cri_json_to_map(a, s->annotations, &p->n_annotations, (void ***)&p->annotations, MAP_ENTRY_DESC);
		p->runtime_handler = arena_strdup(a, nz(s->runtime_handler));
		resp_->items[resp_->n_items++] = p;
	}
	rt_unlock(ctx->rt);
	return 0;
}

/* Append a word to the command line; words are space separated, so none may hold space. */
static int add_word(char *buf, size_t *len, const char *w, const char *field, size_t idx, uk_error *err)
{
	if (has_space(w))
		return uk_err(err, EINVAL, "%s[%zu] holds white space, which a kernel command line cannot carry", field, idx);
	size_t n = strlen(w);
	if (n == 0)
		return 0;
	if (*len + n + 2 > WORD_MAX)
		return uk_err(err, E2BIG, "the command line built from %s is longer than %d bytes", field, WORD_MAX - 1);
	if (*len)
		buf[(*len)++] = ' ';
	memcpy(buf + *len, w, n);
	*len += n;
	buf[*len] = '\0';
	return 0;
}

static int build_cmdline(const Runtime__V1__ContainerConfig *cfg, const char *image_cmdline, char *buf, uk_error *err)
{
	size_t len = 0;
	int r;
	buf[0] = '\0';
	for (size_t i = 0; i < cfg->n_envs; i++) {
		const Runtime__V1__KeyValue *kv = cfg->envs[i];
		if (!kv->key || !*kv->key || strchr(kv->key, '='))
			return uk_err(err, EINVAL, "config.envs[%zu].key must be non-empty and hold no \"=\"", i);
		char word[WORD_MAX];
		if (snprintf(word, sizeof(word), "%s=%s", kv->key, nz(kv->value)) >= (int)sizeof(word))
			return uk_err(err, E2BIG, "config.envs[%zu] is too long", i);
		if ((r = add_word(buf, &len, word, "config.envs", i, err)) < 0)
			return r;
	}
	if (cfg->n_command > 0) {
		for (size_t i = 0; i < cfg->n_command; i++)
			if ((r = add_word(buf, &len, cfg->command[i], "config.command", i, err)) < 0)
				return r;
	} else if (image_cmdline && *image_cmdline) {
		if (len + strlen(image_cmdline) + 2 > WORD_MAX)
			return uk_err(err, E2BIG, "the image's command line is too long");
		if (len)
			buf[len++] = ' ';
		strcpy(buf + len, image_cmdline);
		len += strlen(image_cmdline);
	}
	for (size_t i = 0; i < cfg->n_args; i++)
		if ((r = add_word(buf, &len, cfg->args[i], "config.args", i, err)) < 0)
			return r;
	return 0;
}

CRI_HANDLER(cri_create_container)
{
	struct cri_context *ctx = ud;
	struct runtime *rt = ctx->rt;
	REQ(Runtime__V1__CreateContainerRequest, q);
	const Runtime__V1__ContainerConfig *cfg = q->config;
	int r;
	if ((r = require(q->pod_sandbox_id, "pod_sandbox_id", err)) < 0)
		return r;
	if (!cfg)
		return uk_err(err, EINVAL, "config is required");
	if (!cfg->metadata)
		return uk_err(err, EINVAL, "config.metadata is required");
	if ((r = require(cfg->metadata->name, "config.metadata.name", err)) < 0)
		return r;
	if (!cfg->image || !cfg->image->image || !*cfg->image->image)
		return uk_err(err, EINVAL, "config.image.image is required");
	if (cfg->log_path && *cfg->log_path && (cfg->log_path[0] == '/' || path_climbs(cfg->log_path)))
		return uk_err(err, EINVAL, "config.log_path must be relative to the pod's log_directory, without \"..\"");
	if (cfg->tty || cfg->stdin)
		return uk_err(err, EINVAL, "config.tty and config.stdin are not supported: a VM's console is its log");

	_cleanup_image_info_ struct image_info *img = NULL;
	if ((r = image_store_resolve(rt->images, cfg->image->image, &img, err)) < 0) {
		if (r == -ENOENT)
			return uk_err(err, ENOENT, "config.image.image \"%s\" is not in the image store", cfg->image->image);
		return uk_err_ctx(err, "config.image.image");
	}
	if (img->not_runnable || (!img->kernel && !img->disk))
		return uk_err(err, EINVAL, "config.image.image \"%s\" (%s) cannot run on unikd: %s", cfg->image->image,
			      img->id, img->not_runnable ? img->not_runnable : "the image has neither a kernel nor a disk");

	_cleanup_free_ char *cmdline = malloc(WORD_MAX);
	if (!cmdline)
		return uk_err(err, ENOMEM, "out of memory");
	if ((r = build_cmdline(cfg, img->cmdline, cmdline, err)) < 0)
		return r;

	/* A reload may change the defaults (main.c stores them atomically). */
	unsigned memory = __atomic_load_n(&rt->cfg.default_memory_mib, __ATOMIC_RELAXED);
	unsigned vcpus = __atomic_load_n(&rt->cfg.default_vcpus, __ATOMIC_RELAXED);
	const Runtime__V1__LinuxContainerResources *res = cfg->linux ? cfg->linux->resources : NULL;
	if (res && res->memory_limit_in_bytes > 0) {
		int64_t mib = (res->memory_limit_in_bytes + (1 << 20) - 1) >> 20;
		if (mib < 16 || mib > 1024 * 1024)
			return uk_err(err, EINVAL,
				      "config.linux.resources.memory_limit_in_bytes is %lld: a VM needs 16 MiB to 1 TiB",
				      (long long)res->memory_limit_in_bytes);
		memory = (unsigned)mib;
	}
	if (res && res->cpu_quota > 0 && res->cpu_period > 0) {
		int64_t n = (res->cpu_quota + res->cpu_period - 1) / res->cpu_period;
		if (n > 256)
			return uk_err(err, EINVAL, "config.linux.resources.cpu_quota asks for %lld vCPUs, at most 256",
				      (long long)n);
		vcpus = (unsigned)n;
	}

	json_object *ann = cri_map_to_json(cfg->n_annotations, (void **)cfg->annotations);
	const char *accel, *machine, *cpu;
	char log_path[PATH_MAX] = "";
	rt_lock(rt);
	struct sandbox *s;
	if ((r = rt_find_sandbox(rt, q->pod_sandbox_id, &s, err)) < 0) {
		rt_unlock(rt);
		json_object_put(ann);
		return r;
	}
	_cleanup_free_ char *expanded = NULL;
	if ((r = rt_net_expand(rt->net, s, cmdline, &expanded, err)) < 0) {
		rt_unlock(rt);
		json_object_put(ann);
		return uk_err_ctx(err, "the command line");
	}
	accel = annotation(ann, ANN_ACCEL) ? annotation(ann, ANN_ACCEL) : annotation(s->annotations, ANN_ACCEL);
	machine = annotation(ann, ANN_MACHINE) ? annotation(ann, ANN_MACHINE) : annotation(s->annotations, ANN_MACHINE);
	cpu = annotation(ann, ANN_CPU) ? annotation(ann, ANN_CPU) : annotation(s->annotations, ANN_CPU);
	if (cfg->log_path && *cfg->log_path) {
		if (!s->log_directory) {
			rt_unlock(rt);
			json_object_put(ann);
			return uk_err(err, EINVAL, "config.log_path is set but the pod has no log_directory");
		}
		snprintf(log_path, sizeof(log_path), "%s/%s", s->log_directory, cfg->log_path);
	}
	struct container *c = calloc(1, sizeof(*c));
	if (!c) {
		rt_unlock(rt);
		json_object_put(ann);
		return uk_err(err, ENOMEM, "out of memory");
	}
	memcpy(c->sandbox_id, s->id, sizeof(c->sandbox_id));
	c->accel = strdup(accel ? accel : rt->cfg.default_accel);
	c->machine = machine ? strdup(machine) : NULL;
	c->cpu = cpu ? strdup(cpu) : NULL;
	rt_unlock(rt);

	c->annotations = ann;
	c->name = strdup(cfg->metadata->name);
	c->attempt = cfg->metadata->attempt;
	c->labels = cri_map_to_json(cfg->n_labels, (void **)cfg->labels);
	c->image = strdup(cfg->image->image);
	c->image_ref = strdup(img->id);
	c->log_path = *log_path ? strdup(log_path) : NULL;
	c->kernel = img->kernel ? strdup(img->kernel) : NULL;
	c->initrd = img->initrd ? strdup(img->initrd) : NULL;
	c->disk = img->disk ? strdup(img->disk) : NULL;
	c->disk_format = img->disk_format ? strdup(img->disk_format) : NULL;
	c->cmdline = strdup(expanded);
	c->memory_mib = memory;
	c->vcpus = vcpus;
	if (res) {
		c->memory_limit = res->memory_limit_in_bytes;
		c->cpu_quota = res->cpu_quota;
		c->cpu_period = res->cpu_period;
		c->cpu_shares = res->cpu_shares;
	}
	if ((r = check_choice(c->accel, "annotation " ANN_ACCEL, accels, err)) < 0 ||
	    (r = check_choice(c->machine, "annotation " ANN_MACHINE, machines, err)) < 0) {
		container_free(c);
		return r;
	}
	if (c->log_path) {
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", c->log_path);
		*strrchr(dir, '/') = '\0';
		if ((r = uk_mkdir_p(dir, 0755, err)) < 0) {
			container_free(c);
			return uk_err_ctx(err, "log directory");
		}
	}
	char id[UK_FULL_ID_LEN + 1];
	if ((r = rt_container_create(rt, c, id, err)) < 0)
		return r;
	NEW_RESP(a, Runtime__V1__CreateContainerResponse, resp_, RUNTIME__V1__CREATE_CONTAINER_RESPONSE__INIT);
	resp_->container_id = arena_strdup(a, id);
	return 0;
}

CRI_HANDLER(cri_start_container)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__StartContainerRequest, q);
	int r;
	if ((r = require(q->container_id, "container_id", err)) < 0 ||
	    (r = rt_container_start(ctx->rt, q->container_id, err)) < 0)
		return r;
	NEW_RESP(a, Runtime__V1__StartContainerResponse, x, RUNTIME__V1__START_CONTAINER_RESPONSE__INIT);
	(void)x;
	return 0;
}

CRI_HANDLER(cri_stop_container)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__StopContainerRequest, q);
	int r;
	if ((r = require(q->container_id, "container_id", err)) < 0)
		return r;
	if (q->timeout < 0)
		return uk_err(err, EINVAL, "timeout must not be negative");
	r = rt_container_stop(ctx->rt, q->container_id, q->timeout, err);
	if (r < 0 && r != -ENOENT)
		return r;
	if (r == -ENOENT)
		return r; /* containerd answers NotFound for an unknown id here */
	NEW_RESP(a, Runtime__V1__StopContainerResponse, x, RUNTIME__V1__STOP_CONTAINER_RESPONSE__INIT);
	(void)x;
	return 0;
}

CRI_HANDLER(cri_remove_container)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__RemoveContainerRequest, q);
	int r;
	if ((r = require(q->container_id, "container_id", err)) < 0 ||
	    (r = rt_container_remove(ctx->rt, q->container_id, err)) < 0)
		return r;
	NEW_RESP(a, Runtime__V1__RemoveContainerResponse, x, RUNTIME__V1__REMOVE_CONTAINER_RESPONSE__INIT);
	(void)x;
	return 0;
}

Runtime__V1__ContainerMetadata *cri_container_metadata(arena *a, const struct container *c)
{
	Runtime__V1__ContainerMetadata *m = arena_new0(a, Runtime__V1__ContainerMetadata);
	*m = (Runtime__V1__ContainerMetadata)RUNTIME__V1__CONTAINER_METADATA__INIT;
	m->name = arena_strdup(a, c->name);
	m->attempt = c->attempt;
	return m;
}

static Runtime__V1__ImageSpec *ct_image(arena *a, const struct container *c)
{
	Runtime__V1__ImageSpec *i = arena_new0(a, Runtime__V1__ImageSpec);
	*i = (Runtime__V1__ImageSpec)RUNTIME__V1__IMAGE_SPEC__INIT;
	i->image = arena_strdup(a, nz(c->image));
	return i;
}

CRI_HANDLER(cri_list_containers)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__ListContainersRequest, q);
	const Runtime__V1__ContainerFilter *f = q->filter;
	(void)err;
	NEW_RESP(a, Runtime__V1__ListContainersResponse, resp_, RUNTIME__V1__LIST_CONTAINERS_RESPONSE__INIT);
	rt_lock(ctx->rt);
	rt_refresh(ctx->rt);
	resp_->containers = arena_array(a, Runtime__V1__Container *, ctx->rt->n_ct);
	for (size_t i = 0; i < ctx->rt->n_ct; i++) {
		struct container *c = ctx->rt->ct[i];
		if (f && !cri_container_matches(c, f->id, f->pod_sandbox_id, f->state ? (int)f->state->state : -1,
						f->n_label_selector, (void **)f->label_selector))
			continue;
		Runtime__V1__Container *o = arena_new0(a, Runtime__V1__Container);
		*o = (Runtime__V1__Container)RUNTIME__V1__CONTAINER__INIT;
		o->id = arena_strdup(a, c->id);
		o->pod_sandbox_id = arena_strdup(a, c->sandbox_id);
		o->metadata = cri_container_metadata(a, c);
		o->image = ct_image(a, c);
		o->image_ref = arena_strdup(a, nz(c->image_ref));
		o->state = (Runtime__V1__ContainerState)c->state;
		o->created_at = c->created_ns;
		cri_json_to_map(a, c->labels, &o->n_labels, (void ***)&o->labels, MAP_ENTRY_DESC);
		cri_json_to_map(a, c->annotations, &o->n_annotations, (void ***)&o->annotations, MAP_ENTRY_DESC);
		resp_->containers[resp_->n_containers++] = o;
	}
	rt_unlock(ctx->rt);
	return 0;
}

CRI_HANDLER(cri_container_status)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__ContainerStatusRequest, q);
	struct container *c;
	int r;
	if ((r = require(q->container_id, "container_id", err)) < 0)
		return r;
	rt_lock(ctx->rt);
	rt_refresh(ctx->rt);
	if ((r = rt_find_container(ctx->rt, q->container_id, &c, err)) < 0) {
		rt_unlock(ctx->rt);
		return r;
	}
	NEW_RESP(a, Runtime__V1__ContainerStatusResponse, resp_, RUNTIME__V1__CONTAINER_STATUS_RESPONSE__INIT);
	Runtime__V1__ContainerStatus *st = arena_new0(a, Runtime__V1__ContainerStatus);
	*st = (Runtime__V1__ContainerStatus)RUNTIME__V1__CONTAINER_STATUS__INIT;
	st->id = arena_strdup(a, c->id);
	st->metadata = cri_container_metadata(a, c);
	st->state = (Runtime__V1__ContainerState)c->state;
	st->created_at = c->created_ns;
	st->started_at = c->started_ns;
	st->finished_at = c->finished_ns;
	st->exit_code = c->exit_code;
	st->image = ct_image(a, c);
	st->image_ref = arena_strdup(a, nz(c->image_ref));
	st->reason = arena_strdup(a, nz(c->reason));
	st->message = arena_strdup(a, nz(c->message));
	cri_json_to_map(a, c->labels, &st->n_labels, (void ***)&st->labels, MAP_ENTRY_DESC);
	cri_json_to_map(a, c->annotations, &st->n_annotations, (void ***)&st->annotations, MAP_ENTRY_DESC);
	st->log_path = arena_strdup(a, nz(c->log_path));
	resp_->status = st;
	if (q->verbose) {
		_cleanup_json_ json_object *o = container_to_json(c);
		char dir[PATH_MAX];
		rt_vm_dir(ctx->rt, c->id, dir, sizeof(dir));
		json_object_object_add(o, "vm_state_dir", json_object_new_string(dir));
		rt_ctr_dir(ctx->rt, c->id, dir, sizeof(dir));
		json_object_object_add(o, "container_dir", json_object_new_string(dir));
		_cleanup_json_ json_object *info = json_object_new_object();
		json_object_object_add(info, "info", json_object_new_string(json_object_to_json_string(o)));
		cri_json_to_map(a, info, &resp_->n_info, (void ***)&resp_->info, MAP_ENTRY_DESC);
	}
	rt_unlock(ctx->rt);
	return 0;
}

CRI_HANDLER(cri_reopen_container_log)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__ReopenContainerLogRequest, q);
	int r;
	if ((r = require(q->container_id, "container_id", err)) < 0 ||
	    (r = rt_container_reopen_log(ctx->rt, q->container_id, err)) < 0)
		return r;
	NEW_RESP(a, Runtime__V1__ReopenContainerLogResponse, x, RUNTIME__V1__REOPEN_CONTAINER_LOG_RESPONSE__INIT);
	(void)x;
	return 0;
}

CRI_HANDLER(cri_update_runtime_config)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__UpdateRuntimeConfigRequest, q);
	const char *cidr = q->runtime_config && q->runtime_config->network_config
				   ? q->runtime_config->network_config->pod_cidr
				   : NULL;
	if (cidr && *cidr) {
		int r = rt_net_set_cidr(ctx->rt->net, cidr, err);
		if (r < 0)
			return uk_err_ctx(err, "runtime_config.network_config.pod_cidr");
	}
	NEW_RESP(a, Runtime__V1__UpdateRuntimeConfigResponse, x, RUNTIME__V1__UPDATE_RUNTIME_CONFIG_RESPONSE__INIT);
	(void)x;
	return 0;
}

CRI_HANDLER(cri_runtime_config)
{
	(void)ud;
	(void)req;
	(void)err;
	NEW_RESP(a, Runtime__V1__RuntimeConfigResponse, r, RUNTIME__V1__RUNTIME_CONFIG_RESPONSE__INIT);
	Runtime__V1__LinuxRuntimeConfiguration *lx = arena_new0(a, Runtime__V1__LinuxRuntimeConfiguration);
	*lx = (Runtime__V1__LinuxRuntimeConfiguration)RUNTIME__V1__LINUX_RUNTIME_CONFIGURATION__INIT;
	lx->cgroup_driver = RUNTIME__V1__CGROUP_DRIVER__CGROUPFS;
	r->linux = lx;
	return 0;
}

CRI_HANDLER(cri_update_container_resources)
{
	struct cri_context *ctx = ud;
	const Runtime__V1__UpdateContainerResourcesRequest *q = (const void *)req;
	int r;
	if ((r = require(q->container_id, "container_id", err)) < 0)
		return r;
	const Runtime__V1__LinuxContainerResources *l = q->linux;
	if (!l)
		return uk_err(err, EINVAL, "linux is required: the new CPU and memory limits");
	if (l->memory_limit_in_bytes < 0 || l->cpu_quota < -1 || l->cpu_period < 0 || l->cpu_shares < 0)
		return uk_err(err, EINVAL, "linux: limits must not be negative");
	if (l->cpu_period && (l->cpu_period < 1000 || l->cpu_period > 1000000))
		return uk_err(err, EINVAL, "linux.cpu_period %lld is outside 1000..1000000 us", (long long)l->cpu_period);
	if (l->cpu_quota > 0 && l->cpu_quota < 1000)
		return uk_err(err, EINVAL, "linux.cpu_quota %lld is below 1000 us", (long long)l->cpu_quota);
	if ((r = rt_container_update_resources(ctx->rt, q->container_id, l->memory_limit_in_bytes, l->cpu_quota,
						l->cpu_period, l->cpu_shares, err)) < 0)
		return r;
	Runtime__V1__UpdateContainerResourcesResponse *o = arena_new0(a, Runtime__V1__UpdateContainerResourcesResponse);
	*o = (Runtime__V1__UpdateContainerResourcesResponse)RUNTIME__V1__UPDATE_CONTAINER_RESOURCES_RESPONSE__INIT;
	*resp = (ProtobufCMessage *)o;
	return 0;
}
