#include <pthread.h>
#include <string.h>

#include "../common/spawn.h"
#include "../unikd/config.h"
#include "cri.h"
#include "limits.h"

#define CPU_HELP_OUT_MAX (256 * 1024) /* QEMU 7.2 prints 12 KB */
#define CPU_HELP_TIMEOUT_MS 10000

json_object *cri_map_to_json(size_t n, void **entries)
{
	json_object *o = json_object_new_object();
	for (size_t i = 0; i < n; i++) {
		cri_map_entry *e = entries[i];
		json_object_object_add(o, e->key ? e->key : "", json_object_new_string(e->value ? e->value : ""));
	}
	return o;
}

/* Every map<string,string> entry has the same fields and numbers, so one descriptor
 * packs them all to the same bytes. */
void cri_json_to_map(arena *a, json_object *o, size_t *n, void ***entries, const ProtobufCMessageDescriptor *d)
{
	size_t len = o ? (size_t)json_object_object_length(o) : 0;
	cri_map_entry **v = arena_array(a, cri_map_entry *, len);
	size_t i = 0;
	if (o) {
		json_object_object_foreach(o, k, val)
		{
			cri_map_entry *e = arena_new0(a, cri_map_entry);
			protobuf_c_message_init(d, e);
			e->key = arena_strdup(a, k);
			e->value = arena_strdup(a, json_object_get_string(val));
			v[i++] = e;
		}
	}
	*n = i;
	*entries = (void **)v;
}

bool cri_labels_match(json_object *labels, size_t n, void **selector)
{
	for (size_t i = 0; i < n; i++) {
		cri_map_entry *e = selector[i];
		json_object *v;
		if (!labels || !json_object_object_get_ex(labels, e->key, &v) ||
		    strcmp(json_object_get_string(v), e->value ? e->value : "") != 0)
			return false;
	}
	return true;
}

static bool prefix_ok(const char *id, const char *want)
{
	return !want || !*want || strncmp(id, want, strlen(want)) == 0;
}

bool cri_container_matches(const struct container *c, const char *id, const char *pod_id, int state, size_t n_sel,
			   void **sel)
{
	return prefix_ok(c->id, id) && prefix_ok(c->sandbox_id, pod_id) && (state < 0 || state == (int)c->state) &&
	       cri_labels_match(c->labels, n_sel, sel);
}

bool cri_sandbox_matches(const struct sandbox *s, const char *id, int state, size_t n_sel, void **sel)
{
	return prefix_ok(s->id, id) && (state < 0 || state == (int)s->state) && cri_labels_match(s->labels, n_sel, sel);
}

const char *cri_map_get(size_t n, void *const *entries, const char *key)
{
	for (size_t i = n; i-- > 0;) {
		const cri_map_entry *e = entries[i];
		if (e->key && strcmp(e->key, key) == 0)
			return e->value ? e->value : "";
	}
	return NULL;
}

const char *cri_json_get(json_object *o, const char *key)
{
	json_object *v;
	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

/* QEMU's list, kept for the life of the process once read (QEMU's binary is a setting
 * that a reload does not change). A failed run is not kept: the next call tries again. */
static pthread_mutex_t cpu_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cri_cpu_models *cpu_models;

static int load_cpu_models(const char *qemu, uk_error *err)
{
	const char *argv[] = { qemu, "-cpu", "help", NULL };
	struct uk_spawn_opts o;
	uk_spawn_opts_init(&o, argv);
	struct uk_run_result res = { 0 };
	int r = uk_run(&o, NULL, 0, CPU_HELP_OUT_MAX, CPU_HELP_TIMEOUT_MS, &res, err);
	if (r == 0)
		r = uk_run_result_check(&res, "qemu -cpu help", err);
	if (r == 0)
		r = cri_cpu_models_parse(res.out ? res.out : "", &cpu_models, err);
	uk_run_result_done(&res);
	return r;
}

int cri_cpu_model_check(const struct cri_context *ctx, const char *value, const char *field, uk_error *err)
{
	const char *qemu = ctx->rt->cfg.qemu ? ctx->rt->cfg.qemu : CONFIG_DEFAULT_QEMU;
	int r = 0;
	pthread_mutex_lock(&cpu_lock);
	if (!cpu_models && (r = load_cpu_models(qemu, err)) < 0) {
		/* Not the client's fault: UNAVAILABLE, whatever the run's own errno. */
		(void)uk_err_ctx_r(err, r, "%s: cannot list QEMU's CPU models", field);
		if (err)
			err->code = EAGAIN;
		r = -EAGAIN;
	}
	if (r == 0)
		r = cri_cpu_check(cpu_models, value, field, err);
	pthread_mutex_unlock(&cpu_lock);
	return r;
}
