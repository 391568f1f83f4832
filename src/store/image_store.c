/* The content-addressed image store. See src/store/README.md for the layout and the
 * locking rules; the short version: blobs are immutable files named by their sha256,
 * every change happens under an exclusive flock on ROOT/lock, every read of the ref map
 * under a shared one, and every file is replaced atomically. */
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "../common/util.h"
#include "image_store.h"
#include "reference.h"
#include "sha256.h"

struct image_store {
	char *root; /* absolute, resolved */
	int lock_fd;
};

#define COPY_BUF_SIZE (1024 * 1024)
#define HOLE_BLOCK 4096
#define USAGE_DEPTH_MAX 16
#define KIND_MAX 64

/* ---- small helpers ---- */

static int oom(uk_error *err)
{
	return uk_err(err, ENOMEM, "out of memory");
}

/* "<64 hex>.json" -> copies the hex part. */
static bool image_file_name(const char *name, char hex[SHA256_HEX_SIZE])
{
	if (strlen(name) != 64 + 5 || strcmp(name + 64, ".json") != 0)
		return false;
	memcpy(hex, name, 64);
	hex[64] = '\0';
	return image_hex_valid(hex, 64, 64);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A growable NULL-terminated string vector. */
struct strv {
	char **v;
	size_t n, cap;
};

static int strv_push(struct strv *s, const char *str)
{
	if (s->n + 1 >= s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 8;
		char **nv = realloc(s->v, ncap * sizeof(char *));
		if (!nv)
			return -ENOMEM;
		s->v = nv;
		s->cap = ncap;
	}
	if (!(s->v[s->n] = strdup(str)))
		return -ENOMEM;
	s->v[++s->n] = NULL;
	return 0;
}

/* Always returns a NULL-terminated vector (possibly empty), or NULL when out of memory. */
static char **strv_take(struct strv *s)
{
	if (!s->v && !(s->v = calloc(1, sizeof(char *))))
		return NULL;
	qsort(s->v, s->n, sizeof(char *), cmp_str);
	char **v = s->v;
	*s = (struct strv){ 0 };
	return v;
}

static void strv_clear(struct strv *s)
{
	strv_free(s->v);
	*s = (struct strv){ 0 };
}

/* Printable text in valid UTF-8, as it goes into JSON other tools may read. */
static bool text_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		if (*p < 0x20 || *p == 0x7f)
			return false;
		int extra = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0 ? 2 :
				    (*p & 0xf8) == 0xf0 ? 3 : -1;
		if (extra < 0 || (extra == 1 && *p < 0xc2) || (extra == 3 && *p > 0xf4))
			return false;
		/* No overlong forms, no UTF-16 surrogates, nothing above U+10FFFF. */
		if ((*p == 0xe0 && p[1] < 0xa0) || (*p == 0xed && p[1] >= 0xa0) || (*p == 0xf0 && p[1] < 0x90) ||
		    (*p == 0xf4 && p[1] >= 0x90))
			return false;
		p++;
		for (int i = 0; i < extra; i++, p++)
			if ((*p & 0xc0) != 0x80)
				return false;
	}
	return true;
}

/* ---- locking ---- */

static int store_lock(struct image_store *s, int op, uk_error *err)
{
	while (flock(s->lock_fd, op) < 0)
		if (errno != EINTR)
			return uk_err_errno(err, errno, "lock %s/lock", s->root);
	return 0;
}

static void unlockp(int *fd)
{
	if (*fd >= 0)
		(void)flock(*fd, LOCK_UN); /* cannot fail on a locked fd; closing drops it anyway */
}
#define _cleanup_unlock_ __attribute__((cleanup(unlockp)))

/* ---- the ref map: ROOT/refs.json = {"version":1,"refs":{"<name>:<tag>":"sha256:<hex>"}} ---- */

/* The map key of a reference: name@digest when there is a digest, else name:tag. */
static char *ref_key(const struct image_ref *r)
{
	if (r->digest)
		return uk_strf("%s/%s@%s", r->domain, r->path, r->digest);
	return uk_strf("%s/%s:%s", r->domain, r->path, r->tag);
}

static int load_refs(struct image_store *s, json_object **ret, uk_error *err)
{
	_cleanup_free_ char *path = uk_strf("%s/refs.json", s->root);
	_cleanup_free_ char *data = NULL;
	if (!path)
		return oom(err);
	int r = uk_read_file(path, IMAGE_METADATA_MAX, &data, NULL, err);
	if (r == -ENOENT) {
		if (!(*ret = json_object_new_object()))
			return oom(err);
		return 0;
	}
	if (r < 0)
		return r;
	enum json_tokener_error jerr;
	_cleanup_json_ json_object *doc = json_tokener_parse_verbose(data, &jerr);
	if (!doc)
		return uk_err(err, EBADMSG, "%s is not JSON: %s", path, json_tokener_error_desc(jerr));
	json_object *v, *refs;
	if (!json_object_is_type(doc, json_type_object) || !json_object_object_get_ex(doc, "version", &v) ||
	    !json_object_is_type(v, json_type_int) || json_object_get_int64(v) != 1)
		return uk_err(err, EBADMSG, "%s: field \"version\" must be 1", path);
	if (!json_object_object_get_ex(doc, "refs", &refs) || !json_object_is_type(refs, json_type_object))
		return uk_err(err, EBADMSG, "%s: field \"refs\" must be an object", path);
	/* Keys become names shown to kubelet and values become paths: check them all. */
	json_object_object_foreach(refs, key, val)
	{
		_cleanup_image_ref_ struct image_ref ref = { 0 };
		_cleanup_free_ char *norm = NULL;
		if (image_ref_parse(key, &ref, NULL) < 0 || !(norm = ref_key(&ref)) || strcmp(norm, key) != 0)
			return uk_err(err, EBADMSG, "%s: \"%s\" is not a normalised reference", path, key);
		if (!json_object_is_type(val, json_type_string) || !image_digest_valid(json_object_get_string(val)))
			return uk_err(err, EBADMSG, "%s: \"%s\" must map to an image id sha256:<64 hex>", path, key);
	}
	*ret = json_object_get(refs);
	return 0;
}

static int save_refs(struct image_store *s, json_object *refs, uk_error *err)
{
	_cleanup_free_ char *path = uk_strf("%s/refs.json", s->root);
	_cleanup_json_ json_object *doc = json_object_new_object();
	if (!path || !doc || json_object_object_add(doc, "version", json_object_new_int(1)) < 0 ||
	    json_object_object_add(doc, "refs", json_object_get(refs)) < 0)
		return oom(err);
	const char *text = json_object_to_json_string_ext(
		doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!text)
		return oom(err);
	return uk_write_file_atomic(path, text, strlen(text), 0644, err);
}

/* ---- image metadata: ROOT/images/<hex>.json ---- */

struct image_meta {
	char hex[SHA256_HEX_SIZE];
	char *kind;
	char *kernel, *initrd, *disk; /* "sha256:<hex>" digests */
	char *disk_format;
	char *cmdline;
	char *not_runnable;
	char *image_config; /* pulled: the OCI config blob */
	char *unikernel_type, *unikernel_version;
	char **layers;      /* pulled: the layer blobs, in order; NULL-terminated or NULL */
	uint64_t size;
	uint64_t created_ns;
};

static void image_meta_clear(struct image_meta *m)
{
	free(m->not_runnable);
	free(m->image_config);
	strv_free(m->layers);
	free(m->kind);
	free(m->kernel);
	free(m->initrd);
	free(m->disk);
	free(m->disk_format);
	free(m->cmdline);
	free(m->unikernel_type);
	free(m->unikernel_version);
	*m = (struct image_meta){ 0 };
}
#define _cleanup_image_meta_ __attribute__((cleanup(image_meta_clear)))

/* The config part, whose canonical serialisation (these keys in this order, absent ones
 * left out, compact, '/' unescaped) is what the image id hashes. */
static json_object *meta_config(const struct image_meta *m)
{
	_cleanup_json_ json_object *c = json_object_new_object();
	if (!c)
		return NULL;
	/* New keys go last: an image without them keeps its id. */
	const char *keys[] = { "kind", "kernel", "initrd", "disk", "disk_format", "cmdline", "not_runnable",
			       "image_config", "unikernel_type", "unikernel_version" };
	const char *vals[] = { m->kind,	   m->kernel,	    m->initrd,	     m->disk,
			       m->disk_format, m->cmdline, m->not_runnable, m->image_config,
			       m->unikernel_type, m->unikernel_version };
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		if (!vals[i])
			continue;
		json_object *v = json_object_new_string(vals[i]);
		if (!v || json_object_object_add(c, keys[i], v) < 0) {
			json_object_put(v);
			return NULL;
		}
	}
	if (m->layers) {
		json_object *arr = json_object_new_array();
		if (!arr || json_object_object_add(c, "layers", arr) < 0) {
			json_object_put(arr);
			return NULL;
		}
		for (char **l = m->layers; *l; l++) {
			json_object *v = json_object_new_string(*l);
			if (!v || json_object_array_add(arr, v) < 0) {
				json_object_put(v);
				return NULL;
			}
		}
	}
	return TAKE_PTR(c);
}

static int meta_compute_id(const struct image_meta *m, char hex[SHA256_HEX_SIZE])
{
	_cleanup_json_ json_object *c = meta_config(m);
	if (!c)
		return -ENOMEM;
	const char *text = json_object_to_json_string_ext(c, JSON_C_TO_STRING_PLAIN |
								     JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!text)
		return -ENOMEM;
	uint8_t d[SHA256_DIGEST_SIZE];
	sha256_buf(text, strlen(text), d);
	sha256_to_hex(d, hex);
	return 0;
}

static int get_opt_string(json_object *o, const char *key, char **ret)
{
	json_object *v;
	*ret = NULL;
	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return -EBADMSG;
	return (*ret = strdup(json_object_get_string(v))) ? 0 : -ENOMEM;
}

static int get_u64(json_object *o, const char *key, uint64_t *ret)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return -EBADMSG;
	/* json-c keeps negatives as int64; refuse them rather than wrap. */
	if (json_object_get_int64(v) < 0)
		return -EBADMSG;
	*ret = json_object_get_uint64(v);
	return 0;
}

/* config.layers: absent, or an array of strict digests (they become blob paths). */
static int read_layers(json_object *config, char ***ret)
{
	json_object *v;
	*ret = NULL;
	if (!json_object_object_get_ex(config, "layers", &v))
		return 0;
	if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) > IMAGE_LAYERS_MAX)
		return -EBADMSG;
	struct strv l = { 0 };
	for (size_t i = 0; i < json_object_array_length(v); i++) {
		json_object *e = json_object_array_get_idx(v, i);
		if (!json_object_is_type(e, json_type_string) || !image_digest_valid(json_object_get_string(e))) {
			strv_clear(&l);
			return -EBADMSG;
		}
		/* Keep the manifest's order: strv_take would sort. */
		if (strv_push(&l, json_object_get_string(e)) < 0) {
			strv_clear(&l);
			return -ENOMEM;
		}
	}
	if (!l.v && !(l.v = calloc(1, sizeof(char *))))
		return -ENOMEM;
	*ret = l.v;
	return 0;
}

static int read_meta(struct image_store *s, const char *hex, struct image_meta *ret, uk_error *err)
{
	_cleanup_free_ char *path = uk_strf("%s/images/%s.json", s->root, hex);
	_cleanup_free_ char *data = NULL;
	if (!path)
		return oom(err);
	int r = uk_read_file(path, IMAGE_METADATA_MAX, &data, NULL, err);
	if (r < 0)
		return r;
	enum json_tokener_error jerr;
	_cleanup_json_ json_object *doc = json_tokener_parse_verbose(data, &jerr);
	if (!doc)
		return uk_err(err, EBADMSG, "%s is not JSON: %s", path, json_tokener_error_desc(jerr));
	_cleanup_image_meta_ struct image_meta m = { 0 };
	json_object *v, *config;
	uint64_t version = 0;
	if (!json_object_is_type(doc, json_type_object) || get_u64(doc, "version", &version) < 0 ||
	    version != 1)
		return uk_err(err, EBADMSG, "%s: field \"version\" must be 1", path);
	if (!json_object_object_get_ex(doc, "id", &v) || !json_object_is_type(v, json_type_string) ||
	    strncmp(json_object_get_string(v), "sha256:", 7) != 0 ||
	    strcmp(json_object_get_string(v) + 7, hex) != 0)
		return uk_err(err, EBADMSG, "%s: field \"id\" must be sha256:%s", path, hex);
	if (get_u64(doc, "size", &m.size) < 0 || get_u64(doc, "created_ns", &m.created_ns) < 0)
		return uk_err(err, EBADMSG, "%s: fields \"size\" and \"created_ns\" must be non-negative integers", path);
	if (!json_object_object_get_ex(doc, "config", &config) || !json_object_is_type(config, json_type_object))
		return uk_err(err, EBADMSG, "%s: field \"config\" must be an object", path);
	const char *keys[] = { "kind", "kernel", "initrd", "disk", "disk_format", "cmdline", "not_runnable",
			       "image_config", "unikernel_type", "unikernel_version" };
	char **dst[] = { &m.kind,	 &m.kernel,  &m.initrd,	      &m.disk,
			 &m.disk_format, &m.cmdline, &m.not_runnable, &m.image_config,
			 &m.unikernel_type, &m.unikernel_version };
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		r = get_opt_string(config, keys[i], dst[i]);
		if (r == -ENOMEM)
			return oom(err);
		if (r < 0)
			return uk_err(err, EBADMSG, "%s: field \"config.%s\" must be a string", path, keys[i]);
	}
	/* Digests become blob paths: only the strict form passes. */
	if (!m.kind || strlen(m.kind) > KIND_MAX || !uk_id_valid(m.kind))
		return uk_err(err, EBADMSG, "%s: field \"config.kind\" is missing or invalid", path);
	if ((m.unikernel_type && !uk_id_valid(m.unikernel_type)) || (m.unikernel_version && !uk_id_valid(m.unikernel_version)))
		return uk_err(err, EBADMSG, "%s: fields \"config.unikernel_type\" and \"config.unikernel_version\" must be names", path);
	if ((r = read_layers(config, &m.layers)) == -ENOMEM)
		return oom(err);
	if (r < 0)
		return uk_err(err, EBADMSG, "%s: field \"config.layers\" must be an array of sha256:<64 hex>", path);
	if (m.not_runnable ? m.kernel || m.disk : !m.kernel && !m.disk)
		return uk_err(err, EBADMSG, "%s: \"config.kernel\" or \"config.disk\" must be set, unless \"config.not_runnable\" is",
			      path);
	if (m.kernel && m.disk && strcmp(m.kind, "urunc") != 0)
		return uk_err(err, EBADMSG, "%s: only a urunc image has both \"config.kernel\" and \"config.disk\"", path);
	const char *digests[] = { m.kernel, m.initrd, m.disk, m.image_config };
	const char *dkeys[] = { "kernel", "initrd", "disk", "image_config" };
	for (size_t i = 0; i < ARRAY_SIZE(digests); i++)
		if (digests[i] && !image_digest_valid(digests[i]))
			return uk_err(err, EBADMSG, "%s: field \"config.%s\" must be sha256:<64 hex>", path, dkeys[i]);
	if (m.disk ? !m.disk_format || (strcmp(m.disk_format, "raw") != 0 && strcmp(m.disk_format, "qcow2") != 0)
		   : m.disk_format != NULL)
		return uk_err(err, EBADMSG, "%s: field \"config.disk_format\" must be raw or qcow2 with a disk only", path);
	if (!m.cmdline || strlen(m.cmdline) >= IMAGE_CMDLINE_MAX)
		return uk_err(err, EBADMSG, "%s: field \"config.cmdline\" is missing or too long", path);
	char check[SHA256_HEX_SIZE];
	if (meta_compute_id(&m, check) < 0)
		return oom(err);
	if (strcmp(check, hex) != 0)
		return uk_err(err, EBADMSG, "%s: the id does not match the config (sha256:%s)", path, check);
	memcpy(m.hex, hex, sizeof(m.hex));
	*ret = m;
	m = (struct image_meta){ 0 };
	return 0;
}

static int write_meta(struct image_store *s, const struct image_meta *m, uk_error *err)
{
	_cleanup_free_ char *path = uk_strf("%s/images/%s.json", s->root, m->hex);
	_cleanup_free_ char *id = uk_strf("sha256:%s", m->hex);
	_cleanup_json_ json_object *doc = json_object_new_object();
	json_object *config = meta_config(m);
	if (!path || !id || !doc || !config || json_object_object_add(doc, "version", json_object_new_int(1)) < 0 ||
	    json_object_object_add(doc, "id", json_object_new_string(id)) < 0 ||
	    json_object_object_add(doc, "config", config) < 0) {
		json_object_put(config);
		return oom(err);
	}
	if (json_object_object_add(doc, "size", json_object_new_uint64(m->size)) < 0 ||
	    json_object_object_add(doc, "created_ns", json_object_new_uint64(m->created_ns)) < 0)
		return oom(err);
	const char *text = json_object_to_json_string_ext(
		doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!text)
		return oom(err);
	return uk_write_file_atomic(path, text, strlen(text), 0644, err);
}

static char *blob_path(struct image_store *s, const char *digest)
{
	return digest ? uk_strf("%s/blobs/sha256/%s", s->root, digest + 7) : NULL;
}

/* The public view: metadata plus the references that point at it. */
static int build_info(struct image_store *s, const struct image_meta *m, json_object *refs,
		      struct image_info **ret, uk_error *err)
{
	_cleanup_image_info_ struct image_info *i = calloc(1, sizeof(*i));
	if (!i)
		return oom(err);
	snprintf(i->id, sizeof(i->id), "sha256:%s", m->hex);
	struct strv tags = { 0 }, digests = { 0 };
	int r = 0;
	json_object_object_foreach(refs, key, val)
	{
		if (strcmp(json_object_get_string(val), i->id) != 0)
			continue;
		r = strv_push(strchr(key, '@') ? &digests : &tags, key);
		if (r < 0)
			break;
	}
	i->repo_tags = r < 0 ? NULL : strv_take(&tags);
	i->repo_digests = r < 0 ? NULL : strv_take(&digests);
	strv_clear(&tags);
	strv_clear(&digests);
	if (!i->repo_tags || !i->repo_digests)
		return oom(err);
	i->size = m->size;
	i->created_ns = m->created_ns;
	if ((m->kernel && !(i->kernel = blob_path(s, m->kernel))) ||
	    (m->initrd && !(i->initrd = blob_path(s, m->initrd))) ||
	    (m->disk && !(i->disk = blob_path(s, m->disk))) ||
	    (m->disk_format && !(i->disk_format = strdup(m->disk_format))) ||
	    !(i->cmdline = strdup(m->cmdline)) || !(i->kind = strdup(m->kind)) ||
	    (m->not_runnable && !(i->not_runnable = strdup(m->not_runnable))) ||
	    (m->unikernel_type && !(i->unikernel_type = strdup(m->unikernel_type))) ||
	    (m->unikernel_version && !(i->unikernel_version = strdup(m->unikernel_version))))
		return oom(err);
	*ret = TAKE_PTR(i);
	return 0;
}

void image_info_free(struct image_info *i)
{
	if (!i)
		return;
	strv_free(i->repo_tags);
	strv_free(i->repo_digests);
	free(i->kernel);
	free(i->initrd);
	free(i->disk);
	free(i->disk_format);
	free(i->cmdline);
	free(i->kind);
	free(i->not_runnable);
	free(i->unikernel_type);
	free(i->unikernel_version);
	free(i);
}

void image_info_list_free(struct image_info **v)
{
	if (!v)
		return;
	for (struct image_info **p = v; *p; p++)
		image_info_free(*p);
	free(v);
}

/* ---- garbage collection (under the exclusive lock) ---- */

/* Remove images no reference points at, then blobs no image uses, and stale temp files of
 * atomic writes in images/ (all writes there happen under this lock, so none is live). */
static int gc_locked(struct image_store *s, json_object *refs, uk_error *err)
{
	_cleanup_free_ char *images = uk_strf("%s/images", s->root);
	_cleanup_free_ char *blobs = uk_strf("%s/blobs/sha256", s->root);
	if (!images || !blobs)
		return oom(err);
	_cleanup_closedir_ DIR *d = opendir(images);
	if (!d)
		return uk_err_errno(err, errno, "open %s", images);
	struct strv live = { 0 };
	bool keep_all_blobs = false;
	int r = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		char hex[SHA256_HEX_SIZE];
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (!image_file_name(de->d_name, hex)) {
			if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT && r == 0)
				r = uk_err_errno(err, errno, "remove %s/%s", images, de->d_name);
			continue;
		}
		bool referenced = false;
		json_object_object_foreach(refs, key, val)
		{
			(void)key;
			const char *id = json_object_get_string(val);
			if (strcmp(id + 7, hex) == 0) {
				referenced = true;
				break;
			}
		}
		if (!referenced) {
			if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT && r == 0)
				r = uk_err_errno(err, errno, "remove %s/%s", images, de->d_name);
			continue;
		}
		_cleanup_image_meta_ struct image_meta m = { 0 };
		/* An unreadable image might use any blob: then leave all blobs alone. */
		if (read_meta(s, hex, &m, NULL) < 0) {
			keep_all_blobs = true;
			continue;
		}
		const char *ds[] = { m.kernel, m.initrd, m.disk, m.image_config };
		for (size_t k = 0; k < ARRAY_SIZE(ds); k++)
			if (ds[k] && strv_push(&live, ds[k] + 7) < 0) {
				strv_clear(&live);
				return oom(err);
			}
		for (char **l = m.layers; l && *l; l++)
			if (strv_push(&live, *l + 7) < 0) {
				strv_clear(&live);
				return oom(err);
			}
	}
	if (keep_all_blobs) {
		strv_clear(&live);
		return r;
	}
	char **lv = strv_take(&live);
	if (!lv)
		return oom(err);
	size_t nlive = 0;
	while (lv[nlive])
		nlive++;
	_cleanup_closedir_ DIR *bd = opendir(blobs);
	if (!bd) {
		int e = errno;
		strv_free(lv);
		return uk_err_errno(err, e, "open %s", blobs);
	}
	while ((de = readdir(bd))) {
		/* Only names of our own form; anything else is not ours to delete. */
		if (!image_hex_valid(de->d_name, 64, 64))
			continue;
		const char *name = de->d_name;
		if (bsearch(&name, lv, nlive, sizeof(char *), cmp_str))
			continue;
		if (unlinkat(dirfd(bd), name, 0) < 0 && errno != ENOENT && r == 0)
			r = uk_err_errno(err, errno, "remove %s/%s", blobs, name);
	}
	strv_free(lv);
	return r;
}

/* Files in ROOT/tmp are copies in progress; their importer holds a flock on each, so a
 * file we can lock belongs to an import that died. */
static int clean_tmp_locked(struct image_store *s, uk_error *err)
{
	_cleanup_free_ char *tmp = uk_strf("%s/tmp", s->root);
	if (!tmp)
		return oom(err);
	_cleanup_closedir_ DIR *d = opendir(tmp);
	if (!d)
		return uk_err_errno(err, errno, "open %s", tmp);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		_cleanup_close_ int fd =
			openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
		if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0)
			continue; /* in use */
		if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT) {
			if (errno != EISDIR)
				return uk_err_errno(err, errno, "remove %s/%s", tmp, de->d_name);
			/* The work directory of a pull that died. */
			_cleanup_free_ char *p = uk_strf("%s/%s", tmp, de->d_name);
			if (!p)
				return oom(err);
			int r = uk_rm_rf(p, err);
			if (r < 0)
				return r;
		}
	}
	/* Lock files of pulls that died: unlocked ones go (a waiter that opened one notices). */
	_cleanup_free_ char *locks = uk_strf("%s/locks", s->root);
	if (!locks)
		return oom(err);
	_cleanup_closedir_ DIR *ld = opendir(locks);
	if (!ld)
		return uk_err_errno(err, errno, "open %s", locks);
	while ((de = readdir(ld))) {
		if (de->d_name[0] == '.')
			continue;
		_cleanup_close_ int fd =
			openat(dirfd(ld), de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
		if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0)
			continue;
		if (unlinkat(dirfd(ld), de->d_name, 0) < 0 && errno != ENOENT)
			return uk_err_errno(err, errno, "remove %s/%s", locks, de->d_name);
	}
	/* Leftovers of uk_write_file_atomic ("refs.json.tmp.<pid>"); refs.json is only
	 * written under this lock, so none is live. */
	_cleanup_closedir_ DIR *rd = opendir(s->root);
	if (!rd)
		return uk_err_errno(err, errno, "open %s", s->root);
	while ((de = readdir(rd)))
		if (strncmp(de->d_name, "refs.json.tmp.", 14) == 0 && unlinkat(dirfd(rd), de->d_name, 0) < 0 &&
		    errno != ENOENT)
			return uk_err_errno(err, errno, "remove %s/%s", s->root, de->d_name);
	return 0;
}

/* ---- open / free ---- */

int image_store_open(const char *root, struct image_store **ret, uk_error *err)
{
	if (!root || !*root)
		return uk_err(err, EINVAL, "image store root is empty");
	int r = uk_mkdir_p(root, 0755, err);
	if (r < 0)
		return r;
	_cleanup_image_store_ struct image_store *s = calloc(1, sizeof(*s));
	if (!s)
		return oom(err);
	s->lock_fd = -1;
	if (!(s->root = realpath(root, NULL)))
		return uk_err_errno(err, errno, "resolve %s", root);
	/* Blob paths go to QEMU and other tools: keep them well inside PATH_MAX. */
	if (strlen(s->root) > PATH_MAX - 128)
		return uk_err(err, ENAMETOOLONG, "image store root %s is too long", s->root);
	const char *dirs[] = { "blobs/sha256", "images", "locks" };
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		_cleanup_free_ char *p = uk_strf("%s/%s", s->root, dirs[i]);
		if (!p)
			return oom(err);
		if ((r = uk_mkdir_p(p, 0755, err)) < 0)
			return r;
	}
	/* Partial copies are nobody else's business. */
	_cleanup_free_ char *tmp = uk_strf("%s/tmp", s->root);
	if (!tmp)
		return oom(err);
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return uk_err_errno(err, errno, "mkdir %s", tmp);
	/* 0600: anyone who can open the lock file can block the store with it. */
	_cleanup_free_ char *lock = uk_strf("%s/lock", s->root);
	if (!lock)
		return oom(err);
	s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (s->lock_fd < 0)
		return uk_err_errno(err, errno, "open %s", lock);

	_cleanup_unlock_ int locked = -1;
	if ((r = store_lock(s, LOCK_EX, err)) < 0)
		return r;
	locked = s->lock_fd;
	_cleanup_json_ json_object *refs = NULL;
	if ((r = clean_tmp_locked(s, err)) < 0 || (r = load_refs(s, &refs, err)) < 0 ||
	    (r = gc_locked(s, refs, err)) < 0)
		return uk_err_ctx_r(err, r, "image store %s", s->root);
	*ret = TAKE_PTR(s);
	return 0;
}

void image_store_free(struct image_store *s)
{
	if (!s)
		return;
	safe_close(s->lock_fd);
	free(s->root);
	free(s);
}

const char *image_store_root(const struct image_store *s)
{
	return s->root;
}

/* ---- import ---- */

/* A file copied into ROOT/tmp, hashed on the way. */
struct staged {
	char *tmp;  /* NULL once moved into blobs/ or removed */
	int fd;     /* holds the flock that tells clean_tmp_locked the copy is live */
	char digest[IMAGE_ID_SIZE];
	uint64_t size;
};

static void staged_clear(struct staged *st)
{
	if (st->tmp) {
		(void)unlink(st->tmp); /* best effort: the next open empties tmp/ */
		free(st->tmp);
		st->tmp = NULL;
	}
	st->fd = safe_close(st->fd);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Write buf, seeking over whole zero blocks so a sparse raw disk stays sparse. */
static int write_sparse(int fd, const uint8_t *buf, size_t n)
{
	size_t off = 0;
	while (off < n) {
		size_t blk = n - off < HOLE_BLOCK ? n - off : HOLE_BLOCK;
		bool zero = all_zero(buf + off, blk);
		size_t run = blk;
		while (off + run < n) {
			size_t b = n - off - run < HOLE_BLOCK ? n - off - run : HOLE_BLOCK;
			if (all_zero(buf + off + run, b) != zero)
				break;
			run += b;
		}
		if (zero) {
			if (lseek(fd, (off_t)run, SEEK_CUR) < 0)
				return -errno;
		} else {
			int r = uk_write_all(fd, buf + off, run);
			if (r < 0)
				return r;
		}
		off += run;
	}
	return 0;
}

static int stage_file(struct image_store *s, const char *field, const char *src, uint64_t max,
		      struct staged *st, uk_error *err)
{
	_cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (in < 0)
		return uk_err_errno(err, errno, "%s: open %s", field, src);
	struct stat sb;
	if (fstat(in, &sb) < 0)
		return uk_err_errno(err, errno, "%s: stat %s", field, src);
	if (!S_ISREG(sb.st_mode))
		return uk_err(err, EINVAL, "%s: %s is not a regular file", field, src);
	if (sb.st_size == 0)
		return uk_err(err, EINVAL, "%s: %s is empty", field, src);
	if ((uint64_t)sb.st_size > max)
		return uk_err(err, EFBIG, "%s: %s is %llu bytes, more than the limit of %llu", field, src,
			      (unsigned long long)sb.st_size, (unsigned long long)max);

	/* Create and flock the temp file under the shared store lock, so that a concurrent
	 * image_store_open (exclusive) never sees it unlocked. */
	{
		_cleanup_unlock_ int locked = -1;
		int r = store_lock(s, LOCK_SH, err);
		if (r < 0)
			return r;
		locked = s->lock_fd;
		if (!(st->tmp = uk_strf("%s/tmp/import-XXXXXX", s->root)))
			return oom(err);
		st->fd = mkostemp(st->tmp, O_CLOEXEC);
		if (st->fd < 0) {
			r = uk_err_errno(err, errno, "%s: create a temp file in %s/tmp", field, s->root);
			free(st->tmp);
			st->tmp = NULL;
			return r;
		}
		if (flock(st->fd, LOCK_EX | LOCK_NB) < 0)
			return uk_err_errno(err, errno, "%s: lock %s", field, st->tmp);
	}

	_cleanup_free_ uint8_t *buf = malloc(COPY_BUF_SIZE);
	if (!buf)
		return oom(err);
	struct sha256_ctx h;
	sha256_init(&h);
	uint64_t total = 0;
	for (;;) {
		ssize_t n = read(in, buf, COPY_BUF_SIZE);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return uk_err_errno(err, errno, "%s: read %s", field, src);
		}
		if (n == 0)
			break;
		/* The file may grow while we copy: the limit holds for what we read. */
		if ((uint64_t)n > max - total)
			return uk_err(err, EFBIG, "%s: %s grew beyond the limit of %llu bytes", field, src,
				      (unsigned long long)max);
		total += (uint64_t)n;
		sha256_update(&h, buf, (size_t)n);
		int r = write_sparse(st->fd, buf, (size_t)n);
		if (r < 0)
			return uk_err_errno(err, -r, "%s: write %s", field, st->tmp);
	}
	if (total == 0)
		return uk_err(err, EINVAL, "%s: %s is empty", field, src);
	/* Trailing holes: seeking alone does not extend the file. */
	if (ftruncate(st->fd, (off_t)total) < 0 || fsync(st->fd) < 0 || fchmod(st->fd, 0444) < 0)
		return uk_err_errno(err, errno, "%s: write %s", field, st->tmp);
	uint8_t d[SHA256_DIGEST_SIZE];
	char hex[SHA256_HEX_SIZE];
	sha256_final(&h, d);
	sha256_to_hex(d, hex);
	snprintf(st->digest, sizeof(st->digest), "sha256:%s", hex);
	st->size = total;
	return 0;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/* Check the claimed format against the copy (not the source, which could change), or
 * guess it. A qcow2 image may name other host files (a backing file, an external data
 * file) that QEMU would open for the guest: refuse those. */
static int check_disk(const struct staged *st, const char *src, const char *claimed, const char **ret,
		      uk_error *err)
{
	uint8_t hdr[104] = { 0 };
	ssize_t n;
	do
		n = pread(st->fd, hdr, sizeof(hdr), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return uk_err_errno(err, errno, "disk: read %s", st->tmp);
	bool qcow2 = n >= 4 && memcmp(hdr, "QFI\xfb", 4) == 0;
	if (claimed && strcmp(claimed, "qcow2") == 0 && !qcow2)
		return uk_err(err, EINVAL, "disk_format: qcow2 given but %s has no qcow2 header", src);
	if (claimed && strcmp(claimed, "raw") == 0 && qcow2)
		return uk_err(err, EINVAL, "disk_format: raw given but %s is a qcow2 image", src);
	if (qcow2) {
		if (n < 72)
			return uk_err(err, EINVAL, "disk: %s has a truncated qcow2 header", src);
		uint32_t version = be32(hdr + 4);
		if (version != 2 && version != 3)
			return uk_err(err, EINVAL, "disk: %s is qcow2 version %u; only 2 and 3 are supported", src,
				      version);
		if (be64(hdr + 8) != 0)
			return uk_err(err, EINVAL, "disk: %s is a qcow2 image with a backing file, which is not accepted",
				      src);
		if (version == 3) {
			if (n < 104)
				return uk_err(err, EINVAL, "disk: %s has a truncated qcow2 header", src);
			if (be64(hdr + 72) & (1ull << 2))
				return uk_err(err, EINVAL,
					      "disk: %s is a qcow2 image with an external data file, which is not accepted",
					      src);
		}
	}
	*ret = qcow2 ? "qcow2" : "raw";
	return 0;
}

/* Move a staged copy to blobs/sha256/<hex>, or drop it when that blob is already there. */
static int commit_blob(struct image_store *s, struct staged *st, uk_error *err)
{
	_cleanup_free_ char *dst = blob_path(s, st->digest);
	if (!dst)
		return oom(err);
	struct stat sb;
	if (lstat(dst, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == st->size) {
		(void)unlink(st->tmp); /* a copy we do not need; the next open empties tmp/ */
	} else if (rename(st->tmp, dst) < 0) {
		return uk_err_errno(err, errno, "rename %s to %s", st->tmp, dst);
	}
	free(st->tmp);
	st->tmp = NULL;
	return 0;
}

/* Put a verified file of ROOT/tmp into blobs/ under its digest (a hard link: the caller
 * still removes its own name), unless the blob is there already. */
static int link_blob(struct image_store *s, const struct image_blob_file *b, uk_error *err)
{
	_cleanup_free_ char *dst = blob_path(s, b->digest);
	if (!dst)
		return oom(err);
	struct stat sb;
	if (lstat(dst, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == b->size)
		return 0;
	if (chmod(b->path, 0444) < 0)
		return uk_err_errno(err, errno, "chmod %s", b->path);
	if (link(b->path, dst) < 0 && errno != EEXIST)
		return uk_err_errno(err, errno, "link %s to %s", b->path, dst);
	return 0;
}

static int fsync_dir(const char *path, uk_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		return uk_err_errno(err, errno, "fsync %s", path);
	return 0;
}

enum { F_KERNEL, F_INITRD, F_DISK, N_FILES };

static void staged_clear_all(struct staged (*st)[N_FILES])
{
	for (int i = 0; i < N_FILES; i++)
		staged_clear(&(*st)[i]);
}

/* Under the exclusive lock: blobs, then the image document, then the ref map, then GC, so
 * that a crash at any point leaves either the old state or orphans the next GC removes. */
static int import_commit(struct image_store *s, const char *const *keys, struct staged *st,
			 const struct image_blob_file *const *kept, size_t nkept, struct image_meta *m,
			 struct image_info **ret, uk_error *err)
{
	_cleanup_unlock_ int locked = -1;
	int r = store_lock(s, LOCK_EX, err);
	if (r < 0)
		return r;
	locked = s->lock_fd;
	_cleanup_free_ char *blobs = uk_strf("%s/blobs/sha256", s->root);
	_cleanup_free_ char *id = uk_strf("sha256:%s", m->hex);
	if (!blobs || !id)
		return oom(err);
	for (int i = 0; i < N_FILES; i++)
		if (st[i].tmp && (r = commit_blob(s, &st[i], err)) < 0)
			return r;
	for (size_t i = 0; i < nkept; i++)
		if ((r = link_blob(s, kept[i], err)) < 0)
			return r;
	if ((r = fsync_dir(blobs, err)) < 0)
		return r;
	/* Identical content: keep the existing document and its creation time. */
	_cleanup_image_meta_ struct image_meta old = { 0 };
	if (read_meta(s, m->hex, &old, NULL) == 0) {
		m->created_ns = old.created_ns;
	} else {
		m->created_ns = uk_now_realtime_ns();
		if ((r = write_meta(s, m, err)) < 0)
			return r;
	}
	_cleanup_json_ json_object *refs = NULL;
	if ((r = load_refs(s, &refs, err)) < 0)
		return r;
	for (size_t k = 0; keys[k]; k++) {
		json_object *idv = json_object_new_string(id);
		if (!idv || json_object_object_add(refs, keys[k], idv) < 0) {
			json_object_put(idv);
			return oom(err);
		}
	}
	if ((r = save_refs(s, refs, err)) < 0)
		return r;
	/* The image the tag moved away from goes if nothing else refers to it. */
	if ((r = gc_locked(s, refs, err)) < 0)
		return r;
	return ret ? build_info(s, m, refs, ret, err) : 0;
}

int image_store_import(struct image_store *s, const char *ref, const struct image_import *in,
		       struct image_info **ret, uk_error *err)
{
	if (!ref)
		return uk_err(err, EINVAL, "ref: missing");
	return image_store_import_ex(s, ref, NULL, NULL, in, ret, err);
}

/* The ref map keys an import goes under: name[:tag] and/or a repo digest. */
static int import_keys(const char *ref, const char *repo_digest, char **key, char **dkey, uk_error *err)
{
	int r;
	if (ref) {
		_cleanup_image_ref_ struct image_ref iref = { 0 };
		if ((r = image_ref_parse(ref, &iref, err)) < 0)
			return uk_err_ctx_r(err, r, "ref");
		if (iref.digest)
			return uk_err(err, EINVAL, "ref: \"%s\" has a digest; give name[:tag]", ref);
		if (!(*key = ref_key(&iref)))
			return oom(err);
	}
	if (repo_digest) {
		_cleanup_image_ref_ struct image_ref dref = { 0 };
		if ((r = image_ref_parse(repo_digest, &dref, err)) < 0)
			return uk_err_ctx_r(err, r, "repo digest");
		if (!dref.digest)
			return uk_err(err, EINVAL, "repo digest: \"%s\" has no digest", repo_digest);
		if (!(*dkey = ref_key(&dref)))
			return oom(err);
	}
	return 0;
}

/* What an import may hold, checked before anything is copied; kept[] gets the blobs it
 * links as they are (config and layers). */
static int import_check(const struct image_import *in, const char *kind, const struct image_blob_file **kept,
			size_t *nkept, uk_error *err)
{
	bool urunc = strcmp(kind, "urunc") == 0;
	if (in->not_runnable) {
		if (in->kernel || in->disk || strcmp(kind, IMAGE_KIND_IMPORT) == 0)
			return uk_err(err, EINVAL, "not_runnable: only for a pulled image without kernel or disk");
		if (strnlen(in->not_runnable, IMAGE_NOT_RUNNABLE_MAX) >= IMAGE_NOT_RUNNABLE_MAX ||
		    !text_valid(in->not_runnable))
			return uk_err(err, EINVAL, "not_runnable: too long or not text");
	} else {
		if (in->kernel && in->disk && !urunc)
			return uk_err(err, EINVAL, "kernel, disk: give exactly one, not both");
		if (!in->kernel && !in->disk)
			return uk_err(err, EINVAL, "kernel, disk: give exactly one");
	}
	if (in->n_layers > IMAGE_LAYERS_MAX)
		return uk_err(err, E2BIG, "layers: %zu, more than %d", in->n_layers, IMAGE_LAYERS_MAX);
	*nkept = 0;
	if (in->config)
		kept[(*nkept)++] = in->config;
	for (size_t i = 0; i < in->n_layers; i++)
		kept[(*nkept)++] = &in->layers[i];
	for (size_t i = 0; i < *nkept; i++)
		if (!kept[i]->path || !image_digest_valid(kept[i]->digest))
			return uk_err(err, EINVAL, "layers: a blob without a path or a sha256 digest");
	if (in->initrd && !in->kernel)
		return uk_err(err, EINVAL, "initrd: only goes with a kernel");
	if (in->disk_format && !in->disk)
		return uk_err(err, EINVAL, "disk_format: only goes with a disk");
	if (in->disk_format && strcmp(in->disk_format, "raw") != 0 && strcmp(in->disk_format, "qcow2") != 0)
		return uk_err(err, EINVAL, "disk_format: must be raw or qcow2, got \"%s\"", in->disk_format);
	const char *cmdline = in->cmdline ? in->cmdline : "";
	/* vmwrapper passes a command line only with -kernel; a disk boots what it holds. */
	if (*cmdline && !in->kernel)
		return uk_err(err, EINVAL, "cmdline: only goes with a kernel");
	if (strnlen(cmdline, IMAGE_CMDLINE_MAX) >= IMAGE_CMDLINE_MAX)
		return uk_err(err, E2BIG, "cmdline: longer than %d bytes", IMAGE_CMDLINE_MAX - 1);
	const char *names[] = { in->unikernel_type, in->unikernel_version };
	const char *fields[] = { "unikernel_type", "unikernel_version" };
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (names[i] && (!*names[i] || strlen(names[i]) >= IMAGE_NAME_VALUE_MAX || !uk_id_valid(names[i])))
			return uk_err(err, EINVAL, "%s: \"%.64s\" is not a name ([A-Za-z0-9_.-], < %d bytes)", fields[i],
				      names[i], IMAGE_NAME_VALUE_MAX);
	if ((in->unikernel_type || in->unikernel_version) && !in->kernel)
		return uk_err(err, EINVAL, "unikernel_type: only goes with a kernel");
	if (!text_valid(cmdline))
		return uk_err(err, EINVAL, "cmdline: must be UTF-8 text without control characters");
	return 0;
}

/* The image document of an import whose files are staged: digests, size (every distinct
 * blob once) and the id computed from them. */
static int import_meta(const struct image_import *in, const char *kind, const char *format,
		       const struct staged *st, const struct image_blob_file *const *kept, size_t nkept,
		       struct image_meta *m, uk_error *err)
{
	const char *srcs[N_FILES] = { in->kernel, in->initrd, in->disk };
	if (!(m->kind = strdup(kind)) || !(m->cmdline = strdup(in->cmdline ? in->cmdline : "")) ||
	    (format && !(m->disk_format = strdup(format))) ||
	    (in->not_runnable && !(m->not_runnable = strdup(in->not_runnable))) ||
	    (in->unikernel_type && !(m->unikernel_type = strdup(in->unikernel_type))) ||
	    (in->unikernel_version && !(m->unikernel_version = strdup(in->unikernel_version))) ||
	    (in->config && !(m->image_config = strdup(in->config->digest))))
		return oom(err);
	if (in->layers || in->config) {
		if (!(m->layers = calloc(in->n_layers + 1, sizeof(char *))))
			return oom(err);
		for (size_t i = 0; i < in->n_layers; i++)
			if (!(m->layers[i] = strdup(in->layers[i].digest)))
				return oom(err);
	}
	for (size_t i = 0; i < nkept; i++) {
		bool dup = false;
		for (size_t k = 0; k < i && !dup; k++)
			dup = strcmp(kept[k]->digest, kept[i]->digest) == 0;
		for (int k = 0; k < N_FILES && !dup; k++)
			dup = srcs[k] && strcmp(st[k].digest, kept[i]->digest) == 0;
		if (!dup)
			m->size += kept[i]->size;
	}
	char **mdig[N_FILES] = { &m->kernel, &m->initrd, &m->disk };
	for (int i = 0; i < N_FILES; i++) {
		if (!srcs[i])
			continue;
		if (!(*mdig[i] = strdup(st[i].digest)))
			return oom(err);
		/* The same content twice (kernel == initrd) is one blob. */
		bool dup = false;
		for (int k = 0; k < i; k++)
			dup |= srcs[k] && strcmp(st[k].digest, st[i].digest) == 0;
		if (!dup)
			m->size += st[i].size;
	}
	return meta_compute_id(m, m->hex) < 0 ? oom(err) : 0;
}

int image_store_import_ex(struct image_store *s, const char *ref, const char *repo_digest, const char *kind,
			  const struct image_import *in, struct image_info **ret, uk_error *err)
{
	int r;
	if (!in)
		return uk_err(err, EINVAL, "nothing to import");
	if (!ref && !repo_digest)
		return uk_err(err, EINVAL, "ref: give a reference or a repo digest");
	if (!kind)
		kind = IMAGE_KIND_IMPORT;
	if (strlen(kind) > KIND_MAX || !uk_id_valid(kind))
		return uk_err(err, EINVAL, "kind: \"%s\" is not a valid kind", kind);
	_cleanup_free_ char *key = NULL, *dkey = NULL;
	if ((r = import_keys(ref, repo_digest, &key, &dkey, err)) < 0)
		return r;
	const char *keys[3] = { 0 };
	size_t nk = 0;
	if (key)
		keys[nk++] = key;
	if (dkey)
		keys[nk++] = dkey;
	const struct image_blob_file *kept[IMAGE_LAYERS_MAX + 1];
	size_t nkept = 0;
	if ((r = import_check(in, kind, kept, &nkept, err)) < 0)
		return r;

	/* Copy outside the store lock: a 64 GiB disk must not block the daemon. */
	const char *fields[N_FILES] = { "kernel", "initrd", "disk" };
	const char *srcs[N_FILES] = { in->kernel, in->initrd, in->disk };
	const uint64_t maxes[N_FILES] = { IMAGE_KERNEL_MAX, IMAGE_INITRD_MAX, IMAGE_DISK_MAX };
	_cleanup_(staged_clear_all) struct staged st[N_FILES] = { { .fd = -1 }, { .fd = -1 }, { .fd = -1 } };
	for (int i = 0; i < N_FILES; i++)
		if (srcs[i] && (r = stage_file(s, fields[i], srcs[i], maxes[i], &st[i], err)) < 0)
			return r;
	const char *format = NULL;
	if (in->disk && (r = check_disk(&st[F_DISK], in->disk, in->disk_format, &format, err)) < 0)
		return r;
	_cleanup_image_meta_ struct image_meta m = { 0 };
	if ((r = import_meta(in, kind, format, st, kept, nkept, &m, err)) < 0)
		return r;
	return import_commit(s, keys, st, kept, nkept, &m, ret, err);
}

static int resolve_locked(struct image_store *s, json_object *refs, const char *ref, char hex[SHA256_HEX_SIZE],
			  char **key, uk_error *err);

int image_store_mkdtemp(struct image_store *s, const char *prefix, char **path, int *lock_fd, uk_error *err)
{
	*path = NULL;
	*lock_fd = -1;
	/* Under the shared lock, as stage_file: a concurrent image_store_open never sees the
	 * directory unlocked. */
	_cleanup_unlock_ int locked = -1;
	int r = store_lock(s, LOCK_SH, err);
	if (r < 0)
		return r;
	locked = s->lock_fd;
	_cleanup_free_ char *p = uk_strf("%s/tmp/%sXXXXXX", s->root, prefix);
	if (!p)
		return oom(err);
	if (!mkdtemp(p))
		return uk_err_errno(err, errno, "create a temp directory in %s/tmp", s->root);
	int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
		r = uk_err_errno(err, errno, "lock %s", p);
		safe_close(fd);
		(void)rmdir(p); /* best effort: the next open empties tmp/ */
		return r;
	}
	*path = TAKE_PTR(p);
	*lock_fd = fd;
	return 0;
}

/* ---- named locks: ROOT/locks/<key> ---- */

int image_store_lock_key(struct image_store *s, const char *key, int *fd, uk_error *err)
{
	*fd = -1;
	if (!key || strlen(key) > 128 || !uk_id_valid(key))
		return uk_err(err, EINVAL, "lock key \"%s\" is not valid", key ? key : "");
	_cleanup_free_ char *path = uk_strf("%s/locks/%s", s->root, key);
	if (!path)
		return oom(err);
	for (;;) {
		_cleanup_close_ int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
		if (f < 0)
			return uk_err_errno(err, errno, "open %s", path);
		while (flock(f, LOCK_EX) < 0)
			if (errno != EINTR)
				return uk_err_errno(err, errno, "lock %s", path);
		/* The holder before us unlinks the file before it unlocks: then ours is stale. */
		struct stat a, b;
		if (fstat(f, &a) < 0)
			return uk_err_errno(err, errno, "stat %s", path);
		if (stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
			*fd = TAKE_FD(f);
			return 0;
		}
	}
}

void image_store_unlock_key(struct image_store *s, const char *key, int fd)
{
	if (fd < 0)
		return;
	_cleanup_free_ char *path = uk_strf("%s/locks/%s", s->root, key);
	if (path)
		(void)unlink(path); /* best effort: a stale lock file is harmless, the flock is what locks */
	safe_close(fd);
}

int image_store_blob_dir(struct image_store *s, char **ret)
{
	return (*ret = uk_strf("%s/blobs/sha256", s->root)) ? 0 : -ENOMEM;
}

int image_store_blob_get(struct image_store *s, const char *digest, uint64_t size, const char *dst,
			 image_blob_fetch_fn fetch, void *ud, bool *fetched, uk_error *err)
{
	*fetched = false;
	if (!image_digest_valid(digest))
		return uk_err(err, EINVAL, "blob digest \"%s\" is not sha256:<64 hex>", digest);
	char key[80];
	snprintf(key, sizeof(key), "blob-%.64s", digest + 7);
	int lfd;
	int r = image_store_lock_key(s, key, &lfd, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *src = blob_path(s, digest);
	if (!src) {
		image_store_unlock_key(s, key, lfd);
		return oom(err);
	}
	struct stat sb;
	/* A GC between the lstat and the link makes the link fail: then fetch it. */
	if (lstat(src, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == size && link(src, dst) == 0) {
		image_store_unlock_key(s, key, lfd);
		return 0;
	}
	r = fetch(ud, dst, err);
	if (r >= 0) {
		*fetched = true;
		_cleanup_close_ int f = open(dst, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (f < 0 || fsync(f) < 0 || fchmod(f, 0444) < 0)
			r = uk_err_errno(err, errno, "publish %s", dst);
		else if (link(dst, src) < 0 && errno != EEXIST)
			r = uk_err_errno(err, errno, "link %s to %s", dst, src);
		if (r < 0)
			(void)unlink(dst); /* best effort: the link's error is the one to report */
	}
	image_store_unlock_key(s, key, lfd);
	return r;
}

int image_store_tag(struct image_store *s, const char *target, const char *ref, struct image_info **ret,
		    uk_error *err)
{
	_cleanup_image_ref_ struct image_ref iref = { 0 };
	int r = image_ref_parse(ref, &iref, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "ref");
	_cleanup_free_ char *key = ref_key(&iref);
	if (!key)
		return oom(err);
	_cleanup_unlock_ int locked = -1;
	if ((r = store_lock(s, LOCK_EX, err)) < 0)
		return r;
	locked = s->lock_fd;
	_cleanup_json_ json_object *refs = NULL;
	_cleanup_free_ char *tkey = NULL;
	_cleanup_image_meta_ struct image_meta m = { 0 };
	char hex[SHA256_HEX_SIZE];
	if ((r = load_refs(s, &refs, err)) < 0 || (r = resolve_locked(s, refs, target, hex, &tkey, err)) < 0 ||
	    (r = read_meta(s, hex, &m, err)) < 0)
		return r;
	_cleanup_free_ char *id = uk_strf("sha256:%s", hex);
	json_object *idv = id ? json_object_new_string(id) : NULL;
	if (!idv || json_object_object_add(refs, key, idv) < 0) {
		json_object_put(idv);
		return oom(err);
	}
	if ((r = save_refs(s, refs, err)) < 0 || (r = gc_locked(s, refs, err)) < 0)
		return r;
	return ret ? build_info(s, &m, refs, ret, err) : 0;
}

/* ---- resolve / list / remove ---- */

/* The unique image whose id starts with prefix (3..64 hex digits). */
static int find_by_prefix(struct image_store *s, const char *prefix, const char *ref, char hex[SHA256_HEX_SIZE],
			  uk_error *err)
{
	_cleanup_free_ char *images = uk_strf("%s/images", s->root);
	if (!images)
		return oom(err);
	_cleanup_closedir_ DIR *d = opendir(images);
	if (!d)
		return uk_err_errno(err, errno, "open %s", images);
	size_t plen = strlen(prefix), found = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		char h[SHA256_HEX_SIZE];
		if (!image_file_name(de->d_name, h) || strncmp(h, prefix, plen) != 0)
			continue;
		if (++found > 1)
			return uk_err(err, EINVAL, "image id prefix \"%s\" is ambiguous", ref);
		memcpy(hex, h, SHA256_HEX_SIZE);
	}
	return found ? 0 : uk_err(err, ENOENT, "image \"%s\" not found", ref);
}

/* ref -> image hex. *key is set to the ref-map key when ref was a reference, else NULL. */
static int resolve_locked(struct image_store *s, json_object *refs, const char *ref, char hex[SHA256_HEX_SIZE],
			  char **key, uk_error *err)
{
	*key = NULL;
	if (!ref || !*ref)
		return uk_err(err, EINVAL, "image reference is empty");
	const char *bare = strncmp(ref, "sha256:", 7) == 0 ? ref + 7 : NULL;
	if ((bare && image_hex_valid(bare, 64, 64)) || image_hex_valid(ref, 64, 64)) {
		const char *h = bare ? bare : ref;
		_cleanup_free_ char *p = uk_strf("%s/images/%s.json", s->root, h);
		if (!p)
			return oom(err);
		if (access(p, F_OK) < 0)
			return errno == ENOENT ? uk_err(err, ENOENT, "image \"%s\" not found", ref)
					       : uk_err_errno(err, errno, "access %s", p);
		memcpy(hex, h, SHA256_HEX_SIZE);
		return 0;
	}
	if (bare) {
		if (!image_hex_valid(bare, 3, 63))
			return uk_err(err, EINVAL, "\"%s\" is not an image id (sha256: and 3 to 64 hex digits)", ref);
		return find_by_prefix(s, bare, ref, hex, err);
	}
	/* Like docker: a name first ("abc" may be docker.io/library/abc:latest), then an id prefix. */
	_cleanup_image_ref_ struct image_ref r = { 0 };
	uk_error perr = { 0 };
	int pr = image_ref_parse(ref, &r, &perr);
	if (pr >= 0) {
		_cleanup_free_ char *k = ref_key(&r);
		json_object *v;
		if (!k)
			return oom(err);
		if (json_object_object_get_ex(refs, k, &v)) {
			memcpy(hex, json_object_get_string(v) + 7, SHA256_HEX_SIZE);
			*key = TAKE_PTR(k);
			return 0;
		}
	}
	if (image_hex_valid(ref, 3, 63))
		return find_by_prefix(s, ref, ref, hex, err);
	if (pr < 0) {
		if (err)
			*err = perr;
		return pr;
	}
	return uk_err(err, ENOENT, "image \"%s\" not found", ref);
}

int image_store_resolve(struct image_store *s, const char *ref, struct image_info **ret, uk_error *err)
{
	_cleanup_unlock_ int locked = -1;
	int r = store_lock(s, LOCK_SH, err);
	if (r < 0)
		return r;
	locked = s->lock_fd;
	_cleanup_json_ json_object *refs = NULL;
	_cleanup_free_ char *key = NULL;
	_cleanup_image_meta_ struct image_meta m = { 0 };
	char hex[SHA256_HEX_SIZE];
	if ((r = load_refs(s, &refs, err)) < 0 || (r = resolve_locked(s, refs, ref, hex, &key, err)) < 0 ||
	    (r = read_meta(s, hex, &m, err)) < 0)
		return r;
	return build_info(s, &m, refs, ret, err);
}

static int cmp_info(const void *a, const void *b)
{
	const struct image_info *x = *(struct image_info *const *)a, *y = *(struct image_info *const *)b;
	if (x->created_ns != y->created_ns)
		return x->created_ns > y->created_ns ? -1 : 1;
	return strcmp(x->id, y->id);
}

int image_store_list(struct image_store *s, struct image_info ***ret, size_t *n, uk_error *err)
{
	_cleanup_unlock_ int locked = -1;
	int r = store_lock(s, LOCK_SH, err);
	if (r < 0)
		return r;
	locked = s->lock_fd;
	_cleanup_json_ json_object *refs = NULL;
	if ((r = load_refs(s, &refs, err)) < 0)
		return r;
	_cleanup_free_ char *images = uk_strf("%s/images", s->root);
	if (!images)
		return oom(err);
	_cleanup_closedir_ DIR *d = opendir(images);
	if (!d)
		return uk_err_errno(err, errno, "open %s", images);
	_cleanup_image_info_list_ struct image_info **v = calloc(1, sizeof(*v));
	size_t count = 0;
	if (!v)
		return oom(err);
	struct dirent *de;
	while ((de = readdir(d))) {
		char hex[SHA256_HEX_SIZE];
		if (!image_file_name(de->d_name, hex))
			continue;
		_cleanup_image_meta_ struct image_meta m = { 0 };
		if ((r = read_meta(s, hex, &m, err)) < 0)
			return r;
		struct image_info **nv = realloc(v, (count + 2) * sizeof(*v));
		if (!nv)
			return oom(err);
		v = nv;
		v[count + 1] = NULL;
		if ((r = build_info(s, &m, refs, &v[count], err)) < 0) {
			v[count] = NULL;
			return r;
		}
		count++;
	}
	qsort(v, count, sizeof(*v), cmp_info);
	*ret = TAKE_PTR(v);
	if (n)
		*n = count;
	return 0;
}

int image_store_remove(struct image_store *s, const char *ref, uk_error *err)
{
	_cleanup_unlock_ int locked = -1;
	int r = store_lock(s, LOCK_EX, err);
	if (r < 0)
		return r;
	locked = s->lock_fd;
	_cleanup_json_ json_object *refs = NULL;
	_cleanup_free_ char *key = NULL;
	char hex[SHA256_HEX_SIZE];
	if ((r = load_refs(s, &refs, err)) < 0)
		return r;
	r = resolve_locked(s, refs, ref, hex, &key, err);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	if (key) {
		json_object_object_del(refs, key);
	} else {
		/* By id: every reference to it goes. Collect first; deleting while iterating is unsafe. */
		struct strv doomed = { 0 };
		json_object_object_foreach(refs, k, v)
		{
			if (strcmp(json_object_get_string(v) + 7, hex) == 0 && strv_push(&doomed, k) < 0) {
				strv_clear(&doomed);
				return oom(err);
			}
		}
		for (size_t i = 0; i < doomed.n; i++)
			json_object_object_del(refs, doomed.v[i]);
		strv_clear(&doomed);
	}
	if ((r = save_refs(s, refs, err)) < 0)
		return r;
	return gc_locked(s, refs, err);
}

/* ---- usage ---- */

static int usage_walk(int dfd, const char *path, int depth, uint64_t *bytes, uint64_t *inodes, uk_error *err)
{
	if (depth > USAGE_DEPTH_MAX)
		return uk_err(err, ELOOP, "%s is nested too deeply", path);
	_cleanup_closedir_ DIR *d = fdopendir(dfd);
	if (!d) {
		int e = errno;
		close(dfd);
		return uk_err_errno(err, e, "open %s", path);
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		struct stat sb;
		/* Entries come and go under concurrent imports and removals. */
		if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue;
			return uk_err_errno(err, errno, "stat %s/%s", path, de->d_name);
		}
		*bytes += (uint64_t)sb.st_blocks * 512;
		*inodes += 1;
		if (!S_ISDIR(sb.st_mode))
			continue;
		int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (sub < 0) {
			if (errno == ENOENT)
				continue;
			return uk_err_errno(err, errno, "open %s/%s", path, de->d_name);
		}
		_cleanup_free_ char *subpath = uk_strf("%s/%s", path, de->d_name);
		if (!subpath) {
			close(sub);
			return oom(err);
		}
		int r = usage_walk(sub, subpath, depth + 1, bytes, inodes, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int image_store_usage(struct image_store *s, uint64_t *bytes, uint64_t *inodes, uk_error *err)
{
	int fd = open(s->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return uk_err_errno(err, errno, "open %s", s->root);
	struct stat sb;
	if (fstat(fd, &sb) < 0) {
		int e = errno;
		close(fd);
		return uk_err_errno(err, e, "stat %s", s->root);
	}
	uint64_t b = (uint64_t)sb.st_blocks * 512, i = 1;
	int r = usage_walk(fd, s->root, 0, &b, &i, err);
	if (r < 0)
		return r;
	if (bytes)
		*bytes = b;
	if (inodes)
		*inodes = i;
	return 0;
}
