/* Guest contracts: what a unikernel framework needs from its VM (machine, firmware,
 * devices), how it takes its command line, arguments, environment and network settings, and
 * how its exits read. One file per framework behind this one interface (README.md).
 *
 * The decision is pure, in the style of vm_plan_resolve: facts in (guest_facts), a plan out
 * (guest_plan) with a `why` for the log and the record; no I/O. Reading the kernel file is
 * separate (guest_probe_file, probe.h) and gives the guest_binary the facts point to. */
#ifndef UK_GUEST_H
#define UK_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"
#include "cmdline.h"

enum guest_framework {
	GUEST_GENERIC,  /* today's path: the kernel's boot protocol picks the machine */
	GUEST_UNIKRAFT,
	GUEST_SOLO5,    /* a Solo5 binary (virtio target) whose application is not known */
	GUEST_MIRAGE,   /* MirageOS on Solo5 */
	GUEST_LINUX,
};

/* The boot protocol of the kernel file (what vmwrapper's probe used to tell). */
enum guest_boot {
	GUEST_BOOT_UNKNOWN,
	GUEST_BOOT_PVH,       /* ELF with a Xen PHYS32_ENTRY note (type 18) */
	GUEST_BOOT_BZIMAGE,   /* Linux boot protocol ("HdrS" at 0x202) */
	GUEST_BOOT_MULTIBOOT, /* multiboot v1 header in the first 8 KiB */
	GUEST_BOOT_ELF,       /* an ELF with neither: not bootable by -kernel on x86 */
};

/* A Solo5 manifest (include/solo5/mft_abi.h): the devices the application declares. */
#define GUEST_MFT_MAX_ENTRIES 64 /* Solo5's MFT_MAX_ENTRIES */
#define GUEST_MFT_NAME_MAX 67    /* Solo5's MFT_NAME_MAX, without the NUL */
enum guest_dev_kind { GUEST_DEV_BLOCK = 1, GUEST_DEV_NET = 2 };
struct guest_device {
	enum guest_dev_kind kind;
	char name[GUEST_MFT_NAME_MAX + 1];
};

/* What the kernel file says about itself. Filled by guest_probe_buf/guest_probe_file. */
struct guest_binary {
	enum guest_boot boot;
	bool elf64;
	/* Solo5: the ABI note and the manifest note, parsed. */
	bool solo5;
	uint32_t solo5_abi_target, solo5_abi_version;
	struct guest_device mft[GUEST_MFT_MAX_ENTRIES];
	size_t n_mft;
	/* Unikraft: its marks (a .uk_* section, the "Unikraft <Codename> X.Y.Z" banner text),
	 * and the version the banner gives ("" if none). */
	bool unikraft;
	char unikraft_version[32];
	char why[256]; /* how it was recognised, for the verbose info: "Solo5 manifest note …" */
};

/* The pod's network as the guest should see it; NULL in the facts: the pod has none. */
struct guest_net {
	const char *ip;      /* "10.77.0.5" */
	unsigned prefix;     /* 16 */
	const char *gateway; /* the bridge's address */
	const char *mask;    /* "255.255.0.0" */
	const char *dns;     /* the pod's first dns_config server, or NULL */
	const char *hostname;/* or NULL */
};

/* How the guest gets its address: as the framework decides (auto), from dnsmasq (dhcp), or
 * on its command line (static). From the unikd.io/network-config annotation. */
enum guest_netcfg { GUEST_NETCFG_AUTO, GUEST_NETCFG_DHCP, GUEST_NETCFG_STATIC };

struct guest_facts {
	/* urunc's com.urunc.unikernel.unikernelType and unikernelVersion (annotation or config
	 * label of the image); NULL when absent. */
	const char *urunc_type, *urunc_version;
	const struct guest_binary *bin; /* NULL without a kernel (a disk image) */
	bool has_block_disk;            /* the image's urunc block disk, for BLOCK_BASIC */
	const struct guest_net *net;    /* NULL: no pod network */
	enum guest_netcfg netcfg;
	/* The container's command, arguments and environment, and the image's default line. */
	struct guest_cmdline_in cmd;
};

/* Machine and firmware as the contract wants them; the per-pod annotations
 * (unikd.io/machine, unikd.io/firmware) are applied by the caller afterwards. */
enum guest_machine { GUEST_MACHINE_AUTO, GUEST_MACHINE_MICROVM, GUEST_MACHINE_PC, GUEST_MACHINE_Q35 };
enum guest_firmware { GUEST_FW_AUTO, GUEST_FW_QBOOT, GUEST_FW_SEABIOS };

/* How vmwrapper reads the VM's end (docs/guests.md): the isa-debug-exit value as the
 * container's code (default); Unikraft's 41 (halt) / 42 (crash); Solo5's console lines
 * ("Solo5: solo5_exit(N) called", "Solo5: solo5_abort() called", "Solo5: ABORT: …"). */
enum guest_exit { GUEST_EXIT_DEFAULT, GUEST_EXIT_UNIKRAFT, GUEST_EXIT_SOLO5 };

#define GUEST_MAX_DEVICES 8
struct guest_plan {
	enum guest_framework framework;
	char version[32];   /* the framework's version, "" if not known */
	char found_by[256]; /* "urunc annotation unikernelType=unikraft", "Solo5 manifest note", … */
	enum guest_machine machine;
	enum guest_firmware firmware;
	/* The VM's devices in the order the guest expects them (Solo5: manifest order): a NET
	 * is the pod's tap, a BLOCK the image's disk. Without the pod network's NET here, the VM
	 * gets no NIC. */
	struct guest_device devices[GUEST_MAX_DEVICES];
	size_t n_devices;
	enum guest_exit exit;
	bool dhcp; /* the guest takes its address from dnsmasq (else: static on its command line) */
	char cmdline[GUEST_CMDLINE_MAX];
	char why[512]; /* every choice and its reason, one line, for the log and verbose info */
};

/* Decide. Errors are -EINVAL naming the field: an unknown unikernelType
 * ("annotation com.urunc.unikernel.unikernelType …"), a manifest device that cannot be
 * provided (by its name), an argument the framework cannot carry ("config.args[1]"). */
int guest_plan_resolve(const struct guest_facts *f, struct guest_plan *ret, uk_error *err);

const char *guest_framework_name(enum guest_framework f); /* "unikraft", … */
const char *guest_exit_name(enum guest_exit e);           /* "default", "unikraft", "solo5" */
const char *guest_machine_name(enum guest_machine m);     /* "auto", "microvm", "pc", "q35" */
const char *guest_firmware_name(enum guest_firmware fw);  /* "auto", "qboot", "seabios" */

#endif
