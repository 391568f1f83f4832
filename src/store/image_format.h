/* Recognising runnable unikernel image layouts in an unpacked image.
 *
 * Two layouts, tried in this order:
 *
 * 1. urunc: the keys com.urunc.unikernel.{unikernelType,unikernelVersion,hypervisor,binary,
 *    cmdline,initrd,block}, taken from the first source that sets a non-empty .binary, of
 *      a. the manifest's annotations,
 *      b. the image config's labels (config.Labels, or Labels at the top level),
 *      c. /urunc.json in the rootfs: a JSON object with the same keys, each value
 *         base64-encoded (standard alphabet, padded), as urunc reads it.
 *    Sources are not mixed. binary (required), initrd and block are paths inside the
 *    rootfs ("/unikernel/kernel" or "unikernel/kernel"); cmdline is the default kernel
 *    command line (may be empty). An empty value counts as unset, as in urunc. Other
 *    urunc keys (blkMntPoint, useDMBlock, mountRootfs) are ignored. unikernelType and
 *    unikernelVersion choose the guest contract (src/guest/).
 * 2. KubeVirt containerDisk: exactly one *.qcow2, *.raw or *.img file directly under
 *    /disk/ (other names there are ignored). Its format comes from its content (qcow2
 *    magic or raw; a *.qcow2 that is not qcow2 is refused), and a qcow2 with a backing
 *    file or an external data file is refused: QEMU would open host paths for the guest.
 *
 * Paths are resolved beneath the rootfs with openat2(RESOLVE_BENEATH|RESOLVE_NO_XDEV|
 * RESOLVE_NO_MAGICLINKS): a ".." in the value, or a symlink on the way that leaves the
 * rootfs (absolute symlinks included), is -EPERM; symlinks that stay inside are followed.
 * The results are the host paths of the files actually found (via /proc/self/fd), which
 * must be regular files within the image store's size limits (IMAGE_KERNEL_MAX, …). */
#ifndef UK_STORE_IMAGE_FORMAT_H
#define UK_STORE_IMAGE_FORMAT_H

#include <json-c/json.h>

#include "../common/error.h"

#define IMAGE_FORMAT_URUNC "urunc"
#define IMAGE_FORMAT_CONTAINERDISK "containerdisk"
#define URUNC_JSON_MAX (64 * 1024)

struct image_format {
	char kind[32];         /* IMAGE_FORMAT_URUNC or IMAGE_FORMAT_CONTAINERDISK */
	char *kernel, *initrd; /* urunc: absolute host paths inside the rootfs; initrd may be NULL */
	char *cmdline;         /* urunc: the default command line, "" when unset */
	char *disk;            /* containerdisk: absolute host path */
	char *disk_format;     /* containerdisk: "raw" or "qcow2" */
	char *block;           /* urunc: an extra disk image (host path) or NULL */
	char *unikernel_type, *unikernel_version, *hypervisor; /* urunc: as given, NULL when unset */
};

/* Decide how to run the image whose rootfs was unpacked at rootfs (a directory).
 * annotations is the manifest's annotations object and config the image config document;
 * either may be NULL. On success *ret is filled (free with image_format_clear).
 * -ENOEXEC: neither layout (the message says what would make the image runnable);
 * -EPERM: a path escapes the rootfs; -ENOENT: a named file is missing; -EINVAL: bad values,
 * several disks, a file that is not regular; -EFBIG: a file over its size limit. */
int image_format_detect(json_object *annotations, json_object *config, const char *rootfs,
			struct image_format *ret, uk_error *err);

/* Base64 (RFC 4648, standard alphabet, padded) into a NUL-terminated string; -EINVAL for
 * bad input or a NUL in the result. Also for the CRI AuthConfig's "auth" field. */
int image_base64_decode(const char *in, char **ret);

/* Free the members and zero the struct; NULL and repeated calls are fine. */
void image_format_clear(struct image_format *f);

static inline void image_format_clearp(struct image_format *f)
{
	image_format_clear(f);
}
#define _cleanup_image_format_ __attribute__((cleanup(image_format_clearp)))

#endif
