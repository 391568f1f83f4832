/* What netlink.c (unikd's bridge and taps) and podnet.c (a pod's namespace) share of libnl-3:
 * cleanup helpers, NLE_* codes as errnos with libnl's message, a route socket. */
#ifndef UK_NET_NL_H
#define UK_NET_NL_H

#include <netlink/netlink.h>
#include <netlink/cache.h>
#include <netlink/object.h>

#include "../common/error.h"
#include "../common/macros.h"

static inline void net_nl_sock_freep(struct nl_sock **p)
{
	if (*p)
		nl_socket_free(*p);
}
#define _cleanup_nl_sock_ _cleanup_(net_nl_sock_freep)
static inline void net_nl_cache_freep(struct nl_cache **p)
{
	if (*p)
		nl_cache_free(*p);
}
#define _cleanup_nl_cache_ _cleanup_(net_nl_cache_freep)
/* Any libnl object (link, address, route, qdisc, classifier, action): one reference. */
static inline void net_nl_object_putp(void *p)
{
	struct nl_object **o = p;
	if (*o)
		nl_object_put(*o);
}
#define _cleanup_nl_object_ _cleanup_(net_nl_object_putp)

/* libnl's NLE_* code (either sign) as a positive errno; EIO for what has none. */
int net_nl_errno(int nle);
/* Fill err with "<what>: <libnl's message>"; returns -errno. */
int net_nl_fail(uk_error *err, int nle, const char *fmt, ...) _printf_(3, 4);
/* A connected rtnetlink socket in the calling thread's namespace, close-on-exec. */
int net_route_socket(struct nl_sock **ret, uk_error *err);

#endif
