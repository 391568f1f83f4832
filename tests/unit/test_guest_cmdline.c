/* Unit tests for src/guest/cmdline.c: the kernel command line from envs, command, the
 * image's default and args; white space, bad keys and the length bound; each framework's
 * quoting, the split of an image's line at "--", word counts and the bounded why text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/guest/cmdline.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

static void builds(void **state)
{
	(void)state;
	static const struct guest_env envs[] = { { "FOO", "bar" }, { "X", "1" }, { "EMPTY", NULL } };
	static const char *const command[] = { "print:own", "", "env" };
	static const char *const args[] = { "exit:0", NULL };
	static const struct {
		struct guest_cmdline_in in;
		const char *want;
	} cases[] = {
		{ { .envs = envs, .n_envs = 2, .command = command, .n_command = N(command), .args = args,
		    .n_args = 1, .image_cmdline = "print:default" },
		  "FOO=bar X=1 print:own env exit:0" },
		/* No command: the image's default stands in its place, as it is (several words). */
		{ { .envs = envs, .n_envs = 1, .args = args, .n_args = 1, .image_cmdline = "print:a  lines:2" },
		  "FOO=bar print:a  lines:2 exit:0" },
		{ { .image_cmdline = "print:default" }, "print:default" },
		{ { .args = args, .n_args = 2 }, "exit:0" },
		{ { .envs = envs + 2, .n_envs = 1 }, "EMPTY=" },
		{ { .image_cmdline = "" }, "" },
		{ { 0 }, "" },
	};
	for (size_t i = 0; i < N(cases); i++) {
		char buf[GUEST_CMDLINE_MAX];
		uk_error err = { 0 };
		if (guest_cmdline_build(&cases[i].in, buf, sizeof(buf), &err) < 0)
			fail_msg("case %zu: %s", i, err.msg);
		assert_string_equal(buf, cases[i].want);
	}
}

static void refuses(void **state)
{
	(void)state;
	static const struct guest_env sp_key[] = { { "A B", "x" } };
	static const struct guest_env sp_val[] = { { "OK", "1" }, { "A", "x\ty" } };
	static const struct guest_env eq_key[] = { { "A=B", "x" } };
	static const struct guest_env no_key[] = { { "", "x" } };
	static const struct guest_env null_key[] = { { NULL, "x" } };
	static const char *const nl[] = { "ok", "a\nb" };
	static const char *const sp[] = { "two words" };
	static const struct {
		struct guest_cmdline_in in;
		int rc;
		const char *field;
	} cases[] = {
		{ { .envs = sp_key, .n_envs = 1 }, -EINVAL, "config.envs[0] holds white space" },
		{ { .envs = sp_val, .n_envs = 2 }, -EINVAL, "config.envs[1] holds white space" },
		{ { .envs = eq_key, .n_envs = 1 }, -EINVAL, "config.envs[0].key" },
		{ { .envs = no_key, .n_envs = 1 }, -EINVAL, "config.envs[0].key" },
		{ { .envs = null_key, .n_envs = 1 }, -EINVAL, "config.envs[0].key" },
		{ { .command = sp, .n_command = 1 }, -EINVAL, "config.command[0]" },
		{ { .args = nl, .n_args = 2 }, -EINVAL, "config.args[1]" },
		/* An argument is refused even when a command replaces nothing. */
		{ { .image_cmdline = "print:x", .args = sp, .n_args = 1 }, -EINVAL, "config.args[0]" },
	};
	for (size_t i = 0; i < N(cases); i++) {
		struct guest_cmdline_in in = cases[i].in;
		in.field_prefix = "config.";
		char buf[GUEST_CMDLINE_MAX] = "junk";
		uk_error err = { 0 };
		int r = guest_cmdline_build(&in, buf, sizeof(buf), &err);
		if (r != cases[i].rc)
			fail_msg("case %zu: got %d, want %d", i, r, cases[i].rc);
		assert_contains(err.msg, cases[i].field);
		assert_string_equal(buf, "");
	}
	/* Without a prefix the field is named bare. */
	struct guest_cmdline_in in = { .args = sp, .n_args = 1 };
	char buf[64];
	uk_error err = { 0 };
	assert_int_equal(guest_cmdline_build(&in, buf, sizeof(buf), &err), -EINVAL);
	assert_true(strncmp(err.msg, "args[0]", 7) == 0);
	assert_int_equal(guest_cmdline_build(&in, NULL, 0, &err), -EINVAL);
}

/* The line holds len - 1 bytes: at the bound it fits, one byte more is -E2BIG naming the
 * item that overflowed it, whichever list that item is in. */
static void length_bound(void **state)
{
	(void)state;
	static char big[GUEST_CMDLINE_MAX + 8];
	char buf[GUEST_CMDLINE_MAX];
	uk_error err = { 0 };

	/* "a" + " " + (4093 bytes) = 4095: fits exactly. */
	memset(big, 'b', GUEST_CMDLINE_MAX - 3);
	big[GUEST_CMDLINE_MAX - 3] = '\0';
	const char *args[] = { "a", big };
	struct guest_cmdline_in in = { .args = args, .n_args = 2, .field_prefix = "config." };
	assert_int_equal(guest_cmdline_build(&in, buf, sizeof(buf), &err), 0);
	assert_int_equal(strlen(buf), GUEST_CMDLINE_MAX - 1);
	/* One more byte. */
	big[GUEST_CMDLINE_MAX - 3] = 'b';
	big[GUEST_CMDLINE_MAX - 2] = '\0';
	assert_int_equal(guest_cmdline_build(&in, buf, sizeof(buf), &err), -E2BIG);
	assert_contains(err.msg, "config.args[1]");
	assert_contains(err.msg, "4095");
	assert_string_equal(buf, "");

	/* A single word longer than the buffer. */
	memset(big, 'c', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	const char *cmd[] = { big };
	struct guest_cmdline_in c = { .command = cmd, .n_command = 1 };
	assert_int_equal(guest_cmdline_build(&c, buf, sizeof(buf), &err), -E2BIG);
	assert_contains(err.msg, "command[0]");

	/* An env whose value overflows, and the image's default after the envs. */
	struct guest_env e[] = { { "K", big } };
	struct guest_cmdline_in ce = { .envs = e, .n_envs = 1, .field_prefix = "config." };
	assert_int_equal(guest_cmdline_build(&ce, buf, sizeof(buf), &err), -E2BIG);
	assert_contains(err.msg, "config.envs[0]");
	struct guest_env small[] = { { "K", "v" } };
	struct guest_cmdline_in ci = { .envs = small, .n_envs = 1, .image_cmdline = big };
	assert_int_equal(guest_cmdline_build(&ci, buf, sizeof(buf), &err), -E2BIG);
	assert_contains(err.msg, "image's default command line");

	/* A small buffer bounds the same way. */
	const char *w[] = { "abc", "de" };
	struct guest_cmdline_in s = { .args = w, .n_args = 2 };
	char tiny[7];
	assert_int_equal(guest_cmdline_build(&s, tiny, sizeof(tiny), &err), 0);
	assert_string_equal(tiny, "abc de");
	char tinier[6];
	assert_int_equal(guest_cmdline_build(&s, tinier, sizeof(tinier), &err), -E2BIG);
	assert_string_equal(tinier, "");
}

/* Each parser's quoting: only where needed, and a refusal naming the field where the parser
 * cannot carry the word. */
static void quoting(void **state)
{
	(void)state;
	static const struct {
		enum guest_quoting q;
		bool force;
		const char *word, *want;
	} cases[] = {
		{ GUEST_QUOTING_NONE, false, "plain", "plain" },
		{ GUEST_QUOTING_NONE, true, "plain", "plain" },
		{ GUEST_QUOTING_LINUX, false, "plain", "plain" },
		{ GUEST_QUOTING_LINUX, true, "plain", "\"plain\"" },
		{ GUEST_QUOTING_LINUX, false, "hello, world", "\"hello, world\"" },
		{ GUEST_QUOTING_LINUX, false, "tab\there", "\"tab\there\"" },
		{ GUEST_QUOTING_LINUX, false, "it's", "it's" },
		{ GUEST_QUOTING_UNIKRAFT, false, "plain", "plain" },
		{ GUEST_QUOTING_UNIKRAFT, true, "K=V", "\"K=V\"" },
		{ GUEST_QUOTING_UNIKRAFT, false, "hello, world", "\"hello, world\"" },
		{ GUEST_QUOTING_UNIKRAFT, false, "it's", "\"it's\"" },
		{ GUEST_QUOTING_UNIKRAFT, false, "'", "\"'\"" },
		{ GUEST_QUOTING_UNIKRAFT, false, "say \"hi\"", "'say \"hi\"'" },
		{ GUEST_QUOTING_UNIKRAFT, false, "a\\b", "'a\\b'" },
		{ GUEST_QUOTING_UNIKRAFT, false, "it's \"x\"", "'it'\"'\"'s \"x\"'" },
		{ GUEST_QUOTING_UNIKRAFT, false, "'\"", "\"'\"'\"'" },
		{ GUEST_QUOTING_MIRAGE, false, "plain", "plain" },
		{ GUEST_QUOTING_MIRAGE, false, "it's", "it's" },
		{ GUEST_QUOTING_MIRAGE, false, "hello, world", "\"hello, world\"" },
		{ GUEST_QUOTING_MIRAGE, false, "a\"b\\c", "\"a\\\"b\\\\c\"" },
	};
	for (size_t i = 0; i < N(cases); i++) {
		char buf[64];
		struct guest_line l;
		uk_error err = { 0 };
		guest_line_init(&l, buf, sizeof(buf), "config.");
		if (guest_line_word(&l, cases[i].q, cases[i].force, cases[i].word, "args", i, &err) < 0)
			fail_msg("case %zu: %s", i, err.msg);
		if (strcmp(buf, cases[i].want) != 0)
			fail_msg("case %zu: got [%s], want [%s]", i, buf, cases[i].want);
		assert_int_equal(l.len, strlen(buf));
	}

	char buf[64];
	struct guest_line l;
	uk_error err = { 0 };
	guest_line_init(&l, buf, sizeof(buf), "config.");
	assert_int_equal(guest_line_word(&l, GUEST_QUOTING_LINUX, false, "a\"b", "args", 2, &err), -EINVAL);
	assert_string_equal(err.msg, "config.args[2] holds a double quote, which the Linux kernel's command line cannot carry");
	assert_int_equal(guest_line_word(&l, GUEST_QUOTING_NONE, false, "a b", "command", 0, &err), -EINVAL);
	assert_contains(err.msg, "config.command[0] holds white space");
	/* Empty words add nothing; words are separated by one space. */
	assert_int_equal(guest_line_word(&l, GUEST_QUOTING_LINUX, true, "", "args", 0, &err), 0);
	assert_int_equal(guest_line_word(&l, GUEST_QUOTING_LINUX, false, NULL, "args", 0, &err), 0);
	assert_string_equal(buf, "");
	static const struct guest_env e[] = { { "B", "two words" }, { "", "x" } };
	assert_int_equal(guest_line_env(&l, GUEST_QUOTING_UNIKRAFT, true, &e[0], 0, &err), 0);
	assert_int_equal(guest_line_raw(&l, "]", 1), 0);
	assert_string_equal(buf, "\"B=two words\" ]");
	assert_int_equal(guest_line_env(&l, GUEST_QUOTING_UNIKRAFT, true, &e[1], 1, &err), -EINVAL);
	assert_contains(err.msg, "config.envs[1].key");

	/* A quoted word that does not fit leaves the line as it was. */
	char small[8];
	guest_line_init(&l, small, sizeof(small), NULL);
	assert_int_equal(guest_line_word(&l, GUEST_QUOTING_LINUX, false, "ab", "args", 0, &err), 0);
	assert_int_equal(guest_line_word(&l, GUEST_QUOTING_LINUX, false, "c d", "args", 1, &err), -E2BIG);
	assert_string_equal(small, "ab");
	assert_int_equal(l.len, 2);
	assert_contains(err.msg, "args[1] makes the kernel command line longer than 7 bytes");
	assert_int_equal(guest_line_word(&l, GUEST_QUOTING_LINUX, false, "cd", "args", 1, &err), 0);
	assert_string_equal(small, "ab cd");
}

static void split_and_count(void **state)
{
	(void)state;
	static const struct {
		const char *line;
		enum guest_quoting q;
		bool dashes;
		const char *before, *after;
	} cases[] = {
		{ "console=ttyS0 quiet -- /bin/sh -c x", GUEST_QUOTING_LINUX, true, "console=ttyS0 quiet", "/bin/sh -c x" },
		{ "  a  b  ", GUEST_QUOTING_LINUX, false, "a  b", "" },
		{ "-- x", GUEST_QUOTING_LINUX, true, "", "x" },
		{ "a --", GUEST_QUOTING_LINUX, true, "a", "" },
		{ "a --x -- b", GUEST_QUOTING_LINUX, true, "a --x", "b" },
		{ "\"x -- y\" z", GUEST_QUOTING_LINUX, false, "\"x -- y\" z", "" },
		{ "'x -- y'", GUEST_QUOTING_LINUX, true, "'x", "y'" },
		{ "'x -- y' -- z", GUEST_QUOTING_UNIKRAFT, true, "'x -- y'", "z" },
		{ "a\\ -- b", GUEST_QUOTING_UNIKRAFT, false, "a\\ -- b", "" },
		{ "vfs.fstab=[ \"fs0:/:9pfs\" ] -- /app", GUEST_QUOTING_UNIKRAFT, true, "vfs.fstab=[ \"fs0:/:9pfs\" ]", "/app" },
		{ "", GUEST_QUOTING_LINUX, false, "", "" },
		{ NULL, GUEST_QUOTING_UNIKRAFT, false, "", "" },
		{ "\"unclosed -- x", GUEST_QUOTING_LINUX, false, "\"unclosed -- x", "" },
	};
	for (size_t i = 0; i < N(cases); i++) {
		struct guest_span before, after;
		bool dashes;
		const char *line = cases[i].line ? cases[i].line : "";
		guest_split_dashes(cases[i].line, cases[i].q, &before, &after, &dashes);
		char b[64], a[64];
		snprintf(b, sizeof(b), "%.*s", (int)before.len, line + before.at);
		snprintf(a, sizeof(a), "%.*s", (int)after.len, line + after.at);
		if (dashes != cases[i].dashes || strcmp(b, cases[i].before) || strcmp(a, cases[i].after))
			fail_msg("case %zu: dashes=%d [%s] [%s]", i, dashes, b, a);
	}

	const char *t = "a 'b c' \"d e\" f\\ g";
	assert_int_equal(guest_count_words(t, strlen(t), GUEST_QUOTING_UNIKRAFT), 4);
	assert_int_equal(guest_count_words(t, strlen(t), GUEST_QUOTING_MIRAGE), 5);
	assert_int_equal(guest_count_words(t, strlen(t), GUEST_QUOTING_LINUX), 6);
	assert_int_equal(guest_count_words(t, strlen(t), GUEST_QUOTING_NONE), 7);
	assert_int_equal(guest_count_words(t, 1, GUEST_QUOTING_NONE), 1);
	assert_int_equal(guest_count_words("   ", 3, GUEST_QUOTING_NONE), 0);
}

/* The why text: appended, and visibly cut when it does not fit. */
static void textf(void **state)
{
	(void)state;
	char buf[12] = "";
	guest_textf(buf, sizeof(buf), "%s", "abc");
	guest_textf(buf, sizeof(buf), "-%d", 42);
	assert_string_equal(buf, "abc-42");
	guest_textf(buf, sizeof(buf), "%s", "0123456789");
	assert_string_equal(buf, "abc-4201...");
	guest_textf(buf, sizeof(buf), "%s", "more");
	assert_string_equal(buf, "abc-4201...");
	char unterminated[4] = { 'x', 'y', 'z', 'w' };
	guest_textf(unterminated, sizeof(unterminated), "%s", "q");
	assert_string_equal(unterminated, "...");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(builds),
		cmocka_unit_test(refuses),
		cmocka_unit_test(length_bound),
		cmocka_unit_test(quoting),
		cmocka_unit_test(split_and_count),
		cmocka_unit_test(textf),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
