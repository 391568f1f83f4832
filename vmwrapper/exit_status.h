/* How a VM ended, from the facts vmwrapper saw, and its record in exit.json. */
#ifndef VMW_EXIT_STATUS_H
#define VMW_EXIT_STATUS_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "../src/common/error.h"
#include "guest_exit.h"
#include "spec.h"

enum vm_end {
	VM_END_GUEST_EXIT, /* isa-debug-exit: QEMU status (v<<1)|1, we report v */
	VM_END_POWEROFF,   /* the guest powered itself off */
	VM_END_PANIC,      /* pvpanic: GUEST_PANICKED */
	VM_END_RESET,      /* the guest reset (e.g. triple fault); -no-reboot ends the VM */
	VM_END_HOST_QUIT,  /* stopped by the host: QMP quit or a signal to QEMU */
	VM_END_SIGNAL,     /* QEMU died of a signal */
	VM_END_QEMU_ERROR, /* QEMU failed: bad option, missing file, host error */
	VM_END_GUEST_CRASH, /* the exit contract read a crash: Unikraft's 42, a Solo5 abort */
};

struct vm_facts {
	bool started;                /* QMP negotiation with QEMU completed */
	const char *shutdown_reason; /* SHUTDOWN event's "reason", NULL if none seen */
	bool panicked;               /* GUEST_PANICKED seen */
	int wait_status;             /* from waitpid() */
	const char *stderr_tail;     /* last lines QEMU wrote to stderr, may be NULL */
	enum vm_exit_contract contract;
	const struct exit_scan *console; /* what the console showed (guest_exit.h); may be NULL */
};

/* The exit code of a crash the contract read, as a process killed by SIGABRT has it. */
#define VM_EXIT_CRASH_CODE 134
#define VM_EXIT_MESSAGE_MAX (2 * EXIT_SCAN_LINE_MAX + 128)

struct vm_exit {
	enum vm_end end;
	int exit_code; /* the container's exit code */
	int signal;    /* VM_END_SIGNAL only */
	const char *reason;
	/* The contract's account of the end ("" for none): a crash and its console line, an
	 * exit that left no exit line. Printable ASCII. */
	char message[VM_EXIT_MESSAGE_MAX];
	const char *console_line; /* Solo5: the console line the code came from, or NULL */
};

void vm_exit_classify(const struct vm_facts *f, struct vm_exit *ret);
const char *vm_end_name(enum vm_end e);

/* The exit.json document; it names f->contract. */
json_object *vm_exit_to_json(const struct vm_exit *e, const struct vm_facts *f, uint64_t started_ns,
			     uint64_t finished_ns);

#endif
