/* The config file and the flags that override it. Parsing is inih's; each value is
 * checked here against one table, which also gives the flags their names. */
#include <arpa/inet.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "../common/util.h"
#include "../delegate/route.h"
#include "../net/net.h"
#include "config.h"

enum kind {
	K_PATH,   /* char *; absolute in the file */
	K_UINT,   /* unsigned within min..max */
	K_MODE,   /* unsigned, octal permission bits */
	K_CHOICE, /* char *, one of choices */
	K_LEVEL,  /* enum uk_log_level */
	K_CIDR,   /* char *, an IPv4 CIDR */
	K_IFNAME, /* char *, a network interface name */
	K_PATHS,  /* char *, absolute paths separated by ':' */
	K_HOSTS,  /* char **, HOST[:PORT] entries; a comma-separated list in the file */
	K_ENDPOINT, /* char *, unix:///PATH or /PATH; empty: NULL (the delegate is off) */
	K_HANDLERS, /* char **, runtime handler names; a comma-separated list in the file */
	K_IP,       /* char *, an IPv4 or IPv6 address literal */
};

struct key {
	const char *section, *name, *flag;
	enum kind kind;
	size_t off;
	unsigned min, max;
	const char *unit;            /* K_UINT: what the number counts */
	const char *const *choices;  /* K_CHOICE: NULL-terminated */
	bool live;                   /* a reload applies it to the running daemon */
};

static const char *const accels[] = { "auto", "kvm", "tcg", NULL };
static const char *const net_modes[] = { "bridge", "cni", "none", NULL };
static const char *const delegate_sides[] = { "delegate", "unikd", NULL };
static const char *const sections[] = { "daemon", "vm", "network", "registries", "delegate", "stream", "pool" };

#define KEY(sec, nm, fl, kd, field, ...)                                                            \
	{ .section = sec, .name = nm, .flag = fl, .kind = kd, .off = offsetof(struct unikd_config, field), \
	  __VA_ARGS__ }
static const struct key keys[] = {
	KEY("daemon", "socket", "socket", K_PATH, socket),
	KEY("daemon", "socket_mode", "socket-mode", K_MODE, socket_mode),
	KEY("daemon", "state_dir", "state-dir", K_PATH, state_dir),
	KEY("daemon", "run_dir", "run-dir", K_PATH, run_dir),
	KEY("daemon", "workers", "workers", K_UINT, workers, .min = 1, .max = 64, .unit = "workers"),
	KEY("daemon", "read_workers", "read-workers", K_UINT, read_workers, .min = 1, .max = 64, .unit = "workers"),
	KEY("daemon", "image_workers", "image-workers", K_UINT, image_workers, .min = 1, .max = 64, .unit = "workers"),
	KEY("daemon", "max_connections", "max-connections", K_UINT, max_connections, .min = 1, .max = 65536,
	    .unit = "connections"),
	KEY("daemon", "connection_idle_timeout", "connection-idle-timeout", K_UINT, idle_timeout_s, .min = 1,
	    .max = 86400, .unit = "seconds"),
	KEY("daemon", "log_level", "log-level", K_LEVEL, log_level, .live = true),
	KEY("vm", "vmwrapper", "vmwrapper", K_PATH, vmwrapper),
	KEY("vm", "qemu", "qemu", K_PATH, qemu),
	KEY("vm", "memory", "default-memory", K_UINT, memory_mib, .min = 16, .max = 1024 * 1024, .unit = "MiB",
	    .live = true),
	KEY("vm", "vcpus", "default-vcpus", K_UINT, vcpus, .min = 1, .max = 256, .unit = "vCPUs", .live = true),
	KEY("vm", "accel", "accel", K_CHOICE, accel, .choices = accels, .live = true),
	KEY("vm", "memory_overhead", "memory-overhead", K_UINT, overhead_mib, .min = 0, .max = 65536, .unit = "MiB"),
	KEY("vm", "cgroup_root", "cgroup-root", K_PATH, cgroup_root),
	KEY("network", "mode", "network", K_CHOICE, network, .choices = net_modes),
	KEY("network", "bridge", "bridge", K_IFNAME, bridge),
	KEY("network", "pod_cidr", "pod-cidr", K_CIDR, pod_cidr),
	KEY("network", "dnsmasq", "dnsmasq", K_PATH, dnsmasq),
	KEY("network", "cni_conf_dir", "cni-conf-dir", K_PATH, cni_conf_dir),
	KEY("network", "cni_bin_dirs", "cni-bin-dirs", K_PATHS, cni_bin_dirs),
	KEY("network", "cni_timeout", "cni-timeout", K_UINT, cni_timeout_s, .min = 1, .max = 3600, .unit = "seconds"),
	KEY("registries", "insecure", "insecure-registry", K_HOSTS, insecure, .live = true),
	/* The delegate's client and routing are built at start-up: all three need a restart. */
	KEY("delegate", "endpoint", "delegate-endpoint", K_ENDPOINT, delegate_endpoint),
	KEY("delegate", "handlers", "delegate-handlers", K_HANDLERS, delegate_handlers),
	KEY("delegate", "default", "delegate-default", K_CHOICE, delegate_default, .choices = delegate_sides),
	/* The streaming server (Attach, PortForward) listens from start-up: both need a restart. */
	KEY("stream", "address", "stream-address", K_IP, stream_address),
	KEY("stream", "port", "stream-port", K_UINT, stream_port, .min = 0, .max = 65535, .unit = "port"),
	KEY("stream", "url_timeout", "stream-url-timeout", K_UINT, stream_url_timeout_s, .min = 1, .max = 3600,
	    .unit = "seconds"),
	KEY("stream", "idle_timeout", "stream-idle-timeout", K_UINT, stream_idle_timeout_s, .min = 1, .max = 86400,
	    .unit = "seconds"),
	/* The warm pool (issue 18; docs/performance.md, "The warm pool"): off while size is 0. Its
	 * thread starts with the daemon: all need a restart. */
	KEY("pool", "size", "pool-size", K_UINT, pool_size, .min = 0, .max = 64, .unit = "VMs per key"),
	KEY("pool", "total", "pool-total", K_UINT, pool_total, .min = 1, .max = 4096, .unit = "VMs"),
	KEY("pool", "memory", "pool-memory", K_UINT, pool_memory_mib, .min = 16, .max = 16 * 1024 * 1024,
	    .unit = "MiB"),
	KEY("pool", "idle_timeout", "pool-idle-timeout", K_UINT, pool_idle_timeout_s, .min = 0, .max = 30 * 86400,
	    .unit = "seconds"),
	KEY("pool", "starting", "pool-starting", K_UINT, pool_starting, .min = 1, .max = 64, .unit = "VMs"),
};
#undef KEY
#define N_KEYS ARRAY_SIZE(keys)

static char **str_at(struct unikd_config *c, const struct key *k)
{
	return (char **)((char *)c + k->off);
}
static unsigned *uint_at(struct unikd_config *c, const struct key *k)
{
	return (unsigned *)((char *)c + k->off);
}
static char ***strv_at(struct unikd_config *c, const struct key *k)
{
	return (char ***)((char *)c + k->off);
}
/* A list key: a comma-separated list in the file, a repeatable flag. */
static bool is_list(const struct key *k)
{
	return k->kind == K_HOSTS || k->kind == K_HANDLERS;
}
/* Empty a list key's list: a list in the file, or flags given at all, replace the list before. */
static void clear_list(struct unikd_config *c, const struct key *k)
{
	char ***l = strv_at(c, k);
	for (char **h = *l; *h; h++)
		free(*h);
	(*l)[0] = NULL;
}

int config_init(struct unikd_config *c)
{
	*c = (struct unikd_config){
		.socket_mode = 0660, .workers = 16, .read_workers = 4, .image_workers = 4, .max_connections = 256,
		.idle_timeout_s = 120, .log_level = UK_LOG_INFO,
		.memory_mib = 64, .vcpus = 1, .overhead_mib = 64,
		.state_dir = strdup(CONFIG_DEFAULT_STATE_DIR), .run_dir = strdup(CONFIG_DEFAULT_RUN_DIR),
		.accel = strdup("auto"), .network = strdup("bridge"), .bridge = strdup(NET_DEFAULT_BRIDGE),
		.pod_cidr = strdup(NET_DEFAULT_CIDR), .dnsmasq = strdup(CONFIG_DEFAULT_DNSMASQ),
		.cni_conf_dir = strdup(CONFIG_DEFAULT_CNI_CONF_DIR), .cni_bin_dirs = strdup(CONFIG_DEFAULT_CNI_BIN_DIRS),
		.cni_timeout_s = CONFIG_DEFAULT_CNI_TIMEOUT_S,
		.insecure = calloc(1, sizeof(char *)),
		.delegate_handlers = calloc(2, sizeof(char *)), .delegate_default = strdup("delegate"),
		.stream_address = strdup("127.0.0.1"), .stream_url_timeout_s = 60,
		.stream_idle_timeout_s = 14400,
		.pool_total = 16, .pool_memory_mib = 1024, .pool_idle_timeout_s = 600, .pool_starting = 1,
	};
	if (c->delegate_handlers)
		c->delegate_handlers[0] = strdup("unikd");
	if (!c->state_dir || !c->run_dir || !c->accel || !c->network || !c->bridge || !c->pod_cidr ||
	    !c->dnsmasq || !c->cni_conf_dir || !c->cni_bin_dirs || !c->insecure || !c->delegate_handlers ||
	    !c->delegate_handlers[0] || !c->delegate_default || !c->stream_address) {
		config_done(c);
		return -ENOMEM;
	}
	return 0;
}

void config_done(struct unikd_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < N_KEYS; i++) {
		if (is_list(&keys[i]))
			strv_free(*strv_at(c, &keys[i]));
		else if (keys[i].kind != K_UINT && keys[i].kind != K_MODE && keys[i].kind != K_LEVEL)
			free(*str_at(c, &keys[i]));
	}
	*c = (struct unikd_config){ 0 };
}

static const struct key *find_key(const char *section, const char *name)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

static const struct key *find_flag(const char *flag)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (strcmp(keys[i].flag, flag) == 0)
			return &keys[i];
	return NULL;
}

bool config_is_flag(const char *name)
{
	return find_flag(name) != NULL;
}

static int set_str(char **dst, const char *v, uk_error *err)
{
	char *s = strdup(v);
	if (!s)
		return uk_err(err, ENOMEM, "out of memory");
	free(*dst);
	*dst = s;
	return 0;
}

static bool ifname_ok(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n >= IFNAMSIZ || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

/* A list entry without the blanks around it. */
static char *trim(char *h)
{
	h += strspn(h, " \t");
	size_t len = strlen(h);
	while (len > 0 && (h[len - 1] == ' ' || h[len - 1] == '\t'))
		h[--len] = '\0';
	return h;
}

static size_t strv_length(char *const *v)
{
	size_t n = 0;
	while (v[n])
		n++;
	return n;
}

/* Append a copy of s to the NULL-terminated *list of n entries. */
static int strv_append(char ***list, size_t *n, const char *s, uk_error *err)
{
	char **nl = realloc(*list, (*n + 2) * sizeof(char *));
	if (!nl)
		return uk_err(err, ENOMEM, "out of memory");
	*list = nl;
	if (!(nl[*n] = strdup(s)))
		return uk_err(err, ENOMEM, "out of memory");
	nl[++*n] = NULL;
	return 0;
}

/* Append the comma-separated entries of v to the list key k's list: HOST[:PORT] entries,
 * or runtime handler names, which the delegate's own rules check as a whole list. An empty
 * value is an empty list; an empty entry is an error. A handler list never grows past
 * DELEGATE_MAX_HANDLERS + 1. */
static int add_entries(struct unikd_config *c, const struct key *k, const char *v, uk_error *err)
{
	char ***list = strv_at(c, k);
	_cleanup_free_ char *copy = strdup(v);
	if (!copy)
		return uk_err(err, ENOMEM, "out of memory");
	size_t n = strv_length(*list);
	char *rest = copy;
	int r;
	for (char *h = *v ? strsep(&rest, ",") : NULL; h; h = strsep(&rest, ",")) {
		h = trim(h);
		if (k->kind == K_HOSTS && !*h)
			return uk_err(err, EINVAL, "an empty entry in \"%s\": give HOST or HOST:PORT, comma-separated", v);
		if (k->kind == K_HOSTS && (strpbrk(h, "/ \t@") || strlen(h) > 255))
			return uk_err(err, EINVAL, "\"%s\" is not HOST or HOST:PORT", h);
		if ((r = strv_append(list, &n, h, err)) < 0)
			return r;
		if (k->kind == K_HANDLERS && n > DELEGATE_MAX_HANDLERS)
			break; /* one too many: the check refuses it */
	}
	if (k->kind != K_HANDLERS)
		return 0;
	struct delegate_config dc = { .handlers = (const char *const *)*list, .n_handlers = n };
	return delegate_config_check(&dc, err);
}

/* unix:///PATH or /PATH; empty turns the delegate off. The path must fit a unix socket's
 * address. Messages name the key, even after a flag. */
static int set_endpoint(char **dst, const char *v, uk_error *err)
{
	const char *path = strncmp(v, "unix://", 7) == 0 ? v + 7 : v;
	if (!*v) {
		free(*dst);
		*dst = NULL;
		return 0;
	}
	if (path[0] != '/')
		return uk_err(err, EINVAL, "[delegate] endpoint: \"%s\" is not unix:///ABSOLUTE/PATH or an absolute path",
			      v);
	if (strlen(path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
		return uk_err(err, ENAMETOOLONG, "[delegate] endpoint: the socket path is longer than %zu bytes",
			      sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1);
	return set_str(dst, v, err);
}

const char *config_delegate_socket(const struct unikd_config *c)
{
	const char *e = c->delegate_endpoint;
	if (!e || !*e)
		return NULL;
	return strncmp(e, "unix://", 7) == 0 ? e + 7 : e;
}

/* A list of absolute directories separated by ':', none empty: relative ones would depend
 * on the directory unikd starts in. */
static int set_paths(char **dst, const char *v, uk_error *err)
{
	if (strlen(v) >= PATH_MAX)
		return uk_err(err, ENAMETOOLONG, "the list is longer than %d bytes", PATH_MAX - 1);
	for (const char *p = v;; p++) {
		if (*p != '/')
			return uk_err(err, EINVAL, "\"%s\" is not a list of absolute paths separated by ':'", v);
		p = strchr(p, ':');
		if (!p)
			break;
	}
	return set_str(dst, v, err);
}

/* Check v and store it; messages say what is wrong with the value, the caller says where. */
static int set_value(struct unikd_config *c, const struct key *k, const char *v, bool from_file, uk_error *err)
{
	uint64_t n;
	int r;
	switch (k->kind) {
	case K_PATH:
		if (!*v)
			return uk_err(err, EINVAL, "the path is empty");
		if (strlen(v) >= PATH_MAX)
			return uk_err(err, ENAMETOOLONG, "the path is longer than %d bytes", PATH_MAX - 1);
		/* A relative path in a file would depend on the directory unikd happens to start in. */
		if (from_file && v[0] != '/')
			return uk_err(err, EINVAL, "\"%s\" is not an absolute path", v);
		return set_str(str_at(c, k), v, err);
	case K_UINT:
		r = uk_parse_u64(v, k->min, k->max, &n);
		if (r == -ERANGE)
			return uk_err(err, ERANGE, "\"%s\" is out of range: %u..%u %s", v, k->min, k->max, k->unit);
		if (r < 0)
			return uk_err(err, EINVAL, "\"%s\" is not a number of %s", v, k->unit);
		*uint_at(c, k) = (unsigned)n;
		return 0;
	case K_MODE: {
		char *end;
		unsigned long m = *v ? strtoul(v, &end, 8) : 0;
		if (!*v || *end || strspn(v, "01234567") != strlen(v) || m > 0777)
			return uk_err(err, EINVAL, "\"%s\" is not an octal mode like 0660", v);
		*uint_at(c, k) = (unsigned)m;
		return 0;
	}
	case K_CHOICE:
		for (const char *const *ch = k->choices; *ch; ch++)
			if (strcmp(v, *ch) == 0)
				return set_str(str_at(c, k), v, err);
	{
		char list[128] = "";
		for (const char *const *ch = k->choices; *ch; ch++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", *list ? ", " : "", *ch);
		return uk_err(err, EINVAL, "\"%s\" is not one of %s", v, list);
	}
	case K_LEVEL: {
		enum uk_log_level l;
		if (uk_log_parse_level(v, &l) < 0)
			return uk_err(err, EINVAL, "\"%s\" is not one of error, warn, info, debug", v);
		c->log_level = l;
		return 0;
	}
	case K_CIDR: {
		struct net_cidr cidr;
		if ((r = net_cidr_parse(v, &cidr, err)) < 0)
			return r;
		return set_str(str_at(c, k), v, err);
	}
	case K_IFNAME:
		if (!ifname_ok(v))
			return uk_err(err, EINVAL, "\"%s\" is not an interface name: 1..%d characters of [A-Za-z0-9_.-]",
				      v, IFNAMSIZ - 1);
		return set_str(str_at(c, k), v, err);
	case K_HOSTS:
	case K_HANDLERS:
		return add_entries(c, k, v, err);
	case K_PATHS:
		return set_paths(str_at(c, k), v, err);
	case K_ENDPOINT:
		return set_endpoint(str_at(c, k), v, err);
	case K_IP: {
		unsigned char addr[sizeof(struct in6_addr)];
		if (inet_pton(strchr(v, ':') ? AF_INET6 : AF_INET, v, addr) != 1)
			return uk_err(err, EINVAL, "\"%s\" is not an IPv4 or IPv6 address", v);
		return set_str(str_at(c, k), v, err);
	}
	}
	return uk_err(err, EINVAL, "unknown kind of setting");
}

/* ---- the file ---- */

struct parse {
	struct unikd_config *c;
	FILE *f;
	const char *name;
	uk_error *err;
	int line;      /* inih counts one line per reader call too */
	int err_line;  /* the first error's line, 0 while there is none */
	int seen[N_KEYS];
};

static void _printf_(2, 3) fail(struct parse *p, const char *fmt, ...)
{
	if (p->err_line)
		return; /* the first error is the one to fix */
	char msg[UK_ERROR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	uk_err(p->err, EINVAL, "%s:%d: %s", p->name, p->line, msg);
	p->err_line = p->line;
}

static bool known_section(const char *s, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(sections); i++)
		if (strlen(sections[i]) == len && strncmp(sections[i], s, len) == 0)
			return true;
	return false;
}

/* inih calls the handler for keys only, so an empty unknown section would pass unseen:
 * section headers are checked as the lines go by. */
static char *reader(char *str, int num, void *stream)
{
	struct parse *p = stream;
	if (!fgets(str, num, p->f))
		return NULL;
	p->line++;
	size_t len = strlen(str);
	if (len > 0 && str[len - 1] != '\n') {
		int ch = getc(p->f);
		if (ch != EOF && ch != '\n') {
			while (ch != EOF && ch != '\n')
				ch = getc(p->f);
			fail(p, "the line is longer than %d characters", num - 1);
			str[0] = '\0';
			return str;
		}
	}
	/* Without its indentation a line is never taken for the continuation of the previous value. */
	size_t skip = strspn(str, " \t");
	memmove(str, str + skip, strlen(str + skip) + 1);
	if (str[0] == '[') {
		char *end = strchr(str, ']');
		if (end && !known_section(str + 1, (size_t)(end - str - 1)))
			fail(p, "unknown section %.*s (known: [daemon], [vm], [network], [registries], [delegate], [stream], [pool])",
			     (int)(end - str + 1), str);
	}
	return str;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse *p = user;
	uk_error e = { 0 };
	if (p->err_line)
		return 1;
	if (!*section) {
		fail(p, "%s: a key before any section; put it under [daemon], [vm], [network], [registries], "
			"[delegate], [stream] or [pool]", name);
		return 1;
	}
	const struct key *k = find_key(section, name);
	if (!k) {
		for (size_t i = 0; i < N_KEYS; i++)
			if (strcmp(keys[i].name, name) == 0) {
				fail(p, "[%s] %s: unknown key; %s belongs in [%s]", section, name, name, keys[i].section);
				return 1;
			}
		char known[512] = "";
		for (size_t i = 0; i < N_KEYS; i++)
			if (strcmp(keys[i].section, section) == 0)
				snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s", *known ? ", " : "",
					 keys[i].name);
		fail(p, "[%s] %s: unknown key (known in [%s]: %s)", section, name, section, known);
		return 1;
	}
	size_t i = (size_t)(k - keys);
	if (p->seen[i]) {
		fail(p, "[%s] %s: set twice (first on line %d)", section, name, p->seen[i]);
		return 1;
	}
	p->seen[i] = p->line;
	if (is_list(k))
		clear_list(p->c, k); /* the file's list replaces the default one */
	if (set_value(p->c, k, value, true, &e) < 0) {
		char where[64];
		snprintf(where, sizeof(where), "[%s] %s: ", section, name);
		/* The delegate's messages name their key already, for the flags' sake. */
		fail(p, "%s%s", strncmp(e.msg, where, strlen(where)) == 0 ? "" : where, e.msg);
	}
	return 1;
}

int config_load_stream(struct unikd_config *c, FILE *f, const char *name, uk_error *err)
{
	struct parse p = { .c = c, .f = f, .name = name, .err = err };
	int r = ini_parse_stream(reader, &p, handler, &p);
	if (r == -2)
		return uk_err(err, ENOMEM, "%s: out of memory", name);
	if (r < 0)
		return uk_err(err, EIO, "%s: cannot be read", name);
	/* r is the first line inih could not parse: the handler returns success even for a bad value. */
	if (r > 0 && (!p.err_line || r < p.err_line)) {
		p.err_line = 0;
		p.line = r;
		fail(&p, "expected [section], key = value, or a comment starting with ; or #");
	}
	if (ferror(f))
		return uk_err_errno(err, EIO, "%s: read failed", name);
	return p.err_line ? -EINVAL : 0;
}

int config_load_string(struct unikd_config *c, const char *text, const char *name, uk_error *err)
{
	if (!*text)
		return 0;
	_cleanup_fclose_ FILE *f = fmemopen((void *)text, strlen(text), "r");
	if (!f)
		return uk_err_errno(err, errno, "%s", name);
	return config_load_stream(c, f, name, err);
}

int config_load(struct unikd_config *c, const char *path, bool must_exist, uk_error *err)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	struct stat st;
	if (!f) {
		if (errno == ENOENT && !must_exist)
			return 0;
		return uk_err_errno(err, errno, "cannot open the config file %s", path);
	}
	if (fstat(fileno(f), &st) < 0)
		return uk_err_errno(err, errno, "%s", path);
	if (!S_ISREG(st.st_mode))
		return uk_err(err, EINVAL, "the config file %s is not a regular file", path);
	int r = config_load_stream(c, f, path, err);
	return r < 0 ? r : 1;
}

int config_apply_flags(struct unikd_config *c, const struct config_flag *flags, size_t n, uk_error *err)
{
	bool replaced[N_KEYS] = { 0 };
	for (size_t i = 0; i < n; i++) {
		const struct key *k = find_flag(flags[i].name);
		uk_error e = { 0 };
		if (!k)
			return uk_err(err, EINVAL, "--%s is not a setting", flags[i].name);
		size_t ki = (size_t)(k - keys);
		if (is_list(k) && !replaced[ki]) {
			clear_list(c, k);
			replaced[ki] = true;
		}
		if (set_value(c, k, flags[i].value, false, &e) < 0)
			return uk_err(err, e.code, "--%s: %s", flags[i].name, e.msg);
	}
	return 0;
}

/* cwd/p, with "." and empty components dropped; ".." stays, as symlinks could make it mean
 * something else than the lexical parent. */
static int make_absolute(char **p, const char *cwd, uk_error *err)
{
	if (!*p)
		return 0;
	_cleanup_free_ char *joined = NULL;
	if (asprintf(&joined, "%s/%s", (*p)[0] == '/' ? "" : cwd, *p) < 0)
		return uk_err(err, ENOMEM, "out of memory");
	char *out = malloc(strlen(joined) + 2), *o = out, *save = NULL;
	if (!out)
		return uk_err(err, ENOMEM, "out of memory");
	for (char *s = strtok_r(joined, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
		if (strcmp(s, ".") == 0)
			continue;
		o += sprintf(o, "/%s", s);
	}
	if (o == out)
		strcpy(out, "/");
	if (strlen(out) >= PATH_MAX) {
		free(out);
		return uk_err(err, ENAMETOOLONG, "%s is longer than %d bytes", *p, PATH_MAX - 1);
	}
	free(*p);
	*p = out;
	return 0;
}

int config_finish(struct unikd_config *c, uk_error *err)
{
	char cwd[PATH_MAX];
	int r;
	if (!getcwd(cwd, sizeof(cwd)))
		return uk_err_errno(err, errno, "cannot find the working directory");
	if (!c->socket && asprintf(&c->socket, "%s/unikd.sock", c->run_dir) < 0) {
		c->socket = NULL;
		return uk_err(err, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < N_KEYS; i++)
		if (keys[i].kind == K_PATH && (r = make_absolute(str_at(c, &keys[i]), cwd, err)) < 0)
			return uk_err_ctx_r(err, r, "--%s", keys[i].flag);
	return 0;
}

/* One key's value as text, for comparisons and the debug line. */
static char *format_value(const struct unikd_config *cc, const struct key *k)
{
	struct unikd_config *c = (struct unikd_config *)cc;
	char *s = NULL;
	int r = 0;
	switch (k->kind) {
	case K_UINT: r = asprintf(&s, "%u", *uint_at(c, k)); break;
	case K_MODE: r = asprintf(&s, "%04o", *uint_at(c, k)); break;
	case K_LEVEL: r = asprintf(&s, "%s", uk_log_level_name(c->log_level)); break;
	case K_HOSTS:
	case K_HANDLERS: {
		size_t len = 1;
		for (char **h = *strv_at(c, k); h && *h; h++)
			len += strlen(*h) + 1;
		if (!(s = calloc(1, len)))
			return NULL;
		for (char **h = *strv_at(c, k); h && *h; h++)
			sprintf(s + strlen(s), "%s%s", *s ? "," : "", *h);
		return s;
	}
	default: r = asprintf(&s, "%s", *str_at(c, k) ? *str_at(c, k) : ""); break;
	}
	return r < 0 ? NULL : s;
}

/* Append " word" (or "word" to an empty string). */
static int append(char **buf, const char *word)
{
	char *n = NULL;
	if (asprintf(&n, "%s%s%s", *buf ? *buf : "", *buf && **buf ? " " : "", word) < 0)
		return -ENOMEM;
	free(*buf);
	*buf = n;
	return 0;
}

int config_diff(const struct unikd_config *a, const struct unikd_config *b, char **live, char **restart)
{
	_cleanup_free_ char *l = strdup(""), *rs = strdup("");
	if (!l || !rs)
		return -ENOMEM;
	for (size_t i = 0; i < N_KEYS; i++) {
		_cleanup_free_ char *va = format_value(a, &keys[i]), *vb = format_value(b, &keys[i]), *name = NULL;
		if (!va || !vb || asprintf(&name, "%s.%s", keys[i].section, keys[i].name) < 0)
			return -ENOMEM;
		if (strcmp(va, vb) != 0 && append(keys[i].live ? &l : &rs, name) < 0)
			return -ENOMEM;
	}
	*live = TAKE_PTR(l);
	*restart = TAKE_PTR(rs);
	return 0;
}

char *config_describe(const struct unikd_config *c)
{
	_cleanup_free_ char *out = strdup("");
	if (!out)
		return NULL;
	for (size_t i = 0; i < N_KEYS; i++) {
		_cleanup_free_ char *v = format_value(c, &keys[i]), *kv = NULL;
		if (!v)
			return NULL;
		bool quote = !*v || strpbrk(v, " \"");
		if (asprintf(&kv, "%s.%s=%s%s%s", keys[i].section, keys[i].name, quote ? "\"" : "", v,
				   quote ? "\"" : "") < 0)
			return NULL;
		if (append(&out, kv) < 0)
			return NULL;
	}
	return TAKE_PTR(out);
}
