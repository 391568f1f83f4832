/* The VM spec that unikd writes for vmwrapper (JSON, see docs/architecture.md). */
#ifndef VMW_SPEC_H
#define VMW_SPEC_H

#include <stdbool.h>
#include <stdint.h>

#include "../src/common/error.h"

#define VM_SPEC_VERSION 1
#define VM_MEMORY_MIN_MIB 16
#define VM_MEMORY_MAX_MIB (1024 * 1024)
#define VM_VCPUS_MAX 256
#define VM_CMDLINE_MAX 4096
/* QEMU gets 4 channels and 2 fds per NIC through uk_spawn, which passes at most 16. */
#define VM_NETS_MAX 6

enum vm_machine { VM_MACHINE_AUTO, VM_MACHINE_MICROVM, VM_MACHINE_PC, VM_MACHINE_Q35 };
enum vm_accel { VM_ACCEL_AUTO, VM_ACCEL_KVM, VM_ACCEL_TCG };
enum vm_firmware { VM_FW_AUTO, VM_FW_QBOOT, VM_FW_SEABIOS };
enum vm_disk_format { VM_DISK_RAW, VM_DISK_QCOW2 };
/* How the VM's end reads (docs/architecture.md, "exit.json"): the isa-debug-exit value as the
 * code (default), Unikraft's 41 (halt) and 42 (crash), or Solo5's console lines. */
enum vm_exit_contract { VM_EXIT_DEFAULT, VM_EXIT_UNIKRAFT, VM_EXIT_SOLO5 };
/* What the "devices" list names: the disk, or the next NIC of "net". */
enum vm_device_kind { VM_DEV_BLOCK, VM_DEV_NET };
#define VM_DEVICES_MAX (VM_NETS_MAX + 1)

extern const char *const vm_firmware_names[3];
extern const char *const vm_exit_contract_names[3];

struct vm_net {
	int tap_fd; /* inherited by vmwrapper, passed on to QEMU */
	int vhost_fd; /* -1 when vhost-net is not used */
	char *mac;
};

struct vm_spec {
	char *id;
	char *kernel;
	char *initrd;
	char *cmdline;
	/* Alone, the boot disk; with a kernel, a data disk the kernel mounts (urunc's block
	 * image). */
	char *disk;
	enum vm_disk_format disk_format;
	/* true (the default): the guest's writes go to a throwaway snapshot, the file is never
	 * changed. false: the disk is the VM's own (unikd's per-container overlay), written. */
	bool disk_snapshot;
	enum vm_machine machine;
	enum vm_firmware firmware;
	enum vm_accel accel;
	char *cpu_model; /* NULL: QEMU's default model */
	unsigned vcpus;
	unsigned memory_mib;
	char *console_log; /* NULL: console to stdout */
	char *state_dir;
	char *qemu_binary;
	struct vm_net nets[VM_NETS_MAX];
	unsigned n_nets;
	enum vm_exit_contract exit_contract;
	/* The order in which the disk and the NICs go on the VM's bus (QEMU gives PCI slots in
	 * command-line order; Solo5 matches its devices to its manifest in that order). The
	 * k-th VM_DEV_NET is nets[k]. Without it: the disk, then the NICs. */
	bool has_device_order;
	enum vm_device_kind devices[VM_DEVICES_MAX];
	unsigned n_devices;
};

void vm_spec_free(struct vm_spec *s);
static inline void vm_spec_freep(struct vm_spec **s)
{
	vm_spec_free(*s);
}
#define _cleanup_vm_spec_ __attribute__((cleanup(vm_spec_freep)))

struct vm_spec *vm_spec_new(void);

/* Parse and validate a spec document; every error names the field. */
int vm_spec_parse(const char *json, struct vm_spec **ret, uk_error *err);
/* Checks shared by the JSON and the command-line paths: ids, sizes, readable files. */
int vm_spec_validate(const struct vm_spec *s, uk_error *err);

const char *vm_machine_name(enum vm_machine m);
const char *vm_accel_name(enum vm_accel a);
const char *vm_exit_contract_name(enum vm_exit_contract c);

#endif
