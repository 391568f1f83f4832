/* How a VM ended, from the facts vmwrapper saw, and its record in exit.json. */
#ifndef VMW_EXIT_STATUS_H
#define VMW_EXIT_STATUS_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "../src/common/error.h"

enum vm_end {
	VM_END_GUEST_EXIT, /* isa-debug-exit: QEMU status (v<<1)|1, we report v */
	VM_END_POWEROFF,   /* the guest powered itself off */
	VM_END_PANIC,      /* pvpanic: GUEST_PANICKED */
	VM_END_RESET,      /* the guest reset (e.g. triple fault); -no-reboot ends the VM */
	VM_END_HOST_QUIT,  /* stopped by the host: QMP quit or a signal to QEMU */
	VM_END_SIGNAL,     /* QEMU died of a signal */
	VM_END_QEMU_ERROR, /* QEMU failed: bad option, missing file, host error */
};

struct vm_facts {
	bool started;                /* QMP negotiation with QEMU completed */
	const char *shutdown_reason; /* SHUTDOWN event's "reason", NULL if none seen */
	bool panicked;               /* GUEST_PANICKED seen */
	int wait_status;             /* from waitpid() */
	const char *stderr_tail;     /* last lines QEMU wrote to stderr, may be NULL */
};

struct vm_exit {
	enum vm_end end;
	int exit_code; /* the container's exit code */
	int signal;    /* VM_END_SIGNAL only */
	const char *reason;
};

void vm_exit_classify(const struct vm_facts *f, struct vm_exit *ret);
const char *vm_end_name(enum vm_end e);

/* The exit.json document. */
json_object *vm_exit_to_json(const struct vm_exit *e, const struct vm_facts *f, uint64_t started_ns,
			     uint64_t finished_ns);

#endif
