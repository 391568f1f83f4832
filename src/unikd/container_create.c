/* CreateContainer: the container's directory (linked boot files, its disk overlay), then
 * its record. */
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/log.h"
#include "../common/util.h"
#include "../store/overlay.h"
#include "runtime_internal.h"

/* Whether c can be created in its pod now. Lock held. */
static int check_create(struct runtime *rt, struct container *c, uk_error *err)
{
	struct sandbox *s = rt_sandbox_by_id(rt, c->sandbox_id);
	struct container *other;
	if (!s)
		return uk_err(err, ENOENT, "pod sandbox \"%s\" not found", c->sandbox_id);
	if (s->state != SANDBOX_READY)
		return uk_err(err, EBUSY, "pod sandbox %s is not ready (stopped)", s->id);
	if ((other = rt_running_in(rt, s->id, NULL)))
		return uk_err(err, EBUSY,
			      "pod sandbox %s already runs container %s (%s): a pod is one VM, so a second container "
			      "can only be created once the first has exited",
			      s->id, other->id, other->name);
	/* The VM's cgroup must be possible: it is made at start, and a VM never runs without
	 * one while cgroups are usable (limits fail closed). */
	char cg[CG_PATH_MAX];
	uk_error e = { 0 };
	if (rt->cg.version != CG_NONE && cg_path_for(s->cgroup_parent, c->id, cg, sizeof(cg), &e) < 0)
		return uk_err(err, EINVAL, "the pod's cgroup_parent cannot hold the VM's cgroup: %s", e.msg);
	if (!c->reserved_name &&
	    asprintf(&c->reserved_name, "%s_%s_%s_%s_%u", c->name, s->name, s->ns, s->uid, c->attempt) < 0) {
		c->reserved_name = NULL;
		return uk_err(err, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < rt->n_ct; i++)
		if (strcmp(rt->ct[i]->reserved_name, c->reserved_name) == 0)
			return uk_err(err, EEXIST, "container name \"%s\" is reserved for %s", c->reserved_name,
				      rt->ct[i]->id);
	return 0;
}

/* *path (an image blob) becomes a hard link dir/name: constant time, and the data stays
 * while the container does, whatever happens to the image. A store on another file system
 * cannot be linked to; the container then uses the blob itself. */
static int link_image_file(const struct container *c, const char *dir, const char *name, char **path,
			   uk_error *err)
{
	_cleanup_free_ char *dst = NULL;
	if (asprintf(&dst, "%s/%s", dir, name) < 0)
		return uk_err(err, ENOMEM, "out of memory");
	if (link(*path, dst) < 0) {
		if (errno == EXDEV)
			return 0;
		if (errno == ENOENT)
			return uk_err(err, ENOENT, "image %s (%s) was removed while the container was being created",
				      c->image, c->image_ref);
		return uk_err_errno(err, errno, "link %s to %s", *path, dst);
	}
	free(*path);
	*path = TAKE_PTR(dst);
	return 0;
}

static int fsync_path(const char *path, int flags, uk_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | flags);
	if (fd < 0 || fsync(fd) < 0)
		return uk_err_errno(err, errno, "sync %s", path);
	return 0;
}

/* The disk: a qcow2 overlay over the linked base, which QEMU writes (no snapshot=on). */
static int make_overlay(struct container *c, const char *dir, uk_error *err)
{
	_cleanup_free_ char *overlay = NULL, *fmt = strdup("qcow2");
	int r;
	if (asprintf(&overlay, "%s/" RT_CTR_DISK, dir) < 0 || !fmt) {
		overlay = NULL;
		return uk_err(err, ENOMEM, "out of memory");
	}
	if ((r = overlay_create(c->disk, c->disk_format, overlay, err)) < 0 || (r = fsync_path(overlay, 0, err)) < 0)
		return r;
	free(c->disk);
	free(c->disk_format);
	c->disk = TAKE_PTR(overlay);
	c->disk_format = TAKE_PTR(fmt);
	c->disk_snapshot = false;
	return 0;
}

/* The container's directory: its boot files, linked, and its disk. Nothing is left on
 * failure. */
static int make_ctr_dir(struct runtime *rt, struct container *c, uk_error *err)
{
	char dir[PATH_MAX];
	int r;
	if (rt_ctr_dir(rt, c->id, dir, sizeof(dir) - 32) < 0)
		return uk_err(err, ENAMETOOLONG, "state directory path too long");
	if (mkdir(dir, 0700) < 0)
		return uk_err_errno(err, errno, "create %s", dir);
	if ((c->kernel && (r = link_image_file(c, dir, RT_CTR_KERNEL, &c->kernel, err)) < 0) ||
	    (c->initrd && (r = link_image_file(c, dir, RT_CTR_INITRD, &c->initrd, err)) < 0) ||
	    (c->disk && (r = link_image_file(c, dir, RT_CTR_DISK_BASE, &c->disk, err)) < 0) ||
	    (c->disk && (r = make_overlay(c, dir, err)) < 0) ||
	    /* On disk before the record that points here (which syncs the parent directory). */
	    (r = fsync_path(dir, O_DIRECTORY, err)) < 0) {
		(void)uk_rm_rf(dir, NULL); /* a leftover goes at the next start-up */
		return r;
	}
	return 0;
}


int rt_container_create(struct runtime *rt, struct container *c, char *id_out, uk_error *err)
{
	char dir[PATH_MAX] = "";
	int r;
	if ((r = uk_random_hex_id(c->id)) < 0) {
		container_free(c);
		return uk_err_errno(err, -r, "random id");
	}
	c->created_ns = (int64_t)uk_now_realtime_ns();
	c->state = CTR_CREATED;
	/* A StartContainer usually follows at once: its cgroup join finds the grace period of
	 * the kernel's migration lock under way, or passed (cg_prime). */
	cg_prime(&rt->cg);
	/* Check first, so that a refused create costs nothing; the files are made without the
	 * lock (qemu-img runs), and everything is checked again before the record is saved. */
	rt_lock(rt);
	r = check_create(rt, c, err);
	rt_unlock(rt);
	if (r < 0)
		goto fail_unlocked;
	/* The container's directory first, the record last: a crash in between leaves a
	 * directory without a record, which start-up removes. */
	if ((r = make_ctr_dir(rt, c, err)) < 0) {
		(void)uk_err_ctx_r(err, r, "container %s", c->id);
		r = rt_state_full_ctx(rt, r, err);
		goto fail_unlocked;
	}
	(void)rt_ctr_dir(rt, c->id, dir, sizeof(dir)); /* fitted in make_ctr_dir */
	rt_lock(rt);
	if ((r = check_create(rt, c, err)) < 0)
		goto fail;
	if (rt_grow((void **)&rt->ct, &rt->cap_ct, rt->n_ct) < 0) {
		r = uk_err(err, ENOMEM, "out of memory");
		goto fail;
	}
	if ((r = rt_save_container(rt, c, err)) < 0)
		goto fail;
	rt->ct[rt->n_ct++] = c;
	memcpy(id_out, c->id, UK_FULL_ID_LEN + 1);
	rt_unlock(rt);
	log_info("pod=%s ctr=%s msg=\"container created\" name=%s image=%s", c->sandbox_id, c->id, c->reserved_name,
		 c->image_ref);
	return 0;
fail:
	rt_unlock(rt);
fail_unlocked:
	if (*dir)
		(void)uk_rm_rf(dir, NULL); /* a leftover goes at the next start-up */
	container_free(c);
	return r;
}
