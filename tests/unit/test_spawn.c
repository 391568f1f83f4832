/* Tests for src/common/spawn.c against real programs (/bin/cat, /usr/bin/env, /bin/sleep,
 * /usr/bin/head, /bin/ls, /bin/false...): stdin feeding, stdout limits, the stderr tail,
 * deadlines, exec failures, the fd map, signal resets, sessions, PR_SET_PDEATHSIG, cgroup
 * files, hold and detach. Every test reaps or kills what it starts, and the temp directory
 * goes in teardown. */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "../../src/common/spawn.h"
#include "../../src/common/util.h"

#define LONG_MS 60000 /* a deadline that only a hang reaches */

static const char *const sleep_argv[] = { "/bin/sleep", "100", NULL };

static char g_dir[64];

/* Every test runs twice, once per way of starting the child: vfork (uk_spawn_opts_init's
 * default) and fork. */
static bool g_vfork;

static void opts_init(struct uk_spawn_opts *o, const char *const *argv)
{
	uk_spawn_opts_init(o, argv);
	assert_true(o->vfork); /* the default */
	o->vfork = g_vfork;
}

static int dir_setup(void **state)
{
	(void)state;
	snprintf(g_dir, sizeof(g_dir), "/tmp/uk-test-spawn-XXXXXX");
	return mkdtemp(g_dir) ? 0 : -1;
}

static int dir_teardown(void **state)
{
	(void)state;
	return uk_rm_rf(g_dir, NULL);
}

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

/* Run argv to completion with the default options; returns uk_run's result. */
static int run(const char *const *argv, const char *in, size_t in_len, size_t out_max, int timeout_ms,
	       struct uk_run_result *res, uk_error *err)
{
	struct uk_spawn_opts o;
	opts_init(&o, argv);
	return uk_run(&o, in, in_len, out_max, timeout_ms, res, err);
}

static void make_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	assert_true(fd >= 0);
	assert_int_equal(uk_write_all(fd, text, strlen(text)), 0);
	close(fd);
	assert_int_equal(chmod(path, mode), 0);
}

/* ---- uk_run ---- */

static void exit_statuses(void **state)
{
	(void)state;
	struct uk_run_result res;
	uk_error err = { 0 };
	const char *const t[] = { "/bin/true", NULL };
	assert_int_equal(run(t, NULL, 0, 0, LONG_MS, &res, &err), 0);
	assert_true(WIFEXITED(res.status) && WEXITSTATUS(res.status) == 0);
	assert_null(res.out);
	assert_int_equal(uk_run_result_check(&res, "true", &err), 0);
	uk_run_result_done(&res);

	const char *const f[] = { "/bin/false", NULL };
	assert_int_equal(run(f, NULL, 0, 0, LONG_MS, &res, &err), 0);
	assert_true(WIFEXITED(res.status) && WEXITSTATUS(res.status) == 1);
	assert_int_equal(uk_run_result_check(&res, "false", &err), -EIO);
	assert_string_equal(err.msg, "false exited with status 1: (no output)");
	uk_run_result_done(&res);
}

static void stdin_to_stdout(void **state)
{
	(void)state;
	struct uk_run_result res;
	uk_error err = { 0 };
	const char *const cat[] = { "/bin/cat", NULL };
	assert_int_equal(run(cat, "hello\n", 6, 100, LONG_MS, &res, &err), 0);
	assert_int_equal(res.out_len, 6);
	assert_string_equal(res.out, "hello\n");
	uk_run_result_done(&res);

	/* Far more than a pipe holds, both ways at once: the loop must interleave. */
	size_t n = 3 << 20;
	char *big = malloc(n);
	assert_non_null(big);
	for (size_t i = 0; i < n; i++)
		big[i] = (char)('a' + i % 26);
	assert_int_equal(run(cat, big, n, n, LONG_MS, &res, &err), 0);
	assert_int_equal(res.out_len, n);
	assert_memory_equal(res.out, big, n);
	uk_run_result_done(&res);

	/* Exactly out_max fits; one byte more is an error naming the program. */
	assert_int_equal(run(cat, big, 1000, 1000, LONG_MS, &res, &err), 0);
	uk_run_result_done(&res);
	assert_int_equal(run(cat, big, 1001, 1000, LONG_MS, &res, &err), -EMSGSIZE);
	assert_null(res.out);
	assert_contains(err.msg, "/bin/cat");
	uk_run_result_done(&res);

	/* No input: stdin is /dev/null, and an empty capture is "", not NULL. */
	assert_int_equal(run(cat, NULL, 0, 100, LONG_MS, &res, &err), 0);
	assert_non_null(res.out);
	assert_string_equal(res.out, "");
	uk_run_result_done(&res);
	assert_int_equal(run(cat, "", 0, 100, LONG_MS, &res, &err), 0);
	assert_string_equal(res.out, "");
	uk_run_result_done(&res);
	free(big);
}

/* A child that stops reading: EPIPE ends the feeding, and no SIGPIPE kills us (its
 * disposition is the default here). */
static void stdin_closed_early(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_DFL);
	struct uk_run_result res;
	uk_error err = { 0 };
	size_t n = 4 << 20;
	char *big = calloc(1, n);
	assert_non_null(big);
	big[0] = 'x';
	const char *const head[] = { "/usr/bin/head", "-c", "1", NULL };
	assert_int_equal(run(head, big, n, 10, LONG_MS, &res, &err), 0);
	assert_int_equal(uk_run_result_check(&res, "head", &err), 0);
	assert_string_equal(res.out, "x");
	uk_run_result_done(&res);
	const char *const t[] = { "/bin/true", NULL };
	assert_int_equal(run(t, big, n, 0, LONG_MS, &res, &err), 0);
	uk_run_result_done(&res);
	sigset_t pending;
	sigpending(&pending);
	assert_false(sigismember(&pending, SIGPIPE));
	free(big);
}

static void fixed_environment(void **state)
{
	(void)state;
	setenv("UK_SPAWN_TEST_LEAK", "1", 1);
	struct uk_run_result res;
	uk_error err = { 0 };
	const char *const env[] = { "/usr/bin/env", NULL };
	assert_int_equal(run(env, NULL, 0, 4096, LONG_MS, &res, &err), 0);
	assert_string_equal(res.out, UK_SPAWN_DEFAULT_ENV_PATH "\nLC_ALL=C\n");
	uk_run_result_done(&res);

	const char *const mine[] = { "A=b", NULL };
	struct uk_spawn_opts o;
	opts_init(&o, env);
	o.envp = mine;
	assert_int_equal(uk_run(&o, NULL, 0, 4096, LONG_MS, &res, &err), 0);
	assert_string_equal(res.out, "A=b\n");
	uk_run_result_done(&res);
	unsetenv("UK_SPAWN_TEST_LEAK");
}

static void deadline_kills(void **state)
{
	(void)state;
	struct uk_run_result res;
	uk_error err = { 0 };
	assert_int_equal(run(sleep_argv, NULL, 0, 0, 200, &res, &err), -ETIMEDOUT);
	assert_true(res.timed_out);
	assert_true(WIFSIGNALED(res.status) && WTERMSIG(res.status) == SIGKILL);
	assert_contains(err.msg, "/bin/sleep did not finish within 200 ms");
	uk_run_result_done(&res);
	/* The child was reaped. */
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

static void stderr_tail(void **state)
{
	(void)state;
	struct uk_run_result res;
	uk_error err = { 0 };
	const char *const ls1[] = { "/bin/ls", "/nonexistent-uk", NULL };
	assert_int_equal(run(ls1, NULL, 0, 0, LONG_MS, &res, &err), 0);
	assert_true(WIFEXITED(res.status) && WEXITSTATUS(res.status) != 0);
	assert_contains(res.err_tail, "/nonexistent-uk");
	assert_null(strchr(res.err_tail, '\n'));
	assert_int_equal(uk_run_result_check(&res, "ls", &err), -EIO);
	assert_contains(err.msg, "ls exited with status 2: ");
	assert_contains(err.msg, "nonexistent-uk");
	uk_run_result_done(&res);

	/* Far more stderr than is kept: the last lines stay, as one line. */
	enum { N = 600 };
	static char names[N][32];
	const char *argv[N + 2] = { "/bin/ls" };
	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "/nonexistent-uk-%03d", i);
		argv[i + 1] = names[i];
	}
	argv[N + 1] = NULL;
	assert_int_equal(run(argv, NULL, 0, 0, LONG_MS, &res, &err), 0);
	size_t len = strlen(res.err_tail);
	assert_true(len > UK_SPAWN_TAIL_MAX / 2 && len <= UK_SPAWN_TAIL_MAX);
	assert_contains(res.err_tail, "/nonexistent-uk-599");
	assert_null(strstr(res.err_tail, "/nonexistent-uk-000"));
	for (size_t i = 0; i < len; i++)
		assert_true((unsigned char)res.err_tail[i] >= 0x20);
	uk_run_result_done(&res);
}

static void tail_append(void **state)
{
	(void)state;
	char buf[8];
	size_t len = 0;
	uk_tail_append(buf, sizeof(buf), &len, "abc", 3);
	assert_int_equal(len, 3);
	assert_memory_equal(buf, "abc", 3);
	uk_tail_append(buf, sizeof(buf), &len, "defgh", 5);
	assert_int_equal(len, 8);
	assert_memory_equal(buf, "abcdefgh", 8);
	uk_tail_append(buf, sizeof(buf), &len, "ij", 2);
	assert_memory_equal(buf, "cdefghij", 8);
	uk_tail_append(buf, sizeof(buf), &len, "0123456789", 10);
	assert_int_equal(len, 8);
	assert_memory_equal(buf, "23456789", 8);
	uk_tail_append(buf, sizeof(buf), &len, "", 0);
	assert_memory_equal(buf, "23456789", 8);
}

static void tail_line(void **state)
{
	(void)state;
	char out[UK_SPAWN_TAIL_MAX + 1];
	const struct {
		const char *in, *want;
	} cases[] = {
		{ "", "" },
		{ "\n\n", "" },
		{ "one line\n", "one line" },
		{ "a\nb\n", "a; b" },
		{ "a\r\n\r\n\nb \n", "a; b" },
		{ "tab\there\x1b[1mbold\x7f", "tab here [1mbold " },
		{ "caf\xc3\xa9\n", "caf\xc3\xa9" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uk_spawn_tail_line(cases[i].in, strlen(cases[i].in), out);
		assert_string_equal(out, cases[i].want);
	}
	/* Longer than fits once newlines double: the end is kept, and the line does not
	 * start in the middle of a separator or of a UTF-8 sequence. */
	char in[UK_SPAWN_TAIL_MAX];
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = i % 2 ? '\n' : 'x';
	uk_spawn_tail_line(in, sizeof(in), out);
	assert_true(strlen(out) <= UK_SPAWN_TAIL_MAX);
	assert_int_equal(out[0], 'x');
	assert_int_equal(out[strlen(out) - 1], 'x');
	for (size_t i = 0; i < sizeof(in); i += 2) {
		in[i] = (char)0xc3;
		in[i + 1] = (char)0xa9;
	}
	in[sizeof(in) - 1] = 'z';
	uk_spawn_tail_line(in + 1, sizeof(in) - 1, out);
	assert_int_equal((unsigned char)out[0], 0xc3);
	assert_int_equal(out[strlen(out) - 1], 'z');
}

/* ---- errors before and at exec ---- */

static void exec_failures(void **state)
{
	(void)state;
	struct uk_run_result res;
	uk_error err = { 0 };
	const char *const missing[] = { "/nonexistent/prog", NULL };
	assert_int_equal(run(missing, NULL, 0, 0, LONG_MS, &res, &err), -ENOENT);
	assert_contains(err.msg, "/nonexistent/prog");
	const char *const rel[] = { "cat", NULL };
	assert_int_equal(run(rel, NULL, 0, 0, LONG_MS, &res, &err), -EINVAL);
	assert_contains(err.msg, "cat");
	const char *const dir[] = { "/tmp", NULL };
	assert_int_equal(run(dir, NULL, 0, 0, LONG_MS, &res, &err), -EACCES);
	assert_contains(err.msg, "/tmp");

	char path[128];
	snprintf(path, sizeof(path), "%s/noexec", g_dir);
	make_file(path, "#!/bin/true\n", 0644);
	const char *const noexec[] = { path, NULL };
	assert_int_equal(run(noexec, NULL, 0, 0, LONG_MS, &res, &err), -EACCES);
	assert_contains(err.msg, path);

	/* Passes every check, and execve itself fails: the error comes back over the pipe. */
	snprintf(path, sizeof(path), "%s/garbage", g_dir);
	make_file(path, "\x01\x02 not a program\n", 0755);
	const char *const garbage[] = { path, NULL };
	assert_int_equal(run(garbage, NULL, 0, 0, LONG_MS, &res, &err), -ENOEXEC);
	assert_contains(err.msg, "cannot execute");
	assert_contains(err.msg, path);
	struct uk_child c = UK_CHILD_INIT;
	struct uk_spawn_opts o;
	opts_init(&o, garbage);
	assert_int_equal(uk_spawn(&o, &c, &err), -ENOEXEC);
	assert_int_equal(c.pidfd, -1);
	/* Nothing left to reap. */
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
}

static void bad_options(void **state)
{
	(void)state;
	uk_error err = { 0 };
	struct uk_child c = UK_CHILD_INIT;
	const char *const cat[] = { "/bin/cat", NULL };
	struct uk_spawn_opts o;
	struct uk_spawn_fd fds[UK_SPAWN_MAX_FDS + 1];
	for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
		fds[i] = (struct uk_spawn_fd){ .parent_fd = 0, .child_fd = 3 + (int)i };

	opts_init(&o, cat);
	o.fds = fds;
	o.n_fds = ARRAY_SIZE(fds);
	assert_int_equal(uk_spawn(&o, &c, &err), -EINVAL);
	o.n_fds = 1;
	fds[0].child_fd = 2;
	assert_int_equal(uk_spawn(&o, &c, &err), -EINVAL);
	assert_contains(err.msg, "fds[0].child_fd 2");
	fds[0].child_fd = 3;
	fds[1].child_fd = 3;
	o.n_fds = 2;
	assert_int_equal(uk_spawn(&o, &c, &err), -EINVAL);
	assert_contains(err.msg, "both make fd 3");
	fds[1] = (struct uk_spawn_fd){ .parent_fd = 1000, .child_fd = 4 };
	assert_int_equal(uk_spawn(&o, &c, &err), -EBADF);
	assert_contains(err.msg, "/bin/cat");

	opts_init(&o, cat);
	o.stdout_fd = 999;
	assert_int_equal(uk_spawn(&o, &c, &err), -EBADF);
	opts_init(&o, cat);
	o.detach = true;
	o.pdeathsig = SIGKILL;
	assert_int_equal(uk_spawn(&o, &c, &err), -EINVAL);
	opts_init(&o, cat);
	o.hold = true;
	struct uk_run_result res;
	assert_int_equal(uk_run(&o, NULL, 0, 0, LONG_MS, &res, &err), -EINVAL);
	opts_init(&o, cat);
	assert_int_equal(uk_run(&o, NULL, 0, 0, 0, &res, &err), -EINVAL);
	assert_int_equal(c.pidfd, -1);
}

/* ---- what the child gets ---- */

/* The hex mask of a "Sig...:" line of /proc/self/status text. */
static unsigned long long status_mask(const char *status, const char *key)
{
	const char *p = strstr(status, key);
	assert_non_null(p);
	return strtoull(p + strlen(key), NULL, 16);
}

static void signals_reset(void **state)
{
	(void)state;
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	struct uk_run_result res;
	uk_error err = { 0 };
	const char *const cat[] = { "/bin/cat", "/proc/self/status", NULL };
	int r = run(cat, NULL, 0, 65536, LONG_MS, &res, &err);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	assert_int_equal(r, 0);
	assert_int_equal(status_mask(res.out, "SigBlk:"), 0);
	assert_int_equal(status_mask(res.out, "SigIgn:"), 0);
	uk_run_result_done(&res);
}

/* The fd numbers /proc/self/fd lists in `ls -l` output, with their link targets. */
static bool ls_has(const char *out, int fd, const char *target)
{
	char want[320];
	snprintf(want, sizeof(want), " %d -> %s\n", fd, target);
	return strstr(out, want) != NULL;
}

static void fd_map(void **state)
{
	(void)state;
	char f1[128], f2[128];
	snprintf(f1, sizeof(f1), "%s/f1", g_dir);
	snprintf(f2, sizeof(f2), "%s/f2", g_dir);
	make_file(f1, "", 0644);
	make_file(f2, "", 0644);
	int a = open(f1, O_RDONLY | O_CLOEXEC), b = open(f2, O_RDONLY | O_CLOEXEC);
	assert_true(a >= 0 && b >= 0);
	/* Sources sitting on each other's targets: 20 -> 21 and 21 -> 20. */
	assert_int_equal(dup3(a, 20, O_CLOEXEC), 20);
	assert_int_equal(dup3(b, 21, O_CLOEXEC), 21);
	/* An fd without O_CLOEXEC: close_range must keep it from the child. */
	int leak = dup2(a, 9);
	assert_int_equal(leak, 9);
	close(a);
	close(b);
	const struct uk_spawn_fd fds[] = { { .parent_fd = 20, .child_fd = 21 }, { .parent_fd = 21, .child_fd = 20 } };
	const char *const ls[] = { "/bin/ls", "-l", "/proc/self/fd/", NULL };
	struct uk_spawn_opts o;
	opts_init(&o, ls);
	o.fds = fds;
	o.n_fds = 2;
	struct uk_run_result res;
	uk_error err = { 0 };
	assert_int_equal(uk_run(&o, NULL, 0, 65536, LONG_MS, &res, &err), 0);
	close(20);
	close(21);
	close(9);
	assert_true(ls_has(res.out, 21, f1));
	assert_true(ls_has(res.out, 20, f2));
	assert_true(ls_has(res.out, 0, "/dev/null"));
	/* Nothing else but stdout/stderr (pipes) and ls's own directory fd. */
	int lines = 0;
	for (const char *p = strstr(res.out, " -> "); p; p = strstr(p + 1, " -> "))
		lines++;
	assert_int_equal(lines, 6);
	assert_false(ls_has(res.out, 9, f1));
	uk_run_result_done(&res);
}

/* netns_fd: the child runs in that network namespace (a fresh one made with
 * `ip netns add`, removed at the end, even when an assertion fails first). */
static int netns_teardown(void **state)
{
	(void)state;
	const char *const del[] = { "/usr/bin/ip", "netns", "del", "uk-spawn-test", NULL };
	struct uk_run_result res;
	(void)run(del, NULL, 0, 0, LONG_MS, &res, NULL); /* missing is fine */
	uk_run_result_done(&res);
	return 0;
}

static void netns(void **state)
{
	(void)state;
	struct uk_run_result res;
	uk_error err = { 0 };
	const char *const add[] = { "/usr/bin/ip", "netns", "add", "uk-spawn-test", NULL };
	assert_int_equal(run(add, NULL, 0, 0, LONG_MS, &res, &err), 0);
	assert_true(WIFEXITED(res.status) && WEXITSTATUS(res.status) == 0);
	uk_run_result_done(&res);
	int fd = open("/run/netns/uk-spawn-test", O_RDONLY | O_CLOEXEC);
	assert_true(fd > 2);
	struct stat want;
	assert_int_equal(fstat(fd, &want), 0);
	const char *const readlink_ns[] = { "/usr/bin/readlink", "/proc/self/ns/net", NULL };
	struct uk_spawn_opts o;
	opts_init(&o, readlink_ns);
	o.netns_fd = fd;
	assert_int_equal(uk_run(&o, NULL, 0, 4096, LONG_MS, &res, &err), 0);
	char expect[64];
	snprintf(expect, sizeof(expect), "net:[%llu]\n", (unsigned long long)want.st_ino);
	assert_string_equal(res.out, expect);
	uk_run_result_done(&res);
	close(fd);
}

static void cwd_and_session(void **state)
{
	(void)state;
	struct uk_run_result res;
	uk_error err = { 0 };
	const char *const pwd[] = { "/bin/pwd", NULL };
	struct uk_spawn_opts o;
	opts_init(&o, pwd);
	o.cwd = g_dir;
	assert_int_equal(uk_run(&o, NULL, 0, 4096, LONG_MS, &res, &err), 0);
	char want[128];
	snprintf(want, sizeof(want), "%s\n", g_dir);
	assert_string_equal(res.out, want);
	uk_run_result_done(&res);
	o.cwd = "/nonexistent-uk";
	assert_int_equal(uk_run(&o, NULL, 0, 4096, LONG_MS, &res, &err), -ENOENT);
	assert_contains(err.msg, "/bin/pwd");
	assert_contains(err.msg, "chdir");

	const char *const cat[] = { "/bin/cat", "/proc/self/stat", NULL };
	for (int mode = 0; mode < 3; mode++) {
		opts_init(&o, cat);
		o.new_session = mode == 1;
		o.new_pgrp = mode == 2;
		assert_int_equal(uk_run(&o, NULL, 0, 4096, LONG_MS, &res, &err), 0);
		struct uk_proc_stat st;
		int pid = atoi(res.out);
		assert_int_equal(uk_proc_stat_parse(res.out, &st), 0);
		assert_int_equal(st.ppid, getpid());
		assert_int_equal(st.pgrp == pid, mode != 0);
		assert_int_equal(st.session == pid, mode == 1);
		uk_run_result_done(&res);
	}
}

static int wait_readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, timeout_ms);
}

/* A helper process starts sleep with PR_SET_PDEATHSIG, reports it and ends: the sleep must
 * die with it. */
static void parent_death(void **state)
{
	(void)state;
	int rep[2], go[2];
	assert_int_equal(pipe2(rep, O_CLOEXEC), 0);
	assert_int_equal(pipe2(go, O_CLOEXEC), 0);
	pid_t helper = fork();
	assert_true(helper >= 0);
	if (helper == 0) {
		close(rep[0]);
		close(go[1]);
		struct uk_spawn_opts o;
		opts_init(&o, sleep_argv);
		o.pdeathsig = SIGKILL;
		struct uk_child c = UK_CHILD_INIT;
		uint64_t v[2] = { 0, 0 };
		if (uk_spawn(&o, &c, NULL) == 0) {
			v[0] = (uint64_t)c.pid;
			v[1] = c.start_time;
		}
		(void)!write(rep[1], v, sizeof(v));
		char b;
		(void)!read(go[0], &b, 1);
		_exit(0);
	}
	close(rep[1]);
	close(go[0]);
	uint64_t v[2];
	assert_int_equal(read(rep[0], v, sizeof(v)), (ssize_t)sizeof(v));
	close(rep[0]);
	int pidfd = uk_pidfd_open_checked((pid_t)v[0], v[1]);
	close(go[1]); /* the helper exits */
	int st;
	assert_int_equal(waitpid(helper, &st, 0), helper);
	assert_true(pidfd >= 0);
	/* Killed, not its 100 s: the generous bound only catches a signal that never came. */
	assert_int_equal(wait_readable(pidfd, 30000), 1);
	close(pidfd);
}

static void cgroup_files(void **state)
{
	(void)state;
	uk_error err = { 0 };
	char files[2][PATH_MAX];
	snprintf(files[0], PATH_MAX, "%s/procs-a", g_dir);
	snprintf(files[1], PATH_MAX, "%s/procs-b", g_dir);
	make_file(files[0], "", 0644);
	make_file(files[1], "", 0644);
	const char *const t[] = { "/bin/true", NULL };
	struct uk_spawn_opts o;
	opts_init(&o, t);
	o.cgroup_files = (const char(*)[PATH_MAX])files;
	o.n_cgroup_files = 2;
	struct uk_child c = UK_CHILD_INIT;
	assert_int_equal(uk_spawn(&o, &c, &err), 0);
	char want[32];
	snprintf(want, sizeof(want), "%d\n", (int)c.pid);
	int st;
	assert_int_equal(waitpid(c.pid, &st, 0), c.pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	uk_child_done(&c);
	for (int i = 0; i < 2; i++) {
		char *text = NULL;
		assert_int_equal(uk_read_file(files[i], 64, &text, NULL, &err), 0);
		assert_string_equal(text, want);
		free(text);
	}
	snprintf(files[1], PATH_MAX, "%s/missing/cgroup.procs", g_dir);
	assert_int_equal(uk_spawn(&o, &c, &err), -ENOENT);
	assert_contains(err.msg, "/bin/true");
	assert_contains(err.msg, files[1]);
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);

	/* A real cgroup (v1 pids hierarchy, where this machine has one): born inside it. */
	char cg[128];
	snprintf(cg, sizeof(cg), "/sys/fs/cgroup/pids/uk-test-spawn-%d", (int)getpid());
	assert_int_equal(mkdir(cg, 0755), 0);
	snprintf(files[0], PATH_MAX, "%s/cgroup.procs", cg);
	o.n_cgroup_files = 1;
	const char *const cat[] = { "/bin/cat", "/proc/self/cgroup", NULL };
	o.argv = cat;
	struct uk_run_result res;
	int r = uk_run(&o, NULL, 0, 4096, LONG_MS, &res, &err);
	(void)rmdir(cg); /* before the checks, so a failure leaves nothing behind */
	assert_int_equal(r, 0);
	snprintf(want, sizeof(want), ":pids:/uk-test-spawn-%d\n", (int)getpid());
	assert_contains(res.out, want);
	uk_run_result_done(&res);
}

/* The fds of a process, as a count, from /proc/PID/fd; with kept_only, those its exec keeps
 * (no O_CLOEXEC in fdinfo's octal flags). A count of all of an exec'd child's fds can race
 * its exec: the spawner learns of it when the last write end of its setup pipe closes, while
 * the exec may still be closing its other close-on-exec fds; an fd closed meanwhile is not
 * counted. */
static int count_fds(pid_t pid, bool kept_only)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	assert_non_null(d);
	int n = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		if (!kept_only) {
			n++;
			continue;
		}
		char info[320];
		snprintf(info, sizeof(info), "/proc/%d/fdinfo/%s", (int)pid, e->d_name);
		_cleanup_free_ char *text = NULL;
		if (uk_read_file(info, 4096, &text, NULL, NULL) < 0)
			continue; /* closed meanwhile */
		const char *f = strstr(text, "flags:");
		assert_non_null(f);
		if (!(strtoul(f + strlen("flags:"), NULL, 8) & O_CLOEXEC))
			n++;
	}
	closedir(d);
	return n;
}

/* `env` with its stdout on a new pipe (p[1] for the child, p[0] to read). */
static const char *const env_argv[] = { "/usr/bin/env", NULL };

static void env_to_pipe(struct uk_spawn_opts *o, int p[2])
{
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	opts_init(o, env_argv);
	o->stdout_fd = p[1];
}

static void hold_and_release(void **state)
{
	(void)state;
	uk_error err = { 0 };
	int p[2];
	struct uk_spawn_opts o;
	env_to_pipe(&o, p);
	o.hold = true;
	struct uk_child c = UK_CHILD_INIT;
	assert_int_equal(uk_spawn(&o, &c, &err), 0);
	close(p[1]);
	assert_true(c.go_fd >= 0 && c.pidfd >= 0);
	/* Held: 0, 1, 2 and the go pipe, nothing else. */
	assert_int_equal(count_fds(c.pid, false), 4);
	assert_int_equal(wait_readable(p[0], 0), 0);
	assert_int_equal(uk_spawn_release(&c, &err), 0);
	assert_int_equal(c.go_fd, -1);
	char buf[256] = "";
	ssize_t n = read(p[0], buf, sizeof(buf) - 1);
	assert_true(n > 0);
	assert_contains(buf, "LC_ALL=C");
	int st;
	assert_int_equal(waitpid(c.pid, &st, 0), c.pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	uk_child_done(&c);
	close(p[0]);
	assert_int_equal(uk_spawn_release(&c, &err), -EINVAL);
}

/* `sleep 100`, held and/or detached, started or the test fails. */
static void start_sleep(struct uk_spawn_opts *o, bool hold, bool detach, struct uk_child *c)
{
	uk_error err = { 0 };
	opts_init(o, sleep_argv);
	o->hold = hold;
	o->detach = detach;
	*c = (struct uk_child)UK_CHILD_INIT;
	if (uk_spawn(o, c, &err) < 0)
		fail_msg("%s", err.msg);
}

static void hold_abandoned(void **state)
{
	(void)state;
	uk_error err = { 0 };
	struct uk_spawn_opts o;
	struct uk_child c;
	start_sleep(&o, true, false, &c);
	/* The go pipe closes without a byte: the child ends with 0, sleep never ran. */
	c.go_fd = safe_close(c.go_fd);
	int st;
	assert_int_equal(waitpid(c.pid, &st, 0), c.pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	uk_child_done(&c);

	/* Held, the cgroups are joined after the release: the file is untouched before it, and
	 * a file that went away by then exits the child with 126. */
	char procs[128];
	snprintf(procs, sizeof(procs), "%s/held-procs", g_dir);
	make_file(procs, "", 0644);
	char files[1][PATH_MAX];
	snprintf(files[0], PATH_MAX, "%s", procs);
	const char *const t[] = { "/bin/true", NULL };
	opts_init(&o, t);
	o.hold = true;
	o.cgroup_files = (const char(*)[PATH_MAX])files;
	o.n_cgroup_files = 1;
	assert_int_equal(uk_spawn(&o, &c, &err), 0);
	struct stat sb;
	assert_int_equal(stat(procs, &sb), 0);
	assert_int_equal(sb.st_size, 0);
	assert_int_equal(uk_spawn_release(&c, &err), 0);
	assert_int_equal(waitpid(c.pid, &st, 0), c.pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_true(stat(procs, &sb) == 0 && sb.st_size > 0);
	uk_child_done(&c);
	assert_int_equal(uk_spawn(&o, &c, &err), 0);
	assert_int_equal(unlink(procs), 0);
	assert_int_equal(uk_spawn_release(&c, &err), 0);
	assert_int_equal(waitpid(c.pid, &st, 0), c.pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 126);
	uk_child_done(&c);

	/* Released after the program became unusable: exec fails in the child, status 127. */
	char path[128];
	snprintf(path, sizeof(path), "%s/prog", g_dir);
	make_file(path, "\x01\x02\n", 0755);
	const char *const prog[] = { path, NULL };
	opts_init(&o, prog);
	o.hold = true;
	assert_int_equal(uk_spawn(&o, &c, &err), 0);
	assert_int_equal(uk_spawn_release(&c, &err), 0);
	assert_int_equal(waitpid(c.pid, &st, 0), c.pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 127);
	uk_child_done(&c);
}

static void detach(void **state)
{
	(void)state;
	uk_error err = { 0 };
	struct uk_spawn_opts o;
	struct uk_child c;
	start_sleep(&o, false, true, &c);
	struct uk_proc_stat ps;
	assert_int_equal(uk_proc_stat(c.pid, &ps), 0);
	assert_true(ps.ppid != getpid());
	/* Not ours: nothing to reap, the intermediate process included. */
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
	assert_int_equal(uk_pidfd_signal(c.pidfd, SIGKILL), 0);
	assert_int_equal(wait_readable(c.pidfd, LONG_MS), 1);
	uk_child_done(&c);

	/* A detached child that ends at once still comes with a valid pidfd, and a start time
	 * that is its own or, already reaped (vfork: no intermediate holds it), 0. */
	const char *const t[] = { "/bin/true", NULL };
	o.argv = t;
	assert_int_equal(uk_spawn(&o, &c, &err), 0);
	assert_true(c.pidfd >= 0);
	uint64_t self;
	assert_int_equal(uk_proc_starttime(getpid(), &self), 0);
	assert_true(c.start_time == 0 || c.start_time >= self);
	assert_int_equal(wait_readable(c.pidfd, LONG_MS), 1);
	uk_child_done(&c);

	/* Detached and held, as for vmwrapper; then an exec failure, reported. */
	start_sleep(&o, true, true, &c);
	assert_int_equal(count_fds(c.pid, false), 4);
	assert_int_equal(uk_spawn_release(&c, &err), 0);
	assert_int_equal(uk_pidfd_signal(c.pidfd, SIGKILL), 0);
	assert_int_equal(wait_readable(c.pidfd, LONG_MS), 1);
	uk_child_done(&c);
	char path[128];
	snprintf(path, sizeof(path), "%s/garbage2", g_dir);
	make_file(path, "\x01\x02\n", 0755);
	const char *const garbage[] = { path, NULL };
	o.argv = garbage;
	o.hold = false;
	assert_int_equal(uk_spawn(&o, &c, &err), -ENOEXEC);
	assert_contains(err.msg, path);
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
}

/* vfork: the child runs on our memory until its exec. Everything the fork path does must
 * hold the same: the fd map, the cgroup files, exec failures reported, detach. */
static void vfork_spawns(void **state)
{
	(void)state;
	uk_error err = { 0 };
	int p[2];
	struct uk_spawn_opts o;
	env_to_pipe(&o, p);
	o.vfork = true;
	char procs[128];
	snprintf(procs, sizeof(procs), "%s/vfork-procs", g_dir);
	make_file(procs, "", 0644);
	char files[1][PATH_MAX];
	snprintf(files[0], PATH_MAX, "%s", procs);
	o.cgroup_files = (const char(*)[PATH_MAX])files;
	o.n_cgroup_files = 1;
	struct uk_child c = UK_CHILD_INIT;
	assert_int_equal(uk_spawn(&o, &c, &err), 0);
	close(p[1]);
	char buf[256] = "";
	assert_true(read(p[0], buf, sizeof(buf) - 1) > 0);
	assert_contains(buf, "LC_ALL=C");
	close(p[0]);
	int st;
	assert_int_equal(waitpid(c.pid, &st, 0), c.pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	char pid[32];
	snprintf(pid, sizeof(pid), "%d\n", (int)c.pid);
	_cleanup_free_ char *text = NULL;
	assert_int_equal(uk_read_file(procs, 64, &text, NULL, NULL), 0);
	assert_string_equal(text, pid); /* the child's own pid, written before its exec */
	uk_child_done(&c);

	/* Detached: not our child, a pidfd from the clone itself, our memory untouched. */
	static volatile int canary = 42;
	struct uk_spawn_opts d;
	opts_init(&d, sleep_argv);
	d.vfork = d.detach = true;
	assert_int_equal(uk_spawn(&d, &c, &err), 0);
	struct uk_proc_stat ps;
	assert_int_equal(uk_proc_stat(c.pid, &ps), 0);
	assert_true(ps.ppid != getpid());
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
	assert_int_equal(count_fds(c.pid, true), 3);
	uint64_t st_time;
	assert_int_equal(uk_proc_starttime(c.pid, &st_time), 0);
	assert_true(st_time == c.start_time);
	assert_int_equal(uk_pidfd_signal(c.pidfd, SIGKILL), 0);
	assert_int_equal(wait_readable(c.pidfd, LONG_MS), 1);
	uk_child_done(&c);
	assert_int_equal(canary, 42);

	/* Exec failures come back as before, detached or not, and nothing is left to reap. */
	char path[128];
	snprintf(path, sizeof(path), "%s/garbage3", g_dir);
	make_file(path, "\x01\x02\n", 0755);
	const char *const garbage[] = { path, NULL };
	d.argv = garbage;
	assert_int_equal(uk_spawn(&d, &c, &err), -ENOEXEC);
	assert_contains(err.msg, path);
	assert_int_equal(c.pidfd, -1);
	d.detach = false;
	assert_int_equal(uk_spawn(&d, &c, &err), -ENOEXEC);
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

/* With SIGCHLD ignored a child's status is lost: uk_run and a non-detached uk_spawn say so
 * instead of failing later; detach still works. */
static void sigchld_ignored(void **state)
{
	(void)state;
	uk_error err = { 0 };
	struct sigaction ign = { .sa_handler = SIG_IGN }, old;
	assert_int_equal(sigaction(SIGCHLD, &ign, &old), 0);
	const char *const t[] = { "/bin/true", NULL };
	struct uk_run_result res;
	int r1 = run(t, NULL, 0, 0, LONG_MS, &res, &err);
	struct uk_spawn_opts o;
	opts_init(&o, t);
	o.detach = true;
	struct uk_child c = UK_CHILD_INIT;
	int r2 = uk_spawn(&o, &c, &err);
	int ready = r2 == 0 ? wait_readable(c.pidfd, LONG_MS) : -1;
	uk_child_done(&c);
	assert_int_equal(sigaction(SIGCHLD, &old, NULL), 0);
	assert_int_equal(r1, -ECHILD);
	assert_int_equal(r2, 0);
	assert_int_equal(ready, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(exit_statuses),
		cmocka_unit_test(stdin_to_stdout),
		cmocka_unit_test(stdin_closed_early),
		cmocka_unit_test(fixed_environment),
		cmocka_unit_test(deadline_kills),
		cmocka_unit_test(stderr_tail),
		cmocka_unit_test(tail_append),
		cmocka_unit_test(tail_line),
		cmocka_unit_test(exec_failures),
		cmocka_unit_test(bad_options),
		cmocka_unit_test(signals_reset),
		cmocka_unit_test(fd_map),
		cmocka_unit_test(cwd_and_session),
		cmocka_unit_test_teardown(netns, netns_teardown),
		cmocka_unit_test(parent_death),
		cmocka_unit_test(cgroup_files),
		cmocka_unit_test(hold_and_release),
		cmocka_unit_test(hold_abandoned),
		cmocka_unit_test(detach),
		cmocka_unit_test(vfork_spawns),
		cmocka_unit_test(sigchld_ignored),
	};
	g_vfork = true;
	int failed = cmocka_run_group_tests_name("spawn, vfork", tests, dir_setup, dir_teardown);
	g_vfork = false;
	return failed + cmocka_run_group_tests_name("spawn, fork", tests, dir_setup, dir_teardown);
}
