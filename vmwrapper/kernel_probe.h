/* Tell a kernel image's boot protocol from its first bytes, to pick the machine type. */
#ifndef VMW_KERNEL_PROBE_H
#define VMW_KERNEL_PROBE_H

#include <stddef.h>

#include "../src/common/error.h"

enum kernel_kind {
	KERNEL_UNKNOWN,
	KERNEL_PVH,       /* ELF with a Xen PHYS32_ENTRY note: microvm, pc, q35 */
	KERNEL_BZIMAGE,   /* Linux boot protocol: microvm, pc, q35 */
	KERNEL_MULTIBOOT, /* multiboot v1 header: pc, q35 */
	KERNEL_ELF,       /* plain ELF without PVH note: unbootable by -kernel on x86 */
};

/* Bytes of the image that kernel_probe_buf needs at most. */
#define KERNEL_PROBE_BYTES (64 * 1024)

enum kernel_kind kernel_probe_buf(const unsigned char *buf, size_t len);
int kernel_probe_file(const char *path, enum kernel_kind *ret, uk_error *err);
const char *kernel_kind_name(enum kernel_kind k);

#endif
