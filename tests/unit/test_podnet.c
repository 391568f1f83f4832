/* Tests of src/net/podnet.c against the kernel: pinning pod namespaces, reading eth0, and
 * the tap wired to eth0, proved with real frames through the tap's fd.
 *
 * They need root. The group setup moves the process into a network namespace and a mount
 * namespace of its own, with a tmpfs on /run: the pod namespaces pinned under /run/netns,
 * the veth pairs that play the CNI plugin and every mount made here live in them and go with
 * the process, whatever the outcome; the host's /run/netns and links are never touched. The
 * test's own namespace plays the node: a pod's eth0 is one end of a veth pair, the other end
 * (with the gateway's address) stays here. Without root, every test is skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/if_ether.h>
#include <linux/if_tun.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <linux/pkt_sched.h>

#include <cmocka.h>

#include <netlink/netlink.h>
#include <netlink/cache.h>
#include <netlink/route/act/mirred.h>
#include <netlink/route/addr.h>
#include <netlink/route/classifier.h>
#include <netlink/route/cls/u32.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/route.h>
#include <netlink/route/tc.h>

#include "../../src/common/util.h"
#include "../../src/net/net.h"
#include "../../src/net/podnet.h"

#define PEER "ukpeer0"                /* the node's end of the pod's veth pair */
#define ETH_MAC "02:00:5e:10:00:02"   /* the pod's eth0, set as a plugin would */
#define POD_MTU 1400
#define DEADLINE_MS 10000             /* generous: only to end a broken test */
#define VNET_HDR 10                   /* struct virtio_net_hdr, the tap's default */

static bool g_ready;

#define NEED_ROOT()                                                                                \
	do {                                                                                       \
		if (!g_ready)                                                                      \
			skip();                                                                    \
	} while (0)

/* ---- setup ---- */

/* Turn IPv6 off in the calling thread's namespace: no router solicitations or MLD reports
 * among the frames the tests count. A kernel without IPv6 has nothing to turn off. */
static int ipv6_off_here(void *ud, uk_error *err)
{
	(void)ud;
	static const char *const files[] = { "/proc/sys/net/ipv6/conf/all/disable_ipv6",
					     "/proc/sys/net/ipv6/conf/default/disable_ipv6" };
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		_cleanup_close_ int fd = open(files[i], O_WRONLY | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT)
			continue;
		if (fd < 0 || write(fd, "1", 1) != 1)
			return uk_err_errno(err, errno, "%s", files[i]);
	}
	return 0;
}

static int group_setup(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		fprintf(stderr, "test_podnet: not root, skipping (needs CAP_NET_ADMIN and CAP_SYS_ADMIN)\n");
		return 0;
	}
	if (unshare(CLONE_NEWNET | CLONE_NEWNS) < 0) {
		perror("unshare(CLONE_NEWNET|CLONE_NEWNS)");
		return -1;
	}
	/* Nothing mounted here propagates to the host; /run (and so /run/netns) is ours. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0) {
		perror("mount");
		return -1;
	}
	uk_error err = { 0 };
	if (ipv6_off_here(NULL, &err) < 0) {
		fprintf(stderr, "test_podnet: %s\n", err.msg);
		return -1;
	}
	g_ready = true;
	return 0;
}

static uint32_t IP(const char *s)
{
	uint32_t v = 0;
	if (net_ip_parse(s, &v) < 0)
		fail_msg("bad test address %s", s);
	return v;
}

static struct nl_sock *home_sock(void)
{
	struct nl_sock *sk = nl_socket_alloc();
	assert_non_null(sk);
	assert_int_equal(nl_connect(sk, NETLINK_ROUTE), 0);
	return sk;
}

static int link_index(struct nl_sock *sk, const char *name)
{
	_cleanup_nl_object_ struct rtnl_link *l = NULL;
	if (rtnl_link_get_kernel(sk, 0, name, &l) < 0)
		return 0;
	return rtnl_link_get_ifindex(l);
}

static struct rtnl_link *link_of(struct nl_sock *sk, const char *name)
{
	struct rtnl_link *l = NULL;
	int r = rtnl_link_get_kernel(sk, 0, name, &l);
	if (r < 0)
		fail_msg("link %s: %s", name, nl_geterror(r));
	return l;
}

static void link_up(struct nl_sock *sk, const char *name)
{
	_cleanup_nl_object_ struct rtnl_link *l = link_of(sk, name);
	_cleanup_nl_object_ struct rtnl_link *ch = rtnl_link_alloc();
	rtnl_link_set_flags(ch, IFF_UP);
	assert_int_equal(rtnl_link_change(sk, l, ch, 0), 0);
}

static struct nl_addr *v4(const char *ip, int prefix)
{
	uint32_t be = htonl(IP(ip));
	struct nl_addr *a = nl_addr_build(AF_INET, &be, sizeof(be));
	assert_non_null(a);
	nl_addr_set_prefixlen(a, prefix);
	return a;
}

static void addr_add(struct nl_sock *sk, const char *ifname, const char *ip, int prefix)
{
	_cleanup_nl_object_ struct rtnl_addr *a = rtnl_addr_alloc();
	struct nl_addr *local = v4(ip, prefix);
	rtnl_addr_set_ifindex(a, link_index(sk, ifname));
	rtnl_addr_set_family(a, AF_INET);
	assert_int_equal(rtnl_addr_set_local(a, local), 0);
	nl_addr_put(local);
	int r = rtnl_addr_add(sk, a, 0);
	if (r < 0)
		fail_msg("add %s/%d to %s: %s", ip, prefix, ifname, nl_geterror(r));
}

/* A main-table route out of ifname; gw NULL: on-link (scope link). */
static void route_add(struct nl_sock *sk, const char *ifname, const char *dst, int prefix, const char *gw)
{
	_cleanup_nl_object_ struct rtnl_route *rt = rtnl_route_alloc();
	struct nl_addr *d = v4(dst, prefix);
	assert_int_equal(rtnl_route_set_dst(rt, d), 0);
	nl_addr_put(d);
	rtnl_route_set_table(rt, RT_TABLE_MAIN);
	rtnl_route_set_scope(rt, gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK);
	struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
	rtnl_route_nh_set_ifindex(nh, link_index(sk, ifname));
	if (gw) {
		struct nl_addr *g = v4(gw, 32);
		rtnl_route_nh_set_gateway(nh, g);
		nl_addr_put(g);
	}
	rtnl_route_add_nexthop(rt, nh);
	int r = rtnl_route_add(sk, rt, NLM_F_CREATE | NLM_F_EXCL);
	if (r < 0)
		fail_msg("add route %s/%d via %s: %s", dst, prefix, gw ? gw : "-", nl_geterror(r));
}

/* ---- a pod: its namespace, and eth0 as a plugin leaves it ---- */

struct pod {
	char id[65];
	int nsfd;
	struct nl_sock *sk;     /* in the pod's namespace */
	int tapfd;
	int sock67;             /* UDP *:67 in the pod's namespace */
	int peer_udp, peer_67;  /* UDP sockets of the node (this namespace) */
};

static struct pod *pod_new(void)
{
	struct pod *p = calloc(1, sizeof(*p));
	assert_non_null(p);
	p->nsfd = p->tapfd = p->sock67 = p->peer_udp = p->peer_67 = -1;
	assert_int_equal(uk_random_hex_id(p->id), 0);
	return p;
}

static int pod_free(void **state)
{
	struct pod *p = *state;
	if (!p)
		return 0;
	uk_error err = { 0 };
	/* The pair first: a namespace's links are destroyed asynchronously after it goes. */
	if (g_ready && net_link_delete(PEER, &err) < 0)
		fprintf(stderr, "teardown: %s\n", err.msg);
	if (g_ready && podnet_netns_remove(p->id, &err) < 0)
		fprintf(stderr, "teardown: %s\n", err.msg);
	safe_close(p->tapfd);
	safe_close(p->sock67);
	safe_close(p->peer_udp);
	safe_close(p->peer_67);
	safe_close(p->nsfd);
	if (p->sk)
		nl_socket_free(p->sk);
	free(p);
	return 0;
}

/* An id, nothing made. */
static int pod_setup_none(void **state)
{
	*state = pod_new();
	return 0;
}

/* A pinned namespace with nothing in it but lo. */
static int pod_setup_empty(void **state)
{
	struct pod *p = pod_new();
	*state = p;
	if (!g_ready)
		return 0;
	uk_error err = { 0 };
	if (podnet_netns_create(p->id, &err) < 0 || (p->nsfd = podnet_netns_open(p->id, &err)) < 0 ||
	    podnet_nl_socket(p->nsfd, &p->sk, &err) < 0 || podnet_run_in(p->nsfd, ipv6_off_here, NULL, &err) < 0) {
		fprintf(stderr, "pod setup: %s\n", err.msg);
		return -1;
	}
	return 0;
}

/* ... and eth0 (10.99.0.2/24, MTU 1400, a default route via the node's 10.99.0.1, a route
 * via it, and a link-scope route as Calico sets them), the other end here. */
static int pod_setup(void **state)
{
	if (pod_setup_empty(state) < 0)
		return -1;
	struct pod *p = *state;
	if (!g_ready)
		return 0;
	_cleanup_nl_sock_ struct nl_sock *home = home_sock();
	_cleanup_nl_object_ struct rtnl_link *veth = rtnl_link_veth_alloc();
	struct rtnl_link *eth = rtnl_link_veth_get_peer(veth);
	struct nl_addr *mac = NULL;
	assert_int_equal(nl_addr_parse(ETH_MAC, AF_LLC, &mac), 0);
	rtnl_link_set_name(veth, PEER);
	rtnl_link_set_mtu(veth, POD_MTU);
	rtnl_link_set_name(eth, PODNET_ETH);
	rtnl_link_set_mtu(eth, POD_MTU);
	rtnl_link_set_addr(eth, mac);
	rtnl_link_set_ns_fd(eth, p->nsfd);
	nl_addr_put(mac);
	int r = rtnl_link_add(home, veth, NLM_F_CREATE | NLM_F_EXCL);
	rtnl_link_put(eth);
	if (r < 0) {
		fprintf(stderr, "pod setup: veth: %s\n", nl_geterror(r));
		return -1;
	}
	addr_add(home, PEER, "10.99.0.1", 24);
	link_up(home, PEER);
	addr_add(p->sk, PODNET_ETH, "10.99.0.2", 24);
	link_up(p->sk, PODNET_ETH);
	route_add(p->sk, PODNET_ETH, "0.0.0.0", 0, "10.99.0.1");
	route_add(p->sk, PODNET_ETH, "10.200.0.0", 16, "10.99.0.1");
	route_add(p->sk, PODNET_ETH, "169.254.1.1", 32, NULL);
	return 0;
}

/* ---- ids and paths ---- */

static void ids_checked(void **state)
{
	(void)state;
	char path[PATH_MAX];
	char id[65];
	memset(id, 'a', 64);
	id[64] = '\0';
	podnet_netns_path(id, path, sizeof(path));
	assert_string_equal(path, "/run/netns/unikd-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	podnet_netns_path(id, path, 20); /* too small: nothing rather than a cut path */
	assert_string_equal(path, "");

	char upper[65], longer[66];
	memcpy(upper, id, sizeof(id));
	upper[3] = 'A';
	memset(longer, 'b', 65);
	longer[65] = '\0';
	const char *bad[] = { NULL, "", "../../../etc/passwd", "abc", upper, longer, id + 1,
			      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/a" };
	struct podnet_info info = { .mtu = 1500 };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		uk_error err = { 0 };
		strcpy(path, "x");
		podnet_netns_path(bad[i], path, sizeof(path));
		assert_string_equal(path, "");
		assert_false(podnet_netns_exists(bad[i]));
		assert_int_equal(podnet_netns_create(bad[i], &err), -EINVAL);
		assert_non_null(strstr(err.msg, "invalid sandbox id"));
		assert_int_equal(podnet_netns_remove(bad[i], &err), -EINVAL);
		assert_int_equal(podnet_netns_open(bad[i], &err), -EINVAL);
		assert_int_equal(podnet_read(bad[i], &(struct podnet_info){ 0 }, &err), -EINVAL);
		assert_int_equal(podnet_tap_wire(bad[i], &info, &err), -EINVAL);
		assert_int_equal(podnet_tap_unwire(bad[i], &err), -EINVAL);
	}
	/* A bad MTU is refused before anything is touched. */
	uk_error err = { 0 };
	info.mtu = 67;
	assert_int_equal(podnet_tap_wire(id, &info, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "MTU 67"));
	assert_int_equal(podnet_tap_wire(id, NULL, &err), -EINVAL);
}

/* ---- the namespace ---- */

static ino_t ns_inode(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_ino;
}

/* /run/netns is a mount point with shared propagation (mountinfo's "shared:N" tag). */
static bool netns_dir_shared(void)
{
	_cleanup_free_ char *text = NULL;
	uk_error err = { 0 };
	assert_int_equal(uk_read_file("/proc/self/mountinfo", 1 << 20, &text, NULL, &err), 0);
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		char mnt[PATH_MAX];
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) == 1 && strcmp(mnt, PODNET_NETNS_DIR) == 0 &&
		    strstr(line, " shared:"))
			return true;
	}
	return false;
}

static int lo_up_here(void *ud, uk_error *err)
{
	(void)err;
	_cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = { 0 };
	strcpy(ifr.ifr_name, "lo");
	*(bool *)ud = s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_UP);
	return 0;
}

static void netns_lifecycle(void **state)
{
	struct pod *p = *state;
	NEED_ROOT();
	uk_error err = { 0 };
	char path[PATH_MAX];
	podnet_netns_path(p->id, path, sizeof(path));
	assert_false(podnet_netns_exists(p->id));
	assert_int_equal(podnet_netns_open(p->id, &err), -ENOENT);

	assert_int_equal(podnet_netns_create(p->id, &err), 0);
	assert_true(podnet_netns_exists(p->id));
	assert_true(netns_dir_shared());
	assert_int_equal(podnet_netns_create(p->id, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "pinned already"));

	p->nsfd = podnet_netns_open(p->id, &err);
	assert_true(p->nsfd >= 0);
	assert_true(fcntl(p->nsfd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(ioctl(p->nsfd, NS_GET_NSTYPE), CLONE_NEWNET);
	/* Another namespace than ours, and this thread never left ours. */
	struct stat st;
	assert_int_equal(fstat(p->nsfd, &st), 0);
	assert_true(st.st_ino != ns_inode("/proc/thread-self/ns/net"));
	assert_int_equal(st.st_ino, ns_inode(path));
	bool lo_up = false;
	assert_int_equal(podnet_run_in(p->nsfd, lo_up_here, &lo_up, &err), 0);
	assert_true(lo_up);

	assert_int_equal(podnet_netns_remove(p->id, &err), 0);
	assert_false(podnet_netns_exists(p->id));
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(podnet_netns_remove(p->id, &err), 0); /* idempotent */
	assert_int_equal(podnet_netns_open(p->id, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "does not exist"));
	/* The fd still holds the namespace; a new create makes another one. */
	assert_int_equal(podnet_netns_create(p->id, &err), 0);
	assert_true(ns_inode(path) != st.st_ino);
}

/* A file left at the path by a create that died before its mount is not a namespace, and
 * a create takes it over. */
static void netns_leftover_file(void **state)
{
	struct pod *p = *state;
	NEED_ROOT();
	uk_error err = { 0 };
	char path[PATH_MAX];
	podnet_netns_path(p->id, path, sizeof(path));
	assert_int_equal(uk_mkdir_p(PODNET_NETNS_DIR, 0755, &err), 0);
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
	assert_true(fd >= 0);
	assert_false(podnet_netns_exists(p->id));
	assert_int_equal(podnet_netns_open(p->id, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "not a pinned network namespace"));
	assert_int_equal(podnet_netns_create(p->id, &err), 0);
	assert_true(podnet_netns_exists(p->id));
	/* Two pins stacked on one file (two creates that raced) both go with one remove. */
	_cleanup_close_ int ns = podnet_netns_open(p->id, &err);
	assert_true(ns >= 0);
	char self[64];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", ns);
	assert_int_equal(mount(self, path, "none", MS_BIND, NULL), 0);
	assert_int_equal(podnet_netns_remove(p->id, &err), 0);
	assert_false(podnet_netns_exists(p->id));
	assert_int_equal(access(path, F_OK), -1);

	/* A symlink at the path is never followed: no file made, nothing mounted elsewhere. */
	assert_int_equal(symlink("/run/podnet-victim", path), 0);
	assert_int_equal(podnet_netns_create(p->id, &err), -ELOOP);
	assert_int_equal(access("/run/podnet-victim", F_OK), -1);
	assert_int_equal(podnet_netns_open(p->id, &err), -ELOOP);
	assert_int_equal(podnet_netns_remove(p->id, &err), 0);
	struct stat st;
	assert_int_equal(lstat(path, &st), -1);
}

static int fail_here(void *ud, uk_error *err)
{
	*(ino_t *)ud = ns_inode("/proc/thread-self/ns/net");
	return uk_err(err, EPROTO, "failed on purpose");
}

static void run_in_threads(void **state)
{
	struct pod *p = *state;
	NEED_ROOT();
	uk_error err = { 0 };
	assert_int_equal(podnet_run_in(-1, fail_here, NULL, &err), -EBADF);
	ino_t mine = ns_inode("/proc/thread-self/ns/net"), theirs = 0;
	assert_int_equal(podnet_run_in(p->nsfd, fail_here, &theirs, &err), -EPROTO);
	assert_string_equal(err.msg, "failed on purpose");
	struct stat st;
	assert_int_equal(fstat(p->nsfd, &st), 0);
	assert_int_equal(theirs, st.st_ino);
	assert_int_equal(ns_inode("/proc/thread-self/ns/net"), mine);
	/* Not a namespace: setns refuses it. */
	_cleanup_close_ int notns = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	assert_true(podnet_run_in(notns, fail_here, &theirs, &err) == -EINVAL);
	assert_non_null(strstr(err.msg, "join the pod's network namespace"));
}

/* Pods made and removed from several threads at once, as the daemon's pools do: each gets
 * its own namespace, and no thread of the process ever leaves the process's. */
#define PARALLEL 4
#define ROUNDS 5
struct parallel {
	ino_t home;
	int failures;
	char msg[UK_ERROR_MSG_MAX];
};

static void *parallel_main(void *arg)
{
	struct parallel *par = arg;
	for (int i = 0; i < ROUNDS; i++) {
		char id[65];
		uk_error err = { 0 };
		struct nl_sock *sk = NULL;
		int fd = -1, r = uk_random_hex_id(id);
		if (r >= 0)
			r = podnet_netns_create(id, &err);
		if (r >= 0 && (fd = podnet_netns_open(id, &err)) < 0)
			r = fd;
		if (r >= 0)
			r = podnet_nl_socket(fd, &sk, &err);
		/* The socket acts in the pod's namespace: eth0 is missing there, lo is not. */
		if (r >= 0 && (link_index(sk, "lo") <= 0 || link_index(sk, PEER) != 0))
			r = uk_err(&err, EPROTO, "the socket is not in the pod's namespace");
		struct stat st;
		if (r >= 0 && (stat("/proc/thread-self/ns/net", &st) < 0 || st.st_ino != par->home))
			r = uk_err(&err, EPROTO, "a test thread left its namespace");
		if (sk)
			nl_socket_free(sk);
		safe_close(fd);
		uk_error rm = { 0 };
		if (podnet_netns_remove(id, &rm) < 0 && r >= 0)
			r = -rm.code, err = rm;
		if (r < 0) {
			__atomic_add_fetch(&par->failures, 1, __ATOMIC_SEQ_CST);
			memcpy(par->msg, err.msg, sizeof(par->msg));
		}
	}
	return NULL;
}

static void parallel_pods(void **state)
{
	(void)state;
	NEED_ROOT();
	struct parallel par = { .home = ns_inode("/proc/thread-self/ns/net") };
	/* A peer link here, to tell this namespace from the pods'. */
	_cleanup_nl_sock_ struct nl_sock *home = home_sock();
	_cleanup_nl_object_ struct rtnl_link *veth = rtnl_link_veth_alloc();
	rtnl_link_set_name(veth, PEER);
	assert_int_equal(rtnl_link_add(home, veth, NLM_F_CREATE | NLM_F_EXCL), 0);
	pthread_t t[PARALLEL];
	for (int i = 0; i < PARALLEL; i++)
		assert_int_equal(pthread_create(&t[i], NULL, parallel_main, &par), 0);
	for (int i = 0; i < PARALLEL; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	uk_error err = { 0 };
	assert_int_equal(net_link_delete(PEER, &err), 0);
	if (par.failures)
		fail_msg("%d failures, the last: %s", par.failures, par.msg);
	assert_int_equal(ns_inode("/proc/thread-self/ns/net"), par.home);
}

/* Reading and wiring fail with code and a message saying why; nothing is made; unwiring
 * succeeds (there is nothing to undo). */
static void check_unusable(struct pod *p, int code, const char *why)
{
	uk_error err = { 0 };
	struct podnet_info info, wire_info = { .mtu = 1500 };
	assert_int_equal(podnet_read(p->id, &info, &err), code);
	assert_non_null(strstr(err.msg, why));
	assert_int_equal(podnet_tap_wire(p->id, &wire_info, &err), code);
	assert_non_null(strstr(err.msg, why));
	if (p->sk)
		assert_int_equal(link_index(p->sk, PODNET_TAP), 0);
	assert_int_equal(podnet_tap_unwire(p->id, &err), 0);
}

/* A namespace that never was (or is gone). */
static void netns_gone(void **state)
{
	struct pod *p = *state;
	NEED_ROOT();
	check_unusable(p, -ENOENT, "does not exist");
	uk_error err = { 0 };
	assert_int_equal(podnet_netns_remove(p->id, &err), 0);
}

/* ---- eth0 ---- */

static void no_eth0(void **state)
{
	struct pod *p = *state;
	NEED_ROOT();
	check_unusable(p, -ENODEV, "no link eth0");
}

static const struct podnet_route *find_route(const struct podnet_info *info, const char *dst, int prefix)
{
	for (size_t i = 0; i < info->n_routes; i++)
		if (info->routes[i].dst == IP(dst) && info->routes[i].prefix == prefix)
			return &info->routes[i];
	return NULL;
}

static void read_eth0(void **state)
{
	struct pod *p = *state;
	NEED_ROOT();
	uk_error err = { 0 };
	struct podnet_info info;
	assert_int_equal(podnet_read(p->id, &info, &err), 0);
	assert_string_equal(info.mac, ETH_MAC);
	assert_int_equal(info.mtu, POD_MTU);
	assert_int_equal(info.ip, IP("10.99.0.2"));
	assert_int_equal(info.prefix, 24);
	assert_int_equal(info.gateway, IP("10.99.0.1"));
	/* The kernel's route for the subnet, and the three added. */
	assert_int_equal(info.n_routes, 4);
	const struct podnet_route *r = find_route(&info, "10.99.0.0", 24);
	assert_non_null(r);
	assert_int_equal(r->gateway, 0);
	assert_non_null(r = find_route(&info, "0.0.0.0", 0));
	assert_int_equal(r->gateway, IP("10.99.0.1"));
	assert_non_null(r = find_route(&info, "10.200.0.0", 16));
	assert_int_equal(r->gateway, IP("10.99.0.1"));
	assert_non_null(r = find_route(&info, "169.254.1.1", 32));
	assert_int_equal(r->gateway, 0);

	/* A second address comes after the first. */
	addr_add(p->sk, PODNET_ETH, "10.98.0.7", 16);
	assert_int_equal(podnet_read(p->id, &info, &err), 0);
	assert_int_equal(info.ip, IP("10.99.0.2"));
	assert_int_equal(info.prefix, 24);
}

/* More routes than the bound is an error, never a cut list. */
static void read_too_many_routes(void **state)
{
	struct pod *p = *state;
	NEED_ROOT();
	for (int i = 0; i < PODNET_ROUTES_MAX; i++) {
		char dst[NET_IP_MAX];
		net_ip_str(IP("10.150.0.0") + ((uint32_t)i << 8), dst);
		route_add(p->sk, PODNET_ETH, dst, 24, "10.99.0.1");
	}
	uk_error err = { 0 };
	struct podnet_info info;
	assert_int_equal(podnet_read(p->id, &info, &err), -E2BIG);
	assert_non_null(strstr(err.msg, "more than 32 IPv4 routes"));
}

/* ---- tc state, through netlink ---- */

struct tc_seen {
	bool ingress;
	uint16_t prios[8];
	size_t n_prios;
	uint32_t redirect[8]; /* the mirred target of each prio's rule, 0: none */
};

static void tc_seen(struct nl_sock *sk, int ifindex, struct tc_seen *out)
{
	memset(out, 0, sizeof(*out));
	_cleanup_nl_cache_ struct nl_cache *qd = NULL;
	assert_int_equal(rtnl_qdisc_alloc_cache(sk, &qd), 0);
	_cleanup_nl_object_ struct rtnl_qdisc *q = rtnl_qdisc_get_by_parent(qd, ifindex, TC_H_INGRESS);
	out->ingress = q != NULL;
	if (!q)
		return;
	_cleanup_nl_cache_ struct nl_cache *cls = NULL;
	assert_int_equal(rtnl_cls_alloc_cache(sk, ifindex, TC_H_MAKE(TC_H_INGRESS, 0), &cls), 0);
	for (struct nl_object *o = nl_cache_get_first(cls); o; o = nl_cache_get_next(o)) {
		struct rtnl_cls *c = (struct rtnl_cls *)o;
		assert_string_equal(rtnl_tc_get_kind(TC_CAST(c)), "u32");
		size_t i = 0;
		while (i < out->n_prios && out->prios[i] != rtnl_cls_get_prio(c))
			i++;
		if (i == out->n_prios) {
			assert_true(i < ARRAY_SIZE(out->prios));
			out->prios[out->n_prios++] = rtnl_cls_get_prio(c);
		}
		struct rtnl_act *act = rtnl_u32_get_action(c);
		if (act) {
			assert_string_equal(rtnl_tc_get_kind(TC_CAST(act)), "mirred");
			assert_int_equal(rtnl_mirred_get_action(act), TCA_EGRESS_REDIR);
			out->redirect[i] = rtnl_mirred_get_ifindex(act);
		}
	}
}

static int wire(struct pod *p)
{
	uk_error err = { 0 };
	struct podnet_info info;
	if (podnet_read(p->id, &info, &err) < 0)
		fail_msg("%s", err.msg);
	int fd = podnet_tap_wire(p->id, &info, &err);
	if (fd < 0)
		fail_msg("%s", err.msg);
	return fd;
}

static void wire_state(void **state)
{
	struct pod *p = *state;
	NEED_ROOT();
	p->tapfd = wire(p);
	assert_true(fcntl(p->tapfd, F_GETFD) & FD_CLOEXEC);
	struct ifreq ifr = { 0 };
	assert_int_equal(ioctl(p->tapfd, TUNGETIFF, &ifr), 0);
	assert_string_equal(ifr.ifr_name, PODNET_TAP);
	assert_int_equal(ifr.ifr_flags & (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);

	_cleanup_nl_object_ struct rtnl_link *tap = link_of(p->sk, PODNET_TAP);
	_cleanup_nl_object_ struct rtnl_link *eth = link_of(p->sk, PODNET_ETH);
	assert_int_equal(rtnl_link_get_mtu(tap), POD_MTU);
	assert_true(rtnl_link_get_flags(tap) & IFF_UP);
	assert_int_not_equal(nl_addr_cmp(rtnl_link_get_addr(tap), rtnl_link_get_addr(eth)), 0);
	int tapi = rtnl_link_get_ifindex(tap), ethi = rtnl_link_get_ifindex(eth);

	struct tc_seen s;
	tc_seen(p->sk, ethi, &s);
	assert_true(s.ingress);
	assert_int_equal(s.n_prios, 1);
	assert_int_equal(s.prios[0], PODNET_PRIO_ETH_REDIRECT);
	assert_int_equal(s.redirect[0], tapi);
	tc_seen(p->sk, tapi, &s);
	assert_true(s.ingress);
	assert_int_equal(s.n_prios, 2);
	for (size_t i = 0; i < 2; i++) {
		if (s.prios[i] == PODNET_PRIO_TAP_DHCP)
			assert_int_equal(s.redirect[i], 0);
		else if (s.prios[i] == PODNET_PRIO_TAP_REDIRECT)
			assert_int_equal(s.redirect[i], ethi);
		else
			fail_msg("unexpected filter priority %u on %s", s.prios[i], PODNET_TAP);
	}

	/* Again: the old tap and filters are replaced, not doubled. */
	int again = wire(p);
	safe_close(p->tapfd);
	p->tapfd = again;
	int tapi2 = link_index(p->sk, PODNET_TAP);
	assert_true(tapi2 > 0 && tapi2 != tapi);
	tc_seen(p->sk, ethi, &s);
	assert_int_equal(s.n_prios, 1);
	assert_int_equal(s.redirect[0], tapi2);

	/* Unwire: tap0 and every qdisc and filter of ours go; eth0 stays with its address. */
	uk_error err = { 0 };
	assert_int_equal(podnet_tap_unwire(p->id, &err), 0);
	assert_int_equal(link_index(p->sk, PODNET_TAP), 0);
	tc_seen(p->sk, ethi, &s);
	assert_false(s.ingress);
	struct podnet_info info;
	assert_int_equal(podnet_read(p->id, &info, &err), 0);
	assert_int_equal(info.ip, IP("10.99.0.2"));
	assert_int_equal(podnet_tap_unwire(p->id, &err), 0); /* idempotent */

	/* A filter of someone else's keeps eth0's ingress qdisc. */
	safe_close(p->tapfd);
	p->tapfd = wire(p);
	_cleanup_nl_object_ struct rtnl_cls *c = rtnl_cls_alloc();
	rtnl_tc_set_ifindex(TC_CAST(c), ethi);
	rtnl_tc_set_parent(TC_CAST(c), TC_H_MAKE(TC_H_INGRESS, 0));
	rtnl_cls_set_prio(c, 7);
	rtnl_cls_set_protocol(c, ETH_P_IP);
	assert_int_equal(rtnl_tc_set_kind(TC_CAST(c), "u32"), 0);
	assert_int_equal(rtnl_u32_add_key_uint32(c, 0, 0, 0, 0), 0);
	assert_int_equal(rtnl_cls_add(p->sk, c, NLM_F_CREATE | NLM_F_EXCL), 0);
	assert_int_equal(podnet_tap_unwire(p->id, &err), 0);
	tc_seen(p->sk, ethi, &s);
	assert_true(s.ingress);
	assert_int_equal(s.n_prios, 1);
	assert_int_equal(s.prios[0], 7);
}

/* The plugins' DEL took eth0 away: unwire still removes tap0 and succeeds. */
static void unwire_eth0_gone(void **state)
{
	struct pod *p = *state;
	NEED_ROOT();
	p->tapfd = wire(p);
	uk_error err = { 0 };
	assert_int_equal(net_link_delete(PEER, &err), 0); /* and eth0 with it */
	assert_int_equal(link_index(p->sk, PODNET_ETH), 0);
	assert_int_equal(podnet_tap_unwire(p->id, &err), 0);
	assert_int_equal(link_index(p->sk, PODNET_TAP), 0);
}

/* ---- frames ---- */

struct frame {
	uint8_t b[2048];
	size_t len;
};

static void mac_parse(const char *s, uint8_t out[6])
{
	unsigned v[6];
	assert_int_equal(sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]), 6);
	for (int i = 0; i < 6; i++)
		out[i] = (uint8_t)v[i];
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static void eth_header(struct frame *f, const uint8_t dst[6], const uint8_t src[6], uint16_t type)
{
	memcpy(f->b, dst, 6);
	memcpy(f->b + 6, src, 6);
	put16(f->b + 12, type);
	f->len = 14;
}

/* An IPv4/UDP frame (no IP options; UDP checksum 0, "none", which IPv4 allows). */
static void udp_frame(struct frame *f, const uint8_t dst_mac[6], const uint8_t src_mac[6], uint32_t src,
		      uint32_t dst, uint16_t sport, uint16_t dport, const void *payload, size_t n)
{
	eth_header(f, dst_mac, src_mac, ETH_P_IP);
	uint8_t *ip = f->b + 14, *udp = ip + 20;
	memset(ip, 0, 28);
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(28 + n));
	ip[8] = 64;
	ip[9] = IPPROTO_UDP;
	put32(ip + 12, src);
	put32(ip + 16, dst);
	uint32_t sum = 0;
	for (int i = 0; i < 20; i += 2)
		sum += get16(ip + i);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	put16(ip + 10, (uint16_t)~sum);
	put16(udp, sport);
	put16(udp + 2, dport);
	put16(udp + 4, (uint16_t)(8 + n));
	memcpy(udp + 8, payload, n);
	f->len = 14 + 28 + n;
}

static void arp_frame(struct frame *f, uint16_t op, const uint8_t sha[6], uint32_t spa, const uint8_t tha[6],
		      uint32_t tpa)
{
	eth_header(f, tha, sha, ETH_P_ARP);
	uint8_t *a = f->b + 14;
	put16(a, 1);           /* Ethernet */
	put16(a + 2, ETH_P_IP);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, op);
	memcpy(a + 8, sha, 6);
	put32(a + 14, spa);
	memcpy(a + 18, tha, 6);
	put32(a + 24, tpa);
	f->len = 14 + 28;
}

/* Into the tap, as the guest would send it (behind a zero virtio-net header). */
static void tap_write(int fd, const struct frame *f)
{
	uint8_t buf[VNET_HDR + sizeof(f->b)] = { 0 };
	memcpy(buf + VNET_HDR, f->b, f->len);
	assert_int_equal(write(fd, buf, VNET_HDR + f->len), (ssize_t)(VNET_HDR + f->len));
}

/* The next frame out of the tap for which match() holds, skipping others (an IPv6 or ARP
 * frame of the node's); fails at the deadline. */
static void tap_read(int fd, bool (*match)(const struct frame *f, const void *ud), const void *ud,
		     struct frame *out)
{
	uint64_t end = uk_now_mono_ns() + (uint64_t)DEADLINE_MS * 1000000;
	for (;;) {
		uint64_t now = uk_now_mono_ns();
		if (now >= end)
			fail_msg("no matching frame out of the tap within %d ms", DEADLINE_MS);
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int n = poll(&pfd, 1, (int)((end - now) / 1000000) + 1);
		assert_true(n >= 0);
		if (n == 0)
			continue;
		uint8_t buf[VNET_HDR + sizeof(out->b)];
		ssize_t len = read(fd, buf, sizeof(buf));
		assert_true(len > VNET_HDR);
		out->len = (size_t)len - VNET_HDR;
		memcpy(out->b, buf + VNET_HDR, out->len);
		if (match(out, ud))
			return;
	}
}

static bool is_arp_request_for(const struct frame *f, const void *ud)
{
	return f->len >= 42 && get16(f->b + 12) == ETH_P_ARP && get16(f->b + 20) == 1 &&
	       get32(f->b + 38) == *(const uint32_t *)ud;
}

struct udp_want {
	uint32_t dst;
	uint16_t dport;
};

static bool is_udp_to(const struct frame *f, const void *ud)
{
	const struct udp_want *w = ud;
	return f->len >= 42 && get16(f->b + 12) == ETH_P_IP && (f->b[14] & 0x0f) == 5 && f->b[23] == IPPROTO_UDP &&
	       get32(f->b + 30) == w->dst && get16(f->b + 36) == w->dport;
}

static int udp_socket(uint32_t addr, uint16_t port)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(s >= 0);
	int one = 1;
	assert_int_equal(setsockopt(s, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one)), 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(addr) };
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	return s;
}

static int udp_socket_here(void *ud, uk_error *err)
{
	(void)err;
	*(int *)ud = udp_socket(0, 67);
	return 0;
}

/* A datagram on s within the deadline, into buf; its length. */
static size_t udp_recv(int s, void *buf, size_t len, const char *what)
{
	struct pollfd pfd = { .fd = s, .events = POLLIN };
	if (poll(&pfd, 1, DEADLINE_MS) != 1)
		fail_msg("no datagram for %s within %d ms", what, DEADLINE_MS);
	ssize_t n = recv(s, buf, len, MSG_DONTWAIT);
	assert_true(n >= 0);
	return (size_t)n;
}

static uint64_t eth0_tx_packets(struct pod *p)
{
	_cleanup_nl_object_ struct rtnl_link *eth = link_of(p->sk, PODNET_ETH);
	return rtnl_link_get_stat(eth, RTNL_LINK_TX_PACKETS);
}

/* A DHCPDISCOVER from the guest: broadcast, 0.0.0.0:68 → 255.255.255.255:67. */
static void dhcp_discover(struct frame *f, const uint8_t mac[6], uint32_t xid)
{
	uint8_t bootp[244] = { 0 };
	bootp[0] = 1; /* BOOTREQUEST */
	bootp[1] = 1; /* Ethernet */
	bootp[2] = 6;
	put32(bootp + 4, xid);
	memcpy(bootp + 28, mac, 6);
	put32(bootp + 236, 0x63825363); /* the magic cookie */
	bootp[240] = 53;                /* message type: DISCOVER */
	bootp[241] = 1;
	bootp[242] = 1;
	bootp[243] = 255;
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	udp_frame(f, bcast, mac, 0, 0xffffffff, 68, 67, bootp, sizeof(bootp));
}

/* Frames both ways between the node and the tap, and DHCP kept in the pod's namespace. */
static void wire_traffic(void **state)
{
	struct pod *p = *state;
	NEED_ROOT();
	uint8_t guest[6], node[6];
	mac_parse(ETH_MAC, guest);
	p->tapfd = wire(p);
	p->peer_udp = udp_socket(0, 5555); /* any address: the broadcast below too */
	p->peer_67 = udp_socket(0, 67);
	uk_error err = { 0 };
	assert_int_equal(podnet_run_in(p->nsfd, udp_socket_here, &p->sock67, &err), 0);

	/* The node sends to the pod's address: its ARP request for it comes out of the tap. */
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(7777), .sin_addr.s_addr = htonl(IP("10.99.0.2")) };
	assert_int_equal(sendto(p->peer_udp, "ping", 4, 0, (struct sockaddr *)&to, sizeof(to)), 4);
	struct frame f;
	uint32_t pod_ip = IP("10.99.0.2");
	tap_read(p->tapfd, is_arp_request_for, &pod_ip, &f);
	memcpy(node, f.b + 6, 6);
	assert_int_equal(get32(f.b + 28), IP("10.99.0.1"));

	/* The guest answers through the tap; the node, resolved, sends its datagram, which comes
	 * out of the tap too. */
	struct frame reply;
	arp_frame(&reply, 2, guest, pod_ip, node, IP("10.99.0.1"));
	tap_write(p->tapfd, &reply);
	struct udp_want want = { pod_ip, 7777 };
	tap_read(p->tapfd, is_udp_to, &want, &f);
	assert_int_equal(f.len, 14 + 28 + 4);
	assert_memory_equal(f.b + 42, "ping", 4);

	/* The guest's datagram reaches the node, through eth0. */
	uint64_t tx = eth0_tx_packets(p);
	struct frame pong;
	udp_frame(&pong, node, guest, pod_ip, IP("10.99.0.1"), 7777, 5555, "pong", 4);
	tap_write(p->tapfd, &pong);
	assert_int_equal(eth0_tx_packets(p), tx + 1);
	char buf[512];
	assert_int_equal(udp_recv(p->peer_udp, buf, sizeof(buf), "the node (pong)"), 4);
	assert_memory_equal(buf, "pong", 4);

	/* The guest's DHCPDISCOVER stays in the pod's namespace: a socket there on port 67 gets it,
	 * and eth0 sends nothing. */
	struct frame discover;
	dhcp_discover(&discover, guest, 0x5eed1234);
	tap_write(p->tapfd, &discover);
	assert_int_equal(udp_recv(p->sock67, buf, sizeof(buf), "the pod's port 67 (DHCPDISCOVER)"), 244);
	assert_int_equal(get32((uint8_t *)buf + 4), 0x5eed1234);
	assert_int_equal(eth0_tx_packets(p), tx + 1);
	/* And the node never sees it: a datagram sent after it arrives, the DHCP one does not. */
	tap_write(p->tapfd, &pong);
	assert_int_equal(udp_recv(p->peer_udp, buf, sizeof(buf), "the node (pong after DHCP)"), 4);
	assert_int_equal(recv(p->peer_67, buf, sizeof(buf), MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);

	/* Not DHCP: UDP to another port, even broadcast, goes out to the node. */
	struct frame other;
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	udp_frame(&other, bcast, guest, pod_ip, 0xffffffff, 68, 5555, "bcast", 5);
	tap_write(p->tapfd, &other);
	assert_int_equal(eth0_tx_packets(p), tx + 3);
	assert_int_equal(udp_recv(p->peer_udp, buf, sizeof(buf), "the node (broadcast)"), 5);
	assert_memory_equal(buf, "bcast", 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ids_checked),
		cmocka_unit_test_setup_teardown(netns_lifecycle, pod_setup_none, pod_free),
		cmocka_unit_test_setup_teardown(netns_leftover_file, pod_setup_none, pod_free),
		cmocka_unit_test_setup_teardown(netns_gone, pod_setup_none, pod_free),
		cmocka_unit_test_setup_teardown(run_in_threads, pod_setup_empty, pod_free),
		cmocka_unit_test(parallel_pods),
		cmocka_unit_test_setup_teardown(no_eth0, pod_setup_empty, pod_free),
		cmocka_unit_test_setup_teardown(read_eth0, pod_setup, pod_free),
		cmocka_unit_test_setup_teardown(read_too_many_routes, pod_setup, pod_free),
		cmocka_unit_test_setup_teardown(wire_state, pod_setup, pod_free),
		cmocka_unit_test_setup_teardown(unwire_eth0_gone, pod_setup, pod_free),
		cmocka_unit_test_setup_teardown(wire_traffic, pod_setup, pod_free),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
