/* A pod's network namespace (podnet.h): pinning it under /run/netns, running code in it,
 * reading what the CNI plugins gave its eth0, and the VM's tap wired to eth0 with tc.
 *
 * Threads and namespaces. unikd's threads (gRPC's, the pools') must stay in the host's
 * network namespace. Whatever has to happen *inside* a pod's namespace runs on a thread made
 * for it, which joins the namespace (setns, or unshare for a new one), does its work and
 * ends: it never has to come back, so no failed setns-back can leave a daemon thread in a
 * pod's namespace, and no other thread notices. A network namespace, unlike a mount or user
 * namespace, may be joined by one thread of a multithreaded process. A forked child would
 * be worse: after fork in a multithreaded process only async-signal-safe calls are allowed,
 * and libnl allocates. The thread does little (open a netlink socket or /dev/net/tun, which
 * stay bound to the namespace they were opened in); the caller's thread does the rest. */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_tun.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>

#include <netlink/netlink.h>
#include <netlink/cache.h>
#include <netlink/route/act/mirred.h>
#include <netlink/route/action.h>
#include <netlink/route/addr.h>
#include <netlink/route/classifier.h>
#include <netlink/route/cls/u32.h>
#include <netlink/route/link.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/route.h>
#include <netlink/route/tc.h>

#include "../common/util.h"
#include "cni.h"
#include "podnet.h"

/* ---- libnl ---- */

/* The link named name; -ENODEV naming it when there is none. */
static int link_get(struct nl_sock *sk, const char *name, struct rtnl_link **ret, uk_error *err)
{
	int r = rtnl_link_get_kernel(sk, 0, name, ret);
	if (r == -NLE_OBJ_NOTFOUND || r == -NLE_NODEV)
		return uk_err(err, ENODEV, "no link %s in the pod's network namespace", name);
	if (r < 0)
		return net_nl_fail(err, r, "look up link %s", name);
	return 0;
}

/* Set the link up, and its MTU and MAC when given (mtu 0, mac NULL: unchanged). */
static int link_set(struct nl_sock *sk, const char *name, unsigned mtu, struct nl_addr *mac, uk_error *err)
{
	_cleanup_nl_object_ struct rtnl_link *link = NULL;
	int r = link_get(sk, name, &link, err);
	if (r < 0)
		return r;
	_cleanup_nl_object_ struct rtnl_link *ch = rtnl_link_alloc();
	if (!ch)
		return uk_err(err, ENOMEM, "out of memory");
	rtnl_link_set_flags(ch, IFF_UP);
	if (mtu)
		rtnl_link_set_mtu(ch, mtu);
	if (mac)
		rtnl_link_set_addr(ch, mac);
	r = rtnl_link_change(sk, link, ch, 0);
	if (r < 0)
		return net_nl_fail(err, r, "set up link %s", name);
	return 0;
}

/* ---- ids and paths ---- */

static bool sandbox_id_ok(const char *id)
{
	if (!id || strnlen(id, 65) != 64)
		return false;
	for (const char *p = id; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

/* The namespace's path into path (PATH_MAX), or -EINVAL naming the id. */
static int netns_path(const char *sandbox_id, char path[PATH_MAX], uk_error *err)
{
	if (!sandbox_id_ok(sandbox_id))
		return uk_err(err, EINVAL, "invalid sandbox id \"%.80s\": must be 64 lowercase hex characters",
			      sandbox_id ? sandbox_id : "(null)");
	snprintf(path, PATH_MAX, PODNET_NETNS_DIR "/" CNI_NETNS_PREFIX "%s", sandbox_id);
	return 0;
}

void podnet_netns_path(const char *sandbox_id, char *path, size_t len)
{
	char p[PATH_MAX];
	if (!path || len == 0)
		return;
	if (netns_path(sandbox_id, p, NULL) < 0 || strlen(p) >= len) {
		path[0] = '\0';
		return;
	}
	memcpy(path, p, strlen(p) + 1);
}

/* ---- running in a namespace ---- */

struct ns_job {
	int netns_fd; /* joined with setns; -1: a new namespace (unshare) */
	int (*fn)(void *ud, uk_error *err);
	void *ud;
	uk_error *err;
	int r;
};

static void *ns_job_main(void *arg)
{
	struct ns_job *j = arg;
	if (j->netns_fd >= 0 ? setns(j->netns_fd, CLONE_NEWNET) : unshare(CLONE_NEWNET)) {
		j->r = uk_err_errno(j->err, errno, j->netns_fd >= 0 ? "join the pod's network namespace" :
								       "make a network namespace");
		return NULL;
	}
	j->r = j->fn(j->ud, j->err);
	return NULL; /* the thread ends, and its namespace with it unless fn pinned it */
}

static int ns_job_run(struct ns_job *j)
{
	/* The thread starts with every signal blocked: signals for the process go to the
	 * daemon's own threads, never to this one. */
	sigset_t all, old;
	sigfillset(&all);
	int e = pthread_sigmask(SIG_SETMASK, &all, &old);
	if (e)
		return uk_err_errno(j->err, e, "block signals");
	pthread_t t;
	e = pthread_create(&t, NULL, ns_job_main, j);
	/* Restoring the mask just read back: nothing to fail on. */
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e)
		return uk_err_errno(j->err, e, "start a thread for the pod's network namespace");
	e = pthread_join(t, NULL);
	if (e)
		return uk_err_errno(j->err, e, "wait for the pod's network namespace thread");
	return j->r;
}

int podnet_run_in(int netns_fd, int (*fn)(void *ud, uk_error *err), void *ud, uk_error *err)
{
	if (netns_fd < 0 || !fn)
		return uk_err(err, EBADF, "run in a network namespace: no namespace fd");
	struct ns_job j = { .netns_fd = netns_fd, .fn = fn, .ud = ud, .err = err };
	return ns_job_run(&j);
}

static int nl_socket_here(void *ud, uk_error *err)
{
	return net_route_socket((struct nl_sock **)ud, err);
}

int podnet_nl_socket(int netns_fd, struct nl_sock **ret, uk_error *err)
{
	*ret = NULL;
	return podnet_run_in(netns_fd, nl_socket_here, ret, err);
}

/* ---- pinning ---- */

/* A namespace file of a network namespace (nsfs, CLONE_NEWNET), not the empty file it is
 * mounted on. */
static bool is_netns_fd(int fd)
{
	struct statfs fs;
	if (fstatfs(fd, &fs) < 0 || fs.f_type != NSFS_MAGIC)
		return false;
	return ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET;
}

/* /run/netns exists and is a shared mount point of its own, as iproute2 makes it: a pin
 * made or removed here then propagates to mount namespaces copied from ours later, and a
 * copy of a pin in another mount namespace cannot keep a pod's namespace alive after its
 * removal. Serialized, or two threads could both bind the directory onto itself. */
static int ensure_netns_dir(uk_error *err)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static const char dir[] = PODNET_NETNS_DIR;
	int r = uk_mkdir_p(dir, 0755, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&lock);
	r = 0;
	if (mount("", dir, "none", MS_SHARED | MS_REC, NULL) < 0) {
		if (errno != EINVAL) /* EINVAL: not a mount point yet */
			r = uk_err_errno(err, errno, "make %s a shared mount", dir);
		else if (mount(dir, dir, "none", MS_BIND | MS_REC, NULL) < 0)
			r = uk_err_errno(err, errno, "bind %s onto itself", dir);
		else if (mount("", dir, "none", MS_SHARED | MS_REC, NULL) < 0)
			r = uk_err_errno(err, errno, "make %s a shared mount", dir);
	}
	pthread_mutex_unlock(&lock);
	return r;
}

/* In the new namespace: loopback up, then the namespace bind-mounted onto path. */
static int pin_here(void *ud, uk_error *err)
{
	const char *path = ud;
	_cleanup_nl_sock_ struct nl_sock *sk = NULL;
	int r = net_route_socket(&sk, err);
	if (r < 0)
		return r;
	r = link_set(sk, "lo", 0, NULL, err);
	if (r < 0)
		return r;
	if (mount("/proc/thread-self/ns/net", path, "none", MS_BIND, NULL) < 0)
		return uk_err_errno(err, errno, "bind the new namespace onto %s", path);
	return 0;
}

bool podnet_netns_exists(const char *sandbox_id)
{
	char path[PATH_MAX];
	if (netns_path(sandbox_id, path, NULL) < 0)
		return false;
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
	return fd >= 0 && is_netns_fd(fd);
}

int podnet_netns_create(const char *sandbox_id, uk_error *err)
{
	char path[PATH_MAX];
	int r = netns_path(sandbox_id, path, err);
	if (r < 0)
		return r;
	r = ensure_netns_dir(err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "network namespace %s", path);
	if (podnet_netns_exists(sandbox_id))
		return uk_err(err, EEXIST, "network namespace %s is pinned already", path);
	/* A file left by a create that died before its mount is taken over; a symlink is not
	 * followed (the bind mount would follow it). */
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0444);
	if (fd < 0)
		return uk_err_errno(err, errno, "create %s", path);
	fd = safe_close(fd);
	struct ns_job j = { .netns_fd = -1, .fn = pin_here, .ud = path, .err = err };
	r = ns_job_run(&j);
	if (r < 0) {
		/* Nothing was mounted on it: the namespace went with its thread. */
		(void)unlink(path);
		return uk_err_ctx_r(err, r, "network namespace %s", path);
	}
	return 0;
}

int podnet_netns_remove(const char *sandbox_id, uk_error *err)
{
	char path[PATH_MAX];
	int r = netns_path(sandbox_id, path, err);
	if (r < 0)
		return r;
	/* More than one pin may be stacked on the file (two creates that raced): all go. */
	for (int i = 0;; i++) {
		if (i == 16)
			return uk_err(err, EBUSY, "unmount %s: still mounted after %d unmounts", path, i);
		if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
			continue;
		if (errno == EINVAL || errno == ENOENT) /* not a mount point (any more), no file */
			break;
		return uk_err_errno(err, errno, "unmount %s", path);
	}
	if (unlink(path) < 0 && errno != ENOENT)
		return uk_err_errno(err, errno, "remove %s", path);
	return 0;
}

int podnet_netns_open(const char *sandbox_id, uk_error *err)
{
	char path[PATH_MAX];
	int r = netns_path(sandbox_id, path, err);
	if (r < 0)
		return r;
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return uk_err(err, ENOENT, "network namespace %s does not exist", path);
		return uk_err_errno(err, errno, "open %s", path);
	}
	if (!is_netns_fd(fd))
		return uk_err(err, ENOENT, "%s is not a pinned network namespace", path);
	return TAKE_FD(fd);
}

/* The namespace's fd and a netlink socket in it. */
static int open_nl(const char *sandbox_id, int *ret_fd, struct nl_sock **ret_sk, uk_error *err)
{
	_cleanup_close_ int fd = podnet_netns_open(sandbox_id, err);
	if (fd < 0)
		return fd;
	int r = podnet_nl_socket(fd, ret_sk, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "network namespace of sandbox %.12s", sandbox_id);
	*ret_fd = TAKE_FD(fd);
	return 0;
}

/* ---- reading eth0 ---- */

/* An IPv4 nl_addr as a host-order address (0.0.0.0 for the empty address of a default
 * route). */
static uint32_t addr_v4(struct nl_addr *a)
{
	uint32_t be = 0;
	if (a && nl_addr_get_family(a) == AF_INET && nl_addr_get_len(a) == sizeof(be))
		memcpy(&be, nl_addr_get_binary_addr(a), sizeof(be));
	return ntohl(be);
}

static int read_address(struct nl_sock *sk, int ifindex, struct podnet_info *info, uk_error *err)
{
	_cleanup_nl_cache_ struct nl_cache *cache = NULL;
	int r = rtnl_addr_alloc_cache(sk, &cache);
	if (r < 0)
		return net_nl_fail(err, r, "list addresses");
	/* The dump's order is the kernel's: a primary address before its secondaries. */
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_addr *a = (struct rtnl_addr *)o;
		if (rtnl_addr_get_family(a) != AF_INET || rtnl_addr_get_ifindex(a) != ifindex)
			continue;
		info->ip = addr_v4(rtnl_addr_get_local(a));
		info->prefix = rtnl_addr_get_prefixlen(a);
		break;
	}
	return 0;
}

/* One main-table IPv4 unicast route out of ifindex into info; 0 if it is not one. */
static int take_route(struct rtnl_route *rt, int ifindex, uint32_t *best_metric, struct podnet_info *info,
		      uk_error *err)
{
	if (rtnl_route_get_family(rt) != AF_INET || rtnl_route_get_table(rt) != RT_TABLE_MAIN ||
	    rtnl_route_get_type(rt) != RTN_UNICAST || rtnl_route_get_nnexthops(rt) < 1)
		return 0;
	struct rtnl_nexthop *nh = rtnl_route_nexthop_n(rt, 0);
	if (!nh || rtnl_route_nh_get_ifindex(nh) != ifindex)
		return 0;
	if (info->n_routes == PODNET_ROUTES_MAX)
		return uk_err(err, E2BIG, "more than %d IPv4 routes out of %s", PODNET_ROUTES_MAX, PODNET_ETH);
	struct nl_addr *dst = rtnl_route_get_dst(rt);
	struct podnet_route *out = &info->routes[info->n_routes++];
	out->dst = addr_v4(dst);
	out->prefix = dst ? (int)nl_addr_get_prefixlen(dst) : 0;
	out->gateway = addr_v4(rtnl_route_nh_get_gateway(nh));
	/* The default route with the lowest metric gives the gateway. */
	if (out->prefix == 0 && out->gateway && rtnl_route_get_priority(rt) < *best_metric) {
		*best_metric = rtnl_route_get_priority(rt);
		info->gateway = out->gateway;
	}
	return 0;
}

static int read_routes(struct nl_sock *sk, int ifindex, struct podnet_info *info, uk_error *err)
{
	_cleanup_nl_cache_ struct nl_cache *cache = NULL;
	int r = rtnl_route_alloc_cache(sk, AF_INET, 0, &cache);
	if (r < 0)
		return net_nl_fail(err, r, "list routes");
	uint32_t best_metric = UINT32_MAX;
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		r = take_route((struct rtnl_route *)o, ifindex, &best_metric, info, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int podnet_read(const char *sandbox_id, struct podnet_info *ret, uk_error *err)
{
	memset(ret, 0, sizeof(*ret));
	_cleanup_close_ int fd = -1;
	_cleanup_nl_sock_ struct nl_sock *sk = NULL;
	int r = open_nl(sandbox_id, &fd, &sk, err);
	if (r < 0)
		return r;
	_cleanup_nl_object_ struct rtnl_link *eth = NULL;
	r = link_get(sk, PODNET_ETH, &eth, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "sandbox %.12s", sandbox_id);
	struct nl_addr *mac = rtnl_link_get_addr(eth);
	if (!mac || nl_addr_get_len(mac) != 6)
		return uk_err(err, EINVAL, "sandbox %.12s: %s has no Ethernet address", sandbox_id, PODNET_ETH);
	const uint8_t *m = nl_addr_get_binary_addr(mac);
	snprintf(ret->mac, sizeof(ret->mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
	ret->mtu = rtnl_link_get_mtu(eth);
	int ifindex = rtnl_link_get_ifindex(eth);
	r = read_address(sk, ifindex, ret, err);
	if (r >= 0)
		r = read_routes(sk, ifindex, ret, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "sandbox %.12s: %s", sandbox_id, PODNET_ETH);
	return 0;
}

/* ---- the tap and the redirects ---- */

/* Ingress filters hang off the ingress qdisc, handle ffff:0. */
#define INGRESS_HANDLE TC_H_MAKE(TC_H_INGRESS, 0)

/* A u32 key: the 32-bit word at off bytes into the network header, host order. */
struct u32_key {
	uint32_t val, mask;
	int off;
};
/* Everything (tc's `match u32 0 0`). */
static const struct u32_key match_all[] = { { 0, 0, 0 } };
/* What a DHCP client sends (IPv4 UDP to port 67). Fixed offsets: a u32 knode that links to
 * no hash table has no "next header" offset, so UDP's header is found at 20, behind an IP
 * header without options; a packet with options (no DHCP client sends them) is redirected. */
static const struct u32_key dhcp_request[] = {
	{ 0x05000000, 0x0f000000, 0 },	/* IHL 5 */
	{ 0x00000000, 0x00001fff, 4 },	/* the first fragment (or no fragment) */
	{ 0x00110000, 0x00ff0000, 8 },	/* protocol UDP */
	{ 0x00000043, 0x0000ffff, 20 }, /* destination port 67 */
};

static int ingress_add(struct nl_sock *sk, int ifindex, const char *dev, uk_error *err)
{
	_cleanup_nl_object_ struct rtnl_qdisc *q = rtnl_qdisc_alloc();
	if (!q)
		return uk_err(err, ENOMEM, "out of memory");
	rtnl_tc_set_ifindex(TC_CAST(q), ifindex);
	rtnl_tc_set_parent(TC_CAST(q), TC_H_INGRESS);
	rtnl_tc_set_handle(TC_CAST(q), INGRESS_HANDLE);
	int r = rtnl_tc_set_kind(TC_CAST(q), "ingress");
	if (r >= 0)
		r = rtnl_qdisc_add(sk, q, NLM_F_CREATE);
	if (r < 0 && r != -NLE_EXIST)
		return net_nl_fail(err, r, "add an ingress qdisc to %s", dev);
	return 0;
}

/* The ingress qdisc of the link, NULL in *ret if it has none. */
static int ingress_get(struct nl_sock *sk, int ifindex, struct rtnl_qdisc **ret, uk_error *err)
{
	_cleanup_nl_cache_ struct nl_cache *cache = NULL;
	int r = rtnl_qdisc_alloc_cache(sk, &cache);
	if (r < 0)
		return net_nl_fail(err, r, "list qdiscs");
	*ret = rtnl_qdisc_get_by_parent(cache, ifindex, TC_H_INGRESS);
	return 0;
}

/* A u32 filter on the link's ingress: keys; a match ends the search. With redirect_to, its
 * action sends the packet out of that link (mirred egress redirect, the packet is stolen);
 * without, the packet goes on into the namespace's own stack: TC_ACT_OK, what an empty
 * action list returns (this kernel has no gact for an explicit "pass"). */
static int filter_add(struct nl_sock *sk, int ifindex, const char *dev, uint16_t prio, uint16_t proto,
		      const struct u32_key *keys, size_t n_keys, int redirect_to, uk_error *err)
{
	_cleanup_nl_object_ struct rtnl_cls *c = rtnl_cls_alloc();
	_cleanup_nl_object_ struct rtnl_act *act = redirect_to ? rtnl_act_alloc() : NULL;
	if (!c || (redirect_to && !act))
		return uk_err(err, ENOMEM, "out of memory");
	rtnl_tc_set_ifindex(TC_CAST(c), ifindex);
	rtnl_tc_set_parent(TC_CAST(c), INGRESS_HANDLE);
	rtnl_cls_set_prio(c, prio);
	rtnl_cls_set_protocol(c, proto);
	int r = rtnl_tc_set_kind(TC_CAST(c), "u32");
	for (size_t i = 0; r >= 0 && i < n_keys; i++)
		r = rtnl_u32_add_key_uint32(c, keys[i].val, keys[i].mask, keys[i].off, 0);
	if (r >= 0)
		r = rtnl_u32_set_flags(c, TC_U32_TERMINAL);
	if (r >= 0 && act) {
		r = rtnl_tc_set_kind(TC_CAST(act), "mirred");
		if (r >= 0)
			r = rtnl_mirred_set_action(act, TCA_EGRESS_REDIR);
		if (r >= 0)
			r = rtnl_mirred_set_ifindex(act, (uint32_t)redirect_to);
		if (r >= 0)
			r = rtnl_mirred_set_policy(act, TC_ACT_STOLEN);
		if (r >= 0)
			r = rtnl_u32_add_action(c, act);
	}
	if (r < 0)
		return net_nl_fail(err, r, "build the u32 filter %u of %s", prio, dev);
	r = rtnl_cls_add(sk, c, NLM_F_CREATE | NLM_F_EXCL);
	if (r < 0)
		return net_nl_fail(err, r, "add the u32 filter %u to the ingress of %s", prio, dev);
	return 0;
}

/* Every filter of priority prio on the link's ingress (there is one); none is fine. */
static int filter_del(struct nl_sock *sk, int ifindex, const char *dev, uint16_t prio, uint16_t proto,
		      uk_error *err)
{
	_cleanup_nl_object_ struct rtnl_cls *c = rtnl_cls_alloc();
	if (!c)
		return uk_err(err, ENOMEM, "out of memory");
	rtnl_tc_set_ifindex(TC_CAST(c), ifindex);
	rtnl_tc_set_parent(TC_CAST(c), INGRESS_HANDLE);
	rtnl_cls_set_prio(c, prio);
	rtnl_cls_set_protocol(c, proto);
	int r = rtnl_tc_set_kind(TC_CAST(c), "u32");
	if (r >= 0)
		r = rtnl_cls_delete(sk, c, 0);
	if (r < 0 && r != -NLE_OBJ_NOTFOUND)
		return net_nl_fail(err, r, "delete the u32 filter %u of %s", prio, dev);
	return 0;
}

/* eth0's part: our filter goes, and the ingress qdisc with it once no filter is left (a
 * qdisc someone else's filters use stays). */
static int eth_unwire(struct nl_sock *sk, int ifindex, uk_error *err)
{
	_cleanup_nl_object_ struct rtnl_qdisc *q = NULL;
	int r = ingress_get(sk, ifindex, &q, err);
	if (r < 0 || !q)
		return r;
	r = filter_del(sk, ifindex, PODNET_ETH, PODNET_PRIO_ETH_REDIRECT, ETH_P_ALL, err);
	if (r < 0)
		return r;
	_cleanup_nl_cache_ struct nl_cache *filters = NULL;
	r = rtnl_cls_alloc_cache(sk, ifindex, INGRESS_HANDLE, &filters);
	if (r < 0)
		return net_nl_fail(err, r, "list the ingress filters of %s", PODNET_ETH);
	if (nl_cache_nitems(filters) > 0)
		return 0;
	r = rtnl_qdisc_delete(sk, q);
	if (r < 0 && r != -NLE_OBJ_NOTFOUND)
		return net_nl_fail(err, r, "delete the ingress qdisc of %s", PODNET_ETH);
	return 0;
}

static int tun_open_here(void *ud, uk_error *err)
{
	int *fd = ud;
	*fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (*fd < 0)
		return uk_err_errno(err, errno, "open /dev/net/tun");
	return 0;
}

/* tap0, made in the namespace: a tun device belongs to the namespace /dev/net/tun was
 * opened in, whoever does the ioctl. The flags are net_tap_create's, what QEMU expects of
 * a tap fd it is given (vnet header, no packet info), and IFF_TUN_EXCL: a new device or a
 * failure, never a leftover. Not persistent: it goes with the last fd (QEMU's). */
static int tap_create(int netns_fd, uk_error *err)
{
	_cleanup_close_ int fd = -1;
	int r = podnet_run_in(netns_fd, tun_open_here, &fd, err);
	if (r < 0)
		return r;
	struct ifreq ifr = { 0 };
	ifr.ifr_flags = (short)(unsigned short)(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_TUN_EXCL);
	memcpy(ifr.ifr_name, PODNET_TAP, sizeof(PODNET_TAP));
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		if (errno == EBUSY)
			return uk_err(err, EEXIST, "create %s: a link of that name already exists", PODNET_TAP);
		return uk_err_errno(err, errno, "create %s: TUNSETIFF", PODNET_TAP);
	}
	return TAKE_FD(fd);
}

/* tap0 up with the MTU, and a MAC of its own: the kernel's random one, unless that is the
 * guest's (eth0's), which would be the guest's own address answering its DHCP. */
static int tap_set(struct nl_sock *sk, struct rtnl_link *eth, unsigned mtu, uk_error *err)
{
	_cleanup_nl_object_ struct rtnl_link *tap = NULL;
	int r = link_get(sk, PODNET_TAP, &tap, err);
	if (r < 0)
		return r;
	struct nl_addr *mac = NULL;
	if (rtnl_link_get_addr(tap) && rtnl_link_get_addr(eth) &&
	    nl_addr_cmp(rtnl_link_get_addr(tap), rtnl_link_get_addr(eth)) == 0) {
		mac = nl_addr_clone(rtnl_link_get_addr(tap));
		if (!mac)
			return uk_err(err, ENOMEM, "out of memory");
		((uint8_t *)nl_addr_get_binary_addr(mac))[5] ^= 1;
	}
	r = link_set(sk, PODNET_TAP, mtu, mac, err);
	if (mac)
		nl_addr_put(mac);
	return r;
}

/* tap0's link-local /32, for the pod's DHCP server. */
static int tap_addr(struct nl_sock *sk, int tap, uk_error *err)
{
	_cleanup_nl_object_ struct rtnl_addr *a = rtnl_addr_alloc();
	struct nl_addr *local = NULL;
	if (!a)
		return uk_err(err, ENOMEM, "out of memory");
	int r = nl_addr_parse(PODNET_TAP_ADDR "/32", AF_INET, &local);
	if (r < 0)
		return net_nl_fail(err, r, "address %s", PODNET_TAP_ADDR);
	rtnl_addr_set_ifindex(a, tap);
	r = rtnl_addr_set_local(a, local);
	nl_addr_put(local);
	if (r >= 0)
		rtnl_addr_set_scope(a, RT_SCOPE_LINK);
	if (r >= 0 && (r = rtnl_addr_add(sk, a, NLM_F_REPLACE)) < 0 && r != -NLE_EXIST)
		return net_nl_fail(err, r, "add %s to %s", PODNET_TAP_ADDR, PODNET_TAP);
	return 0;
}

/* The qdiscs and filters of a new tap0, then eth0's redirect to it. */
static int redirects_add(struct nl_sock *sk, int eth, int tap, uk_error *err)
{
	int r = ingress_add(sk, tap, PODNET_TAP, err);
	if (r >= 0)
		r = filter_add(sk, tap, PODNET_TAP, PODNET_PRIO_TAP_DHCP, ETH_P_IP, dhcp_request,
			       ARRAY_SIZE(dhcp_request), 0, err);
	if (r >= 0)
		r = filter_add(sk, tap, PODNET_TAP, PODNET_PRIO_TAP_REDIRECT, ETH_P_ALL, match_all,
			       ARRAY_SIZE(match_all), eth, err);
	if (r >= 0)
		r = ingress_add(sk, eth, PODNET_ETH, err);
	if (r >= 0)
		r = filter_add(sk, eth, PODNET_ETH, PODNET_PRIO_ETH_REDIRECT, ETH_P_ALL, match_all,
			       ARRAY_SIZE(match_all), tap, err);
	return r;
}

/* An old tap0 (and its filters with it), deleted; none is fine. */
static int link_delete(struct nl_sock *sk, const char *name, uk_error *err)
{
	_cleanup_nl_object_ struct rtnl_link *l = rtnl_link_alloc();
	if (!l)
		return uk_err(err, ENOMEM, "out of memory");
	rtnl_link_set_name(l, name);
	int r = rtnl_link_delete(sk, l);
	if (r < 0 && r != -NLE_OBJ_NOTFOUND && r != -NLE_NODEV)
		return net_nl_fail(err, r, "delete link %s", name);
	return 0;
}

static int tap_delete(struct nl_sock *sk, uk_error *err)
{
	return link_delete(sk, PODNET_TAP, err);
}

int podnet_eth_delete(const char *sandbox_id, uk_error *err)
{
	_cleanup_close_ int nsfd = -1;
	_cleanup_nl_sock_ struct nl_sock *sk = NULL;
	int r = open_nl(sandbox_id, &nsfd, &sk, err);
	if (r == -ENOENT)
		return 0;
	if (r < 0 || (r = link_delete(sk, PODNET_ETH, err)) < 0)
		return uk_err_ctx_r(err, r, "sandbox %.12s", sandbox_id);
	return 0;
}

int podnet_tap_wire(const char *sandbox_id, const struct podnet_info *info, uk_error *err)
{
	if (!info || info->mtu < 68 || info->mtu > 65535)
		return uk_err(err, EINVAL, "sandbox %.12s: MTU %u is outside 68..65535", sandbox_id ? sandbox_id : "",
			      info ? info->mtu : 0);
	_cleanup_close_ int nsfd = -1;
	_cleanup_nl_sock_ struct nl_sock *sk = NULL;
	int r = open_nl(sandbox_id, &nsfd, &sk, err);
	if (r < 0)
		return r;
	_cleanup_nl_object_ struct rtnl_link *eth = NULL;
	r = link_get(sk, PODNET_ETH, &eth, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "sandbox %.12s", sandbox_id);
	int eth_index = rtnl_link_get_ifindex(eth);
	r = tap_delete(sk, err);
	if (r >= 0)
		r = eth_unwire(sk, eth_index, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "sandbox %.12s: remove the old wiring", sandbox_id);
	/* From here on, a failure closes fd and tap0 goes with it, with its filters. */
	_cleanup_close_ int fd = tap_create(nsfd, err);
	if (fd < 0)
		return uk_err_ctx_r(err, fd, "sandbox %.12s", sandbox_id);
	r = tap_set(sk, eth, info->mtu, err);
	if (r >= 0) {
		_cleanup_nl_object_ struct rtnl_link *tap = NULL;
		r = link_get(sk, PODNET_TAP, &tap, err);
		if (r >= 0)
			r = tap_addr(sk, rtnl_link_get_ifindex(tap), err);
		if (r >= 0)
			r = redirects_add(sk, eth_index, rtnl_link_get_ifindex(tap), err);
	}
	if (r < 0) {
		/* Best effort: what the error says matters more than a second failure. */
		(void)eth_unwire(sk, eth_index, NULL);
		return uk_err_ctx_r(err, r, "sandbox %.12s: wire %s to %s", sandbox_id, PODNET_TAP, PODNET_ETH);
	}
	return TAKE_FD(fd);
}

int podnet_tap_unwire(const char *sandbox_id, uk_error *err)
{
	_cleanup_close_ int nsfd = -1;
	_cleanup_nl_sock_ struct nl_sock *sk = NULL;
	int r = open_nl(sandbox_id, &nsfd, &sk, err);
	if (r == -ENOENT)
		return 0; /* the namespace is gone, and everything in it */
	if (r < 0)
		return r;
	r = tap_delete(sk, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "sandbox %.12s", sandbox_id);
	_cleanup_nl_object_ struct rtnl_link *eth = NULL;
	r = link_get(sk, PODNET_ETH, &eth, err);
	if (r == -ENODEV)
		return 0; /* eth0 gone (the plugins' DEL): nothing of ours on it either */
	if (r >= 0)
		r = eth_unwire(sk, rtnl_link_get_ifindex(eth), err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "sandbox %.12s: unwire %s", sandbox_id, PODNET_ETH);
	return 0;
}
