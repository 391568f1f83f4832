/* image_store_pull: registry -> ROOT/tmp -> rootfs -> image store. See pull.h. */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/util.h"
#include "image_format.h"
#include "layers.h"
#include "pull.h"
#include "reference.h"
#include "sha256.h"

/* The work directory and its lock; removed on every path. */
struct workdir {
	char *path;
	int fd;
};

static void workdir_clear(struct workdir *w)
{
	if (w->path) {
		(void)uk_rm_rf(w->path, NULL); /* best effort: the store's open empties tmp/ */
		free(w->path);
		w->path = NULL;
	}
	w->fd = safe_close(w->fd);
}

/* A named store lock, dropped on every path. */
struct keylock {
	struct image_store *s;
	char key[80];
	int fd;
};

static void keylock_clear(struct keylock *k)
{
	if (k->s)
		image_store_unlock_key(k->s, k->key, k->fd);
	k->fd = -1;
	k->s = NULL;
}

struct fetch_layer {
	registry_client *c;
	const struct registry_blob *b;
};

static int fetch_layer(void *ud, const char *dst, uk_error *err)
{
	struct fetch_layer *f = ud;
	return registry_client_fetch_blob(f->c, f->b, dst, err);
}

/* The config blob came with the resolve (verified): write it out. */
static int write_config(void *ud, const char *dst, uk_error *err)
{
	const struct registry_image *img = ud;
	_cleanup_close_ int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return uk_err_errno(err, errno, "create %s", dst);
	int r = uk_write_all(fd, img->config_raw, img->config_len);
	if (r < 0) {
		(void)unlink(dst); /* best effort: the write's error is the one to report */
		return uk_err_errno(err, -r, "write %s", dst);
	}
	return 0;
}

/* Already pulled (name@digest in the store): point the tag at it. 1 if so. */
static int have_image(struct image_store *s, const char *repo_digest, const char *tag_ref, struct image_info **ret)
{
	if (tag_ref)
		return image_store_tag(s, repo_digest, tag_ref, ret, NULL) >= 0;
	_cleanup_image_info_ struct image_info *have = NULL;
	if (image_store_resolve(s, repo_digest, &have, NULL) < 0)
		return 0;
	if (ret)
		*ret = TAKE_PTR(have);
	return 1;
}

/* Pulls of one reference one at a time: the ones that waited find the config (and the
 * image) in the store and download nothing. */
static int lock_ref(struct image_store *s, const char *full, struct keylock *k, uk_error *err)
{
	uint8_t d[SHA256_DIGEST_SIZE];
	char hex[SHA256_HEX_SIZE];
	sha256_buf(full, strlen(full), d);
	sha256_to_hex(d, hex);
	snprintf(k->key, sizeof(k->key), "ref-%s", hex);
	int r = image_store_lock_key(s, k->key, &k->fd, err);
	if (r < 0)
		return r;
	k->s = s;
	return 0;
}

/* The blobs of a pull, in its work directory. */
struct pulled {
	char *cfg_path;
	struct image_blob_file cfg;
	struct image_blob_file *layers;
	char **lpaths;
};

static void pulled_clear(struct pulled *p)
{
	free(p->cfg_path);
	free(p->layers);
	strv_free(p->lpaths);
}

/* The config, then the layers in order: each one is downloaded once (or linked from the
 * store), kept for the image, and unpacked over the ones before into rootfd. */
static int pull_blobs(struct image_store *s, registry_client *c, const struct registry_image *img,
		      const char *wpath, int rootfd, struct pulled *p, uk_error *err)
{
	bool fetched;
	if (!(p->cfg_path = uk_strf("%s/config", wpath)))
		return uk_err(err, ENOMEM, "out of memory");
	int r = image_store_blob_get(s, img->config_blob.digest, img->config_len, p->cfg_path, write_config,
				     (void *)img, &fetched, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "config");
	p->cfg = (struct image_blob_file){ .digest = img->config_blob.digest, .path = p->cfg_path,
					   .size = img->config_len };
	p->layers = calloc(img->n_layers ? img->n_layers : 1, sizeof(*p->layers));
	p->lpaths = calloc(img->n_layers + 1, sizeof(char *));
	if (!p->layers || !p->lpaths)
		return uk_err(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < img->n_layers; i++) {
		const struct registry_blob *b = &img->layers[i];
		if (!(p->lpaths[i] = uk_strf("%s/layer-%zu", wpath, i)))
			return uk_err(err, ENOMEM, "out of memory");
		struct fetch_layer fl = { .c = c, .b = b };
		if ((r = image_store_blob_get(s, b->digest, b->size, p->lpaths[i], fetch_layer, &fl, &fetched, err)) < 0)
			return uk_err_ctx_r(err, r, "layer %zu", i);
		p->layers[i] = (struct image_blob_file){ .digest = b->digest, .path = p->lpaths[i], .size = b->size };
		r = layers_unpack(p->lpaths[i], b->media_type[0] ? b->media_type : NULL, rootfd, NULL, err);
		if (r < 0)
			return uk_err_ctx_r(err, r, "layer %zu (%s)", i, b->digest);
	}
	return 0;
}

/* What the unpacked rootfs holds decides the kind of image; then into the store. */
static int pull_import(struct image_store *s, const struct registry_image *img, const char *full,
		       const char *tag_ref, const char *repo_digest, const char *rootfs, struct pulled *p,
		       struct image_info **ret, uk_error *err)
{
	struct image_import in = { .config = &p->cfg, .layers = p->layers, .n_layers = img->n_layers };
	_cleanup_image_format_ struct image_format f = { 0 };
	const char *kind;
	uk_error why = { 0 };
	int r = image_format_detect(img->annotations, img->config, rootfs, &f, &why);
	if (r == -ENOEXEC) {
		/* Pulled all the same (kubelet pulls before it creates); CreateContainer refuses it. */
		kind = IMAGE_KIND_NONE;
		in.not_runnable = why.msg;
	} else if (r < 0) {
		if (err)
			*err = why;
		return uk_err_ctx_r(err, r, "image %s is not runnable by unikd", full);
	} else if (strcmp(f.kind, IMAGE_FORMAT_URUNC) == 0) {
		kind = f.kind;
		in.kernel = f.kernel;
		in.initrd = f.initrd;
		in.cmdline = f.cmdline;
		in.disk = f.block;
		in.unikernel_type = f.unikernel_type;
		in.unikernel_version = f.unikernel_version;
	} else {
		kind = f.kind;
		in.disk = f.disk;
		in.disk_format = f.disk_format;
	}
	if ((r = image_store_import_ex(s, tag_ref, repo_digest, kind, &in, ret, err)) < 0)
		return uk_err_ctx_r(err, r, "import %s", full);
	return 0;
}

int image_store_pull(struct image_store *s, const char *ref, const struct registry_opts *o,
		     struct image_info **ret, uk_error *err)
{
	int r;
	_cleanup_image_ref_ struct image_ref iref = { 0 };
	if ((r = image_ref_parse(ref, &iref, err)) < 0)
		return r;
	_cleanup_free_ char *name = image_ref_name(&iref);
	_cleanup_free_ char *full = image_ref_string(&iref);
	/* A tag goes into the store only when the reference has no digest (as containerd). */
	_cleanup_free_ char *tag_ref = NULL;
	_cleanup_free_ char *blob_dir = NULL;
	if (!name || !full || (!iref.digest && !(tag_ref = uk_strf("%s:%s", name, iref.tag))) ||
	    image_store_blob_dir(s, &blob_dir) < 0)
		return uk_err(err, ENOMEM, "out of memory");
	_cleanup_(keylock_clear) struct keylock rk = { .fd = -1 };
	if ((r = lock_ref(s, full, &rk, err)) < 0)
		return r;
	/* The config of an image pulled before is read from the store, not downloaded. */
	struct registry_opts opts = o ? *o : (struct registry_opts){ 0 };
	opts.blob_cache = blob_dir;
	_cleanup_registry_client_ registry_client *c = NULL;
	if ((r = registry_client_new(full, &opts, &c, err)) < 0)
		return r;
	_cleanup_registry_image_ struct registry_image img = { 0 };
	if ((r = registry_client_resolve(c, &img, err)) < 0)
		return r;
	const char *digest = img.index_digest[0] ? img.index_digest : img.manifest_digest;
	_cleanup_free_ char *repo_digest = uk_strf("%s@%s", name, digest);
	if (!repo_digest)
		return uk_err(err, ENOMEM, "out of memory");
	if (img.n_layers > IMAGE_LAYERS_MAX)
		return uk_err(err, E2BIG, "image %s has %zu layers, more than %d", full, img.n_layers,
			      IMAGE_LAYERS_MAX);

	if (have_image(s, repo_digest, tag_ref, ret))
		return 0;
	/* One pull per image at a time: whoever waited here finds the image made. */
	_cleanup_(keylock_clear) struct keylock ik = { .fd = -1 };
	snprintf(ik.key, sizeof(ik.key), "image-%.64s", img.manifest_digest + 7);
	if ((r = image_store_lock_key(s, ik.key, &ik.fd, err)) < 0)
		return r;
	ik.s = s;
	if (have_image(s, repo_digest, tag_ref, ret))
		return 0;

	_cleanup_(workdir_clear) struct workdir w = { .fd = -1 };
	if ((r = image_store_mkdtemp(s, "pull-", &w.path, &w.fd, err)) < 0)
		return r;
	_cleanup_free_ char *rootfs = uk_strf("%s/rootfs", w.path);
	if (!rootfs)
		return uk_err(err, ENOMEM, "out of memory");
	if (mkdir(rootfs, 0700) < 0)
		return uk_err_errno(err, errno, "mkdir %s", rootfs);
	_cleanup_close_ int rootfd = open(rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (rootfd < 0)
		return uk_err_errno(err, errno, "open %s", rootfs);
	_cleanup_(pulled_clear) struct pulled p = { 0 };
	if ((r = pull_blobs(s, c, &img, w.path, rootfd, &p, err)) < 0)
		return r;
	return pull_import(s, &img, full, tag_ref, repo_digest, rootfs, &p, ret, err);
}
