/* Unpacking image layers with libarchive; the policy is described in layers.h.
 *
 * Every file system operation is relative to a directory fd that was reached from the
 * root one component at a time with O_NOFOLLOW|O_DIRECTORY, and every name handed to
 * the kernel is a single component (never "..", never containing '/'). So no symlink is
 * followed and nothing outside the root can be touched, whatever the archive holds. */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "layers.h"

const struct layer_limits layer_limits_default = {
	.max_entries = 100000,
	.max_path = 4096,
	.max_file_size = 64ull << 30,
	.max_total_bytes = 64ull << 30,
};

#define WHITEOUT_PREFIX ".wh."
#define WHITEOUT_OPAQUE ".wh..wh..opq"
#define READ_BLOCK (64 * 1024)

static void archive_freep(struct archive **a)
{
	if (*a)
		archive_read_free(*a);
}
#define _cleanup_archive_ _cleanup_(archive_freep)

/* ---- the set of paths this layer put in the tree (for whiteouts) ---- */

#define SEEN_ENTRY 1u    /* an entry of this layer */
#define SEEN_ANCESTOR 2u /* a directory on the way to one */

struct path_set {
	char **keys;
	unsigned *flags;
	size_t cap, n; /* cap is a power of two, 0 before the first insert */
};

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static size_t set_slot(const struct path_set *s, const char *key)
{
	size_t i = str_hash(key) & (s->cap - 1);
	while (s->keys[i] && strcmp(s->keys[i], key) != 0)
		i = (i + 1) & (s->cap - 1);
	return i;
}

static unsigned set_get(const struct path_set *s, const char *key)
{
	if (s->cap == 0)
		return 0;
	size_t i = set_slot(s, key);
	return s->keys[i] ? s->flags[i] : 0;
}

static int set_grow(struct path_set *s)
{
	size_t cap = s->cap ? s->cap * 2 : 64;
	char **keys = calloc(cap, sizeof(*keys));
	unsigned *flags = calloc(cap, sizeof(*flags));
	if (!keys || !flags) {
		free(keys);
		free(flags);
		return -ENOMEM;
	}
	struct path_set n = { .keys = keys, .flags = flags, .cap = cap, .n = s->n };
	for (size_t i = 0; i < s->cap; i++) {
		if (!s->keys[i])
			continue;
		size_t j = set_slot(&n, s->keys[i]);
		n.keys[j] = s->keys[i];
		n.flags[j] = s->flags[i];
	}
	free(s->keys);
	free(s->flags);
	*s = n;
	return 0;
}

static int set_add(struct path_set *s, const char *key, size_t len, unsigned flag)
{
	if ((s->n + 1) * 2 > s->cap) {
		int r = set_grow(s);
		if (r < 0)
			return r;
	}
	_cleanup_free_ char *k = strndup(key, len);
	if (!k)
		return -ENOMEM;
	size_t i = set_slot(s, k);
	if (!s->keys[i]) {
		s->keys[i] = TAKE_PTR(k);
		s->n++;
	}
	s->flags[i] |= flag;
	return 0;
}

static void set_free(struct path_set *s)
{
	for (size_t i = 0; i < s->cap; i++)
		free(s->keys[i]);
	free(s->keys);
	free(s->flags);
}

/* Record path and, as ancestors, every directory above it. */
static int set_mark(struct path_set *s, const char *path)
{
	for (const char *p = strchr(path, '/'); p; p = strchr(p + 1, '/')) {
		int r = set_add(s, path, (size_t)(p - path), SEEN_ANCESTOR);
		if (r < 0)
			return r;
	}
	return set_add(s, path, strlen(path), SEEN_ENTRY);
}

/* ---- paths ---- */

/* "/./a//b/" -> "a/b" ("" is the root). A ".." anywhere is -EPERM, more than
 * LAYER_MAX_DEPTH components -E2BIG, a component longer than NAME_MAX -ENAMETOOLONG.
 * out has room for strlen(in) + 1 bytes. */
static int normalize(const char *in, char *out, const char **why)
{
	size_t depth = 0, o = 0;
	const char *p = in;
	while (*p) {
		while (*p == '/')
			p++;
		const char *end = strchrnul(p, '/');
		size_t len = (size_t)(end - p);
		if (len == 0)
			break;
		if (len == 1 && p[0] == '.') {
			p = end;
			continue;
		}
		if (len == 2 && p[0] == '.' && p[1] == '.') {
			*why = "\"..\" is not allowed in a path";
			return -EPERM;
		}
		if (len > NAME_MAX) {
			*why = "a path component is longer than NAME_MAX";
			return -ENAMETOOLONG;
		}
		if (++depth > LAYER_MAX_DEPTH) {
			*why = "too many path components";
			return -E2BIG;
		}
		if (o)
			out[o++] = '/';
		memcpy(out + o, p, len);
		o += len;
		p = end;
	}
	out[o] = '\0';
	return 0;
}

/* Open the directory rel ("a/b", "" for the root) beneath rootfd, one component at a
 * time, never following a symlink. With create, missing components are made (0755).
 * -ENOENT: missing; -ENOTDIR: a component is a symlink or not a directory. */
static int open_dir_beneath(int rootfd, const char *rel, bool create, int *ret)
{
	_cleanup_close_ int fd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return -errno;
	char name[NAME_MAX + 1];
	const char *p = rel;
	while (*p) {
		const char *end = strchrnul(p, '/');
		size_t len = (size_t)(end - p);
		if (len == 0 || len > NAME_MAX)
			return -EINVAL;
		memcpy(name, p, len);
		name[len] = '\0';
		p = *end ? end + 1 : end;

		int next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT && create) {
			if (mkdirat(fd, name, 0755) < 0 && errno != EEXIST)
				return -errno;
			next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (next >= 0 && fchmod(next, 0755) < 0) { /* whatever the umask */
				int e = errno;
				close(next);
				return -e;
			}
		}
		if (next < 0)
			return errno == ELOOP ? -ENOTDIR : -errno;
		close(fd);
		fd = next;
	}
	*ret = TAKE_FD(fd);
	return 0;
}

/* Split "a/b/c" into its parent "a/b" (written into parent) and "c". */
static const char *split_last(const char *path, char *parent)
{
	const char *slash = strrchr(path, '/');
	if (!slash) {
		parent[0] = '\0';
		return path;
	}
	memcpy(parent, path, (size_t)(slash - path));
	parent[slash - path] = '\0';
	return slash + 1;
}

/* Remove name in dirfd, a whole tree if it is a directory; symlinks are removed, never
 * followed. Missing is fine. */
static int remove_at(int dirfd, const char *name, unsigned depth)
{
	if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	if (depth > LAYER_MAX_DEPTH + 1)
		return -ELOOP;
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	_cleanup_close_ int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (dfd < 0)
		return -errno;
	_cleanup_closedir_ DIR *d = fdopendir(dfd);
	if (!d)
		return -errno;
	dfd = -1; /* owned by d now */
	struct dirent *de;
	while ((errno = 0, de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		int r = remove_at(fd, de->d_name, depth + 1);
		if (r < 0)
			return r;
	}
	if (errno)
		return -errno;
	if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/* ---- the unpacking ---- */

struct dir_meta {
	char *path;
	mode_t mode;
	struct timespec mtime;
};

struct ctx {
	const char *layer;
	int rootfd;
	const struct layer_limits *lim;
	uk_error *err;
	struct archive *a;
	bool is_root;
	uint64_t entries, total;
	struct path_set seen;
	struct dir_meta *dirs; /* directory modes and times, applied at the end */
	size_t n_dirs, cap_dirs;
	const char *entry; /* the current entry's path as in the archive, for messages */
};

_printf_(3, 4) static int entry_err(struct ctx *c, int code, const char *fmt, ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return uk_err(c->err, code, "layer %s: entry \"%.256s\": %s", c->layer, c->entry, what);
}

/* r is -errno. */
static int entry_errno(struct ctx *c, int r, const char *what)
{
	return entry_err(c, -r, "%s: %s", what, strerror(-r));
}

static int archive_fail(struct ctx *c, const char *what)
{
	const char *msg = archive_error_string(c->a);
	int e = archive_errno(c->a);
	if (e <= 0 || e == EILSEQ) /* libarchive's "misc" and "file format" errors */
		e = EINVAL;
	if (!msg)
		msg = "unknown libarchive error";
	if (c->entry)
		return uk_err(c->err, e, "layer %s: entry \"%.256s\": %s: %s", c->layer, c->entry,
			      what, msg);
	return uk_err(c->err, e, "layer %s: %s: %s", c->layer, what, msg);
}

static int parent_err(struct ctx *c, int r, const char *parent)
{
	if (r == -ENOTDIR)
		return entry_err(c, EPERM, "a component of \"%.256s\" is a symlink or not a "
				 "directory (symlinks are not followed)", parent);
	return entry_errno(c, r, "open parent directory");
}

/* Open the parent directory of path (normalized, not the root); *name points into path.
 * Without create, a missing parent is -ENOENT without a message. */
static int open_parent(struct ctx *c, const char *path, bool create, int *dirfd,
		       const char **name)
{
	_cleanup_free_ char *parent = malloc(strlen(path) + 1);
	if (!parent)
		return entry_errno(c, -ENOMEM, "open parent directory");
	*name = split_last(path, parent);
	int r = open_dir_beneath(c->rootfd, parent, create, dirfd);
	if (r == -ENOENT && !create)
		return r;
	return r < 0 ? parent_err(c, r, parent) : 0;
}

static struct timespec entry_mtime(struct archive_entry *e)
{
	if (!archive_entry_mtime_is_set(e))
		return (struct timespec){ .tv_nsec = UTIME_OMIT };
	return (struct timespec){ .tv_sec = archive_entry_mtime(e),
				  .tv_nsec = archive_entry_mtime_nsec(e) };
}

/* Ownership is applied only when running as root. */
static int apply_owner(struct ctx *c, int dirfd, const char *name, int fd, struct archive_entry *e)
{
	if (!c->is_root)
		return 0;
	uid_t uid = (uid_t)archive_entry_uid(e);
	gid_t gid = (gid_t)archive_entry_gid(e);
	int r = fd >= 0 ? fchown(fd, uid, gid) : fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW);
	return r < 0 ? entry_errno(c, -errno, "chown") : 0;
}

/* Below dirfd, whose path is buf[0..len), remove what this layer did not put there; keep
 * the directories on the way to what it did, and prune inside them. buf has cap bytes;
 * a longer path cannot be in the set (its entries are at most max_path bytes). */
static int prune(struct ctx *c, int dirfd, char *buf, size_t len, size_t cap, unsigned depth)
{
	if (depth > LAYER_MAX_DEPTH)
		return -ELOOP;
	_cleanup_close_ int dfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	if (dfd < 0)
		return -errno;
	_cleanup_closedir_ DIR *d = fdopendir(dfd);
	if (!d)
		return -errno;
	dfd = -1; /* d owns it */
	struct dirent *de;
	while ((errno = 0, de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		size_t nlen = strlen(de->d_name);
		size_t sublen = len + (len ? 1 : 0) + nlen;
		unsigned flags = 0;
		if (sublen < cap) {
			if (len)
				buf[len] = '/';
			memcpy(buf + sublen - nlen, de->d_name, nlen + 1);
			flags = set_get(&c->seen, buf);
		}
		int r = 0;
		if (!flags) {
			r = remove_at(dirfd, de->d_name, 0);
		} else {
			_cleanup_close_ int sub = openat(dirfd, de->d_name,
							 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				r = prune(c, sub, buf, sublen, cap, depth + 1);
			else if (errno != ENOTDIR && errno != ELOOP)
				r = -errno;
		}
		buf[len] = '\0';
		if (r < 0)
			return r;
	}
	return errno ? -errno : 0;
}

static int do_whiteout(struct ctx *c, const char *base, const char *parent)
{
	_cleanup_close_ int dirfd = -1;
	int r;
	if (strcmp(base, WHITEOUT_OPAQUE) == 0) {
		r = open_dir_beneath(c->rootfd, parent, true, &dirfd);
		if (r < 0)
			return parent_err(c, r, parent);
		if (parent[0] && (r = set_mark(&c->seen, parent)) < 0)
			return entry_errno(c, r, "opaque directory");
		size_t cap = c->lim->max_path + NAME_MAX + 2;
		_cleanup_free_ char *buf = malloc(cap);
		if (!buf)
			return entry_errno(c, -ENOMEM, "opaque directory");
		size_t len = strlen(parent);
		memcpy(buf, parent, len + 1);
		r = prune(c, dirfd, buf, len, cap, 0);
		return r < 0 ? entry_errno(c, r, "clear opaque directory") : 0;
	}

	const char *name = base + strlen(WHITEOUT_PREFIX);
	if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return entry_err(c, EPERM, "invalid whiteout");
	/* A whiteout hides the lower layers only, never what this layer added. */
	size_t plen = strlen(parent);
	_cleanup_free_ char *target = malloc(plen + strlen(name) + 2);
	if (!target)
		return entry_errno(c, -ENOMEM, "whiteout");
	sprintf(target, "%s%s%s", parent, plen ? "/" : "", name);
	if (set_get(&c->seen, target))
		return 0;
	r = open_dir_beneath(c->rootfd, parent, false, &dirfd);
	if (r == -ENOENT)
		return 0; /* nothing to hide */
	if (r < 0)
		return parent_err(c, r, parent);
	r = remove_at(dirfd, name, 0);
	return r < 0 ? entry_errno(c, r, "remove whited-out path") : 0;
}

/* Create name in dirfd with mk; when something is in the way, remove it and retry once. */
static int replace_at(int dirfd, const char *name, int (*mk)(int, const char *, const void *),
		      const void *arg)
{
	int r = mk(dirfd, name, arg);
	if (r != -EEXIST)
		return r;
	r = remove_at(dirfd, name, 0);
	return r < 0 ? r : mk(dirfd, name, arg);
}

static int mk_file(int dirfd, const char *name, const void *arg)
{
	(void)arg;
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	return fd < 0 ? -errno : fd;
}

static int mk_symlink(int dirfd, const char *name, const void *target)
{
	return symlinkat(target, dirfd, name) < 0 ? -errno : 0;
}

struct link_src {
	int dirfd;
	const char *name;
};

static int mk_hardlink(int dirfd, const char *name, const void *arg)
{
	const struct link_src *s = arg;
	return linkat(s->dirfd, s->name, dirfd, name, 0) < 0 ? -errno : 0;
}

static int do_dir(struct ctx *c, const char *path, struct archive_entry *e)
{
	if (!path[0])
		return 0; /* the root itself: its mode and owner are the caller's */
	_cleanup_close_ int dirfd = -1;
	const char *name;
	int r = open_parent(c, path, true, &dirfd, &name);
	if (r < 0)
		return r;
	if (mkdirat(dirfd, name, 0700) < 0) {
		if (errno != EEXIST)
			return entry_errno(c, -errno, "mkdir");
		struct stat st;
		if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return entry_errno(c, -errno, "stat");
		if (!S_ISDIR(st.st_mode)) { /* a directory replaces a file or a symlink */
			if ((r = remove_at(dirfd, name, 0)) < 0)
				return entry_errno(c, r, "remove what is in the way");
			if (mkdirat(dirfd, name, 0700) < 0)
				return entry_errno(c, -errno, "mkdir");
		}
	}
	if ((r = apply_owner(c, dirfd, name, -1, e)) < 0)
		return r;
	/* Modes and times wait until the end: a read-only directory must still take the
	 * entries below it, and creating those would change its mtime. */
	if (c->n_dirs == c->cap_dirs) {
		size_t cap = c->cap_dirs ? c->cap_dirs * 2 : 64;
		struct dir_meta *d = reallocarray(c->dirs, cap, sizeof(*d));
		if (!d)
			return entry_errno(c, -ENOMEM, "mkdir");
		c->dirs = d;
		c->cap_dirs = cap;
	}
	char *p = strdup(path);
	if (!p)
		return entry_errno(c, -ENOMEM, "mkdir");
	c->dirs[c->n_dirs++] = (struct dir_meta){
		.path = p, .mode = archive_entry_perm(e) & 0777, .mtime = entry_mtime(e)
	};
	return 0;
}

static int write_all_at(int fd, const char *buf, size_t len, off_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, buf, len, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static int do_file(struct ctx *c, const char *path, struct archive_entry *e)
{
	if (!path[0])
		return entry_err(c, EPERM, "a file cannot replace the root");
	int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
	if (size < 0)
		return entry_err(c, EINVAL, "negative size");
	if ((uint64_t)size > c->lim->max_file_size)
		return entry_err(c, EFBIG, "file of %lld bytes, the limit is %llu", (long long)size,
				 (unsigned long long)c->lim->max_file_size);
	_cleanup_close_ int dirfd = -1;
	const char *name;
	int r = open_parent(c, path, true, &dirfd, &name);
	if (r < 0)
		return r;
	_cleanup_close_ int fd = replace_at(dirfd, name, mk_file, NULL);
	if (fd < 0)
		return entry_errno(c, fd, "create");

	for (;;) {
		const void *buf;
		size_t len;
		la_int64_t off;
		r = archive_read_data_block(c->a, &buf, &len, &off);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN)
			return archive_fail(c, "read");
		if (off < 0 || (uint64_t)off > (uint64_t)size || len > (uint64_t)size - (uint64_t)off)
			return entry_err(c, EINVAL, "data beyond the file's size");
		if (len > c->lim->max_total_bytes - c->total)
			return entry_err(c, EFBIG, "the layer writes more than %llu bytes in total",
					 (unsigned long long)c->lim->max_total_bytes);
		c->total += len;
		if ((r = write_all_at(fd, buf, len, (off_t)off)) < 0)
			return entry_errno(c, r, "write");
	}
	if (ftruncate(fd, (off_t)size) < 0) /* a sparse file's trailing hole */
		return entry_errno(c, -errno, "truncate");
	if ((r = apply_owner(c, dirfd, name, fd, e)) < 0)
		return r;
	/* After chown, which may clear the bits anyway: no setuid, setgid or sticky. */
	if (fchmod(fd, archive_entry_perm(e) & 0777) < 0)
		return entry_errno(c, -errno, "chmod");
	struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, entry_mtime(e) };
	if (futimens(fd, ts) < 0)
		return entry_errno(c, -errno, "set times");
	return 0;
}

static const char *entry_symlink(struct archive_entry *e)
{
	const char *t = archive_entry_symlink(e);
	return t ? t : archive_entry_symlink_utf8(e);
}

static int do_symlink(struct ctx *c, const char *path, struct archive_entry *e)
{
	if (!path[0])
		return entry_err(c, EPERM, "a symlink cannot replace the root");
	const char *target = entry_symlink(e);
	if (!target || !*target)
		return entry_err(c, EINVAL, "symlink without a target");
	if (strlen(target) > c->lim->max_path)
		return entry_err(c, E2BIG, "symlink target of %zu bytes, the limit is %llu",
				 strlen(target), (unsigned long long)c->lim->max_path);
	_cleanup_close_ int dirfd = -1;
	const char *name;
	int r = open_parent(c, path, true, &dirfd, &name);
	if (r < 0)
		return r;
	if ((r = replace_at(dirfd, name, mk_symlink, target)) < 0)
		return entry_errno(c, r, "symlink");
	if ((r = apply_owner(c, dirfd, name, -1, e)) < 0)
		return r;
	struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, entry_mtime(e) };
	if (utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return entry_errno(c, -errno, "set times");
	return 0;
}

static const char *entry_hardlink(struct archive_entry *e)
{
	const char *t = archive_entry_hardlink(e);
	return t ? t : archive_entry_hardlink_utf8(e);
}

static int do_hardlink(struct ctx *c, const char *path, const char *raw_target)
{
	if (!path[0])
		return entry_err(c, EPERM, "a hard link cannot replace the root");
	if (strlen(raw_target) > c->lim->max_path)
		return entry_err(c, E2BIG, "hard link target of %zu bytes, the limit is %llu",
				 strlen(raw_target), (unsigned long long)c->lim->max_path);
	_cleanup_free_ char *target = malloc(strlen(raw_target) + 1);
	if (!target)
		return entry_errno(c, -ENOMEM, "hard link");
	const char *why = NULL;
	int r = normalize(raw_target, target, &why);
	if (r < 0)
		return entry_err(c, -r, "hard link target \"%.256s\": %s", raw_target, why);
	if (!target[0] || strcmp(target, path) == 0)
		return entry_err(c, EPERM, "hard link to \"%.256s\" is not allowed", raw_target);

	_cleanup_close_ int srcdir = -1;
	struct link_src src;
	r = open_parent(c, target, false, &srcdir, &src.name);
	if (r == -ENOENT)
		return entry_err(c, EPERM, "hard link target \"%.256s\" is not in the tree",
				 raw_target);
	if (r < 0)
		return r;
	src.dirfd = srcdir;
	struct stat st;
	if (fstatat(srcdir, src.name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return entry_err(c, EPERM, "hard link target \"%.256s\" is not in the tree",
				 raw_target);
	if (S_ISDIR(st.st_mode))
		return entry_err(c, EPERM, "hard link to the directory \"%.256s\"", raw_target);

	_cleanup_close_ int dirfd = -1;
	const char *name;
	if ((r = open_parent(c, path, true, &dirfd, &name)) < 0)
		return r;
	if ((r = replace_at(dirfd, name, mk_hardlink, &src)) < 0)
		return entry_errno(c, r, "hard link");
	return 0;
}

static int do_entry(struct ctx *c, struct archive_entry *e)
{
	if (++c->entries > c->lim->max_entries)
		return entry_err(c, E2BIG, "the layer has more than %llu entries",
				 (unsigned long long)c->lim->max_entries);
	size_t rawlen = strlen(c->entry);
	if (rawlen > c->lim->max_path)
		return entry_err(c, E2BIG, "path of %zu bytes, the limit is %llu", rawlen,
				 (unsigned long long)c->lim->max_path);
	_cleanup_free_ char *path = malloc(rawlen + 1);
	_cleanup_free_ char *parent = malloc(rawlen + 1);
	if (!path || !parent)
		return entry_errno(c, -ENOMEM, "path");
	const char *why = NULL;
	int r = normalize(c->entry, path, &why);
	if (r < 0)
		return entry_err(c, -r, "%s", why);
	const char *base = split_last(path, parent);

	if (strncmp(base, WHITEOUT_PREFIX, strlen(WHITEOUT_PREFIX)) == 0)
		return do_whiteout(c, base, parent);

	const char *hl = entry_hardlink(e);
	if (hl)
		r = do_hardlink(c, path, hl);
	else {
		mode_t type = archive_entry_filetype(e);
		switch (type) {
		case AE_IFDIR:
			r = do_dir(c, path, e);
			break;
		case AE_IFREG:
			r = do_file(c, path, e);
			break;
		case AE_IFLNK:
			r = do_symlink(c, path, e);
			break;
		case AE_IFCHR:
		case AE_IFBLK:
			return entry_err(c, EPERM, "device nodes are not allowed");
		case AE_IFIFO:
			return entry_err(c, EPERM, "fifos are not allowed");
		case AE_IFSOCK:
			return entry_err(c, EPERM, "sockets are not allowed");
		default:
			return entry_err(c, EPERM, "unsupported entry type 0%o", (unsigned)type);
		}
	}
	if (r < 0)
		return r;
	if (path[0] && (r = set_mark(&c->seen, path)) < 0)
		return entry_errno(c, r, "record path");
	return 0;
}

/* Directory modes and times, children before parents (the reverse of archive order). */
static int finish_dirs(struct ctx *c)
{
	for (size_t i = c->n_dirs; i-- > 0;) {
		struct dir_meta *m = &c->dirs[i];
		_cleanup_close_ int fd = -1;
		int r = open_dir_beneath(c->rootfd, m->path, false, &fd);
		if (r == -ENOENT || r == -ENOTDIR)
			continue; /* replaced or whited out later in the layer */
		c->entry = m->path;
		if (r < 0)
			return entry_errno(c, r, "open directory");
		if (fchmod(fd, m->mode) < 0)
			return entry_errno(c, -errno, "chmod");
		struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, m->mtime };
		if (futimens(fd, ts) < 0)
			return entry_errno(c, -errno, "set times");
	}
	return 0;
}

static bool media_type_known(const char *mt)
{
	static const char *const known[] = {
		"application/vnd.oci.image.layer.v1.tar",
		"application/vnd.oci.image.layer.v1.tar+gzip",
		"application/vnd.oci.image.layer.v1.tar+zstd",
		"application/vnd.oci.image.layer.nondistributable.v1.tar",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
		"application/vnd.docker.image.rootfs.diff.tar",
		"application/vnd.docker.image.rootfs.diff.tar.gzip",
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
	};
	for (size_t i = 0; i < ARRAY_SIZE(known); i++)
		if (strcmp(mt, known[i]) == 0)
			return true;
	return false;
}

enum compression { COMP_NONE, COMP_GZIP, COMP_ZSTD, COMP_OTHER };

static enum compression sniff(const unsigned char *m, size_t n, const char **name)
{
	*name = NULL;
	if (n >= 2 && m[0] == 0x1f && m[1] == 0x8b)
		return COMP_GZIP;
	if (n >= 4 && m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd)
		return COMP_ZSTD;
	if (n >= 6 && memcmp(m, "\xfd" "7zXZ\0", 6) == 0)
		*name = "xz";
	else if (n >= 3 && memcmp(m, "BZh", 3) == 0)
		*name = "bzip2";
	else if (n >= 4 && memcmp(m, "\x04\x22\x4d\x18", 4) == 0)
		*name = "lz4";
	else if (n >= 2 && m[0] == 0x1f && (m[1] == 0x9d || m[1] == 0xa0))
		*name = "compress";
	return *name ? COMP_OTHER : COMP_NONE;
}

int layers_unpack(const char *layer_path, const char *media_type, int rootfs_dirfd,
		  const struct layer_limits *lim, uk_error *err)
{
	if (!layer_path || rootfs_dirfd < 0)
		return uk_err(err, EINVAL, "layers_unpack: no layer or root directory");
	if (!lim)
		lim = &layer_limits_default;
	if (media_type && !media_type_known(media_type))
		return uk_err(err, ENOTSUP, "layer %s: media type \"%.128s\" is not a tar layer",
			      layer_path, media_type);
	struct stat st;
	if (fstat(rootfs_dirfd, &st) < 0)
		return uk_err_errno(err, errno, "layer %s: root directory", layer_path);
	if (!S_ISDIR(st.st_mode))
		return uk_err(err, ENOTDIR, "layer %s: the root is not a directory", layer_path);

	_cleanup_close_ int fd = open(layer_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return uk_err_errno(err, errno, "layer %s", layer_path);
	unsigned char magic[8];
	ssize_t n = pread(fd, magic, sizeof(magic), 0);
	if (n < 0)
		return uk_err_errno(err, errno, "layer %s: read", layer_path);
	const char *other;
	enum compression comp = sniff(magic, (size_t)n, &other);
	if (comp == COMP_OTHER)
		return uk_err(err, ENOTSUP, "layer %s: %s compression is not supported (only gzip "
			      "and zstd)", layer_path, other);

	_cleanup_archive_ struct archive *a = archive_read_new();
	if (!a)
		return uk_err(err, ENOMEM, "layer %s: libarchive", layer_path);
	/* Only the one filter the magic asked for, and only built in: ARCHIVE_WARN means
	 * libarchive would run an external program, which we never allow. */
	int r = ARCHIVE_OK;
	if (comp == COMP_GZIP)
		r = archive_read_support_filter_gzip(a);
	else if (comp == COMP_ZSTD)
		r = archive_read_support_filter_zstd(a);
	if (r != ARCHIVE_OK)
		return uk_err(err, ENOTSUP, "layer %s: this libarchive has no built-in %s support",
			      layer_path, comp == COMP_GZIP ? "gzip" : "zstd");
	if (archive_read_support_format_tar(a) != ARCHIVE_OK)
		return uk_err(err, ENOTSUP, "layer %s: libarchive: no tar support", layer_path);

	struct ctx c = {
		.layer = layer_path,
		.rootfd = rootfs_dirfd,
		.lim = lim,
		.err = err,
		.a = a,
		.is_root = geteuid() == 0,
	};
	if (archive_read_open_fd(a, fd, READ_BLOCK) != ARCHIVE_OK) {
		r = archive_fail(&c, "open");
		goto out;
	}
	for (;;) {
		struct archive_entry *e;
		c.entry = NULL;
		int ar = archive_read_next_header(a, &e);
		if (ar == ARCHIVE_EOF)
			break;
		if (ar < ARCHIVE_WARN) {
			r = archive_fail(&c, c.entries ? "read" : "not a tar archive");
			goto out;
		}
		c.entry = archive_entry_pathname(e);
		if (!c.entry)
			c.entry = archive_entry_pathname_utf8(e);
		if (!c.entry) {
			r = uk_err(err, EINVAL, "layer %s: entry %llu has no usable path", layer_path,
				   (unsigned long long)c.entries + 1);
			goto out;
		}
		if ((r = do_entry(&c, e)) < 0)
			goto out;
	}
	r = finish_dirs(&c);
out:
	set_free(&c.seen);
	for (size_t i = 0; i < c.n_dirs; i++)
		free(c.dirs[i].path);
	free(c.dirs);
	return r < 0 ? r : 0;
}
