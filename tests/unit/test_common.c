/* Unit tests for src/common: id whitelist, number parsing, atomic writes, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "../../src/common/util.h"

static void id_whitelist(void **state)
{
	(void)state;
	const char *good[] = { "a", "vm1", "A.b-c_d", "0123456789abcdef" };
	const char *bad[] = { "", ".", "..", "a/b", "../x", "a..b", "-x", "_x", ".x", "a b", "a\nb", "é" };
	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
		assert_true(uk_id_valid(good[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		if (uk_id_valid(bad[i]))
			fail_msg("\"%s\" accepted", bad[i]);
	assert_false(uk_id_valid(NULL));
	char longid[UK_ID_MAX + 1];
	memset(longid, 'a', sizeof(longid) - 1);
	longid[UK_ID_MAX] = '\0';
	assert_false(uk_id_valid(longid));
	longid[UK_ID_MAX - 1] = '\0';
	assert_true(uk_id_valid(longid));
}

static void parse_numbers(void **state)
{
	(void)state;
	uint64_t v;
	assert_int_equal(uk_parse_u64("42", 0, 100, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(uk_parse_u64("101", 0, 100, &v), -ERANGE);
	assert_int_equal(uk_parse_u64("99999999999999999999999", 0, UINT64_MAX, &v), -ERANGE);
	assert_int_equal(uk_parse_u64("", 0, 100, &v), -EINVAL);
	assert_int_equal(uk_parse_u64("-1", 0, 100, &v), -EINVAL);
	assert_int_equal(uk_parse_u64("12x", 0, 100, &v), -EINVAL);
	assert_int_equal(uk_parse_u64(" 1", 0, 100, &v), -EINVAL);
}

/* The directory goes in teardown, which cmocka runs even when an assertion fails. */
static int tmpdir_setup(void **state)
{
	static char dir[64];
	snprintf(dir, sizeof(dir), "/tmp/uk-test-common-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	*state = dir;
	return 0;
}

static int tmpdir_teardown(void **state)
{
	return uk_rm_rf(*state, NULL);
}

static void atomic_write(void **state)
{
	const char *dir = *state;
	char path[256];
	snprintf(path, sizeof(path), "%s/f.json", dir);
	uk_error err = { 0 };
	assert_int_equal(uk_write_file_atomic(path, "one", 3, 0600, &err), 0);
	assert_int_equal(uk_write_file_atomic(path, "two!", 4, 0600, &err), 0);
	char *data = NULL;
	size_t len = 0;
	assert_int_equal(uk_read_file(path, 100, &data, &len, &err), 0);
	assert_int_equal(len, 4);
	assert_string_equal(data, "two!");
	free(data);
	/* The size limit holds, and a file of exactly the limit fits. */
	assert_int_equal(uk_read_file(path, 2, &data, &len, &err), -EFBIG);
	assert_int_equal(uk_read_file(path, 3, &data, &len, &err), -EFBIG);
	assert_int_equal(uk_read_file(path, 4, &data, &len, &err), 0);
	assert_string_equal(data, "two!");
	free(data);
	/* No temp file stays behind. */
	char sub[300];
	snprintf(sub, sizeof(sub), "%s/a/b/c", dir);
	assert_int_equal(uk_mkdir_p(sub, 0700, &err), 0);
	struct stat st;
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(uk_rm_rf(dir, &err), 0);
	assert_int_equal(stat(dir, &st), -1);
	assert_int_equal(uk_rm_rf(dir, &err), 0); /* missing is fine */
	assert_int_equal(uk_read_file(path, 100, &data, &len, &err), -ENOENT);
	assert_non_null(strstr(err.msg, path));
}

static void error_context(void **state)
{
	(void)state;
	uk_error err = { 0 };
	assert_int_equal(uk_err(&err, EINVAL, "field \"%s\" is bad", "x"), -EINVAL);
	assert_int_equal(uk_err_ctx_r(&err, -EINVAL, "spec %s", "/a.json"), -EINVAL);
	assert_string_equal(err.msg, "spec /a.json: field \"x\" is bad");
	assert_int_equal(uk_err_errno(&err, ENOENT, "open %s", "/x"), -ENOENT);
	assert_string_equal(err.msg, "open /x: No such file or directory");
	assert_int_equal(uk_err(NULL, EPERM, "ignored"), -EPERM);
	/* A callee's code survives its caller's context, with or without an err. */
	assert_int_equal(uk_err(&err, ENOSPC, "write x"), -ENOSPC);
	assert_int_equal(uk_err_ctx_r(&err, -ENOSPC, "save %s", "y"), -ENOSPC);
	assert_string_equal(err.msg, "save y: write x");
	assert_int_equal(err.code, ENOSPC);
	assert_int_equal(uk_err_ctx_r(NULL, -ENOSPC, "save %s", "y"), -ENOSPC);
	assert_int_equal(uk_err_ctx_r(NULL, 0, "no code"), -EIO);
	uk_error fresh = { 0 };
	assert_int_equal(uk_err_ctx_r(&fresh, -EAGAIN, "ctx"), -EAGAIN);
	assert_int_equal(fresh.code, EAGAIN);
	assert_string_equal(fresh.msg, "ctx: ");
}

static void proc_starttime(void **state)
{
	(void)state;
	uint64_t a = 0, b = 0;
	assert_int_equal(uk_proc_starttime(getpid(), &a), 0);
	assert_int_equal(uk_proc_starttime(getpid(), &b), 0);
	assert_true(a > 0);
	assert_int_equal(a, b);
	assert_int_equal(uk_proc_starttime(1, &b), 0);
	assert_true(b <= a);
	assert_int_equal(uk_proc_starttime(0x7ffffff0, &b), -ESRCH);
	assert_int_equal(uk_proc_starttime(0, &b), -ESRCH);
}

/* A real line (kernel 6.x: 52 fields) around a given comm. */
static void stat_line(char *buf, size_t size, const char *comm, const char *tail)
{
	snprintf(buf, size, "4242 (%s) %s", comm, tail);
}

#define STAT_TAIL                                                                                  \
	"S 17 4242 4242 34816 4242 4194560 1234 0 7 0 150 25 0 0 20 0 3 0 987654 12345678 "       \
	"321 18446744073709551615 1 1 0 0 0 0 0 4096 65536 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"

static void proc_stat_parse(void **state)
{
	(void)state;
	char line[1024];
	struct uk_proc_stat st;
	/* Whatever the command name holds, the fields after it are found. */
	const char *comms[] = { "cat", "a b c", "x) S 1 2 (y", ")", "((", "new\nline", "", "tab\there" };
	for (size_t i = 0; i < ARRAY_SIZE(comms); i++) {
		stat_line(line, sizeof(line), comms[i], STAT_TAIL);
		memset(&st, 0xff, sizeof(st));
		if (uk_proc_stat_parse(line, &st) != 0)
			fail_msg("comm \"%s\" not parsed", comms[i]);
		assert_int_equal(st.state, 'S');
		assert_int_equal(st.ppid, 17);
		assert_int_equal(st.pgrp, 4242);
		assert_int_equal(st.session, 4242);
		assert_int_equal(st.minflt, 1234);
		assert_int_equal(st.majflt, 7);
		assert_int_equal(st.utime, 150);
		assert_int_equal(st.stime, 25);
		assert_int_equal(st.starttime, 987654);
		assert_int_equal(st.rss, 321);
	}
	/* A zombie, and signed fields (tpgid -1, nice -5) on the way. */
	stat_line(line, sizeof(line), "z", "Z 1 0 0 0 -1 4194560 0 0 0 0 0 0 0 0 20 -5 1 0 5 0 0");
	assert_int_equal(uk_proc_stat_parse(line, &st), 0);
	assert_int_equal(st.state, 'Z');
	assert_int_equal(st.starttime, 5);
	/* Not that line. */
	const char *bad[] = {
		"", "4242", "4242 (cat)", "4242 (cat) S", "4242 (cat) S 17", "(cat) S " STAT_TAIL,
		"x42 (cat) S " STAT_TAIL, "4242 cat) S 17 " STAT_TAIL, "4242 (cat) S x 1 2 3",
		"4242 (cat)S 17 4242 4242 34816 4242 4194560 1234 0 7 0 150 25 0 0 20 0 3 0 987654 1 321",
		"4242 (cat) S 17 4242 4242 34816 4242 4194560 1234 0 7 0 150 25 0 0 20 0 3 0 99999999999999999999999 1 321",
		"4242 (cat) S 17 4242 4242 34816 4242 4194560 1234 0 7 0 150 25 0 0 20 0 3 0 987654 1 321x",
		"4242 (cat) S 1x 4242",
		"4242 (cat) S 17 4242 4242 34816 4242 4194560 1234 0 7 0 150 25 0 0 20 0 3 0 987654 1",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (uk_proc_stat_parse(bad[i], &st) != -EINVAL)
			fail_msg("\"%s\" accepted", bad[i]);
	assert_int_equal(uk_proc_stat_parse(NULL, &st), -EINVAL);
	/* The reader on this very process. */
	assert_int_equal(uk_proc_stat(getpid(), &st), 0);
	assert_int_equal(st.state, 'R');
	assert_int_equal(st.ppid, getppid());
	assert_true(st.rss > 0);
	assert_int_equal(uk_proc_stat(0x7ffffff0, &st), -ESRCH);
}

static void strf(void **state)
{
	(void)state;
	char *s = uk_strf("%s/%d", "a", 7);
	assert_string_equal(s, "a/7");
	free(s);
	char big[5000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	s = uk_strf("%s!", big);
	assert_int_equal(strlen(s), sizeof(big));
	free(s);
}

/* A zombie is not alive, though kill(pid, 0) and its /proc entry say otherwise. */
static void proc_alive_and_zombie(void **state)
{
	(void)state;
	uint64_t self = 0, st = 0;
	assert_int_equal(uk_proc_starttime(getpid(), &self), 0);
	assert_true(uk_proc_alive(getpid(), self));
	assert_false(uk_proc_alive(getpid(), self + 1)); /* a recycled pid */
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t child = fork();
	if (child == 0) {
		char c;
		close(p[1]);
		(void)!read(p[0], &c, 1);
		_exit(0);
	}
	close(p[0]);
	assert_int_equal(uk_proc_starttime(child, &st), 0);
	assert_true(uk_proc_alive(child, st));
	close(p[1]); /* the child exits; until we reap it, it is a zombie */
	int pidfd = uk_pidfd_open(child);
	assert_true(uk_pidfd_wait(pidfd, 5000));
	close(pidfd);
	assert_int_equal(kill(child, 0), 0);
	assert_false(uk_proc_alive(child, st));
	waitpid(child, NULL, 0);
	assert_false(uk_proc_alive(child, st));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(id_whitelist),  cmocka_unit_test(parse_numbers),
		cmocka_unit_test_setup_teardown(atomic_write, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test(error_context),
		cmocka_unit_test(proc_starttime),
		cmocka_unit_test(proc_stat_parse),
		cmocka_unit_test(strf),
		cmocka_unit_test(proc_alive_and_zombie),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
