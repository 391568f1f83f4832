/* Tests for src/net/nat.c with the real nftables, inside a private network namespace (root
 * only): the table's contents, idempotence, hostPort elements and their conflicts, bad
 * input, teardown, and real traffic through the DNAT, hairpin and masquerade rules between
 * three namespaces (a pod, the node, an outside host). The namespaces vanish with the test
 * processes, whatever happens to them. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <nftables/libnftables.h>

#include "../../src/common/util.h"
#include "../../src/net/net.h"

static uint32_t ip4(const char *s)
{
	struct in_addr a;
	assert_int_equal(inet_pton(AF_INET, s, &a), 1);
	return ntohl(a.s_addr);
}

/* ---- looking at the ruleset, with libnftables itself ---- */

static char *nft_out(const char *cmd, bool json)
{
	struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	assert_non_null(ctx);
	nft_ctx_buffer_output(ctx);
	nft_ctx_buffer_error(ctx);
	if (json)
		nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON);
	char *out = NULL;
	if (nft_run_cmd_from_buffer(ctx, cmd) == 0)
		out = strdup(nft_ctx_get_output_buffer(ctx));
	nft_ctx_free(ctx);
	return out;
}

static char *table_text(void)
{
	char *t = nft_out("list table ip unikd", false);
	assert_non_null(t);
	return t;
}

static bool table_exists(void)
{
	char *t = nft_out("list tables ip", false);
	assert_non_null(t);
	bool r = strstr(t, "table ip unikd") != NULL;
	free(t);
	return r;
}

static int count(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("missing \"%s\" in:\n%s", needle, hay);
}

static void assert_lacks(const char *hay, const char *needle)
{
	if (strstr(hay, needle))
		fail_msg("unexpected \"%s\" in:\n%s", needle, hay);
}

/* The elements of one map in nft's JSON, e.g. [8080, {"concat": ["10.77.0.5", 80]}]. */
static char *map_json(const char *map)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "list map ip unikd %s", map);
	char *j = nft_out(cmd, true);
	assert_non_null(j);
	return j;
}

static bool has_any(const char *proto, int host_port, const char *pod, int port)
{
	char map[32], want[128];
	snprintf(map, sizeof(map), "hp_%s_any", proto);
	snprintf(want, sizeof(want), "[%d, {\"concat\": [\"%s\", %d]}]", host_port, pod, port);
	char *j = map_json(map);
	bool r = strstr(j, want) != NULL;
	free(j);
	return r;
}

static bool has_ip(const char *proto, const char *host, int host_port, const char *pod, int port)
{
	char map[32], want[160];
	snprintf(map, sizeof(map), "hp_%s_ip", proto);
	snprintf(want, sizeof(want), "[{\"concat\": [\"%s\", %d]}, {\"concat\": [\"%s\", %d]}]", host, host_port, pod,
		 port);
	char *j = map_json(map);
	bool r = strstr(j, want) != NULL;
	free(j);
	return r;
}

static int n_elements(void)
{
	int n = 0;
	const char *maps[] = { "hp_tcp_any", "hp_udp_any", "hp_tcp_ip", "hp_udp_ip" };
	for (size_t i = 0; i < 4; i++) {
		char *j = map_json(maps[i]);
		n += count(j, "{\"concat\": [\"10.77."); /* each element's value: a pod in 10.77/16 */
		free(j);
	}
	return n;
}

static const struct net_cidr C77 = { 0x0a4d0000, 16 }; /* 10.77.0.0/16 */
static const struct net_cidr C88 = { 0x0a580000, 24 }; /* 10.88.0.0/24 */

static void setup_ok(const struct net_cidr *c, size_t n)
{
	uk_error err = { 0 };
	if (nat_setup(c, n, &err) < 0)
		fail_msg("nat_setup: %s", err.msg);
}

static struct hostport HP(int proto, const char *host, int host_port, int port)
{
	return (struct hostport){ .proto = proto,
				  .host_port = (uint16_t)host_port,
				  .container_port = (uint16_t)port,
				  .host_ip = host ? ip4(host) : 0 };
}

/* ---- setup ---- */

static int group_setup(void **state)
{
	(void)state;
	if (unshare(CLONE_NEWNET) < 0) {
		perror("unshare(CLONE_NEWNET)");
		return -1;
	}
	return 0;
}

static int each_teardown(void **state)
{
	(void)state;
	return nat_teardown(NULL) < 0 ? -1 : 0;
}

/* ---- table contents ---- */

static void setup_one_cidr(void **state)
{
	(void)state;
	setup_ok(&C77, 1);
	char *t = table_text();
	const char *want[] = {
		"set pod_cidrs {",
		"type ipv4_addr",
		"flags interval",
		"elements = { 10.77.0.0/16 }",
		"map hp_tcp_ip {",
		"map hp_udp_ip {",
		"map hp_tcp_any {",
		"map hp_udp_any {",
		"type ipv4_addr . inet_service : ipv4_addr . inet_service",
		"type inet_service : ipv4_addr . inet_service",
		"dnat ip to ip daddr . tcp dport map @hp_tcp_ip",
		"dnat ip to ip daddr . udp dport map @hp_udp_ip",
		"dnat ip to tcp dport map @hp_tcp_any",
		"dnat ip to udp dport map @hp_udp_any",
		"type nat hook prerouting priority dstnat; policy accept;",
		"fib daddr type local jump hostports",
		"type nat hook output priority -100; policy accept;",
		"ip daddr != 127.0.0.0/8 fib daddr type local jump hostports",
		"type nat hook postrouting priority srcnat; policy accept;",
		"ip saddr @pod_cidrs ip daddr != @pod_cidrs masquerade",
		"ct status dnat ip saddr @pod_cidrs ip daddr @pod_cidrs masquerade",
		"ct status dnat ip daddr @pod_cidrs fib saddr type local masquerade",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(*want); i++)
		assert_contains(t, want[i]);
	free(t);
}

static void setup_idempotent(void **state)
{
	(void)state;
	struct net_cidr two[] = { C77, C88 };
	setup_ok(two, 2);
	setup_ok(two, 2);
	char *t = table_text();
	assert_contains(t, "elements = { 10.77.0.0/16, 10.88.0.0/24 }");
	assert_int_equal(count(t, "masquerade"), 3);
	assert_int_equal(count(t, "jump hostports"), 2);
	assert_int_equal(count(t, "dnat ip to"), 4);
	free(t);
	/* Back to one CIDR: the set follows the list exactly. */
	setup_ok(&C88, 1);
	t = table_text();
	assert_contains(t, "elements = { 10.88.0.0/24 }");
	assert_lacks(t, "10.77.0.0/16");
	assert_int_equal(count(t, "masquerade"), 3);
	free(t);
	/* Overlapping CIDRs merge instead of failing. */
	struct net_cidr overlap[] = { C77, { ip4("10.77.1.0"), 24 } };
	setup_ok(overlap, 2);
	/* None: no masquerading at all. */
	setup_ok(NULL, 0);
	t = table_text();
	assert_lacks(t, "elements");
	free(t);
}

static void setup_recreates_after_delete(void **state)
{
	(void)state;
	setup_ok(&C77, 1);
	/* Someone deleted a chain and our rules: setup puts them back. */
	char *o = nft_out("delete chain ip unikd output\nflush chain ip unikd postrouting\n", false);
	assert_non_null(o);
	free(o);
	setup_ok(&C77, 1);
	char *t = table_text();
	assert_contains(t, "ip daddr != 127.0.0.0/8 fib daddr type local jump hostports");
	assert_int_equal(count(t, "masquerade"), 3);
	free(t);
}

/* ---- hostPorts ---- */

static void hostports_add_remove(void **state)
{
	(void)state;
	uk_error err = { 0 };
	setup_ok(&C77, 1);
	uint32_t pod = ip4("10.77.0.5");
	struct hostport hp[] = {
		HP(IPPROTO_TCP, NULL, 8080, 80),
		HP(IPPROTO_UDP, NULL, 5353, 53),
		HP(IPPROTO_TCP, "192.168.77.1", 9090, 90),
		HP(IPPROTO_UDP, "192.168.77.1", 9091, 91),
	};
	assert_int_equal(nat_add_hostports(pod, hp, 4, &err), 0);
	assert_true(has_any("tcp", 8080, "10.77.0.5", 80));
	assert_true(has_any("udp", 5353, "10.77.0.5", 53));
	assert_true(has_ip("tcp", "192.168.77.1", 9090, "10.77.0.5", 90));
	assert_true(has_ip("udp", "192.168.77.1", 9091, "10.77.0.5", 91));
	assert_int_equal(n_elements(), 4);
	/* Again (a retried call), and an entry given twice: no change, no error. */
	assert_int_equal(nat_add_hostports(pod, hp, 4, &err), 0);
	struct hostport twice[] = { HP(IPPROTO_TCP, NULL, 7070, 70), HP(IPPROTO_TCP, NULL, 7070, 70) };
	assert_int_equal(nat_add_hostports(pod, twice, 2, &err), 0);
	assert_int_equal(n_elements(), 5);
	/* nat_setup never touches the maps. */
	struct net_cidr two[] = { C77, C88 };
	setup_ok(two, 2);
	assert_int_equal(n_elements(), 5);
	assert_true(has_any("tcp", 8080, "10.77.0.5", 80));

	assert_int_equal(nat_remove_hostports(pod, hp, 2, &err), 0);
	assert_false(has_any("tcp", 8080, "10.77.0.5", 80));
	assert_false(has_any("udp", 5353, "10.77.0.5", 53));
	assert_true(has_ip("tcp", "192.168.77.1", 9090, "10.77.0.5", 90));
	/* Idempotent: all four, two of which are gone already. */
	assert_int_equal(nat_remove_hostports(pod, hp, 4, &err), 0);
	assert_int_equal(nat_remove_hostports(pod, hp, 4, &err), 0);
	assert_int_equal(nat_remove_hostports(pod, twice, 2, &err), 0);
	assert_int_equal(n_elements(), 0);
	assert_int_equal(nat_add_hostports(pod, NULL, 0, &err), 0);
	assert_int_equal(nat_remove_hostports(pod, NULL, 0, &err), 0);
}

static void hostports_conflicts(void **state)
{
	(void)state;
	uk_error err = { 0 };
	setup_ok(&C77, 1);
	uint32_t a = ip4("10.77.0.5"), b = ip4("10.77.0.6");
	struct hostport any8080 = HP(IPPROTO_TCP, NULL, 8080, 80);
	assert_int_equal(nat_add_hostports(a, &any8080, 1, &err), 0);

	assert_int_equal(nat_add_hostports(b, &any8080, 1, &err), -EBUSY);
	assert_contains(err.msg, "tcp 0.0.0.0:8080 is taken by 10.77.0.5:80");
	/* The same port on one address overlaps the port on every address. */
	struct hostport one8080 = HP(IPPROTO_TCP, "192.168.77.1", 8080, 80);
	assert_int_equal(nat_add_hostports(b, &one8080, 1, &err), -EBUSY);
	assert_contains(err.msg, "overlaps");
	/* Nothing of a refused request is added, even the parts that were free. */
	struct hostport mixed[] = { HP(IPPROTO_TCP, NULL, 8181, 81), any8080 };
	assert_int_equal(nat_add_hostports(b, mixed, 2, &err), -EBUSY);
	assert_false(has_any("tcp", 8181, "10.77.0.6", 81));
	/* Another protocol is another port. */
	struct hostport udp8080 = HP(IPPROTO_UDP, NULL, 8080, 80);
	assert_int_equal(nat_add_hostports(b, &udp8080, 1, &err), 0);
	/* Same key, different container ports in one request. */
	struct hostport clash[] = { HP(IPPROTO_TCP, NULL, 6060, 60), HP(IPPROTO_TCP, NULL, 6060, 61) };
	assert_int_equal(nat_add_hostports(b, clash, 2, &err), -EINVAL);
	assert_contains(err.msg, "hostport[1]");
	/* Removing with the wrong pod (or port) leaves another pod's entry alone. */
	assert_int_equal(nat_remove_hostports(b, &any8080, 1, &err), 0);
	assert_true(has_any("tcp", 8080, "10.77.0.5", 80));
	struct hostport other_port = HP(IPPROTO_TCP, NULL, 8080, 81);
	assert_int_equal(nat_remove_hostports(a, &other_port, 1, &err), 0);
	assert_true(has_any("tcp", 8080, "10.77.0.5", 80));
	/* Once freed, the port can go to another pod. */
	assert_int_equal(nat_remove_hostports(a, &any8080, 1, &err), 0);
	assert_int_equal(nat_add_hostports(b, &one8080, 1, &err), 0);
	assert_true(has_ip("tcp", "192.168.77.1", 8080, "10.77.0.6", 80));
}

static void bad_inputs(void **state)
{
	(void)state;
	uk_error err = { 0 };
	setup_ok(&C77, 1);
	uint32_t pod = ip4("10.77.0.5");
	struct hostport h;
#define REJECT(call, code, word)                                                                                       \
	do {                                                                                                           \
		memset(&err, 0, sizeof(err));                                                                          \
		assert_int_equal((call), -(code));                                                                     \
		if (!strstr(err.msg, word))                                                                            \
			fail_msg("message \"%s\" does not name \"%s\"", err.msg, word);                                \
	} while (0)
	h = HP(IPPROTO_TCP, NULL, 0, 80);
	REJECT(nat_add_hostports(pod, &h, 1, &err), EINVAL, "host_port 0");
	h = HP(IPPROTO_TCP, NULL, 80, 0);
	REJECT(nat_add_hostports(pod, &h, 1, &err), EINVAL, "container_port 0");
	REJECT(nat_remove_hostports(pod, &h, 1, &err), EINVAL, "container_port 0");
	h = HP(132 /* SCTP */, NULL, 80, 80);
	REJECT(nat_add_hostports(pod, &h, 1, &err), EPROTONOSUPPORT, "protocol 132");
	struct hostport two[] = { HP(IPPROTO_TCP, NULL, 80, 80), HP(IPPROTO_ICMP, NULL, 80, 80) };
	REJECT(nat_add_hostports(pod, two, 2, &err), EPROTONOSUPPORT, "hostport[1]");
	h = HP(IPPROTO_TCP, NULL, 80, 80);
	REJECT(nat_add_hostports(0, &h, 1, &err), EINVAL, "pod ip");
	h = HP(IPPROTO_TCP, "255.255.255.255", 80, 80);
	REJECT(nat_add_hostports(pod, &h, 1, &err), EINVAL, "host_ip");
	REJECT(nat_add_hostports(pod, &h, 100000, &err), EINVAL, "at most");
	REJECT(nat_add_hostports(pod, NULL, 1, &err), EINVAL, "NULL");
	struct net_cidr hostbits = { ip4("10.77.0.1"), 16 };
	REJECT(nat_setup(&hostbits, 1, &err), EINVAL, "10.77.0.1/16");
	struct net_cidr badprefix = { ip4("10.77.0.0"), 33 };
	REJECT(nat_setup(&badprefix, 1, &err), EINVAL, "prefix");
	REJECT(nat_setup(NULL, 1, &err), EINVAL, "NULL");
	/* None of that reached the table. */
	assert_int_equal(n_elements(), 0);
	char *t = table_text();
	assert_contains(t, "elements = { 10.77.0.0/16 }");
	free(t);
#undef REJECT
}

static void nft_errors_reach_the_message(void **state)
{
	(void)state;
	uk_error err = { 0 };
	setup_ok(&C77, 1);
	/* A map removed behind our back: nft's own error comes through, on one line, with
	 * its errno. */
	char *o = nft_out("flush chain ip unikd hostports\ndelete map ip unikd hp_tcp_any\n", false);
	assert_non_null(o);
	free(o);
	struct hostport h = HP(IPPROTO_TCP, NULL, 8080, 80);
	assert_int_equal(nat_add_hostports(ip4("10.77.0.5"), &h, 1, &err), -ENOENT);
	assert_contains(err.msg, "hostports of 10.77.0.5: nft: Error: No such file or directory");
	assert_contains(err.msg, "add element ip unikd hp_tcp_any { 8080 : 10.77.0.5 . 80 }");
	assert_null(strchr(err.msg, '\n'));
	assert_lacks(err.msg, "^^^");
	/* And nat_setup repairs it. */
	setup_ok(&C77, 1);
	assert_int_equal(nat_add_hostports(ip4("10.77.0.5"), &h, 1, &err), 0);
	assert_true(has_any("tcp", 8080, "10.77.0.5", 80));
}

static void teardown_idempotent(void **state)
{
	(void)state;
	uk_error err = { 0 };
	setup_ok(&C77, 1);
	struct hostport h = HP(IPPROTO_TCP, NULL, 8080, 80);
	assert_int_equal(nat_add_hostports(ip4("10.77.0.5"), &h, 1, &err), 0);
	assert_true(table_exists());
	assert_int_equal(nat_teardown(&err), 0);
	assert_false(table_exists());
	assert_int_equal(nat_teardown(&err), 0);
	assert_false(table_exists());
	/* Without the table: removing is a no-op, adding says what is missing. */
	assert_int_equal(nat_remove_hostports(ip4("10.77.0.5"), &h, 1, &err), 0);
	assert_int_equal(nat_add_hostports(ip4("10.77.0.5"), &h, 1, &err), -ENOENT);
	assert_contains(err.msg, "nat_setup");
	assert_false(table_exists());
}

/* ---- traffic ---- */

static const char *ip_binary(void)
{
	static const char *const c[] = { "/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip" };
	for (size_t i = 0; i < sizeof(c) / sizeof(*c); i++)
		if (access(c[i], X_OK) == 0)
			return c[i];
	return "/usr/sbin/ip";
}

/* Run `ip ARGS...` in the namespace of nsfd (-1: ours). */
static int ipcmd(int nsfd, const char *first, ...)
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
		if (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) < 0)
			_exit(126);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	int st;
	if (waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

#define IP(ns, ...) assert_int_equal(ipcmd(ns, __VA_ARGS__, NULL), 0)

struct netns {
	pid_t pid;
	int fd;
	int keep; /* its close ends the holder */
};

static struct netns ns_new(void)
{
	int p[2], ready[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(p[1]);
		close(ready[0]);
		char c = 'r';
		if (unshare(CLONE_NEWNET) < 0 || write(ready[1], &c, 1) != 1)
			_exit(1);
		while (read(p[0], &c, 1) > 0)
			;
		_exit(0);
	}
	close(p[0]);
	close(ready[1]);
	char c;
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	struct netns ns = { .pid = pid, .fd = open(path, O_RDONLY | O_CLOEXEC), .keep = p[1] };
	assert_true(ns.fd >= 0);
	return ns;
}

static void ns_free(struct netns *ns)
{
	/* Killed, not asked: a holder forked later shares the other's pipe. */
	kill(ns->pid, SIGKILL);
	waitpid(ns->pid, NULL, 0);
	close(ns->keep);
	close(ns->fd);
}

struct server {
	pid_t pid;
	int rd;
};

/* A TCP server in namespace nsfd that accepts one connection and reports its peer. */
static struct server serve_once(int nsfd, const char *ip, int port)
{
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(p[0]);
		if (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) < 0)
			_exit(1);
		int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
		setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
		inet_pton(AF_INET, ip, &a.sin_addr);
		if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 4) < 0)
			_exit(2);
		if (write(p[1], "R", 1) != 1)
			_exit(3);
		struct pollfd pf = { .fd = s, .events = POLLIN };
		if (poll(&pf, 1, 5000) <= 0)
			_exit(4);
		struct sockaddr_in peer;
		socklen_t len = sizeof(peer);
		int c = accept4(s, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
		if (c < 0)
			_exit(5);
		char buf[INET_ADDRSTRLEN + 1];
		inet_ntop(AF_INET, &peer.sin_addr, buf, INET_ADDRSTRLEN);
		strcat(buf, "\n");
		_exit(uk_write_all(p[1], buf, strlen(buf)) < 0 ? 6 : 0);
	}
	close(p[1]);
	char c;
	assert_int_equal(read(p[0], &c, 1), 1);
	return (struct server){ pid, p[0] };
}

/* The address the server saw, or "" if nobody came. */
static void server_peer(struct server *s, char out[INET_ADDRSTRLEN + 1])
{
	size_t len = 0;
	out[0] = '\0';
	for (;;) {
		ssize_t n = read(s->rd, out + len, INET_ADDRSTRLEN - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	out[len] = '\0';
	char *nl = strchr(out, '\n');
	if (nl)
		*nl = '\0';
	close(s->rd);
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
}

/* Connect from namespace nsfd; 0 if the connection was established. */
static int connect_from(int nsfd, const char *ip, int port)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) < 0)
			_exit(1);
		int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
		inet_pton(AF_INET, ip, &a.sin_addr);
		if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS)
			_exit(2);
		struct pollfd pf = { .fd = s, .events = POLLOUT };
		if (poll(&pf, 1, 3000) <= 0)
			_exit(3);
		int e = 0;
		socklen_t l = sizeof(e);
		getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &l);
		_exit(e == 0 ? 0 : 4);
	}
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Who does the pod see when conn_ns connects to dst:port, with the pod serving on 80? */
static void seen_by_pod(int pod_ns, int conn_ns, const char *dst, int port, char out[INET_ADDRSTRLEN + 1])
{
	struct server s = serve_once(pod_ns, "0.0.0.0", 80);
	int rc = connect_from(conn_ns, dst, port);
	server_peer(&s, out);
	if (rc != 0)
		out[0] = '\0';
}

static void check_traffic(int pod_ns, int ext_ns)
{
	char peer[INET_ADDRSTRLEN + 1];
	/* From outside, to the node's uplink address: DNAT, the client's address kept. */
	seen_by_pod(pod_ns, ext_ns, "192.168.99.1", 8080, peer);
	assert_string_equal(peer, "192.168.99.2");
	/* From the node itself (output hook), to one of its addresses: masqueraded to the bridge. */
	seen_by_pod(pod_ns, -1, "192.168.77.1", 8080, peer);
	assert_string_equal(peer, "10.77.0.1");
	/* The pod to its own hostPort (hairpin): masqueraded, or the answer would not come back. */
	seen_by_pod(pod_ns, pod_ns, "192.168.77.1", 8080, peer);
	assert_string_equal(peer, "10.77.0.1");
	/* A port on one address only. */
	seen_by_pod(pod_ns, ext_ns, "192.168.77.1", 8181, peer);
	assert_string_equal(peer, "192.168.99.2");
	assert_int_not_equal(connect_from(ext_ns, "192.168.99.1", 8181), 0);
	/* The pod going out: masqueraded to the node's uplink address. */
	struct server s = serve_once(ext_ns, "0.0.0.0", 7000);
	assert_int_equal(connect_from(pod_ns, "192.168.99.2", 7000), 0);
	server_peer(&s, peer);
	assert_string_equal(peer, "192.168.99.1");
	/* Pod to node (input, not NAT'd) keeps the pod's address. */
	s = serve_once(-1, "10.77.0.1", 7001);
	assert_int_equal(connect_from(pod_ns, "10.77.0.1", 7001), 0);
	server_peer(&s, peer);
	assert_string_equal(peer, "10.77.0.5");
}

static void traffic(void **state)
{
	(void)state;
	uk_error err = { 0 };
	/* node: bridge 10.77.0.1/16, its own address 192.168.77.1 (on lo), uplink 192.168.99.1
	 * pod:  10.77.0.5/16 via 10.77.0.1;   outside: 192.168.99.2/24 */
	struct netns pod = ns_new(), ext = ns_new();
	char podpid[16], extpid[16];
	snprintf(podpid, sizeof(podpid), "%d", (int)pod.pid);
	snprintf(extpid, sizeof(extpid), "%d", (int)ext.pid);
	IP(-1, "link", "set", "lo", "up");
	IP(-1, "link", "add", "ukbr0", "type", "bridge");
	IP(-1, "addr", "add", "10.77.0.1/16", "dev", "ukbr0");
	IP(-1, "link", "set", "ukbr0", "up");
	IP(-1, "addr", "add", "192.168.77.1/32", "dev", "lo");
	IP(-1, "link", "add", "ukv0", "type", "veth", "peer", "name", "ukv1");
	IP(-1, "link", "set", "ukv0", "master", "ukbr0", "up");
	IP(-1, "link", "set", "ukv1", "netns", podpid);
	IP(pod.fd, "link", "set", "lo", "up");
	IP(pod.fd, "addr", "add", "10.77.0.5/16", "dev", "ukv1");
	IP(pod.fd, "link", "set", "ukv1", "up");
	IP(pod.fd, "route", "add", "default", "via", "10.77.0.1");
	IP(-1, "link", "add", "ukx0", "type", "veth", "peer", "name", "ukx1");
	IP(-1, "addr", "add", "192.168.99.1/24", "dev", "ukx0");
	IP(-1, "link", "set", "ukx0", "up");
	IP(-1, "link", "set", "ukx1", "netns", extpid);
	IP(ext.fd, "link", "set", "lo", "up");
	IP(ext.fd, "addr", "add", "192.168.99.2/24", "dev", "ukx1");
	IP(ext.fd, "link", "set", "ukx1", "up");
	IP(ext.fd, "route", "add", "default", "via", "192.168.99.1");
	/* Forwarding, in this namespace only. */
	int fwd = open("/proc/sys/net/ipv4/ip_forward", O_WRONLY | O_CLOEXEC);
	assert_true(fwd >= 0);
	assert_int_equal(write(fwd, "1", 1), 1);
	close(fwd);

	setup_ok(&C77, 1);
	uint32_t podip = ip4("10.77.0.5");
	struct hostport hp[] = { HP(IPPROTO_TCP, NULL, 8080, 80), HP(IPPROTO_TCP, "192.168.77.1", 8181, 80) };
	assert_int_equal(nat_add_hostports(podip, hp, 2, &err), 0);

	/* Twice: routed by the node, then (if the kernel has it) with br_netfilter passing
	 * bridged traffic through the IP hooks, as on kubeadm nodes. Both settings are this
	 * namespace's own. */
	const char *brnf = "/proc/sys/net/bridge/bridge-nf-call-iptables";
	bool have_brnf = access(brnf, W_OK) == 0;
	for (int pass = 0; pass < (have_brnf ? 2 : 1); pass++) {
		if (have_brnf) {
			int fd = open(brnf, O_WRONLY | O_CLOEXEC);
			assert_true(fd >= 0);
			assert_int_equal(write(fd, pass ? "1" : "0", 1), 1);
			close(fd);
		}
		/* With br_netfilter the hairpin goes back out of the port it came in by: the
		 * port needs hairpin mode (the tap, in unikd). */
		IP(-1, "link", "set", "ukv0", "type", "bridge_slave", "hairpin", pass ? "on" : "off");
		check_traffic(pod.fd, ext.fd);
	}

	/* Removed: nothing listens on the node's 8080. */
	assert_int_equal(nat_remove_hostports(podip, hp, 2, &err), 0);
	assert_int_not_equal(connect_from(ext.fd, "192.168.99.1", 8080), 0);
	assert_int_not_equal(connect_from(-1, "192.168.77.1", 8080), 0);

	ns_free(&pod);
	ns_free(&ext);
}

int main(void)
{
	if (geteuid() != 0) {
		printf("test_nat: skipped, needs root (network namespaces, nftables)\n");
		return 0;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(setup_one_cidr, each_teardown),
		cmocka_unit_test_teardown(setup_idempotent, each_teardown),
		cmocka_unit_test_teardown(setup_recreates_after_delete, each_teardown),
		cmocka_unit_test_teardown(hostports_add_remove, each_teardown),
		cmocka_unit_test_teardown(hostports_conflicts, each_teardown),
		cmocka_unit_test_teardown(bad_inputs, each_teardown),
		cmocka_unit_test_teardown(nft_errors_reach_the_message, each_teardown),
		cmocka_unit_test_teardown(teardown_idempotent, each_teardown),
		cmocka_unit_test_teardown(traffic, each_teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
