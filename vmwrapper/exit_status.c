#include <string.h>
#include <sys/wait.h>

#include "exit_status.h"

const char *vm_end_name(enum vm_end e)
{
	static const char *names[] = { "guest-exit", "poweroff", "panic", "reset",
				       "host-quit",  "signal",   "qemu-error" };
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

void vm_exit_classify(const struct vm_facts *f, struct vm_exit *ret)
{
	struct vm_exit e = { .end = VM_END_QEMU_ERROR, .exit_code = 1, .reason = "Error" };
	const char *why = f->shutdown_reason;

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
	} else {
		int st = WEXITSTATUS(f->wait_status);
		bool failed = stderr_has_error(f->stderr_tail) && (st == 1 || !f->started);
		if (!failed && (st & 1)) {
			e.end = VM_END_GUEST_EXIT;
			e.exit_code = st >> 1;
			e.reason = e.exit_code == 0 ? "Completed" : "Error";
		} else if (!failed && st == 0) {
			e = (struct vm_exit){ .end = VM_END_POWEROFF, .exit_code = 0, .reason = "Completed" };
		} else {
			e.exit_code = st ? st : 1;
		}
	}
	*ret = e;
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
	if (e->end == VM_END_SIGNAL)
		json_object_object_add(o, "signal", json_object_new_int(e->signal));
	if (WIFEXITED(f->wait_status))
		json_object_object_add(o, "qemu_exit_status", json_object_new_int(WEXITSTATUS(f->wait_status)));
	if (f->shutdown_reason)
		json_object_object_add(o, "shutdown_reason", json_object_new_string(f->shutdown_reason));
	if (e->end == VM_END_QEMU_ERROR && f->stderr_tail)
		json_object_object_add(o, "message", json_object_new_string(f->stderr_tail));
	json_object_object_add(o, "started_ns", json_object_new_uint64(started_ns));
	json_object_object_add(o, "finished_ns", json_object_new_uint64(finished_ns));
	return o;
}
