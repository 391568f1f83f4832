/* What a kernel file says about itself: its boot protocol (PVH, bzImage, multiboot, ELF), its
 * Solo5 notes (ABI and device manifest) and its Unikraft marks. The one reader of kernel
 * files: unikd's guest contracts and vmwrapper's machine choice both use it.
 *
 * The buffer is hostile input: every offset, size and count in it is checked against the
 * buffer before use, the work is bounded, and a malformed structure reads as "not found",
 * except a Solo5 note that is there but cannot be read, which is an error naming the fault. */
#ifndef UK_GUEST_PROBE_H
#define UK_GUEST_PROBE_H

#include <stddef.h>
#include <stdint.h>

#include "guest.h"

/* guest_probe_file reads files of at most this size (a kernel, not a disk). */
#define GUEST_PROBE_FILE_MAX (64u << 20)
/* How many leading bytes of a file guest_probe_boot needs to see the boot headers of usual
 * kernels (a PVH note further in is seen only in the whole file). */
#define GUEST_PROBE_BOOT_BYTES (64u * 1024)

/* The boot protocol alone, from the len bytes the caller has of the file: "HdrS" at 0x202,
 * an ELF PVH note, a multiboot v1 header in the first 8 KiB, a plain ELF, or unknown, in
 * that order. Never fails. */
enum guest_boot guest_probe_boot(const uint8_t *buf, size_t len);
const char *guest_boot_name(enum guest_boot b); /* "unknown", "pvh", "bzimage", "multiboot", "elf" */
/* Solo5's ABI targets (elf_abi.h): 1 "hvt", 2 "spt", 3 "virtio", 4 "muen", 5 "genode", ... */
#define GUEST_SOLO5_TARGET_VIRTIO 3
const char *guest_solo5_target_name(uint32_t target);

/* Everything in guest_binary from the whole file in buf. -EINVAL naming what is wrong for a
 * Solo5 ABI or manifest note that cannot be read ("Solo5 manifest: entry 3 ..."); out is
 * zeroed then. */
int guest_probe_buf(const uint8_t *buf, size_t len, struct guest_binary *out, uk_error *err);
/* The same for a file; -EFBIG naming the path if it is larger than GUEST_PROBE_FILE_MAX. */
int guest_probe_file(const char *path, struct guest_binary *out, uk_error *err);

#endif
