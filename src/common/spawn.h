/* Starting child processes: the one fork/exec path of unikd and vmwrapper.
 *
 * Every child gets a fixed environment, a reset signal mask and default dispositions, only
 * the fds it is given (close_range above them), and stdin on /dev/null unless told
 * otherwise. Everything is checked before the fork; between fork and exec the child makes
 * only async-signal-safe calls, because the parent has threads.
 *
 * Two ways to use it:
 *  - uk_run(): run to completion with a deadline (SIGKILL at the deadline), feeding stdin
 *    from a buffer, capturing stdout up to a limit and keeping a bounded tail of stderr.
 *    For qemu-img, dnsmasq's start, `qemu -cpu help`, CNI plugins.
 *  - uk_spawn(): start and hand back the child (pid, start time, pidfd); the caller waits
 *    on the pidfd in its own event loop. For QEMU under vmwrapper, and for vmwrapper
 *    itself (detached: a double fork, so it is never unikd's child; held before exec until
 *    uk_spawn_release()). */
#ifndef UK_SPAWN_H
#define UK_SPAWN_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

#define UK_SPAWN_MAX_FDS 16      /* extra fds a child may be given */
#define UK_SPAWN_MAX_CHILD_FD 1023 /* the highest child_fd */
#define UK_SPAWN_MAX_CGROUP_FILES 8
#define UK_SPAWN_TAIL_MAX 4096   /* bytes of stderr kept by uk_run */
#define UK_SPAWN_DEFAULT_ENV_PATH "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

/* An fd the child gets: child_fd becomes a copy of parent_fd (without O_CLOEXEC). */
struct uk_spawn_fd {
	int parent_fd;
	int child_fd; /* >= 3; 0..2 are set with stdin_fd/stdout_fd/stderr_fd */
};

struct uk_spawn_opts {
	const char *const *argv; /* argv[0]: an absolute path, checked executable before the fork */
	const char *const *envp; /* NULL: { UK_SPAWN_DEFAULT_ENV_PATH, "LC_ALL=C" } */
	/* The child's 0, 1 and 2; -1 means /dev/null. uk_run() replaces stdout and stderr with
	 * its own pipes (and stdin, when it has stdin data). */
	int stdin_fd, stdout_fd, stderr_fd;
	const struct uk_spawn_fd *fds; /* at most UK_SPAWN_MAX_FDS, distinct child_fd numbers */
	size_t n_fds;
	const char *cwd;       /* NULL: unchanged */
	int netns_fd;          /* > 2: the child joins this network namespace (setns) before the
				* rest of its setup; 0 or -1: stays in ours */
	bool new_session;      /* setsid() (which makes a new process group too) */
	bool new_pgrp;         /* setpgid(0, 0) */
	int pdeathsig;         /* PR_SET_PDEATHSIG (0: none); the child exits at once if the
				* parent is already gone. The kernel sends it when the *thread*
				* that called uk_spawn ends, not only the process. Not with detach. */
	/* cgroup.procs files the child writes its pid to before exec (written async-signal-safely), so
	 * the program is born inside its cgroup. A failure exits the child with 126. With hold,
	 * after the release: a held child never keeps a cgroup busy. */
	const char (*cgroup_files)[PATH_MAX];
	size_t n_cgroup_files;
	/* uk_spawn only. detach: double fork, the child is reparented away from us (and is not
	 * ours to reap). hold: the child waits before exec until uk_spawn_release() (one byte on
	 * a pipe) and exits 0 without exec'ing if the pipe closes first, e.g. because we died. */
	bool detach;
	bool hold;
	/* On by default (uk_spawn_opts_init), uk_run's children included; a held child always
	 * forks (it cannot wait on our memory). The child runs on our memory (clone with
	 * CLONE_VM and CLONE_VFORK, as posix_spawn does) until its exec, so no copy of our page
	 * tables is made: forking a large threaded process costs milliseconds of dup_mmap,
	 * copy-on-write faults and, detached, the teardown of the intermediate's copy. The
	 * calling thread waits until the exec. Detached, the pidfd comes from the clone itself
	 * (CLONE_PIDFD), so no ack is needed to keep the pid from being reused. The setup
	 * deadline does not apply: the calling thread is stopped until the exec, so a child stuck
	 * before it (a cwd or a cgroup.procs on a hung file system) holds it. false: fork. A
	 * child that must wait for a go-ahead waits after its exec (vmwrapper's --go-fd). */
	bool vfork;
};

/* Async-signal-safe, for a child between fork and exec: write the calling process's pid to
 * each cgroup.procs file (open, write, close; no allocation), joining those cgroups.
 * Returns 0 or the first -errno, *failed (if not NULL) the index of the file it came from.
 * uk_spawn uses it for cgroup_files; tests that fork a child of their own call it too. */
int uk_enter_cgroup_files(const char (*files)[PATH_MAX], size_t n, size_t *failed);

/* Fill *o with the defaults: stdin/stdout/stderr on /dev/null, vfork, nothing else. */
void uk_spawn_opts_init(struct uk_spawn_opts *o, const char *const *argv);

struct uk_child {
	pid_t pid;
	uint64_t start_time; /* /proc/PID/stat field 22: tells our process from a recycled PID;
			      * 0 for a detached child already ended and reaped when uk_spawn
			      * looked (its pidfd tells that end) */
	int pidfd;           /* O_CLOEXEC; checked against start_time */
	int go_fd;           /* hold only: write end of the go pipe, -1 otherwise */
};
#define UK_CHILD_INIT { .pid = 0, .start_time = 0, .pidfd = -1, .go_fd = -1 }

/* Start the child. On success *ret owns pidfd (and go_fd). A non-detached child is ours to
 * reap (waitid on the pidfd, or waitpid). uk_spawn returns once the child has exec'd (or,
 * with hold, reached the hold): a failure before that, exec's included, is returned here
 * (-ENOENT, -EACCES... with a message naming argv[0]); after a release, an exec failure
 * exits the child with 127. A child that cannot join a cgroup exits 126 and uk_spawn
 * fails (held: after the release, so only the exit status tells). Detached, the pidfd is taken before the child can be reaped, so it is valid even
 * for a child that ended at once.
 *
 * SIGCHLD: a process that ignores SIGCHLD (SIG_IGN or SA_NOCLDWAIT) has its children
 * reaped by the kernel, their status lost and their pid free for reuse at once; uk_spawn
 * and uk_run refuse with -ECHILD there, except with detach (the child is never ours). */
int uk_spawn(const struct uk_spawn_opts *o, struct uk_child *ret, uk_error *err);
/* hold: let the child exec. Closes go_fd. */
int uk_spawn_release(struct uk_child *c, uk_error *err);
/* Close the fds of *c (not the process); for _cleanup_. */
void uk_child_done(struct uk_child *c);

struct uk_run_result {
	int status;       /* the wait status (WIFEXITED/WEXITSTATUS...) */
	bool timed_out;   /* killed at the deadline */
	char *out;        /* stdout, NUL-terminated (malloc'd; NULL when not captured) */
	size_t out_len;
	char err_tail[UK_SPAWN_TAIL_MAX + 1]; /* the last bytes of stderr, one line: newlines
					       * become "; ", control characters spaces */
};
void uk_run_result_done(struct uk_run_result *r); /* frees out; NULL-safe */

/* 0 when res->status is exit 0; else -EIO with "<what> exited with status N: <tail>" (or
 * "killed by signal N"). For callers with no use for other statuses. */
int uk_run_result_check(const struct uk_run_result *res, const char *what, uk_error *err);

/* Append p[0..n) to buf, which keeps the last cap bytes of a stream (*len of them in use):
 * for a caller that reads a child's stderr in its own event loop. */
void uk_tail_append(char *buf, size_t cap, size_t *len, const char *p, size_t n);
/* buf[0..len) as one line of at most UK_SPAWN_TAIL_MAX bytes, keeping its end: trailing
 * blanks dropped, newlines become "; ", other control characters spaces. */
void uk_spawn_tail_line(const char *buf, size_t len, char out[UK_SPAWN_TAIL_MAX + 1]);

/* Run to completion. stdin gets in[0..in_len) (or /dev/null when in is NULL); stdout is
 * captured when out_max > 0 (more than out_max bytes: the child is killed and -EMSGSIZE
 * returned), discarded otherwise; stderr's tail is kept. At timeout_ms the child gets
 * SIGKILL and res->timed_out is set, and -ETIMEDOUT is returned. A child that ran, whatever
 * its status, returns 0: the caller judges res->status. err names argv[0].
 * The child is always reaped before uk_run returns. It is done when it has ended: what it
 * wrote is read then, without waiting for the pipes' EOF, which a daemon it forked may hold
 * (dnsmasq's start). A child that closes stdin early is no error (EPIPE ends the feeding;
 * no SIGPIPE reaches the caller). */
int uk_run(const struct uk_spawn_opts *o, const void *in, size_t in_len, size_t out_max, int timeout_ms,
	   struct uk_run_result *res, uk_error *err);

#endif
