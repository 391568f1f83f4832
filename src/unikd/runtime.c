/* The runtime core: the registry of sandboxes and containers, lookups, records, and opening
 * the runtime (src/unikd/README.md maps the other files of the core). */
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"
#include "runtime_internal.h"

void rt_lock(struct runtime *rt)
{
	pthread_mutex_lock(&rt->lock);
}

bool rt_trylock(struct runtime *rt)
{
	return pthread_mutex_trylock(&rt->lock) == 0;
}

void rt_unlock(struct runtime *rt)
{
	pthread_mutex_unlock(&rt->lock);
}

int rt_vm_dir(struct runtime *rt, const char *id, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s", rt->vm_dir, id);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int rt_ctr_dir(struct runtime *rt, const char *id, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s" RT_CTR_DIR_SUFFIX, rt->container_dir, id);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int rt_grow(void **arr, size_t *cap, size_t n)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 64;
	void *a = realloc(*arr, ncap * sizeof(void *));
	if (!a)
		return -ENOMEM;
	*arr = a;
	*cap = ncap;
	return 0;
}

/* ---- lookups ---- */

static int find_prefix(void **items, size_t n, size_t id_off, const char *id, const char *what, void **ret,
		       uk_error *err)
{
	size_t len = id ? strlen(id) : 0;
	if (len == 0)
		return uk_err(err, EINVAL, "%s id is empty", what);
	void *found = NULL;
	for (size_t i = 0; i < n; i++) {
		const char *cid = (const char *)items[i] + id_off;
		if (strncmp(cid, id, len) != 0)
			continue;
		if (len == UK_FULL_ID_LEN) {
			*ret = items[i];
			return 0;
		}
		if (found)
			return uk_err(err, EINVAL, "%s id prefix \"%s\" is ambiguous", what, id);
		found = items[i];
	}
	if (!found)
		return uk_err(err, ENOENT, "%s \"%s\" not found", what, id);
	*ret = found;
	return 0;
}

int rt_find_sandbox(struct runtime *rt, const char *id, struct sandbox **ret, uk_error *err)
{
	int r = find_prefix((void **)rt->sb, rt->n_sb, offsetof(struct sandbox, id), id, "pod sandbox",
			    (void **)ret, err);
	/* A pod whose RunPodSandbox still runs (CNI ADD) is nobody's to see yet. */
	if (r >= 0 && (*ret)->adding)
		return uk_err(err, ENOENT, "pod sandbox \"%s\" not found", id);
	return r;
}

int rt_find_container(struct runtime *rt, const char *id, struct container **ret, uk_error *err)
{
	return find_prefix((void **)rt->ct, rt->n_ct, offsetof(struct container, id), id, "container",
			   (void **)ret, err);
}

int rt_lock_container(struct runtime *rt, const char *id, struct container **ret, uk_error *err)
{
	rt_lock(rt);
	int r = rt_find_container(rt, id, ret, err);
	if (r < 0)
		rt_unlock(rt);
	return r;
}

struct sandbox *rt_sandbox_by_id(struct runtime *rt, const char *id)
{
	for (size_t i = 0; i < rt->n_sb; i++)
		if (strcmp(rt->sb[i]->id, id) == 0)
			return rt->sb[i];
	return NULL;
}

struct container *rt_running_in(struct runtime *rt, const char *sandbox_id, const char *except)
{
	for (size_t i = 0; i < rt->n_ct; i++) {
		struct container *c = rt->ct[i];
		if (strcmp(c->sandbox_id, sandbox_id) == 0 && c->state == CTR_RUNNING && (!except || strcmp(c->id, except)))
			return c;
	}
	return NULL;
}

int rt_containers_of(struct runtime *rt, const char *sandbox_id, rt_id **ids, size_t *n, uk_error *err)
{
	size_t count = 0;
	for (size_t i = 0; i < rt->n_ct; i++)
		count += strcmp(rt->ct[i]->sandbox_id, sandbox_id) == 0;
	*n = 0;
	*ids = calloc(count ? count : 1, sizeof(rt_id));
	if (!*ids)
		return uk_err(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < rt->n_ct; i++)
		if (strcmp(rt->ct[i]->sandbox_id, sandbox_id) == 0)
			memcpy((*ids)[(*n)++], rt->ct[i]->id, sizeof(rt_id));
	return 0;
}

/* ---- persistence ---- */

int rt_state_full_ctx(struct runtime *rt, int r, uk_error *err)
{
	if (r == -ENOSPC || r == -EDQUOT)
		(void)uk_err_ctx_r(err, r, "the state directory %s is full", rt->cfg.state_dir);
	return r;
}

static int save_record(struct runtime *rt, const char *dir, const char *what, const char *id, const char *pod,
		       json_object *o, bool sync_dir, uk_error *err)
{
	uk_error e = { 0 };
	int r = !o	  ? uk_err(err ? err : &e, ENOMEM, "out of memory")
		: sync_dir ? record_save(dir, id, o, err ? err : &e)
			   : record_save_unsynced_dir(dir, id, o, err ? err : &e);
	if (r < 0 && !err)
		log_error("pod=%s%s%s msg=\"cannot save the %s record\" error=\"%s\"", pod, *what == 'c' ? " ctr=" : "",
			  *what == 'c' ? id : "", what, e.msg);
	if (r < 0)
		(void)uk_err_ctx_r(err, r, "save the %s record of %s", what, id);
	return r < 0 ? rt_state_full_ctx(rt, r, err) : 0;
}

int rt_save_sandbox(struct runtime *rt, struct sandbox *s, uk_error *err)
{
	_cleanup_json_ json_object *o = sandbox_to_json(s);
	return save_record(rt, rt->sandbox_dir, "sandbox", s->id, s->id, o, true, err);
}

static int save_container(struct runtime *rt, struct container *c, bool sync_dir, uk_error *err)
{
	_cleanup_json_ json_object *o = container_to_json(c);
	int r = save_record(rt, rt->container_dir, "container", c->id, c->sandbox_id, o, sync_dir, err);
	if (r >= 0)
		c->record_pending = false; /* whatever this save was for, it wrote the whole state */
	return r;
}

int rt_save_container(struct runtime *rt, struct container *c, uk_error *err)
{
	return save_container(rt, c, true, err);
}

void rt_container_save_started(struct runtime *rt, const char *id)
{
	struct container *c;
	rt_lock(rt);
	if (rt_find_container(rt, id, &c, NULL) >= 0 && c->record_pending)
		(void)rt_save_container(rt, c, NULL); /* logged there; start-up completes the start */
	rt_unlock(rt);
}

int rt_save_container_start(struct runtime *rt, struct container *c, uk_error *err)
{
	return save_container(rt, c, false, err);
}

/* One kind of record as records_load() hands them over: parsed, checked against its file
 * name, and added to the registry's array. */
struct record_kind {
	void ***items;
	size_t *n, *cap;
	size_t id_off;
	int (*parse)(json_object *o, void **ret);
	void (*free)(void *item);
};

static int parse_sandbox(json_object *o, void **ret)
{
	return sandbox_from_json(o, (struct sandbox **)ret, NULL);
}

static int parse_container(json_object *o, void **ret)
{
	return container_from_json(o, (struct container **)ret, NULL);
}

static void free_sandbox(void *s)
{
	sandbox_free(s);
}

static void free_container(void *c)
{
	container_free(c);
}

static int load_record(json_object *o, const char *id, void *ud)
{
	const struct record_kind *k = ud;
	void *item = NULL;
	if (k->parse(o, &item) < 0 || strcmp((const char *)item + k->id_off, id) != 0 ||
	    rt_grow((void **)k->items, k->cap, *k->n) < 0) {
		k->free(item);
		return -EINVAL;
	}
	(*k->items)[(*k->n)++] = item;
	return 0;
}

static void report_bad(const char *path, const char *why, const char *moved_to, void *ud)
{
	(void)ud;
	/* The record's id is its file name: say which object is concerned. */
	const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	bool ctr = strstr(path, "/containers/") != NULL;
	log_error("%s=%.64s msg=\"corrupt state file quarantined\" path=%s quarantine=%s error=\"%s\"", ctr ? "ctr" : "pod",
		  name, path, moved_to ? moved_to : "(left in place)", why);
}

static int load_records(struct runtime *rt, uk_error *err)
{
	struct record_kind sandboxes = { (void ***)&rt->sb, &rt->n_sb, &rt->cap_sb, offsetof(struct sandbox, id),
					 parse_sandbox, free_sandbox };
	struct record_kind containers = { (void ***)&rt->ct, &rt->n_ct, &rt->cap_ct, offsetof(struct container, id),
					  parse_container, free_container };
	int r = records_load(rt->sandbox_dir, load_record, report_bad, &sandboxes, err);
	return r < 0 ? r : records_load(rt->container_dir, load_record, report_bad, &containers, err);
}

/* ---- opening ---- */

static int make_dirs(struct runtime *rt, const struct rt_config *cfg, uk_error *err)
{
	int r;
	if (asprintf(&rt->sandbox_dir, "%s/sandboxes", cfg->state_dir) < 0 ||
	    asprintf(&rt->container_dir, "%s/containers", cfg->state_dir) < 0 ||
	    asprintf(&rt->image_dir, "%s/images", cfg->state_dir) < 0 ||
	    asprintf(&rt->vm_dir, "%s/vms", cfg->run_dir) < 0)
		return uk_err(err, ENOMEM, "out of memory");
	if ((r = uk_mkdir_p(rt->sandbox_dir, 0700, err)) < 0 || (r = uk_mkdir_p(rt->container_dir, 0700, err)) < 0 ||
	    (r = uk_mkdir_p(rt->vm_dir, 0700, err)) < 0)
		return r;
	return 0;
}

static void detect_cgroups(struct runtime *rt, const struct rt_config *cfg)
{
	uk_error cgerr = { 0 };
	if (cg_detect(&rt->cg, cfg->cgroup_root, &cgerr) < 0 || rt->cg.version == CG_NONE) {
		rt->cg.version = CG_NONE;
		if (!rt->cg.why[0])
			snprintf(rt->cg.why, sizeof(rt->cg.why), "%.200s", cgerr.msg);
		log_warn("msg=\"cgroups unavailable: VMs run without limits\" reason=\"%s\"", rt->cg.why);
	}
}

int runtime_open(const struct rt_config *cfg, struct runtime **ret, uk_error *err)
{
	struct runtime *rt = calloc(1, sizeof(*rt));
	int r;
	if (!rt)
		return uk_err(err, ENOMEM, "out of memory");
	rt->cfg = *cfg;
	pthread_mutex_init(&rt->lock, NULL);
	uk_error be = { 0 };
	if (uk_boot_id(rt->boot_id, &be) < 0) {
		/* Without it a reboot cannot be told; PIDs and start times still are checked. */
		rt->boot_id[0] = '\0';
		log_warn("msg=\"cannot read the boot id\" error=\"%s\"", be.msg);
	}
	if ((r = make_dirs(rt, cfg, err)) < 0 || (r = image_store_open(rt->image_dir, &rt->images, err)) < 0 ||
	    (r = load_records(rt, err)) < 0) {
		runtime_free(rt);
		return r;
	}
	detect_cgroups(rt, cfg);
	if ((r = rt_net_open(&cfg->net, &rt->net, err)) < 0) {
		runtime_free(rt);
		return r;
	}
	rt_lock(rt);
	rt_reconcile(rt);
	rt_unlock(rt);
	/* From here, VM ends are recorded as they happen, including those of the VMs just
	 * reattached. */
	if ((r = exit_watch_start(rt, err)) < 0) {
		runtime_free(rt);
		return r;
	}
	log_info("msg=\"state loaded\" sandboxes=%zu containers=%zu", rt->n_sb, rt->n_ct);
	*ret = rt;
	return 0;
}

void runtime_free(struct runtime *rt)
{
	if (!rt)
		return;
	exit_watch_stop(rt);
	for (size_t i = 0; i < rt->n_sb; i++)
		sandbox_free(rt->sb[i]);
	for (size_t i = 0; i < rt->n_ct; i++)
		container_free(rt->ct[i]);
	free(rt->sb);
	free(rt->ct);
	image_store_free(rt->images);
	rt_net_free(rt->net);
	free(rt->sandbox_dir);
	free(rt->container_dir);
	free(rt->image_dir);
	free(rt->vm_dir);
	pthread_mutex_destroy(&rt->lock);
	free(rt);
}
