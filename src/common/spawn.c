/* Starting child processes (spawn.h).
 *
 * The parent checks everything and prepares every fd before the fork; the child follows a
 * plan of plain integers with async-signal-safe calls only. A CLOEXEC error pipe carries a
 * failed step and its errno back to the parent, and closes by itself at a successful exec
 * (or, when held, just before the hold), so the parent learns the outcome of the setup
 * without guessing from an exit status. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "spawn.h"
#include "util.h"

/* From the fork to the exec (or the hold): the child only moves fds and writes small
 * files, so this is a bound for a hung filesystem, not a pace. */
#define SETUP_TIMEOUT_MS 30000

enum step {
	STEP_FDS = 1,
	STEP_SESSION,
	STEP_PGRP,
	STEP_PDEATHSIG,
	STEP_CWD,
	STEP_CGROUP,
	STEP_EXEC,
	STEP_FORK, /* detach: the intermediate child could not fork */
	STEP_NETNS,
};

/* One record on the error pipe; smaller than PIPE_BUF, so written at once. */
struct failure {
	int32_t step;
	int32_t code;  /* errno */
	int32_t index; /* STEP_CGROUP: which file */
};

/* What the child does, prepared by the parent: no allocation or lookup after the fork. */
struct plan {
	const struct uk_spawn_opts *o;
	const char *const *envp;
	int src[3 + UK_SPAWN_MAX_FDS]; /* parent's fds (the caller's or /dev/null) */
	int dst[3 + UK_SPAWN_MAX_FDS]; /* their numbers in the child */
	size_t n;
	int top;      /* the highest dst, at least 2 */
	int keep[3 + UK_SPAWN_MAX_FDS + 2]; /* fds >= 3 kept open, ascending */
	size_t n_keep;
	int err_w;    /* the error pipe's write end */
	int go_r;     /* hold: the go pipe's read end; -1 otherwise */
	pid_t parent; /* for the PR_SET_PDEATHSIG race check */
};

static const char *step_name(int step)
{
	switch (step) {
	case STEP_FDS:
		return "set up its file descriptors";
	case STEP_SESSION:
		return "setsid";
	case STEP_PGRP:
		return "setpgid";
	case STEP_PDEATHSIG:
		return "prctl(PR_SET_PDEATHSIG)";
	case STEP_CWD:
		return "chdir";
	case STEP_CGROUP:
		return "join its cgroup";
	case STEP_EXEC:
		return "execve";
	case STEP_FORK:
		return "fork (detach)";
	case STEP_NETNS:
		return "join its network namespace";
	default:
		return "start";
	}
}

void uk_spawn_opts_init(struct uk_spawn_opts *o, const char *const *argv)
{
	memset(o, 0, sizeof(*o));
	o->argv = argv;
	o->stdin_fd = o->stdout_fd = o->stderr_fd = -1;
	o->vfork = true;
}

/* ---- the child (async-signal-safe only) ---- */

/* The child's code is not instrumented by AddressSanitizer: with vfork it runs on a stack of
 * our memory that ASan does not know, where its bookkeeping before a noreturn call
 * (_exit, execve's failure path) would misread the stack and report false errors. */
#define CHILD_CODE __attribute__((no_sanitize_address))

CHILD_CODE static void report(int fd, int step, int code, int index)
{
	struct failure f = { .step = step, .code = code, .index = index };
	ssize_t n;
	do
		n = write(fd, &f, sizeof(f));
	while (n < 0 && errno == EINTR);
}

CHILD_CODE _noreturn_ static void fail(int err_fd, int step, int index, int status)
{
	report(err_fd, step, errno, index);
	_exit(status);
}

/* Close every fd from `from` up, except keep[0..n) (ascending). */
CHILD_CODE static int close_all_but(unsigned from, const int *keep, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned k = (unsigned)keep[i];
		if (k < from)
			continue;
		if (k > from && close_range(from, k - 1, 0) < 0)
			return -1;
		from = k + 1;
	}
	return close_range(from, ~0u, 0);
}

/* The kernel's struct sigaction for rt_sigaction(2). */
struct kernel_sigaction {
	void (*handler)(int);
	unsigned long flags;
	void (*restorer)(void);
	unsigned long mask;
};

CHILD_CODE static void reset_signals(void)
{
	/* Handlers would be reset by execve anyway, but ignored signals would stay ignored.
	 * The raw system call, because glibc's sigaction refuses its own two real-time signals
	 * (32, 33), which a parent such as make may have ignored. Errors (SIGKILL, SIGSTOP) do
	 * not matter. */
	struct kernel_sigaction dfl = { .handler = SIG_DFL };
	for (int s = 1; s < NSIG; s++)
		(void)syscall(SYS_rt_sigaction, s, &dfl, NULL, sizeof(dfl.mask));
	sigset_t none;
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
}

/* The fd map: every source is first lifted above all targets (and above the two slots that
 * take the error and go pipes), so no dup2 can clobber a source still to be copied. Returns
 * the error pipe's new number; *go is moved too. Exits 127 on failure. */
CHILD_CODE static int map_fds(const struct plan *p, int *go)
{
	int base = p->top + 3, err_fd = p->err_w;
	int lifted[3 + UK_SPAWN_MAX_FDS];
	int e = fcntl(p->err_w, F_DUPFD_CLOEXEC, base);
	if (e < 0)
		fail(p->err_w, STEP_FDS, -1, 127);
	err_fd = e;
	int g = -1;
	if (p->go_r >= 0 && (g = fcntl(p->go_r, F_DUPFD_CLOEXEC, base)) < 0)
		fail(err_fd, STEP_FDS, -1, 127);
	for (size_t i = 0; i < p->n; i++)
		if ((lifted[i] = fcntl(p->src[i], F_DUPFD_CLOEXEC, base)) < 0)
			fail(err_fd, STEP_FDS, -1, 127);
	/* dup2 clears FD_CLOEXEC on the copy: the targets survive the exec. */
	for (size_t i = 0; i < p->n; i++)
		if (dup2(lifted[i], p->dst[i]) < 0)
			fail(err_fd, STEP_FDS, -1, 127);
	/* The two slots right above the targets hold nothing we still need. */
	if (dup3(err_fd, p->top + 1, O_CLOEXEC) < 0)
		fail(err_fd, STEP_FDS, -1, 127);
	err_fd = p->top + 1;
	if (g >= 0 && dup3(g, p->top + 2, O_CLOEXEC) < 0)
		fail(err_fd, STEP_FDS, -1, 127);
	*go = g >= 0 ? p->top + 2 : -1;
	if (close_all_but(3, p->keep, p->n_keep) < 0)
		fail(err_fd, STEP_FDS, -1, 127);
	return err_fd;
}

CHILD_CODE int uk_enter_cgroup_files(const char (*files)[PATH_MAX], size_t n, size_t *failed)
{
	/* Only async-signal-safe calls: getpid, open, write, close. */
	char buf[24];
	size_t len = sizeof(buf);
	unsigned long pid = (unsigned long)getpid();
	buf[--len] = '\n';
	do {
		buf[--len] = (char)('0' + pid % 10);
		pid /= 10;
	} while (pid);
	for (size_t i = 0; i < n; i++) {
		if (failed)
			*failed = i;
		int fd = open(files[i], O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOCTTY); /* a plain file in tests */
		if (fd < 0)
			return -errno;
		ssize_t w;
		do
			w = write(fd, buf + len, sizeof(buf) - len);
		while (w < 0 && errno == EINTR);
		int e = w < 0 ? errno : (size_t)w != sizeof(buf) - len ? EIO : 0;
		close(fd);
		if (e)
			return -e;
	}
	return 0;
}

/* Wait for the go byte; exit 0 without exec'ing when the pipe closes first. */
CHILD_CODE static void hold(int go)
{
	char b;
	ssize_t n;
	do
		n = read(go, &b, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		_exit(0);
	close(go);
}

CHILD_CODE _noreturn_ static void child_run(const struct plan *p)
{
	const struct uk_spawn_opts *o = p->o;
	reset_signals();
	/* Before the fds move: the namespace's fd is one of ours, not the child's. */
	if (o->netns_fd > 2 && setns(o->netns_fd, CLONE_NEWNET) < 0)
		fail(p->err_w, STEP_NETNS, -1, 127);
	int go = -1, err_fd = map_fds(p, &go);
	if (o->new_session && setsid() < 0)
		fail(err_fd, STEP_SESSION, -1, 127);
	if (!o->new_session && o->new_pgrp && setpgid(0, 0) < 0)
		fail(err_fd, STEP_PGRP, -1, 127);
	if (o->pdeathsig) {
		if (prctl(PR_SET_PDEATHSIG, o->pdeathsig) < 0)
			fail(err_fd, STEP_PDEATHSIG, -1, 127);
		/* The parent died before the prctl: the signal will never come. */
		if (getppid() != p->parent)
			_exit(127);
	}
	if (o->cwd && chdir(o->cwd) < 0)
		fail(err_fd, STEP_CWD, -1, 127);
	if (o->hold) {
		/* Setup done: the parent sees EOF. While held only the go pipe stays open. */
		close(err_fd);
		err_fd = -1;
		hold(go);
	}
	/* Held, the cgroups are joined only after the release: a start called off leaves no
	 * process in them, so they can be removed at once. */
	size_t bad = 0;
	int jr = o->n_cgroup_files ? uk_enter_cgroup_files(o->cgroup_files, o->n_cgroup_files, &bad) : 0;
	if (jr < 0) {
		errno = -jr;
		if (err_fd >= 0)
			fail(err_fd, STEP_CGROUP, (int)bad, 126);
		_exit(126);
	}
	execve(o->argv[0], (char *const *)o->argv, (char *const *)p->envp);
	if (err_fd >= 0)
		report(err_fd, STEP_EXEC, errno, -1);
	_exit(127);
}

/* detach: the intermediate child. It forks the real child, reports its pid, and stays until
 * the parent has a pidfd for it (so the real child, our grandchild, cannot be reaped by
 * anyone before that), then exits and the grandchild goes to the reaper. */
CHILD_CODE _noreturn_ static void intermediate_run(const struct plan *p, int pid_w, int ack_r)
{
	/* Our zombie grandchild must stay until the parent has looked at it. */
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	(void)sigaction(SIGCHLD, &dfl, NULL);
	/* _Fork: no atfork handlers, async-signal-safe; this process has one thread. */
	pid_t g = _Fork();
	if (g == 0)
		child_run(p);
	int32_t v = g < 0 ? -errno : (int32_t)g;
	int keep[2] = { pid_w < ack_r ? pid_w : ack_r, pid_w < ack_r ? ack_r : pid_w };
	/* Above all the error pipe: the parent waits for its EOF. */
	(void)close_all_but(0, keep, 2);
	ssize_t n;
	do
		n = write(pid_w, &v, sizeof(v));
	while (n < 0 && errno == EINTR);
	close(pid_w);
	char b;
	do
		n = read(ack_r, &b, 1);
	while (n < 0 && errno == EINTR);
	_exit(0);
}

/* ---- the parent ---- */

static bool fd_valid(int fd)
{
	return fd >= 0 && fcntl(fd, F_GETFD) >= 0;
}

static bool sigchld_ignored(void)
{
	struct sigaction sa;
	if (sigaction(SIGCHLD, NULL, &sa) < 0)
		return false;
	return sa.sa_handler == SIG_IGN || (sa.sa_flags & SA_NOCLDWAIT);
}

static int check_fds(const struct uk_spawn_opts *o, const char *name, uk_error *err)
{
	const int std[3] = { o->stdin_fd, o->stdout_fd, o->stderr_fd };
	for (int i = 0; i < 3; i++)
		if (std[i] != -1 && !fd_valid(std[i]))
			return uk_err(err, EBADF, "spawn %s: fd %d for the child's fd %d is not open", name,
				      std[i], i);
	if (o->n_fds > UK_SPAWN_MAX_FDS)
		return uk_err(err, EINVAL, "spawn %s: %zu fds, more than %d", name, o->n_fds, UK_SPAWN_MAX_FDS);
	if (o->n_fds && !o->fds)
		return uk_err(err, EINVAL, "spawn %s: n_fds without fds", name);
	for (size_t i = 0; i < o->n_fds; i++) {
		const struct uk_spawn_fd *f = &o->fds[i];
		if (f->child_fd < 3 || f->child_fd > UK_SPAWN_MAX_CHILD_FD)
			return uk_err(err, EINVAL, "spawn %s: fds[%zu].child_fd %d is not in [3, %d]", name, i,
				      f->child_fd, UK_SPAWN_MAX_CHILD_FD);
		if (!fd_valid(f->parent_fd))
			return uk_err(err, EBADF, "spawn %s: fds[%zu].parent_fd %d is not open", name, i,
				      f->parent_fd);
		for (size_t j = 0; j < i; j++)
			if (o->fds[j].child_fd == f->child_fd)
				return uk_err(err, EINVAL, "spawn %s: fds[%zu] and fds[%zu] both make fd %d", name,
					      j, i, f->child_fd);
	}
	return 0;
}

static int check_opts(const struct uk_spawn_opts *o, uk_error *err)
{
	if (!o || !o->argv || !o->argv[0])
		return uk_err(err, EINVAL, "spawn: no argv[0]");
	const char *name = o->argv[0];
	if (name[0] != '/')
		return uk_err(err, EINVAL, "spawn %s: argv[0] is not an absolute path", name);
	struct stat st;
	if (stat(name, &st) < 0)
		return uk_err_errno(err, errno, "cannot execute %s", name);
	if (!S_ISREG(st.st_mode))
		return uk_err(err, EACCES, "cannot execute %s: not a regular file", name);
	if (access(name, X_OK) < 0)
		return uk_err_errno(err, errno, "cannot execute %s", name);
	int r = check_fds(o, name, err);
	if (r < 0)
		return r;
	if (o->n_cgroup_files > UK_SPAWN_MAX_CGROUP_FILES || (o->n_cgroup_files && !o->cgroup_files))
		return uk_err(err, EINVAL, "spawn %s: bad cgroup_files (at most %d)", name,
			      UK_SPAWN_MAX_CGROUP_FILES);
	for (size_t i = 0; i < o->n_cgroup_files; i++) {
		const char *f = o->cgroup_files[i];
		if (f[0] != '/' || strnlen(f, PATH_MAX) == PATH_MAX)
			return uk_err(err, EINVAL, "spawn %s: cgroup_files[%zu] is not an absolute path", name, i);
	}
	if (o->pdeathsig < 0 || o->pdeathsig >= NSIG)
		return uk_err(err, EINVAL, "spawn %s: pdeathsig %d is not a signal", name, o->pdeathsig);
	if (o->pdeathsig && o->detach)
		return uk_err(err, EINVAL, "spawn %s: pdeathsig with detach (its parent exits at once)", name);
	if (o->cwd && !o->cwd[0])
		return uk_err(err, EINVAL, "spawn %s: empty cwd", name);
	if (!o->detach && sigchld_ignored())
		return uk_err(err, ECHILD, "spawn %s: SIGCHLD is ignored in this process, so the child "
			      "could not be waited for", name);
	return 0;
}

static void keep_insert(struct plan *p, int fd)
{
	size_t i = p->n_keep++;
	while (i > 0 && p->keep[i - 1] > fd) {
		p->keep[i] = p->keep[i - 1];
		i--;
	}
	p->keep[i] = fd;
}

static void plan_fill(struct plan *p, const struct uk_spawn_opts *o, int devnull, int err_w, int go_r)
{
	static const char *const default_env[] = { UK_SPAWN_DEFAULT_ENV_PATH, "LC_ALL=C", NULL };
	const int std[3] = { o->stdin_fd, o->stdout_fd, o->stderr_fd };
	memset(p, 0, sizeof(*p));
	p->o = o;
	p->envp = o->envp ? o->envp : default_env;
	p->top = 2;
	for (int i = 0; i < 3; i++) {
		p->src[p->n] = std[i] >= 0 ? std[i] : devnull;
		p->dst[p->n++] = i;
	}
	for (size_t i = 0; i < o->n_fds; i++) {
		p->src[p->n] = o->fds[i].parent_fd;
		p->dst[p->n++] = o->fds[i].child_fd;
		if (o->fds[i].child_fd > p->top)
			p->top = o->fds[i].child_fd;
		keep_insert(p, o->fds[i].child_fd);
	}
	keep_insert(p, p->top + 1);
	if (go_r >= 0)
		keep_insert(p, p->top + 2);
	p->err_w = err_w;
	p->go_r = go_r;
	p->parent = getpid();
}

static int64_t now_ms(void)
{
	return (int64_t)(uk_now_mono_ns() / 1000000u);
}

/* Read up to len bytes before the deadline: the count read (less at EOF), or -errno. */
static ssize_t read_until(int fd, void *buf, size_t len, int64_t deadline)
{
	size_t got = 0;
	while (got < len) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r <= 0)
			continue;
		ssize_t n = read(fd, (char *)buf + got, len - got);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static void reap(pid_t pid, int *status)
{
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (status)
		*status = st;
}

/* The fork itself, with every signal blocked across it so no handler of ours runs in the
 * child before its dispositions are reset. */
static pid_t fork_blocked(void)
{
	sigset_t all, old;
	sigfillset(&all);
	(void)pthread_sigmask(SIG_SETMASK, &all, &old); /* valid arguments: cannot fail */
	pid_t pid = fork();
	int e = errno;
	if (pid != 0)
		(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = e;
	return pid;
}

/* The pipes of one start, closed on every path. */
struct start {
	int devnull, err_r, err_w, go_r, go_w, pid_r, pid_w, ack_r, ack_w;
};

static void start_done(struct start *s)
{
	int *fds[] = { &s->devnull, &s->err_r, &s->err_w, &s->go_r, &s->go_w,
		       &s->pid_r, &s->pid_w, &s->ack_r, &s->ack_w };
	for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
		*fds[i] = safe_close(*fds[i]);
}

static int pipe_pair(int *r, int *w)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	*r = p[0];
	*w = p[1];
	return 0;
}

/* A held child waits on a copy of our memory: it cannot borrow it until an exec. */
static bool vforks(const struct uk_spawn_opts *o)
{
	return o->vfork && !o->hold;
}

static int start_open(struct start *s, const struct uk_spawn_opts *o, const char *name, uk_error *err)
{
	s->devnull = open("/dev/null", O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (s->devnull < 0)
		return uk_err_errno(err, errno, "spawn %s: open /dev/null", name);
	int r = pipe_pair(&s->err_r, &s->err_w);
	if (r == 0 && o->hold)
		r = pipe_pair(&s->go_r, &s->go_w);
	if (r == 0 && o->detach && !vforks(o))
		r = pipe_pair(&s->pid_r, &s->pid_w);
	if (r == 0 && o->detach && !vforks(o))
		r = pipe_pair(&s->ack_r, &s->ack_w);
	return r < 0 ? uk_err_errno(err, -r, "spawn %s: pipe", name) : 0;
}

/* After the fork: learn the child's pid (detach: the grandchild's) and the outcome of its
 * setup. Returns 0 or the failure as -errno with *f filled; *pid is set whenever known. */
static int await_setup(struct start *s, bool detach, pid_t forked, pid_t *pid, struct failure *f,
		       int64_t deadline)
{
	*pid = detach ? 0 : forked;
	if (detach) {
		int32_t v = 0;
		ssize_t n = read_until(s->pid_r, &v, sizeof(v), deadline);
		if (n < 0)
			return (int)n;
		if (n != (ssize_t)sizeof(v))
			return -EIO;
		if (v < 0) {
			*f = (struct failure){ .step = STEP_FORK, .code = -v, .index = -1 };
			return v;
		}
		*pid = (pid_t)v;
	}
	ssize_t n = read_until(s->err_r, f, sizeof(*f), deadline);
	if (n < 0)
		return (int)n;
	if (n == 0)
		return 0; /* EOF: exec'd, or held */
	if (n != (ssize_t)sizeof(*f) || f->code <= 0)
		return -EIO;
	return -f->code;
}

static int setup_error(const struct uk_spawn_opts *o, int r, const struct failure *f, uk_error *err)
{
	const char *name = o->argv[0];
	if (r == -ETIMEDOUT)
		return uk_err(err, ETIMEDOUT, "spawn %s: no exec within %d s", name, SETUP_TIMEOUT_MS / 1000);
	if (f->step == STEP_EXEC)
		return uk_err_errno(err, -r, "cannot execute %s", name);
	if (f->step == STEP_CGROUP && f->index >= 0 && (size_t)f->index < o->n_cgroup_files)
		return uk_err_errno(err, -r, "spawn %s: join its cgroup (%s)", name, o->cgroup_files[f->index]);
	if (f->step)
		return uk_err_errno(err, -r, "spawn %s: %s", name, step_name(f->step));
	return uk_err_errno(err, -r, "spawn %s: reading the child's setup status", name);
}

/* Fill *ret for a started child. The child is not reaped before this (ours, or parked
 * under the intermediate process), so its pid cannot have been reused. */
static int child_identify(const char *name, pid_t pid, struct uk_child *ret, uk_error *err)
{
	uint64_t st;
	int r = uk_proc_starttime(pid, &st);
	if (r < 0)
		return uk_err_errno(err, -r, "spawn %s: start time of pid %d", name, (int)pid);
	int fd = uk_pidfd_open_checked(pid, st);
	if (fd < 0)
		return uk_err_errno(err, -fd, "spawn %s: pidfd of pid %d", name, (int)pid);
	ret->pid = pid;
	ret->start_time = st;
	ret->pidfd = fd;
	return 0;
}

/* ---- vfork: the child on our memory until its exec ---- */

/* Each child's stack: it only moves fds and writes small files. */
#define VFORK_STACK (64 * 1024)

struct vfork_run {
	const struct plan *p;
	char *child_stack; /* detach: the top of the grandchild's stack */
	pid_t pid;         /* detach: the grandchild, or -errno of its clone */
	int pidfd;         /* detach: its pidfd, in our fd table (the intermediate shares it) */
};

CHILD_CODE static int vfork_child(void *arg)
{
	child_run(((const struct vfork_run *)arg)->p);
}

/* detach: the intermediate, on our memory and our fd table. It clones the real child, also on
 * our memory, with CLONE_PIDFD, so the pidfd lands in our table; it resumes once that child
 * has exec'd (or failed), and exits: the child passes to the reaper. Our calling thread is
 * stopped (CLONE_VFORK) the whole time, so using its stack-allocated run and its errno is
 * safe. */
CHILD_CODE static int vfork_intermediate(void *arg)
{
	struct vfork_run *v = arg;
	int fd = -1;
	pid_t g = clone(vfork_child, v->child_stack, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, v, &fd);
	v->pid = g < 0 ? -errno : g;
	v->pidfd = fd;
	_exit(0);
}

/* clone() with every signal blocked across it, as fork_blocked. */
static pid_t clone_blocked(int (*fn)(void *), char *stack_top, int flags, void *arg)
{
	sigset_t all, old;
	sigfillset(&all);
	(void)pthread_sigmask(SIG_SETMASK, &all, &old); /* valid arguments: cannot fail */
	pid_t pid = clone(fn, stack_top, flags, arg);
	int e = errno;
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = e;
	return pid;
}

/* Detached: the pid's start time, read while the pidfd says the child has not ended (so
 * the pid was still its own). A child that ended at once may have been reaped by the reaper
 * (and its pid reused) before we looked: it still comes back, with its pidfd, which tells
 * its end, and a start time of 0, which no live process has. Takes pidfd. */
static int child_identify_pidfd(const char *name, pid_t pid, int pidfd, struct uk_child *ret, uk_error *err)
{
	_cleanup_close_ int fd = pidfd;
	uint64_t st = 0;
	int r = uk_proc_starttime(pid, &st);
	if (uk_pidfd_wait(fd, 0)) {
		st = 0;
		r = 0;
	}
	if (r < 0)
		return uk_err_errno(err, -r, "spawn %s: start time of pid %d", name, (int)pid);
	ret->pid = pid;
	ret->start_time = st;
	ret->pidfd = TAKE_FD(fd);
	return 0;
}

/* Clone the child (detach: the intermediate) on a stack of its own; returns once the child
 * has exec'd or failed. *pid and *pidfd are the child's (-1: no pidfd). */
static int vfork_clone(const struct uk_spawn_opts *o, const struct plan *p, pid_t *pid, int *pidfd, uk_error *err)
{
	const char *name = o->argv[0];
	size_t page = (size_t)sysconf(_SC_PAGESIZE), one = VFORK_STACK + page;
	char *stacks = mmap(NULL, 2 * one, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stacks == MAP_FAILED)
		return uk_err_errno(err, errno, "spawn %s: the child's stack", name);
	/* A guard page under each stack; without one an overflow would write into our memory. */
	if (mprotect(stacks, page, PROT_NONE) < 0 || mprotect(stacks + one, page, PROT_NONE) < 0) {
		int e = errno;
		(void)munmap(stacks, 2 * one);
		return uk_err_errno(err, e, "spawn %s: the child's stack guard", name);
	}
	struct vfork_run v = { .p = p, .child_stack = stacks + 2 * one, .pid = 0, .pidfd = -1 };
	pid_t forked = o->detach ? clone_blocked(vfork_intermediate, stacks + one,
						 CLONE_VM | CLONE_VFORK | CLONE_FILES | SIGCHLD, &v)
				 : clone_blocked(vfork_child, stacks + 2 * one, CLONE_VM | CLONE_VFORK | SIGCHLD, &v);
	int e = errno;
	/* Nothing runs on the stacks any more: the children have exec'd, failed or exited. */
	(void)munmap(stacks, 2 * one);
	if (forked < 0)
		return uk_err_errno(err, e, "spawn %s: clone", name);
	*pid = forked;
	*pidfd = -1;
	if (!o->detach)
		return 0;
	reap(forked, NULL);
	if (v.pid < 0)
		return uk_err_errno(err, -v.pid, "spawn %s: %s", name, step_name(STEP_FORK));
	*pid = v.pid;
	*pidfd = v.pidfd;
	return 0;
}

static int spawn_vfork(const struct uk_spawn_opts *o, const struct plan *p, struct start *s, struct uk_child *ret,
		       uk_error *err)
{
	const char *name = o->argv[0];
	pid_t pid = 0;
	int pidfd = -1;
	int r = vfork_clone(o, p, &pid, &pidfd, err);
	s->err_w = safe_close(s->err_w);
	s->go_r = safe_close(s->go_r);
	if (r < 0)
		return r;
	/* The child has exec'd or reported its failed step: the pipe is at EOF or has it. */
	struct failure f = { 0 };
	r = await_setup(s, false, pid, &pid, &f, now_ms() + SETUP_TIMEOUT_MS); /* no pid pipe: known */
	if (r == 0)
		return o->detach ? child_identify_pidfd(name, pid, pidfd, ret, err) : child_identify(name, pid, ret, err);
	r = setup_error(o, r, &f, err);
	if (pidfd >= 0) {
		(void)uk_pidfd_signal(pidfd, SIGKILL); /* it has failed and is ending anyway */
		safe_close(pidfd);
	} else if (!o->detach) {
		(void)kill(pid, SIGKILL); /* not reaped yet: still our child's pid */
		reap(pid, NULL);
	}
	return r;
}

int uk_spawn(const struct uk_spawn_opts *o, struct uk_child *ret, uk_error *err)
{
	*ret = (struct uk_child)UK_CHILD_INIT;
	int r = check_opts(o, err);
	if (r < 0)
		return r;
	const char *name = o->argv[0];
	_cleanup_(start_done) struct start s = { -1, -1, -1, -1, -1, -1, -1, -1, -1 };
	r = start_open(&s, o, name, err);
	if (r < 0)
		return r;
	struct plan p;
	plan_fill(&p, o, s.devnull, s.err_w, s.go_r);
	if (vforks(o)) {
		r = spawn_vfork(o, &p, &s, ret, err);
		if (r < 0)
			*ret = (struct uk_child)UK_CHILD_INIT;
		return r;
	}

	pid_t forked = fork_blocked();
	if (forked < 0)
		return uk_err_errno(err, errno, "spawn %s: fork", name);
	if (forked == 0) {
		if (o->detach)
			intermediate_run(&p, s.pid_w, s.ack_r);
		child_run(&p);
	}
	s.err_w = safe_close(s.err_w);
	s.go_r = safe_close(s.go_r);
	s.pid_w = safe_close(s.pid_w);
	s.ack_r = safe_close(s.ack_r);

	pid_t pid = 0;
	struct failure f = { 0 };
	r = await_setup(&s, o->detach, forked, &pid, &f, now_ms() + SETUP_TIMEOUT_MS);
	if (r == 0)
		r = child_identify(name, pid, ret, err);
	else
		r = setup_error(o, r, &f, err);
	if (r < 0 && pid > 0) {
		/* Not reaped yet (ours, or the intermediate's): the pid is still that child's. */
		(void)kill(pid, SIGKILL);
		if (!o->detach)
			reap(pid, NULL);
	}
	if (o->detach) {
		/* Let the intermediate go: the grandchild passes to the reaper. */
		s.ack_w = safe_close(s.ack_w);
		reap(forked, NULL);
	}
	if (r < 0) {
		uk_child_done(ret);
		*ret = (struct uk_child)UK_CHILD_INIT;
		return r;
	}
	ret->go_fd = TAKE_FD(s.go_w);
	return 0;
}

/* write() that neither raises SIGPIPE nor loses one meant for someone else: SIGPIPE is
 * blocked for this thread around the write, and a SIGPIPE the write raised is consumed. */
static ssize_t write_nosigpipe(int fd, const void *buf, size_t len)
{
	sigset_t pipe_set, old, pending;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	(void)pthread_sigmask(SIG_BLOCK, &pipe_set, &old); /* valid arguments: cannot fail */
	bool was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
	ssize_t n = write(fd, buf, len);
	int e = errno;
	if (n < 0 && e == EPIPE && !was_pending) {
		const struct timespec zero = { 0, 0 };
		while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
			;
	}
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = e;
	return n;
}

int uk_spawn_release(struct uk_child *c, uk_error *err)
{
	if (c->go_fd < 0)
		return uk_err(err, EINVAL, "release pid %d: not held", (int)c->pid);
	ssize_t n;
	do
		n = write_nosigpipe(c->go_fd, "g", 1);
	while (n < 0 && errno == EINTR);
	int e = n == 1 ? 0 : n < 0 ? errno : EIO;
	c->go_fd = safe_close(c->go_fd);
	if (e == EPIPE)
		return uk_err(err, ESRCH, "release pid %d: it ended while held", (int)c->pid);
	return e ? uk_err_errno(err, e, "release pid %d", (int)c->pid) : 0;
}

void uk_child_done(struct uk_child *c)
{
	if (!c)
		return;
	c->pidfd = safe_close(c->pidfd);
	c->go_fd = safe_close(c->go_fd);
}

/* ---- uk_run ---- */

void uk_run_result_done(struct uk_run_result *r)
{
	if (!r)
		return;
	free(r->out);
	r->out = NULL;
	r->out_len = 0;
}

/* The parent's ends of the child's pipes and what flows through them. */
struct run_io {
	const char *name;
	int in_w, out_r, err_r;
	const char *in;
	size_t in_len, in_off;
	char *out;
	size_t out_len, out_cap, out_max;
	bool oversize;
	int poll_errno;
	char tail[UK_SPAWN_TAIL_MAX];
	size_t tail_len;
};

static void run_io_done(struct run_io *io)
{
	io->in_w = safe_close(io->in_w);
	io->out_r = safe_close(io->out_r);
	io->err_r = safe_close(io->err_r);
	free(io->out);
	io->out = NULL;
}

void uk_tail_append(char *buf, size_t cap, size_t *len, const char *p, size_t n)
{
	if (n >= cap) {
		memcpy(buf, p + n - cap, cap);
		*len = cap;
		return;
	}
	if (*len + n > cap) {
		size_t drop = *len + n - cap;
		memmove(buf, buf + drop, *len - drop);
		*len -= drop;
	}
	memcpy(buf + *len, p, n);
	*len += n;
}

void uk_spawn_tail_line(const char *buf, size_t len, char out[UK_SPAWN_TAIL_MAX + 1])
{
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
			   buf[len - 1] == '\t'))
		len--;
	/* Backwards, so the last bytes are the ones kept when "; " makes the line longer. */
	size_t o = UK_SPAWN_TAIL_MAX;
	out[o] = '\0';
	bool after_newline = false;
	for (size_t i = len; i > 0 && o > 0; i--) {
		unsigned char c = (unsigned char)buf[i - 1];
		if (c == '\r')
			continue;
		if (c == '\n') {
			if (after_newline)
				continue; /* blank lines add nothing */
			if (o < 2)
				break;
			out[--o] = ' ';
			out[--o] = ';';
			after_newline = true;
			continue;
		}
		after_newline = false;
		out[--o] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	/* A cut inside a UTF-8 sequence: drop its continuation bytes. */
	while (o < UK_SPAWN_TAIL_MAX && ((unsigned char)out[o] & 0xc0) == 0x80)
		o++;
	while (o < UK_SPAWN_TAIL_MAX && (out[o] == ';' || out[o] == ' '))
		o++;
	memmove(out, out + o, UK_SPAWN_TAIL_MAX + 1 - o);
}

/* Feed stdin; EPIPE (the child does not read it all) ends the feeding, it is no error. */
static void io_feed(struct run_io *io)
{
	while (io->in_off < io->in_len) {
		size_t chunk = io->in_len - io->in_off;
		ssize_t n = write_nosigpipe(io->in_w, io->in + io->in_off, chunk > 65536 ? 65536 : chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0)
			break;
		io->in_off += (size_t)n;
	}
	io->in_w = safe_close(io->in_w); /* all given (or refused): the child sees EOF */
}

/* Read what is there; false on a hard error. Sets oversize when stdout passes out_max. */
static bool io_read_out(struct run_io *io)
{
	for (;;) {
		if (io->out_len == io->out_cap) {
			size_t cap = io->out_cap ? io->out_cap * 2 : 4096;
			if (cap > io->out_max + 1)
				cap = io->out_max + 1;
			char *n = realloc(io->out, cap + 1);
			if (!n)
				return false;
			io->out = n;
			io->out_cap = cap;
		}
		ssize_t n = read(io->out_r, io->out + io->out_len, io->out_cap - io->out_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return true;
		if (n <= 0) {
			io->out_r = safe_close(io->out_r);
			return n == 0;
		}
		io->out_len += (size_t)n;
		if (io->out_len > io->out_max) {
			io->oversize = true;
			return true;
		}
	}
}

static void io_read_err(struct run_io *io)
{
	char buf[4096];
	/* Bounded per call: a daemon the child left behind may keep writing. */
	for (int i = 0; i < 64; i++) {
		ssize_t n = read(io->err_r, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			io->err_r = safe_close(io->err_r);
			return;
		}
		uk_tail_append(io->tail, sizeof(io->tail), &io->tail_len, buf, (size_t)n);
	}
}

enum run_end { RUN_EXITED, RUN_TIMEOUT, RUN_OVERSIZE, RUN_NOMEM, RUN_POLL };

/* Move data until the child has ended. Once it has, what it wrote is in the pipes: read
 * that and stop, without waiting for an EOF that a daemon it left behind may never give. */
static enum run_end run_loop(struct run_io *io, int pidfd, int64_t deadline)
{
	for (;;) {
		struct pollfd pfd[4];
		nfds_t n = 0;
		int i_in = -1, i_out = -1, i_err = -1;
		if (io->in_w >= 0)
			pfd[i_in = (int)n++] = (struct pollfd){ .fd = io->in_w, .events = POLLOUT };
		if (io->out_r >= 0)
			pfd[i_out = (int)n++] = (struct pollfd){ .fd = io->out_r, .events = POLLIN };
		if (io->err_r >= 0)
			pfd[i_err = (int)n++] = (struct pollfd){ .fd = io->err_r, .events = POLLIN };
		int i_pid = (int)n;
		pfd[n++] = (struct pollfd){ .fd = pidfd, .events = POLLIN };
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return RUN_TIMEOUT;
		int r = poll(pfd, n, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			io->poll_errno = errno;
			return RUN_POLL;
		}
		bool exited = pfd[i_pid].revents != 0;
		if (i_in >= 0 && pfd[i_in].revents)
			io_feed(io);
		if (io->out_r >= 0 && (exited || (i_out >= 0 && pfd[i_out].revents)) && !io_read_out(io))
			return RUN_NOMEM;
		if (io->oversize)
			return RUN_OVERSIZE;
		if (io->err_r >= 0 && (exited || (i_err >= 0 && pfd[i_err].revents)))
			io_read_err(io);
		if (exited)
			return RUN_EXITED;
	}
}

/* The child's pipes; the parent's ends non-blocking. Returns 0 or -errno. */
static int run_pipes(struct run_io *io, struct uk_spawn_opts *c, bool feed, int fds[3])
{
	int r = 0;
	if (feed && (r = pipe_pair(&fds[0], &io->in_w)) == 0)
		c->stdin_fd = fds[0];
	if (r == 0 && io->out_max > 0 && (r = pipe_pair(&io->out_r, &fds[1])) == 0)
		c->stdout_fd = fds[1];
	else if (r == 0)
		c->stdout_fd = -1;
	if (r == 0 && (r = pipe_pair(&io->err_r, &fds[2])) == 0)
		c->stderr_fd = fds[2];
	if (r == 0 && io->in_w >= 0)
		r = uk_set_nonblock(io->in_w, true);
	if (r == 0 && io->out_r >= 0)
		r = uk_set_nonblock(io->out_r, true);
	if (r == 0)
		r = uk_set_nonblock(io->err_r, true);
	return r;
}

static int run_finish(struct run_io *io, enum run_end end, int timeout_ms, struct uk_run_result *res,
		      uk_error *err)
{
	uk_spawn_tail_line(io->tail, io->tail_len, res->err_tail);
	const char *tail = res->err_tail[0] ? res->err_tail : "(no output)";
	switch (end) {
	case RUN_EXITED:
		break;
	case RUN_TIMEOUT:
		res->timed_out = true;
		return uk_err(err, ETIMEDOUT, "%s did not finish within %d ms: %s", io->name, timeout_ms, tail);
	case RUN_OVERSIZE:
		return uk_err(err, EMSGSIZE, "%s wrote more than %zu bytes", io->name, io->out_max);
	case RUN_NOMEM:
		return uk_err(err, ENOMEM, "%s: out of memory for its output", io->name);
	case RUN_POLL:
		return uk_err_errno(err, io->poll_errno, "%s: poll", io->name);
	}
	if (io->out_max > 0) {
		if (!io->out && !(io->out = malloc(1)))
			return uk_err(err, ENOMEM, "%s: out of memory for its output", io->name);
		io->out[io->out_len] = '\0';
		res->out = TAKE_PTR(io->out);
		res->out_len = io->out_len;
	}
	return 0;
}

int uk_run(const struct uk_spawn_opts *o, const void *in, size_t in_len, size_t out_max, int timeout_ms,
	   struct uk_run_result *res, uk_error *err)
{
	memset(res, 0, sizeof(*res));
	if (!o || !o->argv || !o->argv[0])
		return uk_err(err, EINVAL, "run: no argv[0]");
	const char *name = o->argv[0];
	if (o->detach || o->hold)
		return uk_err(err, EINVAL, "run %s: detach and hold are for uk_spawn", name);
	if (timeout_ms <= 0)
		return uk_err(err, EINVAL, "run %s: timeout %d ms is not positive", name, timeout_ms);
	if (out_max > ((size_t)1 << 30))
		return uk_err(err, EINVAL, "run %s: out_max %zu is over 1 GiB", name, out_max);
	_cleanup_(run_io_done) struct run_io io = { .name = name, .in_w = -1, .out_r = -1, .err_r = -1,
						    .in = in, .in_len = in_len, .out_max = out_max };
	struct uk_spawn_opts c = *o;
	int child_fds[3] = { -1, -1, -1 };
	int r = run_pipes(&io, &c, in != NULL, child_fds);
	_cleanup_(uk_child_done) struct uk_child ch = UK_CHILD_INIT;
	if (r == 0) {
		int64_t deadline = now_ms() + timeout_ms;
		r = uk_spawn(&c, &ch, err);
		for (int i = 0; i < 3; i++)
			safe_close(child_fds[i]);
		if (r < 0)
			return r;
		if (io.in_w >= 0 && io.in_len == 0)
			io.in_w = safe_close(io.in_w);
		enum run_end end = run_loop(&io, ch.pidfd, deadline);
		if (end != RUN_EXITED)
			(void)uk_pidfd_signal(ch.pidfd, SIGKILL); /* ESRCH: it ended just now */
		reap(ch.pid, &res->status);
		return run_finish(&io, end, timeout_ms, res, err);
	}
	for (int i = 0; i < 3; i++)
		safe_close(child_fds[i]);
	return uk_err_errno(err, -r, "run %s: pipes", name);
}

int uk_run_result_check(const struct uk_run_result *res, const char *what, uk_error *err)
{
	const char *tail = res->err_tail[0] ? res->err_tail : "(no output)";
	if (WIFEXITED(res->status) && WEXITSTATUS(res->status) == 0)
		return 0;
	if (WIFEXITED(res->status))
		return uk_err(err, EIO, "%s exited with status %d: %s", what, WEXITSTATUS(res->status), tail);
	if (WIFSIGNALED(res->status))
		return uk_err(err, EIO, "%s killed by signal %d: %s", what, WTERMSIG(res->status), tail);
	return uk_err(err, EIO, "%s ended with wait status %#x: %s", what, (unsigned)res->status, tail);
}
