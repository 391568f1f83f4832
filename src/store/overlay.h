/* Copy-on-write disks: a qcow2 overlay over a read-only base image (a store blob), so a VM
 * can write to its disk without changing the blob. Creating one takes constant time: the
 * overlay starts as a qcow2 header that names the base; nothing is copied. */
#ifndef UK_STORE_OVERLAY_H
#define UK_STORE_OVERLAY_H

#include "../common/error.h"

#define OVERLAY_QEMU_IMG "/usr/bin/qemu-img" /* Debian package qemu-utils */
#define OVERLAY_TIMEOUT_MS 60000

/* Create overlay_path (which must not exist; made 0600) as a qcow2 image backed by base,
 * whose format base_format is "raw" or "qcow2". Runs
 *   qemu-img create -q -f qcow2 -F <base_format> -b <base> <overlay_path>
 * with uk_run (no shell, stdin/stdout on /dev/null, a fixed environment, the tail of
 * stderr in the message). base must be an absolute path: the overlay records it
 * as is, and QEMU would read a relative one against the overlay's directory and could take
 * "proto:…" for a protocol. On failure the overlay file is removed.
 * -EINVAL bad arguments, -ENOENT base or qemu-img missing, -EEXIST overlay exists,
 * -ETIMEDOUT qemu-img took longer than OVERLAY_TIMEOUT_MS, -EIO qemu-img failed. */
int overlay_create(const char *base, const char *base_format, const char *overlay_path,
		   uk_error *err);

/* The same with another qemu-img binary (absolute path), for tests. */
int overlay_create_with(const char *qemu_img, const char *base, const char *base_format,
			const char *overlay_path, uk_error *err);

#endif
