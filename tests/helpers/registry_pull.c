/* registry-pull [--insecure HOST]... [--user U --password P] [--identity-token T]
 *               [--registry-token T] [--ca-file F] [--timeout S] REF OUTDIR
 * Pulls REF through the project's registry client (src/store/registry.c): writes
 * OUTDIR/manifest.json and OUTDIR/config.json as served, OUTDIR/index.json's digest in the
 * summary, and each layer to OUTDIR/blobs/<hex> (verified), then prints one JSON line:
 * {"manifest_digest":…,"index_digest":…,"media_type":…,"config":{…},"layers":[…],…}.
 * On failure it prints {"error":…,"errno":"ENOENT"} and exits 1; 2 for bad usage. */
#include <string.h>
#include <sys/stat.h>

#include "../../src/common/util.h"
#include "../../src/store/registry.h"

static int fail(const uk_error *err)
{
	_cleanup_json_ json_object *o = json_object_new_object();
	const char *name = strerrorname_np(err->code);
	json_object_object_add(o, "error", json_object_new_string(err->msg));
	json_object_object_add(o, "errno", json_object_new_string(name ? name : "EIO"));
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							 JSON_C_TO_STRING_NOSLASHESCAPE));
	fprintf(stderr, "registry-pull: %s\n", err->msg);
	return 1;
}

static json_object *blob_json(const struct registry_blob *b)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "digest", json_object_new_string(b->digest));
	json_object_object_add(o, "media_type", json_object_new_string(b->media_type));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)b->size));
	return o;
}

static int usage(void)
{
	fprintf(stderr, "usage: registry-pull [--insecure HOST]... [--user U --password P] "
			"[--identity-token T] [--registry-token T] [--ca-file F] [--timeout S] "
			"REF OUTDIR\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *insecure[17] = { 0 };
	size_t n_insecure = 0;
	struct registry_auth auth = { 0 };
	struct registry_opts o = { .insecure = insecure, .auth = &auth };
	const char *pos[2];
	size_t n_pos = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **slot = NULL;
		if (strcmp(a, "--insecure") == 0) {
			if (n_insecure + 1 >= ARRAY_SIZE(insecure))
				return usage();
			slot = &insecure[n_insecure++];
		} else if (strcmp(a, "--user") == 0) {
			slot = &auth.username;
		} else if (strcmp(a, "--password") == 0) {
			slot = &auth.password;
		} else if (strcmp(a, "--identity-token") == 0) {
			slot = &auth.identity_token;
		} else if (strcmp(a, "--registry-token") == 0) {
			slot = &auth.registry_token;
		} else if (strcmp(a, "--ca-file") == 0) {
			slot = &o.ca_file;
		} else if (strcmp(a, "--timeout") == 0) {
			if (i + 1 >= argc)
				return usage();
			o.timeout_s = atol(argv[++i]);
			continue;
		} else if (a[0] == '-' && a[1] == '-') {
			return usage();
		} else {
			if (n_pos >= 2)
				return usage();
			pos[n_pos++] = a;
			continue;
		}
		if (i + 1 >= argc)
			return usage();
		*slot = argv[++i];
	}
	if (n_pos != 2)
		return usage();
	const char *ref = pos[0], *out = pos[1];

	uk_error err = { 0 };
	_cleanup_registry_client_ registry_client *c = NULL;
	_cleanup_registry_image_ struct registry_image img = { 0 };
	if (registry_client_new(ref, &o, &c, &err) < 0 || registry_client_resolve(c, &img, &err) < 0)
		return fail(&err);

	_cleanup_free_ char *blobs = NULL, *mpath = NULL, *cpath = NULL;
	if (asprintf(&blobs, "%s/blobs", out) < 0 || asprintf(&mpath, "%s/manifest.json", out) < 0 ||
	    asprintf(&cpath, "%s/config.json", out) < 0)
		return 1;
	if (uk_mkdir_p(blobs, 0755, &err) < 0 ||
	    uk_write_file_atomic(mpath, img.manifest_raw, img.manifest_len, 0644, &err) < 0 ||
	    uk_write_file_atomic(cpath, img.config_raw, img.config_len, 0644, &err) < 0)
		return fail(&err);

	_cleanup_json_ json_object *sum = json_object_new_object();
	json_object *layers = json_object_new_array();
	for (size_t i = 0; i < img.n_layers; i++) {
		const struct registry_blob *b = &img.layers[i];
		_cleanup_free_ char *tmp = NULL, *dst = NULL;
		if (asprintf(&tmp, "%s/.tmp-%zu", blobs, i) < 0 ||
		    asprintf(&dst, "%s/%s", blobs, b->digest + 7) < 0) {
			json_object_put(layers);
			return 1;
		}
		if (registry_client_fetch_blob(c, b, tmp, &err) < 0) {
			json_object_put(layers);
			return fail(&err);
		}
		if (rename(tmp, dst) < 0) {
			json_object_put(layers);
			uk_err_errno(&err, errno, "renaming %s", tmp);
			return fail(&err);
		}
		json_object *l = blob_json(b);
		json_object_object_add(l, "path", json_object_new_string(dst));
		json_object_array_add(layers, l);
	}
	json_object_object_add(sum, "manifest_digest", json_object_new_string(img.manifest_digest));
	json_object_object_add(sum, "index_digest", json_object_new_string(img.index_digest));
	json_object_object_add(sum, "media_type", json_object_new_string(img.manifest_media_type));
	json_object_object_add(sum, "config", blob_json(&img.config_blob));
	json_object_object_add(sum, "config_json", json_object_get(img.config));
	json_object_object_add(sum, "layers", layers);
	json_object_object_add(sum, "annotations",
			       img.annotations ? json_object_get(img.annotations) : NULL);
	printf("%s\n", json_object_to_json_string_ext(sum, JSON_C_TO_STRING_PLAIN |
							   JSON_C_TO_STRING_NOSLASHESCAPE));
	return 0;
}
