/* Tests for src/net/dnsmasq.c against the real dnsmasq, inside a private network namespace
 * (root only): starting, adoption, restarts, the host files, a real DHCP exchange from a
 * second namespace, lease release, lease parsing and bad input.
 *
 * main() forks: the child makes the namespace and runs the tests; the parent is a child
 * subreaper that reaps the daemonized dnsmasqs, and at the end kills any process still
 * naming the test directory and removes it, so nothing outlives a failed or crashed run. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/common/util.h"
#include "../../src/net/net.h"

#define BRIDGE "ukbr0"
#define VETH_BR "ukv0"  /* on the bridge */
#define VETH_POD "ukv1" /* in the "pod" namespace */

static char g_root[64]; /* the test directory, made by main() */
static char g_dir[128]; /* dnsmasq's dir */
static pid_t g_holder;  /* keeps the pod namespace alive */
static int g_holder_fd = -1;
static struct dnsmasq *g_d;

/* ---- helpers ---- */

static uint32_t ip4(const char *s)
{
	struct in_addr a;
	assert_int_equal(inet_pton(AF_INET, s, &a), 1);
	return ntohl(a.s_addr);
}

static const char *ip_binary(void)
{
	static const char *const c[] = { "/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip" };
	for (size_t i = 0; i < sizeof(c) / sizeof(*c); i++)
		if (access(c[i], X_OK) == 0)
			return c[i];
	return "/usr/sbin/ip";
}

/* Run `ip ARGS...` (fork + execve); its exit status. */
static int ipcmd(const char *first, ...)
{
	char *argv[32];
	int n = 0;
	argv[n++] = (char *)ip_binary();
	va_list ap;
	va_start(ap, first);
	for (const char *a = first; a && n < 31; a = va_arg(ap, const char *))
		argv[n++] = (char *)a;
	va_end(ap);
	argv[n] = NULL;
	char *envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		execve(argv[0], argv, envp);
		_exit(127);
	}
	int st;
	if (waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static bool alive(pid_t pid)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return false;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	bool exited = poll(&p, 1, 0) > 0;
	close(fd);
	return !exited;
}

static bool wait_dead(pid_t pid, int ms)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return true;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	bool exited = poll(&p, 1, ms) > 0;
	close(fd);
	return exited;
}

static char *slurp(const char *path)
{
	char *s = NULL;
	if (uk_read_file(path, 1 << 22, &s, NULL, NULL) < 0)
		return NULL;
	return s;
}

static void path_in(char *out, size_t size, const char *dir, const char *name)
{
	snprintf(out, size, "%s/%s", dir, name);
}

/* Wait (inotify, bounded) until the file at path satisfies pred. */
static bool wait_file(const char *path, bool (*pred)(const char *content, const void *arg), const void *arg, int ms)
{
	char dir[256];
	snprintf(dir, sizeof(dir), "%s", path);
	*strrchr(dir, '/') = '\0';
	int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (in < 0)
		return false;
	inotify_add_watch(in, dir, IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE);
	uint64_t deadline = uk_now_mono_ns() + (uint64_t)ms * 1000000ull;
	bool ok = false;
	for (;;) {
		char *c = slurp(path);
		ok = pred(c ? c : "", arg);
		free(c);
		uint64_t now = uk_now_mono_ns();
		if (ok || now >= deadline)
			break;
		struct pollfd p = { .fd = in, .events = POLLIN };
		if (poll(&p, 1, (int)((deadline - now) / 1000000ull) + 1) > 0) {
			char buf[4096];
			while (read(in, buf, sizeof(buf)) > 0)
				;
		}
	}
	close(in);
	return ok;
}

static bool has_text(const char *c, const void *arg)
{
	return strstr(c, arg) != NULL;
}

/* The argv the module must give dnsmasq, written out independently. */
static size_t expected_cmdline(char *out, size_t size, const char *dir, const char *const *ranges)
{
	char buf[64][256];
	size_t n = 0;
	const char *fixed[] = { "/usr/sbin/dnsmasq", "--conf-file=/dev/null", "--port=0", "--no-resolv", "--no-hosts",
				"--user=nobody", "--bind-interfaces", "--except-interface=lo", "--dhcp-authoritative",
				"--dhcp-no-override", "--no-ping", "--quiet-dhcp", "--interface=" BRIDGE };
	for (size_t i = 0; i < sizeof(fixed) / sizeof(*fixed); i++)
		snprintf(buf[n++], sizeof(buf[0]), "%s", fixed[i]);
	for (size_t i = 0; ranges[i]; i++)
		snprintf(buf[n++], sizeof(buf[0]), "--dhcp-range=%s", ranges[i]);
	snprintf(buf[n++], sizeof(buf[0]), "--dhcp-hostsdir=%s/hosts.d", dir);
	snprintf(buf[n++], sizeof(buf[0]), "--dhcp-optsdir=%s/opts.d", dir);
	snprintf(buf[n++], sizeof(buf[0]), "--dhcp-leasefile=%s/leases", dir);
	snprintf(buf[n++], sizeof(buf[0]), "--log-facility=%s/dnsmasq.log", dir);
	snprintf(buf[n++], sizeof(buf[0]), "--pid-file=%s/daemon.pid", dir);
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(buf[i]) + 1;
		assert_true(len + l <= size);
		memcpy(out + len, buf[i], l);
		len += l;
	}
	return len;
}

static void assert_cmdline(pid_t pid, const char *dir, const char *const *ranges)
{
	char want[8192], path[64];
	size_t wlen = expected_cmdline(want, sizeof(want), dir, ranges);
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	char *got = NULL;
	size_t glen = 0;
	assert_int_equal(uk_read_file(path, 65536, &got, &glen, NULL), 0);
	for (size_t i = 0; i < glen; i++)
		if (got[i] == '\0' && i + 1 < glen)
			got[i] = ' ';
	for (size_t i = 0; i < wlen; i++)
		if (want[i] == '\0' && i + 1 < wlen)
			want[i] = ' ';
	assert_string_equal(got, want);
	free(got);
}

static const struct net_cidr R77 = { 0x0a4d0000, 16 };   /* 10.77.0.0/16 */
static const struct net_cidr R88 = { 0x0a580000, 24 };   /* 10.88.0.0/24 */

static struct dnsmasq_config config(const char *dir, const struct net_cidr *r, size_t n)
{
	return (struct dnsmasq_config){ .binary = "/usr/sbin/dnsmasq", .bridge = BRIDGE, .dir = dir, .ranges = r,
					.n_ranges = n };
}

static struct dnsmasq *ensure(const char *dir, const struct net_cidr *r, size_t n)
{
	struct dnsmasq_config cfg = config(dir, r, n);
	struct dnsmasq *d = NULL;
	uk_error err = { 0 };
	int rc = dnsmasq_ensure(&cfg, &d, &err);
	if (rc < 0)
		fail_msg("dnsmasq_ensure: %s", err.msg);
	return d;
}

/* ---- the pod namespace and a small DHCP client ---- */

static int in_pod_ns(int (*fn)(void *arg, int out), void *arg, void *result, size_t result_size)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(p[0]);
		if (setns(g_holder_fd, CLONE_NEWNET) < 0)
			_exit(120);
		_exit(fn(arg, p[1]));
	}
	close(p[1]);
	size_t got = 0;
	while (result && got < result_size) {
		ssize_t n = read(p[0], (char *)result + got, result_size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(p[0]);
	int st;
	waitpid(pid, &st, 0);
	if (result && got != result_size)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int pod_ns_link_up(void *arg, int out)
{
	(void)arg;
	(void)out;
	return ipcmd("link", "set", "lo", "up", NULL) || ipcmd("link", "set", VETH_POD, "up", NULL);
}

struct dhcp_ask {
	uint8_t mac[6];
	uint8_t type;     /* 1 DISCOVER, 3 REQUEST */
	uint32_t req_ip;  /* REQUEST: option 50 */
	uint32_t server;  /* REQUEST: option 54 */
	int timeout_ms;
};

struct dhcp_answer {
	int got;          /* 0: no answer */
	uint8_t type;     /* 2 OFFER, 5 ACK, 6 NAK */
	uint32_t yiaddr, server, router, mask;
	int n_dns;
	uint32_t dns[4];
	char search[256]; /* space-separated */
	char hostname[64];
};

/* RFC 1035 names of option 119 (with compression pointers) into "a.b c.d". */
static void decode_search(const uint8_t *p, size_t len, char *out, size_t size)
{
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < len;) {
		size_t j = i;
		int jumps = 0;
		bool first = true;
		size_t next = 0;
		bool jumped = false;
		while (j < len && p[j] != 0 && jumps < 16) {
			if ((p[j] & 0xc0) == 0xc0) {
				if (j + 1 >= len)
					return;
				if (!jumped)
					next = j + 2;
				jumped = true;
				j = (size_t)((p[j] & 0x3f) << 8 | p[j + 1]);
				jumps++;
				continue;
			}
			size_t l = p[j];
			if (j + 1 + l > len || o + l + 2 >= size)
				return;
			if (!first)
				out[o++] = '.';
			memcpy(out + o, p + j + 1, l);
			o += l;
			first = false;
			j += 1 + l;
		}
		if (!jumped)
			next = j + 1;
		if (o + 1 < size)
			out[o++] = ' ';
		out[o] = '\0';
		i = next;
	}
	if (o > 0 && out[o - 1] == ' ')
		out[o - 1] = '\0';
}

static int dhcp_client(void *arg, int out)
{
	const struct dhcp_ask *a = arg;
	struct dhcp_answer ans = { 0 };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, VETH_POD, sizeof(VETH_POD)) < 0)
		return 2;
	struct sockaddr_in me = { .sin_family = AF_INET, .sin_port = htons(68) };
	if (bind(fd, (struct sockaddr *)&me, sizeof(me)) < 0)
		return 3;
	uint8_t pkt[548] = { 0 };
	pkt[0] = 1, pkt[1] = 1, pkt[2] = 6;
	uint32_t xid = (uint32_t)getpid() * 2654435761u;
	memcpy(pkt + 4, &xid, 4);
	pkt[10] = 0x80; /* broadcast flag: we have no address to receive a unicast reply on */
	memcpy(pkt + 28, a->mac, 6);
	static const uint8_t magic[4] = { 99, 130, 83, 99 };
	memcpy(pkt + 236, magic, 4);
	uint8_t *o = pkt + 240;
	*o++ = 53, *o++ = 1, *o++ = a->type;
	if (a->type == 3) {
		uint32_t r = htonl(a->req_ip), s = htonl(a->server);
		*o++ = 50, *o++ = 4;
		memcpy(o, &r, 4), o += 4;
		*o++ = 54, *o++ = 4;
		memcpy(o, &s, 4), o += 4;
	}
	*o++ = 55, *o++ = 6, *o++ = 1, *o++ = 3, *o++ = 6, *o++ = 12, *o++ = 15, *o++ = 119;
	*o++ = 255;
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(67), .sin_addr.s_addr = INADDR_BROADCAST };
	uint64_t deadline = uk_now_mono_ns() + (uint64_t)a->timeout_ms * 1000000ull;
	while (!ans.got && uk_now_mono_ns() < deadline) {
		if (sendto(fd, pkt, 300, 0, (struct sockaddr *)&to, sizeof(to)) < 0)
			return 4;
		uint64_t resend = uk_now_mono_ns() + 500000000ull;
		while (!ans.got) {
			uint64_t now = uk_now_mono_ns();
			uint64_t until = resend < deadline ? resend : deadline;
			if (now >= until)
				break;
			struct pollfd p = { .fd = fd, .events = POLLIN };
			if (poll(&p, 1, (int)((until - now) / 1000000ull) + 1) <= 0)
				continue;
			uint8_t r[1500];
			ssize_t n = recv(fd, r, sizeof(r), 0);
			if (n < 240 || r[0] != 2 || memcmp(r + 4, &xid, 4) != 0 || memcmp(r + 28, a->mac, 6) != 0 ||
			    memcmp(r + 236, magic, 4) != 0)
				continue;
			uint32_t v;
			memcpy(&v, r + 16, 4);
			ans.yiaddr = ntohl(v);
			for (ssize_t i = 240; i < n && r[i] != 255;) {
				if (r[i] == 0) {
					i++;
					continue;
				}
				if (i + 1 >= n || i + 2 + r[i + 1] > n)
					break;
				uint8_t code = r[i], len = r[i + 1];
				const uint8_t *d = r + i + 2;
				if (code == 53 && len == 1)
					ans.type = d[0];
				else if ((code == 54 || code == 3 || code == 1) && len >= 4) {
					memcpy(&v, d, 4);
					*(code == 54 ? &ans.server : code == 3 ? &ans.router : &ans.mask) = ntohl(v);
				} else if (code == 6) {
					for (int k = 0; k + 4 <= len && ans.n_dns < 4; k += 4) {
						memcpy(&v, d + k, 4);
						ans.dns[ans.n_dns++] = ntohl(v);
					}
				} else if (code == 12) {
					size_t l = len < sizeof(ans.hostname) - 1 ? len : sizeof(ans.hostname) - 1;
					memcpy(ans.hostname, d, l);
				} else if (code == 119) {
					decode_search(d, len, ans.search, sizeof(ans.search));
				}
				i += 2 + len;
			}
			ans.got = 1;
		}
	}
	close(fd);
	return uk_write_all(out, &ans, sizeof(ans)) < 0 ? 5 : 0;
}

static struct dhcp_answer dhcp(const uint8_t mac[6], uint8_t type, uint32_t req_ip, uint32_t server, int timeout_ms)
{
	struct dhcp_ask a = { .type = type, .req_ip = req_ip, .server = server, .timeout_ms = timeout_ms };
	memcpy(a.mac, mac, 6);
	struct dhcp_answer ans;
	int rc = in_pod_ns(dhcp_client, &a, &ans, sizeof(ans));
	if (rc != 0)
		fail_msg("dhcp client failed (%d)", rc);
	return ans;
}

static void dump_log(void)
{
	char path[256];
	path_in(path, sizeof(path), g_dir, "dnsmasq.log");
	char *l = slurp(path);
	fprintf(stderr, "---- %s ----\n%s---- end ----\n", path, l ? l : "(none)\n");
	if (g_d) {
		char cmd[256];
		snprintf(cmd, sizeof(cmd), "cat /proc/%d/status | head -3; cat /proc/%d/wchan; echo; ls -l /proc/%d/fd", dnsmasq_pid(g_d), dnsmasq_pid(g_d), dnsmasq_pid(g_d));
		if (system(cmd)) {}
	}
	free(l);
}

/* DISCOVER, OFFER, REQUEST, ACK; returns the ACK. */
static struct dhcp_answer dora(const uint8_t mac[6])
{
	struct dhcp_answer off = dhcp(mac, 1, 0, 0, 4000);
	if (!off.got)
		dump_log();
	assert_true(off.got);
	assert_int_equal(off.type, 2);
	struct dhcp_answer ack = dhcp(mac, 3, off.yiaddr, off.server, 4000);
	assert_true(ack.got);
	assert_int_equal(ack.type, 5);
	assert_int_equal(ack.yiaddr, off.yiaddr);
	return ack;
}

/* ---- setup ---- */

static int group_setup(void **state)
{
	(void)state;
	if (unshare(CLONE_NEWNET) < 0) {
		perror("unshare(CLONE_NEWNET)");
		return -1;
	}
	if (ipcmd("link", "set", "lo", "up", NULL) || ipcmd("link", "add", BRIDGE, "type", "bridge", NULL) ||
	    ipcmd("addr", "add", "10.77.0.1/16", "dev", BRIDGE, NULL) ||
	    ipcmd("addr", "add", "10.88.0.1/24", "dev", BRIDGE, NULL) || ipcmd("link", "set", BRIDGE, "up", NULL))
		return -1;
	/* The pod namespace: a process that holds it until we close its pipe (or die). */
	int p[2], ready[2];
	if (pipe2(p, O_CLOEXEC) < 0 || pipe2(ready, O_CLOEXEC) < 0)
		return -1;
	g_holder = fork();
	if (g_holder < 0)
		return -1;
	if (g_holder == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(p[1]);
		close(ready[0]);
		if (unshare(CLONE_NEWNET) < 0)
			_exit(1);
		char c = 'r';
		if (write(ready[1], &c, 1) != 1)
			_exit(1);
		while (read(p[0], &c, 1) > 0)
			;
		_exit(0);
	}
	close(p[0]);
	close(ready[1]);
	char c;
	if (read(ready[0], &c, 1) != 1)
		return -1;
	close(ready[0]);
	/* p[1] stays open for the life of the test process: its close ends the holder. */
	char path[64], pidstr[16];
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)g_holder);
	snprintf(pidstr, sizeof(pidstr), "%d", (int)g_holder);
	g_holder_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (g_holder_fd < 0)
		return -1;
	if (ipcmd("link", "add", VETH_BR, "type", "veth", "peer", "name", VETH_POD, NULL) ||
	    ipcmd("link", "set", VETH_BR, "master", BRIDGE, NULL) || ipcmd("link", "set", VETH_BR, "up", NULL) ||
	    ipcmd("link", "set", VETH_POD, "netns", pidstr, NULL))
		return -1;
	if (in_pod_ns(pod_ns_link_up, NULL, NULL, 0) != 0)
		return -1;
	snprintf(g_dir, sizeof(g_dir), "%s/dnsmasq", g_root);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (g_d) {
		uk_error err = { 0 };
		if (dnsmasq_stop(g_d, &err) < 0)
			fprintf(stderr, "teardown: %s\n", err.msg);
		dnsmasq_free(g_d);
		g_d = NULL;
	}
	if (g_holder > 0) {
		kill(g_holder, SIGKILL);
		waitpid(g_holder, NULL, 0);
	}
	return 0;
}

/* ---- tests ---- */

static void ensure_starts(void **state)
{
	(void)state;
	g_d = ensure(g_dir, &R77, 1);
	pid_t pid = dnsmasq_pid(g_d);
	assert_true(pid > 0);
	assert_true(alive(pid));
	int fd = dnsmasq_pidfd(g_d); /* ours to close */
	assert_true(fd >= 0);
	assert_int_equal(close(fd), 0);
	const char *ranges[] = { "10.77.0.0,static,255.255.0.0", NULL };
	assert_cmdline(pid, g_dir, ranges);
	/* It is not our child: dnsmasq daemonized itself (own session). */
	assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
	assert_int_not_equal(getsid(pid), getsid(0));
	/* The record. */
	char path[256];
	path_in(path, sizeof(path), g_dir, "dnsmasq.pid");
	char *rec = slurp(path);
	assert_non_null(rec);
	json_object *o = json_tokener_parse(rec), *v;
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "pid", &v));
	assert_int_equal(json_object_get_int(v), pid);
	uint64_t st;
	assert_int_equal(uk_proc_starttime(pid, &st), 0);
	assert_true(json_object_object_get_ex(o, "start_time", &v));
	assert_int_equal((uint64_t)json_object_get_int64(v), st);
	assert_true(json_object_object_get_ex(o, "argv", &v));
	assert_int_equal(json_object_array_length(v), 19);
	json_object_put(o);
	free(rec);
	/* The layout. */
	const char *dirs[] = { "hosts.d", "opts.d", "tmp" };
	for (size_t i = 0; i < 3; i++) {
		struct stat s;
		path_in(path, sizeof(path), g_dir, dirs[i]);
		assert_int_equal(stat(path, &s), 0);
		assert_true(S_ISDIR(s.st_mode));
	}
	path_in(path, sizeof(path), g_dir, "dnsmasq.log");
	assert_true(wait_file(path, has_text, "started, version", 2000));
}

static void ensure_adopts(void **state)
{
	(void)state;
	pid_t pid = dnsmasq_pid(g_d);
	struct dnsmasq *d2 = ensure(g_dir, &R77, 1);
	assert_int_equal(dnsmasq_pid(d2), pid);
	dnsmasq_free(d2);
	assert_true(alive(pid)); /* freeing a handle leaves it running */
	/* Ranges given twice or in another order are the same configuration. */
	struct net_cidr twice[] = { R77, R77 };
	d2 = ensure(g_dir, twice, 2);
	assert_int_equal(dnsmasq_pid(d2), pid);
	dnsmasq_free(d2);
}

static void ensure_adopts_without_record(void **state)
{
	(void)state;
	/* unikd died between starting dnsmasq and writing the record: dnsmasq's own pid file
	 * finds it, and the record is written again. */
	pid_t pid = dnsmasq_pid(g_d);
	char path[256];
	path_in(path, sizeof(path), g_dir, "dnsmasq.pid");
	assert_int_equal(unlink(path), 0);
	struct dnsmasq *d2 = ensure(g_dir, &R77, 1);
	assert_int_equal(dnsmasq_pid(d2), pid);
	dnsmasq_free(d2);
	char *rec = slurp(path);
	assert_non_null(rec);
	free(rec);
	/* A record whose start time does not match (a recycled pid) is not trusted, but the
	 * pid file still leads to the right process. */
	char fake[128];
	snprintf(fake, sizeof(fake), "{\"pid\":%d,\"start_time\":1}\n", (int)pid);
	assert_int_equal(uk_write_file_atomic(path, fake, strlen(fake), 0644, NULL), 0);
	d2 = ensure(g_dir, &R77, 1);
	assert_int_equal(dnsmasq_pid(d2), pid);
	dnsmasq_free(d2);
}

static void ensure_restarts_on_new_ranges(void **state)
{
	(void)state;
	pid_t old = dnsmasq_pid(g_d);
	struct net_cidr two[] = { R88, R77 };
	struct dnsmasq *d2 = ensure(g_dir, two, 2);
	pid_t pid = dnsmasq_pid(d2);
	assert_true(pid > 0);
	assert_int_not_equal(pid, old);
	assert_true(wait_dead(old, 1000));
	const char *ranges[] = { "10.77.0.0,static,255.255.0.0", "10.88.0.0,static,255.255.255.0", NULL };
	assert_cmdline(pid, g_dir, ranges);
	dnsmasq_free(g_d);
	g_d = d2;
	/* And back. */
	d2 = ensure(g_dir, &R77, 1);
	assert_int_not_equal(dnsmasq_pid(d2), pid);
	assert_true(wait_dead(pid, 1000));
	dnsmasq_free(g_d);
	g_d = d2;
}

static void check_restarts_after_kill(void **state)
{
	(void)state;
	uk_error err = { 0 };
	assert_int_equal(dnsmasq_check(g_d, &err), 0);
	pid_t old = dnsmasq_pid(g_d);
	int pidfd = dnsmasq_pidfd(g_d);
	assert_int_equal(kill(old, SIGKILL), 0);
	/* What a supervisor does: wait on the pidfd, then check. */
	struct pollfd p = { .fd = pidfd, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 5000), 1);
	close(pidfd);
	assert_int_equal(dnsmasq_check(g_d, &err), 1);
	pid_t pid = dnsmasq_pid(g_d);
	assert_true(pid > 0);
	assert_int_not_equal(pid, old);
	assert_true(alive(pid));
	assert_int_equal(dnsmasq_check(g_d, &err), 0);
	const char *ranges[] = { "10.77.0.0,static,255.255.0.0", NULL };
	assert_cmdline(pid, g_dir, ranges);
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* A new handle on dir adopts the dnsmasq that runs there, pid. */
static struct dnsmasq *readopt(struct dnsmasq *d, const char *dir, pid_t pid)
{
	dnsmasq_free(d);
	d = ensure(dir, &R88, 1);
	assert_int_equal(dnsmasq_pid(d), pid);
	return d;
}

/* Add a host; whether dnsmasq restarted for it. */
static bool add_restarts(struct dnsmasq *d, const char *id, const char *mac, const char *ip)
{
	uk_error err = { 0 };
	pid_t before = dnsmasq_pid(d);
	assert_int_equal(dnsmasq_add_host(d, id, mac, ip4(ip), NULL, NULL, &err), 0);
	return dnsmasq_pid(d) != before;
}

static void host_files(void **state)
{
	(void)state;
	uk_error err = { 0 };
	char *servers[] = { "10.96.0.10", "2001:db8::53", "8.8.8.8", NULL };
	char *searches[] = { "default.svc.cluster.local", "svc.cluster.local", "cluster.local.", NULL };
	char *options[] = { "ndots:5", NULL };
	struct dns_options dns = { servers, searches, options };
	assert_int_equal(dnsmasq_add_host(g_d, "sbx-1", "02:AB:cd:00:00:01", ip4("10.77.0.5"), "web-0", &dns, &err), 0);
	char path[256];
	path_in(path, sizeof(path), g_dir, "hosts.d/sbx-1");
	char *h = slurp(path);
	assert_non_null(h);
	assert_string_equal(h, "02:ab:cd:00:00:01,set:uk-sbx-1,10.77.0.5,web-0\n");
	free(h);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	path_in(path, sizeof(path), g_dir, "opts.d/sbx-1");
	char *o = slurp(path);
	assert_non_null(o);
	assert_string_equal(o, "tag:uk-sbx-1,option:dns-server,10.96.0.10,8.8.8.8\n"
			       "tag:uk-sbx-1,option:domain-search,default.svc.cluster.local,svc.cluster.local,"
			       "cluster.local\n");
	free(o);
	/* Nothing left in tmp/. */
	path_in(path, sizeof(path), g_dir, "tmp");
	assert_int_equal(count_entries(path), 0);

	/* No hostname and no DNS: a bare host line, no options file. A new host needs no
	 * restart: dnsmasq reads the new files by itself. */
	pid_t pid = dnsmasq_pid(g_d);
	assert_int_equal(dnsmasq_add_host(g_d, "sbx-2", "02:ab:cd:00:00:02", ip4("10.77.0.6"), NULL, NULL, &err), 0);
	assert_int_equal(dnsmasq_pid(g_d), pid);
	path_in(path, sizeof(path), g_dir, "hosts.d/sbx-2");
	h = slurp(path);
	assert_string_equal(h, "02:ab:cd:00:00:02,set:uk-sbx-2,10.77.0.6\n");
	free(h);
	path_in(path, sizeof(path), g_dir, "opts.d/sbx-2");
	assert_int_equal(access(path, F_OK), -1);
	/* Adding again with the same data is a no-op. A removal restarts nothing: the host
	 * file moves to stale.d/ (dnsmasq.c, "stale hosts"); removing again is a no-op. */
	assert_int_equal(dnsmasq_add_host(g_d, "sbx-2", "02:ab:cd:00:00:02", ip4("10.77.0.6"), "", NULL, &err), 0);
	assert_int_equal(dnsmasq_pid(g_d), pid);
	/* Once dnsmasq has read it, as it has any pod's by the time the pod goes (a file gone
	 * before dnsmasq gets to it is logged as unreadable, which dhcp_end_to_end checks for). */
	char log[256], read_line[300];
	path_in(log, sizeof(log), g_dir, "dnsmasq.log");
	snprintf(read_line, sizeof(read_line), "read %s/hosts.d/sbx-2", g_dir);
	assert_true(wait_file(log, has_text, read_line, 3000));
	assert_int_equal(dnsmasq_remove_host(g_d, "sbx-2", &err), 0);
	assert_int_equal(dnsmasq_pid(g_d), pid);
	path_in(path, sizeof(path), g_dir, "hosts.d/sbx-2");
	assert_int_equal(access(path, F_OK), -1);
	path_in(path, sizeof(path), g_dir, "stale.d/sbx-2");
	h = slurp(path);
	assert_string_equal(h, "02:ab:cd:00:00:02,set:uk-sbx-2,10.77.0.6\n");
	free(h);
	assert_int_equal(dnsmasq_remove_host(g_d, "sbx-2", &err), 0);
	assert_int_equal(dnsmasq_remove_host(g_d, "never-added", &err), 0);
	assert_int_equal(dnsmasq_pid(g_d), pid);
	assert_int_equal(dnsmasq_remove_host(g_d, "sbx-1", &err), 0);
	path_in(path, sizeof(path), g_dir, "hosts.d/sbx-1");
	assert_int_equal(access(path, F_OK), -1);
	path_in(path, sizeof(path), g_dir, "opts.d/sbx-1");
	assert_int_equal(access(path, F_OK), -1);
}

static void dhcp_end_to_end(void **state)
{
	(void)state;
	uk_error err = { 0 };
	const uint8_t mac[6] = { 0x02, 0xab, 0xcd, 0x00, 0x00, 0x11 };
	const char *macs = "02:ab:cd:00:00:11";
	char *servers[] = { "10.96.0.10", "1.1.1.1", NULL };
	char *searches[] = { "ns1.svc.cluster.local", "cluster.local", NULL };
	struct dns_options dns = { servers, searches, NULL };
	char leases[256], log[256];
	path_in(leases, sizeof(leases), g_dir, "leases");
	path_in(log, sizeof(log), g_dir, "dnsmasq.log");

	/* Unknown to dnsmasq: no answer (static leases only). */
	struct dhcp_answer a = dhcp(mac, 1, 0, 0, 1200);
	assert_false(a.got);

	assert_int_equal(dnsmasq_add_host(g_d, "pod-a", macs, ip4("10.77.0.20"), "pod-a", &dns, &err), 0);
	struct dhcp_answer ack = dora(mac);
	assert_int_equal(ack.yiaddr, ip4("10.77.0.20"));
	assert_int_equal(ack.server, ip4("10.77.0.1"));
	assert_int_equal(ack.router, ip4("10.77.0.1"));
	assert_int_equal(ack.mask, ip4("255.255.0.0"));
	assert_int_equal(ack.n_dns, 2);
	assert_int_equal(ack.dns[0], ip4("10.96.0.10"));
	assert_int_equal(ack.dns[1], ip4("1.1.1.1"));
	assert_string_equal(ack.search, "ns1.svc.cluster.local cluster.local");
	assert_string_equal(ack.hostname, "pod-a");

	/* The lease, as dnsmasq wrote it. */
	assert_true(wait_file(leases, has_text, macs, 3000));
	int64_t expiry = 0;
	assert_int_equal(dnsmasq_lease_of(g_d, macs, &expiry, &err), 1);
	assert_true(expiry > (int64_t)time(NULL));
	assert_int_equal(dnsmasq_lease_of(g_d, "02:AB:CD:00:00:11", NULL, &err), 1);
	assert_int_equal(dnsmasq_lease_of(g_d, "02:ab:cd:00:00:99", NULL, &err), 0);

	/* A changed address: dnsmasq is restarted to forget the old entry. */
	pid_t pid = dnsmasq_pid(g_d);
	assert_int_equal(dnsmasq_add_host(g_d, "pod-a", macs, ip4("10.77.0.21"), "pod-a", &dns, &err), 0);
	assert_int_not_equal(dnsmasq_pid(g_d), pid);
	ack = dora(mac);
	assert_int_equal(ack.yiaddr, ip4("10.77.0.21"));
	/* Changed DNS settings alone restart it too, and reach the client. */
	char *servers2[] = { "10.96.0.11", NULL };
	struct dns_options dns2 = { servers2, NULL, NULL };
	pid = dnsmasq_pid(g_d);
	assert_int_equal(dnsmasq_add_host(g_d, "pod-a", macs, ip4("10.77.0.21"), "pod-a", &dns2, &err), 0);
	assert_int_not_equal(dnsmasq_pid(g_d), pid);
	ack = dora(mac);
	assert_int_equal(ack.n_dns, 1);
	assert_int_equal(ack.dns[0], ip4("10.96.0.11"));
	assert_string_equal(ack.search, "");

	/* A host without DNS settings gets no DNS option: dnsmasq serves no DNS (--port=0). */
	const uint8_t mac2[6] = { 0x02, 0xab, 0xcd, 0x00, 0x00, 0x12 };
	assert_int_equal(dnsmasq_add_host(g_d, "pod-b", "02:ab:cd:00:00:12", ip4("10.77.0.30"), NULL, NULL, &err), 0);
	a = dhcp(mac2, 1, 0, 0, 4000);
	assert_true(a.got);
	assert_int_equal(a.yiaddr, ip4("10.77.0.30"));
	assert_int_equal(a.n_dns, 0);
	assert_string_equal(a.search, "");
	assert_string_equal(a.hostname, "");
	ack = dora(mac2); /* pod-b holds a lease too */
	assert_int_equal(ack.yiaddr, ip4("10.77.0.30"));
	assert_true(wait_file(leases, has_text, "10.77.0.30", 3000));

	/* A removal leaves dnsmasq as it is: pod-a goes stale, its lease kept. Its address
	 * given to another MAC restarts dnsmasq, which forgets the stale host and drops its
	 * lease first, so the address goes to the new MAC. */
	assert_true(wait_file(leases, has_text, "10.77.0.21", 3000));
	pid = dnsmasq_pid(g_d);
	assert_int_equal(dnsmasq_remove_host(g_d, "pod-a", &err), 0);
	assert_int_equal(dnsmasq_pid(g_d), pid);
	assert_int_equal(dnsmasq_lease_of(g_d, macs, NULL, &err), 1);
	/* pod-a had options: their removal went unseen (dnsmasq deals with file events before
	 * the next packet). */
	ack = dora(mac2);
	assert_int_equal(ack.yiaddr, ip4("10.77.0.30"));
	char *lg = slurp(log);
	assert_non_null(lg);
	assert_null(strstr(lg, "cannot read"));
	free(lg);
	assert_int_equal(dnsmasq_add_host(g_d, "pod-c", "02:ab:cd:00:00:13", ip4("10.77.0.21"), NULL, NULL, &err), 0);
	assert_int_not_equal(dnsmasq_pid(g_d), pid);
	char *lf = slurp(leases);
	assert_non_null(lf);
	assert_null(strstr(lf, macs));
	free(lf);
	assert_int_equal(dnsmasq_lease_of(g_d, macs, NULL, &err), 0);
	assert_int_equal(dnsmasq_lease_of(g_d, "02:ab:cd:00:00:12", NULL, &err), 1); /* pod-b's stays */
	a = dhcp(mac, 1, 0, 0, 1200);
	assert_false(a.got);
	const uint8_t mac3[6] = { 0x02, 0xab, 0xcd, 0x00, 0x00, 0x13 };
	ack = dora(mac3);
	assert_int_equal(ack.yiaddr, ip4("10.77.0.21"));

	/* A pod made again under a stale pod's hostname (a StatefulSet's): the name goes to the
	 * new one, without a restart or a complaint. */
	const uint8_t mac4[6] = { 0x02, 0xab, 0xcd, 0x00, 0x00, 0x14 }, mac5[6] = { 0x02, 0xab, 0xcd, 0x00, 0x00, 0x15 };
	assert_int_equal(dnsmasq_add_host(g_d, "pod-d", "02:ab:cd:00:00:14", ip4("10.77.0.40"), "web-0", NULL, &err), 0);
	ack = dora(mac4);
	assert_string_equal(ack.hostname, "web-0");
	pid = dnsmasq_pid(g_d);
	assert_int_equal(dnsmasq_remove_host(g_d, "pod-d", &err), 0);
	assert_int_equal(dnsmasq_add_host(g_d, "pod-e", "02:ab:cd:00:00:15", ip4("10.77.0.41"), "web-0", NULL, &err), 0);
	assert_int_equal(dnsmasq_pid(g_d), pid);
	ack = dora(mac5);
	assert_int_equal(ack.yiaddr, ip4("10.77.0.41"));
	assert_string_equal(ack.hostname, "web-0");

	assert_int_equal(dnsmasq_remove_host(g_d, "pod-b", &err), 0);
	assert_int_equal(dnsmasq_remove_host(g_d, "pod-c", &err), 0);
	assert_int_equal(dnsmasq_remove_host(g_d, "pod-e", &err), 0);
	/* Every file was read once: no temp file or close was seen as a second version. */
	char *l = slurp(log);
	assert_non_null(l);
	const char *bad[] = { "duplicate", "bad ", "not using configured address", "cannot read" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *at = strstr(l, bad[i]);
		if (at) {
			const char *from = at - l > 300 ? at - 300 : l;
			fail_msg("dnsmasq complained (\"%s\"):\n%.600s", bad[i], from);
		}
	}
	free(l);
}

static void bad_inputs(void **state)
{
	(void)state;
	uk_error err = { 0 };
	uint32_t ip = ip4("10.77.0.9");
	const char *mac = "02:00:00:00:00:09";
#define REJECT(call, word)                                                                                             \
	do {                                                                                                           \
		memset(&err, 0, sizeof(err));                                                                          \
		assert_int_equal((call), -EINVAL);                                                                     \
		if (!strstr(err.msg, word))                                                                            \
			fail_msg("message \"%s\" does not name \"%s\"", err.msg, word);                                \
	} while (0)
	REJECT(dnsmasq_add_host(g_d, "../x", mac, ip, NULL, NULL, &err), "sandbox id");
	REJECT(dnsmasq_add_host(g_d, NULL, mac, ip, NULL, NULL, &err), "sandbox id");
	REJECT(dnsmasq_add_host(g_d, "s", "02:00:00:00:00", ip, NULL, NULL, &err), "mac");
	REJECT(dnsmasq_add_host(g_d, "s", "02-00-00-00-00-09", ip, NULL, NULL, &err), "mac");
	REJECT(dnsmasq_add_host(g_d, "s", "02:00:00:00:00:0g", ip, NULL, NULL, &err), "mac");
	REJECT(dnsmasq_add_host(g_d, "s", mac, ip4("10.99.0.9"), NULL, NULL, &err), "ip 10.99.0.9");
	REJECT(dnsmasq_add_host(g_d, "s", mac, ip4("10.77.0.0"), NULL, NULL, &err), "ip");
	REJECT(dnsmasq_add_host(g_d, "s", mac, ip4("10.77.255.255"), NULL, NULL, &err), "ip");
	REJECT(dnsmasq_add_host(g_d, "s", mac, ip, "a_b", NULL, &err), "hostname");
	REJECT(dnsmasq_add_host(g_d, "s", mac, ip, "-ab", NULL, &err), "hostname");
	REJECT(dnsmasq_add_host(g_d, "s", mac, ip, "a.b", NULL, &err), "hostname");
	REJECT(dnsmasq_add_host(g_d, "s", mac, ip, "1234", NULL, &err), "hostname");
	REJECT(dnsmasq_add_host(g_d, "s", mac, ip, "10m", NULL, &err), "hostname");
	REJECT(dnsmasq_add_host(g_d, "s", mac, ip, "ignore", NULL, &err), "hostname");
	char longname[70];
	memset(longname, 'a', 64);
	longname[64] = '\0';
	REJECT(dnsmasq_add_host(g_d, "s", mac, ip, longname, NULL, &err), "hostname");
	char *bad_server[] = { "10.0.0", NULL };
	struct dns_options d1 = { bad_server, NULL, NULL };
	REJECT(dnsmasq_add_host(g_d, "s", mac, ip, NULL, &d1, &err), "dns server \"10.0.0\"");
	char *bad_server2[] = { "dns.example.com", NULL };
	struct dns_options d2 = { bad_server2, NULL, NULL };
	REJECT(dnsmasq_add_host(g_d, "s", mac, ip, NULL, &d2, &err), "dns server");
	char *bad_search[] = { "ok.example", "bad_label.example", NULL };
	struct dns_options d3 = { NULL, bad_search, NULL };
	REJECT(dnsmasq_add_host(g_d, "s", mac, ip, NULL, &d3, &err), "dns search \"bad_label.example\"");
	char *bad_search2[] = { "a..b", NULL };
	struct dns_options d4 = { NULL, bad_search2, NULL };
	REJECT(dnsmasq_add_host(g_d, "s", mac, ip, NULL, &d4, &err), "dns search");
	char *many[40];
	for (int i = 0; i < 39; i++)
		many[i] = "a-fairly-long-search-domain.example.com";
	many[39] = NULL;
	struct dns_options d5 = { NULL, many, NULL };
	REJECT(dnsmasq_add_host(g_d, "s", mac, ip, NULL, &d5, &err), "dns searches");
	/* Only IPv6 servers: skipped, not an error; no options file. */
	char *v6[] = { "2001:db8::1", NULL };
	struct dns_options d6 = { v6, NULL, NULL };
	assert_int_equal(dnsmasq_add_host(g_d, "s", mac, ip, NULL, &d6, &err), 0);
	char path[256];
	path_in(path, sizeof(path), g_dir, "opts.d/s");
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(dnsmasq_remove_host(g_d, "s", &err), 0);
	/* Nothing was written by the rejected calls. */
	path_in(path, sizeof(path), g_dir, "hosts.d/s");
	assert_int_equal(access(path, F_OK), -1);
	REJECT(dnsmasq_remove_host(g_d, "a/b", &err), "sandbox id");
	REJECT(dnsmasq_lease_of(g_d, "nope", NULL, &err), "mac");

	/* Configuration. */
	struct dnsmasq *d = NULL;
	struct dnsmasq_config c = config(g_dir, &R77, 1);
	c.bridge = "bad/name";
	REJECT(dnsmasq_ensure(&c, &d, &err), "bridge");
	c = config(g_dir, &R77, 1);
	c.bridge = "averyveryverylongname";
	REJECT(dnsmasq_ensure(&c, &d, &err), "bridge");
	c = config(g_dir, &R77, 1);
	c.binary = "dnsmasq";
	REJECT(dnsmasq_ensure(&c, &d, &err), "binary");
	c = config(g_dir, NULL, 0);
	REJECT(dnsmasq_ensure(&c, &d, &err), "ranges");
	struct net_cidr hostbits = { ip4("10.77.0.1"), 16 };
	c = config(g_dir, &hostbits, 1);
	REJECT(dnsmasq_ensure(&c, &d, &err), "10.77.0.1/16");
	struct net_cidr tiny = { ip4("10.77.0.0"), 31 };
	c = config(g_dir, &tiny, 1);
	REJECT(dnsmasq_ensure(&c, &d, &err), "prefix");
	assert_null(d);
#undef REJECT
}

static void start_failure_message(void **state)
{
	(void)state;
	/* dnsmasq's own reason reaches the error: here, a bridge that does not exist. */
	char dir[160];
	snprintf(dir, sizeof(dir), "%s/nobridge", g_root);
	struct dnsmasq_config c = config(dir, &R77, 1);
	c.bridge = "ukmissing0";
	struct dnsmasq *d = NULL;
	uk_error err = { 0 };
	assert_int_equal(dnsmasq_ensure(&c, &d, &err), -EIO);
	assert_null(d);
	if (!strstr(err.msg, "unknown interface ukmissing0") || !strstr(err.msg, "ukmissing0"))
		fail_msg("unexpected message: %s", err.msg);
	/* And a directory dnsmasq could not read once it drops privileges. */
	char locked[160], inner[200];
	snprintf(locked, sizeof(locked), "%s/locked", g_root);
	snprintf(inner, sizeof(inner), "%s/dnsmasq", locked);
	assert_int_equal(mkdir(locked, 0700), 0);
	c = config(inner, &R77, 1);
	assert_int_equal(dnsmasq_ensure(&c, &d, &err), -EACCES);
	if (!strstr(err.msg, locked))
		fail_msg("unexpected message: %s", err.msg);
}

static void lease_parsing(void **state)
{
	(void)state;
	/* A stopped instance of its own, so the lease file is ours to write. */
	char dir[160], path[200];
	snprintf(dir, sizeof(dir), "%s/leasetest", g_root);
	struct dnsmasq_config c = config(dir, &R88, 1);
	struct dnsmasq *d = NULL;
	uk_error err = { 0 };
	if (dnsmasq_ensure(&c, &d, &err) < 0)
		fail_msg("%s", err.msg);
	pid_t pid = dnsmasq_pid(d);
	assert_int_equal(dnsmasq_stop(d, &err), 0);
	assert_true(wait_dead(pid, 1000));
	assert_int_equal(dnsmasq_stop(d, &err), 0); /* idempotent */
	long long future = (long long)time(NULL) + 3600, past = (long long)time(NULL) - 10;
	char text[1024];
	snprintf(text, sizeof(text),
		 "%lld 02:00:00:00:00:01 10.88.0.5 web-0 01:02:00:00:00:00:01\n"
		 "%lld 02:00:00:00:00:02 10.88.0.6 * *\n"
		 "0 02:00:00:00:00:03 10.88.0.7 * *\n"
		 "garbage line\n"
		 "123 not-a-mac 10.88.0.8 * *\n"
		 "duid 00:01:00:01:2c:5a:1b:3a:02:00:00:00:00:01\n"
		 "%lld 1234 2001:db8::5 * 00:01:00:01\n"
		 "\n",
		 future, past, future);
	path_in(path, sizeof(path), dir, "leases");
	assert_int_equal(uk_write_file_atomic(path, text, strlen(text), 0644, NULL), 0);
	int64_t exp = -1;
	assert_int_equal(dnsmasq_lease_of(d, "02:00:00:00:00:01", &exp, &err), 1);
	assert_int_equal(exp, future);
	assert_int_equal(dnsmasq_lease_of(d, "02:00:00:00:00:01", NULL, &err), 1);
	assert_int_equal(dnsmasq_lease_of(d, "02:00:00:00:00:02", &exp, &err), 0); /* expired */
	assert_int_equal(dnsmasq_lease_of(d, "02:00:00:00:00:03", &exp, &err), 1); /* infinite */
	assert_int_equal(exp, 0);
	assert_int_equal(dnsmasq_lease_of(d, "02:00:00:00:00:04", &exp, &err), 0);
	/* No lease file at all. */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(dnsmasq_lease_of(d, "02:00:00:00:00:01", &exp, &err), 0);
	/* Stopped: files stay, the process and its records are gone. */
	path_in(path, sizeof(path), dir, "dnsmasq.pid");
	assert_int_equal(access(path, F_OK), -1);
	path_in(path, sizeof(path), dir, "daemon.pid");
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(dnsmasq_pidfd(d), -1);
	dnsmasq_free(d);
}

static off_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* dnsmasq.log stays bounded through pod churn. Every removal restarts dnsmasq, and every
 * start logs a line per file in hosts.d/ and opts.d/: with pods that stay, the log grew
 * quadratically in churn. Past log_max it becomes dnsmasq.log.1 (one old file kept). */
static void log_stays_bounded(void **state)
{
	(void)state;
	enum { LOG_MAX = 16 * 1024, KEEP = 20, CYCLES = 40 };
	char dir[160], log[200], old[200];
	snprintf(dir, sizeof(dir), "%s/logtest", g_root);
	path_in(log, sizeof(log), dir, "dnsmasq.log");
	path_in(old, sizeof(old), dir, "dnsmasq.log.1");
	struct dnsmasq_config c = config(dir, &R88, 1);
	c.log_max = LOG_MAX;
	struct dnsmasq *d = NULL;
	uk_error err = { 0 };
	if (dnsmasq_ensure(&c, &d, &err) < 0)
		fail_msg("%s", err.msg);
	char id[32], mac[18];
	for (int i = 0; i < KEEP; i++) {
		snprintf(id, sizeof(id), "keep-%d", i);
		snprintf(mac, sizeof(mac), "02:00:00:00:01:%02x", i);
		assert_int_equal(dnsmasq_add_host(d, id, mac, ip4("10.88.0.10") + (uint32_t)i, NULL, NULL, &err), 0);
	}
	off_t most = 0, most_old = 0;
	for (int i = 0; i < CYCLES; i++) {
		snprintf(id, sizeof(id), "churn-%d", i);
		snprintf(mac, sizeof(mac), "02:00:00:00:02:%02x", i);
		assert_int_equal(dnsmasq_add_host(d, id, mac, ip4("10.88.0.100") + (uint32_t)i, NULL, NULL, &err), 0);
		pid_t before = dnsmasq_pid(d);
		/* A changed address restarts it. */
		assert_int_equal(dnsmasq_add_host(d, id, mac, ip4("10.88.0.150") + (uint32_t)i, NULL, NULL, &err), 0);
		assert_int_not_equal(dnsmasq_pid(d), before);
		assert_int_equal(dnsmasq_remove_host(d, id, &err), 0);
		off_t n = file_size(log), o = file_size(old);
		most = n > most ? n : most;
		most_old = o > most_old ? o : most_old;
	}
	/* Each start adds one start's lines (about 3 KiB here) after the check: 2x is generous,
	 * and far below the ~110 KiB these 40 restarts log. */
	if (most > 2 * LOG_MAX || most_old > 2 * LOG_MAX)
		fail_msg("dnsmasq.log reached %lld bytes, dnsmasq.log.1 %lld (bound %d)", (long long)most,
			 (long long)most_old, LOG_MAX);
	assert_true(most_old > LOG_MAX / 2); /* it did rotate */

	/* A running dnsmasq is rotated too (SIGUSR2), and goes on logging into the new file,
	 * which it can reopen as its unprivileged user. */
	pid_t pid = dnsmasq_pid(d);
	for (int i = 0; file_size(log) <= LOG_MAX; i++) {
		assert_true(i < 400);
		snprintf(id, sizeof(id), "fill-%d", i);
		snprintf(mac, sizeof(mac), "02:00:00:00:03:%02x", i % 256);
		assert_int_equal(dnsmasq_add_host(d, id, mac, ip4("10.88.0.1") + (uint32_t)(i % 8), NULL, NULL, &err), 0);
		char line[64];
		snprintf(line, sizeof(line), "hosts.d/%s", id);
		assert_true(wait_file(log, has_text, line, 5000));
	}
	assert_int_equal(dnsmasq_bound_log(d, &err), 1);
	assert_int_equal(dnsmasq_pid(d), pid);
	struct stat a, b;
	assert_int_equal(stat(log, &a), 0);
	assert_int_equal(stat(old, &b), 0);
	assert_true(a.st_size < b.st_size);
	assert_int_equal(a.st_uid, b.st_uid);
	assert_int_equal(a.st_mode, b.st_mode);
	assert_int_equal(dnsmasq_add_host(d, "after-rotation", "02:00:00:00:04:01", ip4("10.88.0.200"), NULL, NULL, &err),
			 0);
	assert_true(wait_file(log, has_text, "hosts.d/after-rotation", 5000));
	assert_int_equal(dnsmasq_bound_log(d, &err), 0);
	assert_int_equal(dnsmasq_stop(d, &err), 0);
	dnsmasq_free(d);
}


/* Removed hosts stay with dnsmasq as stale entries, up to DNSMASQ_STALE_MAX, without a
 * restart; the removal after that restarts it. A restarted unikd adopting dnsmasq knows
 * them from stale.d/, and a new host that takes one's address restarts it; a file there it
 * cannot read counts against every new host. Each start forgets them all. */
static void stale_hosts(void **state)
{
	(void)state;
	char dir[160], stale[200], id[32], mac[18];
	snprintf(dir, sizeof(dir), "%s/staletest", g_root);
	path_in(stale, sizeof(stale), dir, "stale.d");
	struct dnsmasq *d = ensure(dir, &R88, 1);
	uk_error err = { 0 };
	pid_t pid = dnsmasq_pid(d);
	for (int i = 0; i <= DNSMASQ_STALE_MAX; i++) {
		snprintf(id, sizeof(id), "st-%d", i);
		snprintf(mac, sizeof(mac), "02:00:00:00:05:%02x", i);
		assert_int_equal(dnsmasq_add_host(d, id, mac, ip4("10.88.0.10") + (uint32_t)i, NULL, NULL, &err), 0);
		assert_int_equal(dnsmasq_remove_host(d, id, &err), 0);
		if (i < DNSMASQ_STALE_MAX) {
			assert_int_equal(dnsmasq_pid(d), pid);
			assert_int_equal(count_entries(stale), i + 1);
		}
	}
	assert_int_not_equal(dnsmasq_pid(d), pid); /* the one past the bound */
	assert_int_equal(count_entries(stale), 0);
	pid = dnsmasq_pid(d);

	/* Two stale hosts; a new handle adopts the same dnsmasq. */
	assert_int_equal(dnsmasq_add_host(d, "a-1", "02:00:00:00:06:01", ip4("10.88.0.101"), NULL, NULL, &err), 0);
	assert_int_equal(dnsmasq_add_host(d, "a-2", "02:00:00:00:06:02", ip4("10.88.0.102"), NULL, NULL, &err), 0);
	assert_int_equal(dnsmasq_remove_host(d, "a-1", &err), 0);
	assert_int_equal(dnsmasq_remove_host(d, "a-2", &err), 0);
	d = readopt(d, dir, pid);
	assert_false(add_restarts(d, "b-1", "02:00:00:00:07:01", "10.88.0.111")); /* fresh address, MAC, id */
	/* a-2's MAC restarts it; the start forgot a-1 too, so a-1's address then does not. */
	assert_true(add_restarts(d, "b-2", "02:00:00:00:06:02", "10.88.0.112"));
	assert_int_equal(count_entries(stale), 0);
	assert_false(add_restarts(d, "b-3", "02:00:00:00:07:03", "10.88.0.101"));

	/* A stale.d/ file that is not a host line of ours: every new host restarts dnsmasq,
	 * once, and the start clears it. */
	char junk[256];
	path_in(junk, sizeof(junk), stale, "c-0");
	FILE *f = fopen(junk, "we");
	assert_non_null(f);
	fputs("not a host line\n", f);
	fclose(f);
	d = readopt(d, dir, dnsmasq_pid(d));
	assert_true(add_restarts(d, "c-1", "02:00:00:00:08:01", "10.88.0.121"));
	assert_int_equal(count_entries(stale), 0);
	assert_false(add_restarts(d, "c-2", "02:00:00:00:08:02", "10.88.0.122"));
	assert_int_equal(dnsmasq_stop(d, &err), 0);
	dnsmasq_free(d);
}

static void stop_stops(void **state)
{
	(void)state;
	uk_error err = { 0 };
	pid_t pid = dnsmasq_pid(g_d);
	assert_int_equal(dnsmasq_stop(g_d, &err), 0);
	assert_true(wait_dead(pid, 100));
	assert_int_equal(dnsmasq_pid(g_d), 0);
	assert_int_equal(dnsmasq_stop(g_d, &err), 0);
	/* A new handle on the same dir finds nothing to adopt and starts a fresh one. */
	struct dnsmasq *d = ensure(g_dir, &R77, 1);
	assert_int_not_equal(dnsmasq_pid(d), pid);
	assert_int_equal(dnsmasq_stop(d, &err), 0);
	dnsmasq_free(d);
}

static int run_all(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ensure_starts),
		cmocka_unit_test(ensure_adopts),
		cmocka_unit_test(ensure_adopts_without_record),
		cmocka_unit_test(ensure_restarts_on_new_ranges),
		cmocka_unit_test(check_restarts_after_kill),
		cmocka_unit_test(host_files),
		cmocka_unit_test(dhcp_end_to_end),
		cmocka_unit_test(bad_inputs),
		cmocka_unit_test(start_failure_message),
		cmocka_unit_test(lease_parsing),
		cmocka_unit_test(log_stays_bounded),
		cmocka_unit_test(stale_hosts),
		cmocka_unit_test(stop_stops),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/* Kill whatever still names the test directory (a dnsmasq a failed test left behind). */
static int sweep(const char *root)
{
	int found = 0;
	DIR *proc = opendir("/proc");
	if (!proc)
		return 0;
	for (struct dirent *e; (e = readdir(proc));) {
		uint64_t pid;
		if (uk_parse_u64(e->d_name, 1, INT32_MAX, &pid) < 0 || (pid_t)pid == getpid())
			continue;
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
		char *c = NULL;
		size_t len = 0;
		if (uk_read_file(path, 65536, &c, &len, NULL) < 0)
			continue;
		for (size_t i = 0; i < len; i++)
			if (!c[i])
				c[i] = ' ';
		if (strstr(c, root)) {
			fprintf(stderr, "leftover process %d: %s\n", (int)pid, c);
			kill((pid_t)pid, SIGKILL);
			found++;
		}
		free(c);
	}
	closedir(proc);
	return found;
}

int main(void)
{
	if (geteuid() != 0) {
		printf("test_dnsmasq: skipped, needs root (network namespaces, dnsmasq)\n");
		return 0;
	}
	if (access("/usr/sbin/dnsmasq", X_OK) < 0) {
		printf("test_dnsmasq: skipped, /usr/sbin/dnsmasq is missing (dnsmasq-base)\n");
		return 0;
	}
	snprintf(g_root, sizeof(g_root), "/tmp/uk-test-dnsmasq-XXXXXX");
	if (!mkdtemp(g_root) || chmod(g_root, 0755) < 0) {
		perror("mkdtemp");
		return 1;
	}
	/* The dnsmasqs daemonize: as a subreaper we get (and reap) them when they end. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	fflush(stdout);
	pid_t child = fork();
	if (child < 0)
		return 1;
	if (child == 0)
		_exit(run_all() == 0 ? 0 : 1);
	int status = 1 << 8, st;
	for (pid_t w; (w = waitpid(-1, &st, 0)) != -1 || errno == EINTR;)
		if (w == child) {
			status = st;
			break;
		}
	int leaked = sweep(g_root);
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
	uk_rm_rf(g_root, NULL);
	if (leaked) {
		fprintf(stderr, "test_dnsmasq: %d process(es) outlived the tests\n", leaked);
		return 1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
