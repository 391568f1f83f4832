/* Attach and PortForward: each checks its request against the runtime's records and answers
 * with a single-use URL of the streaming server (src/stream), which does the rest. Exec and
 * ExecSync stay unserved for unikernels (cri_methods.c says why). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../stream/server.h"
#include "cri.h"
#include "limits.h"

#define ATTACH_SOCKET "attach.sock"

static int answer_url(struct cri_context *ctx, arena *a, const struct stream_target *t, char **url, uk_error *err)
{
	char buf[256];
	int r = stream_server_url(ctx->stream, t, buf, sizeof(buf), err);
	if (r < 0)
		return r;
	*url = arena_strdup(a, buf);
	return 0;
}

/* Under the lock: the running container's attach target. */
static int attach_target(struct runtime *rt, const Runtime__V1__AttachRequest *q, struct stream_target *t,
			 uk_error *err)
{
	struct container *c;
	char dir[sizeof(t->socket)];
	int r = rt_find_container(rt, q->container_id, &c, err);
	if (r < 0)
		return r;
	if (c->state != CTR_RUNNING)
		return uk_err(err, EBUSY, "container %s is not running: only a running VM's console can be attached", c->id);
	if (q->stdin && !c->stdin_open)
		return uk_err(err, EINVAL, "stdin: container %s was created without config.stdin", c->id);
	if (rt_vm_dir(rt, c->id, dir, sizeof(dir)) < 0 ||
	    (size_t)snprintf(t->socket, sizeof(t->socket), "%s/%s", dir, ATTACH_SOCKET) >= sizeof(t->socket))
		return uk_err(err, ENAMETOOLONG, "the run directory's path is too long for the attach socket");
	snprintf(t->id, sizeof(t->id), "%s", c->id);
	return 0;
}

CRI_HANDLER(cri_attach)
{
	struct cri_context *ctx = ud;
	const Runtime__V1__AttachRequest *q = (const Runtime__V1__AttachRequest *)req;
	struct stream_target t = { .kind = STREAM_ATTACH, .in = q->stdin, .out = q->stdout, .err = q->stderr };
	int r = cri_require(q->container_id, "container_id", err);
	if (r < 0)
		return r;
	if (!q->stdin && !q->stdout && !q->stderr)
		return uk_err(err, EINVAL, "stdin, stdout, stderr: at least one is required");
	if (q->tty)
		return uk_err(err, EINVAL, "tty: a VM's serial console has no terminal; attach without it");
	if (!ctx->stream)
		return uk_err(err, ENOSYS, "the streaming server is off");
	rt_lock(ctx->rt);
	r = attach_target(ctx->rt, q, &t, err);
	rt_unlock(ctx->rt);
	if (r < 0)
		return r;
	Runtime__V1__AttachResponse *x = arena_new0(a, Runtime__V1__AttachResponse);
	*x = (Runtime__V1__AttachResponse)RUNTIME__V1__ATTACH_RESPONSE__INIT;
	if ((r = answer_url(ctx, a, &t, &x->url, err)) < 0)
		return r;
	*resp = &x->base;
	return 0;
}

CRI_HANDLER(cri_port_forward)
{
	struct cri_context *ctx = ud;
	const Runtime__V1__PortForwardRequest *q = (const Runtime__V1__PortForwardRequest *)req;
	struct stream_target t = { .kind = STREAM_PORTFORWARD };
	struct sandbox *s;
	int r = cri_require(q->pod_sandbox_id, "pod_sandbox_id", err);
	if (r < 0)
		return r;
	if (q->n_port > STREAM_MAX_PORTS)
		return uk_err(err, EINVAL, "port: %zu ports (at most %d)", q->n_port, STREAM_MAX_PORTS);
	for (size_t i = 0; i < q->n_port; i++) {
		if (q->port[i] < 1 || q->port[i] > 65535)
			return uk_err(err, EINVAL, "port[%zu]: %d is not a port", i, q->port[i]);
		t.ports[t.n_ports++] = (uint16_t)q->port[i];
	}
	if (!ctx->stream)
		return uk_err(err, ENOSYS, "the streaming server is off");
	rt_lock(ctx->rt);
	r = rt_find_sandbox(ctx->rt, q->pod_sandbox_id, &s, err);
	if (r == 0 && s->state != SANDBOX_READY)
		r = uk_err(err, EBUSY, "pod sandbox %s is not ready", s->id);
	else if (r == 0 && (!s->ip || !*s->ip))
		r = uk_err(err, EBUSY, "pod sandbox %s has no address (networking is off)", s->id);
	if (r == 0) {
		snprintf(t.id, sizeof(t.id), "%s", s->id);
		snprintf(t.ip, sizeof(t.ip), "%s", s->ip);
	}
	rt_unlock(ctx->rt);
	if (r < 0)
		return r;
	Runtime__V1__PortForwardResponse *x = arena_new0(a, Runtime__V1__PortForwardResponse);
	*x = (Runtime__V1__PortForwardResponse)RUNTIME__V1__PORT_FORWARD_RESPONSE__INIT;
	if ((r = answer_url(ctx, a, &t, &x->url, err)) < 0)
		return r;
	*resp = &x->base;
	return 0;
}
