/* What a guest's console says about how it ends, for the exit contracts that read it
 * (docs/architecture.md, "exit.json"):
 *
 * - Solo5 always ends through isa-debug-exit with 41, so its status is on the console:
 *   "Solo5: solo5_exit(N) called" for an exit (the last such line counts), and
 *   "Solo5: solo5_abort() called" or "Solo5: ABORT: <reason>" for an abort (the first one
 *   is kept, and an abort is never undone by a later exit line). "solo5_abort() called"
 *   gives no reason, so the Solo5 line before it is kept too ("PCI enumeration failed.
 *   Aborting.");
 * - Unikraft prints its assertion failures and crashes as "[ time] CRIT: …"; the last such
 *   line goes into the crash message.
 *
 * A pure state machine fed the console's bytes as they pass: one pending line in a fixed
 * buffer, no allocation. "\r\n" and "\n" end a line, and a line may arrive in any number
 * of pieces. A line longer than EXIT_SCAN_LINE_MAX bytes cannot be one of these and is
 * skipped to its end, never grown into. Lines kept for messages are printable ASCII: other
 * bytes become '?', so they are safe in JSON and in a CRI message. */
#ifndef VMW_GUEST_EXIT_H
#define VMW_GUEST_EXIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spec.h"

/* Solo5's abort that gives no reason of its own. */
#define EXIT_SCAN_SOLO5_ABORT_CALLED "Solo5: solo5_abort() called"

/* The longest line looked at, without its line end. */
#define EXIT_SCAN_LINE_MAX 512

struct exit_scan {
	enum vm_exit_contract contract; /* VM_EXIT_DEFAULT: nothing is looked at */
	size_t len;                     /* bytes of the pending line in line[] */
	bool overlong;                  /* the pending line outgrew line[]: skipped to its end */
	uint64_t lines;                 /* lines looked at (overlong ones not counted) */
	char line[EXIT_SCAN_LINE_MAX + 1]; /* the pending line; +1 for the "\r" of its "\r\n" */

	/* Solo5 */
	bool solo5_exited;   /* a "Solo5: solo5_exit(N) called" line was seen */
	int solo5_code;      /* N of the last one */
	bool solo5_aborted;  /* a "Solo5: solo5_abort() called" or "Solo5: ABORT: …" line was seen */
	char solo5_exit_line[EXIT_SCAN_LINE_MAX + 1];  /* the last exit line, from "Solo5:" on */
	char solo5_abort_line[EXIT_SCAN_LINE_MAX + 1]; /* the first abort line, from "Solo5:" on */
	char solo5_before_abort[EXIT_SCAN_LINE_MAX + 1]; /* the last "Solo5: " line before it, or "" */
	/* Unikraft */
	char crit_line[EXIT_SCAN_LINE_MAX + 1]; /* the last "CRIT: " line, whole; "" if none */
};

void exit_scan_init(struct exit_scan *s, enum vm_exit_contract contract);
/* Console bytes, as they come. */
void exit_scan_feed(struct exit_scan *s, const void *buf, size_t n);
/* The console ended: a pending line without its line end counts as a line. */
void exit_scan_end(struct exit_scan *s);

#endif
