#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "util.h"

bool uk_id_valid(const char *id)
{
	if (!id || !*id || strlen(id) >= UK_ID_MAX)
		return false;
	if (!((id[0] >= 'a' && id[0] <= 'z') || (id[0] >= 'A' && id[0] <= 'Z') ||
	      (id[0] >= '0' && id[0] <= '9')))
		return false;
	for (const char *p = id; *p; p++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '_' || c == '-' || c == '.';
		if (!ok)
			return false;
	}
	return strstr(id, "..") == NULL;
}

static uint64_t clock_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t uk_now_realtime_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

uint64_t uk_now_mono_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

int uk_set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -errno;
	fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
	return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

int uk_set_cloexec(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFD);
	if (fl < 0)
		return -errno;
	fl = on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC);
	return fcntl(fd, F_SETFD, fl) < 0 ? -errno : 0;
}

int uk_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int uk_read_file(const char *path, size_t max, char **ret, size_t *ret_len, uk_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return uk_err_errno(err, errno, "open %s", path);
	size_t cap = max < 4096 ? max : 4096, len = 0;
	_cleanup_free_ char *buf = malloc(cap + 1);
	if (!buf)
		return uk_err(err, ENOMEM, "out of memory");
	for (;;) {
		if (len == cap && cap < max) {
			size_t ncap = cap * 2 > max ? max : cap * 2;
			char *n = realloc(buf, ncap + 1);
			if (!n)
				return uk_err(err, ENOMEM, "out of memory");
			buf = n;
			cap = ncap;
		}
		/* At the limit, one more byte (into the spare slot) tells EOF from oversize. */
		size_t want = len < cap ? cap - len : 1;
		ssize_t n = read(fd, buf + len, want);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return uk_err_errno(err, errno, "read %s", path);
		}
		if (n == 0)
			break;
		if (len == cap)
			return uk_err(err, EFBIG, "%s is larger than %zu bytes", path, max);
		len += (size_t)n;
	}
	buf[len] = '\0';
	if (ret_len)
		*ret_len = len;
	*ret = TAKE_PTR(buf);
	return 0;
}

static int fsync_parent(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	if (!slash)
		strcpy(dir, ".");
	else if (slash == path)
		strcpy(dir, "/");
	else {
		size_t n = (size_t)(slash - path);
		if (n >= sizeof(dir))
			return -ENAMETOOLONG;
		memcpy(dir, path, n);
		dir[n] = '\0';
	}
	_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	return fsync(dfd) < 0 ? -errno : 0;
}

int uk_fsync_parent(const char *path, uk_error *err)
{
	int r = fsync_parent(path);
	return r < 0 ? uk_err_errno(err, -r, "fsync the directory of %s", path) : 0;
}

int uk_unlink_durable(const char *path, uk_error *err)
{
	if (unlink(path) < 0) {
		if (errno == ENOENT)
			return 0;
		return uk_err_errno(err, errno, "remove %s", path);
	}
	return uk_fsync_parent(path, err);
}

static int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, bool sync_dir,
			     uk_error *err)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return uk_err(err, ENAMETOOLONG, "path too long: %s", path);
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return uk_err_errno(err, errno, "create %s", tmp);
	int r = uk_write_all(fd, data, len);
	if (r < 0 || fsync(fd) < 0) {
		r = r < 0 ? r : -errno;
		(void)unlink(tmp); /* best effort: the write's error is the one to report */
		return uk_err_errno(err, -r, "write %s", tmp);
	}
	if (rename(tmp, path) < 0) {
		r = errno;
		(void)unlink(tmp); /* best effort: the rename's error is the one to report */
		return uk_err_errno(err, r, "rename %s", path);
	}
	r = sync_dir ? fsync_parent(path) : 0;
	if (r < 0)
		return uk_err_errno(err, -r, "fsync directory of %s", path);
	return 0;
}

int uk_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, uk_error *err)
{
	return write_file_atomic(path, data, len, mode, true, err);
}

int uk_write_file_atomic_unsynced_dir(const char *path, const void *data, size_t len, mode_t mode,
				      uk_error *err)
{
	return write_file_atomic(path, data, len, mode, false, err);
}

int uk_mkdir_p(const char *path, mode_t mode, uk_error *err)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return uk_err(err, ENAMETOOLONG, "path too long: %s", path);
	for (char *p = buf + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(buf, mode) < 0 && errno != EEXIST)
				return uk_err_errno(err, errno, "mkdir %s", buf);
			*p = c;
			if (c == '\0')
				break;
		}
	}
	return 0;
}

static int rm_one(const char *fpath, const struct stat *sb, int typeflag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	int r = typeflag == FTW_DP ? rmdir(fpath) : unlink(fpath);
	return (r < 0 && errno != ENOENT) ? -1 : 0;
}

int uk_rm_rf(const char *path, uk_error *err)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return uk_err_errno(err, errno, "stat %s", path);
	}
	if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
		return uk_err_errno(err, errno ? errno : EIO, "remove %s", path);
	return 0;
}

int uk_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	if (!s || !*s)
		return -EINVAL;
	uint64_t v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	if (v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

char *uk_strf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	int r = vasprintf(&s, fmt, ap);
	va_end(ap);
	return r < 0 ? NULL : s;
}

/* A field of /proc/PID/stat: digits (a '-' for the few signed ones), ended by ' ', '\n' or
 * the end. *p moves past it and its separator. */
static int stat_field(const char **p, uint64_t *ret)
{
	const char *s = *p;
	bool neg = *s == '-';
	if (neg)
		s++;
	uint64_t v = 0;
	const char *start = s;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (s == start || (*s != ' ' && *s != '\n' && *s != '\0'))
		return -EINVAL;
	*ret = neg ? 0 : v;
	*p = *s ? s + 1 : s;
	return 0;
}

int uk_proc_stat_parse(const char *text, struct uk_proc_stat *ret)
{
	/* "PID (comm) S f4 f5 ...": the comm is whatever lies between the first '(' and the
	 * last ')'; no later field can hold a ')'. */
	const char *open = text ? strchr(text, '(') : NULL;
	const char *close = text ? strrchr(text, ')') : NULL;
	if (!open || !close || close < open || open == text || open[-1] != ' ')
		return -EINVAL;
	for (const char *q = text; q < open - 1; q++)
		if (*q < '0' || *q > '9')
			return -EINVAL;
	const char *p = close + 1;
	if (p[0] != ' ' || !p[1] || p[2] != ' ')
		return -EINVAL;
	struct uk_proc_stat st = { .state = p[1] };
	p += 3;
	for (int field = 4; field <= 24; field++) {
		uint64_t v;
		if (!*p || stat_field(&p, &v) < 0)
			return -EINVAL;
		switch (field) {
		case 4:
		case 5:
		case 6:
			if (v > INT32_MAX)
				return -EINVAL;
			*(field == 4 ? &st.ppid : field == 5 ? &st.pgrp : &st.session) = (pid_t)v;
			break;
		case 10: st.minflt = v; break;
		case 12: st.majflt = v; break;
		case 14: st.utime = v; break;
		case 15: st.stime = v; break;
		case 22: st.starttime = v; break;
		case 24: st.rss = v; break;
		default: break;
		}
	}
	*ret = st;
	return 0;
}

int uk_proc_stat(pid_t pid, struct uk_proc_stat *ret)
{
	/* 52 fields of at most 20 digits and a comm of at most 64 bytes fit. */
	char path[64], buf[2048];
	if (pid <= 0)
		return -ESRCH;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == ESRCH ? -ESRCH : -errno;
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == sizeof(buf) - 1)
			return -EFBIG;
	}
	buf[len] = '\0';
	return uk_proc_stat_parse(buf, ret);
}

int uk_proc_starttime(pid_t pid, uint64_t *ret)
{
	struct uk_proc_stat st;
	int r = uk_proc_stat(pid, &st);
	if (r < 0)
		return r;
	*ret = st.starttime;
	return 0;
}

int uk_unix_connect(const char *path, uk_error *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int dfd = -1;
	if (strlen(path) < sizeof(sa.sun_path)) {
		strcpy(sa.sun_path, path);
	} else {
		const char *slash = strrchr(path, '/');
		if (!slash || strlen(slash + 1) + 32 >= sizeof(sa.sun_path))
			return uk_err(err, ENAMETOOLONG, "socket path too long: %s", path);
		_cleanup_free_ char *dir = slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
		if (!dir)
			return uk_err(err, ENOMEM, "out of memory");
		dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0)
			return uk_err_errno(err, errno, "open %s", dir);
		snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dfd, slash + 1);
	}
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return uk_err_errno(err, errno, "socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return uk_err_errno(err, errno, "connect %s", path);
	return TAKE_FD(fd);
}

int uk_random_hex_id(char out[65])
{
	unsigned char b[32];
	size_t got = 0;
	while (got < sizeof(b)) {
		ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < sizeof(b); i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[64] = '\0';
	return 0;
}

int uk_pidfd_open(pid_t pid)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	return fd < 0 ? -errno : fd;
}

bool uk_pidfd_wait(int pidfd, int timeout_ms)
{
	if (pidfd < 0)
		return true;
	uint64_t deadline = uk_now_mono_ns() + (uint64_t)timeout_ms * 1000000ull;
	for (;;) {
		uint64_t now = uk_now_mono_ns();
		int left = now >= deadline ? 0 : (int)((deadline - now) / 1000000ull) + 1;
		struct pollfd p = { .fd = pidfd, .events = POLLIN };
		int r = poll(&p, 1, left);
		if (r > 0)
			return true;
		if (r == 0 || errno != EINTR)
			return false;
	}
}

void uk_json_add_str(json_object *o, const char *key, const char *value)
{
	if (value)
		json_object_object_add(o, key, json_object_new_string(value));
}

ssize_t uk_send_fds(int sock, const void *buf, size_t len, const int *fds, size_t n_fds, int flags)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int) * UK_SEND_FDS_MAX)];
		struct cmsghdr align;
	} c;
	if (n_fds > UK_SEND_FDS_MAX) {
		errno = EINVAL;
		return -1;
	}
	if (n_fds > 0) {
		memset(&c, 0, sizeof(c));
		m.msg_control = c.buf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
		struct cmsghdr *h = CMSG_FIRSTHDR(&m);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
		memcpy(CMSG_DATA(h), fds, sizeof(int) * n_fds);
	}
	return sendmsg(sock, &m, flags);
}

static bool is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool uk_mac_parse(const char *s, char out[18])
{
	if (!s || strlen(s) != 17)
		return false;
	for (int i = 0; i < 17; i++) {
		if (i % 3 == 2 ? s[i] != ':' : !is_hex(s[i]))
			return false;
		out[i] = (s[i] >= 'A' && s[i] <= 'F') ? (char)(s[i] - 'A' + 'a') : s[i];
	}
	out[17] = '\0';
	return true;
}

bool uk_proc_alive(pid_t pid, uint64_t starttime)
{
	struct uk_proc_stat st;
	if (uk_proc_stat(pid, &st) < 0 || st.starttime != starttime)
		return false;
	return st.state != 'Z' && st.state != 'X';
}

int uk_pidfd_open_checked(pid_t pid, uint64_t starttime)
{
	if (pid <= 0)
		return -ESRCH;
	int fd = uk_pidfd_open(pid);
	if (fd < 0)
		return fd;
	/* The pidfd pins the process it was opened for: if that one has our start time, the
	 * pidfd is ours, whatever happens to the PID later. A zombie counts: its thread group
	 * may still be exiting (a multithreaded QEMU's leader turns Z before its threads are
	 * gone), and the pidfd becomes readable only once all of it has. */
	uint64_t st;
	if (uk_proc_starttime(pid, &st) < 0 || st != starttime) {
		close(fd);
		return -ESRCH;
	}
	return fd;
}

int uk_pidfd_signal(int pidfd, int sig)
{
	if (pidfd < 0)
		return -EBADF;
	return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

int uk_boot_id(char out[UK_BOOT_ID_LEN + 1], uk_error *err)
{
	static const char path[] = "/proc/sys/kernel/random/boot_id";
	_cleanup_free_ char *text = NULL;
	int r = uk_read_file(path, 128, &text, NULL, err);
	if (r < 0)
		return r;
	size_t n = strcspn(text, "\n");
	if (n != UK_BOOT_ID_LEN)
		return uk_err(err, EIO, "%s: unexpected content", path);
	memcpy(out, text, n);
	out[n] = '\0';
	return 0;
}
