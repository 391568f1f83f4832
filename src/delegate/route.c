/* The delegate's routing decisions and list merges (route.h). Pure: no I/O, no logging. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "route.h"
#include "../common/util.h"

const char *delegate_side_name(enum delegate_side side)
{
	return side == SIDE_UNIKD ? "unikd" : "the delegate";
}

static bool handler_name_ok(const char *h)
{
	size_t len = h ? strlen(h) : 0;
	if (len == 0 || len > DELEGATE_HANDLER_MAX)
		return false;
	for (const char *p = h; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
			return false;
	return true;
}

int delegate_config_check(const struct delegate_config *cfg, uk_error *err)
{
	if (!cfg || !cfg->handlers || cfg->n_handlers == 0 || cfg->n_handlers > DELEGATE_MAX_HANDLERS)
		return uk_err(err, EINVAL, "[delegate] handlers: between 1 and %d names required",
			      DELEGATE_MAX_HANDLERS);
	for (size_t i = 0; i < cfg->n_handlers; i++) {
		if (!handler_name_ok(cfg->handlers[i]))
			return uk_err(err, EINVAL,
				      "[delegate] handlers: name %zu is not 1-%d bytes of [a-z0-9._-]", i + 1,
				      DELEGATE_HANDLER_MAX);
		for (size_t j = 0; j < i; j++)
			if (strcmp(cfg->handlers[i], cfg->handlers[j]) == 0)
				return uk_err(err, EINVAL, "[delegate] handlers: \"%s\" is listed twice",
					      cfg->handlers[i]);
	}
	return 0;
}

static bool in_list(const char *const *v, size_t n, const char *h)
{
	for (size_t i = 0; v && i < n; i++)
		if (v[i] && strcmp(v[i], h) == 0)
			return true;
	return false;
}

/* The host namespace a sandbox config asks for ("network", "pid", "ipc"), or NULL. */
static const char *host_namespace(const Runtime__V1__PodSandboxConfig *config)
{
	if (!config || !config->linux || !config->linux->security_context ||
	    !config->linux->security_context->namespace_options)
		return NULL;
	const Runtime__V1__NamespaceOption *ns = config->linux->security_context->namespace_options;
	if (ns->network == RUNTIME__V1__NAMESPACE_MODE__NODE)
		return "network";
	if (ns->pid == RUNTIME__V1__NAMESPACE_MODE__NODE)
		return "pid";
	if (ns->ipc == RUNTIME__V1__NAMESPACE_MODE__NODE)
		return "ipc";
	return NULL;
}

/* The names of v, quoted and joined; a list too long for buf ends in "...". */
static void join_names(char *buf, size_t size, const char *const *v, size_t n)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; v && i < n; i++) {
		int k = snprintf(buf + used, size - used, "%s\"%s\"", i ? ", " : "", v[i] ? v[i] : "");
		if (k < 0 || (size_t)k >= size - used) {
			strcpy(buf + size - 4, "...");
			break;
		}
		used += (size_t)k;
	}
}

/* -EINVAL for an unknown handler: the message lists what is served by each side. */
static int unknown_handler(const struct delegate_config *cfg, const char *h, uk_error *err)
{
	char mine[UK_ERROR_MSG_MAX / 3], theirs[UK_ERROR_MSG_MAX / 3];
	join_names(mine, sizeof(mine), cfg->handlers, cfg->n_handlers);
	join_names(theirs, sizeof(theirs), cfg->delegate_handlers, cfg->n_delegate_handlers);
	return uk_err(err, EINVAL, "runtime_handler \"%.*s\" is not served here; served: %s (unikd), \"\" (%s)%s%s%s",
		      DELEGATE_HANDLER_MAX + 1, h, mine, delegate_side_name(cfg->default_unikd ? SIDE_UNIKD : SIDE_DELEGATE),
		      *theirs ? ", " : "", theirs, *theirs ? " (the delegate)" : "");
}

int delegate_route_sandbox(const struct delegate_config *cfg, const Runtime__V1__PodSandboxConfig *config,
			   const char *runtime_handler, struct delegate_route *out, uk_error *err)
{
	const char *h = runtime_handler ? runtime_handler : "";
	const char *ns;

	if (!cfg || !cfg->enabled) {
		*out = (struct delegate_route){ SIDE_UNIKD, "the delegate is off" };
		return 0;
	}
	ns = host_namespace(config);
	if (ns) {
		out->side = SIDE_DELEGATE;
		out->why = strcmp(ns, "network") == 0 ? "host network namespace (NODE)" :
			   strcmp(ns, "pid") == 0     ? "host PID namespace (NODE)" :
							"host IPC namespace (NODE)";
		return 0;
	}
	if (*h && in_list(cfg->handlers, cfg->n_handlers, h)) {
		*out = (struct delegate_route){ SIDE_UNIKD, "runtime_handler is one of unikd's" };
		return 0;
	}
	if (*h && in_list(cfg->delegate_handlers, cfg->n_delegate_handlers, h)) {
		*out = (struct delegate_route){ SIDE_DELEGATE, "runtime_handler is one of the delegate's" };
		return 0;
	}
	if (*h)
		return unknown_handler(cfg, h, err);
	if (cfg->default_unikd)
		*out = (struct delegate_route){ SIDE_UNIKD, "empty runtime_handler, [delegate] default = unikd" };
	else
		*out = (struct delegate_route){ SIDE_DELEGATE, "empty runtime_handler, [delegate] default = delegate" };
	return 0;
}

bool delegate_handler_is_unikd(const struct delegate_config *cfg, const char *h)
{
	return cfg && h && in_list(cfg->handlers, cfg->n_handlers, h);
}

int delegate_route_run(const struct delegate_config *cfg, const Runtime__V1__RunPodSandboxRequest *req,
		       struct delegate_route *out, uk_error *err)
{
	if (!req)
		return uk_err(err, EINVAL, "RunPodSandbox: no request");
	return delegate_route_sandbox(cfg, req->config, req->runtime_handler, out, err);
}

int delegate_route_pull(const struct delegate_config *cfg, const Runtime__V1__PullImageRequest *req,
			const enum delegate_side *pod_side, struct delegate_route *out, uk_error *err)
{
	if (!req)
		return uk_err(err, EINVAL, "PullImage: no request");
	if (!cfg || !cfg->enabled) {
		*out = (struct delegate_route){ SIDE_UNIKD, "the delegate is off" };
		return 0;
	}
	if (pod_side) {
		*out = (struct delegate_route){ *pod_side, "the pod's sandbox is there" };
		return 0;
	}
	int r = delegate_route_sandbox(cfg, req->sandbox_config, req->image ? req->image->runtime_handler : NULL,
				       out, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "image");
	return 0;
}

/* Both sides' item arrays into one new array (pointers copied with memcpy, so one function
 * serves every item type). */
static int merge_ptrs(const char *what, const void *a, size_t na, const void *b, size_t nb, void **out,
		      size_t *n_out, uk_error *err)
{
	const void *arr[2] = { a, b };
	size_t cnt[2] = { a ? na : 0, b ? nb : 0 };
	void *v;

	*out = NULL;
	*n_out = 0;
	for (int s = 0; s < 2; s++) {
		if (cnt[s] > DELEGATE_MAX_LIST_ITEMS)
			return uk_err(err, E2BIG, "%s's %s answer: %zu items, over the limit of %u",
				      delegate_side_name(s ? SIDE_DELEGATE : SIDE_UNIKD), what, cnt[s],
				      DELEGATE_MAX_LIST_ITEMS);
		for (size_t i = 0; i < cnt[s]; i++) {
			memcpy(&v, (const char *)arr[s] + i * sizeof(v), sizeof(v));
			if (!v)
				return uk_err(err, EINVAL, "%s's %s answer: item %zu is empty",
					      delegate_side_name(s ? SIDE_DELEGATE : SIDE_UNIKD), what, i);
		}
	}
	char *m = malloc((cnt[0] + cnt[1] + 1) * sizeof(void *));
	if (!m)
		return uk_err(err, ENOMEM, "%s: merging %zu items", what, cnt[0] + cnt[1]);
	if (cnt[0])
		memcpy(m, a, cnt[0] * sizeof(void *));
	if (cnt[1])
		memcpy(m + cnt[0] * sizeof(void *), b, cnt[1] * sizeof(void *));
	*out = m;
	*n_out = cnt[0] + cnt[1];
	return 0;
}

/* One merge and one done per list type; the types differ only in their field names. */
#define DEFINE_MERGE(fn, done, type, n_field, field, what)                                            \
	int fn(const type *unikd, const type *delegate, type *out, uk_error *err)                    \
	{                                                                                            \
		void *m;                                                                             \
		size_t n;                                                                            \
		int r = merge_ptrs(what, unikd ? (const void *)unikd->field : NULL,                  \
				   unikd ? unikd->n_field : 0,                                       \
				   delegate ? (const void *)delegate->field : NULL,                  \
				   delegate ? delegate->n_field : 0, &m, &n, err);                   \
		out->field = NULL;                                                                   \
		out->n_field = 0;                                                                    \
		if (r < 0)                                                                           \
			return r;                                                                    \
		out->field = m;                                                                      \
		out->n_field = n;                                                                    \
		return 0;                                                                            \
	}                                                                                            \
	void done(type *out)                                                                         \
	{                                                                                            \
		if (!out)                                                                            \
			return;                                                                      \
		free(out->field);                                                                    \
		out->field = NULL;                                                                   \
		out->n_field = 0;                                                                    \
	}

DEFINE_MERGE(delegate_merge_sandboxes, delegate_merge_sandboxes_done, Runtime__V1__ListPodSandboxResponse,
	     n_items, items, "ListPodSandbox")
DEFINE_MERGE(delegate_merge_containers, delegate_merge_containers_done, Runtime__V1__ListContainersResponse,
	     n_containers, containers, "ListContainers")
DEFINE_MERGE(delegate_merge_container_stats, delegate_merge_container_stats_done,
	     Runtime__V1__ListContainerStatsResponse, n_stats, stats, "ListContainerStats")
DEFINE_MERGE(delegate_merge_sandbox_stats, delegate_merge_sandbox_stats_done,
	     Runtime__V1__ListPodSandboxStatsResponse, n_stats, stats, "ListPodSandboxStats")

struct image_key {
	const char *id;
	size_t pos;
};

static int image_key_cmp(const void *a, const void *b)
{
	return strcmp(((const struct image_key *)a)->id, ((const struct image_key *)b)->id);
}

/* One side's images: ids present, refs within bounds, no id twice. keys (sorted by id) get
 * the side's ids; *n_refs the side's tags and digests in all. */
static int images_check_side(enum delegate_side side, Runtime__V1__Image *const *v, size_t n,
			     struct image_key *keys, size_t *n_refs, uk_error *err)
{
	const char *who = delegate_side_name(side);
	size_t refs = 0;

	for (size_t i = 0; i < n; i++) {
		if (!v[i]->id || !*v[i]->id)
			return uk_err(err, EINVAL, "%s's ListImages answer: images[%zu].id is empty", who, i);
		if (v[i]->n_repo_tags > DELEGATE_MAX_IMAGE_REFS || v[i]->n_repo_digests > DELEGATE_MAX_IMAGE_REFS)
			return uk_err(err, E2BIG, "%s's ListImages answer: images[%zu] has over %u repo tags or digests",
				      who, i, DELEGATE_MAX_IMAGE_REFS);
		refs += v[i]->n_repo_tags + v[i]->n_repo_digests;
		if (refs > DELEGATE_MAX_ANSWER_REFS)
			return uk_err(err, E2BIG, "%s's ListImages answer: over %u repo tags and digests in all",
				      who, DELEGATE_MAX_ANSWER_REFS);
		keys[i] = (struct image_key){ v[i]->id, i };
	}
	if (n > 1)
		qsort(keys, n, sizeof(*keys), image_key_cmp);
	for (size_t i = 1; i < n; i++)
		if (strcmp(keys[i - 1].id, keys[i].id) == 0)
			return uk_err(err, EINVAL, "%s's ListImages answer: image id \"%.*s\" is listed twice", who,
				      UK_ID_MAX, keys[i].id);
	*n_refs = refs;
	return 0;
}

/* dst (its own refs, then room) gets each of add[] it lacks; over the bound is an error. */
static int refs_union(char **dst, size_t *n, char *const *own, size_t n_own, char *const *add, size_t n_add,
		      const char *what, uk_error *err)
{
	memcpy(dst, own, n_own * sizeof(*own));
	*n = n_own;
	for (size_t i = 0; i < n_add; i++) {
		bool seen = !add[i];
		for (size_t j = 0; j < *n && !seen; j++)
			seen = strcmp(dst[j], add[i]) == 0;
		if (seen)
			continue;
		if (*n == DELEGATE_MAX_IMAGE_REFS)
			return uk_err(err, E2BIG, "the delegate's ListImages answer: merged image has over %u %s",
				      DELEGATE_MAX_IMAGE_REFS, what);
		dst[(*n)++] = add[i];
	}
	return 0;
}

/* unikd's entry u, copied into c, with d's tags and digests added; refs is the room. */
static int image_merge_one(Runtime__V1__Image *c, const Runtime__V1__Image *u, const Runtime__V1__Image *d,
			   char **refs, size_t *used, uk_error *err)
{
	char **tags = refs + *used;
	size_t nt, nd;
	int r;

	*c = *u;
	r = refs_union(tags, &nt, u->repo_tags, u->n_repo_tags, d->repo_tags, d->n_repo_tags, "repo tags", err);
	if (r < 0)
		return r;
	char **digests = tags + nt;
	r = refs_union(digests, &nd, u->repo_digests, u->n_repo_digests, d->repo_digests, d->n_repo_digests,
		       "repo digests", err);
	if (r < 0)
		return r;
	c->repo_tags = tags;
	c->n_repo_tags = nt;
	c->repo_digests = digests;
	c->n_repo_digests = nd;
	*used += nt + nd;
	return 0;
}

void delegate_images_done(struct delegate_images *out)
{
	if (!out)
		return;
	free(out->resp.images);
	free(out->copies);
	free(out->refs);
	*out = (struct delegate_images){ 0 };
}

/* Fill out from all (unikd's nu, then the delegate's), both sides checked and sorted. */
static int images_assemble(Runtime__V1__Image **all, size_t nu, size_t nd, const struct image_key *uk,
			   size_t refs_room, struct delegate_images *out, uk_error *err)
{
	size_t used = 0, n = nu;

	out->copies = calloc(nu + 1, sizeof(*out->copies));
	out->refs = calloc(refs_room + 1, sizeof(*out->refs));
	out->resp.images = calloc(nu + nd + 1, sizeof(*out->resp.images));
	if (!out->copies || !out->refs || !out->resp.images)
		return uk_err(err, ENOMEM, "ListImages: merging %zu images", nu + nd);
	memcpy(out->resp.images, all, nu * sizeof(*all));
	for (size_t i = nu; i < nu + nd; i++) {
		struct image_key k = { all[i]->id, 0 };
		const struct image_key *hit = nu ? bsearch(&k, uk, nu, sizeof(*uk), image_key_cmp) : NULL;
		if (!hit) {
			out->resp.images[n++] = all[i];
			continue;
		}
		Runtime__V1__Image *c = &out->copies[out->n_copies++];
		int r = image_merge_one(c, all[hit->pos], all[i], out->refs, &used, err);
		if (r < 0)
			return r;
		out->resp.images[hit->pos] = c;
	}
	out->resp.n_images = n;
	return 0;
}

int delegate_merge_images(const Runtime__V1__ListImagesResponse *unikd,
			  const Runtime__V1__ListImagesResponse *delegate, struct delegate_images *out,
			  uk_error *err)
{
	_cleanup_free_ void *allv = NULL;
	_cleanup_free_ struct image_key *uk = NULL, *dk = NULL;
	size_t n, nu = unikd && unikd->images ? unikd->n_images : 0;
	size_t nd = delegate && delegate->images ? delegate->n_images : 0, ru = 0, rd = 0;
	int r;

	*out = (struct delegate_images){ 0 };
	r = merge_ptrs("ListImages", nu ? unikd->images : NULL, nu, nd ? delegate->images : NULL, nd, &allv, &n,
		       err);
	if (r < 0)
		return r;
	Runtime__V1__Image **all = allv;
	uk = calloc(nu + 1, sizeof(*uk));
	dk = calloc(nd + 1, sizeof(*dk));
	if (!uk || !dk)
		return uk_err(err, ENOMEM, "ListImages: merging %zu images", n);
	r = images_check_side(SIDE_UNIKD, all, nu, uk, &ru, err);
	if (r >= 0)
		r = images_check_side(SIDE_DELEGATE, all + nu, nd, dk, &rd, err);
	if (r >= 0)
		r = images_assemble(all, nu, nd, uk, ru + rd, out, err);
	if (r < 0)
		delegate_images_done(out);
	return r;
}

/* One name learnt from the delegate: kept when it is a handler name and new; false at the
 * bound. Names that are not are skipped: never routed to, never an error. */
static bool learn_one(char **names, size_t *n, const char *h, int *rc, uk_error *err)
{
	if (!handler_name_ok(h) || in_list((const char *const *)names, *n, h))
		return true;
	if (*n == DELEGATE_MAX_HANDLERS)
		return false;
	if (!(names[*n] = strdup(h))) {
		*rc = uk_err(err, ENOMEM, "out of memory");
		return false;
	}
	(*n)++;
	return true;
}

int delegate_handlers_from_status(const Runtime__V1__StatusResponse *st, char ***ret, size_t *n_ret, uk_error *err)
{
	char **names = calloc(DELEGATE_MAX_HANDLERS + 1, sizeof(char *));
	size_t n = 0;
	int rc = 0;
	*ret = NULL;
	*n_ret = 0;
	if (!names)
		return uk_err(err, ENOMEM, "out of memory");
	for (size_t i = 0; st && i < st->n_runtime_handlers && rc == 0; i++)
		if (st->runtime_handlers[i] && !learn_one(names, &n, st->runtime_handlers[i]->name, &rc, err))
			break;
	/* containerd before CRI 1.30 names them only in its verbose config: containerd.runtimes. */
	const char *config = NULL;
	for (size_t i = 0; n == 0 && st && i < st->n_info; i++)
		if (st->info[i] && st->info[i]->key && strcmp(st->info[i]->key, "config") == 0)
			config = st->info[i]->value;
	if (rc == 0 && n == 0 && config && strlen(config) <= DELEGATE_MAX_STATUS_CONFIG) {
		json_object *o = json_tokener_parse(config), *ctrd, *runtimes;
		if (o && json_object_object_get_ex(o, "containerd", &ctrd) &&
		    json_object_object_get_ex(ctrd, "runtimes", &runtimes) && json_object_is_type(runtimes, json_type_object)) {
			json_object_object_foreach(runtimes, k, v) {
				(void)v;
				if (!learn_one(names, &n, k, &rc, err))
					break;
			}
		}
		json_object_put(o);
	}
	if (rc < 0) {
		for (size_t i = 0; i < n; i++)
			free(names[i]);
		free(names);
		return rc;
	}
	*ret = names;
	*n_ret = n;
	return 0;
}

bool delegate_status_ready(const Runtime__V1__StatusResponse *st, char *why, size_t len)
{
	if (!st || !st->status) {
		snprintf(why, len, "no runtime status");
		return false;
	}
	for (size_t i = 0; i < st->status->n_conditions; i++) {
		const Runtime__V1__RuntimeCondition *c = st->status->conditions[i];
		if (c && !c->status && c->type && (!strcmp(c->type, "RuntimeReady") || !strcmp(c->type, "NetworkReady"))) {
			snprintf(why, len, "%s false (%.64s: %.400s)", c->type, c->reason ? c->reason : "",
				 c->message ? c->message : "");
			return false;
		}
	}
	return true;
}
