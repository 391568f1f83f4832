/* RuntimeService: the CRI's pod and container calls, mapped onto the runtime core. Every
 * request is checked at the door (limits.c) before anything is allocated for it. */
#include <limits.h>
#include <string.h>

#include "../common/util.h"
#include "../guest/cmdline.h"
#include "cri.h"
#include "../unikd/pool_vms.h"
#include "volumes.h"
#include "limits.h"
#include "wire_items.h"

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

static int check_choice(const char *v, const char *field, const char *const *ok, uk_error *err)
{
	if (!v)
		return 0;
	for (; *ok; ok++)
		if (strcmp(v, *ok) == 0)
			return 0;
	char q[CRI_QUOTE_MAX];
	cri_quote(q, v);
	return uk_err(err, EINVAL, "%s: unknown value \"%s\"", field, q);
}

static const char *const accels[] = { "auto", "kvm", "tcg", NULL };
static const char *const machines[] = { "auto", "microvm", "pc", "q35", NULL };
static const char *const firmwares[] = { "auto", "qboot", "seabios", NULL };
static const char *const netcfgs[] = { "auto", "dhcp", "static", NULL };
static const char *const pits[] = { "auto", "on", "off", NULL };

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

Runtime__V1__RuntimeCondition *cri_condition(arena *a, const char *type, bool ok, const char *reason,
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
	st->conditions[0] = cri_condition(a, "RuntimeReady", qemu_ok, "QemuMissing",
				      "qemu-system-x86_64 could not be run; install qemu-system-x86");
	char why[512];
	bool net_ok = rt_net_ready(ctx->rt->net, why, sizeof(why));
	/* CNI mode says it as kubelet's other runtimes do, until a config loads. */
	st->conditions[1] = cri_condition(a, "NetworkReady", net_ok, ctx->rt->net->cni ? "NetworkPluginNotReady" : "NetworkNotReady",
				      arena_strdup(a, why));
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
		/* The warm pool: what it holds, per key (pool VMs are never pods). */
		rt_lock(ctx->rt);
		json_object *pool = rt_pool_info(ctx->rt);
		rt_unlock(ctx->rt);
		json_object_object_add(o, "pool", pool ? pool : json_object_new_object());
		_cleanup_json_ json_object *info = json_object_new_object();
		json_object_object_add(info, "info", json_object_new_string(json_object_to_json_string(o)));
		cri_json_to_map(a, info, &r->n_info, (void ***)&r->info, MAP_ENTRY_DESC);
	}
	return 0;
}

/* port_mappings and dns_config into the record, as JSON. cri_check_pod_config has checked
 * them; each object is attached before it is filled, so no path can leave one unowned. */
static void ports_and_dns(const Runtime__V1__PodSandboxConfig *cfg, struct sandbox *s)
{
	s->port_mappings = json_object_new_array();
	for (size_t i = 0; i < cfg->n_port_mappings; i++) {
		const Runtime__V1__PortMapping *pm = cfg->port_mappings[i];
		json_object *e = json_object_new_object();
		json_object_array_add(s->port_mappings, e);
		json_object_object_add(e, "proto", json_object_new_string(pm->protocol == RUNTIME__V1__PROTOCOL__UDP ? "udp" : "tcp"));
		json_object_object_add(e, "host_port", json_object_new_int(pm->host_port));
		json_object_object_add(e, "container_port", json_object_new_int(pm->container_port));
		json_object_object_add(e, "host_ip", json_object_new_string(nz(pm->host_ip)));
	}
	const Runtime__V1__DNSConfig *d = cfg->dns_config;
	const struct {
		const char *key;
		size_t n;
		char **v;
	} lists[] = { { "servers", d ? d->n_servers : 0, d ? d->servers : NULL },
		      { "searches", d ? d->n_searches : 0, d ? d->searches : NULL },
		      { "options", d ? d->n_options : 0, d ? d->options : NULL } };
	s->dns = json_object_new_object();
	for (size_t k = 0; k < ARRAY_SIZE(lists); k++) {
		json_object *arr = json_object_new_array();
		json_object_object_add(s->dns, lists[k].key, arr);
		for (size_t i = 0; i < lists[k].n; i++)
			json_object_array_add(arr, json_object_new_string(lists[k].v[i]));
	}
}

/* The pod's VM annotations: each among its choices, cpu among QEMU's models. */
static int check_vm_annotations(struct cri_context *ctx, size_t n, void *const *ann, const char *prefix,
				uk_error *err)
{
	static const struct {
		const char *key;
		const char *const *choices;
	} keys[] = { { ANN_ACCEL, accels }, { ANN_MACHINE, machines }, { ANN_FIRMWARE, firmwares },
		     { ANN_NETCFG, netcfgs }, { ANN_PIT, pits } };
	char f[64];
	int r;
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		snprintf(f, sizeof(f), "%s[%s]", prefix, keys[i].key);
		if ((r = check_choice(cri_map_get(n, ann, keys[i].key), f, keys[i].choices, err)) < 0)
			return r;
	}
	const char *cpu = cri_map_get(n, ann, ANN_CPU);
	snprintf(f, sizeof(f), "%s[" ANN_CPU "]", prefix);
	return cpu ? cri_cpu_model_check(ctx, cpu, f, err) : 0;
}

static struct sandbox *sandbox_from(const Runtime__V1__RunPodSandboxRequest *q)
{
	const Runtime__V1__PodSandboxConfig *cfg = q->config;
	struct sandbox *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->name = strdup(cfg->metadata->name);
	s->uid = strdup(cfg->metadata->uid);
	s->ns = strdup(cfg->metadata->namespace_);
	s->attempt = cfg->metadata->attempt;
	s->labels = cri_map_to_json(cfg->n_labels, (void **)cfg->labels);
	s->annotations = cri_map_to_json(cfg->n_annotations, (void **)cfg->annotations);
	s->log_directory = *nz(cfg->log_directory) ? strdup(cfg->log_directory) : NULL;
	s->runtime_handler = strdup(nz(q->runtime_handler));
	s->hostname = *nz(cfg->hostname) ? strdup(cfg->hostname) : NULL;
	s->cgroup_parent = cfg->linux && *nz(cfg->linux->cgroup_parent) ? strdup(cfg->linux->cgroup_parent) : NULL;
	ports_and_dns(cfg, s);
	return s;
}

/* unikd's handlers: "unikd", or `[delegate] handlers` (the delegate has routed the call). */
static bool handler_served(const struct cri_context *ctx, const char *h)
{
	if (!ctx->handlers)
		return strcmp(h, CRI_HANDLER_NAME) == 0;
	for (const char *const *p = ctx->handlers; *p; p++)
		if (strcmp(*p, h) == 0)
			return true;
	return false;
}

CRI_HANDLER(cri_run_pod_sandbox)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__RunPodSandboxRequest, q);
	const Runtime__V1__PodSandboxConfig *cfg = q->config;
	int r;
	if ((r = cri_check_pod_config(cfg, err)) < 0)
		return r;
	if (*nz(q->runtime_handler) && !handler_served(ctx, q->runtime_handler))
		return uk_err(err, EINVAL, "runtime_handler \"%.64s\" is not served here; use \"\" or \"%s\"",
			      q->runtime_handler, ctx->handlers ? ctx->handlers[0] : CRI_HANDLER_NAME);
	/* The runtime builds the VM's cgroup path by these rules at start: a parent it could
	 * never use is refused now, not run without a cgroup later. */
	if ((r = cg_parent_check(cfg->linux ? cfg->linux->cgroup_parent : NULL, UK_FULL_ID_LEN, err)) < 0)
		return uk_err_ctx_r(err, r, "config.linux.cgroup_parent");
	if ((r = check_vm_annotations(ctx, cfg->n_annotations, (void *const *)cfg->annotations, "config.annotations",
				      err)) < 0)
		return r;
	struct sandbox *s = sandbox_from(q);
	if (!s)
		return uk_err(err, ENOMEM, "out of memory");
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
	if ((r = cri_require(q->pod_sandbox_id, "pod_sandbox_id", err)) < 0 ||
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
	if ((r = cri_require(q->pod_sandbox_id, "pod_sandbox_id", err)) < 0 ||
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

/* CNI: the result's other addresses (an IPv6 one, a second IPv4), after the pod IP. */
static void additional_ips(arena *a, const struct sandbox *s, Runtime__V1__PodSandboxNetworkStatus *net)
{
	json_object *ips;
	if (!s->cni || !s->ip || !json_object_object_get_ex(s->cni, "ips", &ips) || !json_object_is_type(ips, json_type_array))
		return;
	size_t n = json_object_array_length(ips);
	net->additional_ips = arena_array(a, Runtime__V1__PodIP *, n);
	for (size_t i = 0; i < n; i++) {
		char ip[64];
		snprintf(ip, sizeof(ip), "%s", json_object_get_string(json_object_array_get_idx(ips, i)));
		ip[strcspn(ip, "/")] = '\0';
		if (strcmp(ip, s->ip) == 0)
			continue;
		Runtime__V1__PodIP *p = arena_new0(a, Runtime__V1__PodIP);
		*p = (Runtime__V1__PodIP)RUNTIME__V1__POD_IP__INIT;
		p->ip = arena_strdup(a, ip);
		net->additional_ips[net->n_additional_ips++] = p;
	}
}

/* The runtime's lock for a read call. A quick call on a poller (grpc_server.h) takes it
 * only if it is free, and otherwise goes to its pool (GRPC_QUEUE_CALL), having done
 * nothing: a poller never waits. */
static int lock_for_read(struct runtime *rt)
{
	if (grpc_call_may_wait()) {
		rt_lock(rt);
		return 0;
	}
	return rt_trylock(rt) ? 0 : GRPC_QUEUE_CALL;
}

static Runtime__V1__PodSandboxState sandbox_state(const struct sandbox *s)
{
	return s->state == SANDBOX_READY ? RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY
					 : RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY;
}

CRI_HANDLER(cri_pod_sandbox_status)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__PodSandboxStatusRequest, q);
	struct sandbox *s;
	int r;
	if ((r = cri_require(q->pod_sandbox_id, "pod_sandbox_id", err)) < 0)
		return r;
	/* verbose reads dnsmasq's lease file, under the network's lock: not on a poller */
	if (q->verbose && !grpc_call_may_wait())
		return GRPC_QUEUE_CALL;
	if ((r = lock_for_read(ctx->rt)) != 0)
		return r;
	if ((r = rt_find_sandbox(ctx->rt, q->pod_sandbox_id, &s, err)) < 0) {
		rt_unlock(ctx->rt);
		return r;
	}
	NEW_RESP(a, Runtime__V1__PodSandboxStatusResponse, resp_, RUNTIME__V1__POD_SANDBOX_STATUS_RESPONSE__INIT);
	Runtime__V1__PodSandboxStatus *st = arena_new0(a, Runtime__V1__PodSandboxStatus);
	*st = (Runtime__V1__PodSandboxStatus)RUNTIME__V1__POD_SANDBOX_STATUS__INIT;
	st->id = arena_strdup(a, s->id);
	st->metadata = cri_sandbox_metadata(a, s);
	st->state = sandbox_state(s);
	st->created_at = s->created_ns;
	Runtime__V1__PodSandboxNetworkStatus *net = arena_new0(a, Runtime__V1__PodSandboxNetworkStatus);
	*net = (Runtime__V1__PodSandboxNetworkStatus)RUNTIME__V1__POD_SANDBOX_NETWORK_STATUS__INIT;
	net->ip = arena_strdup(a, nz(s->ip));
	additional_ips(a, s, net);
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

/* ---- list items, encoded once ----
 *
 * kubelet lists every pod and container every second. An item's fields never change after
 * creation but for its state, so each sandbox and container keeps its item's encoding
 * (struct list_enc), made at the first list after a change of state, and a list answers
 * with copies of those, as unknown fields of the response numbered as its repeated item
 * field (wire_items.h): the client reads items as ever, and the delegate's merge
 * (src/delegate/forward.c, reply_concat) packs this answer on its own and joins the
 * delegate's after it. An encoding that cannot be made (out of memory) leaves the item to
 * the message. */

static bool enc_fresh(const struct list_enc *e, int key)
{
	return e->data && e->key == key;
}

static void enc_make(struct list_enc *e, int key, const ProtobufCMessage *m)
{
	free(e->data);
	*e = (struct list_enc){ .key = key };
	(void)wire_item_encode(m, &e->data, &e->len); /* -ENOMEM: no data, the item goes as a message */
}

/* A copy of e as the response's next unknown field (its array has room); false if e has no
 * encoding. */
static bool enc_add(arena *a, ProtobufCMessage *resp, uint32_t field, const struct list_enc *e)
{
	if (!e->data)
		return false;
	uint8_t *d = arena_alloc(a, e->len);
	memcpy(d, e->data, e->len);
	resp->unknown_fields[resp->n_unknown_fields++] = wire_item_field(field, d, e->len);
	return true;
}

static Runtime__V1__PodSandbox *sandbox_item(arena *a, const struct sandbox *s)
{
	Runtime__V1__PodSandbox *p = arena_new0(a, Runtime__V1__PodSandbox);
	*p = (Runtime__V1__PodSandbox)RUNTIME__V1__POD_SANDBOX__INIT;
	p->id = arena_strdup(a, s->id);
	p->metadata = cri_sandbox_metadata(a, s);
	p->state = sandbox_state(s);
	p->created_at = s->created_ns;
	cri_json_to_map(a, s->labels, &p->n_labels, (void ***)&p->labels, MAP_ENTRY_DESC);
	cri_json_to_map(a, s->annotations, &p->n_annotations, (void ***)&p->annotations, MAP_ENTRY_DESC);
	p->runtime_handler = arena_strdup(a, nz(s->runtime_handler));
	return p;
}

#define LIST_POD_SANDBOX_ITEMS 1 /* ListPodSandboxResponse.items */
#define LIST_CONTAINERS_ITEMS 1  /* ListContainersResponse.containers */

CRI_HANDLER(cri_list_pod_sandbox)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__ListPodSandboxRequest, q);
	const Runtime__V1__PodSandboxFilter *f = q->filter;
	int r = cri_check_pod_filter(f, err);
	if (r < 0)
		return r;
	if ((r = lock_for_read(ctx->rt)) != 0)
		return r;
	NEW_RESP(a, Runtime__V1__ListPodSandboxResponse, resp_, RUNTIME__V1__LIST_POD_SANDBOX_RESPONSE__INIT);
	resp_->items = arena_array(a, Runtime__V1__PodSandbox *, ctx->rt->n_sb);
	resp_->base.unknown_fields = arena_array(a, ProtobufCMessageUnknownField, ctx->rt->n_sb);
	for (size_t i = 0; i < ctx->rt->n_sb; i++) {
		struct sandbox *s = ctx->rt->sb[i];
		if (s->adding)
			continue; /* its RunPodSandbox has not answered yet */
		if (f && !cri_sandbox_matches(s, f->id, f->state ? (int)f->state->state : -1, f->n_label_selector,
					      (void **)f->label_selector))
			continue;
		if (!enc_fresh(&s->list_enc, (int)s->state))
			enc_make(&s->list_enc, (int)s->state, &sandbox_item(a, s)->base);
		if (!enc_add(a, &resp_->base, LIST_POD_SANDBOX_ITEMS, &s->list_enc))
			resp_->items[resp_->n_items++] = sandbox_item(a, s);
	}
	rt_unlock(ctx->rt);
	return 0;
}

static int resolve_image(struct runtime *rt, const Runtime__V1__ContainerConfig *cfg, struct image_info **img,
			 uk_error *err)
{
	int r = image_store_resolve(rt->images, cfg->image->image, img, err);
	if (r == -ENOENT)
		return uk_err(err, ENOENT, "config.image.image \"%s\" is not in the image store", cfg->image->image);
	if (r < 0)
		return uk_err_ctx_r(err, r, "config.image.image");
	if ((*img)->not_runnable || (!(*img)->kernel && !(*img)->disk))
		return uk_err(err, EINVAL, "config.image.image \"%s\" (%s) cannot run on unikd: %s", cfg->image->image,
			      (*img)->id,
			      (*img)->not_runnable ? (*img)->not_runnable : "the image has neither a kernel nor a disk");
	return 0;
}

/* What the container takes from its pod, under the runtime's lock: the id, the guest
 * contract's plan (the command line with the pod's network expanded, machine, firmware,
 * devices), the VM annotations (the container's over the pod's), the log path. */
static int from_sandbox(struct runtime *rt, const Runtime__V1__CreateContainerRequest *q,
			const struct image_info *img, const struct guest_binary *bin, const struct cri_volumes *vols,
			struct container *c, bool *use_disk, uk_error *err)
{
	const Runtime__V1__ContainerConfig *cfg = q->config;
	struct sandbox *s;
	int r;
	if ((r = rt_find_sandbox(rt, q->pod_sandbox_id, &s, err)) < 0)
		return r;
	memcpy(c->sandbox_id, s->id, sizeof(c->sandbox_id));
	if ((r = cri_guest_plan(rt, s, cfg, img, bin, vols, c, use_disk, err)) < 0)
		return r;
	const char *accel = cri_json_get(c->annotations, ANN_ACCEL), *cpu = cri_json_get(c->annotations, ANN_CPU);
	accel = accel ? accel : cri_json_get(s->annotations, ANN_ACCEL);
	cpu = cpu ? cpu : cri_json_get(s->annotations, ANN_CPU);
	c->accel = strdup(accel ? accel : rt->cfg.default_accel);
	c->cpu = cpu ? strdup(cpu) : NULL;
	if (*nz(cfg->log_path)) {
		char log_path[PATH_MAX];
		if (!s->log_directory)
			return uk_err(err, EINVAL, "config.log_path is set but the pod has no log_directory");
		if ((r = cri_log_path_join(s->log_directory, cfg->log_path, log_path, sizeof(log_path), err)) < 0)
			return r;
		c->log_path = strdup(log_path);
	}
	c->stdin_open = cfg->stdin;
	return 0;
}

/* The VM's size and the fields that come from the request and the image. */
static void fill_container(struct runtime *rt, const Runtime__V1__ContainerConfig *cfg, const struct image_info *img,
			   bool use_disk, const struct cri_resources *res, struct container *c)
{
	/* A reload may change the defaults (main.c stores them atomically). */
	unsigned memory = __atomic_load_n(&rt->cfg.default_memory_mib, __ATOMIC_RELAXED);
	unsigned vcpus = __atomic_load_n(&rt->cfg.default_vcpus, __ATOMIC_RELAXED);
	c->name = strdup(cfg->metadata->name);
	c->attempt = cfg->metadata->attempt;
	c->labels = cri_map_to_json(cfg->n_labels, (void **)cfg->labels);
	c->image = strdup(cfg->image->image);
	c->image_ref = strdup(img->id);
	c->kernel = img->kernel ? strdup(img->kernel) : NULL;
	c->initrd = img->initrd ? strdup(img->initrd) : NULL;
	/* The disk only when the guest contract attaches it (a Solo5 guest without BLOCK_BASIC
	 * does not get one). */
	c->disk = use_disk && img->disk ? strdup(img->disk) : NULL;
	c->disk_format = c->disk && img->disk_format ? strdup(img->disk_format) : NULL;
	c->memory_mib = res->memory_mib ? res->memory_mib : memory;
	c->vcpus = res->vcpus ? res->vcpus : vcpus;
	c->memory_limit = res->memory_limit;
	c->cpu_quota = res->cpu_quota;
	c->cpu_period = res->cpu_period;
	c->cpu_shares = res->cpu_shares;
}

static int make_log_dir(const char *log_path, uk_error *err)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", log_path); /* fits: cri_log_path_join made it */
	*strrchr(dir, '/') = '\0';
	int r = uk_mkdir_p(dir, 0755, err);
	return r < 0 ? uk_err_ctx_r(err, r, "log directory") : 0;
}

CRI_HANDLER(cri_create_container)
{
	struct cri_context *ctx = ud;
	struct runtime *rt = ctx->rt;
	REQ(Runtime__V1__CreateContainerRequest, q);
	const Runtime__V1__ContainerConfig *cfg = q->config;
	struct cri_resources res;
	int r;
	if ((r = cri_require(q->pod_sandbox_id, "pod_sandbox_id", err)) < 0 ||
	    (r = cri_check_container_config(cfg, &res, err)) < 0 ||
	    (r = check_vm_annotations(ctx, cfg->n_annotations, (void *const *)cfg->annotations, "config.annotations",
				      err)) < 0)
		return r;
	_cleanup_image_info_ struct image_info *img = NULL;
	_cleanup_free_ struct guest_binary *bin = NULL;
	/* Mounts and devices are checked on the host (realpath, stat) before the lock. */
	_cleanup_(cri_volumes_free) struct cri_volumes vols = { 0 };
	if ((r = cri_volumes_parse(cfg, &vols, err)) < 0 || (r = resolve_image(rt, cfg, &img, err)) < 0 ||
	    (r = cri_guest_probe(img, &bin, err)) < 0)
		return r;
	struct container *c = calloc(1, sizeof(*c));
	if (!c)
		return uk_err(err, ENOMEM, "out of memory");
	c->annotations = cri_map_to_json(cfg->n_annotations, (void **)cfg->annotations);
	bool use_disk = false;
	rt_lock(rt);
	r = from_sandbox(rt, q, img, bin, &vols, c, &use_disk, err);
	rt_unlock(rt);
	/* Values inherited from the pod are checked too (its record may predate the checks). */
	if (r < 0 || (r = check_choice(c->accel, "annotation " ANN_ACCEL, accels, err)) < 0 ||
	    (r = check_choice(c->machine, "annotation " ANN_MACHINE, machines, err)) < 0 ||
	    (c->cpu && (r = cri_cpu_model_check(ctx, c->cpu, "annotation " ANN_CPU, err)) < 0) ||
	    (c->log_path && (r = make_log_dir(c->log_path, err)) < 0)) {
		container_free(c);
		return r;
	}
	fill_container(rt, cfg, img, use_disk, &res, c);
	char id[UK_FULL_ID_LEN + 1];
	if ((r = rt_container_create(rt, c, id, err)) < 0)
		return r;
	NEW_RESP(a, Runtime__V1__CreateContainerResponse, resp_, RUNTIME__V1__CREATE_CONTAINER_RESPONSE__INIT);
	resp_->container_id = arena_strdup(a, id);
	return 0;
}

static void save_started(void *rt, const char *id)
{
	rt_container_save_started(rt, id);
}

CRI_HANDLER(cri_start_container)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__StartContainerRequest, q);
	int r;
	if ((r = cri_require(q->container_id, "container_id", err)) < 0 ||
	    (r = rt_container_start(ctx->rt, q->container_id, err)) < 0)
		return r;
	grpc_call_after_reply(save_started, ctx->rt, q->container_id);
	NEW_RESP(a, Runtime__V1__StartContainerResponse, x, RUNTIME__V1__START_CONTAINER_RESPONSE__INIT);
	(void)x;
	return 0;
}

/* The call's own deadline cuts the grace period short: the VM is killed in time for the
 * answer to reach the client before its deadline, with room for vmwrapper's record. */
#define STOP_KILL_MARGIN_NS (3 * 1000000000ull)
static int64_t stop_timeout(int64_t timeout)
{
	uint64_t deadline = grpc_call_deadline_mono_ns(), now = uk_now_mono_ns();
	if (deadline == UINT64_MAX)
		return timeout;
	int64_t left = deadline > now + STOP_KILL_MARGIN_NS ? (int64_t)((deadline - now - STOP_KILL_MARGIN_NS) / 1000000000ull) : 0;
	return timeout < left ? timeout : left;
}

CRI_HANDLER(cri_stop_container)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__StopContainerRequest, q);
	int r;
	if ((r = cri_require(q->container_id, "container_id", err)) < 0)
		return r;
	if (q->timeout < 0)
		return uk_err(err, EINVAL, "timeout must not be negative");
	r = rt_container_stop(ctx->rt, q->container_id, stop_timeout(q->timeout), err);
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
	if ((r = cri_require(q->container_id, "container_id", err)) < 0 ||
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

static Runtime__V1__Container *container_item(arena *a, const struct container *c)
{
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
	return o;
}

CRI_HANDLER(cri_list_containers)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__ListContainersRequest, q);
	const Runtime__V1__ContainerFilter *f = q->filter;
	int r = cri_check_container_filter(f, err);
	if (r < 0)
		return r;
	if ((r = lock_for_read(ctx->rt)) != 0)
		return r;
	NEW_RESP(a, Runtime__V1__ListContainersResponse, resp_, RUNTIME__V1__LIST_CONTAINERS_RESPONSE__INIT);
	resp_->containers = arena_array(a, Runtime__V1__Container *, ctx->rt->n_ct);
	resp_->base.unknown_fields = arena_array(a, ProtobufCMessageUnknownField, ctx->rt->n_ct);
	for (size_t i = 0; i < ctx->rt->n_ct; i++) {
		struct container *c = ctx->rt->ct[i];
		if (f && !cri_container_matches(c, f->id, f->pod_sandbox_id, f->state ? (int)f->state->state : -1,
						f->n_label_selector, (void **)f->label_selector))
			continue;
		if (!enc_fresh(&c->list_enc, (int)c->state))
			enc_make(&c->list_enc, (int)c->state, &container_item(a, c)->base);
		if (!enc_add(a, &resp_->base, LIST_CONTAINERS_ITEMS, &c->list_enc))
			resp_->containers[resp_->n_containers++] = container_item(a, c);
	}
	rt_unlock(ctx->rt);
	return 0;
}

/* ContainerStatus.mounts: exactly the mounts that reach the guest (the record's). */
static void status_mounts(arena *a, const struct container *c, Runtime__V1__ContainerStatus *st)
{
	size_t n = c->mounts ? json_object_array_length(c->mounts) : 0;
	if (!n)
		return;
	st->mounts = arena_array(a, Runtime__V1__Mount *, n);
	for (size_t i = 0; i < n; i++) {
		json_object *m = json_object_array_get_idx(c->mounts, i), *ro = NULL;
		Runtime__V1__Mount *o = arena_new0(a, Runtime__V1__Mount);
		*o = (Runtime__V1__Mount)RUNTIME__V1__MOUNT__INIT;
		o->container_path = arena_strdup(a, nz(cri_json_get(m, "container_path")));
		o->host_path = arena_strdup(a, nz(cri_json_get(m, "host_path")));
		o->readonly = json_object_object_get_ex(m, "readonly", &ro) && json_object_get_boolean(ro);
		st->mounts[st->n_mounts++] = o;
	}
}

CRI_HANDLER(cri_container_status)
{
	struct cri_context *ctx = ud;
	REQ(Runtime__V1__ContainerStatusRequest, q);
	struct container *c;
	int r;
	if ((r = cri_require(q->container_id, "container_id", err)) < 0)
		return r;
	if ((r = lock_for_read(ctx->rt)) != 0)
		return r;
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
	status_mounts(a, c, st);
	resp_->status = st;
	if (q->verbose) {
		_cleanup_json_ json_object *o = container_to_json(c);
		char dir[PATH_MAX];
		/* Both were made at create, so they fit; a miss shows as "". */
		if (rt_vm_dir(ctx->rt, c->id, dir, sizeof(dir)) < 0)
			dir[0] = '\0';
		json_object_object_add(o, "vm_state_dir", json_object_new_string(dir));
		if (rt_ctr_dir(ctx->rt, c->id, dir, sizeof(dir)) < 0)
			dir[0] = '\0';
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
	if ((r = cri_require(q->container_id, "container_id", err)) < 0 ||
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
			return uk_err_ctx_r(err, r, "runtime_config.network_config.pod_cidr");
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
	REQ(Runtime__V1__UpdateContainerResourcesRequest, q);
	struct cri_resources res;
	int r;
	/* The same check as CreateContainer's (cri_check_resources), so only values a create
	 * would take reach the runtime. */
	if ((r = cri_require(q->container_id, "container_id", err)) < 0 || (r = cri_check_update(q, &res, err)) < 0 ||
	    (r = rt_container_update_resources(ctx->rt, q->container_id, res.memory_limit, res.cpu_quota,
						res.cpu_period, res.cpu_shares, err)) < 0)
		return r;
	NEW_RESP(a, Runtime__V1__UpdateContainerResourcesResponse, x,
		 RUNTIME__V1__UPDATE_CONTAINER_RESOURCES_RESPONSE__INIT);
	(void)x;
	return 0;
}
