/* Priming the kernel's cgroup migration lock (cgroup.h, cg_prime).
 *
 * A write to cgroup.procs takes cgroup_threadgroup_rwsem for writing. That percpu rwsem
 * keeps readers on a fast path until a writer comes; the first writer after a quiet spell
 * waits for an RCU grace period (rcu_sync_enter → synchronize_rcu: 3–20 ms on the test
 * machine), and writers within about one grace period after it do not. A VM's join is such a
 * first writer, on the start's critical path. A thread of ours writes our own pid to the
 * cgroup we are already in (a migration to where we are: nothing moves) as soon as a start
 * begins, so that the grace period passes while the start does its other work. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../common/util.h"
#include "cgroup.h"

static bool has_controller(const char *list, size_t len, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = list, *end = list + len; p < end;) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		size_t l = comma ? (size_t)(comma - p) : (size_t)(end - p);
		if (l == n && memcmp(p, name, n) == 0)
			return true;
		p += l + 1;
	}
	return false;
}

/* A path read from the kernel, but never a way out of the mount: no "." or ".."
 * component, no control character. */
static bool path_is_plain(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return false;
	for (size_t i = 0; i < len;) {
		size_t j = i + 1;
		while (j < len && p[j] != '/')
			j++;
		size_t l = j - i - 1; /* the component after the '/' at i */
		if ((l == 1 && p[i + 1] == '.') || (l == 2 && p[i + 1] == '.' && p[i + 2] == '.'))
			return false;
		i = j;
	}
	return true;
}

int cg_own_procs_file(const struct cg_system *s, const char *self_cgroup, char *out, size_t len)
{
	const char *mount = s->version == CG_V2 ? s->root : s->version == CG_V1 ? s->memory : NULL;
	if (!mount || !self_cgroup)
		return -ENOENT;
	for (const char *line = self_cgroup; *line;) {
		const char *nl = strchr(line, '\n');
		size_t l = nl ? (size_t)(nl - line) : strlen(line);
		const char *c1 = memchr(line, ':', l);
		const char *c2 = c1 ? memchr(c1 + 1, ':', l - (size_t)(c1 + 1 - line)) : NULL;
		if (c2) {
			const char *ctl = c1 + 1, *path = c2 + 1;
			size_t ctl_len = (size_t)(c2 - ctl), path_len = l - (size_t)(path - line);
			bool match = s->version == CG_V2 ? ctl_len == 0 && c1 - line == 1 && line[0] == '0'
							 : has_controller(ctl, ctl_len, "memory");
			if (match) {
				if (path_len == 0 || path[0] != '/' || !path_is_plain(path, path_len))
					return -EINVAL;
				/* "/" alone is the root: no double slash in the result */
				int n = snprintf(out, len, "%s%.*s/cgroup.procs", mount,
						 path_len == 1 ? 0 : (int)path_len, path);
				if (n < 0 || (size_t)n >= len)
					return -ENAMETOOLONG;
				return 0;
			}
		}
		if (!nl)
			break;
		line = nl + 1;
	}
	return -ENOENT;
}

static struct {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool pending;
	int state; /* 0: not started; 1: running; -1: cannot run (an optimisation: no error) */
	char file[PATH_MAX];
} primer = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER };

static void *primer_main(void *arg)
{
	(void)arg;
	char pid[24];
	int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	for (;;) {
		pthread_mutex_lock(&primer.lock);
		while (!primer.pending)
			pthread_cond_wait(&primer.wake, &primer.lock);
		primer.pending = false;
		pthread_mutex_unlock(&primer.lock);
		int fd = open(primer.file, O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			/* Only the lock matters: a refusal (a v2 cgroup with controllers enabled
			 * below it) comes after the grace period has started. */
			(void)!write(fd, pid, (size_t)n);
			close(fd);
		}
	}
	return NULL;
}

static int primer_start(const struct cg_system *s)
{
	_cleanup_free_ char *text = NULL;
	if (uk_read_file("/proc/self/cgroup", 64 * 1024, &text, NULL, NULL) < 0 ||
	    cg_own_procs_file(s, text, primer.file, sizeof(primer.file)) < 0)
		return -1;
	sigset_t all, old;
	sigfillset(&all);
	pthread_attr_t attr;
	pthread_t t;
	if (pthread_attr_init(&attr) != 0)
		return -1;
	(void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED); /* valid: cannot fail */
	/* The thread takes no signals: they belong to the daemon's signalfd. */
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int r = pthread_create(&t, &attr, primer_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return r == 0 ? 1 : -1;
}

void cg_prime(const struct cg_system *s)
{
	if (!s || (s->version != CG_V1 && s->version != CG_V2))
		return;
	pthread_mutex_lock(&primer.lock);
	if (primer.state == 0)
		primer.state = primer_start(s);
	if (primer.state > 0) {
		primer.pending = true;
		pthread_cond_signal(&primer.wake);
	}
	pthread_mutex_unlock(&primer.lock);
}
