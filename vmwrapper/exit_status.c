#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "exit_status.h"

const char *vm_end_name(enum vm_end e)
{
	static const char *names[] = { "guest-exit", "poweroff", "panic",      "reset",
				       "host-quit",  "signal",   "qemu-error", "guest-crash" };
	return names[e];
}

/* QEMU's warnings are not failures; any other stderr line after exit status 1 is. */
static bool stderr_has_error(const char *tail)
{
	if (!tail)
		return false;
	for (const char *line = tail; *line;) {
		const char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		if (len > 0 && !memmem(line, len, "warning:", 8))
			return true;
		if (!nl)
			break;
		line = nl + 1;
	}
	return false;
}

/* QEMU's status 1 with an error on stderr, or any status with one before QEMU was ready, is
 * QEMU's own failure: a guest's "exit:0" is status 1 too. */
static bool qemu_failed(const struct vm_facts *f)
{
	int st = WEXITSTATUS(f->wait_status);
	return stderr_has_error(f->stderr_tail) && (st == 1 || !f->started);
}

/* The value the guest wrote to isa-debug-exit, or -1. QEMU exits (v << 1) | 1 then. */
static int debug_exit_value(const struct vm_facts *f)
{
	int st = WEXITSTATUS(f->wait_status);
	return WIFEXITED(f->wait_status) && !qemu_failed(f) && (st & 1) ? st >> 1 : -1;
}

/* The default contract: the isa-debug-exit value is the code. */
static void classify_default(const struct vm_facts *f, struct vm_exit *ret)
{
	struct vm_exit e = { .end = VM_END_QEMU_ERROR, .exit_code = 1, .reason = "Error" };
	const char *why = f->shutdown_reason;
	int v;

	if (WIFSIGNALED(f->wait_status)) {
		e.end = VM_END_SIGNAL;
		e.signal = WTERMSIG(f->wait_status);
		e.exit_code = 128 + e.signal;
		e.reason = e.signal == 9 ? "Killed" : "Signaled";
	} else if (f->panicked || (why && strcmp(why, "guest-panic") == 0)) {
		e.end = VM_END_PANIC;
		e.reason = "GuestPanicked";
	} else if (why && strcmp(why, "guest-shutdown") == 0) {
		e = (struct vm_exit){ .end = VM_END_POWEROFF, .exit_code = 0, .reason = "Completed" };
	} else if (why && strcmp(why, "guest-reset") == 0) {
		e = (struct vm_exit){ .end = VM_END_RESET, .exit_code = 1, .reason = "GuestReset" };
	} else if (why && strcmp(why, "host-qmp-quit") == 0) {
		/* The host stopped it, as kubelet sees a killed container. */
		e = (struct vm_exit){ .end = VM_END_HOST_QUIT, .exit_code = 137, .reason = "Killed" };
	} else if (why && strcmp(why, "host-signal") == 0) {
		e = (struct vm_exit){ .end = VM_END_HOST_QUIT, .exit_code = 143, .reason = "Signaled" };
	} else if (why && strcmp(why, "host-error") == 0) {
		e.exit_code = WEXITSTATUS(f->wait_status) ? WEXITSTATUS(f->wait_status) : 1;
	} else if ((v = debug_exit_value(f)) >= 0) {
		e = (struct vm_exit){ .end = VM_END_GUEST_EXIT, .exit_code = v, .reason = v == 0 ? "Completed" : "Error" };
	} else if (WEXITSTATUS(f->wait_status) == 0 && !qemu_failed(f)) {
		e = (struct vm_exit){ .end = VM_END_POWEROFF, .exit_code = 0, .reason = "Completed" };
	} else {
		e.exit_code = WEXITSTATUS(f->wait_status) ? WEXITSTATUS(f->wait_status) : 1;
	}
	*ret = e;
}

static void set_guest_exit(struct vm_exit *e, int v)
{
	e->end = VM_END_GUEST_EXIT;
	e->exit_code = v;
	e->reason = v == 0 ? "Completed" : "Error";
}

static void set_crash(struct vm_exit *e)
{
	e->end = VM_END_GUEST_CRASH;
	e->exit_code = VM_EXIT_CRASH_CODE;
	e->reason = "GuestCrashed";
}

/* Unikraft 0.17 halts with an ACPI poweroff and then isa-debug-exit 41, which race (QEMU
 * may record either or both), and crashes with 42 before anything else. */
#define UNIKRAFT_HALT 41
#define UNIKRAFT_CRASH 42

static void classify_unikraft(const struct vm_facts *f, int v, struct vm_exit *e)
{
	if (v == UNIKRAFT_HALT) {
		set_guest_exit(e, 0);
	} else if (v == UNIKRAFT_CRASH) {
		const char *crit = f->console ? f->console->crit_line : "";
		set_crash(e);
		snprintf(e->message, sizeof(e->message), "Unikraft crashed (isa-debug-exit %d)%s%s", UNIKRAFT_CRASH,
			 crit[0] ? ": " : "", crit);
	} else if (v >= 0) {
		set_guest_exit(e, v);
	}
	/* No value: the ACPI poweroff won the race, or there was no isa-debug-exit: a halt. */
}

/* Solo5 writes 41 for every end; its console says which. */
#define SOLO5_EXIT_VALUE 41

static void classify_solo5(const struct vm_facts *f, int v, struct vm_exit *e)
{
	const struct exit_scan *c = f->console;
	if (c && c->solo5_aborted) {
		/* Whatever came after: a crash never reads Completed. */
		bool no_reason = strcmp(c->solo5_abort_line, EXIT_SCAN_SOLO5_ABORT_CALLED) == 0 && c->solo5_before_abort[0];
		set_crash(e);
		snprintf(e->message, sizeof(e->message), "%s%s%s%s", c->solo5_abort_line,
			 no_reason ? "; the Solo5 line before it: \"" : "", no_reason ? c->solo5_before_abort : "",
			 no_reason ? "\"" : "");
	} else if (v >= 0 && v != SOLO5_EXIT_VALUE) {
		set_guest_exit(e, v); /* not Solo5's own end: the value, as the default reads it */
	} else if (c && c->solo5_exited) {
		int n = c->solo5_code;
		/* A process status has 8 bits; out of range is 255, never 0 (Completed). */
		set_guest_exit(e, n >= 0 && n <= 255 ? n : 255);
		e->console_line = c->solo5_exit_line;
		if (n < 0 || n > 255)
			snprintf(e->message, sizeof(e->message), "solo5_exit(%d) is outside 0..255, reported as 255", n);
	} else {
		set_guest_exit(e, 1);
		snprintf(e->message, sizeof(e->message),
			 "the Solo5 guest ended (%s) without a \"Solo5: solo5_exit(N) called\" line on its console",
			 v >= 0 ? "isa-debug-exit 41" : "ACPI poweroff");
	}
}

void vm_exit_classify(const struct vm_facts *f, struct vm_exit *ret)
{
	classify_default(f, ret);
	ret->message[0] = '\0';
	ret->console_line = NULL;
	/* A contract reads the guest's own ends; a panic, a reset, a stop, a signal or a QEMU
	 * failure stays what it is. */
	if (ret->end != VM_END_GUEST_EXIT && ret->end != VM_END_POWEROFF)
		return;
	int v = debug_exit_value(f);
	if (f->contract == VM_EXIT_UNIKRAFT)
		classify_unikraft(f, v, ret);
	else if (f->contract == VM_EXIT_SOLO5)
		classify_solo5(f, v, ret);
}

json_object *vm_exit_to_json(const struct vm_exit *e, const struct vm_facts *f, uint64_t started_ns,
			     uint64_t finished_ns)
{
	json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	json_object_object_add(o, "version", json_object_new_int(1));
	json_object_object_add(o, "end", json_object_new_string(vm_end_name(e->end)));
	json_object_object_add(o, "exit_code", json_object_new_int(e->exit_code));
	json_object_object_add(o, "reason", json_object_new_string(e->reason));
	json_object_object_add(o, "contract", json_object_new_string(vm_exit_contract_name(f->contract)));
	if (e->end == VM_END_SIGNAL)
		json_object_object_add(o, "signal", json_object_new_int(e->signal));
	if (WIFEXITED(f->wait_status))
		json_object_object_add(o, "qemu_exit_status", json_object_new_int(WEXITSTATUS(f->wait_status)));
	if (f->shutdown_reason)
		json_object_object_add(o, "shutdown_reason", json_object_new_string(f->shutdown_reason));
	if (e->end == VM_END_QEMU_ERROR && f->stderr_tail)
		json_object_object_add(o, "message", json_object_new_string(f->stderr_tail));
	else if (e->message[0])
		json_object_object_add(o, "message", json_object_new_string(e->message));
	if (e->console_line)
		json_object_object_add(o, "console_line", json_object_new_string(e->console_line));
	json_object_object_add(o, "started_ns", json_object_new_uint64(started_ns));
	json_object_object_add(o, "finished_ns", json_object_new_uint64(finished_ns));
	return o;
}
