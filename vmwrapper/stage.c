/* File shares staged for 9p (stage.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../src/common/macros.h"
#include "stage.h"

static int mkdir_ok(const char *path, uk_error *err)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return uk_err_errno(err, errno, "create %s", path);
	return 0;
}

static int stage_one(const struct vm_spec *s, unsigned i, uk_error *err)
{
	const struct vm_share *sh = &s->shares[i];
	char dir[PATH_MAX], target[PATH_MAX + 256], src[64];
	int r;
	if (vm_share_export_dir(s, i, dir, sizeof(dir)) < 0)
		return uk_err(err, ENAMETOOLONG, "shares[%u]: staging path too long", i);
	if ((r = mkdir_ok(dir, err)) < 0)
		return r;
	snprintf(target, sizeof(target), "%s/%s", dir, sh->file);
	_cleanup_close_ int t = open(target, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (t < 0)
		return uk_err_errno(err, errno, "shares[%u]: create %s", i, target);
	/* The very file unikd checked, never a symlink swapped in since: bound through its fd. */
	_cleanup_close_ int fd = open(sh->path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return uk_err_errno(err, errno, "shares[%u]: open %s", i, sh->path);
	if (!S_ISREG(st.st_mode))
		return uk_err(err, EINVAL, "shares[%u]: %s is not a regular file", i, sh->path);
	snprintf(src, sizeof(src), "/proc/self/fd/%d", fd);
	if (mount(src, target, NULL, MS_BIND, NULL) < 0)
		return uk_err_errno(err, errno, "shares[%u]: bind %s onto %s", i, sh->path, target);
	if (sh->readonly && mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0)
		return uk_err_errno(err, errno, "shares[%u]: make %s read-only", i, target);
	return 0;
}

int vm_stage_file_shares(const struct vm_spec *s, uk_error *err)
{
	bool any = false;
	for (unsigned i = 0; i < s->n_shares; i++)
		any |= s->shares[i].file != NULL;
	if (!any)
		return 0;
	/* Private: the binds never reach the node's mount table, and none of its mount events
	 * reach ours. */
	if (unshare(CLONE_NEWNS) < 0)
		return uk_err_errno(err, errno, "enter a mount namespace of our own for the file shares");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return uk_err_errno(err, errno, "make our mount namespace private");
	char dir[PATH_MAX];
	int n = snprintf(dir, sizeof(dir), "%s/shares", s->state_dir);
	if (n < 0 || (size_t)n >= sizeof(dir))
		return uk_err(err, ENAMETOOLONG, "state_dir too long");
	int r = mkdir_ok(dir, err);
	for (unsigned i = 0; r >= 0 && i < s->n_shares; i++)
		if (s->shares[i].file)
			r = stage_one(s, i, err);
	return r;
}
