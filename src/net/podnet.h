/* A pod's own network namespace in CNI mode, and the VM wired into it.
 *
 * The namespace is pinned at /run/netns/unikd-<sandbox id> (a bind mount of a namespace
 * file, as `ip netns` does), so a restarted unikd finds it. The CNI plugins give it an
 * `eth0`; unikd adds a tap beside it, whose fd QEMU holds on the host side, and joins the two
 * with an ingress qdisc and u32 + mirred redirects in both directions (as Kata and urunc do;
 * u32, since this kernel has no matchall or gact). DHCP from the guest is kept out of the
 * redirect so a per-pod dnsmasq on the tap can answer it. eth0 keeps its address (the bridge
 * plugin's DEL reads it); the guest's NIC gets eth0's MAC, and the tap eth0's MTU.
 *
 * Everything runs through libnl-route-3 in the namespace (a thread that setns()es in and
 * back, or a socket opened inside it); nothing is exec'ed. */
#ifndef UK_NET_PODNET_H
#define UK_NET_PODNET_H

#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>

#include "../common/error.h"
#include "net.h"
#include "nl.h"

#define PODNET_NETNS_DIR "/run/netns"
#define PODNET_TAP "tap0"   /* the VM's tap inside the pod's namespace */
/* tap0's own address: link-local, a /32, so it routes nothing; the pod's DHCP server answers
 * the guest from it (dnsmasq needs an address on the interface it serves). */
#define PODNET_TAP_ADDR "169.254.77.1"
#define PODNET_ROUTES_MAX 32
#define PODNET_ETH "eth0"   /* the plugins' interface (CNI_IFNAME) */
/* The tc filters' priorities, on the ingress qdiscs (ffff:) of eth0 and tap0: unwire and a
 * new wire remove exactly these. */
#define PODNET_PRIO_ETH_REDIRECT 0x756b /* eth0: everything → tap0 ("uk") */
#define PODNET_PRIO_TAP_DHCP 1          /* tap0: IPv4 UDP to port 67 stays in the namespace */
#define PODNET_PRIO_TAP_REDIRECT 2      /* tap0: everything else → eth0 */

/* /run/netns/unikd-<id> into path (PATH_MAX). The id must be 64 lowercase hex characters
 * (unikd's sandbox ids): for any other, and every function below returns -EINVAL, the path is
 * "". */
void podnet_netns_path(const char *sandbox_id, char *path, size_t len);
/* Create and pin the namespace (its loopback up). -EEXIST if pinned already. The directory
 * /run/netns is made, and made a shared mount as iproute2 does, if needed. */
int podnet_netns_create(const char *sandbox_id, uk_error *err);
/* Unpin and remove (idempotent). */
int podnet_netns_remove(const char *sandbox_id, uk_error *err);
bool podnet_netns_exists(const char *sandbox_id);
/* An fd (O_CLOEXEC) of the pinned namespace, for setns or uk_spawn's netns_fd. -ENOENT when
 * it is not pinned. */
int podnet_netns_open(const char *sandbox_id, uk_error *err);

/* Run fn(ud, err) on a thread of its own that joins the namespace (setns) and then ends: no
 * thread of the caller ever changes namespace. What fn opens (sockets, /dev/net/tun) stays
 * bound to that namespace and usable from any thread. Returns what fn returns. */
int podnet_run_in(int netns_fd, int (*fn)(void *ud, uk_error *err), void *ud, uk_error *err);
/* A connected rtnetlink socket (libnl-3, close-on-exec) bound to the namespace: every libnl
 * call made on it acts there, from whatever thread. Free with nl_socket_free. */
int podnet_nl_socket(int netns_fd, struct nl_sock **ret, uk_error *err);

/* Cleanup helpers for what such a socket gives: nl.h's. */

/* What the guest sees of eth0 after the plugins ran: read from the namespace itself
 * (addresses and routes, as Kata does), not only from the CNI result: Calico puts its
 * gateway in the routes. The routes are the main table's IPv4 unicast routes out of eth0
 * (the default route and on-link ones included; a multipath route by its first hop); more
 * than PODNET_ROUTES_MAX is -E2BIG. -ENODEV without eth0, -ENOENT without the namespace. */
struct podnet_route {
	uint32_t dst;     /* host order */
	int prefix;
	uint32_t gateway; /* 0: on-link */
};
struct podnet_info {
	char mac[18];
	unsigned mtu;
	uint32_t ip;       /* the first IPv4 of eth0, host order; 0 if none */
	int prefix;
	uint32_t gateway;  /* the default route's gateway, 0 if none */
	struct podnet_route routes[PODNET_ROUTES_MAX];
	size_t n_routes;
};
int podnet_read(const char *sandbox_id, struct podnet_info *ret, uk_error *err);

/* The tap tap0 in the namespace, up with eth0's MTU, redirected to and from eth0 (ingress
 * qdiscs, u32 + mirred both ways, DHCP from the tap kept local). Returns the tap's fd
 * (O_CLOEXEC, the host side for QEMU); the tap goes with its last fd. Idempotent: an old
 * tap0 and old filters are replaced. */
int podnet_tap_wire(const char *sandbox_id, const struct podnet_info *info, uk_error *err);
/* Remove the tap and the redirects (eth0 is the plugins' and stays; its ingress qdisc goes
 * when no filter is left on it). Idempotent: a namespace or eth0 that is gone is fine. */
int podnet_tap_unwire(const char *sandbox_id, uk_error *err);
/* Delete eth0 (with its veth peer) from the pod's namespace: only for taking back an ADD that
 * never finished, whose DEL failed on what the cut-short ADD left half made. Idempotent. */
int podnet_eth_delete(const char *sandbox_id, uk_error *err);

#endif
