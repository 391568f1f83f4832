/* Port-forward (the `portforward.k8s.io` protocol, as kubelet serves it): the client opens a
 * pair of streams per forwarded connection, `error` then `data`, both with the `port` and the
 * same `requestid`. unikd dials the pod's address on that port from the node's side (the
 * address is the guest's, so there is nothing to enter), copies bytes both ways with
 * half-close, and writes a dial error as text on the error stream, which it always closes. */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/macros.h"
#include "../common/util.h"

static struct pf_pair *pair_of_stream(struct conn *c, uint32_t id)
{
	for (size_t i = 0; i < STREAM_MAX_PAIRS; i++)
		if (c->pairs[i] && (c->pairs[i]->err_id == id || c->pairs[i]->data_id == id))
			return c->pairs[i];
	return NULL;
}

static void pair_free(struct pf_pair *pp)
{
	struct conn *c = pp->c;
	for (size_t i = 0; i < STREAM_MAX_PAIRS; i++)
		if (c->pairs[i] == pp)
			c->pairs[i] = NULL;
	if (pp->up >= 0) {
		watch_del(c->srv, pp->up);
		safe_close(pp->up);
		pp->up = -1;
	}
	upbuf_free(&pp->out);
	pp->dead = true;
	pp->trash_next = c->srv->trash_pairs;
	c->srv->trash_pairs = pp;
}

void pf_free_all(struct conn *c)
{
	for (size_t i = 0; i < STREAM_MAX_PAIRS; i++)
		if (c->pairs[i])
			pair_free(c->pairs[i]);
}

/* Our side of the streams is over: FIN on both (the error stream after the error's text,
 * if any). */
static void send_fins(struct pf_pair *pp, const char *error)
{
	struct conn *c = pp->c;
	uk_error ignored = { 0 };
	if (error && pp->err_id) {
		char msg[512];
		int n = snprintf(msg, sizeof(msg), "error forwarding port %u to pod %s: %s", pp->port, c->t.id, error);
		(void)spdy_send_data(c->spdy, pp->err_id, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1, false,
				     &ignored); /* a full output is the client's loss: the FIN says the rest */
	}
	if (pp->err_id)
		(void)spdy_send_data(c->spdy, pp->err_id, NULL, 0, true, &ignored); /* a stream reset: nothing to close */
	if (pp->data_id)
		(void)spdy_send_data(c->spdy, pp->data_id, NULL, 0, true, &ignored);
}

/* The pod's connection failed or cannot be made: say why and end the pair. */
static void pair_fail(struct pf_pair *pp, const char *error)
{
	if (!pp->ended)
		send_fins(pp, error);
	pp->ended = true;
	pair_free(pp);
}

/* The pod closed its side: FIN to the client; the pair ends when the client's side has too
 * and what it sent is written. */
static void pair_check_done(struct pf_pair *pp)
{
	if (pp->up_eof && !pp->ended) {
		send_fins(pp, NULL);
		pp->ended = true;
	}
	if (pp->connected && pp->client_fin && !pp->out.n && !pp->shut_wr) {
		(void)shutdown(pp->up, SHUT_WR); /* a broken socket shows as EOF next */
		pp->shut_wr = true;
	}
	if (pp->ended && pp->shut_wr)
		pair_free(pp);
}

static void pair_watch(struct pf_pair *pp)
{
	uint32_t ev = 0;
	if (pp->parked)
		return;
	if (pp->connecting || pp->out.n)
		ev |= EPOLLOUT;
	if (pp->connected && !pp->up_eof && conn_output_room(pp->c))
		ev |= EPOLLIN;
	watch_mod(pp->c->srv, pp->up, ev, &pp->w);
}

/* Both streams are there: dial the pod. */
static void pair_dial(struct pf_pair *pp)
{
	struct conn *c = pp->c;
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	bool v6 = strchr(c->t.ip, ':') != NULL;
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(pp->port);
		len = inet_pton(AF_INET6, c->t.ip, &a->sin6_addr) == 1 ? sizeof(*a) : 0;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(pp->port);
		len = inet_pton(AF_INET, c->t.ip, &a->sin_addr) == 1 ? sizeof(*a) : 0;
	}
	int e = 0;
	if (!len)
		e = EADDRNOTAVAIL;
	else if ((pp->up = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		e = errno;
	pp->w = (struct watch){ W_PF, pp };
	int one = 1;
	if (!e && watch_add(c->srv, pp->up, 0, &pp->w) < 0)
		e = errno;
	if (!e) /* the client's writes are relayed as they come: no Nagle delay on top */
		(void)setsockopt(pp->up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* a slower relay at worst */
	if (!e && connect(pp->up, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS)
		e = errno;
	if (e) {
		pair_fail(pp, strerror(e)); /* closes the socket, if there is one */
		return;
	}
	pp->connecting = true;
	pair_watch(pp);
}

static int parse_port(const char *v, uint16_t *port)
{
	uint64_t p;
	if (!v || uk_parse_u64(v, 1, 65535, &p) < 0)
		return -EINVAL;
	*port = (uint16_t)p;
	return 0;
}

static bool port_allowed(const struct stream_target *t, uint16_t port)
{
	for (size_t i = 0; i < t->n_ports; i++)
		if (t->ports[i] == port)
			return true;
	return t->n_ports == 0;
}

int pf_syn_stream(struct conn *c, uint32_t id, const struct spdy_headers *h)
{
	uk_error err = { 0 };
	const char *type = spdy_header_get(h, "streamtype"), *reqid = spdy_header_get(h, "requestid");
	uint16_t port;
	bool is_err = type && strcmp(type, "error") == 0, is_data = type && strcmp(type, "data") == 0;
	if ((!is_err && !is_data) || parse_port(spdy_header_get(h, "port"), &port) < 0 || !reqid ||
	    strlen(reqid) >= sizeof(((struct pf_pair *)0)->reqid))
	{
		(void)spdy_send_rst(c->spdy, id, SPDY_PROTOCOL_ERROR, &err); /* the stream is refused */
		return 0;
	}
	struct pf_pair *pp = NULL;
	size_t free_slot = STREAM_MAX_PAIRS;
	for (size_t i = 0; i < STREAM_MAX_PAIRS && !pp; i++) {
		if (c->pairs[i] && strcmp(c->pairs[i]->reqid, reqid) == 0)
			pp = c->pairs[i];
		else if (!c->pairs[i] && free_slot == STREAM_MAX_PAIRS)
			free_slot = i;
	}
	if (!pp && (free_slot == STREAM_MAX_PAIRS || !(pp = calloc(1, sizeof(*pp))))) {
		(void)spdy_send_rst(c->spdy, id, SPDY_REFUSED_STREAM, &err); /* over the pairs' bound */
		return 0;
	}
	if (!pp->c) {
		*pp = (struct pf_pair){ .c = c, .port = port, .up = -1 };
		snprintf(pp->reqid, sizeof(pp->reqid), "%s", reqid);
		c->pairs[free_slot] = pp;
	}
	if ((is_err && pp->err_id) || (is_data && pp->data_id) || pp->port != port) {
		(void)spdy_send_rst(c->spdy, id, SPDY_PROTOCOL_ERROR, &err); /* a second stream of a kind */
		return 0;
	}
	*(is_err ? &pp->err_id : &pp->data_id) = id;
	int r = spdy_send_syn_reply(c->spdy, id, NULL, 0, false, &err);
	if (r < 0)
		return r;
	if (pp->err_id && pp->data_id && pp->up < 0 && !pp->ended) {
		if (!port_allowed(&c->t, port)) {
			char why[96];
			snprintf(why, sizeof(why), "port %u was not asked for in PortForward", port);
			pair_fail(pp, why);
		} else {
			pair_dial(pp);
		}
	}
	return 0;
}

int pf_data(struct conn *c, uint32_t id, const uint8_t *p, size_t n, bool fin)
{
	struct pf_pair *pp = pair_of_stream(c, id);
	if (!pp || id != pp->data_id)
		return 0; /* the error stream carries nothing from the client */
	if (n && !pp->shut_wr && upbuf_add(&pp->out, p, n) < 0) {
		pair_fail(pp, "the client sent more than the pod takes");
		return 0;
	}
	if (fin)
		pp->client_fin = true;
	if (pp->connected && upbuf_flush(&pp->out, pp->up) < 0) {
		pair_fail(pp, "the pod's connection broke");
		return 0;
	}
	if (pp->up >= 0)
		pair_watch(pp);
	pair_check_done(pp);
	return 0;
}

void pf_rst(struct conn *c, uint32_t id)
{
	struct pf_pair *pp = pair_of_stream(c, id);
	if (pp)
		pair_free(pp);
}

static void up_readable(struct pf_pair *pp)
{
	struct conn *c = pp->c;
	uint8_t buf[STREAM_READ_CHUNK];
	uk_error err = { 0 };
	while (!pp->up_eof && conn_output_room(c)) {
		ssize_t n = recv(pp->up, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n < 0) {
			pair_fail(pp, strerror(errno));
			return;
		}
		if (n == 0) {
			pp->up_eof = true;
			pair_check_done(pp);
			return;
		}
		if (spdy_send_data(c->spdy, pp->data_id, buf, (size_t)n, false, &err) < 0) {
			pair_free(pp); /* the client closed the stream meanwhile */
			return;
		}
	}
}

void pf_up_event(struct pf_pair *pp, uint32_t events)
{
	if (pp->connecting && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
		int e = 0;
		socklen_t l = sizeof(e);
		if (getsockopt(pp->up, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
			e = errno;
		pp->connecting = false;
		if (e) {
			pair_fail(pp, strerror(e));
			return;
		}
		pp->connected = true;
		log_debug("stream=%s msg=\"port-forward connected\" port=%u requestid=%s", pp->c->t.id, pp->port, pp->reqid);
	}
	if (pp->connected && pp->out.n && upbuf_flush(&pp->out, pp->up) < 0) {
		pair_fail(pp, "the pod's connection broke");
		return;
	}
	if (pp->connected && (events & (EPOLLHUP | EPOLLERR)) && !conn_output_room(pp->c)) {
		watch_del(pp->c->srv, pp->up);
		pp->parked = true;
		return;
	}
	if (pp->connected && (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)))
		up_readable(pp);
	if (pp->dead)
		return;
	pair_check_done(pp);
	if (!pp->dead)
		pair_watch(pp);
}

void pf_resume(struct conn *c)
{
	for (size_t i = 0; i < STREAM_MAX_PAIRS; i++) {
		struct pf_pair *pp = c->pairs[i];
		if (!pp || pp->up < 0 || pp->dead)
			continue;
		if (pp->parked) {
			up_readable(pp); /* what is left, then the EOF */
			if (!pp->dead && pp->up_eof)
				pair_check_done(pp);
		} else {
			pair_watch(pp);
		}
	}
}

bool pf_blocked(const struct conn *c)
{
	for (size_t i = 0; i < STREAM_MAX_PAIRS; i++)
		if (c->pairs[i] && c->pairs[i]->out.n >= STREAM_UP_PAUSE)
			return true;
	return false;
}
