/* The streaming server (server.h): one thread, one epoll loop over the listener, the
 * connections, the sockets they relay to, a wake-up eventfd (stop) and a 1 s timerfd (the
 * head and idle timeouts). A connection starts in HTTP (http.c): its first request names a
 * token, which says what the connection may reach; after 101 it is a SPDY session (spdy.c)
 * whose streams portforward.c or attach.c relay. */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/macros.h"
#include "../common/util.h"

#define NS_PER_S 1000000000ull

static const char *const attach_protocols[] = { "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
						"channel.k8s.io" };
static const char *const portforward_protocols[] = { "portforward.k8s.io" };

/* ---- small pieces the relays share ---- */

int watch_add(struct stream_server *s, int fd, uint32_t events, struct watch *w)
{
	struct epoll_event ev = { .events = events, .data.ptr = w };
	return epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

void watch_mod(struct stream_server *s, int fd, uint32_t events, struct watch *w)
{
	struct epoll_event ev = { .events = events, .data.ptr = w };
	(void)epoll_ctl(s->epoll_fd, EPOLL_CTL_MOD, fd, &ev); /* fd is registered: cannot fail */
}

void watch_del(struct stream_server *s, int fd)
{
	(void)epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, fd, NULL); /* closing it would drop it anyway */
}

int upbuf_add(struct upbuf *b, const uint8_t *p, size_t n)
{
	if (b->n + n > STREAM_UP_MAX)
		return -ENOBUFS;
	if (!b->p && !(b->p = malloc(STREAM_UP_MAX)))
		return -ENOMEM;
	memcpy(b->p + b->n, p, n);
	b->n += n;
	return 0;
}

int upbuf_flush(struct upbuf *b, int fd)
{
	while (b->n) {
		ssize_t w = send(fd, b->p, b->n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -errno;
		memmove(b->p, b->p + w, b->n - (size_t)w);
		b->n -= (size_t)w;
	}
	return 0;
}

void upbuf_free(struct upbuf *b)
{
	free(b->p);
	*b = (struct upbuf){ 0 };
}

bool conn_output_room(const struct conn *c)
{
	const uint8_t *p;
	return c->spdy && spdy_session_output(c->spdy, &p) + STREAM_READ_CHUNK + 64 <= STREAM_MAX_OUTPUT / 2;
}

/* ---- connections ---- */

static size_t pending_output(const struct conn *c)
{
	const uint8_t *p;
	if (c->reply_off < c->reply_n)
		return c->reply_n - c->reply_off;
	return c->spdy ? spdy_session_output(c->spdy, &p) : 0;
}

void conn_update_events(struct conn *c)
{
	uint32_t ev = EPOLLRDHUP;
	bool blocked = c->phase == C_SPDY && (pf_blocked(c) || att_blocked(c));
	c->in_paused = blocked;
	if (c->phase != C_CLOSING && !blocked)
		ev |= EPOLLIN;
	if (pending_output(c))
		ev |= EPOLLOUT;
	if (ev != c->events) {
		c->events = ev;
		watch_mod(c->srv, c->fd, ev, &c->w);
	}
}

/* Close everything of c now; its memory goes after the batch of events (one may name it). */
static void conn_free(struct conn *c)
{
	struct stream_server *s = c->srv;
	if (c->dead)
		return;
	pf_free_all(c);
	att_free(c);
	/* Bytes the client never read: a reset, not a FIN stuck behind them, tells it at once. */
	if (pending_output(c)) {
		struct linger now = { .l_onoff = 1, .l_linger = 0 };
		(void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &now, sizeof(now)); /* a close anyway */
	}
	spdy_session_free(c->spdy);
	c->spdy = NULL;
	watch_del(s, c->fd);
	safe_close(c->fd);
	c->fd = -1;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->n_conns--;
	c->dead = true;
	c->trash_next = s->trash_conns;
	s->trash_conns = c;
}

static void empty_trash(struct stream_server *s)
{
	for (struct conn *c = s->trash_conns, *next; c; c = next) {
		next = c->trash_next;
		free(c);
	}
	s->trash_conns = NULL;
	for (struct pf_pair *p = s->trash_pairs, *next; p; p = next) {
		next = p->trash_next;
		free(p);
	}
	s->trash_pairs = NULL;
}

void conn_end(struct conn *c, const char *why)
{
	if (c->phase != C_CLOSING)
		log_debug("stream=%s msg=\"session ends\" why=\"%s\"", c->t.id[0] ? c->t.id : "-", why);
	c->phase = C_CLOSING;
	conn_update_events(c);
}

void conn_flush(struct conn *c)
{
	if (c->dead)
		return;
	if (!pending_output(c))
		c->last_out = uk_now_mono_ns();
	while (c->reply_off < c->reply_n) {
		ssize_t w = send(c->fd, c->reply + c->reply_off, c->reply_n - c->reply_off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (w < 0) {
			conn_free(c);
			return;
		}
		c->reply_off += (size_t)w;
		c->last_out = uk_now_mono_ns();
	}
	const uint8_t *p;
	size_t n;
	while (c->reply_off >= c->reply_n && c->spdy && (n = spdy_session_output(c->spdy, &p)) > 0) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (w < 0) {
			conn_free(c);
			return;
		}
		spdy_session_consumed(c->spdy, (size_t)w);
		c->last_io = c->last_out = uk_now_mono_ns();
	}
	if (c->phase == C_CLOSING && !pending_output(c)) {
		conn_free(c);
		return;
	}
	if (c->phase == C_SPDY && conn_output_room(c)) {
		pf_resume(c);
		att_resume(c);
	}
	if (!c->dead)
		conn_update_events(c);
}

/* ---- SPDY callbacks ---- */

static int on_syn_stream(void *ud, uint32_t id, const struct spdy_headers *h, bool fin)
{
	struct conn *c = ud;
	(void)fin;
	return c->t.kind == STREAM_PORTFORWARD ? pf_syn_stream(c, id, h) : att_syn_stream(c, id, h);
}

static int on_data(void *ud, uint32_t id, const uint8_t *p, size_t n, bool fin)
{
	struct conn *c = ud;
	c->last_io = uk_now_mono_ns();
	return c->t.kind == STREAM_PORTFORWARD ? pf_data(c, id, p, n, fin) : att_data(c, id, p, n, fin);
}

static void on_rst(void *ud, uint32_t id, uint32_t status)
{
	struct conn *c = ud;
	(void)status;
	if (c->t.kind == STREAM_PORTFORWARD)
		pf_rst(c, id);
	else
		att_rst(c, id);
}

static void on_goaway(void *ud, uint32_t last, uint32_t status)
{
	(void)last;
	(void)status;
	conn_end(ud, "the client said GOAWAY");
}

static const struct spdy_callbacks callbacks = { on_syn_stream, on_data, on_rst, on_goaway };

/* ---- the HTTP request ---- */

static void reply(struct conn *c, int n)
{
	c->reply_n = n > 0 ? (size_t)n : 0;
	c->reply_off = 0;
}

static void refuse(struct conn *c, int status, const char *text)
{
	reply(c, http_response_error(c->reply, sizeof(c->reply), status, text));
	c->head_n = 0;
	conn_end(c, text);
}

/* The path's kind and token: /attach/TOKEN or /portforward/TOKEN. */
static bool parse_path(const char *path, enum stream_kind *kind, char token[STREAM_TOKEN_LEN + 1])
{
	const char *rest;
	if (strncmp(path, "/attach/", 8) == 0)
		*kind = STREAM_ATTACH, rest = path + 8;
	else if (strncmp(path, "/portforward/", 13) == 0)
		*kind = STREAM_PORTFORWARD, rest = path + 13;
	else
		return false; /* /exec/ stays free for an exec agent */
	if (strlen(rest) != STREAM_TOKEN_LEN || strspn(rest, "0123456789abcdef") != STREAM_TOKEN_LEN)
		return false;
	memcpy(token, rest, STREAM_TOKEN_LEN + 1);
	return true;
}

static void on_head(struct conn *c, const struct http_request *req)
{
	struct stream_server *s = c->srv;
	enum stream_kind kind;
	char token[STREAM_TOKEN_LEN + 1];
	if (!parse_path(req->path, &kind, token)) {
		refuse(c, 404, "no such stream");
		return;
	}
	pthread_mutex_lock(&s->lock);
	int r = stream_tokens_take(&s->tokens, token, kind, uk_now_mono_ns(), &c->t);
	pthread_mutex_unlock(&s->lock);
	if (r < 0) {
		refuse(c, 404, "unknown or expired stream token");
		return;
	}
	if (req->upgrade_websocket) {
		refuse(c, 400, "WebSocket is not served here; upgrade to SPDY/3.1");
		return;
	}
	if (!req->upgrade_spdy) {
		refuse(c, 400, "this URL needs an upgrade to SPDY/3.1");
		return;
	}
	const char *const *ours = kind == STREAM_ATTACH ? attach_protocols : portforward_protocols;
	size_t n_ours = kind == STREAM_ATTACH ? ARRAY_SIZE(attach_protocols) : ARRAY_SIZE(portforward_protocols);
	const char *proto = http_pick_protocol(req, ours, n_ours);
	if (!proto) {
		reply(c, http_response_no_protocol(c->reply, sizeof(c->reply), ours, n_ours));
		conn_end(c, "no common stream protocol");
		return;
	}
	uk_error err = { 0 };
	struct spdy_limits lim = SPDY_DEFAULT_LIMITS;
	lim.max_output = STREAM_MAX_OUTPUT;
	if (spdy_session_new(&lim, &callbacks, c, &c->spdy, &err) < 0) {
		refuse(c, 500, "out of memory");
		return;
	}
	c->v4 = strcmp(proto, "v4.channel.k8s.io") == 0;
	reply(c, http_response_switch(c->reply, sizeof(c->reply), proto));
	c->phase = C_SPDY;
	log_debug("stream=%s msg=\"session starts\" kind=%s protocol=%s", c->t.id,
		  kind == STREAM_ATTACH ? "attach" : "portforward", proto);
	/* Bytes after the head are SPDY already. */
	size_t rest = c->head_n - req->head_len;
	if (rest && spdy_session_input(c->spdy, (const uint8_t *)c->head + req->head_len, rest, &err) < 0)
		conn_end(c, err.msg);
	c->head_n = 0;
}

static void read_http(struct conn *c)
{
	ssize_t n = recv(c->fd, c->head + c->head_n, sizeof(c->head) - c->head_n, MSG_DONTWAIT);
	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			conn_end(c, "closed before its request");
		return;
	}
	c->head_n += (size_t)n;
	struct http_request req;
	uk_error err = { 0 };
	int r = http_parse_request(c->head, c->head_n, &req, &err);
	if (r == -EAGAIN && c->head_n < sizeof(c->head))
		return;
	if (r < 0) {
		refuse(c, r == -EAGAIN || r == -E2BIG ? 431 : 400, r == -EAGAIN ? "request head too large" : err.msg);
		return;
	}
	on_head(c, &req);
}

static void read_spdy(struct conn *c)
{
	uint8_t buf[STREAM_READ_CHUNK];
	ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_end(c, n == 0 ? "the client closed the connection" : strerror(errno));
		return;
	}
	c->last_io = uk_now_mono_ns();
	uk_error err = { 0 };
	if (spdy_session_input(c->spdy, buf, (size_t)n, &err) < 0)
		conn_end(c, err.msg);
}

static void on_conn(struct conn *c, uint32_t events)
{
	if (c->dead)
		return;
	if ((events & EPOLLIN) && c->phase == C_HTTP)
		read_http(c);
	else if ((events & EPOLLIN) && c->phase == C_SPDY)
		read_spdy(c);
	else if (events & (EPOLLERR | EPOLLHUP))
		conn_end(c, "the connection broke");
	if ((events & (EPOLLERR | EPOLLHUP)) && c->phase == C_CLOSING) {
		conn_free(c); /* nobody to flush to */
		return;
	}
	conn_flush(c);
}

/* The 1 s timer runs only while there are connections: an idle unikd does not wake for it. */
static void arm_sweep(struct stream_server *s, bool on)
{
	struct itimerspec t = { .it_interval = { on, 0 }, .it_value = { on, 0 } };
	(void)timerfd_settime(s->timer_fd, 0, &t, NULL); /* a valid timerfd and value: cannot fail */
}

static void accept_conns(struct stream_server *s)
{
	for (;;) {
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return; /* EAGAIN, or EMFILE and the like: the next event tries again */
		struct conn *c = s->n_conns < s->cfg.max_connections ? calloc(1, sizeof(*c)) : NULL;
		if (!c) {
			safe_close(fd);
			log_info("msg=\"streaming connection refused\" connections=%u max=%u", s->n_conns,
				 s->cfg.max_connections);
			continue;
		}
		*c = (struct conn){ .srv = s, .w = { W_CONN, c }, .fd = fd, .phase = C_HTTP, .att = { .up = -1 } };
		int sndbuf = STREAM_SNDBUF, one = 1;
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)); /* a default buffer works too */
		/* Frames are written whole: Nagle would hold a SYN_REPLY behind the last one's ACK. */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* a slower session at worst */
		c->since = c->last_io = c->last_out = uk_now_mono_ns();
		c->events = EPOLLIN | EPOLLRDHUP;
		if (watch_add(s, fd, c->events, &c->w) < 0) {
			safe_close(fd);
			free(c);
			continue;
		}
		c->next = s->conns;
		if (s->conns)
			s->conns->prev = c;
		s->conns = c;
		if (s->n_conns++ == 0)
			arm_sweep(s, true);
	}
}

/* Once a second: heads that never came, sessions idle too long. */
static void sweep(struct stream_server *s)
{
	uint64_t now = uk_now_mono_ns();
	for (struct conn *c = s->conns, *next; c; c = next) {
		next = c->next;
		if (pending_output(c) && now - c->last_out > STREAM_STALL_TIMEOUT_S * NS_PER_S) {
			log_info("stream=%s msg=\"client dropped: it read nothing for %d s\"", c->t.id[0] ? c->t.id : "-",
				 STREAM_STALL_TIMEOUT_S);
			conn_free(c);
		} else if (c->phase == C_HTTP && now - c->since > STREAM_HEAD_TIMEOUT_S * NS_PER_S) {
			refuse(c, 408, "no request in time");
			conn_flush(c);
		} else if (c->phase == C_SPDY && now - c->last_io > (uint64_t)s->cfg.idle_timeout_s * NS_PER_S) {
			conn_end(c, "idle");
			conn_flush(c);
		}
	}
	if (!s->n_conns)
		arm_sweep(s, false);
}

static void *loop(void *arg)
{
	struct stream_server *s = arg;
	struct epoll_event evs[64];
	for (;;) {
		int n = epoll_wait(s->epoll_fd, evs, ARRAY_SIZE(evs), -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		for (int i = 0; i < n; i++) {
			struct watch *w = evs[i].data.ptr;
			uint64_t v;
			switch (w->kind) {
			case W_WAKE: return NULL;
			case W_LISTEN: accept_conns(s); break;
			case W_TIMER:
				(void)!read(s->timer_fd, &v, sizeof(v)); /* the count does not matter */
				sweep(s);
				break;
			case W_CONN: on_conn(w->obj, evs[i].events); break;
			case W_PF: {
				struct pf_pair *pp = w->obj;
				struct conn *c = pp->c;
				if (!pp->dead && !c->dead) {
					pf_up_event(pp, evs[i].events);
					conn_flush(c);
				}
				break;
			}
			case W_ATTACH: {
				struct conn *c = w->obj;
				if (!c->dead) {
					att_up_event(c, evs[i].events);
					conn_flush(c);
				}
				break;
			}
			}
		}
		empty_trash(s);
	}
	return NULL;
}

/* ---- start, stop, URLs ---- */

static int listen_on(struct stream_server *s, uk_error *err)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
	socklen_t len;
	bool ipv6 = strchr(s->cfg.address, ':') != NULL;
	if (ipv6 ? inet_pton(AF_INET6, s->cfg.address, &v6->sin6_addr) != 1
		 : inet_pton(AF_INET, s->cfg.address, &v4->sin_addr) != 1)
		return uk_err(err, EINVAL, "[stream] address: \"%s\" is not an IP address", s->cfg.address);
	if (s->cfg.port > 65535)
		return uk_err(err, EINVAL, "[stream] port: %u is not a port", s->cfg.port);
	ss.ss_family = ipv6 ? AF_INET6 : AF_INET;
	if (ipv6)
		v6->sin6_port = htons((uint16_t)s->cfg.port), len = sizeof(*v6);
	else
		v4->sin_port = htons((uint16_t)s->cfg.port), len = sizeof(*v4);
	s->listen_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (s->listen_fd < 0 || setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(s->listen_fd, (struct sockaddr *)&ss, len) < 0 || listen(s->listen_fd, 128) < 0 ||
	    getsockname(s->listen_fd, (struct sockaddr *)&ss, &len) < 0)
		return uk_err_errno(err, errno, "[stream] cannot listen on %s port %u", s->cfg.address, s->cfg.port);
	unsigned port = ntohs(ipv6 ? v6->sin6_port : v4->sin_port);
	snprintf(s->base, sizeof(s->base), ipv6 ? "http://[%s]:%u" : "http://%s:%u", s->cfg.address, port);
	return 0;
}

int stream_server_start(const struct stream_config *cfg, struct stream_server **ret, uk_error *err)
{
	struct stream_server *s = calloc(1, sizeof(*s));
	if (!s)
		return uk_err(err, ENOMEM, "out of memory");
	s->cfg = *cfg;
	if (!s->cfg.address || !*s->cfg.address)
		s->cfg.address = STREAM_DEFAULT_ADDRESS;
	s->listen_fd = s->epoll_fd = s->wake_fd = s->timer_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	stream_tokens_init(&s->tokens, STREAM_MAX_TOKENS,
			   (s->cfg.url_timeout_s ? s->cfg.url_timeout_s : STREAM_TOKEN_TTL_S) * NS_PER_S);
	s->w_listen = (struct watch){ W_LISTEN, s };
	s->w_wake = (struct watch){ W_WAKE, s };
	s->w_timer = (struct watch){ W_TIMER, s };
	int r = listen_on(s, err);
	if (r == 0 && ((s->epoll_fd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
		       (s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
		       (s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)) < 0))
		r = uk_err_errno(err, errno, "the streaming server's event loop");
	if (r == 0 && (watch_add(s, s->listen_fd, EPOLLIN, &s->w_listen) < 0 ||
		       watch_add(s, s->wake_fd, EPOLLIN, &s->w_wake) < 0 ||
		       watch_add(s, s->timer_fd, EPOLLIN, &s->w_timer) < 0))
		r = uk_err_errno(err, errno, "the streaming server's event loop");
	if (r == 0 && (r = -pthread_create(&s->thread, NULL, loop, s)) < 0)
		r = uk_err(err, -r, "cannot start the streaming server's thread");
	if (r < 0) {
		stream_server_stop(s);
		return r;
	}
	s->started = true;
	*ret = s;
	return 0;
}

void stream_server_stop(struct stream_server *s)
{
	if (!s)
		return;
	if (s->started) {
		uint64_t one = 1;
		(void)!write(s->wake_fd, &one, sizeof(one)); /* an eventfd write of 1 cannot fail here */
		pthread_join(s->thread, NULL);
	}
	while (s->conns)
		conn_free(s->conns);
	empty_trash(s);
	safe_close(s->listen_fd);
	safe_close(s->epoll_fd);
	safe_close(s->wake_fd);
	safe_close(s->timer_fd);
	stream_tokens_free(&s->tokens);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

const char *stream_server_base(const struct stream_server *s)
{
	return s->base;
}

int stream_server_url(struct stream_server *s, const struct stream_target *t, char *url, size_t len, uk_error *err)
{
	char id[65], token[STREAM_TOKEN_LEN + 1];
	if (uk_random_hex_id(id) < 0)
		return uk_err(err, EIO, "no random bytes for a stream token");
	memcpy(token, id, STREAM_TOKEN_LEN);
	token[STREAM_TOKEN_LEN] = '\0';
	pthread_mutex_lock(&s->lock);
	int r = stream_tokens_add(&s->tokens, token, t, uk_now_mono_ns(), err);
	pthread_mutex_unlock(&s->lock);
	if (r < 0)
		return r;
	snprintf(url, len, "%s/%s/%s", s->base, t->kind == STREAM_ATTACH ? "attach" : "portforward", token);
	return 0;
}
