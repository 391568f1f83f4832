/* A container's CRI mounts and devices, checked and resolved before anything is made for
 * them: ContainerConfig.mounts become 9p shares (directories) or single-file shares, and
 * ContainerConfig.devices become virtio-blk disks (issue 15, docs/volumes.md). What a VM
 * cannot honour is refused here with -EINVAL (INVALID_ARGUMENT at the gRPC edge) naming
 * config.mounts[i].<field> or config.devices[i].<field>, never dropped.
 *
 * Only the host path itself is checked, never the tree below a directory (a walk would be
 * unbounded, and the tree changes under us anyway). A guest cannot get out of a directory
 * share on the host side through a symlink or "..": QEMU's 9p local backend resolves every
 * guest path from the export root's fd one component at a time with O_NOFOLLOW, and maps
 * ".." of the root to the root (see volumes.c). */
#ifndef UK_CRI_VOLUMES_H
#define UK_CRI_VOLUMES_H

#include <stdbool.h>
#include <stddef.h>

#include "api.pb-c.h"
#include "../common/error.h"

/* Each mount is a virtio-9p device and each CRI device a virtio-blk disk: 16 of each stay
 * well within a PCI bus's 32 slots next to the NIC and the image's disk, and cover
 * kubelet's three defaults plus a pod's usual handful of volumes. */
#define CRI_VOL_MOUNTS_MAX 16
#define CRI_VOL_DEVICES_MAX 16

enum cri_vol_kind {
	CRI_VOL_DIR,  /* a directory: a 9p export of its own */
	CRI_VOL_FILE, /* a regular file (/etc/hosts, /dev/termination-log, a hostPath file) */
};

struct cri_vol_mount {
	char *host_path;      /* resolved: realpath(3) of the request's, no symlink left */
	char *container_path; /* normalised: absolute, no "//", no "." component, no trailing '/' */
	bool readonly;
	enum cri_vol_kind kind;
	bool kubelet_default; /* /etc/hosts, /dev/termination-log or the service-account token
				 directory: a guest without a filesystem leaves it out */
};

struct cri_vol_device {
	char *host_path;      /* resolved as for mounts */
	char *container_path; /* normalised as for mounts */
	bool readonly;        /* permissions without 'w' */
	bool block;           /* a block device; else a regular file (a disk image) */
};

struct cri_volumes {
	struct cri_vol_mount *mounts; /* in the request's order */
	size_t n_mounts;
	struct cri_vol_device *devices;
	size_t n_devices;
};

/* Check and resolve cfg's mounts and devices into *out (zeroed first, empty on failure).
 * Mounts: at most CRI_VOL_MOUNTS_MAX (-E2BIG); container_path and host_path absolute, at
 * most CRI_PATH_MAX bytes, no control character, no ".." component; container_path not "/"
 * and unique among mounts and devices; host_path an existing directory or regular file
 * (through symlinks); propagation PROPAGATION_PRIVATE; no uidMappings or gidMappings, no
 * recursive_read_only, no image or image_sub_path. selinux_relabel is accepted and means
 * nothing to a VM. Devices: at most CRI_VOL_DEVICES_MAX; the same path rules; host_path a
 * block device or a regular file, not the same file as another device's; permissions
 * letters of "rwm" ("" is "rwm", as in runc), with 'r': a disk is readable. -ENOMEM when
 * out of memory; every other refusal is -EINVAL naming the field. Reads the file system
 * (realpath, stat); allocates nothing else. */
int cri_volumes_parse(const Runtime__V1__ContainerConfig *cfg, struct cri_volumes *out, uk_error *err);

/* Free what cri_volumes_parse made and zero *v; v and its members may be NULL. */
void cri_volumes_free(struct cri_volumes *v);

#endif
