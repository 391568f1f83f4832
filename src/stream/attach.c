/* Attach (the `v4.channel.k8s.io` protocol and its elders, as kubelet serves it): the client
 * opens an `error` stream and the ones its request allowed (`stdin`, `stdout`, `stderr`,
 * `resize` with a tty). Once all have come, unikd connects to the VM's attach socket, which
 * vmwrapper serves: unikd is a relay of that socket, never of the console itself, so the CRI
 * log never waits for a client. The console goes to `stdout`; `stdin` goes to the socket
 * (vmwrapper passes it to the serial port when the container asked for stdin). When the
 * socket ends (the VM stopped, or vmwrapper dropped a client too slow to read), the error
 * stream gets a metav1.Status (v4) and the session ends. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/macros.h"
#include "../common/util.h"

static void att_watch(struct conn *c)
{
	struct attach_state *a = &c->att;
	uint32_t ev = 0;
	if (a->parked)
		return;
	if (a->out.n)
		ev |= EPOLLOUT;
	if (!a->up_eof && conn_output_room(c))
		ev |= EPOLLIN;
	watch_mod(c->srv, a->up, ev, &a->w);
}

/* The end: a Status on the error stream (v4; plain text before), FIN everywhere, GOAWAY. */
static void att_end(struct conn *c, const char *failure)
{
	struct attach_state *a = &c->att;
	uk_error ignored = { 0 };
	if (a->ended)
		return;
	a->ended = true;
	char msg[768];
	int n = 0;
	if (c->v4 && failure)
		n = snprintf(msg, sizeof(msg),
			     "{\"metadata\":{},\"status\":\"Failure\",\"message\":\"%s\",\"reason\":\"InternalError\","
			     "\"code\":500}",
			     failure); /* failure is our own text: no quote or backslash in it */
	else if (c->v4)
		n = snprintf(msg, sizeof(msg), "{\"metadata\":{},\"status\":\"Success\"}");
	else if (failure)
		n = snprintf(msg, sizeof(msg), "%s", failure);
	if (n > 0 && a->err_id)
		(void)spdy_send_data(c->spdy, a->err_id, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1, false,
				     &ignored); /* a full output is the client's loss; the session ends anyway */
	uint32_t ids[] = { a->err_id, a->out_id, a->errout_id };
	for (size_t i = 0; i < ARRAY_SIZE(ids); i++)
		if (ids[i])
			(void)spdy_send_data(c->spdy, ids[i], NULL, 0, true, &ignored); /* a reset stream: fine */
	(void)spdy_send_goaway(c->spdy, SPDY_GOAWAY_OK, &ignored);
	conn_end(c, failure ? failure : "the console ended");
}

static void att_start(struct conn *c)
{
	struct attach_state *a = &c->att;
	uk_error err = { 0 };
	a->started = true;
	a->up = uk_unix_connect(c->t.socket, &err);
	if (a->up < 0) {
		log_info("stream=%s msg=\"cannot reach the VM's attach socket\" error=\"%s\"", c->t.id, err.msg);
		att_end(c, "the container's console cannot be reached; is it running?");
		return;
	}
	a->w = (struct watch){ W_ATTACH, c };
	if (uk_set_nonblock(a->up, true) < 0 || watch_add(c->srv, a->up, 0, &a->w) < 0) {
		att_end(c, "the console's socket cannot be watched");
		return;
	}
	log_debug("stream=%s msg=\"attached\" stdin=%d", c->t.id, c->t.in);
	att_watch(c);
}

int att_syn_stream(struct conn *c, uint32_t id, const struct spdy_headers *h)
{
	struct attach_state *a = &c->att;
	uk_error err = { 0 };
	const char *type = spdy_header_get(h, "streamtype");
	uint32_t *slot = NULL;
	if (!type)
		slot = NULL;
	else if (!strcmp(type, "error"))
		slot = &a->err_id;
	else if (!strcmp(type, "stdin") && c->t.in)
		slot = &a->in_id;
	else if (!strcmp(type, "stdout") && c->t.out)
		slot = &a->out_id;
	else if (!strcmp(type, "stderr") && c->t.err && !c->t.tty)
		slot = &a->errout_id;
	else if (!strcmp(type, "resize") && c->t.tty)
		slot = &a->resize_id;
	if (!slot || *slot || a->started) {
		(void)spdy_send_rst(c->spdy, id, SPDY_PROTOCOL_ERROR, &err); /* not a stream this request allowed */
		return 0;
	}
	*slot = id;
	a->got++;
	int r = spdy_send_syn_reply(c->spdy, id, NULL, 0, false, &err);
	if (r < 0)
		return r;
	/* The streams kubelet expects: error, and each the request asked for. */
	a->expected = 1 + c->t.in + c->t.out + (c->t.err && !c->t.tty) + c->t.tty;
	if (a->got == a->expected)
		att_start(c);
	return 0;
}

int att_data(struct conn *c, uint32_t id, const uint8_t *p, size_t n, bool fin)
{
	struct attach_state *a = &c->att;
	(void)fin; /* a closed stdin leaves the console attached, as with a container */
	if (id != a->in_id || !n || a->ended)
		return 0; /* resize events mean nothing to a serial console */
	if (upbuf_add(&a->out, p, n) < 0) {
		att_end(c, "the client typed more than the console takes");
		return 0;
	}
	if (a->up >= 0 && upbuf_flush(&a->out, a->up) < 0)
		att_end(c, "the console's socket broke");
	else if (a->up >= 0)
		att_watch(c);
	return 0;
}

void att_rst(struct conn *c, uint32_t id)
{
	struct attach_state *a = &c->att;
	if (id == a->err_id || id == a->out_id)
		conn_end(c, "the client reset a stream");
}

void att_up_event(struct conn *c, uint32_t events)
{
	struct attach_state *a = &c->att;
	uk_error err = { 0 };
	uint8_t buf[STREAM_READ_CHUNK];
	if (a->ended)
		return;
	if (a->out.n && upbuf_flush(&a->out, a->up) < 0) {
		att_end(c, "the console's socket broke");
		return;
	}
	if ((events & (EPOLLHUP | EPOLLERR)) && !conn_output_room(c)) {
		watch_del(c->srv, a->up);
		a->parked = true;
		return;
	}
	while ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && conn_output_room(c)) {
		ssize_t n = recv(a->up, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (n <= 0) {
			a->up_eof = true;
			att_end(c, NULL);
			return;
		}
		if (a->out_id && spdy_send_data(c->spdy, a->out_id, buf, (size_t)n, false, &err) < 0) {
			att_end(c, "the client closed its stdout");
			return;
		}
	}
	att_watch(c);
}

void att_resume(struct conn *c)
{
	if (c->att.up < 0 || c->att.ended)
		return;
	if (c->att.parked)
		att_up_event(c, EPOLLIN); /* what is left, then the EOF */
	else
		att_watch(c);
}

bool att_blocked(const struct conn *c)
{
	return c->att.out.n >= STREAM_UP_PAUSE;
}

void att_free(struct conn *c)
{
	struct attach_state *a = &c->att;
	if (a->up >= 0) {
		watch_del(c->srv, a->up);
		safe_close(a->up);
		a->up = -1;
	}
	upbuf_free(&a->out);
}
