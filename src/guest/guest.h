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
/* BLOCK: the image's own urunc disk; NET: the pod's tap; VOLUME: a CRI device (a raw block
 * PVC, a block hostPath, an image file), attached as virtio-blk with its serial. */
enum guest_dev_kind { GUEST_DEV_BLOCK = 1, GUEST_DEV_NET = 2, GUEST_DEV_VOLUME = 3 };
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
	bool unikraft_9pfs; /* its 9pfs driver is linked in (the name "9pfs" in its loaded bytes) */
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

/* The container's mounts and block devices as the CRI layer hands them over (README.md,
 * "Volumes"). At most GUEST_MOUNTS_MAX and GUEST_BLOCKDEVS_MAX; a guest path at most
 * GUEST_PATH_MAX bytes. */
#define GUEST_MOUNTS_MAX 16
#define GUEST_BLOCKDEVS_MAX 16
#define GUEST_PATH_MAX 255
struct guest_mount {
	const char *guest_path; /* the CRI container_path: absolute */
	bool readonly;
	bool is_file;         /* the host side is one file (unikd stages it in a directory of its own) */
	bool kubelet_default; /* the service-account token dir, /etc/hosts or /dev/termination-log */
};
struct guest_blockdev {
	const char *guest_path; /* the CRI container_path: "/dev/storage", or for Solo5 also "storage" */
	bool readonly;
};

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
	/* The container's mounts and devices (config.mounts, config.devices); none by default.
	 * Errors name them with cmd.field_prefix. */
	const struct guest_mount *mounts;
	size_t n_mounts;
	const struct guest_blockdev *blockdevs;
	size_t n_blockdevs;
};

/* Machine and firmware as the contract wants them; the per-pod annotations
 * (unikd.io/machine, unikd.io/firmware) are applied by the caller afterwards. */
enum guest_machine { GUEST_MACHINE_AUTO, GUEST_MACHINE_MICROVM, GUEST_MACHINE_PC, GUEST_MACHINE_Q35 };
enum guest_firmware { GUEST_FW_AUTO, GUEST_FW_QBOOT, GUEST_FW_SEABIOS };

/* How vmwrapper reads the VM's end (docs/guests.md): the isa-debug-exit value as the
 * container's code (default); Unikraft's 41 (halt) / 42 (crash); Solo5's console lines
 * ("Solo5: solo5_exit(N) called", "Solo5: solo5_abort() called", "Solo5: ABORT: …"). */
enum guest_exit { GUEST_EXIT_DEFAULT, GUEST_EXIT_UNIKRAFT, GUEST_EXIT_SOLO5 };

/* The i8254 PIT (docs/guests.md, "Timers"). Under TCG a PIT wakes an idle guest's QEMU
 * about 74 times a second; without one a guest that calibrates its TSC against it hangs.
 * OFF_UNDER_KVM: off where the accelerator turns out to be KVM (kvmclock and the LAPIC
 * timer), on under TCG; vmwrapper decides once it knows the accelerator. */
enum guest_pit { GUEST_PIT_ON, GUEST_PIT_OFF, GUEST_PIT_OFF_UNDER_KVM };

/* What becomes of a mount: a 9p share the guest mounts (TAKEN), or left out (SKIPPED: a
 * kubelet default a guest without a filesystem cannot take). */
enum guest_mount_fate { GUEST_MOUNT_UNDECIDED, GUEST_MOUNT_TAKEN, GUEST_MOUNT_SKIPPED };
#define GUEST_TAG_MAX 31 /* a virtio-9p mount tag */
struct guest_mount_plan {
	enum guest_mount_fate fate;
	bool readonly, is_file;         /* as the facts say */
	char tag[GUEST_TAG_MAX + 1];    /* TAKEN: the share's mount tag, "ukv<index>" */
	char path[GUEST_PATH_MAX + 1];  /* the guest path, normalised ("//a/b/" is "/a/b") */
	/* TAKEN: where the guest mounts the share: path for a directory; for a file mount, its
	 * directory on Unikraft (which cannot bind a file), path on Linux (whose /init binds the
	 * share's one file there). */
	char mount_at[GUEST_PATH_MAX + 1];
	/* A file mount: the name the share (unikd's staging directory) must hold the file under,
	 * the last component of path ("hosts"); "" for a directory. */
	char file[GUEST_PATH_MAX + 1];
	char why[192]; /* one log line: "9p share ukv0 at /data, read-only" or why it is left out */
};
struct guest_blockdev_plan {
	char path[GUEST_PATH_MAX + 1]; /* the container_path, normalised when absolute */
	bool readonly;
	char serial[21]; /* the virtio-blk serial, "ukd<index>" (at most 20 bytes) */
	size_t device;   /* its place in the plan's devices[] */
};

#define GUEST_MAX_DEVICES (2 + GUEST_BLOCKDEVS_MAX) /* the image's disk, the NIC, the CRI devices */
struct guest_plan {
	enum guest_framework framework;
	char version[32];   /* the framework's version, "" if not known */
	char found_by[256]; /* "urunc annotation unikernelType=unikraft", "Solo5 manifest note", … */
	enum guest_machine machine;
	enum guest_firmware firmware;
	/* The VM's devices in the order the guest expects them (Solo5: manifest order): a NET
	 * is the pod's tap, a BLOCK the image's disk, a VOLUME a CRI device (blockdevs[] says
	 * which, and its serial). Without the pod network's NET here, the VM gets no NIC. */
	struct guest_device devices[GUEST_MAX_DEVICES];
	size_t n_devices;
	enum guest_exit exit;
	enum guest_pit pit;
	char pit_why[192]; /* one line: why the guest needs the PIT or does without it */
	bool dhcp; /* the guest takes its address from dnsmasq (else: static on its command line) */
	char cmdline[GUEST_CMDLINE_MAX];
	char why[512]; /* every choice and its reason, one line, for the log and verbose info */
	/* One per facts mount and block device, in the facts' order. */
	struct guest_mount_plan mounts[GUEST_MOUNTS_MAX];
	size_t n_mounts;
	struct guest_blockdev_plan blockdevs[GUEST_BLOCKDEVS_MAX];
	size_t n_blockdevs;
};

/* Decide. Errors are -EINVAL naming the field: an unknown unikernelType
 * ("annotation com.urunc.unikernel.unikernelType …"), a manifest device that cannot be
 * provided (by its name), an argument the framework cannot carry ("config.args[1]"), a mount
 * or device the framework cannot take ("config.mounts[2]", "config.devices[0]"); -E2BIG past
 * a limit. */
int guest_plan_resolve(const struct guest_facts *f, struct guest_plan *ret, uk_error *err);

const char *guest_framework_name(enum guest_framework f); /* "unikraft", … */
const char *guest_exit_name(enum guest_exit e);           /* "default", "unikraft", "solo5" */
const char *guest_machine_name(enum guest_machine m);     /* "auto", "microvm", "pc", "q35" */
const char *guest_firmware_name(enum guest_firmware fw);  /* "auto", "qboot", "seabios" */
const char *guest_pit_name(enum guest_pit p);             /* "on", "off", "off-under-kvm" (vmwrapper's spec) */
const char *guest_mount_fate_name(enum guest_mount_fate f); /* "undecided", "taken", "skipped" */

#endif
