/* The serial console as CRI log records; see crilog.h and docs/architecture.md. */
#include <string.h>
#include <time.h>

#include "../src/common/util.h"
#include "crilog.h"

#define NS_PER_SEC 1000000000ULL

static int write_fd(int fd, const void *buf, size_t len, void *userdata)
{
	(void)userdata;
	return uk_write_all(fd, buf, len);
}

void crilog_init(struct crilog *l, int fd)
{
	l->fd = fd;
	l->write = write_fd;
	l->userdata = NULL;
	l->cr = false;
	l->in_line = false;
	l->len = 0;
	l->records = 0;
	l->ts_sec = -1;
}

void crilog_set_writer(struct crilog *l, crilog_write_fn fn, void *userdata)
{
	l->write = fn ? fn : write_fd;
	l->userdata = fn ? userdata : NULL;
}

void crilog_set_fd(struct crilog *l, int fd)
{
	l->fd = fd;
}

size_t crilog_pending(const struct crilog *l)
{
	return l->len + (l->cr ? 1 : 0);
}

static void put_digits(char *p, unsigned v, int n)
{
	while (n-- > 0) {
		p[n] = (char)('0' + v % 10);
		v /= 10;
	}
}

/* "YYYY-MM-DDTHH:MM:SS." for a second since the epoch. */
static void format_second(char out[CRILOG_TS_LEN - 10], int64_t sec)
{
	struct tm tm;
	time_t t = (time_t)sec;
	/* now_ns fits 64 bits: at most the year 2554, always four digits. gmtime_r cannot
	 * fail on that range; the epoch stands in if it ever did. */
	if (!gmtime_r(&t, &tm)) {
		memset(&tm, 0, sizeof(tm));
		tm.tm_year = 70;
		tm.tm_mday = 1;
	}
	put_digits(out, (unsigned)(tm.tm_year + 1900), 4);
	out[4] = '-';
	put_digits(out + 5, (unsigned)(tm.tm_mon + 1), 2);
	out[7] = '-';
	put_digits(out + 8, (unsigned)tm.tm_mday, 2);
	out[10] = 'T';
	put_digits(out + 11, (unsigned)tm.tm_hour, 2);
	out[13] = ':';
	put_digits(out + 14, (unsigned)tm.tm_min, 2);
	out[16] = ':';
	/* A leap second never shows: time_t has none, gmtime gives 0..59. */
	put_digits(out + 17, (unsigned)tm.tm_sec, 2);
	out[19] = '.';
}

/* The CRILOG_TS_LEN characters (no NUL) after the seconds part. */
static void put_fraction(char *out, uint64_t now_ns)
{
	put_digits(out + CRILOG_TS_LEN - 10, (unsigned)(now_ns % NS_PER_SEC), 9);
	out[CRILOG_TS_LEN - 1] = 'Z';
}

/* The timestamp, reusing the seconds part while the second lasts. */
static void stamp(struct crilog *l, char *out, uint64_t now_ns)
{
	int64_t sec = (int64_t)(now_ns / NS_PER_SEC);
	if (sec != l->ts_sec) {
		format_second(l->ts_cache, sec);
		l->ts_sec = sec;
	}
	memcpy(out, l->ts_cache, sizeof(l->ts_cache));
	put_fraction(out, now_ns);
}

void crilog_format_time(char out[CRILOG_TS_LEN + 1], uint64_t now_ns)
{
	format_second(out, (int64_t)(now_ns / NS_PER_SEC));
	put_fraction(out, now_ns);
	out[CRILOG_TS_LEN] = '\0';
}

/* Write the pending content as one record and start the next piece. */
static int emit(struct crilog *l, char tag, uint64_t now_ns)
{
	char *r = l->rec;
	stamp(l, r, now_ns);
	memcpy(r + CRILOG_TS_LEN, " stdout ", 8);
	r[CRILOG_TS_LEN + 8] = tag;
	r[CRILOG_TS_LEN + 9] = ' ';
	r[CRILOG_HDR_LEN + l->len] = '\n';
	size_t n = CRILOG_HDR_LEN + l->len + 1;
	l->len = 0;
	l->in_line = tag == 'P';
	l->records++;
	return l->fd >= 0 ? l->write(l->fd, r, n, l->userdata) : 0;
}

static void keep_first_error(int *r, int rr)
{
	if (rr < 0 && *r == 0)
		*r = rr;
}

int crilog_feed(struct crilog *l, const void *buf, size_t n, uint64_t now_ns)
{
	const char *p = buf, *end = p + n;
	char *content = l->rec + CRILOG_HDR_LEN;
	int r = 0;

	while (p < end) {
		if (l->cr) {
			/* The "\r" that ended the last chunk: half of a line end, or content. */
			l->cr = false;
			if (*p == '\n') {
				keep_first_error(&r, emit(l, 'F', now_ns));
				p++;
				continue;
			}
			content[l->len++] = '\r';
			if (l->len == CRILOG_LINE_MAX)
				keep_first_error(&r, emit(l, 'P', now_ns));
			continue; /* *p is looked at afresh */
		}
		/* Copy up to the next "\r" or "\n", or until the piece is full. The piece is
		 * never full here: a full one was written at once. */
		size_t room = CRILOG_LINE_MAX - l->len, k = 0, avail = (size_t)(end - p);
		if (avail > room)
			avail = room;
		while (k < avail && p[k] != '\n' && p[k] != '\r')
			k++;
		memcpy(content + l->len, p, k);
		l->len += k;
		p += k;
		if (l->len == CRILOG_LINE_MAX) {
			keep_first_error(&r, emit(l, 'P', now_ns));
			continue;
		}
		if (p == end)
			break;
		if (*p == '\n')
			keep_first_error(&r, emit(l, 'F', now_ns));
		else
			l->cr = true;
		p++;
	}
	return r;
}

int crilog_flush(struct crilog *l, uint64_t now_ns)
{
	if (l->cr) {
		/* Nothing follows, so it is content; len < CRILOG_LINE_MAX, so it fits. */
		l->rec[CRILOG_HDR_LEN + l->len++] = '\r';
		l->cr = false;
	}
	/* P records already written need their F even when nothing is left (an exact
	 * multiple of 16 KiB): the line ends with an empty F. */
	if (l->len == 0 && !l->in_line)
		return 0;
	return emit(l, 'F', now_ns);
}
