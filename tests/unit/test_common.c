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
	assert_int_equal(uk_err_ctx(&err, "spec %s", "/a.json"), -EINVAL);
	assert_string_equal(err.msg, "spec /a.json: field \"x\" is bad");
	assert_int_equal(uk_err_errno(&err, ENOENT, "open %s", "/x"), -ENOENT);
	assert_string_equal(err.msg, "open /x: No such file or directory");
	assert_int_equal(uk_err(NULL, EPERM, "ignored"), -EPERM);
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
	assert_int_equal(uk_proc_starttime(0x7ffffff0, &b), -ENOENT);
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
		cmocka_unit_test(proc_alive_and_zombie),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
