/* The plugins' processes that outlived the unikd that ran them, or a plugin run that timed
 * out. A plugin killed half-way leaves what its own DEL cannot undo (the bridge plugin deletes
 * eth0 before the masquerade chain it finds through eth0's addresses), and the programs it
 * started (iptables) run on after it. So plugins are not killed with unikd: before start-up
 * undoes or finishes a pod's ADD or DEL, every process that carries the pod's
 * CNI_CONTAINERID in its environment (plugins pass theirs on) may finish within a grace, and
 * is killed after it. One pod's operations never overlap, so any such process is a stray. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/macros.h"
#include "../common/util.h"
#include "cni.h"

#define ENVIRON_MAX (256 * 1024) /* read at most this much of one process's environment */
#define STRAYS_MAX 256           /* processes waited for at a time */
#define STRAYS_ROUNDS 64         /* scans before giving up on a plugin that keeps forking */

bool cni_environ_has_container(const char *env, size_t len, const char *container_id)
{
	char want[128];
	int n = snprintf(want, sizeof(want), "CNI_CONTAINERID=%s", container_id ? container_id : "");
	if (n < 0 || (size_t)n >= sizeof(want) || !container_id || !container_id[0])
		return false;
	for (size_t i = 0; i < len;) {
		const char *e = env + i;
		size_t el = strnlen(e, len - i);
		if (el == (size_t)n && memcmp(e, want, (size_t)n) == 0)
			return true;
		i += el + 1;
	}
	return false;
}

static bool carries(pid_t pid, const char *container_id, char *buf)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	size_t len = 0;
	while (len < ENVIRON_MAX) {
		ssize_t k = read(fd, buf + len, ENVIRON_MAX - len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	return cni_environ_has_container(buf, len, container_id);
}

/* pidfds of the processes that carry the id, up to STRAYS_MAX; their count or -errno. */
static int scan(const char *container_id, char *buf, int *fds, uk_error *err)
{
	_cleanup_closedir_ DIR *d = opendir("/proc");
	struct dirent *de;
	int n = 0;
	if (!d)
		return uk_err_errno(err, errno, "open /proc");
	pid_t self = getpid();
	while ((de = readdir(d)) && n < STRAYS_MAX) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 1 || pid == self)
			continue;
		/* The pidfd first, then the check: a recycled PID fails the check, never the kill. */
		int fd = uk_pidfd_open((pid_t)pid);
		if (fd < 0)
			continue;
		if (carries((pid_t)pid, container_id, buf))
			fds[n++] = fd;
		else
			close(fd);
	}
	return n;
}

static void close_all(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/* Until every one has ended or the deadline: true if all did. */
static bool wait_all(int *fds, int n, uint64_t deadline_ns)
{
	struct pollfd p[STRAYS_MAX];
	for (int i = 0; i < n; i++)
		p[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
	for (;;) {
		int left = 0;
		for (int i = 0; i < n; i++)
			if (p[i].fd >= 0 && !uk_pidfd_wait(p[i].fd, 0))
				left++;
			else
				p[i].fd = -1;
		if (!left)
			return true;
		uint64_t now = uk_now_mono_ns();
		if (now >= deadline_ns)
			return false;
		uint64_t ms = (deadline_ns - now + 999999) / 1000000;
		if (poll(p, (nfds_t)n, ms > INT32_MAX ? INT32_MAX : (int)ms) < 0 && errno != EINTR)
			return false;
	}
}

int cni_stop_strays(const char *container_id, int grace_ms, uk_error *err)
{
	_cleanup_free_ char *buf = malloc(ENVIRON_MAX);
	int fds[STRAYS_MAX], total = 0;
	if (!buf)
		return uk_err(err, ENOMEM, "out of memory");
	uint64_t grace_end = uk_now_mono_ns() + (uint64_t)(grace_ms > 0 ? grace_ms : 0) * 1000000ull;
	/* A plugin that finishes its work leaves everything consistent for DEL: let it, within
	 * the grace. What it starts meanwhile carries the id too, hence the scan again. */
	for (int round = 0; round < STRAYS_ROUNDS; round++) {
		int n = scan(container_id, buf, fds, err);
		if (n <= 0)
			return n < 0 ? n : total;
		total += n;
		bool ended = wait_all(fds, n, grace_end);
		if (!ended) {
			for (int i = 0; i < n; i++)
				(void)uk_pidfd_signal(fds[i], SIGKILL);
			ended = wait_all(fds, n, uk_now_mono_ns() + CNI_STRAYS_WAIT_MS * 1000000ull);
		}
		close_all(fds, n);
		if (!ended)
			return uk_err(err, ETIMEDOUT, "a process of pod %.12s's CNI plugins did not end after SIGKILL",
				      container_id);
	}
	return uk_err(err, EAGAIN, "pod %.12s's CNI plugins kept starting processes", container_id);
}
