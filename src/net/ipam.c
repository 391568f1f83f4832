/* Address management in a directory: one file per allocated address, named by the dotted
 * address and holding the sandbox id (and a newline).
 *
 * An allocation is written to a temp file, then link()ed to the address's name. link()
 * fails with EEXIST if the name exists, exactly like O_CREAT|O_EXCL, so two processes can
 * never take the same address; and unlike O_CREAT|O_EXCL followed by a write, the name only
 * ever appears with its full content, so a crash cannot leave an address taken by nobody.
 * Temp files of dead processes are removed by ipam_open.
 *
 * Nothing is fsync'ed: an address is only worth keeping while its pod's VM can run, and a
 * power loss ends every VM (after a reboot the runtime releases every pod's address). What a
 * power loss can leave of an allocation that never reached the disk, an empty address file,
 * is removed by ipam_open; a crash of the process alone loses nothing (the page cache stays).
 *
 * Round robin: DIR/.cursor holds the last address handed out (best effort, not fsync'ed),
 * and the search starts after it, so an address just released is not reused at once.
 *
 * Not thread safe on one handle: callers serialise their own calls. Between processes,
 * link() is the arbiter. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/util.h"
#include "net.h"

#define TMP_PREFIX ".tmp."
#define CURSOR_NAME ".cursor"
/* Entries collected by ipam_foreach: far beyond the pods of a node. */
#define IPAM_MAX_ENTRIES (1u << 20)

struct ipam {
	char *dir;
	int dfd;
};

static unsigned tmp_seq;

/* ---- small helpers ---- */

/* ".tmp.<pid>.<seq>.<start time>": the start time tells a dead writer from a process that
 * got its PID later. */
static void tmp_name(char out[64])
{
	unsigned seq = __atomic_fetch_add(&tmp_seq, 1, __ATOMIC_RELAXED);
	uint64_t st = 0;
	if (uk_proc_starttime(getpid(), &st) < 0) {
		/* Without a start time, the older form: remove_stale_tmp checks the pid alone. */
		snprintf(out, 64, TMP_PREFIX "%d.%u", (int)getpid(), seq);
		return;
	}
	snprintf(out, 64, TMP_PREFIX "%d.%u.%llu", (int)getpid(), seq, (unsigned long long)st);
}

/* A temp file that is unlinked at scope exit unless its name was cleared. */
struct tmpfile {
	int dfd;
	char name[64];
};
static void tmpfile_done(struct tmpfile *t)
{
	if (t->name[0]) {
		int saved = errno;
		(void)unlinkat(t->dfd, t->name, 0); /* an error path's cleanup; the sweep retries */
		errno = saved;
	}
}

static bool cidr_ok(const struct net_cidr *c)
{
	if (!c || c->prefix < 8 || c->prefix > 30)
		return false;
	uint32_t mask = 0xffffffffu << (32 - c->prefix);
	return (c->net & ~mask) == 0;
}

static bool in_cidr(const struct net_cidr *c, uint32_t ip)
{
	uint32_t mask = 0xffffffffu << (32 - c->prefix);
	return (ip & mask) == c->net;
}

/* Read the sandbox id in the file name. Returns 1 and fills id if it holds a valid id,
 * 0 if its content is not one, -ENOENT if it is gone, other -errno on failure. */
static int read_id(int dfd, const char *name, char id[UK_ID_MAX])
{
	_cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return errno == ELOOP || errno == ENXIO ? 0 : -errno; /* a symlink, a socket: not ours */
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return 0;
	char buf[UK_ID_MAX + 2];
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == sizeof(buf) - 1)
			return 0; /* too long for an id */
	}
	buf[len] = '\0';
	if (len > 0 && buf[len - 1] == '\n')
		buf[--len] = '\0';
	if (!uk_id_valid(buf))
		return 0;
	memcpy(id, buf, len + 1);
	return 1;
}

/* Call fn for every address file: id is NULL when its content is not a valid id (such a
 * file still holds its address). fn returns <0 to fail, >0 to stop, 0 to go on. */
typedef int (*scan_fn)(struct ipam *ip, uint32_t addr, const char *name, const char *id, void *ud);

static int ipam_scan(struct ipam *ip, scan_fn fn, void *ud, uk_error *err)
{
	int dfd = openat(ip->dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return uk_err_errno(err, errno, "ipam %s: open", ip->dir);
	_cleanup_closedir_ DIR *d = fdopendir(dfd);
	if (!d) {
		safe_close(dfd);
		return uk_err_errno(err, errno, "ipam %s: open", ip->dir);
	}
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (!de) {
			if (errno)
				return uk_err_errno(err, errno, "ipam %s: read directory", ip->dir);
			return 0;
		}
		uint32_t addr;
		if (de->d_name[0] == '.' || net_ip_parse(de->d_name, &addr) < 0)
			continue;
		char id[UK_ID_MAX];
		int r = read_id(ip->dfd, de->d_name, id);
		if (r == -ENOENT)
			continue; /* released meanwhile */
		if (r < 0)
			return uk_err_errno(err, -r, "ipam %s: read %s", ip->dir, de->d_name);
		r = fn(ip, addr, de->d_name, r > 0 ? id : NULL, ud);
		if (r != 0)
			return r;
	}
}

static void remove_stale_tmp(struct ipam *ip, const char *name);
static void remove_empty_address(struct ipam *ip, const char *name);

/* The start-up sweep, one walk of the directory, best effort. */
static void sweep(struct ipam *ip)
{
	int dfd = openat(ip->dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return;
	_cleanup_closedir_ DIR *d = fdopendir(dfd);
	if (!d) {
		safe_close(dfd);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		remove_stale_tmp(ip, de->d_name);
		remove_empty_address(ip, de->d_name);
	}
}

/* A temp file of a process that died before finishing goes. */
static void remove_stale_tmp(struct ipam *ip, const char *name)
{
	if (strncmp(name, TMP_PREFIX, strlen(TMP_PREFIX)) != 0)
		return;
	char *end;
	long pid = strtol(name + strlen(TMP_PREFIX), &end, 10);
	if (pid <= 0 || *end != '.')
		return;
	strtoul(end + 1, &end, 10); /* the sequence number */
	bool dead;
	if (*end == '.') {
		uint64_t st;
		dead = uk_parse_u64(end + 1, 0, UINT64_MAX, &st) < 0 || !uk_proc_alive((pid_t)pid, st);
	} else {
		dead = kill((pid_t)pid, 0) < 0 && errno == ESRCH; /* a name from before start times */
	}
	if (dead)
		(void)unlinkat(ip->dfd, name, 0); /* best effort: the next sweep retries */
}

/* An empty address file goes: all a power loss can leave of an allocation that was never
 * written back (its link was, its content not). It holds nobody's address. */
static void remove_empty_address(struct ipam *ip, const char *name)
{
	uint32_t addr;
	struct stat st;
	if (name[0] == '.' || net_ip_parse(name, &addr) < 0 || fstatat(ip->dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	if (S_ISREG(st.st_mode) && st.st_size == 0)
		(void)unlinkat(ip->dfd, name, 0); /* best effort: the next open retries */
}

/* ---- open / free ---- */

int ipam_open(const char *dir, struct ipam **ret, uk_error *err)
{
	if (!dir || !*dir)
		return uk_err(err, EINVAL, "ipam: no directory given");
	int r = uk_mkdir_p(dir, 0700, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "ipam %s", dir);
	_cleanup_free_ struct ipam *ip = calloc(1, sizeof(*ip));
	if (!ip)
		return uk_err(err, ENOMEM, "out of memory");
	ip->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ip->dfd < 0)
		return uk_err_errno(err, errno, "ipam: open %s", dir);
	ip->dir = strdup(dir);
	if (!ip->dir) {
		safe_close(ip->dfd);
		return uk_err(err, ENOMEM, "out of memory");
	}
	sweep(ip);
	*ret = TAKE_PTR(ip);
	return 0;
}

void ipam_free(struct ipam *ip)
{
	if (!ip)
		return;
	safe_close(ip->dfd);
	free(ip->dir);
	free(ip);
}

/* ---- lookup ---- */

struct find_ctx {
	const char *id;
	const struct net_cidr *cidr; /* NULL: any */
	bool found, found_outside;
	uint32_t addr, outside;
};

static int find_cb(struct ipam *ip, uint32_t addr, const char *name, const char *id, void *ud)
{
	(void)ip;
	(void)name;
	struct find_ctx *c = ud;
	if (!id || strcmp(id, c->id) != 0)
		return 0;
	if (!c->cidr || in_cidr(c->cidr, addr)) {
		if (!c->found || addr < c->addr)
			c->addr = addr;
		c->found = true;
	} else if (!c->found_outside || addr < c->outside) {
		c->outside = addr;
		c->found_outside = true;
	}
	return 0;
}

int ipam_lookup(struct ipam *ip, const char *sandbox_id, uint32_t *ret)
{
	if (!ip || !uk_id_valid(sandbox_id))
		return -EINVAL;
	struct find_ctx c = { .id = sandbox_id };
	int r = ipam_scan(ip, find_cb, &c, NULL);
	if (r < 0)
		return r;
	if (!c.found)
		return -ENOENT;
	*ret = c.addr;
	return 0;
}

/* ---- allocate ---- */

static bool cursor_read(struct ipam *ip, uint32_t *ret)
{
	_cleanup_close_ int fd = openat(ip->dfd, CURSOR_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0)
		return false;
	char buf[NET_IP_MAX + 2];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	if (buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	return net_ip_parse(buf, ret) == 0;
}

/* Best effort: a lost or torn cursor only means starting from the range's beginning. The
 * rename keeps readers from seeing a half-written one. */
static void cursor_write(struct ipam *ip, uint32_t addr)
{
	char buf[NET_IP_MAX + 1];
	net_ip_str(addr, buf);
	size_t len = strlen(buf);
	buf[len++] = '\n';
	_cleanup_(tmpfile_done) struct tmpfile t = { .dfd = ip->dfd };
	tmp_name(t.name);
	_cleanup_close_ int fd =
		openat(ip->dfd, t.name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0) {
		t.name[0] = '\0';
		return;
	}
	if (uk_write_all(fd, buf, len) < 0)
		return;
	if (renameat(ip->dfd, t.name, ip->dfd, CURSOR_NAME) == 0)
		t.name[0] = '\0';
}

int ipam_allocate(struct ipam *ip, const struct net_cidr *cidr, const char *sandbox_id, uint32_t *ret,
		  uk_error *err)
{
	if (!ip)
		return uk_err(err, EINVAL, "ipam: no handle");
	if (!uk_id_valid(sandbox_id))
		return uk_err(err, EINVAL, "ipam %s: invalid sandbox id \"%.*s\"", ip->dir, UK_ID_MAX,
			      sandbox_id ? sandbox_id : "(null)");
	if (!cidr_ok(cidr)) {
		char net[NET_IP_MAX] = "?";
		if (cidr)
			net_ip_str(cidr->net, net);
		return uk_err(err, EINVAL, "ipam %s: invalid range %s/%d (prefix 8..30, host bits zero)", ip->dir,
			      net, cidr ? cidr->prefix : -1);
	}
	char net[NET_IP_MAX];
	net_ip_str(cidr->net, net);

	/* Idempotent: the sandbox's address if it has one. */
	struct find_ctx c = { .id = sandbox_id, .cidr = cidr };
	int r = ipam_scan(ip, find_cb, &c, err);
	if (r < 0)
		return r;
	if (c.found) {
		*ret = c.addr;
		return 0;
	}
	if (c.found_outside) {
		char a[NET_IP_MAX];
		net_ip_str(c.outside, a);
		return uk_err(err, EEXIST, "ipam %s: sandbox %s already has address %s, outside %s/%d", ip->dir,
			      sandbox_id, a, net, cidr->prefix);
	}

	/* Hosts after the gateway, before the broadcast address. */
	uint32_t first = net_cidr_gateway(cidr) + 1;
	uint32_t last = net_cidr_broadcast(cidr) - 1;
	uint32_t n = last - first + 1;
	uint32_t start = first, cur;
	if (cursor_read(ip, &cur) && cur >= first && cur <= last)
		start = cur == last ? first : cur + 1;

	/* The content first, complete and on disk; then the name, atomically. */
	_cleanup_(tmpfile_done) struct tmpfile t = { .dfd = ip->dfd };
	tmp_name(t.name);
	_cleanup_close_ int fd =
		openat(ip->dfd, t.name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0644);
	if (fd < 0) {
		r = uk_err_errno(err, errno, "ipam %s: create %s", ip->dir, t.name);
		t.name[0] = '\0'; /* not ours to remove */
		return r;
	}
	char content[UK_ID_MAX + 1];
	size_t len = strlen(sandbox_id);
	memcpy(content, sandbox_id, len);
	content[len++] = '\n';
	r = uk_write_all(fd, content, len);
	if (r < 0)
		return uk_err_errno(err, -r, "ipam %s: write %s", ip->dir, t.name);

	bool got = false;
	uint32_t addr = 0;
	for (uint32_t i = 0; i < n; i++) {
		addr = first + (start - first + i) % n;
		char name[NET_IP_MAX];
		net_ip_str(addr, name);
		if (linkat(ip->dfd, t.name, ip->dfd, name, 0) == 0) {
			got = true;
			break;
		}
		if (errno != EEXIST)
			return uk_err_errno(err, errno, "ipam %s: link %s", ip->dir, name);
	}
	if (!got) {
		char a[NET_IP_MAX], b[NET_IP_MAX];
		net_ip_str(first, a);
		net_ip_str(last, b);
		return uk_err(err, ENOSPC, "ipam %s: range %s/%d is full: all %u addresses (%s-%s) are allocated",
			      ip->dir, net, cidr->prefix, n, a, b);
	}
	if (unlinkat(ip->dfd, t.name, 0) == 0)
		t.name[0] = '\0';
	cursor_write(ip, addr);
	*ret = addr;
	return 0;
}

/* ---- release ---- */

struct release_ctx {
	const char *id;
	unsigned removed;
	uk_error *err;
};

static int release_cb(struct ipam *ip, uint32_t addr, const char *name, const char *id, void *ud)
{
	(void)addr;
	struct release_ctx *c = ud;
	if (!id || strcmp(id, c->id) != 0)
		return 0;
	if (unlinkat(ip->dfd, name, 0) < 0) {
		if (errno == ENOENT)
			return 0;
		return uk_err_errno(c->err, errno, "ipam %s: remove %s", ip->dir, name);
	}
	c->removed++;
	return 0;
}

int ipam_release(struct ipam *ip, const char *sandbox_id, uk_error *err)
{
	if (!ip)
		return uk_err(err, EINVAL, "ipam: no handle");
	if (!uk_id_valid(sandbox_id))
		return uk_err(err, EINVAL, "ipam %s: invalid sandbox id \"%.*s\"", ip->dir, UK_ID_MAX,
			      sandbox_id ? sandbox_id : "(null)");
	struct release_ctx c = { .id = sandbox_id, .err = err };
	int r = ipam_scan(ip, release_cb, &c, err);
	if (r < 0)
		return r;
	return 0;
}

/* ---- foreach ---- */

struct entry {
	uint32_t addr;
	char *id;
};

struct collect_ctx {
	struct entry *v;
	size_t n, cap;
	uk_error *err;
};

static void collect_done(struct collect_ctx *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->v[i].id);
	free(c->v);
}

static int collect_cb(struct ipam *ip, uint32_t addr, const char *name, const char *id, void *ud)
{
	(void)name;
	struct collect_ctx *c = ud;
	if (!id)
		return 0; /* not a valid allocation: it keeps its address, but there is no one to report */
	if (c->n == c->cap) {
		if (c->cap >= IPAM_MAX_ENTRIES)
			return uk_err(c->err, E2BIG, "ipam %s: more than %u allocations", ip->dir, IPAM_MAX_ENTRIES);
		size_t ncap = c->cap ? c->cap * 2 : 64;
		struct entry *nv = realloc(c->v, ncap * sizeof(*nv));
		if (!nv)
			return uk_err(c->err, ENOMEM, "out of memory");
		c->v = nv;
		c->cap = ncap;
	}
	char *dup = strdup(id);
	if (!dup)
		return uk_err(c->err, ENOMEM, "out of memory");
	c->v[c->n++] = (struct entry){ .addr = addr, .id = dup };
	return 0;
}

static int entry_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct entry *)a)->addr, y = ((const struct entry *)b)->addr;
	return x < y ? -1 : x > y;
}

int ipam_foreach(struct ipam *ip, int (*fn)(uint32_t addr, const char *sandbox_id, void *ud), void *ud,
		 uk_error *err)
{
	if (!ip || !fn)
		return uk_err(err, EINVAL, "ipam: no handle or callback");
	/* Collect first: fn may release addresses, which must not disturb the walk. */
	_cleanup_(collect_done) struct collect_ctx c = { .err = err };
	int r = ipam_scan(ip, collect_cb, &c, err);
	if (r < 0)
		return r;
	if (c.n > 1)
		qsort(c.v, c.n, sizeof(*c.v), entry_cmp);
	for (size_t i = 0; i < c.n; i++) {
		r = fn(c.v[i].addr, c.v[i].id, ud);
		if (r < 0) {
			char a[NET_IP_MAX];
			net_ip_str(c.v[i].addr, a);
			return uk_err_errno(err, -r, "ipam %s: callback for %s (sandbox %s)", ip->dir, a, c.v[i].id);
		}
	}
	return 0;
}
