#include <string.h>

#include "cri.h"

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
