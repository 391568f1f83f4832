/* Volumes: what each of a container's mounts and block devices becomes in the guest
 * (README.md, "Volumes"). The checks every framework shares (limits, guest paths), the
 * decisions (a 9p share, or a kubelet default left out), and the two ways of telling a guest
 * where to mount: Unikraft's vfs.fstab and the Linux guests' unikd.9p / unikd.blk. */
#include <stdio.h>
#include <string.h>

#include "contract.h"

static const char *nz(const char *s)
{
	return s ? s : "";
}

static int too_many(const char *pfx, const char *what, size_t n, size_t max, uk_error *err)
{
	if (n <= max)
		return 0;
	return uk_err(err, E2BIG, "%s%s has %zu entries; a guest takes at most %zu", pfx, what, n, max);
}

/* The bytes of a container_path: some, at most GUEST_PATH_MAX (one log line), no control
 * byte. what: "mounts" or "devices". */
static int path_bytes(const char *pfx, const char *what, size_t i, const char *s, uk_error *err)
{
	size_t n = strnlen(s, GUEST_PATH_MAX + 1);
	if (n == 0)
		return uk_err(err, EINVAL, "%s%s[%zu].container_path is empty", pfx, what, i);
	if (n > GUEST_PATH_MAX)
		return uk_err(err, EINVAL, "%s%s[%zu].container_path is longer than %d bytes", pfx, what, i,
			      GUEST_PATH_MAX);
	for (size_t k = 0; k < n; k++)
		if ((unsigned char)s[k] < 0x20 || s[k] == 0x7f)
			return uk_err(err, EINVAL, "%s%s[%zu].container_path holds a control byte (0x%02x at %zu)", pfx,
				      what, i, (unsigned char)s[k], k);
	return 0;
}

/* Normalise an absolute guest path into out: "//a//b/" is "/a/b"; a "." or ".." component
 * is refused (a path must mean one place, and Unikraft's mkmp refuses them too). */
static int path_normalise(const char *pfx, const char *what, size_t i, const char *s, char out[GUEST_PATH_MAX + 1],
			  uk_error *err)
{
	int r = path_bytes(pfx, what, i, s, err);
	if (r < 0)
		return r;
	if (s[0] != '/')
		return uk_err(err, EINVAL, "%s%s[%zu].container_path \"%s\" is not absolute", pfx, what, i, s);
	size_t o = 0;
	for (const char *c = s; *c;) {
		while (*c == '/')
			c++;
		size_t len = strcspn(c, "/");
		if (len == 0)
			break;
		if ((len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
			return uk_err(err, EINVAL, "%s%s[%zu].container_path \"%s\" holds a \".\" or \"..\" component",
				      pfx, what, i, s);
		out[o++] = '/';
		memcpy(out + o, c, len);
		o += len;
		c += len;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	return 0;
}

/* Entry i's place is entry j's too. */
static int same_place(const char *pfx, const char *what, size_t i, const char *a, size_t j, const char *b,
		      uk_error *err)
{
	if (strcmp(a, b) != 0)
		return 0;
	return uk_err(err, EINVAL, "%s%s[%zu].container_path \"%s\" is also %s%s[%zu]'s", pfx, what, i, a, pfx, what, j);
}

static const char *last_component(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

static int check_mounts(const struct guest_facts *f, struct guest_plan *p, const char *pfx, uk_error *err)
{
	int r = too_many(pfx, "mounts", f->n_mounts, GUEST_MOUNTS_MAX, err);
	for (size_t i = 0; r >= 0 && i < f->n_mounts; i++) {
		struct guest_mount_plan *m = &p->mounts[i];
		r = path_normalise(pfx, "mounts", i, nz(f->mounts[i].guest_path), m->path, err);
		for (size_t j = 0; r >= 0 && j < i; j++)
			r = same_place(pfx, "mounts", i, m->path, j, p->mounts[j].path, err);
		if (r >= 0 && f->mounts[i].is_file && strcmp(m->path, "/") == 0)
			r = uk_err(err, EINVAL, "%smounts[%zu] mounts a file at \"/\"", pfx, i);
		m->readonly = f->mounts[i].readonly;
		m->is_file = f->mounts[i].is_file;
		if (m->is_file)
			snprintf(m->file, sizeof(m->file), "%s", last_component(m->path));
	}
	if (r >= 0)
		p->n_mounts = f->n_mounts;
	return r;
}

/* A device's path: absolute (normalised), or a plain name ("storage", as Solo5 names a
 * block device). */
static int device_path(const char *pfx, size_t i, const char *s, char out[GUEST_PATH_MAX + 1], uk_error *err)
{
	int r = path_bytes(pfx, "devices", i, s, err);
	if (r < 0 || s[0] == '/')
		return r < 0 ? r : path_normalise(pfx, "devices", i, s, out, err);
	if (strchr(s, '/') || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return uk_err(err, EINVAL, "%sdevices[%zu].container_path \"%s\" is neither absolute nor a plain name", pfx,
			      i, s);
	snprintf(out, GUEST_PATH_MAX + 1, "%s", s);
	return 0;
}

static int check_blockdevs(const struct guest_facts *f, struct guest_plan *p, const char *pfx, uk_error *err)
{
	int r = too_many(pfx, "devices", f->n_blockdevs, GUEST_BLOCKDEVS_MAX, err);
	for (size_t i = 0; r >= 0 && i < f->n_blockdevs; i++) {
		struct guest_blockdev_plan *b = &p->blockdevs[i];
		r = device_path(pfx, i, nz(f->blockdevs[i].guest_path), b->path, err);
		if (r >= 0 && strcmp(b->path, "/") == 0)
			r = uk_err(err, EINVAL, "%sdevices[%zu].container_path is \"/\"", pfx, i);
		for (size_t j = 0; r >= 0 && j < i; j++)
			r = same_place(pfx, "devices", i, b->path, j, p->blockdevs[j].path, err);
		b->readonly = f->blockdevs[i].readonly;
		snprintf(b->serial, sizeof(b->serial), "ukd%u", (unsigned)i); /* i < 16 */
	}
	if (r >= 0)
		p->n_blockdevs = f->n_blockdevs;
	return r;
}

int guest_volumes_check(const struct guest_facts *f, struct guest_plan *p, uk_error *err)
{
	const char *pfx = nz(f->cmd.field_prefix);
	int r = check_mounts(f, p, pfx, err);
	return r < 0 ? r : check_blockdevs(f, p, pfx, err);
}

const char *guest_blockdev_name(const struct guest_plan *p, size_t i)
{
	return last_component(p->blockdevs[i].path);
}

static void take(struct guest_mount_plan *m, size_t i, const char *mount_at, const char *how)
{
	m->fate = GUEST_MOUNT_TAKEN;
	snprintf(m->tag, sizeof(m->tag), "ukv%zu", i);
	snprintf(m->mount_at, sizeof(m->mount_at), "%s", mount_at);
	if (m->is_file)
		guest_textf(m->why, sizeof(m->why), "9p share %s, holding only %s, %s %s, %s", m->tag, m->file, how,
			    m->mount_at, m->readonly ? "read-only" : "read-write");
	else
		guest_textf(m->why, sizeof(m->why), "9p share %s at %s, %s", m->tag, m->mount_at,
			    m->readonly ? "read-only" : "read-write");
}

static void skip(struct guest_mount_plan *m, const char *why)
{
	m->fate = GUEST_MOUNT_SKIPPED;
	guest_textf(m->why, sizeof(m->why), "kubelet default left out: %s", why);
}

int guest_mounts_none(const struct guest_facts *f, struct guest_plan *p, const char *label, const char *why,
		      uk_error *err)
{
	for (size_t i = 0; i < p->n_mounts; i++) {
		if (!f->mounts[i].kubelet_default)
			return uk_err(err, EINVAL, "%smounts[%zu] (%s): the %s guest cannot take it: %s",
				      nz(f->cmd.field_prefix), i, p->mounts[i].path, label, why);
		skip(&p->mounts[i], why);
	}
	return 0;
}

int guest_mounts_linux(const struct guest_facts *f, struct guest_plan *p, uk_error *err)
{
	for (size_t i = 0; i < p->n_mounts; i++) {
		struct guest_mount_plan *m = &p->mounts[i];
		if (strcmp(m->path, "/") == 0)
			return uk_err(err, EINVAL, "%smounts[%zu] (/): the linux guest cannot take a mount over its root, which would hide its /init",
				      nz(f->cmd.field_prefix), i);
		take(m, i, m->path, "bound by /init to");
	}
	return 0;
}

/* a lies in b, or is b. */
static bool at_or_below(const char *a, const char *b)
{
	size_t n = strlen(b);
	if (strcmp(b, "/") == 0)
		return true;
	return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/');
}

/* Unikraft mounts a file's share at the file's directory. That place must be the share's
 * alone: no other mount at it or in it (it would be hidden, or its mount point made in
 * unikd's staging directory), not the root. -1: no clash, else the other mount's index. */
static int unikraft_clash(const struct guest_plan *p, size_t i, const char *at)
{
	const struct guest_mount_plan *m = &p->mounts[i];
	for (size_t j = 0; j < p->n_mounts; j++) {
		const struct guest_mount_plan *o = &p->mounts[j];
		if (j == i || o->fate != GUEST_MOUNT_TAKEN)
			continue;
		if (m->is_file && at_or_below(o->mount_at, at))
			return (int)j;
		if (o->is_file && at_or_below(at, o->mount_at))
			return (int)j;
	}
	return -1;
}

/* Where mount i goes in a Unikraft guest, or why it cannot: NULL and *why. */
static const char *unikraft_place(const struct guest_plan *p, size_t i, size_t room, char at[GUEST_PATH_MAX + 1],
				  char *why, size_t why_size)
{
	const struct guest_mount_plan *m = &p->mounts[i];
	if (room == 0) {
		snprintf(why, why_size, "Unikraft's vfs.fstab holds %d entries, and the image's own and the pod's fill it",
			 UK_FSTAB_MAX);
		return NULL;
	}
	if (strchr(m->path, ':')) {
		snprintf(why, why_size, "its path holds a \":\", which ends a field of a vfs.fstab entry");
		return NULL;
	}
	snprintf(at, GUEST_PATH_MAX + 1, "%s", m->path);
	if (m->is_file) {
		char *slash = strrchr(at, '/');
		*slash = '\0';
		if (!at[0]) {
			why[0] = '\0';
			guest_textf(why, why_size, "Unikraft mounts a file's share at its directory, and %s's is the root",
				    m->path);
			return NULL;
		}
	}
	if (at_or_below(at, "/dev")) {
		why[0] = '\0';
		guest_textf(why, why_size, "%s would cover Unikraft's devfs at /dev%s", at,
			    m->is_file ? " (a file's share is mounted at its directory)" : "");
		return NULL;
	}
	int j = unikraft_clash(p, i, at);
	if (j >= 0) {
		why[0] = '\0';
		guest_textf(why, why_size, "Unikraft mounts a file's share at its directory, and %s clashes with mounts[%d] (%s)",
			    at, j, p->mounts[j].path);
		return NULL;
	}
	return at;
}

int guest_mounts_unikraft(const struct guest_facts *f, struct guest_plan *p, size_t image_entries, uk_error *err)
{
	size_t room = image_entries < UK_FSTAB_MAX ? UK_FSTAB_MAX - image_entries : 0;
	/* A binary the probe knows as Unikraft but without the 9pfs driver would abort at its
	 * first 9pfs entry; one it does not know (an annotation alone) is given the mounts. */
	bool no_9pfs = f->bin && f->bin->unikraft && !f->bin->unikraft_9pfs;
	/* The pod's own mounts first: a kubelet default gives way to them. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < p->n_mounts; i++) {
			if (f->mounts[i].kubelet_default != (pass == 1))
				continue;
			char at[GUEST_PATH_MAX + 1], why[160] = "the binary has no 9pfs driver (Unikraft's lib9pfs)";
			if (!no_9pfs && unikraft_place(p, i, room, at, why, sizeof(why))) {
				take(&p->mounts[i], i, at, "at");
				room--;
			} else if (f->mounts[i].kubelet_default) {
				skip(&p->mounts[i], why);
			} else {
				return uk_err(err, !no_9pfs && room == 0 ? E2BIG : EINVAL,
					      "%smounts[%zu] (%s): the unikraft guest cannot take it: %s",
					      nz(f->cmd.field_prefix), i, p->mounts[i].path, why);
			}
		}
	}
	return 0;
}

/* "/" is 0, "/a" 1, "/a/b" 2. */
static size_t depth(const char *path)
{
	size_t d = 0;
	for (const char *c = path; *c; c++)
		d += *c == '/';
	return strcmp(path, "/") == 0 ? 0 : d;
}

/* The taken mounts, parents first (as a container runtime mounts them), else in the
 * facts' order: a mount point made inside another share is made after that share. */
static size_t taken_in_order(const struct guest_plan *p, size_t order[GUEST_MOUNTS_MAX])
{
	size_t n = 0;
	for (size_t i = 0; i < p->n_mounts; i++) {
		if (p->mounts[i].fate != GUEST_MOUNT_TAKEN)
			continue;
		size_t k = n++, d = depth(p->mounts[i].mount_at);
		for (; k > 0 && depth(p->mounts[order[k - 1]].mount_at) > d; k--)
			order[k] = order[k - 1];
		order[k] = i;
	}
	return n;
}

int guest_mounts_fstab(struct guest_line *l, const struct guest_plan *p, uk_error *err)
{
	size_t order[GUEST_MOUNTS_MAX], n = taken_in_order(p, order);
	if (n == 0)
		return 0;
	if (guest_line_raw(l, "vfs.fstab=[", 11) < 0)
		return guest_line_too_long(l, "mounts", order[0], err);
	for (size_t k = 0; k < n; k++) {
		const struct guest_mount_plan *m = &p->mounts[order[k]];
		char item[GUEST_TAG_MAX + GUEST_PATH_MAX + 32];
		/* TAG:PATH:9pfs:FLAGS:OPTS:UKOPTS; 0x1 is MS_RDONLY, mkmp makes the mount point
		 * (the root is empty), which "/" itself needs not. */
		snprintf(item, sizeof(item), "%s:%s:9pfs:%s::%s", m->tag, m->mount_at, m->readonly ? "0x1" : "",
			 strcmp(m->mount_at, "/") == 0 ? "" : "mkmp");
		int r = guest_line_word(l, GUEST_QUOTING_UNIKRAFT, true, item, "mounts", order[k], err);
		if (r < 0)
			return r;
	}
	if (guest_line_raw(l, "]", 1) < 0)
		return guest_line_too_long(l, "mounts", order[n - 1], err);
	return 0;
}

/* A path for the Linux contract: every byte other than letters, digits and "/._-+@~" as
 * %XX, so no ":", "," or white space reaches the line. At most 3 * GUEST_PATH_MAX bytes. */
static void percent_encode(char *out, size_t size, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (; *s && o + 4 <= size; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("/._-+@~", c)) {
			out[o++] = (char)c;
			continue;
		}
		out[o++] = '%';
		out[o++] = hex[c >> 4];
		out[o++] = hex[c & 15];
	}
	out[o] = '\0';
}

/* Append ",entry" (or "=entry" for the first) to word; false if it does not fit. */
static bool word_add(char *word, size_t size, size_t *len, bool first, const char *entry)
{
	int n = snprintf(word + *len, size - *len, "%s%s", first ? "" : ",", entry);
	if (n < 0 || (size_t)n >= size - *len)
		return false;
	*len += (size_t)n;
	return true;
}

int guest_volumes_linux(struct guest_line *l, const struct guest_plan *p, uk_error *err)
{
	size_t order[GUEST_MOUNTS_MAX], n = taken_in_order(p, order), len;
	char word[GUEST_CMDLINE_MAX], enc[3 * GUEST_PATH_MAX + 1], entry[sizeof(enc) + GUEST_TAG_MAX + 16];
	len = (size_t)snprintf(word, sizeof(word), "unikd.9p=");
	for (size_t k = 0; k < n; k++) {
		const struct guest_mount_plan *m = &p->mounts[order[k]];
		percent_encode(enc, sizeof(enc), m->path);
		snprintf(entry, sizeof(entry), "%s:%s:%s:%s", m->tag, enc, m->readonly ? "ro" : "rw",
			 m->is_file ? "file" : "dir");
		if (!word_add(word, sizeof(word), &len, k == 0, entry) || (k == n - 1 && guest_line_raw(l, word, len) < 0))
			return guest_line_too_long(l, "mounts", order[k], err);
	}
	len = (size_t)snprintf(word, sizeof(word), "unikd.blk=");
	for (size_t i = 0; i < p->n_blockdevs; i++) {
		const struct guest_blockdev_plan *b = &p->blockdevs[i];
		percent_encode(enc, sizeof(enc), b->path);
		snprintf(entry, sizeof(entry), "%s:%s:%s", b->serial, enc, b->readonly ? "ro" : "rw");
		if (!word_add(word, sizeof(word), &len, i == 0, entry) ||
		    (i == p->n_blockdevs - 1 && guest_line_raw(l, word, len) < 0))
			return guest_line_too_long(l, "devices", i, err);
	}
	return 0;
}

int guest_blockdevs_add(const struct guest_facts *f, struct guest_plan *p, bool absolute, uk_error *err)
{
	for (size_t i = 0; i < p->n_blockdevs; i++) {
		struct guest_blockdev_plan *b = &p->blockdevs[i];
		if (absolute && b->path[0] != '/')
			return uk_err(err, EINVAL, "%sdevices[%zu].container_path \"%s\" is not absolute: the linux guest's /init makes the device node there",
				      nz(f->cmd.field_prefix), i, b->path);
		b->device = p->n_devices;
		int r = guest_add_device(p, GUEST_DEV_VOLUME, b->serial, err);
		if (r < 0)
			return r;
	}
	return 0;
}

void guest_why_volumes(struct guest_plan *p)
{
	size_t taken = 0, skipped = 0;
	for (size_t i = 0; i < p->n_mounts; i++) {
		taken += p->mounts[i].fate == GUEST_MOUNT_TAKEN;
		skipped += p->mounts[i].fate == GUEST_MOUNT_SKIPPED;
	}
	if (p->n_mounts)
		guest_why(p, "mounts: %zu as 9p shares, %zu kubelet default%s left out", taken, skipped,
			  skipped == 1 ? "" : "s");
}

const char *guest_mount_fate_name(enum guest_mount_fate f)
{
	static const char *const names[] = { "undecided", "taken", "skipped" };
	return (size_t)f < ARRAY_SIZE(names) ? names[f] : "undecided";
}
