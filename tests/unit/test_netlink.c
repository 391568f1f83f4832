/* Tests of src/net/netlink.c against the kernel. They need root: the group setup moves the
 * process into a fresh network namespace (and a private mount namespace, to mount a sysfs
 * that shows that network namespace), so the host's links are never touched, and
 * everything made here vanishes with the process, whatever the outcome. Without root,
 * every test is skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <sched.h>
#include <time.h>
#include <arpa/inet.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <linux/if_tun.h>

#include <cmocka.h>

#include "../../src/common/util.h"
#include "../../src/net/net.h"

#include <netlink/netlink.h>
#include <netlink/route/addr.h>

static bool in_netns;

static int netns_setup(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		fprintf(stderr, "test_netlink: not root, skipping (needs CAP_NET_ADMIN and CAP_SYS_ADMIN)\n");
		return 0;
	}
	struct stat before, after;
	if (stat("/proc/self/ns/net", &before) < 0)
		return -1;
	if (unshare(CLONE_NEWNET | CLONE_NEWNS) < 0) {
		perror("unshare(CLONE_NEWNET|CLONE_NEWNS)");
		return -1;
	}
	if (stat("/proc/self/ns/net", &after) < 0 || after.st_ino == before.st_ino) {
		fprintf(stderr, "test_netlink: still in the original network namespace\n");
		return -1;
	}
	/* sysfs shows the network namespace of whoever mounted it: mount our own, in a mount
	 * namespace of our own, so /sys/class/net lists this namespace's links. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
		perror("mount sysfs");
		return -1;
	}
	in_netns = true;
	return 0;
}

#define NEED_NETNS()                                                                               \
	do {                                                                                       \
		if (!in_netns)                                                                     \
			skip();                                                                    \
	} while (0)

static uint32_t IP(const char *s)
{
	uint32_t v = 0;
	if (net_ip_parse(s, &v) < 0)
		fail_msg("bad test address %s", s);
	return v;
}

static bool sys_exists(const char *ifname, const char *attr)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "/sys/class/net/%s%s%s", ifname, attr ? "/" : "", attr ? attr : "");
	return access(path, F_OK) == 0;
}

static unsigned long sys_hex(const char *ifname, const char *attr)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "/sys/class/net/%s/%s", ifname, attr);
	_cleanup_free_ char *s = NULL;
	uk_error err = { 0 };
	if (uk_read_file(path, 4096, &s, NULL, &err) < 0)
		fail_msg("%s", err.msg);
	return strtoul(s, NULL, 16);
}

static void sys_master(const char *ifname, char out[PATH_MAX])
{
	char path[PATH_MAX], target[PATH_MAX];
	snprintf(path, sizeof(path), "/sys/class/net/%s/master", ifname);
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	if (n < 0) {
		out[0] = '\0';
		return;
	}
	target[n] = '\0';
	const char *base = strrchr(target, '/');
	memmove(out, base ? base + 1 : target, strlen(base ? base + 1 : target) + 1);
}

/* The IPv4 addresses of ifname, through getifaddrs (independent of libnl). */
static int v4_addrs(const char *ifname, uint32_t *addrs, uint32_t *masks, uint32_t *bcasts, int max)
{
	struct ifaddrs *ifa = NULL;
	if (getifaddrs(&ifa) < 0)
		fail_msg("getifaddrs: %s", strerror(errno));
	int n = 0;
	for (struct ifaddrs *p = ifa; p; p = p->ifa_next) {
		if (!p->ifa_addr || p->ifa_addr->sa_family != AF_INET || strcmp(p->ifa_name, ifname) != 0)
			continue;
		if (n < max) {
			addrs[n] = ntohl(((struct sockaddr_in *)p->ifa_addr)->sin_addr.s_addr);
			masks[n] = p->ifa_netmask ? ntohl(((struct sockaddr_in *)p->ifa_netmask)->sin_addr.s_addr) : 0;
			bcasts[n] = (p->ifa_flags & IFF_BROADCAST) && p->ifa_broadaddr ?
					    ntohl(((struct sockaddr_in *)p->ifa_broadaddr)->sin_addr.s_addr) :
					    0;
		}
		n++;
	}
	freeifaddrs(ifa);
	return n;
}

static void set_down(const char *ifname)
{
	_cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(s >= 0);
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	assert_int_equal(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags &= ~IFF_UP;
	assert_int_equal(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
}

static void remove_addr(const char *ifname, uint32_t a, int prefix)
{
	struct nl_sock *sk = nl_socket_alloc();
	assert_non_null(sk);
	assert_int_equal(nl_connect(sk, NETLINK_ROUTE), 0);
	struct rtnl_addr *addr = rtnl_addr_alloc();
	uint32_t be = htonl(a);
	struct nl_addr *local = nl_addr_build(AF_INET, &be, 4);
	nl_addr_set_prefixlen(local, prefix);
	rtnl_addr_set_ifindex(addr, (int)if_nametoindex(ifname));
	rtnl_addr_set_local(addr, local);
	rtnl_addr_set_prefixlen(addr, prefix);
	int r = rtnl_addr_delete(sk, addr, 0);
	nl_addr_put(local);
	rtnl_addr_put(addr);
	nl_socket_free(sk);
	assert_int_equal(r, 0);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static bool wait_gone(const char *ifname)
{
	for (int i = 0; i < 200; i++) {
		if (!net_link_exists(ifname) && !sys_exists(ifname, NULL))
			return true;
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	}
	return false;
}

static void check_bridge(const char *br, const char *gw, int prefix, const char *bcast)
{
	assert_true(net_link_exists(br));
	assert_true(sys_exists(br, "bridge")); /* a bridge, not any link */
	assert_true(sys_hex(br, "flags") & IFF_UP);
	uint32_t a[8], m[8], b[8];
	int n = v4_addrs(br, a, m, b, 8);
	assert_int_equal(n, 1);
	assert_int_equal(a[0], IP(gw));
	assert_int_equal(m[0], 0xffffffffu << (32 - prefix));
	assert_int_equal(b[0], IP(bcast));
}

static void bridge_create_idempotent(void **state)
{
	(void)state;
	NEED_NETNS();
	int fds = count_fds();
	uk_error err = { 0 };
	assert_false(net_link_exists("ukbr0"));
	if (net_bridge_ensure("ukbr0", IP("10.99.0.1"), 16, &err) != 0)
		fail_msg("%s", err.msg);
	check_bridge("ukbr0", "10.99.0.1", 16, "10.99.255.255");

	/* Again: nothing changes, no second address. */
	assert_int_equal(net_bridge_ensure("ukbr0", IP("10.99.0.1"), 16, &err), 0);
	check_bridge("ukbr0", "10.99.0.1", 16, "10.99.255.255");

	/* Set down and stripped of its address, it is repaired. */
	set_down("ukbr0");
	remove_addr("ukbr0", IP("10.99.0.1"), 16);
	assert_false(sys_hex("ukbr0", "flags") & IFF_UP);
	assert_int_equal(net_bridge_ensure("ukbr0", IP("10.99.0.1"), 16, &err), 0);
	check_bridge("ukbr0", "10.99.0.1", 16, "10.99.255.255");

	/* Another bridge with a /24. */
	assert_int_equal(net_bridge_ensure("ukbr.x-1", IP("192.168.50.1"), 24, &err), 0);
	check_bridge("ukbr.x-1", "192.168.50.1", 24, "192.168.50.255");
	assert_int_equal(net_link_delete("ukbr.x-1", &err), 0);

	assert_int_equal(count_fds(), fds);
}

static void bridge_errors(void **state)
{
	(void)state;
	NEED_NETNS();
	uk_error err = { 0 };
	static const char *bad[] = { "", "abcdefghijklmnop" /* 16 */, "a/b", "a b", "br:0", "..", "br%d" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		if (net_bridge_ensure(bad[i], IP("10.98.0.1"), 24, &err) != -EINVAL)
			fail_msg("bridge name \"%s\" accepted", bad[i]);
		assert_false(net_link_exists(bad[i]));
	}
	assert_int_equal(net_bridge_ensure(NULL, IP("10.98.0.1"), 24, &err), -EINVAL);
	/* 15 characters is the most. */
	assert_int_equal(net_bridge_ensure("abcdefghijklmno", IP("10.98.0.1"), 24, &err), 0);
	assert_int_equal(net_link_delete("abcdefghijklmno", &err), 0);
	assert_int_equal(net_bridge_ensure("ukbr9", IP("10.98.0.1"), 31, &err), -EINVAL);

	/* A link of that name that is not a bridge: refused, and left alone. */
	assert_int_equal(net_bridge_ensure("ukbr1", IP("10.98.0.1"), 24, &err), 0);
	int fd = net_tap_create("uknotbr", "ukbr1", &err);
	assert_true(fd >= 0);
	assert_int_equal(net_bridge_ensure("uknotbr", IP("10.97.0.1"), 24, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "uknotbr"));
	assert_non_null(strstr(err.msg, "not a bridge"));
	assert_true(net_link_exists("uknotbr"));
	close(fd);
	assert_true(wait_gone("uknotbr"));
	assert_int_equal(net_link_delete("ukbr1", &err), 0);
}

static void tap_on_bridge(void **state)
{
	(void)state;
	NEED_NETNS();
	int fds = count_fds();
	uk_error err = { 0 };
	assert_int_equal(net_bridge_ensure("ukbr2", IP("10.96.0.1"), 24, &err), 0);

	char tap[IFNAMSIZ];
	net_tap_name("0123456789abcdef0123456789abcdef", tap);
	int fd = net_tap_create(tap, "ukbr2", &err);
	if (fd < 0)
		fail_msg("%s", err.msg);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_true(net_link_exists(tap));
	char master[PATH_MAX];
	sys_master(tap, master);
	assert_string_equal(master, "ukbr2");
	assert_true(sys_exists("ukbr2", "brif/uk0123456789ab"));
	assert_true(sys_hex(tap, "flags") & IFF_UP);
	unsigned long tf = sys_hex(tap, "tun_flags");
	assert_true(tf & IFF_TAP);
	assert_true(tf & IFF_NO_PI);
	assert_true(tf & IFF_VNET_HDR);
	assert_false(tf & IFF_PERSIST);
	/* The fd is the tap's. */
	struct ifreq ifr = { 0 };
	assert_int_equal(ioctl(fd, TUNGETIFF, &ifr), 0);
	assert_string_equal(ifr.ifr_name, tap);

	/* The bridge's MAC was set, so a port does not change it. */
	assert_int_equal(sys_hex("ukbr2", "addr_assign_type"), 3 /* NET_ADDR_SET */);
	_cleanup_free_ char *brmac = NULL;
	assert_int_equal(uk_read_file("/sys/class/net/ukbr2/address", 64, &brmac, NULL, NULL), 0);
	assert_memory_equal(brmac, "06:", 3);

	/* The name is taken while the fd is open: no second attachment. */
	assert_int_equal(net_tap_create(tap, "ukbr2", &err), -EEXIST);
	assert_non_null(strstr(err.msg, tap));

	/* A second tap on the same bridge. */
	int fd2 = net_tap_create("uktap2", "ukbr2", &err);
	assert_true(fd2 >= 0);
	sys_master("uktap2", master);
	assert_string_equal(master, "ukbr2");
	_cleanup_free_ char *brmac2 = NULL;
	assert_int_equal(uk_read_file("/sys/class/net/ukbr2/address", 64, &brmac2, NULL, NULL), 0);
	assert_string_equal(brmac, brmac2);

	/* Not persistent: closing the last fd removes it. A dup keeps it alive. */
	int dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	assert_true(dupfd >= 0);
	close(fd);
	assert_true(net_link_exists(tap));
	close(dupfd);
	assert_true(wait_gone(tap));
	close(fd2);
	assert_true(wait_gone("uktap2"));

	/* The name is free again. */
	fd = net_tap_create(tap, "ukbr2", &err);
	assert_true(fd >= 0);
	close(fd);
	assert_true(wait_gone(tap));
	assert_int_equal(count_fds(), fds);
}

static void tap_errors(void **state)
{
	(void)state;
	NEED_NETNS();
	int fds = count_fds();
	uk_error err = { 0 };
	/* No bridge: no tap, nothing left behind. */
	assert_int_equal(net_tap_create("uktap3", "nosuchbr", &err), -ENODEV);
	assert_non_null(strstr(err.msg, "nosuchbr"));
	assert_false(net_link_exists("uktap3"));
	/* The "bridge" is not one. */
	assert_int_equal(net_bridge_ensure("ukbr3", IP("10.95.0.1"), 24, &err), 0);
	int fd = net_tap_create("uktap4", "ukbr3", &err);
	assert_true(fd >= 0);
	assert_int_equal(net_tap_create("uktap3", "uktap4", &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not a bridge"));
	assert_false(net_link_exists("uktap3"));
	close(fd);
	assert_true(wait_gone("uktap4"));
	/* A name taken by another kind of link. */
	assert_int_equal(net_tap_create("ukbr3", "ukbr3", &err), -EEXIST);
	assert_true(sys_exists("ukbr3", "bridge"));
	/* Bad names. */
	assert_int_equal(net_tap_create("a/b", "ukbr3", &err), -EINVAL);
	assert_int_equal(net_tap_create("uktap5", "", &err), -EINVAL);
	assert_int_equal(net_tap_create("abcdefghijklmnop", "ukbr3", &err), -EINVAL);
	assert_int_equal(net_tap_create(NULL, "ukbr3", &err), -EINVAL);
	assert_int_equal(net_link_delete("ukbr3", &err), 0);
	assert_int_equal(count_fds(), fds);
}

static void link_delete_idempotent(void **state)
{
	(void)state;
	NEED_NETNS();
	uk_error err = { 0 };
	assert_int_equal(net_bridge_ensure("ukdel0", IP("10.94.0.1"), 24, &err), 0);
	assert_true(net_link_exists("ukdel0"));
	assert_int_equal(net_link_delete("ukdel0", &err), 0);
	assert_false(net_link_exists("ukdel0"));
	assert_false(sys_exists("ukdel0", NULL));
	assert_int_equal(net_link_delete("ukdel0", &err), 0);
	assert_int_equal(net_link_delete("neverexisted", &err), 0);
	assert_int_equal(net_link_delete("a/b", &err), -EINVAL);
	assert_false(net_link_exists("a/b"));
	assert_false(net_link_exists(""));
	assert_false(net_link_exists(NULL));
	assert_true(net_link_exists("lo"));
}

static void ip_forward(void **state)
{
	(void)state;
	NEED_NETNS();
	const char *path = "/proc/sys/net/ipv4/ip_forward";
	/* Our namespace's, not the host's. */
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "0\n", 2), 2);
	close(fd);
	_cleanup_free_ char *s = NULL;
	assert_int_equal(uk_read_file(path, 64, &s, NULL, NULL), 0);
	assert_string_equal(s, "0\n");
	free(TAKE_PTR(s));

	uk_error err = { 0 };
	assert_int_equal(net_ip_forward_enable(&err), 0);
	assert_int_equal(uk_read_file(path, 64, &s, NULL, NULL), 0);
	assert_string_equal(s, "1\n");
	free(TAKE_PTR(s));
	assert_int_equal(net_ip_forward_enable(&err), 0);
	assert_int_equal(uk_read_file(path, 64, &s, NULL, NULL), 0);
	assert_string_equal(s, "1\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bridge_create_idempotent),
		cmocka_unit_test(bridge_errors),
		cmocka_unit_test(tap_on_bridge),
		cmocka_unit_test(tap_errors),
		cmocka_unit_test(link_delete_idempotent),
		cmocka_unit_test(ip_forward),
	};
	return cmocka_run_group_tests(tests, netns_setup, NULL);
}
