/* Unit tests for src/common/log.c: levels, the logfmt line, and journald's form of it. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "../../src/common/log.h"
#include "../../src/common/util.h"

/* stderr goes to a temp file for the test and comes back in teardown. */
struct fixture {
	int saved_stderr;
	char path[64];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->path, sizeof(f->path), "/tmp/uk-test-log-XXXXXX");
	int fd = mkostemp(f->path, O_CLOEXEC);
	f->saved_stderr = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
	if (fd < 0 || f->saved_stderr < 0 || dup2(fd, STDERR_FILENO) < 0)
		return -1;
	close(fd);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	dup2(f->saved_stderr, STDERR_FILENO);
	close(f->saved_stderr);
	unlink(f->path);
	unsetenv("JOURNAL_STREAM");
	uk_log_detect_journal();
	uk_log_set_level(UK_LOG_INFO);
	free(f);
	return 0;
}

static char *logged(struct fixture *f)
{
	char *text = NULL;
	assert_int_equal(uk_read_file(f->path, 1 << 20, &text, NULL, NULL), 0);
	return text;
}

static void levels_and_format(void **state)
{
	struct fixture *f = *state;
	enum uk_log_level l;
	assert_int_equal(uk_log_parse_level("warn", &l), 0);
	assert_int_equal(l, UK_LOG_WARN);
	assert_int_equal(uk_log_parse_level("verbose", &l), -EINVAL);
	assert_string_equal(uk_log_level_name(UK_LOG_DEBUG), "debug");

	unsetenv("JOURNAL_STREAM");
	assert_false(uk_log_detect_journal());
	uk_log_set_level(UK_LOG_INFO);
	log_debug("msg=hidden");
	log_info("pod=p1 ctr=c1 msg=shown");
	uk_log_set_level(UK_LOG_DEBUG);
	assert_int_equal(uk_log_get_level(), UK_LOG_DEBUG);
	log_debug("msg=now");
	char *text = logged(f);
	assert_null(strstr(text, "hidden"));
	assert_int_equal(strncmp(text, "ts=", 3), 0);
	assert_non_null(strstr(text, "Z level=info prog=unikd pod=p1 ctr=c1 msg=shown\n"));
	assert_non_null(strstr(text, "level=debug prog=unikd msg=now\n"));
	free(text);
}

/* journald: "<priority>" first, no ts=, when JOURNAL_STREAM names stderr. */
static void journal_stream(void **state)
{
	struct fixture *f = *state;
	struct stat st;
	char v[64];
	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino + 1);
	setenv("JOURNAL_STREAM", v, 1);
	assert_false(uk_log_detect_journal()); /* another stream: stderr was redirected since */
	setenv("JOURNAL_STREAM", "junk", 1);
	assert_false(uk_log_detect_journal());
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", v, 1);
	assert_true(uk_log_detect_journal());
	uk_log_set_level(UK_LOG_DEBUG);
	log_error("msg=e");
	log_warn("msg=w");
	log_info("msg=i");
	log_debug("msg=d");
	char *text = logged(f);
	assert_string_equal(text, "<3>level=error prog=unikd msg=e\n"
				  "<4>level=warn prog=unikd msg=w\n"
				  "<6>level=info prog=unikd msg=i\n"
				  "<7>level=debug prog=unikd msg=d\n");
	free(text);
}

int main(void)
{
	uk_log_set_ident("unikd");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(levels_and_format, setup, teardown),
		cmocka_unit_test_setup_teardown(journal_stream, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
