/* From a VM spec to QEMU's argv: machine, accelerator and firmware choice, then the options. */
#ifndef VMW_QEMU_ARGV_H
#define VMW_QEMU_ARGV_H

#include <stdbool.h>

#include <json-c/json.h>

#include "../src/guest/probe.h"
#include "spec.h"

#define QEMU_DEFAULT_BINARY "/usr/bin/qemu-system-x86_64"
#define QEMU_QBOOT_ROM "/usr/share/qemu/qboot.rom"
/* Room for virtio devices: free PCI slots on pc's and q35's root bus with -nodefaults,
 * virtio-mmio transports on microvm (QEMU 7.2, measured: README.md). */
#define QEMU_PCI_SLOTS_FREE 30
#define QEMU_MICROVM_VIRTIO_MAX 24

/* The fd numbers QEMU finds its sockets on; vmwrapper moves them there before execve. */
enum {
	QEMU_FD_CONSOLE = 3,
	QEMU_FD_QMP_CTL = 4,    /* vmwrapper's own monitor (a socketpair) */
	QEMU_FD_QMP = 5,        /* listening: qmp.sock, for unikd */
	QEMU_FD_QMP_DEBUG = 6,  /* listening: qmp-debug.sock, for people */
	QEMU_FD_NET_BASE = 7,   /* net i: tap at 7+2i, vhost at 8+2i */
};

struct vm_plan {
	enum vm_machine machine; /* never AUTO */
	enum vm_accel accel;     /* never AUTO */
	const char *firmware;    /* -bios path, or NULL for the machine's default */
	enum guest_boot kernel_kind;
	const char *why_accel;   /* for the log */
	bool pit;                /* the machine has an i8254 PIT (else -machine …,pit=off) */
	const char *why_pit;     /* for the log */
};

/* Resolve the "auto" choices. kvm_ok: /dev/kvm opened. */
int vm_plan_resolve(const struct vm_spec *s, enum guest_boot kind, bool kvm_ok, struct vm_plan *ret,
		    uk_error *err);

/* A NIC's QEMU options: the one description behind the cold argv's -netdev and -device
 * and a claim's netdev_add and device_add (README.md, "NICs at the claim"):
 *
 *     netdev: {"type": "tap", "id": "net<i>", "fd": tap[, "vhost": true, "vhostfd": vhost]}
 *     device: {"driver": "virtio-net-pci", "netdev": "net<i>", "mac": mac}   (virtio-net-device on mmio)
 *
 * tap and vhost are fd numbers (the argv) or getfd names (QMP); vhost NULL: no vhost-net.
 * NULL when out of memory. */
json_object *qemu_nic_netdev(unsigned i, const char *tap, const char *vhost);
json_object *qemu_nic_device(unsigned i, const char *mac, bool mmio);

/* NULL-terminated argv, to free with strv_free. */
int qemu_build_argv(const struct vm_spec *s, const struct vm_plan *plan, char ***ret, uk_error *err);

#endif
