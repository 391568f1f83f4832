/* qcow2 overlays with qemu-img, started with fork + execve. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "../common/util.h"
#include "overlay.h"

/* Kept bytes of a stream: the last OVERLAY_STDERR_MAX. */
struct tail {
	char buf[OVERLAY_STDERR_MAX];
	size_t len;
};

static void tail_add(struct tail *t, const char *p, size_t n)
{
	if (n >= sizeof(t->buf)) {
		memcpy(t->buf, p + n - sizeof(t->buf), sizeof(t->buf));
		t->len = sizeof(t->buf);
		return;
	}
	if (t->len + n > sizeof(t->buf)) {
		size_t drop = t->len + n - sizeof(t->buf);
		memmove(t->buf, t->buf + drop, t->len - drop);
		t->len -= drop;
	}
	memcpy(t->buf + t->len, p, n);
	t->len += n;
}

/* One line for a message: newlines become "; ", other control characters spaces. */
static void tail_text(const struct tail *t, char *out, size_t outsz)
{
	size_t o = 0, end = t->len;
	while (end > 0 && (t->buf[end - 1] == '\n' || t->buf[end - 1] == '\r' || t->buf[end - 1] == ' '))
		end--;
	for (size_t i = 0; i < end && o + 3 < outsz; i++) {
		unsigned char c = (unsigned char)t->buf[i];
		if (c == '\n') {
			out[o++] = ';';
			out[o++] = ' ';
		} else {
			out[o++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
		}
	}
	out[o] = '\0';
}

static int64_t now_ms(void)
{
	return (int64_t)(uk_now_mono_ns() / 1000000);
}

/* Run argv, wait for it (killing it after the timeout), collect stderr's tail.
 * Returns the wait status or -errno. */
static int run(const char *const argv[], struct tail *err_tail)
{
	static const char *const envp[] = { "PATH=/usr/bin:/bin", "LC_ALL=C", NULL };
	_cleanup_close_ int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0)
		return -errno;
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	_cleanup_close_ int rd = p[0];
	_cleanup_close_ int wr = p[1];

	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* Only async-signal-safe calls from here: the parent may have threads. */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		struct sigaction dfl = { .sa_handler = SIG_DFL };
		sigaction(SIGPIPE, &dfl, NULL);
		if (dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(wr, 2) < 0)
			_exit(127);
		close_range(3, ~0u, 0);
		execve(argv[0], (char *const *)argv, (char *const *)envp);
		static const char msg[] = "execve failed\n";
		ssize_t _unused_ n = write(2, msg, sizeof(msg) - 1);
		_exit(127);
	}
	wr = safe_close(wr);

	int64_t deadline = now_ms() + OVERLAY_TIMEOUT_MS;
	bool timed_out = false;
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0) {
			timed_out = true;
			break;
		}
		struct pollfd pfd = { .fd = rd, .events = POLLIN };
		int n = poll(&pfd, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			timed_out = true; /* cannot wait: treat as stuck */
			break;
		}
		if (n == 0)
			continue;
		char buf[OVERLAY_STDERR_MAX];
		ssize_t got = read(rd, buf, sizeof(buf));
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got <= 0)
			break; /* EOF: the child closed stderr (it exited) */
		tail_add(err_tail, buf, (size_t)got);
	}
	if (timed_out)
		kill(pid, SIGKILL);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return timed_out ? -ETIMEDOUT : status;
}

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
	struct tail t = { .len = 0 };
	int status = run(argv, &t);
	if (status == 0)
		return 0;

	int r;
	char text[OVERLAY_STDERR_MAX + 512];
	tail_text(&t, text, sizeof(text));
	if (status == -ETIMEDOUT)
		r = uk_err(err, ETIMEDOUT, "overlay %s on %s: qemu-img did not finish in %d s",
			   overlay_path, base, OVERLAY_TIMEOUT_MS / 1000);
	else if (status < 0)
		r = uk_err_errno(err, -status, "overlay %s on %s: run %s", overlay_path, base, qemu_img);
	else if (WIFEXITED(status))
		r = uk_err(err, EIO, "overlay %s on %s: qemu-img exited with status %d: %s",
			   overlay_path, base, WEXITSTATUS(status), text[0] ? text : "(no output)");
	else
		r = uk_err(err, EIO, "overlay %s on %s: qemu-img killed by signal %d: %s",
			   overlay_path, base, WIFSIGNALED(status) ? WTERMSIG(status) : 0,
			   text[0] ? text : "(no output)");
	unlink(target);
	return r;
}

int overlay_create(const char *base, const char *base_format, const char *overlay_path,
		   uk_error *err)
{
	return overlay_create_with(OVERLAY_QEMU_IMG, base, base_format, overlay_path, err);
}
