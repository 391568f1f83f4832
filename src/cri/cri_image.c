/* ImageService: the local image store behind the CRI's image calls. */
#include <string.h>

#include "../common/util.h"
#include "../store/image_format.h"
#include "../store/pull.h"
#include "../store/reference.h"
#include "cri.h"
#include "limits.h"

#define MAP_ENTRY_DESC (&runtime__v1__pod_sandbox_config__labels_entry__descriptor)

static char **strv_to_arena(arena *a, char **v, size_t *n)
{
	size_t len = 0;
	while (v && v[len])
		len++;
	char **o = arena_array(a, char *, len);
	for (size_t i = 0; i < len; i++)
		o[i] = arena_strdup(a, v[i]);
	*n = len;
	return o;
}

static Runtime__V1__Image *image_msg(arena *a, const struct image_info *i)
{
	Runtime__V1__Image *m = arena_new0(a, Runtime__V1__Image);
	*m = (Runtime__V1__Image)RUNTIME__V1__IMAGE__INIT;
	m->id = arena_strdup(a, i->id);
	m->repo_tags = strv_to_arena(a, i->repo_tags, &m->n_repo_tags);
	m->repo_digests = strv_to_arena(a, i->repo_digests, &m->n_repo_digests);
	m->size = i->size;
	Runtime__V1__ImageSpec *spec = arena_new0(a, Runtime__V1__ImageSpec);
	*spec = (Runtime__V1__ImageSpec)RUNTIME__V1__IMAGE_SPEC__INIT;
	spec->image = arena_strdup(a, i->id);
	m->spec = spec;
	return m;
}

/* The image a request names, its spec checked against the limits; *ret NULL when none is
 * named, which is -EINVAL "<field>.image is required" when required. */
static int image_name(const Runtime__V1__ImageSpec *s, const char *field, bool required, const char **ret,
		      uk_error *err)
{
	*ret = NULL;
	int r = cri_check_image_spec(s, field, err);
	if (r < 0)
		return r;
	if (s && s->image && *s->image)
		*ret = s->image;
	else if (required)
		return uk_err(err, EINVAL, "%s.image is required", field);
	return 0;
}

CRI_HANDLER(cri_list_images)
{
	struct cri_context *ctx = ud;
	const Runtime__V1__ListImagesRequest *q = (const void *)req;
	_cleanup_image_info_list_ struct image_info **list = NULL;
	size_t n = 0;
	const char *want;
	int r = image_name(q->filter ? q->filter->image : NULL, "filter.image", false, &want, err);
	if (r < 0)
		return r;
	Runtime__V1__ListImagesResponse *resp_ = arena_new0(a, Runtime__V1__ListImagesResponse);
	*resp_ = (Runtime__V1__ListImagesResponse)RUNTIME__V1__LIST_IMAGES_RESPONSE__INIT;
	*resp = (ProtobufCMessage *)resp_;
	if (want) {
		_cleanup_image_info_ struct image_info *i = NULL;
		r = image_store_resolve(ctx->rt->images, want, &i, err);
		if (r == -ENOENT)
			return 0;
		if (r < 0)
			return uk_err_ctx_r(err, r, "filter.image.image");
		resp_->images = arena_array(a, Runtime__V1__Image *, 1);
		resp_->images[resp_->n_images++] = image_msg(a, i);
		return 0;
	}
	if ((r = image_store_list(ctx->rt->images, &list, &n, err)) < 0)
		return r;
	resp_->images = arena_array(a, Runtime__V1__Image *, n);
	for (size_t k = 0; k < n; k++)
		resp_->images[resp_->n_images++] = image_msg(a, list[k]);
	return 0;
}

CRI_HANDLER(cri_image_status)
{
	struct cri_context *ctx = ud;
	const Runtime__V1__ImageStatusRequest *q = (const void *)req;
	const char *want;
	int r = image_name(q->image, "image", true, &want, err);
	if (r < 0)
		return r;
	Runtime__V1__ImageStatusResponse *resp_ = arena_new0(a, Runtime__V1__ImageStatusResponse);
	*resp_ = (Runtime__V1__ImageStatusResponse)RUNTIME__V1__IMAGE_STATUS_RESPONSE__INIT;
	*resp = (ProtobufCMessage *)resp_;
	_cleanup_image_info_ struct image_info *i = NULL;
	r = image_store_resolve(ctx->rt->images, want, &i, err);
	if (r == -ENOENT)
		return 0; /* the CRI: an absent image is an empty answer, not an error */
	if (r < 0)
		return uk_err_ctx_r(err, r, "image.image");
	resp_->image = image_msg(a, i);
	if (q->verbose) {
		_cleanup_json_ json_object *o = json_object_new_object();
		json_object_object_add(o, "kind", json_object_new_string(i->kind ? i->kind : ""));
		if (i->kernel)
			json_object_object_add(o, "kernel", json_object_new_string(i->kernel));
		if (i->initrd)
			json_object_object_add(o, "initrd", json_object_new_string(i->initrd));
		if (i->disk)
			json_object_object_add(o, "disk", json_object_new_string(i->disk));
		if (i->disk_format)
			json_object_object_add(o, "diskFormat", json_object_new_string(i->disk_format));
		json_object_object_add(o, "cmdline", json_object_new_string(i->cmdline ? i->cmdline : ""));
		if (i->not_runnable)
			json_object_object_add(o, "notRunnable", json_object_new_string(i->not_runnable));
		json_object_object_add(o, "createdNs", json_object_new_uint64(i->created_ns));
		if (i->unikernel_type)
			json_object_object_add(o, "unikernelType", json_object_new_string(i->unikernel_type));
		if (i->unikernel_version)
			json_object_object_add(o, "unikernelVersion", json_object_new_string(i->unikernel_version));
		if (!i->not_runnable)
			json_object_object_add(o, "guest", cri_guest_of_image(i));
		_cleanup_json_ json_object *info = json_object_new_object();
		json_object_object_add(info, "info", json_object_new_string(json_object_to_json_string(o)));
		cri_json_to_map(a, info, &resp_->n_info, (void ***)&resp_->info, MAP_ENTRY_DESC);
	}
	return 0;
}

static const char *nonempty(const char *s)
{
	return s && *s ? s : NULL;
}

/* The registry client's errors, as the CRI codes kubelet acts on: a missing image or an
 * unreachable registry is NOT_FOUND/UNAVAILABLE, bad credentials PERMISSION_DENIED, and an
 * image that is broken or hostile INVALID_ARGUMENT (never worth a retry). An image with no
 * bootable layout is pulled all the same: CreateContainer says why it cannot run. */
static int pull_error(uk_error *err, int r)
{
	switch (-r) {
	case EHOSTUNREACH: /* name does not resolve */
		err->code = ENOENT;
		break;
	case ETIMEDOUT: case EPROTO: case EIO: case ECONNRESET:
		err->code = EAGAIN;
		break;
	case EBADMSG: case EPROTONOSUPPORT: case ENOEXEC: case EFBIG: case ENOTSUP: case ELOOP: case EPERM:
	case E2BIG:
		err->code = EINVAL;
		break;
	default:
		break;
	}
	return -err->code;
}

CRI_HANDLER(cri_pull_image)
{
	struct cri_context *ctx = ud;
	const Runtime__V1__PullImageRequest *q = (const void *)req;
	const char *want;
	_cleanup_free_ char *decoded = NULL; /* before any goto: the cleanup runs at scope end */
	_cleanup_image_info_ struct image_info *i = NULL;
	int r = image_name(q->image, "image", true, &want, err);
	if (r < 0)
		return r;
	r = image_store_resolve(ctx->rt->images, want, &i, err);
	/* Local imports are served as they are; ids are not pullable names. Pulled images are
	 * pulled again (cheap when the registry's digest has not changed). */
	_cleanup_image_ref_ struct image_ref ref = { 0 };
	bool pullable = image_ref_parse(want, &ref, NULL) == 0;
	if (r < 0 && r != -ENOENT)
		return uk_err_ctx_r(err, r, "image.image");
	if (r == 0 && (!pullable || (i->kind && strcmp(i->kind, IMAGE_KIND_IMPORT) == 0)))
		goto done;
	if (!pullable)
		return uk_err(err, ENOENT, "image \"%s\" not found", want);
	image_info_free(TAKE_PTR(i));
	const Runtime__V1__AuthConfig *ac = q->auth;
	struct registry_auth auth = { 0 };
	if (ac) {
		auth.username = nonempty(ac->username);
		auth.password = nonempty(ac->password);
		auth.identity_token = nonempty(ac->identity_token);
		auth.registry_token = nonempty(ac->registry_token);
		/* "auth" is base64("user:password"), as in a docker config (crictl --auth). */
		if (!auth.username && nonempty(ac->auth)) {
			char *colon;
			if (image_base64_decode(ac->auth, &decoded) < 0 || !(colon = strchr(decoded, ':')))
				return uk_err(err, EINVAL, "auth.auth must be base64 of \"user:password\"");
			*colon = '\0';
			auth.username = decoded;
			auth.password = colon + 1;
		}
	}
	/* A reload swaps the list (main.c keeps the old ones alive). */
	struct registry_opts o = { .insecure = __atomic_load_n(&ctx->insecure_registries, __ATOMIC_ACQUIRE),
				   .auth = &auth };
	*err = (uk_error){ 0 };
	r = image_store_pull(ctx->rt->images, want, &o, &i, err);
	if (r < 0) {
		(void)uk_err_ctx_r(err, r, "pull %s from its registry", want); /* pull_error keeps r's class */
		return pull_error(err, r);
	}
done:;
	Runtime__V1__PullImageResponse *resp_ = arena_new0(a, Runtime__V1__PullImageResponse);
	*resp_ = (Runtime__V1__PullImageResponse)RUNTIME__V1__PULL_IMAGE_RESPONSE__INIT;
	resp_->image_ref = arena_strdup(a, i->id);
	*resp = (ProtobufCMessage *)resp_;
	return 0;
}

CRI_HANDLER(cri_remove_image)
{
	struct cri_context *ctx = ud;
	const Runtime__V1__RemoveImageRequest *q = (const void *)req;
	const char *want;
	int r = image_name(q->image, "image", true, &want, err);
	if (r < 0)
		return r;
	/* As containerd's CRI: the image goes with all its tags and digests, not just the
	 * reference named (kubelet's image GC names one and expects the space back). */
	_cleanup_image_info_ struct image_info *i = NULL;
	r = image_store_resolve(ctx->rt->images, want, &i, err);
	if (r == -ENOENT)
		r = 0;
	else if (r == 0)
		r = image_store_remove(ctx->rt->images, i->id, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "image.image");
	Runtime__V1__RemoveImageResponse *resp_ = arena_new0(a, Runtime__V1__RemoveImageResponse);
	*resp_ = (Runtime__V1__RemoveImageResponse)RUNTIME__V1__REMOVE_IMAGE_RESPONSE__INIT;
	*resp = (ProtobufCMessage *)resp_;
	return 0;
}

CRI_HANDLER(cri_image_fs_info)
{
	struct cri_context *ctx = ud;
	(void)req;
	uint64_t bytes = 0, inodes = 0;
	int r = image_store_usage(ctx->rt->images, &bytes, &inodes, err);
	if (r < 0)
		return r;
	Runtime__V1__ImageFsInfoResponse *resp_ = arena_new0(a, Runtime__V1__ImageFsInfoResponse);
	*resp_ = (Runtime__V1__ImageFsInfoResponse)RUNTIME__V1__IMAGE_FS_INFO_RESPONSE__INIT;
	Runtime__V1__FilesystemUsage *u = arena_new0(a, Runtime__V1__FilesystemUsage);
	*u = (Runtime__V1__FilesystemUsage)RUNTIME__V1__FILESYSTEM_USAGE__INIT;
	u->timestamp = (int64_t)uk_now_realtime_ns();
	Runtime__V1__FilesystemIdentifier *id = arena_new0(a, Runtime__V1__FilesystemIdentifier);
	*id = (Runtime__V1__FilesystemIdentifier)RUNTIME__V1__FILESYSTEM_IDENTIFIER__INIT;
	id->mountpoint = arena_strdup(a, image_store_root(ctx->rt->images));
	u->fs_id = id;
	Runtime__V1__UInt64Value *ub = arena_new0(a, Runtime__V1__UInt64Value);
	*ub = (Runtime__V1__UInt64Value)RUNTIME__V1__UINT64_VALUE__INIT;
	ub->value = bytes;
	Runtime__V1__UInt64Value *ui = arena_new0(a, Runtime__V1__UInt64Value);
	*ui = (Runtime__V1__UInt64Value)RUNTIME__V1__UINT64_VALUE__INIT;
	ui->value = inodes;
	u->used_bytes = ub;
	u->inodes_used = ui;
	resp_->image_filesystems = arena_array(a, Runtime__V1__FilesystemUsage *, 1);
	resp_->image_filesystems[0] = u;
	resp_->n_image_filesystems = 1;
	*resp = (ProtobufCMessage *)resp_;
	return 0;
}
