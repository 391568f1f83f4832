/* The DHCP server of a bridge: one dnsmasq per bridge, static leases only, started and
 * adopted by unikd, outliving it. See README.md for the files and the argv. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/spawn.h"
#include "../common/util.h"
#include "net.h"

#define DNSMASQ_DEFAULT_BINARY "/usr/sbin/dnsmasq"
#define DNSMASQ_USER "nobody"
#define MAX_RANGES 64
#define MAX_DNS_SERVERS 16
#define MAX_DNS_SEARCHES 32
/* dnsmasq reads its dynamic files with a line buffer of MAXDNAME (1025) bytes. */
#define DNSMASQ_LINE_MAX 1000
#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 5000
#define CMDLINE_MAX (64 * 1024)
#define LEASES_MAX (4 * 1024 * 1024)
#define HOSTFILE_MAX 4096
#define RECORD_MAX 65536
#define TAG_PREFIX "uk-"
/* Removed hosts dnsmasq still has in memory (see "stale hosts"). */
#define STALE_MAX DNSMASQ_STALE_MAX
#define HOSTS_MAX (1 << 16) /* a /16's addresses */

struct stale_host {
	char id[UK_ID_MAX + 1];
	char mac[18];
	uint32_t ip;
};

struct dnsmasq {
	pthread_mutex_t lock;
	char *bridge;
	char *dir; /* absolute */
	char *hosts_dir, *opts_dir, *stale_dir, *tmp_dir, *leases, *log, *log_old, *record, *daemon_pidfile;
	uint64_t log_max;
	struct net_cidr *ranges; /* sorted, unique */
	size_t n_ranges;
	char **argv;     /* NULL-terminated */
	int netns_fd;    /* the caller's, for the start only (> 2), else -1 */
	char *cmdline;   /* argv joined with NULs, as /proc/PID/cmdline shows it */
	size_t cmdline_len;
	/* The running dnsmasq, if any. */
	pid_t pid;
	uint64_t start_time;
	int pidfd;
	/* The running dnsmasq's stale hosts (stale.d/); overflow: stale.d/ held more than
	 * STALE_MAX when adopted, so every address counts as stale until the next start. */
	struct stale_host stale[STALE_MAX];
	size_t n_stale;
	bool stale_overflow;
};

/* ---- small helpers ---- */

/* True if the process behind pidfd has ended (a zombie counts as ended). */
static bool pidfd_exited(int pidfd)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };
	for (;;) {
		int r = poll(&p, 1, 0);
		if (r >= 0)
			return r > 0;
		if (errno != EINTR)
			return false;
	}
}


static void ip_str(uint32_t ip, char out[NET_IP_MAX])
{
	net_ip_str(ip, out);
}

static uint32_t prefix_mask(int prefix)
{
	return prefix <= 0 ? 0 : (prefix >= 32 ? 0xffffffffu : 0xffffffffu << (32 - prefix));
}

static bool is_alnum(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* An RFC 1123 label: 1..63 of [A-Za-z0-9-], not starting or ending with '-'. */
static bool label_valid(const char *s, size_t len)
{
	if (len == 0 || len > 63 || s[0] == '-' || s[len - 1] == '-')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

/* dnsmasq reads a dhcp-host field of digits (with an optional s/m/h/d/w suffix) as a lease
 * time, and "infinite" and "ignore" as keywords: such a hostname would change the meaning
 * of the line. */
static bool hostname_ambiguous(const char *s)
{
	if (strcmp(s, "infinite") == 0 || strcmp(s, "ignore") == 0)
		return true;
	size_t len = strlen(s);
	if (len > 1 && strchr("smhdwSMHDW", s[len - 1]))
		len--;
	for (size_t i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* A domain name of RFC 1123 labels, at most 253 characters, one trailing dot allowed;
 * out gets it without the dot. */
static bool domain_valid(const char *s, char out[254])
{
	size_t len = strlen(s);
	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len;) {
		size_t j = i;
		while (j < len && s[j] != '.')
			j++;
		if (!label_valid(s + i, j - i))
			return false;
		i = j + 1;
		if (j < len && i == len) /* "a..b" or a trailing empty label */
			return false;
	}
	memcpy(out, s, len);
	out[len] = '\0';
	return true;
}

/* Paths go into dnsmasq options: keep to characters its parser never splits on. */
static bool path_chars_ok(const char *s)
{
	for (; *s; s++)
		if (!is_alnum(*s) && !strchr("/._-+@", *s))
			return false;
	return true;
}

static int ranges_cmp(const void *a, const void *b)
{
	const struct net_cidr *x = a, *y = b;
	if (x->net != y->net)
		return x->net < y->net ? -1 : 1;
	return x->prefix - y->prefix;
}

/* Read /proc/PID/cmdline; -ESRCH if the process is gone. */
static int read_cmdline(pid_t pid, char **ret, size_t *len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	int r = uk_read_file(path, CMDLINE_MAX, ret, len, NULL);
	return r == -ENOENT ? -ESRCH : r;
}

static bool cmdline_matches(const struct dnsmasq *d, pid_t pid)
{
	_cleanup_free_ char *c = NULL;
	size_t len = 0;
	if (read_cmdline(pid, &c, &len) < 0)
		return false;
	return len == d->cmdline_len && memcmp(c, d->cmdline, len) == 0;
}

/* Whether the process has the argument arg (a dnsmasq serving this directory). */
static bool cmdline_has_arg(pid_t pid, const char *arg)
{
	_cleanup_free_ char *c = NULL;
	size_t len = 0;
	if (read_cmdline(pid, &c, &len) < 0)
		return false;
	for (size_t i = 0; i < len; i += strlen(c + i) + 1)
		if (strcmp(c + i, arg) == 0)
			return true;
	return false;
}

/* ---- argv ---- */

static int strv_push(char ***v, size_t *n, char *s)
{
	if (!s)
		return -ENOMEM;
	char **nv = realloc(*v, (*n + 2) * sizeof(char *));
	if (!nv) {
		free(s);
		return -ENOMEM;
	}
	nv[(*n)++] = s;
	nv[*n] = NULL;
	*v = nv;
	return 0;
}

static int build_argv(struct dnsmasq *d, const char *binary, const char *const *extra)
{
	_cleanup_strv_ char **v = NULL;
	size_t n = 0;
	int r = strv_push(&v, &n, strdup(binary));
	static const char *const fixed[] = {
		"--conf-file=/dev/null", /* never /etc/dnsmasq.conf */
		"--port=0",              /* no DNS service: DHCP only */
		"--no-resolv",
		"--no-hosts",
		"--user=" DNSMASQ_USER,
		"--bind-interfaces",
		"--except-interface=lo",
		"--dhcp-authoritative",
		"--dhcp-no-override",
		"--no-ping",     /* every address is a static reservation */
		"--quiet-dhcp",  /* no line per exchange and renewal; problems are still logged */
	};
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(fixed); i++)
		r = strv_push(&v, &n, strdup(fixed[i]));
	if (r == 0)
		r = strv_push(&v, &n, uk_strf("--interface=%s", d->bridge));
	for (size_t i = 0; r == 0 && i < d->n_ranges; i++) {
		char net[NET_IP_MAX], mask[NET_IP_MAX];
		ip_str(d->ranges[i].net, net);
		ip_str(prefix_mask(d->ranges[i].prefix), mask);
		r = strv_push(&v, &n, uk_strf("--dhcp-range=%s,static,%s", net, mask));
	}
	if (r == 0)
		r = strv_push(&v, &n, uk_strf("--dhcp-hostsdir=%s", d->hosts_dir));
	if (r == 0)
		r = strv_push(&v, &n, uk_strf("--dhcp-optsdir=%s", d->opts_dir));
	if (r == 0)
		r = strv_push(&v, &n, uk_strf("--dhcp-leasefile=%s", d->leases));
	if (r == 0)
		r = strv_push(&v, &n, uk_strf("--log-facility=%s", d->log));
	if (r == 0)
		r = strv_push(&v, &n, uk_strf("--pid-file=%s", d->daemon_pidfile));
	for (size_t i = 0; r == 0 && extra && extra[i]; i++)
		r = strv_push(&v, &n, strdup(extra[i]));
	if (r < 0)
		return r;
	size_t len = 0;
	for (size_t i = 0; i < n; i++)
		len += strlen(v[i]) + 1;
	d->cmdline = malloc(len);
	if (!d->cmdline)
		return -ENOMEM;
	d->cmdline_len = 0;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(v[i]) + 1;
		memcpy(d->cmdline + d->cmdline_len, v[i], l);
		d->cmdline_len += l;
	}
	d->argv = TAKE_PTR(v);
	return 0;
}

/* ---- the record: dnsmasq.pid ---- */

static int record_write(struct dnsmasq *d, uk_error *err)
{
	_cleanup_json_ json_object *o = json_object_new_object();
	json_object *a = json_object_new_array();
	if (!o || !a) {
		json_object_put(a);
		return uk_err(err, ENOMEM, "out of memory");
	}
	json_object_object_add(o, "pid", json_object_new_int64(d->pid));
	json_object_object_add(o, "start_time", json_object_new_int64((int64_t)d->start_time));
	json_object_object_add(o, "bridge", json_object_new_string(d->bridge));
	for (char **p = d->argv; *p; p++)
		json_object_array_add(a, json_object_new_string(*p));
	json_object_object_add(o, "argv", a);
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	_cleanup_free_ char *data = uk_strf("%s\n", s);
	if (!data)
		return uk_err(err, ENOMEM, "out of memory");
	return uk_write_file_atomic(d->record, data, strlen(data), 0644, err);
}

/* The pid and start time recorded in dnsmasq.pid; -ENOENT if there is no usable record. */
static int record_read(struct dnsmasq *d, pid_t *pid, uint64_t *start)
{
	_cleanup_free_ char *s = NULL;
	if (uk_read_file(d->record, RECORD_MAX, &s, NULL, NULL) < 0)
		return -ENOENT;
	_cleanup_json_ json_object *o = json_tokener_parse(s);
	json_object *p, *t;
	if (!o || !json_object_object_get_ex(o, "pid", &p) || !json_object_object_get_ex(o, "start_time", &t) ||
	    !json_object_is_type(p, json_type_int) || !json_object_is_type(t, json_type_int))
		return -ENOENT;
	int64_t pv = json_object_get_int64(p), tv = json_object_get_int64(t);
	if (pv <= 0 || pv > INT_MAX || tv < 0)
		return -ENOENT;
	*pid = (pid_t)pv;
	*start = (uint64_t)tv;
	return 0;
}

/* The pid dnsmasq wrote into its own --pid-file. */
static int daemon_pid_read(struct dnsmasq *d, pid_t *pid)
{
	_cleanup_free_ char *s = NULL;
	int r = uk_read_file(d->daemon_pidfile, 64, &s, NULL, NULL);
	if (r < 0)
		return r;
	s[strcspn(s, "\n")] = '\0';
	uint64_t v;
	if (uk_parse_u64(s, 1, INT_MAX, &v) < 0)
		return -EINVAL;
	*pid = (pid_t)v;
	return 0;
}

/* ---- finding, stopping and starting the process ---- */

struct proc_ref {
	pid_t pid;
	int pidfd;
	uint64_t start;
};

/* A pidfd for pid if it is alive; the start time read after the pidfd was opened and while
 * the process was still running belongs to the process the pidfd refers to. */
static int proc_ref_open(pid_t pid, struct proc_ref *p)
{
	p->pid = pid;
	p->pidfd = uk_pidfd_open(pid);
	if (p->pidfd < 0) {
		int r = p->pidfd;
		p->pidfd = -1;
		return r;
	}
	if (uk_proc_starttime(pid, &p->start) < 0 || pidfd_exited(p->pidfd)) {
		p->pidfd = safe_close(p->pidfd);
		return -ESRCH;
	}
	return 0;
}

/* The dnsmasq of this directory, if one runs: first the one our record names (same pid and
 * start time), else the one dnsmasq's own pid file names if its argv says it serves this
 * directory (we may have died between starting it and writing the record). */
static bool find_running(struct dnsmasq *d, struct proc_ref *ret)
{
	pid_t pid;
	uint64_t start;
	struct proc_ref p;
	if (record_read(d, &pid, &start) == 0 && proc_ref_open(pid, &p) == 0) {
		if (p.start == start) {
			*ret = p;
			return true;
		}
		safe_close(p.pidfd);
	}
	if (daemon_pid_read(d, &pid) == 0 && proc_ref_open(pid, &p) == 0) {
		_cleanup_free_ char *arg = uk_strf("--pid-file=%s", d->daemon_pidfile);
		if (arg && cmdline_has_arg(pid, arg)) {
			*ret = p;
			return true;
		}
		safe_close(p.pidfd);
	}
	return false;
}

/* SIGTERM, a bounded wait, SIGKILL, another bounded wait. */
static int stop_process(int pidfd, pid_t pid, uk_error *err)
{
	int r = uk_pidfd_signal(pidfd, SIGTERM);
	if (r < 0 && r != -ESRCH)
		return uk_err_errno(err, -r, "signal dnsmasq (pid %d)", (int)pid);
	if (uk_pidfd_wait(pidfd, STOP_TIMEOUT_MS))
		return 0;
	r = uk_pidfd_signal(pidfd, SIGKILL);
	if (r < 0 && r != -ESRCH)
		return uk_err_errno(err, -r, "kill dnsmasq (pid %d)", (int)pid);
	if (uk_pidfd_wait(pidfd, STOP_TIMEOUT_MS))
		return 0;
	return uk_err(err, ETIMEDOUT, "dnsmasq (pid %d) did not exit after SIGKILL", (int)pid);
}

static void forget_process(struct dnsmasq *d)
{
	d->pidfd = safe_close(d->pidfd);
	d->pid = 0;
	d->start_time = 0;
}

/* ---- the log ---- */

/* Keep dnsmasq.log within d->log_max. Past it, the file becomes dnsmasq.log.1 (replacing the
 * older one). A running dnsmasq writes on into the renamed file until told to reopen its log
 * (SIGUSR2); it reopens as its unprivileged user, which cannot create files here, so the new
 * file is made first with the old one's owner and mode. Returns 1 if rotated. Lock held. */
static int log_bound_locked(struct dnsmasq *d, uk_error *err)
{
	struct stat st;
	if (lstat(d->log, &st) < 0)
		return errno == ENOENT ? 0 : uk_err_errno(err, errno, "stat %s", d->log);
	if (!S_ISREG(st.st_mode))
		return uk_err(err, EINVAL, "%s is not a regular file", d->log);
	if ((uint64_t)st.st_size <= d->log_max)
		return 0;
	if (rename(d->log, d->log_old) < 0)
		return uk_err_errno(err, errno, "rotate %s", d->log);
	if (d->pidfd < 0 || pidfd_exited(d->pidfd))
		return 1; /* the next start opens a new file */
	_cleanup_close_ int fd = open(d->log, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return uk_err_errno(err, errno, "create %s", d->log);
	if (fchown(fd, st.st_uid, st.st_gid) < 0 || fchmod(fd, st.st_mode & 07777) < 0)
		return uk_err_errno(err, errno, "give %s to dnsmasq's user", d->log);
	int r = uk_pidfd_signal(d->pidfd, SIGUSR2);
	if (r < 0 && r != -ESRCH)
		return uk_err_errno(err, -r, "tell dnsmasq (pid %d) to reopen %s", (int)d->pid, d->log);
	return 1;
}

int dnsmasq_bound_log(struct dnsmasq *d, uk_error *err)
{
	if (!d)
		return uk_err(err, EINVAL, "dnsmasq: no handle");
	pthread_mutex_lock(&d->lock);
	int r = log_bound_locked(d, err);
	pthread_mutex_unlock(&d->lock);
	return r;
}

/* A start that did not finish: the daemon may have written its pid file already. */
static void kill_half_started(struct dnsmasq *d)
{
	pid_t dpid;
	if (daemon_pid_read(d, &dpid) < 0)
		return;
	/* The pidfd first, then the identity check: the signal cannot reach a process that
	 * took the PID in between. */
	_cleanup_close_ int dfd = uk_pidfd_open(dpid);
	if (dfd >= 0 && cmdline_matches(d, dpid))
		(void)uk_pidfd_signal(dfd, SIGKILL); /* ESRCH: it is gone already */
}

/* Run dnsmasq's "original process" to its exit (see spawn). */
static int run_original(struct dnsmasq *d, uk_error *err)
{
	struct uk_spawn_opts o;
	uk_spawn_opts_init(&o, (const char *const *)d->argv);
	o.netns_fd = d->netns_fd;
	struct uk_run_result res;
	int r = uk_run(&o, NULL, 0, 0, START_TIMEOUT_MS, &res, err);
	if (r == 0)
		r = uk_run_result_check(&res, "dnsmasq", err);
	bool timed_out = res.timed_out;
	uk_run_result_done(&res);
	if (r == 0)
		return 0;
	if (timed_out) {
		kill_half_started(d);
		return uk_err(err, ETIMEDOUT, "dnsmasq did not finish starting within %d s (log: %s)",
			      START_TIMEOUT_MS / 1000, d->log);
	}
	return uk_err_ctx_r(err, r, "start dnsmasq");
}

/* "stale hosts", below. */
static int stale_load_locked(struct dnsmasq *d, uk_error *err);
static int stale_forget_locked(struct dnsmasq *d, uk_error *err);
static bool stale_conflict(const struct dnsmasq *d, const char *id, const char *mac, uint32_t ip);

/* Start dnsmasq. It daemonizes itself: the process we start (dnsmasq's "original process")
 * exits 0 only once the daemon has bound its sockets, opened its files and dropped
 * privileges, or exits non-zero with the reason on stderr. That exit is the readiness
 * signal; the daemon is never our child. */

static int spawn(struct dnsmasq *d, uk_error *err)
{
	/* Not running: the stale hosts died with the process that had them. */
	int sr = stale_forget_locked(d, err);
	if (sr < 0)
		return sr;
	if (unlink(d->daemon_pidfile) < 0 && errno != ENOENT)
		return uk_err_errno(err, errno, "remove %s", d->daemon_pidfile);
	/* Not running: a plain rename bounds the log, the new process makes a new one. */
	(void)log_bound_locked(d, NULL); /* housekeeping: retried at the next start */
	int r = run_original(d, err);
	if (r < 0)
		return r;
	pid_t pid;
	r = daemon_pid_read(d, &pid);
	if (r < 0)
		return uk_err_errno(err, -r, "dnsmasq started but its pid file %s is unusable", d->daemon_pidfile);
	struct proc_ref ref;
	if (proc_ref_open(pid, &ref) < 0)
		return uk_err(err, ESRCH, "dnsmasq (pid %d) exited right after starting (log: %s)", (int)pid, d->log);
	if (!cmdline_matches(d, pid)) {
		safe_close(ref.pidfd);
		return uk_err(err, EIO, "pid %d in %s is not the dnsmasq just started", (int)pid, d->daemon_pidfile);
	}
	d->pid = ref.pid;
	d->pidfd = ref.pidfd;
	d->start_time = ref.start;
	r = record_write(d, err);
	if (r < 0) {
		/* Without a record a restarted unikd would still find it by its pid file; but a
		 * caller that sees an error must not be left with a running process. */
		(void)stop_process(d->pidfd, d->pid, NULL); /* the record's error is the one to report */
		forget_process(d);
		return uk_err_ctx_r(err, r, "dnsmasq record");
	}
	return 0;
}

/* Adopt the running dnsmasq of this directory if its argv is ours, else stop it and start
 * one. Returns 1 if a new process was started, 0 if one was adopted. */
static int run_locked(struct dnsmasq *d, uk_error *err)
{
	struct proc_ref p;
	if (find_running(d, &p)) {
		if (cmdline_matches(d, p.pid)) {
			pid_t rpid = 0;
			uint64_t rstart = 0;
			d->pid = p.pid;
			d->pidfd = p.pidfd;
			d->start_time = p.start;
			int sr = stale_load_locked(d, err);
			if (sr < 0)
				return sr;
			if (record_read(d, &rpid, &rstart) < 0 || rpid != p.pid || rstart != p.start) {
				int r = record_write(d, err);
				if (r < 0)
					return uk_err_ctx_r(err, r, "dnsmasq record");
			}
			return 0;
		}
		int r = stop_process(p.pidfd, p.pid, err);
		safe_close(p.pidfd);
		if (r < 0)
			return uk_err_ctx_r(err, r, "stop dnsmasq with an outdated configuration");
	}
	int r = spawn(d, err);
	return r < 0 ? r : 1;
}

/* ---- the handle ---- */

void dnsmasq_free(struct dnsmasq *d)
{
	if (!d)
		return;
	safe_close(d->pidfd);
	free(d->bridge);
	free(d->dir);
	free(d->hosts_dir);
	free(d->opts_dir);
	free(d->stale_dir);
	free(d->tmp_dir);
	free(d->leases);
	free(d->log);
	free(d->log_old);
	free(d->record);
	free(d->daemon_pidfile);
	free(d->ranges);
	strv_free(d->argv);
	free(d->cmdline);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

static void dnsmasq_freep(struct dnsmasq **d)
{
	dnsmasq_free(*d);
}

static int mkdir_mode(const char *path, mode_t mode, uk_error *err)
{
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return uk_err_errno(err, errno, "mkdir %s", path);
	/* The umask must not take away what dnsmasq (running as nobody) needs. */
	if (chmod(path, mode) < 0)
		return uk_err_errno(err, errno, "chmod %s", path);
	return 0;
}

/* dnsmasq drops to an unprivileged user and then reads hosts.d/ and opts.d/: every directory
 * above them must be searchable by others. */
static int check_searchable(const char *dir, uk_error *err)
{
	char buf[PATH_MAX];
	size_t len = strlen(dir);
	if (len >= sizeof(buf))
		return uk_err(err, ENAMETOOLONG, "path too long: %s", dir);
	/* "/", then "/a", "/a/b", ... and dir itself. */
	for (size_t i = 0; i <= len; i++) {
		if (i != 0 && i != len && dir[i] != '/')
			continue;
		size_t n = i == 0 ? 1 : i;
		memcpy(buf, dir, n);
		buf[n] = '\0';
		struct stat st;
		if (stat(buf, &st) < 0)
			return uk_err_errno(err, errno, "stat %s", buf);
		if (!(st.st_mode & S_IXOTH))
			return uk_err(err, EACCES,
				      "dnsmasq runs as %s and cannot reach %s: %s has mode %04o (others need x)",
				      DNSMASQ_USER, dir, buf, (unsigned)(st.st_mode & 07777));
	}
	return 0;
}

/* An option's text: letters, digits and the punctuation dnsmasq options use; never white
 * space, quotes or backslashes. */
static bool option_chars_ok(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      strchr("-_.,:=/@+", *s)))
			return false;
	return true;
}

static int config_check(const struct dnsmasq_config *cfg, uk_error *err)
{
	if (!cfg)
		return uk_err(err, EINVAL, "dnsmasq: no configuration");
	if (cfg->binary && cfg->binary[0] != '/')
		return uk_err(err, EINVAL, "dnsmasq: binary \"%s\" is not an absolute path", cfg->binary);
	if (!net_ifname_valid(cfg->bridge))
		return uk_err(err, EINVAL, "dnsmasq: bridge name \"%s\" is not a valid interface name",
			      cfg->bridge ? cfg->bridge : "");
	if (!cfg->dir || !*cfg->dir)
		return uk_err(err, EINVAL, "dnsmasq: no dir");
	if (cfg->n_ranges == 0 || !cfg->ranges)
		return uk_err(err, EINVAL, "dnsmasq: no DHCP ranges");
	if (cfg->n_ranges > MAX_RANGES)
		return uk_err(err, EINVAL, "dnsmasq: %zu DHCP ranges, at most %d", cfg->n_ranges, MAX_RANGES);
	size_t n_extra = 0;
	for (; cfg->extra && cfg->extra[n_extra]; n_extra++)
		if (n_extra == DNSMASQ_EXTRA_MAX || strncmp(cfg->extra[n_extra], "--", 2) != 0 ||
		    strlen(cfg->extra[n_extra]) > 256 || !option_chars_ok(cfg->extra[n_extra] + 2))
			return uk_err(err, EINVAL, "dnsmasq: extra option %zu is not a plain --option (at most %d)",
				      n_extra, DNSMASQ_EXTRA_MAX);
	for (size_t i = 0; i < cfg->n_ranges; i++) {
		const struct net_cidr *c = &cfg->ranges[i];
		char net[NET_IP_MAX];
		ip_str(c->net, net);
		if (c->prefix < 8 || c->prefix > 30)
			return uk_err(err, EINVAL, "dnsmasq: range %s/%d: prefix must be within 8..30", net, c->prefix);
		if (c->net & ~prefix_mask(c->prefix))
			return uk_err(err, EINVAL, "dnsmasq: range %s/%d has host bits set", net, c->prefix);
	}
	return 0;
}

/* The handle cfg describes, its directories made; nothing started. */
static int handle_new(const struct dnsmasq_config *cfg, struct dnsmasq **ret, uk_error *err)
{
	int r = config_check(cfg, err);
	if (r < 0)
		return r;
	if ((r = uk_mkdir_p(cfg->dir, 0755, err)) < 0)
		return r;
	char abs[PATH_MAX];
	if (!realpath(cfg->dir, abs))
		return uk_err_errno(err, errno, "dnsmasq dir %s", cfg->dir);
	if (!path_chars_ok(abs) || strlen(abs) > PATH_MAX - 64)
		return uk_err(err, EINVAL, "dnsmasq dir %s: only [A-Za-z0-9/._+@-] are supported", abs);

	_cleanup_(dnsmasq_freep) struct dnsmasq *d = calloc(1, sizeof(*d));
	if (!d)
		return uk_err(err, ENOMEM, "out of memory");
	pthread_mutex_init(&d->lock, NULL);
	d->pidfd = -1;
	d->netns_fd = cfg->netns_fd > 2 ? cfg->netns_fd : -1;
	d->bridge = strdup(cfg->bridge);
	d->dir = strdup(abs);
	d->hosts_dir = uk_strf("%s/hosts.d", abs);
	d->opts_dir = uk_strf("%s/opts.d", abs);
	d->stale_dir = uk_strf("%s/stale.d", abs);
	d->tmp_dir = uk_strf("%s/tmp", abs);
	d->leases = uk_strf("%s/leases", abs);
	d->log = uk_strf("%s/dnsmasq.log", abs);
	d->log_old = uk_strf("%s/dnsmasq.log.1", abs);
	d->log_max = cfg->log_max ? cfg->log_max : DNSMASQ_LOG_MAX;
	d->record = uk_strf("%s/dnsmasq.pid", abs);
	d->daemon_pidfile = uk_strf("%s/daemon.pid", abs);
	d->ranges = calloc(cfg->n_ranges, sizeof(*d->ranges));
	if (!d->bridge || !d->dir || !d->hosts_dir || !d->opts_dir || !d->stale_dir || !d->tmp_dir || !d->leases || !d->log || !d->log_old ||
	    !d->record || !d->daemon_pidfile || !d->ranges)
		return uk_err(err, ENOMEM, "out of memory");
	/* Sorted and unique, so the argv (and with it adoption) does not depend on order. */
	memcpy(d->ranges, cfg->ranges, cfg->n_ranges * sizeof(*d->ranges));
	qsort(d->ranges, cfg->n_ranges, sizeof(*d->ranges), ranges_cmp);
	for (size_t i = 0; i < cfg->n_ranges; i++)
		if (d->n_ranges == 0 || ranges_cmp(&d->ranges[d->n_ranges - 1], &d->ranges[i]) != 0)
			d->ranges[d->n_ranges++] = d->ranges[i];
	if (build_argv(d, cfg->binary ? cfg->binary : DNSMASQ_DEFAULT_BINARY, cfg->extra) < 0)
		return uk_err(err, ENOMEM, "out of memory");

	if ((r = mkdir_mode(abs, 0755, err)) < 0 || (r = mkdir_mode(d->hosts_dir, 0755, err)) < 0 ||
	    (r = mkdir_mode(d->opts_dir, 0755, err)) < 0 || (r = mkdir_mode(d->stale_dir, 0700, err)) < 0)
		return r;
	/* Leftovers of an interrupted write are garbage. */
	if ((r = uk_rm_rf(d->tmp_dir, err)) < 0 || (r = mkdir_mode(d->tmp_dir, 0700, err)) < 0)
		return r;
	if ((r = check_searchable(d->hosts_dir, err)) < 0)
		return r;
	*ret = TAKE_PTR(d);
	return 0;
}

int dnsmasq_ensure(const struct dnsmasq_config *cfg, struct dnsmasq **ret, uk_error *err)
{
	_cleanup_(dnsmasq_freep) struct dnsmasq *d = NULL;
	int r = handle_new(cfg, &d, err);
	if (r < 0)
		return r;

	pthread_mutex_lock(&d->lock);
	r = run_locked(d, err);
	d->netns_fd = -1; /* the caller's fd: only for this start */
	pthread_mutex_unlock(&d->lock);
	if (r < 0)
		return uk_err_ctx_r(err, r, "dnsmasq on %s", d->bridge);
	*ret = TAKE_PTR(d);
	return 0;
}

int dnsmasq_check(struct dnsmasq *d, uk_error *err)
{
	if (!d)
		return uk_err(err, EINVAL, "dnsmasq: no handle");
	pthread_mutex_lock(&d->lock);
	int r = 0;
	if (d->pidfd < 0 || pidfd_exited(d->pidfd)) {
		forget_process(d);
		r = run_locked(d, err);
		if (r >= 0)
			r = 1;
		else
			r = uk_err_ctx_r(err, r, "restart dnsmasq on %s", d->bridge);
	}
	pthread_mutex_unlock(&d->lock);
	return r;
}

int dnsmasq_pidfd(struct dnsmasq *d)
{
	if (!d)
		return -1;
	pthread_mutex_lock(&d->lock);
	/* A new fd the caller owns: add/remove may replace the process (and our pidfd) at any
	 * time, and must never close an fd a supervisor is polling. */
	int fd = d->pidfd >= 0 ? fcntl(d->pidfd, F_DUPFD_CLOEXEC, 3) : -1;
	pthread_mutex_unlock(&d->lock);
	return fd;
}

pid_t dnsmasq_pid(const struct dnsmasq *d)
{
	return d ? d->pid : 0;
}

int dnsmasq_stop_config(const struct dnsmasq_config *cfg, uk_error *err)
{
	_cleanup_(dnsmasq_freep) struct dnsmasq *d = NULL;
	int r = handle_new(cfg, &d, err);
	return r < 0 ? r : dnsmasq_stop(d, err);
}

int dnsmasq_stop(struct dnsmasq *d, uk_error *err)
{
	if (!d)
		return 0;
	pthread_mutex_lock(&d->lock);
	int r = 0;
	struct proc_ref p = { .pidfd = -1 };
	if (d->pidfd >= 0) {
		p.pid = d->pid;
		p.pidfd = TAKE_FD(d->pidfd);
	} else if (!find_running(d, &p)) {
		p.pidfd = -1;
	}
	if (p.pidfd >= 0) {
		r = stop_process(p.pidfd, p.pid, err);
		safe_close(p.pidfd);
	}
	forget_process(d);
	if (r == 0) {
		if (unlink(d->record) < 0 && errno != ENOENT)
			r = uk_err_errno(err, errno, "remove %s", d->record);
		else if (unlink(d->daemon_pidfile) < 0 && errno != ENOENT)
			r = uk_err_errno(err, errno, "remove %s", d->daemon_pidfile);
	}
	pthread_mutex_unlock(&d->lock);
	return r;
}

/* dnsmasq learns of new files in hosts.d/ and opts.d/ through inotify, but keeps an entry
 * whose file was changed or removed until it re-reads everything. Its way of doing that,
 * SIGHUP, crashes it (seen with 2.90 and reported against 2.86) once a dhcp-host carrying a
 * set: tag has served a client: the tag list of the entry is left pointing into a stack
 * frame and is freed on the reload. So a change restarts it instead (as does a new host
 * that clashes with a stale one, and the removal past STALE_MAX): stop, edit the files
 * while nothing reads them, start. Leases survive in the lease file. A
 * dnsmasq that was not running (died, stopped) is left for dnsmasq_check() to start. */
static int restart_locked(struct dnsmasq *d, int (*edit)(struct dnsmasq *d, void *arg, uk_error *err), void *arg,
			  uk_error *err)
{
	bool running = d->pidfd >= 0 && !pidfd_exited(d->pidfd);
	if (running) {
		int r = stop_process(d->pidfd, d->pid, err);
		if (r < 0)
			return uk_err_ctx_r(err, r, "restart dnsmasq");
	}
	if (d->pidfd >= 0)
		forget_process(d);
	int r = edit(d, arg, err);
	if (running) {
		uk_error serr = { 0 };
		int r2 = spawn(d, err ? &serr : NULL);
		if (r2 < 0 && r >= 0) {
			if (err)
				*err = serr;
			r = uk_err_ctx_r(err, r2, "restart dnsmasq");
		}
	}
	return r;
}

/* ---- hosts ---- */

/* Write data to dir/name. The temp file is made in tmp/, outside the directories dnsmasq
 * watches, closed, and renamed in: inotify reports the complete file, once. Readable by
 * dnsmasq's unprivileged user. */
static int write_watched(struct dnsmasq *d, const char *dir, const char *name, const char *data, uk_error *err)
{
	char tmp[PATH_MAX], path[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s/XXXXXX", d->tmp_dir);
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return uk_err(err, ENAMETOOLONG, "path too long: %s/%s", dir, name);
	_cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return uk_err_errno(err, errno, "create a temp file in %s", d->tmp_dir);
	int r = 0;
	if (fchmod(fd, 0644) < 0 || (r = uk_write_all(fd, data, strlen(data))) < 0 || fsync(fd) < 0) {
		r = r < 0 ? -r : errno;
		(void)unlink(tmp); /* best effort: the write's error is the one to report */
		return uk_err_errno(err, r, "write %s", tmp);
	}
	/* Closed before the rename: closing a written file inside the watched directory would
	 * be a second inotify event (IN_CLOSE_WRITE) and a second read. */
	if (close(TAKE_FD(fd)) < 0) {
		r = errno;
		(void)unlink(tmp); /* best effort: the write's error is the one to report */
		return uk_err_errno(err, r, "write %s", tmp);
	}
	if (rename(tmp, path) < 0) {
		r = errno;
		(void)unlink(tmp); /* best effort: the rename's error is the one to report */
		return uk_err_errno(err, r, "rename %s to %s", tmp, path);
	}
	_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0)
		return uk_err_errno(err, errno, "fsync %s", dir);
	return 0;
}

/* 1 if dir/name holds exactly data, 0 if it holds something else, -ENOENT if missing. */
static int same_content(const char *dir, const char *name, const char *data)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	_cleanup_free_ char *cur = NULL;
	int r = uk_read_file(path, HOSTFILE_MAX, &cur, NULL, NULL);
	if (r == -ENOENT)
		return -ENOENT;
	return r == 0 && strcmp(cur, data) == 0;
}

static bool file_exists(const char *dir, const char *name)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

static int remove_file(const char *dir, const char *name, uk_error *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (unlink(path) < 0 && errno != ENOENT)
		return uk_err_errno(err, errno, "remove %s", path);
	return 0;
}

static bool in_ranges(const struct dnsmasq *d, uint32_t ip)
{
	for (size_t i = 0; i < d->n_ranges; i++) {
		uint32_t m = prefix_mask(d->ranges[i].prefix);
		if ((ip & m) == d->ranges[i].net && ip != d->ranges[i].net && ip != (d->ranges[i].net | ~m))
			return true;
	}
	return false;
}

/* Append to a line buffer; false when it would exceed dnsmasq's line limit. */
static bool line_add(char *line, size_t *len, const char *s)
{
	size_t l = strlen(s);
	if (*len + l > DNSMASQ_LINE_MAX)
		return false;
	memcpy(line + *len, s, l + 1);
	*len += l;
	return true;
}

static int opts_text(const char *tag, const struct dns_options *dns, char *out, size_t size, uk_error *err)
{
	char line[DNSMASQ_LINE_MAX + 1];
	size_t len, olen = 0;
	out[0] = '\0';
	if (!dns)
		return 0;
	size_t n = 0;
	len = (size_t)snprintf(line, sizeof(line), "tag:%s,option:dns-server", tag);
	for (size_t i = 0; dns->servers && dns->servers[i]; i++) {
		const char *s = dns->servers[i];
		struct in_addr a4;
		struct in6_addr a6;
		char canon[INET_ADDRSTRLEN];
		if (inet_pton(AF_INET6, s, &a6) == 1)
			continue; /* DHCPv4 carries IPv4 servers only */
		if (inet_pton(AF_INET, s, &a4) != 1 || !inet_ntop(AF_INET, &a4, canon, sizeof(canon)))
			return uk_err(err, EINVAL, "dns server \"%s\" is not a dotted IPv4 address", s);
		if (++n > MAX_DNS_SERVERS)
			return uk_err(err, EINVAL, "dns servers: more than %d", MAX_DNS_SERVERS);
		if (!line_add(line, &len, ",") || !line_add(line, &len, canon))
			return uk_err(err, EINVAL, "dns servers: too long for dnsmasq");
	}
	if (n > 0)
		olen += (size_t)snprintf(out + olen, size - olen, "%s\n", line);
	n = 0;
	len = (size_t)snprintf(line, sizeof(line), "tag:%s,option:domain-search", tag);
	for (size_t i = 0; dns->searches && dns->searches[i]; i++) {
		char dom[254];
		if (!domain_valid(dns->searches[i], dom))
			return uk_err(err, EINVAL, "dns search \"%s\" is not a valid domain name", dns->searches[i]);
		if (++n > MAX_DNS_SEARCHES)
			return uk_err(err, EINVAL, "dns searches: more than %d", MAX_DNS_SEARCHES);
		if (!line_add(line, &len, ",") || !line_add(line, &len, dom))
			return uk_err(err, EINVAL, "dns searches: longer than %d characters together",
				      DNSMASQ_LINE_MAX - (int)strlen(tag) - 30);
	}
	if (n > 0)
		snprintf(out + olen, size - olen, "%s\n", line);
	/* dns->options (resolv.conf "options") have no DHCP option: not delivered. */
	return 0;
}

struct host_files {
	const char *id;
	const char *host; /* hosts.d content */
	const char *opts; /* opts.d content, "" for none */
};

static int write_host_files(struct dnsmasq *d, void *arg, uk_error *err)
{
	const struct host_files *h = arg;
	/* Options first: by the time dnsmasq knows the host, it knows its options. */
	int r = *h->opts ? write_watched(d, d->opts_dir, h->id, h->opts, err) : remove_file(d->opts_dir, h->id, err);
	return r < 0 ? r : write_watched(d, d->hosts_dir, h->id, h->host, err);
}

int dnsmasq_add_host(struct dnsmasq *d, const char *sandbox_id, const char *mac, uint32_t ip,
		     const char *hostname, const struct dns_options *dns, uk_error *err)
{
	char macn[18], ipstr[NET_IP_MAX];
	if (!d)
		return uk_err(err, EINVAL, "dnsmasq: no handle");
	if (!uk_id_valid(sandbox_id))
		return uk_err(err, EINVAL, "sandbox id \"%s\" is not valid", sandbox_id ? sandbox_id : "");
	if (!uk_mac_parse(mac, macn))
		return uk_err(err, EINVAL, "mac \"%s\" is not of the form xx:xx:xx:xx:xx:xx", mac ? mac : "");
	ip_str(ip, ipstr);
	if (!in_ranges(d, ip))
		return uk_err(err, EINVAL, "ip %s is not a host address in any DHCP range of %s", ipstr, d->bridge);
	if (hostname && *hostname) {
		if (!label_valid(hostname, strlen(hostname)))
			return uk_err(err, EINVAL,
				      "hostname \"%s\" is not an RFC 1123 label (1..63 of a-z, 0-9, '-')", hostname);
		if (hostname_ambiguous(hostname))
			return uk_err(err, EINVAL, "hostname \"%s\" would read as a lease time or keyword to dnsmasq",
				      hostname);
	}
	char tag[sizeof(TAG_PREFIX) + UK_ID_MAX];
	snprintf(tag, sizeof(tag), TAG_PREFIX "%s", sandbox_id);
	char opts[2 * (DNSMASQ_LINE_MAX + 2)];
	int r = opts_text(tag, dns, opts, sizeof(opts), err);
	if (r < 0)
		return r;
	char host[512];
	snprintf(host, sizeof(host), "%s,set:%s,%s%s%s\n", macn, tag, ipstr, hostname && *hostname ? "," : "",
		 hostname && *hostname ? hostname : "");
	struct host_files h = { sandbox_id, host, opts };

	pthread_mutex_lock(&d->lock);
	(void)log_bound_locked(d, NULL); /* housekeeping: retried at the next call */
	int so = same_content(d->opts_dir, sandbox_id, opts), sh = same_content(d->hosts_dir, sandbox_id, host);
	bool opts_same = *opts ? so == 1 : so == -ENOENT;
	if (opts_same && sh == 1)
		r = 0; /* already so */
	else if (so == -ENOENT && sh == -ENOENT && !stale_conflict(d, sandbox_id, macn, ip))
		r = write_host_files(d, &h, err); /* new: dnsmasq reads it by itself */
	else
		r = restart_locked(d, write_host_files, &h, err);
	pthread_mutex_unlock(&d->lock);
	return r < 0 ? uk_err_ctx_r(err, r, "dhcp host %s", sandbox_id) : 0;
}

/* One line of the lease file. */
struct lease {
	int64_t expiry;
	char mac[18];
	uint32_t ip;
};

static int lease_parse(char *line, struct lease *l)
{
	/* <expiry> <mac> <ip> <hostname|*> <client-id|*>; also "duid ..." and DHCPv6 lines. */
	char *f[3], *save = NULL;
	size_t nf = 0;
	for (char *t = strtok_r(line, " \t", &save); t && nf < 3; t = strtok_r(NULL, " \t", &save))
		f[nf++] = t;
	uint64_t exp;
	struct in_addr a;
	if (nf < 3 || uk_parse_u64(f[0], 0, INT64_MAX, &exp) < 0 || !uk_mac_parse(f[1], l->mac) ||
	    inet_pton(AF_INET, f[2], &a) != 1)
		return -EINVAL;
	l->expiry = (int64_t)exp;
	l->ip = ntohl(a.s_addr);
	return 0;
}

int dnsmasq_lease_of(struct dnsmasq *d, const char *mac, int64_t *expiry, uk_error *err)
{
	char want[18];
	if (!d)
		return uk_err(err, EINVAL, "dnsmasq: no handle");
	if (!uk_mac_parse(mac, want))
		return uk_err(err, EINVAL, "mac \"%s\" is not of the form xx:xx:xx:xx:xx:xx", mac ? mac : "");
	_cleanup_free_ char *buf = NULL;
	pthread_mutex_lock(&d->lock);
	(void)log_bound_locked(d, NULL); /* housekeeping: retried at the next call */
	pthread_mutex_unlock(&d->lock);
	int r = uk_read_file(d->leases, LEASES_MAX, &buf, NULL, err);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return uk_err_ctx_r(err, r, "lease of %s", mac);
	int64_t now = (int64_t)time(NULL);
	char *save = NULL;
	for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct lease l;
		if (lease_parse(line, &l) < 0 || strcmp(l.mac, want) != 0)
			continue;
		if (l.expiry != 0 && l.expiry <= now)
			continue; /* expired, not yet pruned by dnsmasq */
		if (expiry)
			*expiry = l.expiry;
		return 1;
	}
	return 0;
}

/* Drop the leases of macs[0..n) from the lease file, or with keep, every lease but theirs
 * (dnsmasq is stopped). A lease left behind would keep dnsmasq from giving its address to
 * the next sandbox ("not using configured address ... because it is leased to ...") until
 * it expired. */
static int drop_leases(struct dnsmasq *d, const char (*macs)[18], size_t n, bool keep, uk_error *err)
{
	if (n == 0 && !keep)
		return 0;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r = uk_read_file(d->leases, LEASES_MAX, &buf, &len, err);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	_cleanup_free_ char *out = malloc(len + 1);
	if (!out)
		return uk_err(err, ENOMEM, "out of memory");
	size_t olen = 0;
	bool dropped = false;
	for (char *line = buf; *line;) {
		char *nl = strchr(line, '\n');
		size_t l = nl ? (size_t)(nl - line) + 1 : strlen(line);
		char copy[512];
		struct lease le;
		bool drop = false;
		if (l < sizeof(copy)) {
			memcpy(copy, line, l);
			copy[l] = '\0';
			if (lease_parse(copy, &le) == 0) {
				bool listed = false;
				for (size_t i = 0; i < n && !listed; i++)
					listed = strcmp(le.mac, macs[i]) == 0;
				drop = listed != keep;
			}
		}
		if (drop)
			dropped = true;
		else {
			memcpy(out + olen, line, l);
			olen += l;
		}
		line += l;
	}
	if (!dropped)
		return 0;
	return uk_write_file_atomic(d->leases, out, olen, 0644, err);
}

struct host_removal {
	const char *id;
	const char *mac; /* NULL if unknown */
};

static int remove_host_files(struct dnsmasq *d, void *arg, uk_error *err)
{
	const struct host_removal *h = arg;
	int r = remove_file(d->opts_dir, h->id, err);
	if (r >= 0)
		r = remove_file(d->hosts_dir, h->id, err);
	if (r >= 0 && h->mac)
		r = drop_leases(d, (const char(*)[18])h->mac, 1, false, err);
	return r;
}

/* ---- stale hosts ----
 *
 * dnsmasq never reads a removal: a removed host keeps its entry, and its lease, until the
 * process restarts. A restart per removal would cost every StopPodSandbox an exec of dnsmasq
 * and leave every other pod without a DHCP server meanwhile. So a removal moves the host
 * file to stale.d/ instead, and the entry is left to dnsmasq, harmless while its address and
 * MAC go to no one else: its guest is gone. The IPAM hands addresses out round robin, so an
 * address comes back only after the rest of the range. When a new host does take a stale
 * entry's address, MAC or id (dnsmasq would refuse it as a duplicate), or STALE_MAX are
 * stale, dnsmasq is restarted, and the start forgets them all, leases included (it keeps
 * only the leases of hosts.d/'s MACs). stale.d/ is what a restarted unikd adopting the same
 * dnsmasq knows them by. */

/* "<mac>,set:<tag>,<ip>[,<hostname>]": our own host line's MAC and address. */
static bool host_line_parse(const char *line, char mac[18], uint32_t *ip)
{
	char m[18];
	if (strlen(line) < 18 || line[17] != ',')
		return false;
	memcpy(m, line, 17);
	m[17] = '\0';
	if (!uk_mac_parse(m, mac))
		return false;
	const char *tag = line + 18, *a = strchr(tag, ',');
	if (strncmp(tag, "set:", 4) != 0 || !a)
		return false;
	a++;
	char buf[NET_IP_MAX];
	size_t len = strcspn(a, ",\n");
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, a, len);
	buf[len] = '\0';
	return net_ip_parse(buf, ip) == 0;
}

static bool stale_conflict(const struct dnsmasq *d, const char *id, const char *mac, uint32_t ip)
{
	if (d->stale_overflow)
		return true;
	for (size_t i = 0; i < d->n_stale; i++)
		if (d->stale[i].ip == ip || strcmp(d->stale[i].mac, mac) == 0 || strcmp(d->stale[i].id, id) == 0)
			return true;
	return false;
}

/* A file removed from under a running dnsmasq: dnsmasq reads a file it sees deleted again,
 * and logs that it cannot, but does not see one renamed out of its directory. So it goes
 * to tmp/ first. */
static int remove_unseen(struct dnsmasq *d, const char *dir, const char *name, uk_error *err)
{
	char from[PATH_MAX], to[PATH_MAX];
	snprintf(from, sizeof(from), "%s/%s", dir, name);
	snprintf(to, sizeof(to), "%s/gone.%s", d->tmp_dir, name); /* not a mkostemp name */
	if (rename(from, to) < 0)
		return errno == ENOENT ? 0 : uk_err_errno(err, errno, "move %s to %s", from, to);
	if (unlink(to) < 0)
		return uk_err_errno(err, errno, "remove %s", to);
	return 0;
}

/* The host file to stale.d/ (one rename: a crash leaves it in one place or the other), its
 * options file removed. */
static int stale_add_locked(struct dnsmasq *d, const char *id, const char *mac, uint32_t ip, uk_error *err)
{
	char from[PATH_MAX], to[PATH_MAX];
	snprintf(from, sizeof(from), "%s/%s", d->hosts_dir, id);
	snprintf(to, sizeof(to), "%s/%s", d->stale_dir, id);
	if (rename(from, to) < 0)
		return uk_err_errno(err, errno, "move %s to %s", from, to);
	struct stale_host *h = &d->stale[d->n_stale++];
	snprintf(h->id, sizeof(h->id), "%s", id);
	memcpy(h->mac, mac, sizeof(h->mac));
	h->ip = ip;
	return remove_unseen(d, d->opts_dir, id, err);
}

/* Adopting a running dnsmasq: its stale hosts, from stale.d/. A file that does not read as
 * one of our host lines (or one past STALE_MAX) may still be an entry dnsmasq holds: it
 * makes an overflow, so every new host restarts dnsmasq until a start clears stale.d/. */
static int stale_load_locked(struct dnsmasq *d, uk_error *err)
{
	/* Until the whole directory is read, every host counts as stale: a failure here must
	 * not leave a dnsmasq we run with stale hosts we do not know of. */
	d->n_stale = 0;
	d->stale_overflow = true;
	_cleanup_closedir_ DIR *dir = opendir(d->stale_dir);
	if (!dir && errno == ENOENT) {
		d->stale_overflow = false;
		return 0;
	}
	if (!dir)
		return uk_err_errno(err, errno, "open %s", d->stale_dir);
	bool overflow = false;
	for (struct dirent *de; (de = readdir(dir));) {
		if (de->d_name[0] == '.')
			continue;
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", d->stale_dir, de->d_name);
		_cleanup_free_ char *line = NULL;
		struct stale_host h = { 0 };
		if (d->n_stale == STALE_MAX || !uk_id_valid(de->d_name) ||
		    uk_read_file(path, HOSTFILE_MAX, &line, NULL, NULL) < 0 || !host_line_parse(line, h.mac, &h.ip)) {
			overflow = true;
			continue;
		}
		memcpy(h.id, de->d_name, strlen(de->d_name) + 1); /* valid: at most UK_ID_MAX */
		d->stale[d->n_stale++] = h;
	}
	d->stale_overflow = overflow;
	return 0;
}

/* The MACs of the hosts in hosts.d/ (at most HOSTS_MAX). */
static int host_macs(struct dnsmasq *d, char (**ret)[18], size_t *n, uk_error *err)
{
	*ret = NULL;
	*n = 0;
	_cleanup_closedir_ DIR *dir = opendir(d->hosts_dir);
	if (!dir)
		return uk_err_errno(err, errno, "open %s", d->hosts_dir);
	_cleanup_free_ char(*macs)[18] = NULL;
	size_t cap = 0;
	for (struct dirent *de; (de = readdir(dir));) {
		if (!uk_id_valid(de->d_name))
			continue;
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", d->hosts_dir, de->d_name);
		_cleanup_free_ char *line = NULL;
		uint32_t ip;
		char mac[18];
		if (uk_read_file(path, HOSTFILE_MAX, &line, NULL, NULL) < 0 || !host_line_parse(line, mac, &ip))
			continue; /* not a host dnsmasq serves */
		if (*n == cap) {
			if (cap == HOSTS_MAX)
				return uk_err(err, E2BIG, "%s: more than %d hosts", d->hosts_dir, HOSTS_MAX);
			cap = cap ? 2 * cap : 64;
			char(*more)[18] = realloc(macs, cap * sizeof(*macs));
			if (!more)
				return uk_err(err, ENOMEM, "out of memory");
			macs = more;
		}
		memcpy(macs[(*n)++], mac, sizeof(mac));
	}
	*ret = TAKE_PTR(macs);
	return 0;
}

/* dnsmasq is not running: the next one reads only hosts.d/, and finds only the leases of
 * their MACs, so every address a gone host had (a stale host's, or one left behind by a
 * crash) is free for the host that has it now. */
static int stale_forget_locked(struct dnsmasq *d, uk_error *err)
{
	_cleanup_free_ char(*keep)[18] = NULL;
	size_t n = 0;
	uk_error e = { 0 };
	int r = host_macs(d, &keep, &n, &e);
	if (r >= 0)
		r = drop_leases(d, (const char(*)[18])keep, n, true, &e);
	/* A lease file that cannot be filtered goes whole: every address is a reservation, which
	 * dnsmasq gives its MAC again at the next request, so DHCP stays up for every pod. */
	if (r < 0 && unlink(d->leases) < 0 && errno != ENOENT)
		return uk_err_errno(err, errno, "remove %s (keeping only the current hosts' leases failed: %s)",
				    d->leases, e.msg);
	if ((r = uk_rm_rf(d->stale_dir, err)) < 0 || (r = mkdir_mode(d->stale_dir, 0700, err)) < 0)
		return r;
	d->n_stale = 0;
	d->stale_overflow = false;
	return 0;
}

int dnsmasq_remove_host(struct dnsmasq *d, const char *sandbox_id, uk_error *err)
{
	if (!d)
		return uk_err(err, EINVAL, "dnsmasq: no handle");
	if (!uk_id_valid(sandbox_id))
		return uk_err(err, EINVAL, "sandbox id \"%s\" is not valid", sandbox_id ? sandbox_id : "");
	pthread_mutex_lock(&d->lock);
	/* Its MAC and address, from our own host line: to keep it as a stale host, or to drop
	 * its lease with it. */
	char path[PATH_MAX], mac[18];
	_cleanup_free_ char *line = NULL;
	bool have_mac = false;
	snprintf(path, sizeof(path), "%s/%s", d->hosts_dir, sandbox_id);
	uint32_t ip = 0;
	int rr = uk_read_file(path, HOSTFILE_MAX, &line, NULL, NULL);
	if (rr == 0)
		have_mac = host_line_parse(line, mac, &ip);
	struct host_removal h = { sandbox_id, have_mac ? mac : NULL };
	bool host = rr != -ENOENT, opts = file_exists(d->opts_dir, sandbox_id);
	bool running = d->pidfd >= 0 && !pidfd_exited(d->pidfd);
	int r = 0;
	if (running && host && have_mac && d->n_stale < STALE_MAX && !d->stale_overflow)
		r = stale_add_locked(d, sandbox_id, mac, ip, err); /* no restart: see "stale hosts" */
	else if (running && !host && opts)
		r = remove_unseen(d, d->opts_dir, sandbox_id, err); /* options for a tag no host sets */
	else if (host || opts)
		r = restart_locked(d, remove_host_files, &h, err);
	pthread_mutex_unlock(&d->lock);
	return r < 0 ? uk_err_ctx_r(err, r, "dhcp host %s", sandbox_id) : 0;
}

/* The ids named in one directory, appended to *v (deduplicated against what is there). */
static int collect_ids(const char *dir, char ***v, size_t *n, uk_error *err)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : uk_err_errno(err, errno, "open %s", dir);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!uk_id_valid(de->d_name))
			continue;
		bool seen = false;
		for (size_t i = 0; i < *n && !seen; i++)
			seen = strcmp((*v)[i], de->d_name) == 0;
		if (seen)
			continue;
		if (strv_push(v, n, strdup(de->d_name)) < 0) /* frees the copy on failure */
			return uk_err(err, ENOMEM, "out of memory");
	}
	return 0;
}

int dnsmasq_foreach_host(struct dnsmasq *d, int (*fn)(const char *sandbox_id, void *ud), void *ud, uk_error *err)
{
	if (!d || !fn)
		return uk_err(err, EINVAL, "dnsmasq: no handle or callback");
	_cleanup_strv_ char **ids = NULL;
	size_t n = 0;
	pthread_mutex_lock(&d->lock);
	int r = collect_ids(d->hosts_dir, &ids, &n, err);
	if (r >= 0)
		r = collect_ids(d->opts_dir, &ids, &n, err);
	pthread_mutex_unlock(&d->lock);
	/* Collected first and called without the lock: fn may remove hosts. */
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = fn(ids[i], ud);
	return r;
}
