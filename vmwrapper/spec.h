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
/* The i8254 PIT (docs/guests.md, "Timers"): present (the default, as before the field),
 * absent, or absent only under KVM, where the guest keeps time by kvmclock and the LAPIC
 * timer (the accelerator may be "auto": only vm_plan_resolve knows). */
enum vm_pit { VM_PIT_ON, VM_PIT_OFF, VM_PIT_OFF_UNDER_KVM };
enum vm_firmware { VM_FW_AUTO, VM_FW_QBOOT, VM_FW_SEABIOS };
enum vm_disk_format { VM_DISK_RAW, VM_DISK_QCOW2 };
/* How the VM's end reads (docs/architecture.md, "exit.json"): the isa-debug-exit value as the
 * code (default), Unikraft's 41 (halt) and 42 (crash), or Solo5's console lines. */
enum vm_exit_contract { VM_EXIT_DEFAULT, VM_EXIT_UNIKRAFT, VM_EXIT_SOLO5 };
/* Directories the guest mounts over virtio-9p, and block devices it gets as virtio-blk disks.
 * A tag is a 9p mount_tag (QEMU and Linux take at most 31 bytes), a serial is virtio-blk's
 * (20 bytes); both are names: [A-Za-z0-9][A-Za-z0-9_.-]*, without "..". */
#define VM_SHARES_MAX 16
#define VM_BLOCKDEVS_MAX 16
#define VM_SHARE_TAG_MAX 31
#define VM_BLOCKDEV_SERIAL_MAX 20
/* What the "devices" list names: the disk, the next NIC of "net", or the next entry of
 * "blockdevs". */
enum vm_device_kind { VM_DEV_BLOCK, VM_DEV_NET, VM_DEV_BLOCKDEV };
#define VM_DEVICES_MAX (VM_NETS_MAX + 1 + VM_BLOCKDEVS_MAX)

extern const char *const vm_firmware_names[3];
extern const char *const vm_exit_contract_names[3];

struct vm_net {
	int tap_fd; /* inherited by vmwrapper, passed on to QEMU */
	int vhost_fd; /* -1 when vhost-net is not used */
	char *mac;
};

/* A host directory exported over virtio-9p (README.md, "Shares and block devices"). */
struct vm_share {
	char *tag;
	char *path;     /* absolute, a directory; with file, a regular file */
	bool readonly;  /* QEMU refuses every change (EROFS), whatever the guest mounts */
	/* A file mount (kubelet's /etc/hosts, /dev/termination-log, a hostPath file): 9p
	 * exports directories, so the share is a staging directory holding only this name,
	 * path bind-mounted onto it in vmwrapper's private mount namespace (stage.c). NULL: a
	 * directory share. */
	char *file;
};


/* A regular file or a block device given to the guest as a raw virtio-blk disk. */
struct vm_blockdev {
	char *path;     /* absolute */
	char *serial;   /* what the guest finds it by */
	bool readonly;
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
	enum vm_pit pit; /* "pit": "on" (default) | "off" | "off-under-kvm" */
	char *cpu_model; /* NULL: QEMU's default model */
	unsigned vcpus;
	unsigned memory_mib;
	char *console_log; /* NULL: console to stdout */
	/* "stdin": what attach.sock's clients write goes to the guest's serial port (else it is
	 * read and discarded). */
	bool console_input;
	/* A pool VM: QEMU starts paused (-S), the console is held until the claim on the control
	 * socket names its log and lets the guest run (README.md, "Pool VMs"). */
	bool pool;
	char *state_dir;
	char *qemu_binary;
	struct vm_net nets[VM_NETS_MAX];
	unsigned n_nets;
	/* A pool VM started without NICs, which its claim plugs in before the guest runs, with
	 * the MACs it names (README.md, "NICs at the claim"); 0: none. Needs "pool", no "net",
	 * and machine pc (the only root bus that takes a device after start); the NICs come last
	 * in "devices". */
	unsigned nics_at_claim;
	enum vm_exit_contract exit_contract;
	struct vm_share shares[VM_SHARES_MAX];
	unsigned n_shares;
	struct vm_blockdev blockdevs[VM_BLOCKDEVS_MAX];
	unsigned n_blockdevs;
	/* The order in which the disk, the NICs and the block devices go on the VM's bus (QEMU
	 * gives PCI slots in command-line order; Solo5 matches its devices to its manifest in
	 * that order). The k-th VM_DEV_NET is nets[k], the k-th VM_DEV_BLOCKDEV blockdevs[k].
	 * Without it: the disk, the NICs, then the block devices. Shares always come last. */
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

/* Where a share's export is: its path, or for a file share its staging directory
 * STATE_DIR/shares/TAG. -ENAMETOOLONG if it does not fit. */
int vm_share_export_dir(const struct vm_spec *s, unsigned i, char *buf, size_t len);

const char *vm_machine_name(enum vm_machine m);
const char *vm_accel_name(enum vm_accel a);
const char *vm_pit_name(enum vm_pit p);
const char *vm_exit_contract_name(enum vm_exit_contract c);

#endif
