#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include "../common/util.h"
#include "cgroup.h"

/* Bounds for what we read from cgroupfs: control files are small and kernel-made. */
#define SMALL_MAX 256      /* single values, cpu.max */
#define LIST_MAX 1024      /* cgroup.controllers, cgroup.subtree_control */
#define STAT_MAX (32 * 1024) /* memory.stat, cpu.stat, memory.events */
#define NAME_MAX_CG 255

/* ---- names and paths ---- */

static bool name_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == ':' || c == '@' || c == '-' || c == '\\';
}

/* Checks text (cgroup_parent or a relative path) for characters and "..". what names it. */
static int check_chars(const char *what, const char *text, uk_error *err)
{
	for (const char *p = text; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c < 0x20 || c >= 0x7f) /* not echoed: the message goes to a log */
			return uk_err(err, EINVAL, "%s: byte 0x%02x at offset %zu is not allowed", what,
				      c, (size_t)(p - text));
		if (c != '/' && !name_char_ok((char)c))
			return uk_err(err, EINVAL, "%s \"%s\": character '%c' is not allowed", what, text,
				      (char)c);
	}
	if (strstr(text, ".."))
		return uk_err(err, EINVAL, "%s \"%s\" contains \"..\"", what, text);
	return 0;
}

/* Names the kernel or systemd keep for themselves in a cgroup directory: control files are
 * "<controller>.<knob>" and "cgroup.<knob>" (a directory of that name collides with the file
 * once the controller is enabled), v1's root has three more, and systemd escapes names
 * that start with '.'. systemd's cg_needs_escape() keeps the same set. */
static const char *reserved_component(const char *name, size_t n)
{
	static const char *const prefixes[] = { "cgroup",  "cpu",     "cpuacct",   "cpuset", "io",
						"blkio",   "memory",  "devices",   "freezer", "net_cls",
						"net_prio", "perf_event", "hugetlb", "pids",  "rdma",
						"misc" };
	static const char *const files[] = { "tasks", "notify_on_release", "release_agent" };
	if (n > 0 && name[0] == '.')
		return "starts with '.'";
	for (size_t i = 0; i < ARRAY_SIZE(files); i++)
		if (strlen(files[i]) == n && !memcmp(name, files[i], n))
			return "is the name of a cgroup v1 control file";
	for (size_t i = 0; i < ARRAY_SIZE(prefixes); i++) {
		size_t k = strlen(prefixes[i]);
		if (n > k && !memcmp(name, prefixes[i], k) && name[k] == '.')
			return "has the form of a control file (<controller>.<name>)";
	}
	return NULL;
}

static int check_component(const char *what, const char *text, const char *name, size_t n,
			   uk_error *err)
{
	const char *why = reserved_component(name, n);
	if (why)
		return uk_err(err, EINVAL, "%s \"%s\": component \"%.*s\" %s", what, text, (int)n,
			      name, why);
	return 0;
}

/* A relative cgroup path as cg_path_for makes them: components separated by single '/',
 * none empty, none "." or longer than NAME_MAX, none reserved. */
static int check_rel(const char *path, uk_error *err)
{
	if (!path || !*path)
		return uk_err(err, EINVAL, "empty cgroup path");
	size_t len = strlen(path);
	if (len >= CG_PATH_MAX)
		return uk_err(err, ENAMETOOLONG, "cgroup path is %zu bytes, longer than %d", len,
			      CG_PATH_MAX - 1);
	int r = check_chars("cgroup path", path, err);
	if (r < 0)
		return r;
	for (const char *p = path;;) {
		size_t n = strcspn(p, "/");
		if (n == 0 || n > NAME_MAX_CG || (n == 1 && p[0] == '.'))
			return uk_err(err, EINVAL, "cgroup path \"%s\": bad component at offset %zu",
				      path, (size_t)(p - path));
		if ((r = check_component("cgroup path", path, p, n, err)) < 0)
			return r;
		p += n;
		if (!*p)
			break;
		p++;
	}
	return 0;
}

/* out = a "/" b "/" c, leaving out empty parts after a. */
static int path_join(char out[PATH_MAX], const char *a, const char *b, const char *c, uk_error *err)
{
	int n = snprintf(out, PATH_MAX, "%s%s%s%s%s", a, *b ? "/" : "", b, *c ? "/" : "", c);
	if (n < 0 || n >= PATH_MAX)
		return uk_err(err, ENAMETOOLONG, "path too long: %s/%s/%s", a, b, c);
	return 0;
}

static int append(char *out, size_t len, size_t *pos, const char *s, size_t n)
{
	if (*pos + n >= len)
		return -ENAMETOOLONG;
	memcpy(out + *pos, s, n);
	*pos += n;
	out[*pos] = '\0';
	return 0;
}

static int path_for(const char *cgroup_parent, const char *id, char *out, size_t len, uk_error *err)
{
	if (!uk_id_valid(id))
		return uk_err(err, EINVAL, "container id is not a valid cgroup name");
	const char *parent = cgroup_parent && *cgroup_parent ? cgroup_parent : CG_DEFAULT_PARENT;
	size_t plen = strlen(parent);
	if (plen > CG_PARENT_MAX)
		return uk_err(err, ENAMETOOLONG, "cgroup_parent is %zu bytes, longer than %d", plen,
			      CG_PARENT_MAX);
	int r = check_chars("cgroup_parent", parent, err);
	if (r < 0)
		return r;

	size_t pos = 0;
	bool systemd = !strchr(parent, '/') && plen >= 6 && !strcmp(parent + plen - 6, ".slice");
	if (systemd) {
		/* systemd nests slices by their dash-separated prefixes: a-b-c.slice lives in
		 * a.slice/a-b.slice/a-b-c.slice; "-.slice" is the root slice. */
		size_t nlen = plen - 6;
		/* systemd's slice names are plain unit names: no '@' (that makes a template). */
		if (memchr(parent, '@', nlen))
			return uk_err(err, EINVAL, "cgroup_parent \"%s\": '@' is not allowed in a slice name",
				      parent);
		if (!(nlen == 1 && parent[0] == '-')) {
			for (size_t i = 0; i <= nlen; i++) {
				if (i < nlen && parent[i] != '-')
					continue;
				bool empty = i == 0 || parent[i - 1] == '-';
				if (empty)
					return uk_err(err, EINVAL,
						      "cgroup_parent \"%s\": empty component in slice name",
						      parent);
				if (i + 6 > NAME_MAX_CG)
					return uk_err(err, ENAMETOOLONG,
						      "cgroup_parent \"%s\": slice name too long", parent);
				char slice[NAME_MAX_CG + 1];
				snprintf(slice, sizeof(slice), "%.*s.slice", (int)i, parent);
				if ((r = check_component("cgroup_parent", parent, slice, i + 6, err)) < 0)
					return r;
				if ((pos > 0 && append(out, len, &pos, "/", 1) < 0) ||
				    append(out, len, &pos, parent, i) < 0 ||
				    append(out, len, &pos, ".slice", 6) < 0)
					goto too_long;
			}
		}
	} else {
		/* cgroupfs: leading and trailing slashes are dropped; components are checked. */
		const char *p = parent;
		while (*p == '/')
			p++;
		size_t n = strlen(p);
		while (n > 0 && p[n - 1] == '/')
			n--;
		for (size_t i = 0; i < n;) {
			size_t c = strcspn(p + i, "/");
			if (c > n - i)
				c = n - i;
			if (c == 0 || (c == 1 && p[i] == '.'))
				return uk_err(err, EINVAL, "cgroup_parent \"%s\": empty or \".\" component",
					      parent);
			if (c > NAME_MAX_CG)
				return uk_err(err, ENAMETOOLONG,
					      "cgroup_parent \"%s\": component longer than %d bytes", parent,
					      NAME_MAX_CG);
			if ((r = check_component("cgroup_parent", parent, p + i, c, err)) < 0)
				return r;
			if ((pos > 0 && append(out, len, &pos, "/", 1) < 0) ||
			    append(out, len, &pos, p + i, c) < 0)
				goto too_long;
			i += c + 1;
		}
	}
	char leaf[UK_ID_MAX + 16];
	snprintf(leaf, sizeof(leaf), "unikd-%s%s", id, systemd ? ".scope" : "");
	if ((pos > 0 && append(out, len, &pos, "/", 1) < 0) ||
	    append(out, len, &pos, leaf, strlen(leaf)) < 0)
		goto too_long;
	if (pos >= CG_PATH_MAX)
		goto too_long;
	return 0;
too_long:
	return uk_err(err, ENAMETOOLONG, "cgroup path for cgroup_parent \"%s\" does not fit %zu bytes",
		      parent, len < CG_PATH_MAX ? len : (size_t)CG_PATH_MAX);
}

int cg_path_for(const char *cgroup_parent, const char *id, char *out, size_t len, uk_error *err)
{
	if (!out || len == 0)
		return uk_err(err, EINVAL, "no output buffer");
	out[0] = '\0';
	int r = path_for(cgroup_parent, id, out, len, err);
	if (r < 0)
		out[0] = '\0'; /* never a partial path */
	return r;
}

int cg_parent_check(const char *cgroup_parent, size_t id_len, uk_error *err)
{
	char id[UK_ID_MAX + 1], out[CG_PATH_MAX];
	if (id_len == 0 || id_len > UK_ID_MAX)
		return uk_err(err, EINVAL, "container ids of %zu bytes cannot name a cgroup", id_len);
	memset(id, 'f', id_len);
	id[id_len] = '\0';
	return cg_path_for(cgroup_parent, id, out, sizeof(out), err);
}

/* ---- parsing ---- */

uint64_t cg_shares_to_weight(uint64_t shares)
{
	if (shares < CG_SHARES_MIN)
		shares = CG_SHARES_MIN;
	if (shares > CG_SHARES_MAX)
		shares = CG_SHARES_MAX;
	return 1 + ((shares - 2) * 9999) / 262142;
}

static int parse_u64_n(const char *s, size_t n, uint64_t *ret)
{
	char buf[32];
	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return uk_parse_u64(buf, 0, UINT64_MAX, ret) < 0 ? -EINVAL : 0;
}

int cg_parse_flat_keyed(const char *text, const char *key, uint64_t *ret)
{
	size_t klen = strlen(key);
	if (!text || klen == 0)
		return -EINVAL;
	for (const char *line = text; *line;) {
		const char *eol = strchrnul(line, '\n');
		if ((size_t)(eol - line) > klen && !strncmp(line, key, klen) && line[klen] == ' ') {
			const char *v = line + klen + 1;
			return parse_u64_n(v, (size_t)(eol - v), ret);
		}
		line = *eol ? eol + 1 : eol;
	}
	return -ENOENT;
}

int cg_parse_value(const char *text, uint64_t *ret)
{
	if (!text)
		return -EINVAL;
	size_t n = strlen(text);
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
		n--;
	if (n == 3 && !memcmp(text, "max", 3)) {
		*ret = UINT64_MAX;
		return 0;
	}
	return parse_u64_n(text, n, ret);
}

/* The first of the keys present; missing: 0. */
static int stat_key(const char *text, const char *k1, const char *k2, uint64_t *ret)
{
	int r = cg_parse_flat_keyed(text, k1, ret);
	if (r == -ENOENT && k2)
		r = cg_parse_flat_keyed(text, k2, ret);
	if (r == -ENOENT) {
		*ret = 0;
		return 0;
	}
	return r;
}

int cg_parse_memory_stat(const char *text, enum cg_version v, uint64_t usage, struct cg_stats *st)
{
	bool v1 = v == CG_V1;
	uint64_t inactive_file = 0;
	int r;
	if ((r = stat_key(text, v1 ? "total_rss" : "anon", v1 ? "rss" : NULL, &st->memory_rss_bytes)) < 0 ||
	    (r = stat_key(text, v1 ? "total_inactive_file" : "inactive_file", v1 ? "inactive_file" : NULL,
			  &inactive_file)) < 0 ||
	    (r = stat_key(text, v1 ? "total_pgfault" : "pgfault", v1 ? "pgfault" : NULL,
			  &st->page_faults)) < 0 ||
	    (r = stat_key(text, v1 ? "total_pgmajfault" : "pgmajfault", v1 ? "pgmajfault" : NULL,
			  &st->major_page_faults)) < 0)
		return r;
	st->memory_usage_bytes = usage;
	st->memory_working_set_bytes = usage > inactive_file ? usage - inactive_file : 0;
	return 0;
}

int cg_parse_cpu_stat(const char *text, uint64_t *usage_ns)
{
	uint64_t us;
	int r = cg_parse_flat_keyed(text, "usage_usec", &us);
	if (r < 0)
		return r;
	if (us > UINT64_MAX / 1000)
		return -EINVAL;
	*usage_ns = us * 1000;
	return 0;
}

/* Whether a whitespace-separated list (cgroup.controllers) has the word. */
static bool has_word(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; *p;) {
		p += strspn(p, " \t\n");
		size_t w = strcspn(p, " \t\n");
		if (w == n && !memcmp(p, word, n))
			return true;
		p += w;
	}
	return false;
}

/* ---- files ---- */

static int read_at(const char *dir, const char *rel, const char *file, size_t max, char **ret,
		   uk_error *err)
{
	char path[PATH_MAX];
	int r = path_join(path, dir, rel, file, err);
	if (r < 0)
		return r;
	return uk_read_file(path, max, ret, NULL, err);
}

static int read_value_at(const char *dir, const char *rel, const char *file, uint64_t *ret,
			 uk_error *err)
{
	_cleanup_free_ char *text = NULL;
	int r = read_at(dir, rel, file, SMALL_MAX, &text, err);
	if (r < 0)
		return r;
	if (cg_parse_value(text, ret) < 0)
		return uk_err(err, EINVAL, "%s/%s/%s: unexpected content \"%.32s\"", dir, rel, file, text);
	return 0;
}

/* cgroupfs takes a value in one write(); no O_CREAT: control files are the kernel's. */
static int write_at(const char *dir, const char *rel, const char *file, const char *value,
		    uk_error *err)
{
	char path[PATH_MAX];
	int r = path_join(path, dir, rel, file, err);
	if (r < 0)
		return r;
	_cleanup_close_ int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return uk_err_errno(err, errno, "open %s", path);
	size_t len = strlen(value);
	ssize_t n;
	do
		n = write(fd, value, len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return uk_err_errno(err, errno, "write \"%s\" to %s", value, path);
	if ((size_t)n != len)
		return uk_err(err, EIO, "short write of \"%s\" to %s", value, path);
	return 0;
}

/* ---- detection ---- */

static _printf_(2, 3) void set_why(struct cg_system *sys, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sys->why, sizeof(sys->why), fmt, ap);
	va_end(ap);
	sys->version = CG_NONE;
}

static bool is_fs(const char *path, long magic)
{
	struct statfs sf;
	return statfs(path, &sf) == 0 && (long)sf.f_type == magic;
}

/* The first candidate directory under root holding marker; "" when none. */
static int find_hierarchy(const struct cg_system *sys, bool check_fs, const char *const *names,
			  const char *marker, char out[PATH_MAX], uk_error *err)
{
	out[0] = '\0';
	for (; *names; names++) {
		char dir[PATH_MAX], file[PATH_MAX];
		int r = path_join(dir, sys->root, *names, "", err);
		if (r < 0 || (r = path_join(file, dir, marker, "", err)) < 0)
			return r;
		struct stat st;
		if (stat(file, &st) < 0)
			continue;
		if (check_fs && !is_fs(dir, CGROUP_SUPER_MAGIC))
			continue;
		memcpy(out, dir, PATH_MAX);
		return 0;
	}
	return 0;
}

int cg_detect(struct cg_system *sys, const char *root, uk_error *err)
{
	memset(sys, 0, sizeof(*sys));
	bool check_fs = !root;
	if (!root)
		root = CG_DEFAULT_ROOT;
	size_t rlen = strlen(root);
	while (rlen > 1 && root[rlen - 1] == '/')
		rlen--;
	if (rlen == 0 || rlen >= PATH_MAX - 64)
		return uk_err(err, ENAMETOOLONG, "cgroup root \"%.64s\" is empty or too long", root);
	memcpy(sys->root, root, rlen);
	sys->root[rlen] = '\0';

	struct stat st;
	if (stat(sys->root, &st) < 0) {
		if (errno == ENOENT) {
			set_why(sys, "%s does not exist", sys->root);
			return 0;
		}
		return uk_err_errno(err, errno, "stat %s", sys->root);
	}

	char path[PATH_MAX];
	int r = path_join(path, sys->root, "cgroup.controllers", "", err);
	if (r < 0)
		return r;
	if (stat(path, &st) == 0) {
		if (check_fs && !is_fs(sys->root, CGROUP2_SUPER_MAGIC)) {
			set_why(sys, "%s has cgroup.controllers but is not a cgroup2 mount", sys->root);
			return 0;
		}
		_cleanup_free_ char *ctrl = NULL;
		r = uk_read_file(path, LIST_MAX, &ctrl, NULL, err);
		if (r < 0)
			return r;
		ctrl[strcspn(ctrl, "\n")] = '\0';
		static const char *const need[] = { "memory", "cpu" };
		for (size_t i = 0; i < ARRAY_SIZE(need); i++)
			if (!has_word(ctrl, need[i])) {
				set_why(sys, "cgroup v2 at %s lacks the %s controller (cgroup.controllers: \"%.64s\")",
					sys->root, need[i], ctrl);
				return 0;
			}
		sys->version = CG_V2;
		return 0;
	}

	static const char *const memory[] = { "memory", NULL };
	static const char *const cpu[] = { "cpu", "cpu,cpuacct", "cpuacct,cpu", NULL };
	static const char *const cpuacct[] = { "cpuacct", "cpu,cpuacct", "cpuacct,cpu", NULL };
	static const char *const pids[] = { "pids", NULL };
	if ((r = find_hierarchy(sys, check_fs, memory, "memory.limit_in_bytes", sys->memory, err)) < 0 ||
	    (r = find_hierarchy(sys, check_fs, cpu, "cpu.shares", sys->cpu, err)) < 0 ||
	    (r = find_hierarchy(sys, check_fs, cpuacct, "cpuacct.usage", sys->cpuacct, err)) < 0 ||
	    /* The root of the pids hierarchy has no pids.max. */
	    (r = find_hierarchy(sys, check_fs, pids, "cgroup.procs", sys->pids, err)) < 0)
		return r;
	const char *missing = !sys->memory[0] ? "memory" : !sys->cpu[0] ? "cpu" : !sys->cpuacct[0] ? "cpuacct" : NULL;
	if (missing) {
		set_why(sys, "no cgroup v2 at %s (no cgroup.controllers) and no cgroup v1 %s hierarchy under it",
			sys->root, missing);
		memset(sys->memory, 0, sizeof(sys->memory));
		memset(sys->cpu, 0, sizeof(sys->cpu));
		memset(sys->cpuacct, 0, sizeof(sys->cpuacct));
		memset(sys->pids, 0, sizeof(sys->pids));
		return 0;
	}
	struct stat a, b;
	sys->cpuacct_is_cpu = stat(sys->cpu, &a) == 0 && stat(sys->cpuacct, &b) == 0 &&
			      a.st_dev == b.st_dev && a.st_ino == b.st_ino;
	sys->version = CG_V1;
	return 0;
}

/* The directories of the hierarchies a VM's cgroup lives in. */
static size_t hierarchies(const struct cg_system *s, const char *out[CG_PROCS_MAX])
{
	size_t n = 0;
	if (s->version == CG_V2) {
		out[n++] = s->root;
	} else if (s->version == CG_V1) {
		out[n++] = s->memory;
		out[n++] = s->cpu;
		if (!s->cpuacct_is_cpu)
			out[n++] = s->cpuacct;
		if (s->pids[0])
			out[n++] = s->pids;
	}
	return n;
}

static int check_usable(const struct cg_system *s, const char *path, uk_error *err)
{
	if (!s || s->version == CG_NONE)
		return uk_err(err, EOPNOTSUPP, "cgroups are unavailable: %s",
			      s && s->why[0] ? s->why : "not detected");
	return check_rel(path, err);
}

/* ---- create, update ---- */

/* v2: make sure dir hands memory and cpu to its children. Writing only the missing ones
 * keeps an already-set-up parent untouched (and free of the no-internal-processes rule). */
static int v2_enable(const char *dir, uk_error *err)
{
	static const char *const need[] = { "memory", "cpu" };
	_cleanup_free_ char *sub = NULL, *ctrl = NULL;
	int r = read_at(dir, "", "cgroup.subtree_control", LIST_MAX, &sub, err);
	if (r < 0)
		return r;
	char add[64] = "";
	for (size_t i = 0; i < ARRAY_SIZE(need); i++) {
		if (has_word(sub, need[i]))
			continue;
		if (!ctrl && (r = read_at(dir, "", "cgroup.controllers", LIST_MAX, &ctrl, err)) < 0)
			return r;
		if (!has_word(ctrl, need[i])) {
			ctrl[strcspn(ctrl, "\n")] = '\0';
			return uk_err(err, EOPNOTSUPP,
				      "%s/cgroup.controllers (\"%.64s\") lacks %s: it is not delegated to this cgroup",
				      dir, ctrl, need[i]);
		}
		size_t used = strlen(add);
		snprintf(add + used, sizeof(add) - used, "%s+%s", used ? " " : "", need[i]);
	}
	if (!add[0])
		return 0;
	r = write_at(dir, "", "cgroup.subtree_control", add, err);
	if (r == -EBUSY)
		return uk_err_ctx_r(err, r, "processes live in %s; cgroup v2 enables controllers only for cgroups "
				       "without processes of their own", dir);
	return r;
}

/* mkdir each component of rel below base; v2 enables the controllers on the way down. */
static int mkdir_below(const char *base, const char *rel, bool v2, uk_error *err)
{
	char dir[PATH_MAX];
	size_t len = strlen(base);
	if (len >= sizeof(dir))
		return uk_err(err, ENAMETOOLONG, "path too long: %s", base);
	memcpy(dir, base, len + 1);
	for (const char *p = rel;;) {
		int r;
		if (v2 && (r = v2_enable(dir, err)) < 0)
			return r;
		size_t c = strcspn(p, "/");
		if (len + 1 + c >= sizeof(dir))
			return uk_err(err, ENAMETOOLONG, "path too long: %s/%s", base, rel);
		dir[len++] = '/';
		memcpy(dir + len, p, c);
		len += c;
		dir[len] = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return uk_err_errno(err, errno, "mkdir %s", dir);
		p += c;
		if (!*p)
			return 0;
		p++;
	}
}

static int check_limits(const struct cg_limits *l, int64_t *period, uk_error *err)
{
	*period = l->cpu_period_us > 0 ? l->cpu_period_us : CG_CPU_PERIOD_DEFAULT;
	if (*period < CG_CPU_PERIOD_MIN || *period > CG_CPU_PERIOD_MAX)
		return uk_err(err, EINVAL, "cpu_period_us %" PRId64 " is outside %d..%d", *period,
			      CG_CPU_PERIOD_MIN, CG_CPU_PERIOD_MAX);
	if (l->cpu_quota_us > 0 && l->cpu_quota_us < CG_CPU_QUOTA_MIN)
		return uk_err(err, EINVAL, "cpu_quota_us %" PRId64 " is below the kernel's minimum %d",
			      l->cpu_quota_us, CG_CPU_QUOTA_MIN);
	if (l->cpu_quota_us > CG_CPU_QUOTA_MAX)
		return uk_err(err, EINVAL, "cpu_quota_us %" PRId64 " is above the kernel's maximum %" PRId64,
			      l->cpu_quota_us, CG_CPU_QUOTA_MAX);
	return 0;
}

static uint64_t clamp_shares(uint64_t shares)
{
	if (shares == 0)
		return CG_SHARES_DEFAULT;
	return shares < CG_SHARES_MIN ? CG_SHARES_MIN : shares > CG_SHARES_MAX ? CG_SHARES_MAX : shares;
}

static int set_limits(const struct cg_system *s, const char *path, const struct cg_limits *l,
		      uk_error *err)
{
	int64_t period;
	int r = check_limits(l, &period, err);
	if (r < 0)
		return r;
	char mem[32], quota[32], per[32], cpu_max[64], shares[32];
	snprintf(per, sizeof(per), "%" PRId64, period);
	if (s->version == CG_V2) {
		if (l->memory_bytes > 0)
			snprintf(mem, sizeof(mem), "%" PRId64, l->memory_bytes);
		else
			strcpy(mem, "max");
		if (l->cpu_quota_us > 0)
			snprintf(cpu_max, sizeof(cpu_max), "%" PRId64 " %s", l->cpu_quota_us, per);
		else
			snprintf(cpu_max, sizeof(cpu_max), "max %s", per);
		snprintf(shares, sizeof(shares), "%" PRIu64,
			 l->cpu_shares ? cg_shares_to_weight(l->cpu_shares) : (uint64_t)CG_WEIGHT_DEFAULT);
		if ((r = write_at(s->root, path, "memory.max", mem, err)) < 0 ||
		    (r = write_at(s->root, path, "cpu.max", cpu_max, err)) < 0 ||
		    (r = write_at(s->root, path, "cpu.weight", shares, err)) < 0)
			return r;
		return 0;
	}
	snprintf(mem, sizeof(mem), "%" PRId64, l->memory_bytes > 0 ? l->memory_bytes : -1);
	snprintf(quota, sizeof(quota), "%" PRId64, l->cpu_quota_us > 0 ? l->cpu_quota_us : -1);
	snprintf(shares, sizeof(shares), "%" PRIu64, clamp_shares(l->cpu_shares));
	if ((r = write_at(s->memory, path, "memory.limit_in_bytes", mem, err)) < 0 ||
	    (r = write_at(s->cpu, path, "cpu.shares", shares, err)) < 0)
		return r;
	/* The kernel checks quota/period against the parent at each write, so the order
	 * matters: lift the quota before changing the period; otherwise period first, and
	 * if that is refused for the old quota, quota first (as runc does). */
	if (l->cpu_quota_us <= 0) {
		if ((r = write_at(s->cpu, path, "cpu.cfs_quota_us", quota, err)) < 0 ||
		    (r = write_at(s->cpu, path, "cpu.cfs_period_us", per, err)) < 0)
			return r;
		return 0;
	}
	r = write_at(s->cpu, path, "cpu.cfs_period_us", per, err);
	if (r == -EINVAL) {
		if ((r = write_at(s->cpu, path, "cpu.cfs_quota_us", quota, err)) < 0 ||
		    (r = write_at(s->cpu, path, "cpu.cfs_period_us", per, err)) < 0)
			return r;
		return 0;
	}
	if (r < 0)
		return r;
	return write_at(s->cpu, path, "cpu.cfs_quota_us", quota, err);
}

int cg_create(const struct cg_system *s, const char *path, const struct cg_limits *l, uk_error *err)
{
	int r = check_usable(s, path, err);
	if (r < 0)
		return r;
	int64_t period;
	if ((r = check_limits(l, &period, err)) < 0)
		return r;
	const char *h[CG_PROCS_MAX];
	size_t n = hierarchies(s, h);
	for (size_t i = 0; i < n; i++)
		if ((r = mkdir_below(h[i], path, s->version == CG_V2, err)) < 0)
			return r;
	r = set_limits(s, path, l, err);
	if (r < 0) {
		/* Do not leave a half-configured cgroup behind; the error stays the first one. */
		for (size_t i = 0; i < n; i++) {
			char dir[PATH_MAX];
			if (path_join(dir, h[i], path, "", NULL) == 0)
				(void)rmdir(dir);
		}
	}
	return r;
}

int cg_update(const struct cg_system *s, const char *path, const struct cg_limits *l, uk_error *err)
{
	int r = check_usable(s, path, err);
	if (r < 0)
		return r;
	const char *h[CG_PROCS_MAX];
	size_t n = hierarchies(s, h);
	for (size_t i = 0; i < n; i++) {
		char dir[PATH_MAX];
		struct stat st;
		if ((r = path_join(dir, h[i], path, "", err)) < 0)
			return r;
		if (stat(dir, &st) < 0)
			return uk_err_errno(err, errno, "cgroup %s", dir);
	}
	return set_limits(s, path, l, err);
}

/* ---- joining ---- */

int cg_procs_files(const struct cg_system *s, const char *path, char files[][PATH_MAX], size_t max,
		   size_t *n, uk_error *err)
{
	*n = 0;
	int r = check_usable(s, path, err);
	if (r < 0)
		return r;
	const char *h[CG_PROCS_MAX];
	size_t k = hierarchies(s, h);
	if (k > max)
		return uk_err(err, ENOSPC, "%zu cgroup.procs files, room for %zu", k, max);
	for (size_t i = 0; i < k; i++)
		if ((r = path_join(files[i], h[i], path, "cgroup.procs", err)) < 0)
			return r;
	*n = k;
	return 0;
}

/* ---- stats ---- */

/* v1 shows "no limit" as the page counter's maximum, rounded to pages: 2^63 - 4096 on x86. */
#define V1_UNLIMITED (UINT64_C(1) << 62)

int cg_read_stats(const struct cg_system *s, const char *path, struct cg_stats *st, uk_error *err)
{
	memset(st, 0, sizeof(*st));
	int r = check_usable(s, path, err);
	if (r < 0)
		return r;
	bool v2 = s->version == CG_V2;
	const char *mdir = v2 ? s->root : s->memory;
	_cleanup_free_ char *mstat = NULL, *oom = NULL;
	uint64_t usage, limit;

	if (v2) {
		_cleanup_free_ char *cstat = NULL;
		if ((r = read_at(s->root, path, "cpu.stat", STAT_MAX, &cstat, err)) < 0)
			return r;
		if (cg_parse_cpu_stat(cstat, &st->cpu_usage_ns) < 0)
			return uk_err(err, EINVAL, "%s/%s/cpu.stat: no valid usage_usec", s->root, path);
	} else if ((r = read_value_at(s->cpuacct, path, "cpuacct.usage", &st->cpu_usage_ns, err)) < 0) {
		return r;
	}

	if ((r = read_value_at(mdir, path, v2 ? "memory.current" : "memory.usage_in_bytes", &usage, err)) < 0 ||
	    (r = read_value_at(mdir, path, v2 ? "memory.max" : "memory.limit_in_bytes", &limit, err)) < 0 ||
	    (r = read_at(mdir, path, "memory.stat", STAT_MAX, &mstat, err)) < 0)
		return r;
	st->memory_limit_bytes = limit == UINT64_MAX || (!v2 && limit >= V1_UNLIMITED) ? 0 : limit;
	if (cg_parse_memory_stat(mstat, s->version, usage, st) < 0)
		return uk_err(err, EINVAL, "%s/%s/memory.stat: malformed value", mdir, path);

	/* Both files carry "oom_kill N": processes of this cgroup killed by an OOM killer,
	 * the cgroup's own or the global one. v1 has the line since Linux 4.13. */
	const char *ofile = v2 ? "memory.events" : "memory.oom_control";
	if ((r = read_at(mdir, path, ofile, STAT_MAX, &oom, err)) < 0)
		return r;
	r = cg_parse_flat_keyed(oom, "oom_kill", &st->oom_kills);
	if (r == -EINVAL || (r == -ENOENT && v2))
		return uk_err(err, EINVAL, "%s/%s/%s: no valid oom_kill line", mdir, path, ofile);
	st->oom_kills_known = r == 0;
	if (r < 0)
		st->oom_kills = 0;
	return 0;
}

/* ---- removal ---- */

int cg_remove(const struct cg_system *s, const char *path, uk_error *err)
{
	if (!s || s->version == CG_NONE)
		return 0;
	int r = check_rel(path, err), first = 0;
	if (r < 0)
		return r;
	const char *h[CG_PROCS_MAX];
	size_t n = hierarchies(s, h);
	/* Every hierarchy is tried, so one busy hierarchy does not leave the others behind. */
	for (size_t i = 0; i < n; i++) {
		char dir[PATH_MAX];
		if ((r = path_join(dir, h[i], path, "", err)) < 0)
			return r;
		if (rmdir(dir) == 0 || errno == ENOENT || first)
			continue;
		if (errno == EBUSY)
			first = uk_err(err, EBUSY, "rmdir %s: processes or child cgroups remain", dir);
		else
			first = uk_err_errno(err, errno, "rmdir %s", dir);
	}
	return first;
}
