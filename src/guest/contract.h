/* The interface between the dispatcher (guest.c) and the framework contracts, one file per
 * framework (unikraft.c, solo5.c, mirage.c, linux.c, generic.c), and the steps they share.
 * Internal to src/guest. */
#ifndef UK_GUEST_CONTRACT_H
#define UK_GUEST_CONTRACT_H

#include "guest.h"

struct guest_contract {
	enum guest_framework framework;
	/* Fill machine, firmware, pit, devices, exit, dhcp, cmdline and why of p; framework, version
	 * and found_by are set, f->net is checked. Pure; errors name the field. */
	int (*plan)(const struct guest_facts *f, struct guest_plan *p, uk_error *err);
};

extern const struct guest_contract guest_contract_unikraft, guest_contract_solo5, guest_contract_mirage,
	guest_contract_linux, guest_contract_generic;

/* Append to p->why, "; "-separated (guest_textf: what does not fit is cut visibly). */
void guest_why(struct guest_plan *p, const char *fmt, ...) _printf_(2, 3);

/* The PIT choice and its reason (cut visibly at pit_why's size). */
void guest_set_pit(struct guest_plan *p, enum guest_pit pit, const char *why);

/* Add a device; -E2BIG past GUEST_MAX_DEVICES. */
int guest_add_device(struct guest_plan *p, enum guest_dev_kind kind, const char *name, uk_error *err);
/* The devices of a guest without a manifest: the image's block disk, then the pod's NIC. */
int guest_default_devices(const struct guest_facts *f, struct guest_plan *p, uk_error *err);
/* The devices a Solo5 manifest declares, in its order (solo5.c). */
int guest_solo5_devices(const struct guest_facts *f, struct guest_plan *p, uk_error *err);
/* Machine, firmware, devices and exit of a Solo5 virtio guest (solo5.c; MirageOS too);
 * label starts its why ("Solo5 (virtio)"). */
int guest_solo5_vm(const struct guest_facts *f, struct guest_plan *p, const char *label, uk_error *err);
/* "devices: disk, net" into the why. */
void guest_why_devices(struct guest_plan *p);

/* How the guest gets its address, into the why; how: the parameters, when static. */
void guest_why_net(struct guest_plan *p, bool static_net, const char *how);

bool guest_plan_has_net(const struct guest_plan *p);
/* The guest takes its address on its command line: the pod has a NIC in this VM and the
 * network config says static, or auto where the framework is static by default. */
bool guest_net_static(const struct guest_facts *f, const struct guest_plan *p, bool static_by_default);
/* "255.255.0.0" for 16 into buf (16 bytes), or net->mask if set. */
const char *guest_net_mask(const struct guest_net *net, char buf[16]);

/* Volumes (volumes.c). */
/* The mounts' and devices' limits and guest paths; fills p's n_mounts (path, file, readonly,
 * is_file) and n_blockdevs (path, serial). Done before the contract's plan(). */
int guest_volumes_check(const struct guest_facts *f, struct guest_plan *p, uk_error *err);
/* A guest without a filesystem: kubelet defaults SKIPPED (why), any other mount -EINVAL
 * naming it, the framework (label) and why. */
int guest_mounts_none(const struct guest_facts *f, struct guest_plan *p, const char *label, const char *why,
		      uk_error *err);
/* Every mount TAKEN, a file bound at its path by /init; a mount over "/" is -EINVAL. */
int guest_mounts_linux(const struct guest_facts *f, struct guest_plan *p, uk_error *err);
/* Unikraft: a directory at its path, a file's share at the file's directory when that place
 * is the share's alone (else a kubelet default is SKIPPED, another mount -EINVAL). The
 * image's own line holds image_entries vfs.fstab entries; with ours past UK_FSTAB_MAX, the
 * kubelet defaults are SKIPPED, then -E2BIG. */
#define UK_FSTAB_MAX 16 /* CONFIG_LIBVFSCORE_AUTOMOUNT_UP_SIZE's default */
int guest_mounts_unikraft(const struct guest_facts *f, struct guest_plan *p, size_t image_entries, uk_error *err);
/* vfs.fstab=[ "TAG:PATH:9pfs:FLAGS::UKOPTS" … ] for the taken mounts, parents first. */
int guest_mounts_fstab(struct guest_line *l, const struct guest_plan *p, uk_error *err);
/* unikd.9p=… and unikd.blk=… (README.md), each only when it has entries. */
int guest_volumes_linux(struct guest_line *l, const struct guest_plan *p, uk_error *err);
/* The CRI devices as VOLUME devices named by their serial, after p's devices; absolute:
 * their paths must be (a device node is made there). */
int guest_blockdevs_add(const struct guest_facts *f, struct guest_plan *p, bool absolute, uk_error *err);
/* The name of CRI device i: its path's last component ("/dev/storage": "storage"). */
const char *guest_blockdev_name(const struct guest_plan *p, size_t i);
/* "mounts: 2 as 9p shares, 1 kubelet default left out" into the why. */
void guest_why_volumes(struct guest_plan *p);

/* A version "X.Y[.Z]" with an optional "v" and any suffix ("0.17.0~484ff209"): false if it
 * is not one. */
bool guest_version_parse(const char *s, unsigned v[3]);

#endif
