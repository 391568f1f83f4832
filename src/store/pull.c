/* image_store_pull: registry -> ROOT/tmp -> rootfs -> image store. See pull.h. */
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/util.h"
#include "image_format.h"
#include "layers.h"
#include "pull.h"
#include "reference.h"

/* The work directory and its lock; removed on every path. */
struct workdir {
	char *path;
	int fd;
};

static void workdir_clear(struct workdir *w)
{
	if (w->path) {
		uk_rm_rf(w->path, NULL);
		free(w->path);
		w->path = NULL;
	}
	w->fd = safe_close(w->fd);
}

static char *strf(const char *fmt, ...) _printf_(1, 2);
static char *strf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	va_start(ap, fmt);
	int r = vasprintf(&s, fmt, ap);
	va_end(ap);
	return r < 0 ? NULL : s;
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
	if (!name || !full || (!iref.digest && !(tag_ref = strf("%s:%s", name, iref.tag))))
		return uk_err(err, ENOMEM, "out of memory");

	_cleanup_registry_client_ registry_client *c = NULL;
	if ((r = registry_client_new(full, o, &c, err)) < 0)
		return r;
	_cleanup_registry_image_ struct registry_image img = { 0 };
	if ((r = registry_client_resolve(c, &img, err)) < 0)
		return r;
	const char *digest = img.index_digest[0] ? img.index_digest : img.manifest_digest;
	_cleanup_free_ char *repo_digest = strf("%s@%s", name, digest);
	if (!repo_digest)
		return uk_err(err, ENOMEM, "out of memory");

	/* Pulled before: point the tag at it, download nothing. */
	if (tag_ref) {
		r = image_store_tag(s, repo_digest, tag_ref, ret, NULL);
		if (r >= 0)
			return 0;
	} else {
		_cleanup_image_info_ struct image_info *have = NULL;
		if (image_store_resolve(s, repo_digest, &have, NULL) >= 0) {
			if (ret)
				*ret = TAKE_PTR(have);
			return 0;
		}
	}

	_cleanup_(workdir_clear) struct workdir w = { .fd = -1 };
	if ((r = image_store_mkdtemp(s, "pull-", &w.path, &w.fd, err)) < 0)
		return r;
	_cleanup_free_ char *rootfs = strf("%s/rootfs", w.path);
	if (!rootfs)
		return uk_err(err, ENOMEM, "out of memory");
	if (mkdir(rootfs, 0700) < 0)
		return uk_err_errno(err, errno, "mkdir %s", rootfs);
	_cleanup_close_ int rootfd = open(rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (rootfd < 0)
		return uk_err_errno(err, errno, "open %s", rootfs);

	/* Layers one at a time: download, unpack, delete, so at most one compressed layer
	 * and the rootfs are on disk at once. */
	for (size_t i = 0; i < img.n_layers; i++) {
		const struct registry_blob *b = &img.layers[i];
		_cleanup_free_ char *lp = strf("%s/layer-%zu", w.path, i);
		if (!lp)
			return uk_err(err, ENOMEM, "out of memory");
		if ((r = registry_client_fetch_blob(c, b, lp, err)) < 0)
			return uk_err_ctx(err, "layer %zu", i);
		r = layers_unpack(lp, b->media_type[0] ? b->media_type : NULL, rootfd, NULL, err);
		unlink(lp);
		if (r < 0)
			return uk_err_ctx(err, "layer %zu (%s)", i, b->digest);
	}

	_cleanup_image_format_ struct image_format f = { 0 };
	if ((r = image_format_detect(img.annotations, img.config, rootfs, &f, err)) < 0)
		return uk_err_ctx(err, "image %s is not runnable by unikd", full);
	if (f.block)
		return uk_err(err, EOPNOTSUPP, "image %s: urunc block devices (com.urunc.unikernel.block) are not supported yet",
			      full);
	struct image_import in = { 0 };
	if (strcmp(f.kind, IMAGE_FORMAT_URUNC) == 0) {
		in.kernel = f.kernel;
		in.initrd = f.initrd;
		in.cmdline = f.cmdline;
	} else {
		in.disk = f.disk;
		in.disk_format = f.disk_format;
	}
	if ((r = image_store_import_ex(s, tag_ref, repo_digest, f.kind, &in, ret, err)) < 0)
		return uk_err_ctx(err, "import %s", full);
	return 0;
}
