/* Unit tests for the streaming server's tokens (src/stream/tokens.c): single use, expiry,
 * kind, the bound, and expired tokens making room. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/stream/server.h"

#define S 1000000000ull

static const char *tok(unsigned i)
{
	static char b[STREAM_TOKEN_LEN + 1];
	snprintf(b, sizeof(b), "%032x", i);
	return b;
}

static void test_take_once(void **state)
{
	(void)state;
	struct stream_tokens tk;
	struct stream_target t = { .kind = STREAM_ATTACH, .id = "abc", .out = true }, got;
	uk_error err = { 0 };
	stream_tokens_init(&tk, 4, 60 * S);
	assert_int_equal(stream_tokens_add(&tk, tok(1), &t, 0, &err), 0);
	/* The wrong kind spends the token. */
	assert_int_equal(stream_tokens_take(&tk, tok(1), STREAM_PORTFORWARD, 1, &got), -ENOENT);
	assert_int_equal(stream_tokens_take(&tk, tok(1), STREAM_ATTACH, 1, &got), -ENOENT);
	assert_int_equal(stream_tokens_add(&tk, tok(2), &t, 0, &err), 0);
	assert_int_equal(stream_tokens_take(&tk, tok(2), STREAM_ATTACH, 1, &got), 0);
	assert_string_equal(got.id, "abc");
	assert_true(got.out);
	/* Used once: gone. */
	assert_int_equal(stream_tokens_take(&tk, tok(2), STREAM_ATTACH, 2, &got), -ENOENT);
	/* Unknown. */
	assert_int_equal(stream_tokens_take(&tk, tok(99), STREAM_ATTACH, 2, &got), -ENOENT);
	stream_tokens_free(&tk);
}

static void test_expiry_and_bound(void **state)
{
	(void)state;
	struct stream_tokens tk;
	struct stream_target t = { .kind = STREAM_PORTFORWARD }, got;
	uk_error err = { 0 };
	stream_tokens_init(&tk, 3, 60 * S);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(stream_tokens_add(&tk, tok(i), &t, i * S, &err), 0);
	assert_int_equal(stream_tokens_add(&tk, tok(3), &t, 10 * S, &err), -ENOSPC);
	assert_non_null(strstr(err.msg, "at most 3"));
	/* Token 0 expires at 60 s: at 60 s it is gone, and its room is free. */
	assert_int_equal(stream_tokens_take(&tk, tok(0), STREAM_PORTFORWARD, 60 * S, &got), -ENOENT);
	assert_int_equal(stream_tokens_add(&tk, tok(3), &t, 60 * S, &err), 0);
	assert_int_equal(stream_tokens_take(&tk, tok(1), STREAM_PORTFORWARD, 60 * S, &got), 0);
	/* A token of the wrong length is refused. */
	assert_int_equal(stream_tokens_add(&tk, "short", &t, 60 * S, &err), -EINVAL);
	stream_tokens_free(&tk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_take_once),
		cmocka_unit_test(test_expiry_and_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
