/* Unit tests for the CRI log writer: exact records for every case the console can produce. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../vmwrapper/crilog.h"

/* 2026-11-25T10:00:00.123456789Z */
#define T0 (1795600800ULL * 1000000000ULL + 123456789ULL)
#define TS0 "2026-11-25T10:00:00.123456789Z"
#define T1 (T0 + 1000000000ULL + 1)
#define TS1 "2026-11-25T10:00:01.123456790Z"

/* What the writer was given: all bytes, and each call's size, per fd. */
struct capture {
	char *buf;
	size_t len, cap;
	size_t calls;
	size_t call_len[64];
	int call_fd[64];
	int fail_with; /* when nonzero, every call fails with it */
};

static int capture_write(int fd, const void *buf, size_t len, void *userdata)
{
	struct capture *c = userdata;
	if (c->calls < 64) {
		c->call_len[c->calls] = len;
		c->call_fd[c->calls] = fd;
	}
	c->calls++;
	if (c->fail_with)
		return -c->fail_with;
	if (c->len + len > c->cap) {
		c->cap = (c->len + len) * 2;
		c->buf = realloc(c->buf, c->cap);
		assert_non_null(c->buf);
	}
	memcpy(c->buf + c->len, buf, len);
	c->len += len;
	return 0;
}

struct fixture {
	struct crilog log;
	struct capture cap;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	crilog_init(&f->log, 7);
	crilog_set_writer(&f->log, capture_write, &f->cap);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	free(f->cap.buf);
	free(f);
	return 0;
}

static void feed(struct fixture *f, const char *s, size_t n, uint64_t now)
{
	assert_int_equal(crilog_feed(&f->log, s, n, now), 0);
}
#define FEED(f, lit) feed(f, lit, sizeof(lit) - 1, T0)

static void expect_bytes(struct fixture *f, const char *want, size_t n)
{
	if (f->cap.len != n || memcmp(f->cap.buf, want, n) != 0) {
		fprintf(stderr, "got %zu bytes: \"%.*s\"\nwant %zu bytes: \"%.*s\"\n", f->cap.len,
			(int)(f->cap.len > 300 ? 300 : f->cap.len), f->cap.buf ? f->cap.buf : "", n,
			(int)(n > 300 ? 300 : n), want);
		fail();
	}
}
#define EXPECT(f, lit) expect_bytes(f, lit, sizeof(lit) - 1)

/* Every record went out in one call of its own. */
static void expect_calls(struct fixture *f, size_t calls)
{
	assert_int_equal(f->cap.calls, calls);
	size_t off = 0;
	for (size_t i = 0; i < calls && i < 64; i++) {
		assert_true(f->cap.call_len[i] > CRILOG_HDR_LEN);
		off += f->cap.call_len[i];
		assert_int_equal(f->cap.buf[off - 1], '\n');
	}
	assert_int_equal(off, f->cap.len);
}

static void short_line(void **state)
{
	struct fixture *f = *state;
	FEED(f, "hello\r\n");
	EXPECT(f, TS0 " stdout F hello\n");
	expect_calls(f, 1);
	assert_int_equal(crilog_pending(&f->log), 0);
}

static void several_lines_in_one_feed(void **state)
{
	struct fixture *f = *state;
	FEED(f, "one\r\ntwo\r\nthree\r\n");
	EXPECT(f, TS0 " stdout F one\n" TS0 " stdout F two\n" TS0 " stdout F three\n");
	expect_calls(f, 3);
}

static void line_split_across_feeds(void **state)
{
	struct fixture *f = *state;
	FEED(f, "hel");
	assert_int_equal(f->cap.len, 0);
	assert_int_equal(crilog_pending(&f->log), 3);
	FEED(f, "lo wor");
	feed(f, "ld\r\nnext", 8, T1);
	/* The record is stamped when its line ends. */
	EXPECT(f, TS1 " stdout F hello world\n");
	assert_int_equal(crilog_pending(&f->log), 4);
	expect_calls(f, 1);
}

static void crlf_is_one_line_end(void **state)
{
	struct fixture *f = *state;
	FEED(f, "a\r\nb\nc\r\n");
	/* A bare LF ends a line too; no record keeps a "\r" of a "\r\n". */
	EXPECT(f, TS0 " stdout F a\n" TS0 " stdout F b\n" TS0 " stdout F c\n");
}

static void cr_and_lf_split_across_feeds(void **state)
{
	struct fixture *f = *state;
	FEED(f, "abc\r");
	assert_int_equal(f->cap.len, 0);
	assert_int_equal(crilog_pending(&f->log), 4);
	FEED(f, "\ndef\r");
	FEED(f, "\n");
	EXPECT(f, TS0 " stdout F abc\n" TS0 " stdout F def\n");
	assert_int_equal(crilog_pending(&f->log), 0);
}

static void lone_cr_is_data(void **state)
{
	struct fixture *f = *state;
	FEED(f, "progress 10%\rprogress 20%\r");
	FEED(f, "x\r\r\n\rz\r\n");
	EXPECT(f, TS0 " stdout F progress 10%\rprogress 20%\rx\r\n" TS0 " stdout F \rz\n");
}

static void empty_lines(void **state)
{
	struct fixture *f = *state;
	FEED(f, "\r\n\n\r\nx\r\n");
	EXPECT(f, TS0 " stdout F \n" TS0 " stdout F \n" TS0 " stdout F \n" TS0 " stdout F x\n");
	expect_calls(f, 4);
}

/* The records a line of n bytes of c becomes, all stamped TS0, in a new buffer: a P for
 * each full 16 KiB, then an F with the rest, empty for an exact multiple. */
static char *long_records(size_t n, char c, size_t *ret_len)
{
	size_t cap = (n / CRILOG_LINE_MAX + 2) * CRILOG_RECORD_MAX, len = 0;
	char *out = malloc(cap);
	assert_non_null(out);
	size_t left = n;
	do {
		bool partial = left >= CRILOG_LINE_MAX;
		size_t k = left > CRILOG_LINE_MAX ? CRILOG_LINE_MAX : left;
		len += (size_t)sprintf(out + len, TS0 " stdout %c ", partial ? 'P' : 'F');
		memset(out + len, c, k);
		len += k;
		out[len++] = '\n';
		left -= k;
		if (!partial)
			break;
	} while (true);
	*ret_len = len;
	return out;
}

static void feed_long(struct fixture *f, size_t n, char c, size_t step)
{
	char *line = malloc(n + 2);
	assert_non_null(line);
	memset(line, c, n);
	memcpy(line + n, "\r\n", 2);
	for (size_t off = 0; off < n + 2; off += step)
		feed(f, line + off, off + step > n + 2 ? n + 2 - off : step, T0);
	free(line);
}

static void check_long(void **state, size_t n, size_t records, size_t step)
{
	struct fixture *f = *state;
	size_t want_len;
	feed_long(f, n, 'x', step);
	char *want = long_records(n, 'x', &want_len);
	expect_bytes(f, want, want_len);
	expect_calls(f, records);
	free(want);
	assert_int_equal(crilog_pending(&f->log), 0);
	assert_int_equal(crilog_flush(&f->log, T0), 0);
	assert_int_equal(f->cap.calls, records);
}

static void line_of_16k_exactly(void **state)
{
	/* The piece is written as P the moment it is full; the line end then closes the line
	 * with an empty F. */
	check_long(state, CRILOG_LINE_MAX, 2, 65536);
	struct fixture *f = *state;
	assert_memory_equal(f->cap.buf + f->cap.len - (CRILOG_HDR_LEN + 1), TS0 " stdout F \n", CRILOG_HDR_LEN + 1);
}

static void line_of_16k_plus_1(void **state)
{
	check_long(state, CRILOG_LINE_MAX + 1, 2, 65536);
	struct fixture *f = *state;
	assert_memory_equal(f->cap.buf + f->cap.len - (CRILOG_HDR_LEN + 2), TS0 " stdout F x\n", CRILOG_HDR_LEN + 2);
}

static void line_of_40k_is_p_p_f(void **state)
{
	check_long(state, 40000, 3, 65536);
	struct fixture *f = *state;
	assert_int_equal(f->cap.call_len[0], CRILOG_HDR_LEN + CRILOG_LINE_MAX + 1);
	assert_int_equal(f->cap.call_len[1], CRILOG_HDR_LEN + CRILOG_LINE_MAX + 1);
	assert_int_equal(f->cap.call_len[2], CRILOG_HDR_LEN + 40000 - 2 * CRILOG_LINE_MAX + 1);
	assert_memory_equal(f->cap.buf, TS0 " stdout P xxx", CRILOG_HDR_LEN + 3);
	assert_memory_equal(f->cap.buf + f->cap.call_len[0], TS0 " stdout P xxx", CRILOG_HDR_LEN + 3);
	assert_memory_equal(f->cap.buf + 2 * f->cap.call_len[0], TS0 " stdout F xxx", CRILOG_HDR_LEN + 3);
}

static void line_of_40k_in_small_feeds(void **state)
{
	/* Feeds that straddle the 16 KiB boundaries give the same records. */
	check_long(state, 40000, 3, 1000);
}

static void line_of_32k_exactly_then_eof(void **state)
{
	struct fixture *f = *state;
	size_t n = 2 * CRILOG_LINE_MAX, want_len;
	char *line = malloc(n);
	assert_non_null(line);
	memset(line, 'y', n);
	feed(f, line, n, T0);
	free(line);
	/* Both pieces are out at once: nothing is held back. */
	assert_int_equal(f->cap.calls, 2);
	assert_int_equal(crilog_pending(&f->log), 0);
	assert_int_equal(crilog_flush(&f->log, T0), 0);
	char *want = long_records(n, 'y', &want_len);
	expect_bytes(f, want, want_len);
	expect_calls(f, 3);
	free(want);
}

static void cr_at_the_16k_boundary(void **state)
{
	struct fixture *f = *state;
	size_t n = CRILOG_LINE_MAX - 1;
	char *line = malloc(n + 1);
	assert_non_null(line);
	memset(line, 'z', n);
	line[n] = '\r';
	/* 16383 bytes and a "\r": a line end if "\n" follows... */
	feed(f, line, n + 1, T0);
	assert_int_equal(f->cap.calls, 0);
	FEED(f, "\n");
	assert_int_equal(f->cap.calls, 1);
	assert_int_equal(f->cap.call_len[0], CRILOG_HDR_LEN + n + 1);
	assert_memory_equal(f->cap.buf, TS0 " stdout F zz", CRILOG_HDR_LEN + 2);
	/* ...else the 16384th byte of content, and the piece is full. */
	feed(f, line, n + 1, T0);
	FEED(f, "q\r\n");
	free(line);
	assert_int_equal(f->cap.calls, 3);
	assert_int_equal(f->cap.call_len[1], CRILOG_HDR_LEN + CRILOG_LINE_MAX + 1);
	const char *p1 = f->cap.buf + f->cap.call_len[0];
	assert_memory_equal(p1, TS0 " stdout P zz", CRILOG_HDR_LEN + 2);
	assert_memory_equal(p1 + CRILOG_HDR_LEN + CRILOG_LINE_MAX - 2, "z\r\n", 3);
	assert_memory_equal(p1 + f->cap.call_len[1], TS0 " stdout F q\n", CRILOG_HDR_LEN + 2);
	assert_int_equal(f->cap.len, f->cap.call_len[0] + f->cap.call_len[1] + CRILOG_HDR_LEN + 2);
}

static void binary_bytes_pass_unchanged(void **state)
{
	struct fixture *f = *state;
	static const char in[] = "\xff\x00\x80 \xc3\x28\x01\x7f\xfe\x00\r\n";
	feed(f, in, sizeof(in) - 1, T0);
	static const char want[] = TS0 " stdout F \xff\x00\x80 \xc3\x28\x01\x7f\xfe\x00\n";
	expect_bytes(f, want, sizeof(want) - 1);
	expect_calls(f, 1);
}

static void flush_writes_the_partial_line_as_f(void **state)
{
	struct fixture *f = *state;
	FEED(f, "done\r\nno newline");
	assert_int_equal(crilog_flush(&f->log, T1), 0);
	EXPECT(f, TS0 " stdout F done\n" TS1 " stdout F no newline\n");
	assert_int_equal(crilog_pending(&f->log), 0);
	/* A second flush has nothing left. */
	assert_int_equal(crilog_flush(&f->log, T1), 0);
	expect_calls(f, 2);
}

static void flush_keeps_a_trailing_cr_as_data(void **state)
{
	struct fixture *f = *state;
	FEED(f, "tail\r");
	assert_int_equal(crilog_flush(&f->log, T0), 0);
	EXPECT(f, TS0 " stdout F tail\r\n");
}

static void flush_with_nothing_pending_writes_nothing(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(crilog_flush(&f->log, T0), 0);
	assert_int_equal(f->cap.calls, 0);
	FEED(f, "x\r\n");
	assert_int_equal(crilog_flush(&f->log, T0), 0);
	expect_calls(f, 1);
	EXPECT(f, TS0 " stdout F x\n");
}

static void reopen_mid_line_loses_and_duplicates_nothing(void **state)
{
	struct fixture *f = *state;
	FEED(f, "first\r\nsec");
	crilog_set_fd(&f->log, 8); /* kubelet renamed the file; a reopen gave a new fd */
	FEED(f, "ond\r");
	FEED(f, "\nthird\r\n");
	assert_int_equal(crilog_flush(&f->log, T0), 0);
	EXPECT(f, TS0 " stdout F first\n" TS0 " stdout F second\n" TS0 " stdout F third\n");
	expect_calls(f, 3);
	assert_int_equal(f->cap.call_fd[0], 7);
	assert_int_equal(f->cap.call_fd[1], 8);
	assert_int_equal(f->cap.call_fd[2], 8);
}

static void reopen_mid_long_line(void **state)
{
	struct fixture *f = *state;
	size_t n = 20000;
	char *line = malloc(n);
	assert_non_null(line);
	memset(line, 'w', n);
	feed(f, line, n, T0); /* one P out to fd 7, 3616 bytes pending */
	crilog_set_fd(&f->log, 9);
	FEED(f, "\r\n");
	free(line);
	expect_calls(f, 2);
	assert_int_equal(f->cap.call_fd[0], 7);
	assert_int_equal(f->cap.call_fd[1], 9);
	assert_int_equal(f->cap.call_len[1], CRILOG_HDR_LEN + n - CRILOG_LINE_MAX + 1);
}

static void without_an_fd_records_are_dropped_and_state_kept(void **state)
{
	struct fixture *f = *state;
	crilog_set_fd(&f->log, -1);
	FEED(f, "lost\r\nkept ");
	assert_int_equal(f->cap.calls, 0);
	crilog_set_fd(&f->log, 3);
	FEED(f, "line\r\n");
	EXPECT(f, TS0 " stdout F kept line\n");
}

static void write_errors_are_reported_and_the_next_record_is_whole(void **state)
{
	struct fixture *f = *state;
	f->cap.fail_with = ENOSPC;
	assert_int_equal(crilog_feed(&f->log, "a\r\nb\r\npart", 10, T0), -ENOSPC);
	assert_int_equal(f->cap.calls, 2);
	f->cap.fail_with = 0;
	FEED(f, "ial\r\n");
	EXPECT(f, TS0 " stdout F partial\n");
}

static void default_writer_writes_one_record_per_write(void **state)
{
	(void)state;
	/* A SOCK_SEQPACKET pair keeps each write(2) a message of its own. */
	int p[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, p), 0);
	struct crilog *l = malloc(sizeof(*l));
	assert_non_null(l);
	crilog_init(l, p[1]);
	assert_int_equal(crilog_feed(l, "pipe\r\nend", 9, T0), 0);
	assert_int_equal(crilog_flush(l, T1), 0);
	close(p[1]);
	char buf[256];
	ssize_t n = read(p[0], buf, sizeof(buf));
	static const char want[] = TS0 " stdout F pipe\n";
	assert_int_equal(n, sizeof(want) - 1);
	assert_memory_equal(buf, want, sizeof(want) - 1);
	n = read(p[0], buf, sizeof(buf));
	static const char want2[] = TS1 " stdout F end\n";
	assert_int_equal(n, sizeof(want2) - 1);
	assert_memory_equal(buf, want2, sizeof(want2) - 1);
	assert_int_equal(read(p[0], buf, sizeof(buf)), 0);
	close(p[0]);
	assert_int_equal(l->records, 2);
	free(l);
}

static void timestamps(void **state)
{
	(void)state;
	char ts[CRILOG_TS_LEN + 1];
	static const struct {
		uint64_t ns;
		const char *want;
	} cases[] = {
		{ 0, "1970-01-01T00:00:00.000000000Z" },
		{ 999999999ULL, "1970-01-01T00:00:00.999999999Z" },
		{ 1000000000ULL, "1970-01-01T00:00:01.000000000Z" },
		{ 1ULL, "1970-01-01T00:00:00.000000001Z" },
		{ T0, TS0 },
		{ 1795600800ULL * 1000000000ULL, "2026-11-25T10:00:00.000000000Z" },
		{ 1795600800ULL * 1000000000ULL + 100000000ULL, "2026-11-25T10:00:00.100000000Z" },
		/* The end of a leap day, and of a year. */
		{ 1709251199ULL * 1000000000ULL + 999999999ULL, "2024-02-29T23:59:59.999999999Z" },
		{ 1735689599ULL * 1000000000ULL + 999999999ULL, "2024-12-31T23:59:59.999999999Z" },
		{ 1735689600ULL * 1000000000ULL, "2025-01-01T00:00:00.000000000Z" },
		/* The largest now_ns there is. */
		{ UINT64_MAX, "2554-07-21T23:34:33.709551615Z" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(ts, '#', sizeof(ts));
		crilog_format_time(ts, cases[i].ns);
		assert_string_equal(ts, cases[i].want);
	}
}

static void record_stamps_follow_the_clock(void **state)
{
	/* The cached seconds part is renewed when the second changes, also going back. */
	struct fixture *f = *state;
	feed(f, "a\n", 2, 999999999ULL);
	feed(f, "b\n", 2, 1000000000ULL);
	feed(f, "c\n", 2, 5ULL);
	EXPECT(f, "1970-01-01T00:00:00.999999999Z stdout F a\n"
		  "1970-01-01T00:00:01.000000000Z stdout F b\n"
		  "1970-01-01T00:00:00.000000005Z stdout F c\n");
}

static void memory_is_bounded(void **state)
{
	(void)state;
	/* All pending data lives in the struct: one record's worth and a little. */
	assert_true(sizeof(struct crilog) < CRILOG_RECORD_MAX + 256);
	assert_int_equal(CRILOG_HDR_LEN, strlen(TS0 " stdout P "));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(short_line),
		T(several_lines_in_one_feed),
		T(line_split_across_feeds),
		T(crlf_is_one_line_end),
		T(cr_and_lf_split_across_feeds),
		T(lone_cr_is_data),
		T(empty_lines),
		T(line_of_16k_exactly),
		T(line_of_16k_plus_1),
		T(line_of_40k_is_p_p_f),
		T(line_of_40k_in_small_feeds),
		T(line_of_32k_exactly_then_eof),
		T(cr_at_the_16k_boundary),
		T(binary_bytes_pass_unchanged),
		T(flush_writes_the_partial_line_as_f),
		T(flush_keeps_a_trailing_cr_as_data),
		T(flush_with_nothing_pending_writes_nothing),
		T(reopen_mid_line_loses_and_duplicates_nothing),
		T(reopen_mid_long_line),
		T(without_an_fd_records_are_dropped_and_state_kept),
		T(write_errors_are_reported_and_the_next_record_is_whole),
		cmocka_unit_test(default_writer_writes_one_record_per_write),
		cmocka_unit_test(timestamps),
		T(record_stamps_follow_the_clock),
		cmocka_unit_test(memory_is_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
