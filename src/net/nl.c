/* libnl-3 pieces shared by netlink.c and podnet.c (nl.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include <netlink/errno.h>

#include "../common/util.h"
#include "nl.h"

int net_nl_errno(int nle)
{
	switch (nle < 0 ? -nle : nle) {
	case NLE_EXIST:
		return EEXIST;
	case NLE_OBJ_NOTFOUND:
	case NLE_NODEV:
		return ENODEV;
	case NLE_NOMEM:
		return ENOMEM;
	case NLE_PERM:
		return EPERM;
	case NLE_NOACCESS:
		return EACCES;
	case NLE_BUSY:
		return EBUSY;
	case NLE_INVAL:
		return EINVAL;
	case NLE_RANGE:
		return ERANGE;
	case NLE_OPNOTSUPP:
	case NLE_AF_NOSUPPORT:
		return EOPNOTSUPP;
	case NLE_AGAIN:
		return EAGAIN;
	case NLE_INTR:
		return EINTR;
	case NLE_MSGSIZE:
		return EMSGSIZE;
	default:
		return EIO;
	}
}

int net_nl_fail(uk_error *err, int nle, const char *fmt, ...)
{
	char what[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return uk_err(err, net_nl_errno(nle), "%s: %s", what, nl_geterror(nle));
}

int net_route_socket(struct nl_sock **ret, uk_error *err)
{
	_cleanup_nl_sock_ struct nl_sock *sk = nl_socket_alloc();
	if (!sk)
		return uk_err(err, ENOMEM, "out of memory");
	int r = nl_connect(sk, NETLINK_ROUTE);
	if (r < 0)
		return net_nl_fail(err, r, "connect to rtnetlink");
	/* libnl opens it SOCK_CLOEXEC; make sure, whatever its version. */
	if ((r = uk_set_cloexec(nl_socket_get_fd(sk), true)) < 0)
		return uk_err_errno(err, -r, "set close-on-exec on a netlink socket");
	*ret = TAKE_PTR(sk);
	return 0;
}
