#include <elf.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"
#include "probe.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define MULTIBOOT_MAGIC 0x1BADB002u
#define MULTIBOOT_SEARCH 8192
#define BZIMAGE_MAGIC_AT 0x202

/* Solo5 0.12's notes (include/solo5/elf_abi.h and mft_abi.h), in the x86_64 layout of its
 * virtio target. A note's name is "Solo5" with its NUL. */
#define SOLO5_NAME "Solo5"
#define SOLO5_NAMESZ 6
#define SOLO5_NOTE_ABI1 0x31494241u /* "ABI1" */
#define SOLO5_NOTE_MFT1 0x3154464du /* "MFT1" */
#define SOLO5_ABI_DESC_MIN 8        /* abi_target, abi_version */
#define SOLO5_ABI_DESC_MAX 32       /* ABI1_NOTE_MAX_SIZE */
#define MFT_VERSION 1
#define MFT_DESC_PAD 4        /* struct mft is 8-aligned, the note header is 20 bytes */
#define MFT_HEADER 8          /* uint32_t version, entries */
#define MFT_ENTRY_SIZE 104    /* char name[68]; type; union u (16); union b (8); bool attached */
#define MFT_ENTRY_TYPE 68
#define MFT_ENTRY_ATTACHED 96
#define MFT_RESERVED_FIRST (1u << 30)
#define MFT_DEV_BLOCK_BASIC 1
#define MFT_DEV_NET_BASIC 2
_Static_assert(GUEST_MFT_NAME_MAX + 1 == MFT_ENTRY_TYPE, "a manifest name is 68 bytes, NUL included");

/* Bounds on the work a file can ask for: note regions (PT_NOTE segments and SHT_NOTE
 * sections) walked, notes read, PT_LOAD ranges searched for the Unikraft banner. */
#define MAX_NOTE_REGIONS 64
#define MAX_NOTES 4096
#define MAX_LOAD_RANGES 64

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

/* [off, off + size) lies inside a buffer of len bytes (no overflow: off is checked first). */
static bool in_buf(size_t len, uint64_t off, uint64_t size)
{
	return off <= len && size <= len - off;
}

struct elf {
	bool is64;
	uint64_t phoff, shoff;
	unsigned phnum, shnum, shstrndx;
};

struct region {
	uint32_t type;
	uint64_t off, size, align, name; /* name: sections only */
};

struct probe {
	const uint8_t *buf;
	size_t len;
	bool details;             /* the Solo5 notes and Unikraft marks too, not only the boot */
	struct guest_binary *out; /* details only */
	bool pvh;
	size_t regions, notes;
	uint64_t abi_at, mft_at; /* where the Solo5 notes were found; 0: not (the ELF header is there) */
	char uk_section[32];
	size_t mb_at;
};

static bool elf_header(const uint8_t *b, size_t len, struct elf *e)
{
	*e = (struct elf){ 0 };
	if (len < EI_NIDENT || memcmp(b, ELFMAG, SELFMAG) != 0 || b[EI_DATA] != ELFDATA2LSB)
		return false;
	if (b[EI_CLASS] == ELFCLASS64 && len >= sizeof(Elf64_Ehdr)) {
		Elf64_Ehdr h;
		memcpy(&h, b, sizeof(h));
		*e = (struct elf){ .is64 = true, .phoff = h.e_phoff, .shoff = h.e_shoff, .shstrndx = h.e_shstrndx,
				   .phnum = h.e_phentsize == sizeof(Elf64_Phdr) ? h.e_phnum : 0,
				   .shnum = h.e_shentsize == sizeof(Elf64_Shdr) ? h.e_shnum : 0 };
	} else if (b[EI_CLASS] == ELFCLASS32 && len >= sizeof(Elf32_Ehdr)) {
		Elf32_Ehdr h;
		memcpy(&h, b, sizeof(h));
		*e = (struct elf){ .phoff = h.e_phoff, .shoff = h.e_shoff, .shstrndx = h.e_shstrndx,
				   .phnum = h.e_phentsize == sizeof(Elf32_Phdr) ? h.e_phnum : 0,
				   .shnum = h.e_shentsize == sizeof(Elf32_Shdr) ? h.e_shnum : 0 };
	} else {
		return false;
	}
	/* Extended numbering (PN_XNUM, SHN_XINDEX) is not followed: kernels do not need it. */
	if (e->phnum == PN_XNUM)
		e->phnum = 0;
	if (e->shstrndx >= SHN_LORESERVE)
		e->shnum = 0;
	return true;
}

static bool elf_phdr(const struct probe *p, const struct elf *e, unsigned i, struct region *r)
{
	size_t sz = e->is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
	if (e->phoff > p->len || !in_buf(p->len, e->phoff + (uint64_t)i * sz, sz))
		return false;
	const uint8_t *at = p->buf + e->phoff + (uint64_t)i * sz;
	if (e->is64) {
		Elf64_Phdr h;
		memcpy(&h, at, sizeof(h));
		*r = (struct region){ .type = h.p_type, .off = h.p_offset, .size = h.p_filesz, .align = h.p_align };
	} else {
		Elf32_Phdr h;
		memcpy(&h, at, sizeof(h));
		*r = (struct region){ .type = h.p_type, .off = h.p_offset, .size = h.p_filesz, .align = h.p_align };
	}
	return true;
}

static bool elf_shdr(const struct probe *p, const struct elf *e, unsigned i, struct region *r)
{
	size_t sz = e->is64 ? sizeof(Elf64_Shdr) : sizeof(Elf32_Shdr);
	if (e->shoff > p->len || !in_buf(p->len, e->shoff + (uint64_t)i * sz, sz))
		return false;
	const uint8_t *at = p->buf + e->shoff + (uint64_t)i * sz;
	if (e->is64) {
		Elf64_Shdr h;
		memcpy(&h, at, sizeof(h));
		*r = (struct region){ .type = h.sh_type, .off = h.sh_offset, .size = h.sh_size,
				      .align = h.sh_addralign, .name = h.sh_name };
	} else {
		Elf32_Shdr h;
		memcpy(&h, at, sizeof(h));
		*r = (struct region){ .type = h.sh_type, .off = h.sh_offset, .size = h.sh_size,
				      .align = h.sh_addralign, .name = h.sh_name };
	}
	return true;
}

static bool solo5_name_ok(const char *name)
{
	if (!*name)
		return false;
	for (; *name; name++)
		if (*name <= ' ' || *name > '~' || *name == '"' || *name == '\\')
			return false;
	return true;
}

static const char *mft_type_name(uint32_t type)
{
	return type == MFT_DEV_BLOCK_BASIC ? "BLOCK_BASIC" : type == MFT_DEV_NET_BASIC ? "NET_BASIC" : "?";
}

/* One manifest entry (index i >= 1) into out->mft. */
static int mft_entry(struct guest_binary *out, const uint8_t *e, uint32_t i, uk_error *err)
{
	if (e[GUEST_MFT_NAME_MAX] != '\0')
		return uk_err(err, EINVAL, "Solo5 manifest: entry %u has a name without a NUL in its %d bytes", i,
			      GUEST_MFT_NAME_MAX + 1);
	const char *name = (const char *)e;
	if (!solo5_name_ok(name))
		return uk_err(err, EINVAL, "Solo5 manifest: entry %u has an empty name or one with a space, a quote or a non-printable byte",
			      i);
	uint32_t type = rd32(e + MFT_ENTRY_TYPE);
	if (type != MFT_DEV_BLOCK_BASIC && type != MFT_DEV_NET_BASIC)
		return uk_err(err, EINVAL, "Solo5 manifest: entry %u (\"%s\") has type %#x, which is neither BLOCK_BASIC (1) nor NET_BASIC (2)",
			      i, name, type);
	if (e[MFT_ENTRY_ATTACHED] != 0)
		return uk_err(err, EINVAL, "Solo5 manifest: entry %u (\"%s\") is marked attached", i, name);
	for (size_t k = 0; k < out->n_mft; k++)
		if (strcmp(out->mft[k].name, name) == 0)
			return uk_err(err, EINVAL, "Solo5 manifest: entries %zu and %u have the same name \"%s\"", k + 1,
				      i, name);
	struct guest_device *d = &out->mft[out->n_mft++];
	d->kind = type == MFT_DEV_BLOCK_BASIC ? GUEST_DEV_BLOCK : GUEST_DEV_NET;
	memcpy(d->name, name, strlen(name) + 1);
	return 0;
}

/* The MFT1 note's descriptor: 4 bytes of alignment, struct mft, its entries (mft_abi.h). */
static int parse_manifest(struct probe *p, const uint8_t *d, uint32_t n, bool is64, uk_error *err)
{
	if (!is64)
		return uk_err(err, EINVAL, "Solo5 manifest in a 32-bit ELF: Solo5 builds only 64-bit binaries");
	if (n < MFT_DESC_PAD + MFT_HEADER)
		return uk_err(err, EINVAL, "Solo5 manifest: its note holds %u bytes, fewer than its %d-byte header", n,
			      MFT_DESC_PAD + MFT_HEADER);
	const uint8_t *m = d + MFT_DESC_PAD;
	uint32_t version = rd32(m), entries = rd32(m + 4);
	if (version != MFT_VERSION)
		return uk_err(err, EINVAL, "Solo5 manifest: version %u, but unikd reads version %d", version,
			      MFT_VERSION);
	if (entries > GUEST_MFT_MAX_ENTRIES)
		return uk_err(err, EINVAL, "Solo5 manifest: %u entries, more than Solo5's %d", entries,
			      GUEST_MFT_MAX_ENTRIES);
	if (entries == 0)
		return uk_err(err, EINVAL, "Solo5 manifest: no entries, not even Solo5's reserved first one");
	size_t want = MFT_DESC_PAD + MFT_HEADER + (size_t)entries * MFT_ENTRY_SIZE;
	if (n != want)
		return uk_err(err, EINVAL, "Solo5 manifest: its note holds %u bytes, but %u entries take %zu (Solo5 0.12, x86_64)",
			      n, entries, want);
	const uint8_t *e = m + MFT_HEADER;
	if (rd32(e + MFT_ENTRY_TYPE) != MFT_RESERVED_FIRST || e[0] != '\0')
		return uk_err(err, EINVAL, "Solo5 manifest: entry 0 is not Solo5's reserved first entry");
	for (uint32_t i = 1; i < entries; i++) {
		int r = mft_entry(p->out, e + (size_t)i * MFT_ENTRY_SIZE, i, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* A Solo5 note; the same note met twice (overlapping regions) counts once. */
static int solo5_note(struct probe *p, uint32_t type, uint64_t at, const uint8_t *desc, uint32_t descsz,
		      bool is64, uk_error *err)
{
	uint64_t *seen = type == SOLO5_NOTE_ABI1 ? &p->abi_at : &p->mft_at;
	const char *what = type == SOLO5_NOTE_ABI1 ? "ABI" : "manifest";
	if (*seen == at)
		return 0;
	if (*seen)
		return uk_err(err, EINVAL, "two Solo5 %s notes, at offsets %#llx and %#llx", what,
			      (unsigned long long)*seen, (unsigned long long)at);
	*seen = at;
	p->out->solo5 = true;
	if (type == SOLO5_NOTE_MFT1)
		return parse_manifest(p, desc, descsz, is64, err);
	if (descsz < SOLO5_ABI_DESC_MIN || descsz > SOLO5_ABI_DESC_MAX)
		return uk_err(err, EINVAL, "Solo5 ABI note: its note holds %u bytes, not %d to %d", descsz,
			      SOLO5_ABI_DESC_MIN, SOLO5_ABI_DESC_MAX);
	p->out->solo5_abi_target = rd32(desc);
	p->out->solo5_abi_version = rd32(desc + 4);
	return 0;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* Walk the notes of one region. A note that runs past the region ends the walk (what
 * follows cannot be framed), and is an error if it is a Solo5 note. */
static int walk_notes(struct probe *p, const struct region *rg, bool is64, uk_error *err)
{
	/* Notes are padded to 4 bytes, or to 8 in an 8-aligned region (the gABI's two cases). */
	uint64_t align = rg->align == 8 ? 8 : 4;
	if ((rg->align > 4 && rg->align != 8) || !in_buf(p->len, rg->off, rg->size) ||
	    p->regions++ >= MAX_NOTE_REGIONS)
		return 0;
	uint64_t at = rg->off, end = rg->off + rg->size;
	while (end - at >= 12 && p->notes++ < MAX_NOTES) {
		const uint8_t *h = p->buf + at;
		uint32_t namesz = rd32(h), descsz = rd32(h + 4), type = rd32(h + 8);
		/* The descriptor and the next note start at the alignment (readelf's reading). */
		uint64_t name_at = at + 12, desc_at = at + align_up(12 + (uint64_t)namesz, align);
		if (desc_at > end)
			return 0;
		bool solo5 = namesz == SOLO5_NAMESZ && memcmp(p->buf + name_at, SOLO5_NAME, SOLO5_NAMESZ) == 0 &&
			     (type == SOLO5_NOTE_ABI1 || type == SOLO5_NOTE_MFT1);
		if (descsz > end - desc_at) {
			if (solo5 && p->details)
				return uk_err(err, EINVAL, "Solo5 %s note at offset %#llx: its %u bytes run past the end of its note segment",
					      type == SOLO5_NOTE_ABI1 ? "ABI" : "manifest", (unsigned long long)at, descsz);
			return 0;
		}
		if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 && memcmp(p->buf + name_at, "Xen", 4) == 0)
			p->pvh = true;
		if (solo5 && p->details) {
			int r = solo5_note(p, type, at, p->buf + desc_at, descsz, is64, err);
			if (r < 0)
				return r;
		}
		uint64_t next = at + align_up(desc_at - at + descsz, align);
		if (next > end)
			break;
		at = next;
	}
	return 0;
}

/* A section name, NUL-terminated inside the section name table; NULL otherwise. */
static const char *section_name(const struct probe *p, const struct region *strtab, uint64_t name)
{
	if (name >= strtab->size)
		return NULL;
	const char *s = (const char *)p->buf + strtab->off + name;
	return memchr(s, '\0', strtab->size - name) ? s : NULL;
}

static int scan_sections(struct probe *p, const struct elf *e, uk_error *err)
{
	struct region strtab, s;
	bool names = e->shnum && e->shstrndx < e->shnum && elf_shdr(p, e, e->shstrndx, &strtab) &&
		     in_buf(p->len, strtab.off, strtab.size);
	for (unsigned i = 0; i < e->shnum && elf_shdr(p, e, i, &s); i++) {
		const char *name = names ? section_name(p, &strtab, s.name) : NULL;
		if (name && !p->uk_section[0] && strncmp(name, ".uk_", 4) == 0 && strlen(name) < sizeof(p->uk_section))
			memcpy(p->uk_section, name, strlen(name) + 1);
		if (s.type == SHT_NOTE) {
			int r = walk_notes(p, &s, e->is64, err);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static size_t digits(const uint8_t *s, size_t n)
{
	size_t i = 0;
	while (i < n && s[i] >= '0' && s[i] <= '9')
		i++;
	return i;
}

/* "Unikraft <Codename> X.Y.Z" at s (n bytes left): the version into out and the codename's
 * length into *cn_len, true if so. */
static bool banner_at(const uint8_t *s, size_t n, struct guest_binary *out, size_t *cn_len)
{
	size_t i = 9; /* "Unikraft " */
	if (i >= n || s[i] < 'A' || s[i] > 'Z')
		return false;
	while (i < n && i < 9 + 32 && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')))
		i++;
	if (i >= n || s[i] != ' ')
		return false;
	*cn_len = i - 9;
	size_t v = ++i;
	for (int part = 0; part < 3; part++) {
		size_t d = digits(s + i, n - i);
		if (d == 0 || d > 5)
			return false;
		i += d;
		if (part < 2) {
			if (i >= n || s[i] != '.')
				return false;
			i++;
		}
	}
	memcpy(out->unikraft_version, s + v, i - v);
	out->unikraft_version[i - v] = '\0';
	return true;
}

static int cmp_range(const void *a, const void *b)
{
	const struct region *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* The byte ranges PT_LOAD segments bring into memory, overlapping ones merged, so no byte
 * is searched twice; their count. */
static size_t load_ranges(const struct probe *p, const struct elf *e, struct region out[MAX_LOAD_RANGES])
{
	struct region r;
	size_t n = 0, m = 0;
	for (unsigned i = 0; i < e->phnum && n < MAX_LOAD_RANGES && elf_phdr(p, e, i, &r); i++)
		if (r.type == PT_LOAD && r.size && in_buf(p->len, r.off, r.size))
			out[n++] = r;
	qsort(out, n, sizeof(out[0]), cmp_range);
	for (size_t i = 0; i < n;) {
		uint64_t from = out[i].off, to = out[i].off + out[i].size;
		for (i++; i < n && out[i].off <= to; i++)
			if (out[i].off + out[i].size > to)
				to = out[i].off + out[i].size;
		out[m++] = (struct region){ .type = PT_LOAD, .off = from, .size = to - from };
	}
	return m;
}

/* The banner in the loaded bytes. The codename is kept for the why. */
static bool find_banner(struct probe *p, const struct region *loads, size_t n, char *codename, size_t cn_size)
{
	for (size_t i = 0; i < n; i++) {
		const uint8_t *s = p->buf + loads[i].off, *end = s + loads[i].size;
		while ((s = memmem(s, (size_t)(end - s), "Unikraft ", 9)) != NULL) {
			size_t k;
			if (banner_at(s, (size_t)(end - s), p->out, &k)) {
				snprintf(codename, cn_size, "%.*s", (int)(k < cn_size ? k : cn_size - 1), s + 9);
				return true;
			}
			s++;
		}
	}
	return false;
}

/* Unikraft's 9pfs driver registers its file system type by the name "9pfs" (lib/9pfs), a
 * string no other library holds: without it, a vfs.fstab 9pfs entry aborts the boot. */
static bool find_9pfs(const struct probe *p, const struct region *loads, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (memmem(p->buf + loads[i].off, loads[i].size, "9pfs", 5)) /* with its NUL */
			return true;
	return false;
}

/* The PVH note and the multiboot header. */
static void scan_boot(struct probe *p, const struct elf *e)
{
	struct region r;
	bool details = p->details;
	p->details = false;
	for (unsigned i = 0; i < e->phnum && !p->pvh && elf_phdr(p, e, i, &r); i++)
		if (r.type == PT_NOTE)
			(void)walk_notes(p, &r, e->is64, NULL); /* without details it cannot fail */
	p->details = details;
	p->regions = p->notes = 0;
	p->mb_at = SIZE_MAX;
	for (size_t off = 0; off + 12 <= p->len && off < MULTIBOOT_SEARCH; off += 4)
		if (rd32(p->buf + off) == MULTIBOOT_MAGIC &&
		    (uint32_t)(rd32(p->buf + off) + rd32(p->buf + off + 4) + rd32(p->buf + off + 8)) == 0) {
			p->mb_at = off;
			break;
		}
}

static enum guest_boot boot_of(const struct probe *p, bool is_elf)
{
	if (p->len >= BZIMAGE_MAGIC_AT + 4 && memcmp(p->buf + BZIMAGE_MAGIC_AT, "HdrS", 4) == 0)
		return GUEST_BOOT_BZIMAGE;
	if (p->pvh)
		return GUEST_BOOT_PVH;
	if (p->mb_at != SIZE_MAX)
		return GUEST_BOOT_MULTIBOOT;
	return is_elf ? GUEST_BOOT_ELF : GUEST_BOOT_UNKNOWN;
}

static bool is_elf_file(const uint8_t *buf, size_t len)
{
	return len >= EI_NIDENT && memcmp(buf, ELFMAG, SELFMAG) == 0;
}

enum guest_boot guest_probe_boot(const uint8_t *buf, size_t len)
{
	struct probe p = { .buf = buf, .len = len };
	struct elf e;
	bool is_elf = is_elf_file(buf, len);
	if (!is_elf || !elf_header(buf, len, &e))
		e = (struct elf){ 0 };
	scan_boot(&p, &e);
	return boot_of(&p, is_elf);
}

const char *guest_boot_name(enum guest_boot b)
{
	static const char *const names[] = { "unknown", "pvh", "bzimage", "multiboot", "elf" };
	return (size_t)b < ARRAY_SIZE(names) ? names[b] : "unknown";
}

const char *guest_solo5_target_name(uint32_t t)
{
	static const char *const names[] = { "?", "hvt", "spt", "virtio", "muen", "genode", "xen" };
	return t < ARRAY_SIZE(names) ? names[t] : "?";
}

/* out->why: what was found, one line. */
static void describe(const struct probe *p, const char *codename)
{
	struct guest_binary *o = p->out;
	static const char *const boots[] = { "no known boot header", "PVH note", "Linux boot protocol header (HdrS)",
					     "multiboot header", "ELF without a PVH note or multiboot header" };
	guest_textf(o->why, sizeof(o->why), "%s", boots[o->boot]);
	if (o->boot == GUEST_BOOT_MULTIBOOT)
		guest_textf(o->why, sizeof(o->why), " at %#zx", p->mb_at);
	if (p->abi_at)
		guest_textf(o->why, sizeof(o->why), "; Solo5 ABI note (%s, ABI %u)", guest_solo5_target_name(o->solo5_abi_target),
			    o->solo5_abi_version);
	if (p->mft_at) {
		guest_textf(o->why, sizeof(o->why), "; Solo5 manifest note:");
		for (size_t i = 0; i < o->n_mft; i++)
			guest_textf(o->why, sizeof(o->why), "%s %s %s", i ? "," : "", o->mft[i].name,
				    o->mft[i].kind == GUEST_DEV_NET ? mft_type_name(MFT_DEV_NET_BASIC)
								    : mft_type_name(MFT_DEV_BLOCK_BASIC));
		if (!o->n_mft)
			guest_textf(o->why, sizeof(o->why), " no devices");
	}
	if (p->uk_section[0])
		guest_textf(o->why, sizeof(o->why), "; section %s", p->uk_section);
	if (o->unikraft_version[0])
		guest_textf(o->why, sizeof(o->why), "; banner \"Unikraft %s %s\"", codename, o->unikraft_version);
	if (o->unikraft)
		guest_textf(o->why, sizeof(o->why), "; %s", o->unikraft_9pfs ? "9pfs driver" : "no 9pfs driver");
}

int guest_probe_buf(const uint8_t *buf, size_t len, struct guest_binary *out, uk_error *err)
{
	*out = (struct guest_binary){ 0 };
	struct probe p = { .buf = buf, .len = len, .details = true, .out = out };
	struct elf e = { 0 };
	bool is_elf = is_elf_file(buf, len), parsed = is_elf && elf_header(buf, len, &e);
	scan_boot(&p, &e);
	out->boot = boot_of(&p, is_elf);
	out->elf64 = parsed && e.is64;
	char codename[33] = "";
	if (parsed) {
		/* The Solo5 notes: every PT_NOTE segment, then every SHT_NOTE section (a stripped
		 * file may lack one or the other). */
		struct region r;
		int rc = 0;
		for (unsigned i = 0; i < e.phnum && rc == 0 && elf_phdr(&p, &e, i, &r); i++)
			if (r.type == PT_NOTE)
				rc = walk_notes(&p, &r, e.is64, err);
		if (rc == 0)
			rc = scan_sections(&p, &e, err);
		if (rc < 0) {
			*out = (struct guest_binary){ 0 };
			return rc;
		}
		struct region loads[MAX_LOAD_RANGES];
		size_t n = load_ranges(&p, &e, loads);
		bool banner = find_banner(&p, loads, n, codename, sizeof(codename));
		out->unikraft = banner || p.uk_section[0];
		out->unikraft_9pfs = out->unikraft && find_9pfs(&p, loads, n);
	}
	describe(&p, codename);
	return 0;
}

int guest_probe_file(const char *path, struct guest_binary *out, uk_error *err)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r = uk_read_file(path, GUEST_PROBE_FILE_MAX, &buf, &len, err);
	if (r < 0)
		return r;
	r = guest_probe_buf((const uint8_t *)buf, len, out, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "%s", path);
	return 0;
}
