/* The console log file, opened without trusting what is at its path; see logfile.h. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "logfile.h"

/* A file that appears between the look and the creation is looked at again, this often. */
#define OPEN_ATTEMPTS 3

static const char *kind_name(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFDIR: return "a directory";
	case S_IFIFO: return "a FIFO";
	case S_IFSOCK: return "a socket";
	case S_IFCHR: return "a character device";
	case S_IFBLK: return "a block device";
	default: return "not a regular file";
	}
}

/* An existing path: look at what it is through an O_PATH fd (which opens nothing), and open
 * that very inode for writing only if it is a regular file. */
static int open_existing(int pfd, const char *path, uk_error *err)
{
	struct stat st;
	if (fstat(pfd, &st) < 0)
		return uk_err_errno(err, errno, "stat %s", path);
	if (S_ISLNK(st.st_mode))
		return uk_err(err, ELOOP, "%s is a symbolic link, which is not followed", path);
	if (!S_ISREG(st.st_mode))
		return uk_err(err, EINVAL, "%s is %s, not a regular file", path, kind_name(st.st_mode));
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
	int fd = open(proc, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return uk_err_errno(err, errno, "open %s", path);
	return fd;
}

int logfile_open(const char *path, uk_error *err)
{
	for (int i = 0; i < OPEN_ATTEMPTS; i++) {
		/* O_NOFOLLOW with O_PATH opens a symbolic link itself, so fstat can name it. */
		_cleanup_close_ int pfd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (pfd >= 0)
			return open_existing(pfd, path, err);
		if (errno != ENOENT)
			return uk_err_errno(err, errno, "open %s", path);
		/* O_EXCL never follows a symbolic link: one made meanwhile is EEXIST, looked at anew. */
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0640);
		if (fd >= 0)
			return fd;
		if (errno != EEXIST)
			return uk_err_errno(err, errno, "create %s", path);
	}
	return uk_err(err, EAGAIN, "%s keeps appearing and disappearing", path);
}
