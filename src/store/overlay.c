/* qcow2 overlays with qemu-img, run through uk_run (src/common/spawn.h). */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/spawn.h"
#include "overlay.h"

int overlay_create_with(const char *qemu_img, const char *base, const char *base_format,
			const char *overlay_path, uk_error *err)
{
	if (!qemu_img || qemu_img[0] != '/')
		return uk_err(err, EINVAL, "overlay: qemu-img must be an absolute path");
	if (!overlay_path || !*overlay_path)
		return uk_err(err, EINVAL, "overlay: no path");
	if (!base || base[0] != '/')
		return uk_err(err, EINVAL, "overlay %s: base \"%s\" is not an absolute path",
			      overlay_path, base ? base : "");
	if (!base_format || (strcmp(base_format, "raw") != 0 && strcmp(base_format, "qcow2") != 0))
		return uk_err(err, EINVAL, "overlay %s: base format \"%s\" is not raw or qcow2",
			      overlay_path, base_format ? base_format : "");
	struct stat st;
	if (stat(base, &st) < 0)
		return uk_err_errno(err, errno, "overlay %s: base %s", overlay_path, base);
	if (!S_ISREG(st.st_mode))
		return uk_err(err, EINVAL, "overlay %s: base %s is not a regular file", overlay_path,
			      base);
	if (access(qemu_img, X_OK) < 0)
		return uk_err_errno(err, errno, "overlay %s: %s (Debian package qemu-utils)",
				    overlay_path, qemu_img);

	/* qemu-img would take "x:y" for a protocol: keep a relative path plainly a file. */
	_cleanup_free_ char *target = NULL;
	if (asprintf(&target, "%s%s", overlay_path[0] == '/' ? "" : "./", overlay_path) < 0)
		return uk_err(err, ENOMEM, "overlay %s", overlay_path);

	/* Claim the name first, so an existing file is never overwritten. */
	int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return uk_err_errno(err, errno, "overlay %s", overlay_path);
	close(fd);

	const char *const argv[] = { qemu_img, "create", "-q", "-f", "qcow2", "-F", base_format,
				     "-b", base, target, NULL };
	struct uk_spawn_opts o;
	uk_spawn_opts_init(&o, argv);
	struct uk_run_result res;
	int r = uk_run(&o, NULL, 0, 0, OVERLAY_TIMEOUT_MS, &res, err);
	if (r == 0)
		r = uk_run_result_check(&res, "qemu-img", err);
	uk_run_result_done(&res);
	if (r == 0)
		return 0;
	/* The file claimed above is ours: never leave a half-made overlay behind. */
	(void)unlink(target); /* best effort: the error above is the one to report */
	return uk_err_ctx_r(err, r, "overlay %s on %s", overlay_path, base);
}

int overlay_create(const char *base, const char *base_format, const char *overlay_path,
		   uk_error *err)
{
	return overlay_create_with(OVERLAY_QEMU_IMG, base, base_format, overlay_path, err);
}
