/* Unit tests for src/guest/probe.c: boot protocols (PVH, bzImage, multiboot, ELF), Solo5 ABI
 * and manifest notes, Unikraft marks, from ELF32 and ELF64 images built here; and hostile
 * files (truncated, oversized and overlapping notes, offsets and counts past the file, names
 * without a NUL), which give an error or "not found", never a crash or an over-read. */
#include <elf.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/common/util.h"
#include "../../src/guest/probe.h"

#define IMG_SIZE 16384
#define AT_SHDR 0x400
#define AT_STRTAB 0x800
#define AT_MULTIBOOT 0x1000
#define AT_NOTES 0x2000
#define AT_LOAD 0x3000

#define ABI1 0x31494241u
#define MFT1 0x3154464du
#define RESERVED_FIRST (1u << 30)

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

/* An ELF image under construction: program and section headers are kept aside and
 * written by finish(). */
struct img {
	uint8_t buf[IMG_SIZE];
	bool is64;
	struct {
		uint32_t type;
		uint64_t off, size, align;
	} ph[16];
	size_t nph;
	struct {
		const char *name;
		uint32_t type;
		uint64_t off, size;
	} sh[16];
	size_t nsh;
};

static void wr32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void img_init(struct img *m, bool is64)
{
	memset(m, 0, sizeof(*m));
	m->is64 = is64;
}

static void add_ph(struct img *m, uint32_t type, uint64_t off, uint64_t size, uint64_t align)
{
	m->ph[m->nph].type = type;
	m->ph[m->nph].off = off;
	m->ph[m->nph].size = size;
	m->ph[m->nph++].align = align;
}

static void add_sh(struct img *m, const char *name, uint32_t type, uint64_t off, uint64_t size)
{
	m->sh[m->nsh].name = name;
	m->sh[m->nsh].type = type;
	m->sh[m->nsh].off = off;
	m->sh[m->nsh++].size = size;
}

static void finish(struct img *m)
{
	/* The section name table: index 0 is the empty name, then each name, then itself. */
	size_t str = 1;
	uint32_t name_at[17];
	for (size_t i = 0; i < m->nsh; i++) {
		name_at[i] = (uint32_t)str;
		memcpy(m->buf + AT_STRTAB + str, m->sh[i].name, strlen(m->sh[i].name) + 1);
		str += strlen(m->sh[i].name) + 1;
	}
	name_at[m->nsh] = (uint32_t)str;
	memcpy(m->buf + AT_STRTAB + str, ".shstrtab", 10);
	str += 10;
	size_t nsh = m->nsh + 2; /* the null section, the names, the name table */
	if (m->is64) {
		Elf64_Ehdr h = { .e_type = ET_EXEC, .e_machine = EM_X86_64, .e_phoff = sizeof(h),
				 .e_phentsize = sizeof(Elf64_Phdr), .e_phnum = (uint16_t)m->nph, .e_shoff = AT_SHDR,
				 .e_shentsize = sizeof(Elf64_Shdr), .e_shnum = (uint16_t)nsh,
				 .e_shstrndx = (uint16_t)(nsh - 1), .e_ehsize = sizeof(h) };
		memcpy(h.e_ident, ELFMAG, SELFMAG);
		h.e_ident[EI_CLASS] = ELFCLASS64;
		h.e_ident[EI_DATA] = ELFDATA2LSB;
		memcpy(m->buf, &h, sizeof(h));
		for (size_t i = 0; i < m->nph; i++) {
			Elf64_Phdr p = { .p_type = m->ph[i].type, .p_offset = m->ph[i].off, .p_filesz = m->ph[i].size,
					 .p_memsz = m->ph[i].size, .p_align = m->ph[i].align };
			memcpy(m->buf + sizeof(h) + i * sizeof(p), &p, sizeof(p));
		}
		for (size_t i = 0; i + 1 < nsh; i++) {
			Elf64_Shdr s = { 0 };
			if (i > 0 && i <= m->nsh)
				s = (Elf64_Shdr){ .sh_name = name_at[i - 1], .sh_type = m->sh[i - 1].type,
						  .sh_offset = m->sh[i - 1].off, .sh_size = m->sh[i - 1].size, .sh_addralign = 4 };
			memcpy(m->buf + AT_SHDR + i * sizeof(s), &s, sizeof(s));
		}
		Elf64_Shdr t = { .sh_name = name_at[m->nsh], .sh_type = SHT_STRTAB, .sh_offset = AT_STRTAB, .sh_size = str };
		memcpy(m->buf + AT_SHDR + (nsh - 1) * sizeof(t), &t, sizeof(t));
	} else {
		Elf32_Ehdr h = { .e_type = ET_EXEC, .e_machine = EM_386, .e_phoff = sizeof(h),
				 .e_phentsize = sizeof(Elf32_Phdr), .e_phnum = (uint16_t)m->nph, .e_shoff = AT_SHDR,
				 .e_shentsize = sizeof(Elf32_Shdr), .e_shnum = (uint16_t)nsh,
				 .e_shstrndx = (uint16_t)(nsh - 1), .e_ehsize = sizeof(h) };
		memcpy(h.e_ident, ELFMAG, SELFMAG);
		h.e_ident[EI_CLASS] = ELFCLASS32;
		h.e_ident[EI_DATA] = ELFDATA2LSB;
		memcpy(m->buf, &h, sizeof(h));
		for (size_t i = 0; i < m->nph; i++) {
			Elf32_Phdr p = { .p_type = m->ph[i].type, .p_offset = (uint32_t)m->ph[i].off,
					 .p_filesz = (uint32_t)m->ph[i].size, .p_align = (uint32_t)m->ph[i].align };
			memcpy(m->buf + sizeof(h) + i * sizeof(p), &p, sizeof(p));
		}
		for (size_t i = 0; i + 1 < nsh; i++) {
			Elf32_Shdr s = { 0 };
			if (i > 0 && i <= m->nsh)
				s = (Elf32_Shdr){ .sh_name = name_at[i - 1], .sh_type = m->sh[i - 1].type,
						  .sh_offset = (uint32_t)m->sh[i - 1].off, .sh_size = (uint32_t)m->sh[i - 1].size };
			memcpy(m->buf + AT_SHDR + i * sizeof(s), &s, sizeof(s));
		}
		Elf32_Shdr t = { .sh_name = name_at[m->nsh], .sh_type = SHT_STRTAB, .sh_offset = AT_STRTAB,
				 .sh_size = (uint32_t)str };
		memcpy(m->buf + AT_SHDR + (nsh - 1) * sizeof(t), &t, sizeof(t));
	}
}

/* A note at p: header, name padded to 4, descriptor padded to 4. Its size. */
static size_t put_note(uint8_t *p, const char *name, uint32_t namesz, uint32_t type, const void *desc,
		       uint32_t descsz)
{
	wr32(p, namesz);
	wr32(p + 4, descsz);
	wr32(p + 8, type);
	memcpy(p + 12, name, namesz);
	size_t d = 12 + ((namesz + 3u) & ~3u);
	if (desc)
		memcpy(p + d, desc, descsz);
	return d + ((descsz + 3u) & ~3u);
}

struct entry {
	const char *name;
	uint32_t type;
};

/* A manifest descriptor (x86_64 layout): 4 bytes of padding, version, count, 104-byte
 * entries, the reserved one first. Its size. */
static uint32_t put_mft(uint8_t *d, uint32_t version, uint32_t count, const struct entry *e, size_t n)
{
	memset(d, 0, 12 + (n + 1) * 104);
	wr32(d + 4, version);
	wr32(d + 8, count);
	wr32(d + 12 + 68, RESERVED_FIRST);
	for (size_t i = 0; i < n; i++) {
		uint8_t *at = d + 12 + (i + 1) * 104;
		memcpy(at, e[i].name, strlen(e[i].name));
		wr32(at + 68, e[i].type);
	}
	return (uint32_t)(12 + (n + 1) * 104);
}

static void put_multiboot(uint8_t *p)
{
	uint32_t flags = 0x10003;
	wr32(p, 0x1BADB002u);
	wr32(p + 4, flags);
	wr32(p + 8, (uint32_t)-(0x1BADB002u + flags));
}

/* A Solo5 virtio binary: multiboot header, PT_NOTE segments for the manifest and the ABI
 * note, and their sections. Returns the manifest note's size. */
static size_t solo5_img(struct img *m, const struct entry *e, size_t n)
{
	img_init(m, true);
	put_multiboot(m->buf + AT_MULTIBOOT);
	uint8_t desc[12 + 70 * 104];
	uint32_t dsz = put_mft(desc, 1, (uint32_t)n + 1, e, n);
	size_t mft = put_note(m->buf + AT_NOTES, "Solo5", 6, MFT1, desc, dsz);
	uint32_t abi[4] = { 3, 1, 0, 0 };
	size_t abi_sz = put_note(m->buf + AT_NOTES + mft, "Solo5", 6, ABI1, abi, sizeof(abi));
	add_ph(m, PT_LOAD, AT_MULTIBOOT, 0x100, 0x1000);
	add_ph(m, PT_NOTE, AT_NOTES + mft, abi_sz, 4);
	add_ph(m, PT_NOTE, AT_NOTES, mft, 4);
	add_sh(m, ".text", SHT_PROGBITS, AT_MULTIBOOT, 0x100);
	add_sh(m, ".note.solo5.manifest", SHT_NOTE, AT_NOTES, mft);
	add_sh(m, ".note.solo5.abi", SHT_NOTE, AT_NOTES + mft, abi_sz);
	finish(m);
	return mft;
}

static void solo5(void **state)
{
	(void)state;
	static struct img m;
	struct guest_binary b;
	uk_error err = { 0 };

	const struct entry blk[] = { { "storage", 1 } };
	solo5_img(&m, blk, 1);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
	assert_int_equal(b.boot, GUEST_BOOT_MULTIBOOT);
	assert_true(b.elf64 && b.solo5 && !b.unikraft);
	assert_int_equal(b.solo5_abi_target, 3);
	assert_int_equal(b.solo5_abi_version, 1);
	assert_int_equal(b.n_mft, 1);
	assert_string_equal(b.mft[0].name, "storage");
	assert_int_equal(b.mft[0].kind, GUEST_DEV_BLOCK);
	assert_contains(b.why, "Solo5 ABI note (virtio, ABI 1)");
	assert_contains(b.why, "storage BLOCK_BASIC");

	/* In manifest order; a name of 67 bytes (the most) is kept whole. */
	const struct entry two[] = { { "service0", 2 },
				     { "b123456789012345678901234567890123456789012345678901234567890123456", 1 } };
	solo5_img(&m, two, 2);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
	assert_int_equal(b.n_mft, 2);
	assert_string_equal(b.mft[0].name, "service0");
	assert_int_equal(b.mft[0].kind, GUEST_DEV_NET);
	assert_int_equal(strlen(b.mft[1].name), 67);

	/* 64 entries (the reserved one and 63 devices) is Solo5's most. */
	struct entry many[63];
	char names[63][8];
	for (size_t i = 0; i < 63; i++) {
		snprintf(names[i], sizeof(names[i]), "d%zu", i);
		many[i] = (struct entry){ names[i], 1 };
	}
	solo5_img(&m, many, 63);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
	assert_int_equal(b.n_mft, 63);

	/* No devices (test_hello): a Solo5 binary still. */
	solo5_img(&m, NULL, 0);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
	assert_true(b.solo5);
	assert_int_equal(b.n_mft, 0);
	assert_contains(b.why, "no devices");
}

/* A manifest that cannot be read is an error naming the fault; out is left zeroed. */
static void bad_manifests(void **state)
{
	(void)state;
	static struct img m;
	struct guest_binary b;
	uk_error err = { 0 };
	const struct entry one[] = { { "x", 1 } };
	uint8_t *desc = m.buf + AT_NOTES + 20; /* after the header and "Solo5\0\0\0" */
	static const struct {
		size_t at; /* offset in the descriptor; SIZE_MAX: nothing to change */
		uint32_t value;
		size_t bytes;
		const char *msg;
	} cases[] = {
		{ 4, 2, 4, "Solo5 manifest: version 2" },
		{ 8, 65, 4, "Solo5 manifest: 65 entries, more than Solo5's 64" },
		{ 8, 0xFFFFFFFFu, 4, "4294967295 entries" },
		{ 8, 0, 4, "no entries" },
		{ 8, 3, 4, "but 3 entries take 324" },
		{ 12 + 68, 1, 4, "entry 0 is not Solo5's reserved first entry" },
		{ 12, 'n', 1, "entry 0 is not Solo5's reserved first entry" },
		{ 12 + 104 + 68, 3, 4, "entry 1 (\"x\") has type 0x3" },
		{ 12 + 104 + 68, RESERVED_FIRST, 4, "entry 1 (\"x\") has type 0x40000000" },
		{ 12 + 104, 0, 1, "entry 1 has an empty name" },
		{ 12 + 104 + 1, ' ', 1, "entry 1 has an empty name or one with a space" },
		{ 12 + 104 + 96, 1, 1, "entry 1 (\"x\") is marked attached" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		solo5_img(&m, one, 1);
		if (cases[i].bytes == 4)
			wr32(desc + cases[i].at, cases[i].value);
		else
			desc[cases[i].at] = (uint8_t)cases[i].value;
		memset(&b, 0x5a, sizeof(b));
		int r = guest_probe_buf(m.buf, sizeof(m.buf), &b, &err);
		if (r != -EINVAL)
			fail_msg("case %zu: got %d", i, r);
		assert_contains(err.msg, cases[i].msg);
		assert_false(b.solo5);
		assert_int_equal(b.n_mft, 0);
	}

	/* A name that fills its 68 bytes has no NUL. */
	solo5_img(&m, one, 1);
	memset(desc + 12 + 104, 'a', 68);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), -EINVAL);
	assert_contains(err.msg, "entry 1 has a name without a NUL in its 68 bytes");

	/* The same name twice. */
	const struct entry dup[] = { { "a", 1 }, { "b", 2 }, { "a", 2 } };
	solo5_img(&m, dup, 3);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), -EINVAL);
	assert_contains(err.msg, "entries 1 and 3 have the same name \"a\"");

	/* A descriptor shorter than the header, an ABI note of the wrong size. */
	solo5_img(&m, one, 1);
	wr32(m.buf + AT_NOTES + 4, 8);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), -EINVAL);
	assert_contains(err.msg, "holds 8 bytes, fewer than its 12-byte header");
	size_t mft = solo5_img(&m, one, 1);
	wr32(m.buf + AT_NOTES + mft + 4, 4);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), -EINVAL);
	assert_contains(err.msg, "Solo5 ABI note: its note holds 4 bytes");

	/* A manifest in a 32-bit ELF. */
	solo5_img(&m, one, 1);
	m.is64 = false;
	finish(&m);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), -EINVAL);
	assert_contains(err.msg, "Solo5 manifest in a 32-bit ELF");
}

/* Truncated, oversized and overlapping notes. */
static void hostile_notes(void **state)
{
	(void)state;
	static struct img m;
	struct guest_binary b;
	uk_error err = { 0 };
	const struct entry one[] = { { "storage", 1 } };

	/* The descriptor runs past its segment (and section). */
	size_t mft = solo5_img(&m, one, 1);
	wr32(m.buf + AT_NOTES + 4, (uint32_t)mft);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), -EINVAL);
	assert_contains(err.msg, "Solo5 manifest note at offset 0x2000");
	assert_contains(err.msg, "run past the end of its note segment");
	/* Oversized: past the end of the file. */
	wr32(m.buf + AT_NOTES + 4, 0xFFFFFFF0u);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), -EINVAL);

	/* A name size that runs past the segment ends the walk: nothing found. */
	solo5_img(&m, one, 1);
	wr32(m.buf + AT_NOTES, 0xFFFFFFFFu);
	m.nsh = 0; /* no sections either */
	finish(&m);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
	assert_true(b.solo5); /* the ABI note, in its own segment */
	assert_int_equal(b.n_mft, 0);

	/* A name without its NUL ("Solo5", 5 bytes) is not Solo5's. */
	img_init(&m, true);
	uint32_t abi[4] = { 3, 1, 0, 0 };
	size_t n = put_note(m.buf + AT_NOTES, "Solo5", 5, ABI1, abi, sizeof(abi));
	add_ph(&m, PT_NOTE, AT_NOTES, n, 4);
	finish(&m);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
	assert_false(b.solo5);
	assert_int_equal(b.boot, GUEST_BOOT_ELF);

	/* Overlapping: the same notes through a segment, a section and a second segment count
	 * once; a segment that starts inside a note reads garbage, safely. */
	mft = solo5_img(&m, one, 1);
	add_ph(&m, PT_NOTE, AT_NOTES, mft, 4);
	add_ph(&m, PT_NOTE, AT_NOTES + 4, mft, 4);
	add_ph(&m, PT_NOTE, AT_NOTES + 20, mft - 20, 4);
	finish(&m);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
	assert_int_equal(b.n_mft, 1);
	/* Two different manifest notes. */
	mft = solo5_img(&m, one, 1);
	memcpy(m.buf + AT_NOTES + 0x800, m.buf + AT_NOTES, mft);
	add_ph(&m, PT_NOTE, AT_NOTES + 0x800, mft, 4);
	finish(&m);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), -EINVAL);
	assert_contains(err.msg, "two Solo5 manifest notes, at offsets 0x2000 and 0x2800");

	/* An 8-aligned note segment pads to 8 (a GNU property note, then the PVH note). */
	img_init(&m, true);
	uint8_t *p = m.buf + AT_NOTES;
	uint32_t entry = 0x100000;
	assert_int_equal(put_note(p, "GNU", 4, 5, "abcd", 4), 20); /* 24 at 8 */
	put_note(p + 24, "Xen", 4, 18, &entry, 4);
	add_ph(&m, PT_NOTE, AT_NOTES, 24 + 24, 8);
	finish(&m);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
	assert_int_equal(b.boot, GUEST_BOOT_PVH);
	/* A segment alignment other than 0, 1, 2, 4 or 8 is not walked. */
	m.ph[0].align = 16;
	finish(&m);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
	assert_int_equal(b.boot, GUEST_BOOT_ELF);
}

/* Offsets, sizes and counts past the file, and headers that lie. */
static void hostile_headers(void **state)
{
	(void)state;
	static struct img m;
	struct guest_binary b;
	uk_error err = { 0 };
	const struct entry one[] = { { "storage", 1 } };

	static const struct {
		size_t at, bytes; /* in the ELF64 header */
		uint64_t value;
	} cases[] = {
		{ offsetof(Elf64_Ehdr, e_phoff), 8, 0xFFFFFFFFFFFFFF00ull },
		{ offsetof(Elf64_Ehdr, e_phoff), 8, IMG_SIZE - 8 },
		{ offsetof(Elf64_Ehdr, e_phnum), 2, 0xFFFF },
		{ offsetof(Elf64_Ehdr, e_phnum), 2, 0xFFFE },
		{ offsetof(Elf64_Ehdr, e_phentsize), 2, 1 },
		{ offsetof(Elf64_Ehdr, e_shoff), 8, 0xFFFFFFFFFFFFFFF0ull },
		{ offsetof(Elf64_Ehdr, e_shnum), 2, 0xFFFF },
		{ offsetof(Elf64_Ehdr, e_shstrndx), 2, 0xFFFF },
		{ offsetof(Elf64_Ehdr, e_shstrndx), 2, 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		solo5_img(&m, one, 1);
		memcpy(m.buf + cases[i].at, &cases[i].value, cases[i].bytes);
		int r = guest_probe_buf(m.buf, sizeof(m.buf), &b, &err);
		if (r != 0 && r != -EINVAL)
			fail_msg("case %zu: %d", i, r);
		assert_int_equal(b.boot, r == 0 ? GUEST_BOOT_MULTIBOOT : GUEST_BOOT_UNKNOWN);
	}

	/* A segment whose offset plus size wraps around. */
	solo5_img(&m, one, 1);
	m.ph[2].off = 0xFFFFFFFFFFFFFF00ull;
	m.ph[2].size = 0x200;
	m.nsh = 0;
	finish(&m);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
	assert_int_equal(b.n_mft, 0);

	/* Section names: past the name table, or not NUL-terminated inside it. */
	img_init(&m, false);
	add_sh(&m, ".uk_bootinfo", SHT_PROGBITS, AT_LOAD, 16);
	finish(&m);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
	assert_true(b.unikraft);
	Elf32_Shdr s;
	memcpy(&s, m.buf + AT_SHDR + sizeof(s), sizeof(s));
	s.sh_name = 5000;
	memcpy(m.buf + AT_SHDR + sizeof(s), &s, sizeof(s));
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
	assert_false(b.unikraft);
	finish(&m);
	memcpy(&s, m.buf + AT_SHDR + 2 * sizeof(s), sizeof(s)); /* the name table */
	s.sh_size = 5;                                          /* "\0.uk_" */
	memcpy(m.buf + AT_SHDR + 2 * sizeof(s), &s, sizeof(s));
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
	assert_false(b.unikraft);

	/* Many note segments over the same notes: bounded work, one result. */
	size_t mft = solo5_img(&m, one, 1);
	m.nph = 0;
	for (size_t i = 0; i < 16; i++)
		add_ph(&m, PT_NOTE, AT_NOTES, mft, 4);
	finish(&m);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
	assert_int_equal(b.n_mft, 1);

	/* Not ELF at all, too short, big-endian. */
	uint8_t small[] = { 0x7f, 'E', 'L', 'F', 2, 1 };
	assert_int_equal(guest_probe_buf(small, sizeof(small), &b, &err), 0);
	assert_int_equal(b.boot, GUEST_BOOT_UNKNOWN);
	assert_int_equal(guest_probe_buf(small, 0, &b, &err), 0);
	solo5_img(&m, one, 1);
	m.buf[EI_DATA] = ELFDATA2MSB;
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
	assert_false(b.solo5);
	assert_int_equal(b.boot, GUEST_BOOT_MULTIBOOT);
}

/* Every prefix of a good image, and every byte of its headers and notes changed, probe
 * without a crash (the sanitizer build watches the reads). */
static void truncations_and_mutations(void **state)
{
	(void)state;
	static struct img m, orig;
	struct guest_binary b;
	uk_error err = { 0 };
	const struct entry two[] = { { "storage", 1 }, { "service0", 2 } };
	solo5_img(&orig, two, 2);
	for (size_t len = 0; len <= IMG_SIZE; len += 7) {
		int r = guest_probe_buf(orig.buf, len, &b, &err);
		assert_true(r == 0 || r == -EINVAL);
	}
	static const uint8_t values[] = { 0x00, 0x01, 0x7f, 0xff };
	static const struct {
		size_t from, to;
	} areas[] = { { 0, 64 + 3 * 56 }, { AT_SHDR, AT_SHDR + 6 * 64 }, { AT_NOTES, AT_NOTES + 400 } };
	for (size_t a = 0; a < sizeof(areas) / sizeof(areas[0]); a++)
		for (size_t at = areas[a].from; at < areas[a].to; at++)
			for (size_t v = 0; v < sizeof(values); v++) {
				memcpy(&m, &orig, sizeof(m));
				m.buf[at] = values[v];
				int r = guest_probe_buf(m.buf, sizeof(m.buf), &b, &err);
				assert_true(r == 0 || r == -EINVAL);
				assert_true(b.n_mft <= GUEST_MFT_MAX_ENTRIES);
			}
}

static void unikraft(void **state)
{
	(void)state;
	static struct img m;
	struct guest_binary b;
	uk_error err = { 0 };
	static const char banner[] = "Powered by\n Unikraft Calypso 0.17.0~484ff209";

	img_init(&m, false);
	put_multiboot(m.buf + 0x34 + 0x40);
	memcpy(m.buf + AT_LOAD + 100, banner, sizeof(banner));
	add_ph(&m, PT_LOAD, AT_LOAD, 0x200, 0x1000);
	add_ph(&m, PT_LOAD, AT_LOAD + 0x100, 0x400, 0x1000); /* overlaps the first */
	add_sh(&m, ".text", SHT_PROGBITS, AT_LOAD, 0x100);
	add_sh(&m, ".uk_bootinfo", SHT_PROGBITS, AT_LOAD + 0x100, 0x10);
	finish(&m);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
	assert_int_equal(b.boot, GUEST_BOOT_MULTIBOOT);
	assert_false(b.elf64);
	assert_true(b.unikraft);
	assert_false(b.solo5);
	assert_string_equal(b.unikraft_version, "0.17.0");
	assert_contains(b.why, "section .uk_bootinfo");
	assert_contains(b.why, "banner \"Unikraft Calypso 0.17.0\"");

	/* The banner alone is enough; outside loadable bytes it does not count. */
	m.nsh = 0;
	finish(&m);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
	assert_true(b.unikraft);
	m.ph[0].off = AT_LOAD + 0x1000;
	m.ph[1].off = AT_LOAD + 0x1000;
	finish(&m);
	assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
	assert_false(b.unikraft);
	assert_string_equal(b.unikraft_version, "");

	/* Not a banner: no codename, no version, a version cut by the segment's end. */
	static const char *const not_banners[] = { "Unikraft 0.17.0", "Unikraft Calypso", "Unikraft calypso 0.1.2",
						   "Unikraft Calypso 0.17", "Unikraft Calypso 1234567.1.1" };
	for (size_t i = 0; i < sizeof(not_banners) / sizeof(not_banners[0]); i++) {
		img_init(&m, true);
		memcpy(m.buf + AT_LOAD, not_banners[i], strlen(not_banners[i]));
		add_ph(&m, PT_LOAD, AT_LOAD, strlen(not_banners[i]), 0x1000);
		finish(&m);
		assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
		if (b.unikraft)
			fail_msg("\"%s\" read as a banner", not_banners[i]);
	}
}

static void boot_protocols(void **state)
{
	(void)state;
	static struct img m;
	static uint8_t raw[16384];
	struct guest_binary b;
	uk_error err = { 0 };

	/* Linux boot protocol. */
	memset(raw, 0, sizeof(raw));
	memcpy(raw + 0x202, "HdrS", 4);
	assert_int_equal(guest_probe_boot(raw, sizeof(raw)), GUEST_BOOT_BZIMAGE);
	assert_int_equal(guest_probe_buf(raw, sizeof(raw), &b, &err), 0);
	assert_int_equal(b.boot, GUEST_BOOT_BZIMAGE);
	assert_contains(b.why, "Linux boot protocol header");
	assert_int_equal(guest_probe_boot(raw, 0x205), GUEST_BOOT_UNKNOWN);

	/* Multiboot: 4-aligned, in the first 8 KiB, with its checksum. */
	memset(raw, 0, sizeof(raw));
	put_multiboot(raw + 0x1ff0);
	assert_int_equal(guest_probe_boot(raw, sizeof(raw)), GUEST_BOOT_MULTIBOOT);
	memset(raw, 0, sizeof(raw));
	put_multiboot(raw + 0x2000);
	assert_int_equal(guest_probe_boot(raw, sizeof(raw)), GUEST_BOOT_UNKNOWN);
	memset(raw, 0, sizeof(raw));
	put_multiboot(raw + 0x42);
	assert_int_equal(guest_probe_boot(raw, sizeof(raw)), GUEST_BOOT_UNKNOWN);
	memset(raw, 0, sizeof(raw));
	put_multiboot(raw + 0x40);
	raw[0x48]++;
	assert_int_equal(guest_probe_boot(raw, sizeof(raw)), GUEST_BOOT_UNKNOWN);
	put_multiboot(raw + 0x40);
	assert_int_equal(guest_probe_boot(raw, 0x4b), GUEST_BOOT_UNKNOWN); /* cut inside it */
	assert_int_equal(guest_probe_boot(raw, 0x4c), GUEST_BOOT_MULTIBOOT);

	/* PVH: a Xen note of type 18, in ELF32 and ELF64; PVH wins over multiboot. */
	for (int is64 = 0; is64 < 2; is64++) {
		img_init(&m, is64);
		uint32_t entry = 0x100000;
		size_t n = put_note(m.buf + AT_NOTES, "GNU", 4, 3, "abcd", 4);
		n += put_note(m.buf + AT_NOTES + n, "Xen", 4, 18, &entry, 4);
		add_ph(&m, PT_NOTE, AT_NOTES, n, 4);
		put_multiboot(m.buf + AT_MULTIBOOT);
		finish(&m);
		assert_int_equal(guest_probe_boot(m.buf, sizeof(m.buf)), GUEST_BOOT_PVH);
		assert_int_equal(guest_probe_buf(m.buf, sizeof(m.buf), &b, &err), 0);
		assert_int_equal(b.boot, GUEST_BOOT_PVH);
		assert_int_equal(b.elf64, is64);
		/* Another Xen note type, or a note cut by its segment: a plain multiboot ELF. */
		wr32(m.buf + AT_NOTES + 20 + 8, 17);
		assert_int_equal(guest_probe_boot(m.buf, sizeof(m.buf)), GUEST_BOOT_MULTIBOOT);
		wr32(m.buf + AT_NOTES + 20 + 8, 18);
		m.ph[0].size = n - 1;
		finish(&m);
		assert_int_equal(guest_probe_boot(m.buf, sizeof(m.buf)), GUEST_BOOT_MULTIBOOT);
		memset(m.buf + AT_MULTIBOOT, 0, 12);
		assert_int_equal(guest_probe_boot(m.buf, sizeof(m.buf)), GUEST_BOOT_ELF);
	}
	assert_string_equal(guest_boot_name(GUEST_BOOT_PVH), "pvh");
	assert_string_equal(guest_boot_name(GUEST_BOOT_MULTIBOOT), "multiboot");
	assert_string_equal(guest_boot_name((enum guest_boot)42), "unknown");
	assert_string_equal(guest_solo5_target_name(1), "hvt");
	assert_string_equal(guest_solo5_target_name(GUEST_SOLO5_TARGET_VIRTIO), "virtio");
	assert_string_equal(guest_solo5_target_name(1000), "?");
}

/* A private directory for the file tests, removed even when a test fails. */
static char tmp_dir[64];

static int tmp_setup(void **state)
{
	(void)state;
	snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/uk-test-guest-probe-XXXXXX");
	return mkdtemp(tmp_dir) ? 0 : -1;
}

static int tmp_teardown(void **state)
{
	(void)state;
	return uk_rm_rf(tmp_dir, NULL);
}

static void files(void **state)
{
	(void)state;
	char path[96], big[96];
	snprintf(path, sizeof(path), "%s/kernel", tmp_dir);
	snprintf(big, sizeof(big), "%s/big", tmp_dir);
	static struct img m;
	const struct entry one[] = { { "service0", 2 } };
	solo5_img(&m, one, 1);
	struct guest_binary b;
	uk_error err = { 0 };

	assert_int_equal(uk_write_file_atomic(path, m.buf, sizeof(m.buf), 0600, &err), 0);
	assert_int_equal(guest_probe_file(path, &b, &err), 0);
	assert_int_equal(b.n_mft, 1);

	/* A manifest error names the file. */
	wr32(m.buf + AT_NOTES + 20 + 4, 7);
	assert_int_equal(uk_write_file_atomic(path, m.buf, sizeof(m.buf), 0600, &err), 0);
	assert_int_equal(guest_probe_file(path, &b, &err), -EINVAL);
	assert_contains(err.msg, path);
	assert_contains(err.msg, "version 7");

	/* Larger than the bound (a sparse file): -EFBIG naming it. */
	int fd = open(big, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)GUEST_PROBE_FILE_MAX + 1), 0);
	assert_int_equal(close(fd), 0);
	assert_int_equal(guest_probe_file(big, &b, &err), -EFBIG);
	assert_contains(err.msg, big);

	snprintf(path, sizeof(path), "%s/missing", tmp_dir);
	assert_int_equal(guest_probe_file(path, &b, &err), -ENOENT);
	assert_contains(err.msg, path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(solo5),
		cmocka_unit_test(bad_manifests),
		cmocka_unit_test(hostile_notes),
		cmocka_unit_test(hostile_headers),
		cmocka_unit_test(truncations_and_mutations),
		cmocka_unit_test(unikraft),
		cmocka_unit_test(boot_protocols),
		cmocka_unit_test_setup_teardown(files, tmp_setup, tmp_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
