/* Unit tests for the exit contracts: the console scanner (vmwrapper/guest_exit.c) fed byte
 * by byte and at every split point, and the classification of each contract against each
 * way a VM can end (vmwrapper/exit_status.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "../../vmwrapper/exit_status.h"
#include "../../vmwrapper/guest_exit.h"

#define LIT(s) s, sizeof(s) - 1

/* The tail of a real test_hello.virtio console (Solo5 0.12.1), as QEMU's serial sends it. */
static const char hello_console[] =
	"            |      ___|\r\n"
	"Solo5: Bindings version v0.12.1\r\n"
	"Solo5: Clock source: TSC, frequency estimate is 2696781330 Hz\r\n"
	"\r\n**** Solo5 standalone test_hello ****\r\n\r\n"
	"Hello, World\r\n"
	"Command line is: 'arg1 arg2'\r\n"
	"Solo5: solo5_exit(0) called\r\n";

/* test_ssp.virtio's: the ABORT line, then a stray NUL with no line end. */
static const char ssp_console[] =
	"1234567890123456789012345678901234567890\r\n"
	"Solo5: ABORT: Stack corruption detected\r\n\0";

/* test_hello.virtio with a NIC its manifest does not declare. */
#define NOT_IN_MANIFEST                                   \
	"Solo5: Virtio net: PCI:00:02 not in manifest\r\n"  \
	"Solo5: PCI enumeration failed. Aborting.\r\n"      \
	"Solo5: solo5_abort() called\r\n"

static void scan_all(struct exit_scan *s, enum vm_exit_contract c, const char *buf, size_t n)
{
	exit_scan_init(s, c);
	exit_scan_feed(s, buf, n);
	exit_scan_end(s);
}

static void solo5_exit_line_is_read(void **state)
{
	(void)state;
	struct exit_scan s;
	scan_all(&s, VM_EXIT_SOLO5, LIT(hello_console));
	assert_true(s.solo5_exited);
	assert_int_equal(s.solo5_code, 0);
	assert_false(s.solo5_aborted);
	assert_string_equal(s.solo5_exit_line, "Solo5: solo5_exit(0) called");
	assert_int_equal(s.lines, 9);
}

/* The scanner's findings and state (the line buffer's stale bytes aside). */
static void same_scan(const struct exit_scan *a, const struct exit_scan *b)
{
	assert_int_equal(a->lines, b->lines);
	assert_int_equal(a->len, b->len);
	assert_int_equal(a->overlong, b->overlong);
	assert_int_equal(a->solo5_exited, b->solo5_exited);
	assert_int_equal(a->solo5_code, b->solo5_code);
	assert_int_equal(a->solo5_aborted, b->solo5_aborted);
	assert_string_equal(a->solo5_exit_line, b->solo5_exit_line);
	assert_string_equal(a->solo5_abort_line, b->solo5_abort_line);
	assert_string_equal(a->solo5_before_abort, b->solo5_before_abort);
	assert_string_equal(a->crit_line, b->crit_line);
}

/* Every split of the transcript into two reads, and one byte per read, give the same. */
static void split_points_do_not_matter(void **state)
{
	(void)state;
	static const struct {
		const char *buf;
		size_t len;
	} transcripts[] = { { LIT(hello_console) }, { ssp_console, sizeof(ssp_console) } };
	for (size_t t = 0; t < sizeof(transcripts) / sizeof(transcripts[0]); t++) {
		const char *buf = transcripts[t].buf;
		size_t n = transcripts[t].len;
		struct exit_scan whole, s;
		scan_all(&whole, VM_EXIT_SOLO5, buf, n);
		for (size_t cut = 0; cut <= n; cut++) {
			exit_scan_init(&s, VM_EXIT_SOLO5);
			exit_scan_feed(&s, buf, cut);
			exit_scan_feed(&s, buf + cut, n - cut);
			exit_scan_end(&s);
			same_scan(&s, &whole);
		}
		exit_scan_init(&s, VM_EXIT_SOLO5);
		for (size_t i = 0; i < n; i++)
			exit_scan_feed(&s, buf + i, 1);
		exit_scan_end(&s);
		same_scan(&s, &whole);
	}
}

static void solo5_abort_lines(void **state)
{
	(void)state;
	struct exit_scan s;
	scan_all(&s, VM_EXIT_SOLO5, ssp_console, sizeof(ssp_console));
	assert_true(s.solo5_aborted);
	assert_false(s.solo5_exited);
	assert_string_equal(s.solo5_abort_line, "Solo5: ABORT: Stack corruption detected");

	scan_all(&s, VM_EXIT_SOLO5, LIT("Solo5: trap: type=#PF ec=0x2\r\nSolo5: ABORT: cpu_x86_64.c:182: Fatal trap\r\n"));
	assert_string_equal(s.solo5_abort_line, "Solo5: ABORT: cpu_x86_64.c:182: Fatal trap");

	/* The Solo5 line before the abort is kept too (the last before the first abort). */
	scan_all(&s, VM_EXIT_SOLO5, LIT(NOT_IN_MANIFEST "Solo5: later\r\n"));
	assert_string_equal(s.solo5_abort_line, "Solo5: solo5_abort() called");
	assert_string_equal(s.solo5_before_abort, "Solo5: PCI enumeration failed. Aborting.");

	/* The first abort is the cause and is kept; an exit line after it is still read. */
	scan_all(&s, VM_EXIT_SOLO5,
		 LIT("Solo5: solo5_abort() called\nSolo5: ABORT: later\nSolo5: solo5_exit(0) called\n"));
	assert_true(s.solo5_aborted);
	assert_string_equal(s.solo5_abort_line, "Solo5: solo5_abort() called");
	assert_true(s.solo5_exited);
}

/* "\r\n", a bare "\n", and a last line with no line end at all. */
static void line_ends(void **state)
{
	(void)state;
	struct exit_scan s;
	scan_all(&s, VM_EXIT_SOLO5, LIT("a\nSolo5: solo5_exit(4) called\n"));
	assert_int_equal(s.solo5_code, 4);
	scan_all(&s, VM_EXIT_SOLO5, LIT("a\r\nSolo5: solo5_exit(5) called"));
	assert_int_equal(s.solo5_code, 5);
	assert_string_equal(s.solo5_exit_line, "Solo5: solo5_exit(5) called");
	/* A lone "\r" is content: this line does not end with ") called". */
	scan_all(&s, VM_EXIT_SOLO5, LIT("Solo5: solo5_exit(6) called\r\r\n"));
	assert_false(s.solo5_exited);
	/* Without exit_scan_end a pending line is not a line yet. */
	exit_scan_init(&s, VM_EXIT_SOLO5);
	exit_scan_feed(&s, LIT("Solo5: solo5_exit(7) called"));
	assert_false(s.solo5_exited);
	exit_scan_end(&s);
	assert_int_equal(s.solo5_code, 7);
}

/* Only the exact shape printf's "%d" makes counts; the last good line wins. */
static void fake_and_garbled_exit_lines(void **state)
{
	(void)state;
	static const char *const ignored[] = {
		"Solo5: solo5_exit(abc) called",
		"Solo5: solo5_exit() called",
		"Solo5: solo5_exit(3 called",
		"Solo5: solo5_exit(3) called!",
		"Solo5: solo5_exit(3) calle",
		"Solo5: solo5_exit(--3) called",
		"Solo5: solo5_exit(-) called",
		"Solo5: solo5_exit( 3) called",
		"Solo5: solo5_exit(3)  called",
		"Solo5: solo5_exit(",
		"solo5_exit(3) called",
		"Solo5: solo5_exit(2147483648) called",  /* INT_MAX + 1 */
		"Solo5: solo5_exit(-2147483649) called", /* INT_MIN - 1 */
		"Solo5: solo5_exit(99999999999999999999999) called",
		"Solo5: solo5_exit(12345678901) called",
	};
	struct exit_scan s;
	for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++) {
		scan_all(&s, VM_EXIT_SOLO5, ignored[i], strlen(ignored[i]));
		if (s.solo5_exited || s.solo5_aborted)
			fail_msg("\"%s\" was taken (code %d)", ignored[i], s.solo5_code);
	}
	scan_all(&s, VM_EXIT_SOLO5, LIT("Solo5: solo5_exit(2147483647) called\n"));
	assert_int_equal(s.solo5_code, 2147483647);
	scan_all(&s, VM_EXIT_SOLO5, LIT("Solo5: solo5_exit(-2147483648) called\n"));
	assert_int_equal(s.solo5_code, -2147483648);
	/* A garbled one, then the real one, on the same line; and after other output. */
	scan_all(&s, VM_EXIT_SOLO5, LIT("Solo5: solo5_exit(xSolo5: solo5_exit(9) called\n"));
	assert_int_equal(s.solo5_code, 9);
	assert_string_equal(s.solo5_exit_line, "Solo5: solo5_exit(9) called");
	scan_all(&s, VM_EXIT_SOLO5, LIT("app output without its newlineSolo5: solo5_exit(8) called\n"));
	assert_int_equal(s.solo5_code, 8);
	/* The last one counts. */
	scan_all(&s, VM_EXIT_SOLO5, LIT("Solo5: solo5_exit(1) called\nSolo5: solo5_exit(2) called\nnoise\n"));
	assert_int_equal(s.solo5_code, 2);
}

static void many_lines(void **state)
{
	(void)state;
	struct exit_scan s;
	exit_scan_init(&s, VM_EXIT_SOLO5);
	char line[64];
	for (int i = 0; i < 100000; i++) {
		int n = snprintf(line, sizeof(line), i % 1000 == 0 ? "Solo5: solo5_exit(%d) called\r\n" : "line %d\r\n",
				 i / 1000);
		exit_scan_feed(&s, line, (size_t)n);
	}
	exit_scan_end(&s);
	assert_int_equal(s.lines, 100000);
	assert_int_equal(s.solo5_code, 99);
}

/* Lines up to EXIT_SCAN_LINE_MAX bytes are read, longer ones skipped to their end. */
static void long_lines_are_skipped(void **state)
{
	(void)state;
	static const char tail[] = "Solo5: solo5_exit(5) called";
	char buf[2 * EXIT_SCAN_LINE_MAX];
	struct exit_scan s;
	for (size_t len = EXIT_SCAN_LINE_MAX - 2; len <= EXIT_SCAN_LINE_MAX + 2; len++) {
		for (int crlf = 0; crlf < 2; crlf++) {
			size_t pad = len - strlen(tail);
			memset(buf, 'x', pad);
			memcpy(buf + pad, tail, strlen(tail));
			memcpy(buf + len, crlf ? "\r\n" : "\n", 2);
			scan_all(&s, VM_EXIT_SOLO5, buf, len + 1 + (size_t)crlf);
			if (s.solo5_exited != (len <= EXIT_SCAN_LINE_MAX))
				fail_msg("a line of %zu bytes (crlf %d): taken %d", len, crlf, s.solo5_exited);
		}
	}
	/* A very long line, then a good one: the long one does not spill over. */
	exit_scan_init(&s, VM_EXIT_SOLO5);
	memset(buf, 'y', sizeof(buf));
	for (int i = 0; i < 100; i++)
		exit_scan_feed(&s, buf, sizeof(buf));
	exit_scan_feed(&s, LIT("Solo5: solo5_exit(3) called\r\nSolo5: solo5_exit(4) called\r\n"));
	exit_scan_end(&s);
	assert_int_equal(s.solo5_code, 4);
	assert_int_equal(s.lines, 1);
	assert_true(s.len == 0 && !s.overlong);
}

/* What is kept for a message is printable ASCII. */
static void kept_lines_are_printable(void **state)
{
	(void)state;
	struct exit_scan s;
	scan_all(&s, VM_EXIT_SOLO5, LIT("Solo5: ABORT: bad \x01\xff\x7f\"x\"\0end\r\n"));
	assert_string_equal(s.solo5_abort_line, "Solo5: ABORT: bad ???\"x\"?end");
}

static void unikraft_crit_lines(void **state)
{
	(void)state;
	struct exit_scan s;
	scan_all(&s, VM_EXIT_UNIKRAFT,
		 LIT("[    0.000000] CRIT: first\r\nHello world!\r\n"
		     "[    0.000000] CRIT: [libukboot] <boot.c @  216> Assertion failure: (md)->len\r\nafter\r\n"));
	assert_string_equal(s.crit_line, "[    0.000000] CRIT: [libukboot] <boot.c @  216> Assertion failure: (md)->len");
	/* Solo5's lines mean nothing to this contract, and nothing at all to the default one. */
	assert_false(s.solo5_exited);
	scan_all(&s, VM_EXIT_DEFAULT, LIT(hello_console));
	assert_false(s.solo5_exited);
	assert_int_equal(s.lines, 0);
	scan_all(&s, VM_EXIT_UNIKRAFT, LIT("Hello world!\r\n"));
	assert_string_equal(s.crit_line, "");
}

/* ---- the classification: each contract against each end ---- */

#define EXITED(c) ((c) << 8)
#define SIGNALED(s) (s)
#define DEBUG_EXIT(v) EXITED(((v) << 1) | 1)

enum end_case { E_41, E_42, E_0, E_3, E_POWEROFF, E_RACE_41, E_PANIC, E_RESET, E_QUIT, E_KILLED, E_QEMU_ERR, E_N };

static struct vm_facts facts_for(enum end_case c)
{
	struct vm_facts f = { .started = true };
	switch (c) {
	case E_41: f.wait_status = DEBUG_EXIT(41); break;
	case E_42: f.wait_status = DEBUG_EXIT(42); break;
	case E_0: f.wait_status = DEBUG_EXIT(0); break;
	case E_3: f.wait_status = DEBUG_EXIT(3); break;
	case E_POWEROFF: f.wait_status = EXITED(0); f.shutdown_reason = "guest-shutdown"; break;
	/* Unikraft's halt: ACPI poweroff and isa-debug-exit 41 race, and QEMU saw both. */
	case E_RACE_41: f.wait_status = DEBUG_EXIT(41); f.shutdown_reason = "guest-shutdown"; break;
	case E_PANIC: f.wait_status = EXITED(0); f.panicked = true; f.shutdown_reason = "guest-panic"; break;
	case E_RESET: f.wait_status = EXITED(0); f.shutdown_reason = "guest-reset"; break;
	case E_QUIT: f.wait_status = EXITED(0); f.shutdown_reason = "host-qmp-quit"; break;
	case E_KILLED: f.wait_status = SIGNALED(9); break;
	case E_QEMU_ERR: f.wait_status = EXITED(1); f.started = false; f.stderr_tail = "qemu: -kernel x: No such file\n"; break;
	case E_N: break;
	}
	return f;
}

struct want {
	enum end_case end_case;
	const char *console;
	enum vm_end end;
	int code;
	const char *reason;
	const char *message; /* a part of it; NULL: none */
	const char *line;    /* console_line; NULL: none */
};

static void check(enum vm_exit_contract contract, const struct want *w, size_t i)
{
	struct vm_facts f = facts_for(w->end_case);
	struct exit_scan s;
	scan_all(&s, contract, w->console, strlen(w->console));
	f.contract = contract;
	f.console = &s;
	struct vm_exit e;
	vm_exit_classify(&f, &e);
	bool ok = e.end == w->end && e.exit_code == w->code && strcmp(e.reason, w->reason) == 0 &&
		  (w->message ? strstr(e.message, w->message) != NULL : e.message[0] == '\0') &&
		  (w->line ? e.console_line && strcmp(e.console_line, w->line) == 0 : !e.console_line);
	if (!ok)
		fail_msg("%s case %zu: got %s/%d/%s message \"%s\" line \"%s\"", vm_exit_contract_name(contract), i,
			 vm_end_name(e.end), e.exit_code, e.reason, e.message, e.console_line ? e.console_line : "");
}

#define CRIT "[    0.000000] CRIT: [libukboot] <boot.c @  216> Assertion failure: x\r\n"
#define S5_EXIT(n) "Solo5: solo5_exit(" #n ") called\r\n"
#define S5_ABORT "Solo5: ABORT: Stack corruption detected\r\n"

static void default_contract_is_unchanged(void **state)
{
	(void)state;
	static const struct want table[] = {
		{ E_41, S5_EXIT(0), VM_END_GUEST_EXIT, 41, "Error", NULL, NULL },
		{ E_42, CRIT, VM_END_GUEST_EXIT, 42, "Error", NULL, NULL },
		{ E_0, "", VM_END_GUEST_EXIT, 0, "Completed", NULL, NULL },
		{ E_3, "", VM_END_GUEST_EXIT, 3, "Error", NULL, NULL },
		{ E_POWEROFF, "", VM_END_POWEROFF, 0, "Completed", NULL, NULL },
		{ E_RACE_41, "", VM_END_POWEROFF, 0, "Completed", NULL, NULL },
		{ E_PANIC, "", VM_END_PANIC, 1, "GuestPanicked", NULL, NULL },
		{ E_RESET, "", VM_END_RESET, 1, "GuestReset", NULL, NULL },
		{ E_QUIT, "", VM_END_HOST_QUIT, 137, "Killed", NULL, NULL },
		{ E_KILLED, "", VM_END_SIGNAL, 137, "Killed", NULL, NULL },
		{ E_QEMU_ERR, "", VM_END_QEMU_ERROR, 1, "Error", NULL, NULL },
	};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		check(VM_EXIT_DEFAULT, &table[i], i);
}

static void unikraft_contract(void **state)
{
	(void)state;
	static const struct want table[] = {
		{ E_41, "Hello world!\r\n", VM_END_GUEST_EXIT, 0, "Completed", NULL, NULL },
		{ E_RACE_41, "", VM_END_GUEST_EXIT, 0, "Completed", NULL, NULL },
		{ E_POWEROFF, "", VM_END_POWEROFF, 0, "Completed", NULL, NULL },
		{ E_42, "Hello\r\n" CRIT "after\r\n", VM_END_GUEST_CRASH, 134, "GuestCrashed",
		  "Unikraft crashed (isa-debug-exit 42): [    0.000000] CRIT: [libukboot] <boot.c @  216> Assertion failure: x",
		  NULL },
		{ E_42, "", VM_END_GUEST_CRASH, 134, "GuestCrashed", "Unikraft crashed (isa-debug-exit 42)", NULL },
		{ E_3, "", VM_END_GUEST_EXIT, 3, "Error", NULL, NULL },
		{ E_0, "", VM_END_GUEST_EXIT, 0, "Completed", NULL, NULL },
		{ E_PANIC, CRIT, VM_END_PANIC, 1, "GuestPanicked", NULL, NULL },
		{ E_RESET, "", VM_END_RESET, 1, "GuestReset", NULL, NULL },
		{ E_QUIT, "", VM_END_HOST_QUIT, 137, "Killed", NULL, NULL },
		{ E_KILLED, "", VM_END_SIGNAL, 137, "Killed", NULL, NULL },
		{ E_QEMU_ERR, "", VM_END_QEMU_ERROR, 1, "Error", NULL, NULL },
	};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		check(VM_EXIT_UNIKRAFT, &table[i], i);
}

static void solo5_contract(void **state)
{
	(void)state;
	static const struct want table[] = {
		{ E_41, S5_EXIT(0), VM_END_GUEST_EXIT, 0, "Completed", NULL, "Solo5: solo5_exit(0) called" },
		{ E_41, S5_EXIT(3), VM_END_GUEST_EXIT, 3, "Error", NULL, "Solo5: solo5_exit(3) called" },
		{ E_41, S5_EXIT(255), VM_END_GUEST_EXIT, 255, "Error", NULL, "Solo5: solo5_exit(255) called" },
		{ E_41, S5_EXIT(1) S5_EXIT(0), VM_END_GUEST_EXIT, 0, "Completed", NULL, "Solo5: solo5_exit(0) called" },
		/* Out of a status's range: 255, never 0, and the message says what it was. */
		{ E_41, S5_EXIT(256), VM_END_GUEST_EXIT, 255, "Error", "solo5_exit(256) is outside 0..255",
		  "Solo5: solo5_exit(256) called" },
		{ E_41, S5_EXIT(-1), VM_END_GUEST_EXIT, 255, "Error", "solo5_exit(-1)", "Solo5: solo5_exit(-1) called" },
		{ E_41, S5_ABORT, VM_END_GUEST_CRASH, 134, "GuestCrashed", "Solo5: ABORT: Stack corruption detected", NULL },
		{ E_41, "Solo5: solo5_abort() called\r\n", VM_END_GUEST_CRASH, 134, "GuestCrashed",
		  "Solo5: solo5_abort() called", NULL },
		{ E_41, NOT_IN_MANIFEST, VM_END_GUEST_CRASH, 134, "GuestCrashed",
		  "Solo5: solo5_abort() called; the Solo5 line before it: \"Solo5: PCI enumeration failed. Aborting.\"",
		  NULL },
		/* An abort is never undone by an exit line, in either order. */
		{ E_41, S5_ABORT S5_EXIT(0), VM_END_GUEST_CRASH, 134, "GuestCrashed", "Stack corruption", NULL },
		{ E_41, S5_EXIT(0) S5_ABORT, VM_END_GUEST_CRASH, 134, "GuestCrashed", "Stack corruption", NULL },
		{ E_41, "Hello, World\r\n", VM_END_GUEST_EXIT, 1, "Error", "without a \"Solo5: solo5_exit(N) called\" line",
		  NULL },
		{ E_41, "", VM_END_GUEST_EXIT, 1, "Error", "isa-debug-exit 41", NULL },
		{ E_POWEROFF, "", VM_END_GUEST_EXIT, 1, "Error", "ACPI poweroff", NULL },
		{ E_POWEROFF, S5_EXIT(0), VM_END_GUEST_EXIT, 0, "Completed", NULL, "Solo5: solo5_exit(0) called" },
		{ E_RACE_41, S5_EXIT(2), VM_END_GUEST_EXIT, 2, "Error", NULL, "Solo5: solo5_exit(2) called" },
		/* Not Solo5's own value: read as the default contract does. */
		{ E_3, S5_EXIT(0), VM_END_GUEST_EXIT, 3, "Error", NULL, NULL },
		{ E_42, S5_ABORT, VM_END_GUEST_CRASH, 134, "GuestCrashed", "Stack corruption", NULL },
		{ E_PANIC, S5_EXIT(0), VM_END_PANIC, 1, "GuestPanicked", NULL, NULL },
		{ E_RESET, S5_EXIT(0), VM_END_RESET, 1, "GuestReset", NULL, NULL },
		{ E_QUIT, S5_EXIT(0), VM_END_HOST_QUIT, 137, "Killed", NULL, NULL },
		{ E_KILLED, S5_EXIT(0), VM_END_SIGNAL, 137, "Killed", NULL, NULL },
		{ E_QEMU_ERR, S5_EXIT(0), VM_END_QEMU_ERROR, 1, "Error", NULL, NULL },
	};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		check(VM_EXIT_SOLO5, &table[i], i);
}

/* Whatever the contract and the way it ended, a crash the contract can see never reads
 * Completed, and neither does an end that is no end of the guest's own. */
static void a_crash_never_reads_completed(void **state)
{
	(void)state;
	static const char *const consoles[] = { "", S5_EXIT(0), S5_ABORT, S5_ABORT S5_EXIT(0), CRIT };
	for (int c = VM_EXIT_DEFAULT; c <= VM_EXIT_SOLO5; c++)
		for (int ec = 0; ec < E_N; ec++)
			for (size_t k = 0; k < sizeof(consoles) / sizeof(consoles[0]); k++) {
				struct vm_facts f = facts_for((enum end_case)ec);
				struct exit_scan s;
				scan_all(&s, (enum vm_exit_contract)c, consoles[k], strlen(consoles[k]));
				f.contract = (enum vm_exit_contract)c;
				f.console = &s;
				struct vm_exit e;
				vm_exit_classify(&f, &e);
				bool crash = (c == VM_EXIT_UNIKRAFT && ec == E_42) || (c == VM_EXIT_SOLO5 && s.solo5_aborted) ||
					     ec == E_PANIC || ec == E_RESET || ec == E_KILLED || ec == E_QEMU_ERR;
				bool completed = strcmp(e.reason, "Completed") == 0;
				if (crash && (completed || e.exit_code == 0))
					fail_msg("contract %d end %d console %zu: %s/%d", c, ec, k, e.reason, e.exit_code);
				/* Completed is always code 0, and code 0 always Completed. */
				if (completed != (e.exit_code == 0))
					fail_msg("contract %d end %d console %zu: %s/%d", c, ec, k, e.reason, e.exit_code);
			}
}

static void exit_json_names_the_contract_and_line(void **state)
{
	(void)state;
	struct vm_facts f = facts_for(E_41);
	struct exit_scan s;
	scan_all(&s, VM_EXIT_SOLO5, LIT(hello_console));
	f.contract = VM_EXIT_SOLO5;
	f.console = &s;
	struct vm_exit e;
	vm_exit_classify(&f, &e);
	json_object *o = vm_exit_to_json(&e, &f, 1, 2), *v;
	assert_true(json_object_object_get_ex(o, "contract", &v));
	assert_string_equal(json_object_get_string(v), "solo5");
	assert_true(json_object_object_get_ex(o, "console_line", &v));
	assert_string_equal(json_object_get_string(v), "Solo5: solo5_exit(0) called");
	assert_false(json_object_object_get_ex(o, "message", &v));
	json_object_put(o);

	scan_all(&s, VM_EXIT_SOLO5, LIT(S5_ABORT));
	vm_exit_classify(&f, &e);
	o = vm_exit_to_json(&e, &f, 1, 2);
	assert_true(json_object_object_get_ex(o, "end", &v));
	assert_string_equal(json_object_get_string(v), "guest-crash");
	assert_true(json_object_object_get_ex(o, "message", &v));
	assert_string_equal(json_object_get_string(v), "Solo5: ABORT: Stack corruption detected");
	assert_false(json_object_object_get_ex(o, "console_line", &v));
	json_object_put(o);

	f = facts_for(E_3);
	vm_exit_classify(&f, &e);
	o = vm_exit_to_json(&e, &f, 1, 2);
	assert_true(json_object_object_get_ex(o, "contract", &v));
	assert_string_equal(json_object_get_string(v), "default");
	json_object_put(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(solo5_exit_line_is_read),
		cmocka_unit_test(split_points_do_not_matter),
		cmocka_unit_test(solo5_abort_lines),
		cmocka_unit_test(line_ends),
		cmocka_unit_test(fake_and_garbled_exit_lines),
		cmocka_unit_test(many_lines),
		cmocka_unit_test(long_lines_are_skipped),
		cmocka_unit_test(kept_lines_are_printable),
		cmocka_unit_test(unikraft_crit_lines),
		cmocka_unit_test(default_contract_is_unchanged),
		cmocka_unit_test(unikraft_contract),
		cmocka_unit_test(solo5_contract),
		cmocka_unit_test(a_crash_never_reads_completed),
		cmocka_unit_test(exit_json_names_the_contract_and_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
