/* The console as a CRI container log, the format kubelet reads (docs/architecture.md,
 * "The console log"):
 *
 *     2026-11-25T10:00:00.123456789Z stdout F hello\n
 *
 * One record per line: a UTC timestamp with exactly nine fractional digits, the stream
 * (always stdout: a serial console has one), a tag (F for a full line or the last piece
 * of one, P for a 16 KiB piece of a longer line), one space, the bytes, "\n".
 * "\r\n" from the serial console is one line end; any other byte, "\r" and NUL included,
 * is content and passes unchanged.
 *
 * A pure state machine: it keeps the pending part of the current line (at most
 * CRILOG_LINE_MAX bytes, in the struct itself, no allocation) and hands every finished
 * record, built in one buffer, to a write function in one call. The clock is an
 * argument, so tests need no time of their own. */
#ifndef VMW_CRILOG_H
#define VMW_CRILOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The content of one record at most; longer lines become P records of this size. */
#define CRILOG_LINE_MAX (16 * 1024)
/* "2026-11-25T10:00:00.123456789Z" */
#define CRILOG_TS_LEN 30
/* Timestamp, " stdout P ": what precedes the content of every record. */
#define CRILOG_HDR_LEN (CRILOG_TS_LEN + sizeof(" stdout P ") - 1)
#define CRILOG_RECORD_MAX (CRILOG_HDR_LEN + CRILOG_LINE_MAX + 1)

/* Writes one whole record; returns 0 or -errno. The default writes it to fd with write(2),
 * resuming after EINTR and short writes. */
typedef int (*crilog_write_fn)(int fd, const void *buf, size_t len, void *userdata);

struct crilog {
	int fd;
	crilog_write_fn write;
	void *userdata;
	bool cr;          /* the last byte seen was "\r": a line end if "\n" follows, else content */
	bool in_line;     /* P records of the current line were written; its F is still due */
	size_t len;       /* pending content bytes of the current line, in rec + CRILOG_HDR_LEN */
	uint64_t records; /* records handed to the writer (or dropped for want of an fd) */
	int64_t ts_sec;   /* the second ts_cache holds, -1 for none */
	char ts_cache[CRILOG_TS_LEN - 10]; /* "2026-11-25T10:00:00." for ts_sec */
	char rec[CRILOG_RECORD_MAX]; /* the record being built: header, content, "\n" */
};

/* Start empty, writing to fd (may be -1: records are dropped until crilog_set_fd). */
void crilog_init(struct crilog *l, int fd);
/* Use another writer (tests capture into memory); NULL restores the default. */
void crilog_set_writer(struct crilog *l, crilog_write_fn fn, void *userdata);
/* Continue in another file, after a reopen. The pending line is kept: records already
 * written stay in the old file whole, and the line continues in the new one. */
void crilog_set_fd(struct crilog *l, int fd);

/* Consume console bytes; every record they complete is written, stamped now_ns (ns since
 * the epoch, UTC). Returns 0, or the first write error (-errno): that record is lost,
 * the state stays consistent and later records are still attempted. */
int crilog_feed(struct crilog *l, const void *buf, size_t n, uint64_t now_ns);
/* The console ended: write the pending partial line, if any, as an F record (a pending
 * "\r" is content then). Writes nothing when no line is pending. */
int crilog_flush(struct crilog *l, uint64_t now_ns);
/* Bytes of the current line not written yet (a pending "\r" counts). */
size_t crilog_pending(const struct crilog *l);

/* The record timestamp for now_ns: exactly CRILOG_TS_LEN characters plus a NUL. */
void crilog_format_time(char out[CRILOG_TS_LEN + 1], uint64_t now_ns);

#endif
