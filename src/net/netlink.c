/* Links of the pod network, through rtnetlink (libnl-route-3): the bridge with the gateway
 * address, one tap per VM on it, and deletion. Everything acts on the calling thread's
 * network namespace. A fresh netlink socket per call: calls come from several threads. */
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <arpa/inet.h>
#include <linux/if_tun.h>

#include <netlink/netlink.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/inet6.h>

#include "../common/util.h"
#include "net.h"
#include "nl.h"

/* ---- cleanup helpers for libnl objects ---- */
static inline void rtnl_link_putp(struct rtnl_link **p)
{
	if (*p)
		rtnl_link_put(*p);
}
#define _cleanup_rtnl_link_ _cleanup_(rtnl_link_putp)

static inline void rtnl_addr_putp(struct rtnl_addr **p)
{
	if (*p)
		rtnl_addr_put(*p);
}
#define _cleanup_rtnl_addr_ _cleanup_(rtnl_addr_putp)

static inline void nl_addr_putp(struct nl_addr **p)
{
	if (*p)
		nl_addr_put(*p);
}
#define _cleanup_nl_addr_ _cleanup_(nl_addr_putp)


static int nl_fail(uk_error *err, int nle, const char *what)
{
	return net_nl_fail(err, nle, "%s", what);
}

bool net_ifname_valid(const char *name)
{
	if (!name)
		return false;
	size_t n = strlen(name);
	if (n < 1 || n >= IFNAMSIZ)
		return false;
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	for (const char *p = name; *p; p++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '_' || c == '-' || c == '.';
		if (!ok)
			return false;
	}
	return true;
}

static int check_ifname(const char *what, const char *name, uk_error *err)
{
	if (!net_ifname_valid(name))
		return uk_err(err, EINVAL, "invalid %s name \"%.*s\": must be 1..%d characters of [A-Za-z0-9_.-]",
			      what, IFNAMSIZ * 2, name ? name : "(null)", IFNAMSIZ - 1);
	return 0;
}

/* The link named name, or NULL in *ret (and 0) if there is none. */
static int link_get(struct nl_sock *sk, const char *name, struct rtnl_link **ret, uk_error *err)
{
	struct rtnl_link *l = NULL;
	int r = rtnl_link_get_kernel(sk, 0, name, &l);
	if (r == -NLE_OBJ_NOTFOUND || r == -NLE_NODEV) {
		*ret = NULL;
		return 0;
	}
	if (r < 0) {
		char what[64];
		snprintf(what, sizeof(what), "look up link %s", name);
		return nl_fail(err, r, what);
	}
	*ret = l;
	return 0;
}

/* Apply changes (flags, master) to the link. */
static int link_change(struct nl_sock *sk, struct rtnl_link *link, struct rtnl_link *changes, const char *what,
		       uk_error *err)
{
	int r = rtnl_link_change(sk, link, changes, 0);
	if (r < 0)
		return nl_fail(err, r, what);
	return 0;
}

static int link_set_up(struct nl_sock *sk, struct rtnl_link *link, const char *name, uk_error *err)
{
	if (rtnl_link_get_flags(link) & IFF_UP)
		return 0;
	_cleanup_rtnl_link_ struct rtnl_link *ch = rtnl_link_alloc();
	if (!ch)
		return uk_err(err, ENOMEM, "out of memory");
	rtnl_link_set_flags(ch, IFF_UP);
	char what[64];
	snprintf(what, sizeof(what), "set link %s up", name);
	return link_change(sk, link, ch, what, err);
}

static bool link_is_bridge(struct rtnl_link *l)
{
	const char *type = rtnl_link_get_type(l);
	return type && strcmp(type, "bridge") == 0;
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; s && *s; s++) {
		h ^= (uint8_t)*s;
		h *= 0x100000001b3ull;
	}
	return h;
}

/* 06:xx:xx:xx:xx:xx from the name: locally administered, unicast, stable across
 * re-creations, and apart from the pods' 02:… addresses. */
static void bridge_mac(const char *name, uint8_t mac[6])
{
	uint64_t h = fnv1a(name);
	mac[0] = 0x06;
	for (int i = 1; i < 6; i++)
		mac[i] = (uint8_t)(h >> (8 * (i - 1)));
}

int net_bridge_ensure(const char *name, uint32_t gw, int prefix, uk_error *err)
{
	int r = check_ifname("bridge", name, err);
	if (r < 0)
		return r;
	if (prefix < 1 || prefix > 30)
		return uk_err(err, EINVAL, "bridge %s: prefix /%d is outside 1..30", name, prefix);
	_cleanup_nl_sock_ struct nl_sock *sk = NULL;
	r = net_route_socket(&sk, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "bridge %s", name);

	_cleanup_rtnl_link_ struct rtnl_link *link = NULL;
	r = link_get(sk, name, &link, err);
	if (r < 0)
		return r;
	if (!link) {
		_cleanup_rtnl_link_ struct rtnl_link *br = rtnl_link_bridge_alloc();
		if (!br)
			return uk_err(err, ENOMEM, "out of memory");
		rtnl_link_set_name(br, name);
		/* A MAC of its own, set explicitly: otherwise the kernel gives the bridge the
		 * lowest MAC among its ports, and the gateway's MAC changes under the guests'
		 * ARP caches as pods come and go. */
		uint8_t mac[6];
		bridge_mac(name, mac);
		_cleanup_nl_addr_ struct nl_addr *lladdr = nl_addr_build(AF_LLC, mac, sizeof(mac));
		if (!lladdr)
			return uk_err(err, ENOMEM, "out of memory");
		rtnl_link_set_addr(br, lladdr);
		r = rtnl_link_add(sk, br, NLM_F_CREATE | NLM_F_EXCL);
		/* EEXIST: someone made it meanwhile; it is checked like any existing link. */
		if (r < 0 && r != -NLE_EXIST) {
			char what[64];
			snprintf(what, sizeof(what), "create bridge %s", name);
			return nl_fail(err, r, what);
		}
		r = link_get(sk, name, &link, err);
		if (r < 0)
			return r;
		if (!link)
			return uk_err(err, ENODEV, "bridge %s vanished right after its creation", name);
	}
	if (!link_is_bridge(link)) {
		const char *type = rtnl_link_get_type(link);
		return uk_err(err, EEXIST, "link %s exists and is not a bridge (its type is %s)", name,
			      type ? type : "none");
	}
	int ifindex = rtnl_link_get_ifindex(link);

	/* The gateway address. Adding one that is there is EEXIST, which is success. */
	uint32_t be = htonl(gw);
	uint32_t bcast_be = htonl(gw | (0xffffffffu >> prefix));
	_cleanup_nl_addr_ struct nl_addr *local = nl_addr_build(AF_INET, &be, sizeof(be));
	_cleanup_nl_addr_ struct nl_addr *bcast = nl_addr_build(AF_INET, &bcast_be, sizeof(bcast_be));
	_cleanup_rtnl_addr_ struct rtnl_addr *addr = rtnl_addr_alloc();
	if (!local || !bcast || !addr)
		return uk_err(err, ENOMEM, "out of memory");
	nl_addr_set_prefixlen(local, prefix);
	rtnl_addr_set_ifindex(addr, ifindex);
	rtnl_addr_set_family(addr, AF_INET);
	r = rtnl_addr_set_local(addr, local);
	if (r < 0)
		return nl_fail(err, r, "build address");
	rtnl_addr_set_prefixlen(addr, prefix);
	r = rtnl_addr_set_broadcast(addr, bcast);
	if (r < 0)
		return nl_fail(err, r, "build address");
	r = rtnl_addr_add(sk, addr, NLM_F_CREATE);
	if (r < 0 && r != -NLE_EXIST) {
		char ip[NET_IP_MAX], what[96];
		net_ip_str(gw, ip);
		snprintf(what, sizeof(what), "add address %s/%d to bridge %s", ip, prefix, name);
		return nl_fail(err, r, what);
	}

	return link_set_up(sk, link, name, err);
}

/* The bridge named, checked to be one. */
static int bridge_get(struct nl_sock *sk, const char *bridge, struct rtnl_link **ret, uk_error *err)
{
	int r = link_get(sk, bridge, ret, err);
	if (r < 0)
		return r;
	if (!*ret)
		return uk_err(err, ENODEV, "bridge %s does not exist", bridge);
	if (!link_is_bridge(*ret))
		return uk_err(err, EINVAL, "link %s is not a bridge", bridge);
	return 0;
}

/* The tap on the bridge, up, with hairpin mode. */
static int tap_attach(struct nl_sock *sk, const char *ifname, struct rtnl_link *br, const char *bridge, uk_error *err)
{
	_cleanup_rtnl_link_ struct rtnl_link *tap = NULL;
	int r = link_get(sk, ifname, &tap, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "tap %s", ifname);
	if (!tap)
		return uk_err(err, ENODEV, "tap %s does not exist", ifname);
	_cleanup_rtnl_link_ struct rtnl_link *ch = rtnl_link_alloc();
	_cleanup_rtnl_link_ struct rtnl_link *v6 = rtnl_link_alloc();
	if (!ch || !v6)
		return uk_err(err, ENOMEM, "out of memory");
	/* A bridge port needs no IPv6 address: without one, the kernel sends no DAD, MLD or
	 * router solicitation down the tap into a VM that is still starting. Before the link
	 * is up, when the address would be made; best effort (a kernel without IPv6). */
	if (rtnl_link_inet6_set_addr_gen_mode(v6, rtnl_link_inet6_str2addrgenmode("none")) == 0)
		(void)link_change(sk, tap, v6, "no IPv6 address on the tap", NULL);
	rtnl_link_set_master(ch, rtnl_link_get_ifindex(br));
	rtnl_link_set_flags(ch, IFF_UP);
	char what[96];
	snprintf(what, sizeof(what), "put tap %s on bridge %s and set it up", ifname, bridge);
	r = link_change(sk, tap, ch, what, err);
	if (r < 0)
		return r;
	/* Hairpin: with br_netfilter on, a pod reaching its own hostPort is DNATed back out
	 * of the port it came in on, which a bridge drops unless the port allows it. */
	char path[128];
	snprintf(path, sizeof(path), "/sys/class/net/%s/brport/hairpin_mode", ifname);
	_cleanup_close_ int hp = open(path, O_WRONLY | O_CLOEXEC);
	if (hp >= 0 && write(hp, "1", 1) != 1)
		return uk_err_errno(err, errno, "set hairpin mode on tap %s", ifname);
	return 0;
}

int net_tap_create(const char *ifname, const char *bridge, uk_error *err)
{
	int r = check_ifname("tap", ifname, err);
	if (r < 0 || (bridge && (r = check_ifname("bridge", bridge, err)) < 0))
		return r;
	_cleanup_nl_sock_ struct nl_sock *sk = NULL;
	r = net_route_socket(&sk, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "tap %s", ifname);
	/* The bridge first: a missing one costs no tap. */
	_cleanup_rtnl_link_ struct rtnl_link *br = NULL;
	if (bridge && (r = bridge_get(sk, bridge, &br, err)) < 0)
		return uk_err_ctx_r(err, r, "tap %s", ifname);
	_cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return uk_err_errno(err, errno, "tap %s: open /dev/net/tun", ifname);
	struct ifreq ifr = { 0 };
	/* IFF_TUN_EXCL: create a new device or fail; never attach to a leftover one (which
	 * could be persistent, or someone else's). No TUNSETPERSIST: the tap lives as long
	 * as an fd to it does. */
	ifr.ifr_flags = (short)(unsigned short)(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_TUN_EXCL);
	memcpy(ifr.ifr_name, ifname, strlen(ifname) + 1);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		if (errno == EBUSY)
			return uk_err(err, EEXIST, "tap %s: a link of that name already exists", ifname);
		return uk_err_errno(err, errno, "tap %s: TUNSETIFF", ifname);
	}
	/* From here on, returning without TAKE_FD closes fd, and the tap goes with it. */
	if (br && (r = tap_attach(sk, ifname, br, bridge, err)) < 0)
		return r;
	return TAKE_FD(fd);
}

int net_tap_attach(const char *ifname, const char *bridge, uk_error *err)
{
	int r = check_ifname("tap", ifname, err);
	if (r < 0 || (r = check_ifname("bridge", bridge, err)) < 0)
		return r;
	_cleanup_nl_sock_ struct nl_sock *sk = NULL;
	_cleanup_rtnl_link_ struct rtnl_link *br = NULL;
	if ((r = net_route_socket(&sk, err)) < 0 || (r = bridge_get(sk, bridge, &br, err)) < 0)
		return uk_err_ctx_r(err, r, "tap %s", ifname);
	return tap_attach(sk, ifname, br, bridge, err);
}

bool net_link_exists(const char *ifname)
{
	if (!net_ifname_valid(ifname))
		return false;
	_cleanup_nl_sock_ struct nl_sock *sk = NULL;
	if (net_route_socket(&sk, NULL) < 0)
		return false;
	_cleanup_rtnl_link_ struct rtnl_link *l = NULL;
	if (link_get(sk, ifname, &l, NULL) < 0)
		return false;
	return l != NULL;
}

int net_link_delete(const char *ifname, uk_error *err)
{
	int r = check_ifname("link", ifname, err);
	if (r < 0)
		return r;
	_cleanup_nl_sock_ struct nl_sock *sk = NULL;
	r = net_route_socket(&sk, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "delete link %s", ifname);
	_cleanup_rtnl_link_ struct rtnl_link *l = rtnl_link_alloc();
	if (!l)
		return uk_err(err, ENOMEM, "out of memory");
	rtnl_link_set_name(l, ifname);
	r = rtnl_link_delete(sk, l);
	if (r == -NLE_OBJ_NOTFOUND || r == -NLE_NODEV)
		return 0;
	if (r < 0) {
		char what[64];
		snprintf(what, sizeof(what), "delete link %s", ifname);
		return nl_fail(err, r, what);
	}
	return 0;
}

int net_ip_forward_enable(uk_error *err)
{
	static const char path[] = "/proc/sys/net/ipv4/ip_forward";
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return uk_err_errno(err, errno, "open %s", path);
	int r = uk_write_all(fd, "1\n", 2);
	if (r < 0)
		return uk_err_errno(err, -r, "write %s", path);
	return 0;
}

static bool safe_ifname_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
	       c == '-' || c == '.';
}

void net_tap_name(const char *sandbox_id, char out[IFNAMSIZ])
{
	size_t n = 0;
	out[n++] = 'u';
	out[n++] = 'k';
	for (size_t i = 0; sandbox_id && sandbox_id[i] && i < 12; i++)
		out[n++] = safe_ifname_char(sandbox_id[i]) ? sandbox_id[i] : '_';
	out[n] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void net_mac_from_id(const char *sandbox_id, char out[18])
{
	uint8_t b[5];
	bool hex = sandbox_id != NULL;
	for (size_t i = 0; hex && i < 10; i++)
		if (hexval(sandbox_id[i]) < 0)
			hex = false; /* also stops at the NUL of a short id */
	if (hex) {
		for (size_t i = 0; i < 5; i++)
			b[i] = (uint8_t)(hexval(sandbox_id[2 * i]) << 4 | hexval(sandbox_id[2 * i + 1]));
	} else {
		/* Not a hex id (unikd makes hex ones): still stable per id. */
		uint64_t h = fnv1a(sandbox_id);
		for (size_t i = 0; i < 5; i++)
			b[i] = (uint8_t)(h >> (8 * i));
	}
	snprintf(out, 18, "02:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4]);
}
