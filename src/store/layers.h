/* Unpacking OCI/Docker image layers into a rootfs directory, hardened against hostile
 * archives.
 *
 * A layer is a tar archive, plain, gzip- or zstd-compressed. Every entry is created
 * relative to the root directory fd, one path component at a time with O_NOFOLLOW, so
 * nothing outside the root is ever written, created or removed:
 *
 * - Paths: a leading '/' is stripped (as docker and containerd do: "/etc/x" is the
 *   image's etc/x), "." components and repeated slashes are dropped, and any ".."
 *   component refuses the entry (-EPERM). At most LAYER_MAX_DEPTH components.
 * - Symlinks are created as symlinks; their targets are data and are never followed
 *   while unpacking. An entry whose parent path runs through a symlink is refused
 *   (-EPERM), even when the symlink points inside the root. An entry that replaces a
 *   symlink replaces the link itself, never what it points to.
 * - Hard links must point to an entry already in the tree, resolved beneath the root the
 *   same way (no symlinks on the way); anything else is -EPERM. A hard link to a
 *   directory is refused by the kernel.
 * - Device nodes, fifos and sockets are refused (-EPERM). Setuid, setgid and sticky bits
 *   are cleared; extended attributes (file capabilities included) and ACLs are not
 *   applied. Ownership is applied only when running as root. Modification times are kept.
 * - An entry replaces whatever is at its path, as a layer on top of lower layers does
 *   (a directory over a directory is merged; anything else removes the old one first).
 * - OCI whiteouts: ".wh.<name>" removes <name> from the lower layers; ".wh..wh..opq"
 *   makes its directory opaque: whatever the lower layers had in it goes, and what this
 *   layer puts there (before or after the marker) stays. Neither marker is created.
 *
 * Limits (per call, i.e. per layer): entries, bytes of one entry's path (and of link
 * targets), the size of one file, and the file data written in total (holes of sparse
 * files do not count). Violations: -E2BIG (entries, path), -EFBIG (file size, total).
 *
 * On any error the root is left half-written: the caller deletes the whole rootfs. */
#ifndef UK_STORE_LAYERS_H
#define UK_STORE_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"

#define LAYER_MAX_DEPTH 128 /* path components of one entry */

#define LAYER_MEDIA_OCI_TAR "application/vnd.oci.image.layer.v1.tar"
#define LAYER_MEDIA_OCI_TAR_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define LAYER_MEDIA_OCI_TAR_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
#define LAYER_MEDIA_DOCKER_TAR_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"

struct layer_limits {
	uint64_t max_entries;     /* archive entries, whiteouts included */
	uint64_t max_path;        /* bytes of an entry's path, hard link or symlink target */
	uint64_t max_file_size;   /* apparent size of one regular file */
	uint64_t max_total_bytes; /* file data written by this call, all files together */
};

/* 100000 entries, 4096-byte paths, 64 GiB per file and in total (IMAGE_DISK_MAX). */
extern const struct layer_limits layer_limits_default;

/* Unpack the layer file at layer_path into the directory rootfs_dirfd.
 *
 * media_type may be NULL (detect from the content). Otherwise it must be a tar layer
 * type: the OCI ones (also ".nondistributable."), or docker's ".tar.gzip"/".tar"; other
 * types (encrypted layers, foreign blobs, configs) are -ENOTSUP. The compression is
 * always taken from the magic bytes (as containerd does), so a gzip layer labelled as
 * plain tar still unpacks. Only gzip and zstd are accepted: other compressions (xz,
 * bzip2, …) are -ENOTSUP, and libarchive is never allowed to run an external program.
 *
 * lim may be NULL for layer_limits_default. Returns 0 or -errno with err naming the
 * entry (e.g. `layer /x/blob: entry "../etc/passwd": ".." is not allowed in a path`). */
int layers_unpack(const char *layer_path, const char *media_type, int rootfs_dirfd,
		  const struct layer_limits *lim, uk_error *err);

#endif
