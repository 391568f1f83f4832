#include <elf.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>

#include "../src/common/macros.h"
#include "kernel_probe.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define MULTIBOOT_MAGIC 0x1BADB002u
#define MULTIBOOT_SEARCH 8192

static uint32_t rd32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* Walk notes in [off, off+size) of buf; true if a Xen PHYS32_ENTRY note is there. */
static int has_pvh_note(const unsigned char *buf, size_t len, uint64_t off, uint64_t size)
{
	if (off > len || size > len - off)
		return 0;
	const unsigned char *p = buf + off, *end = buf + off + size;
	while ((size_t)(end - p) >= 12) {
		uint32_t namesz = rd32(p), descsz = rd32(p + 4), type = rd32(p + 8);
		size_t nlen = ((size_t)namesz + 3) & ~(size_t)3, dlen = ((size_t)descsz + 3) & ~(size_t)3;
		if (namesz > 64 || descsz > 4096 || (size_t)(end - p) < 12 + nlen + dlen)
			return 0;
		if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 && memcmp(p + 12, "Xen", 4) == 0)
			return 1;
		p += 12 + nlen + dlen;
	}
	return 0;
}

static enum kernel_kind probe_elf(const unsigned char *buf, size_t len)
{
	if (len < EI_NIDENT)
		return KERNEL_UNKNOWN;
	if (buf[EI_CLASS] == ELFCLASS32 && len >= sizeof(Elf32_Ehdr)) {
		Elf32_Ehdr eh;
		memcpy(&eh, buf, sizeof(eh));
		if (eh.e_phentsize != sizeof(Elf32_Phdr) || eh.e_phnum > 128)
			return KERNEL_ELF;
		for (unsigned i = 0; i < eh.e_phnum; i++) {
			uint64_t at = (uint64_t)eh.e_phoff + (uint64_t)i * sizeof(Elf32_Phdr);
			if (at + sizeof(Elf32_Phdr) > len)
				break;
			Elf32_Phdr ph;
			memcpy(&ph, buf + at, sizeof(ph));
			if (ph.p_type == PT_NOTE && has_pvh_note(buf, len, ph.p_offset, ph.p_filesz))
				return KERNEL_PVH;
		}
	} else if (buf[EI_CLASS] == ELFCLASS64 && len >= sizeof(Elf64_Ehdr)) {
		Elf64_Ehdr eh;
		memcpy(&eh, buf, sizeof(eh));
		if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 128)
			return KERNEL_ELF;
		for (unsigned i = 0; i < eh.e_phnum; i++) {
			uint64_t at = eh.e_phoff + (uint64_t)i * sizeof(Elf64_Phdr);
			if (at + sizeof(Elf64_Phdr) > len)
				break;
			Elf64_Phdr ph;
			memcpy(&ph, buf + at, sizeof(ph));
			if (ph.p_type == PT_NOTE && has_pvh_note(buf, len, ph.p_offset, ph.p_filesz))
				return KERNEL_PVH;
		}
	}
	return KERNEL_ELF;
}

enum kernel_kind kernel_probe_buf(const unsigned char *buf, size_t len)
{
	/* Linux boot protocol: "HdrS" at 0x202. */
	if (len >= 0x206 && memcmp(buf + 0x202, "HdrS", 4) == 0)
		return KERNEL_BZIMAGE;
	enum kernel_kind k = KERNEL_UNKNOWN;
	if (len >= 4 && memcmp(buf, ELFMAG, SELFMAG) == 0) {
		k = probe_elf(buf, len);
		if (k == KERNEL_PVH)
			return k;
	}
	/* Multiboot v1: magic, flags and checksum summing to 0, 4-aligned in the first 8 KiB. */
	for (size_t off = 0; off + 12 <= len && off < MULTIBOOT_SEARCH; off += 4)
		if (rd32(buf + off) == MULTIBOOT_MAGIC &&
		    (uint32_t)(rd32(buf + off) + rd32(buf + off + 4) + rd32(buf + off + 8)) == 0)
			return KERNEL_MULTIBOOT;
	return k;
}

int kernel_probe_file(const char *path, enum kernel_kind *ret, uk_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return uk_err_errno(err, errno, "open %s", path);
	_cleanup_free_ unsigned char *buf = malloc(KERNEL_PROBE_BYTES);
	if (!buf)
		return uk_err(err, ENOMEM, "out of memory");
	size_t len = 0;
	while (len < KERNEL_PROBE_BYTES) {
		ssize_t n = read(fd, buf + len, KERNEL_PROBE_BYTES - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return uk_err_errno(err, errno, "read %s", path);
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	*ret = kernel_probe_buf(buf, len);
	return 0;
}

const char *kernel_kind_name(enum kernel_kind k)
{
	static const char *names[] = { "unknown", "pvh", "bzimage", "multiboot", "elf" };
	return names[k];
}
