/* The attach socket's server; see attach.h and docs/architecture.md, "The attach socket". */
#include <string.h>
#include <sys/socket.h>

#include "../src/common/log.h"
#include "../src/common/util.h"
#include "attach.h"

#define NS_PER_MS 1000000ULL
/* How long accept rests after running out of fds. */
#define ACCEPT_PAUSE_NS (100 * NS_PER_MS)
/* Reads of a closing client's leftover input, so it sees EOF rather than a reset. */
#define DISCARD_READS 4

void attach_server_init(struct attach_server *s, int listen_fd, bool input, const char *id)
{
	/* accept4 gives each client its own O_NONBLOCK; the listener needs it too, so a client
	 * gone between poll and accept cannot block the loop. A failure leaves that rare case
	 * blocking, nothing else. */
	if (listen_fd >= 0)
		(void)uk_set_nonblock(listen_fd, true);
	*s = (struct attach_server){ .listen_fd = listen_fd, .input = input, .guest_fd = -1, .id = id ? id : "" };
	for (size_t i = 0; i < ATTACH_CLIENTS_MAX; i++)
		s->clients[i].fd = -1;
}

static void discard_input(int fd)
{
	char buf[4096];
	for (int i = 0; i < DISCARD_READS; i++)
		if (read(fd, buf, sizeof(buf)) <= 0)
			return;
}

static void client_close(struct attach_client *c)
{
	c->fd = safe_close(c->fd);
}

void attach_server_done(struct attach_server *s)
{
	for (size_t i = 0; i < ATTACH_CLIENTS_MAX; i++)
		client_close(&s->clients[i]);
	s->listen_fd = safe_close(s->listen_fd);
	free(s->ring);
	s->ring = NULL;
}

void attach_server_set_guest(struct attach_server *s, int fd)
{
	s->guest_fd = s->input ? fd : -1;
	if (s->guest_fd < 0)
		s->in_len = 0;
}

void attach_server_set_input(struct attach_server *s, bool input, int fd)
{
	s->input = input;
	attach_server_set_guest(s, fd);
}

bool attach_server_wants_guest(const struct attach_server *s)
{
	return s->guest_fd >= 0 && s->in_len > 0;
}

void attach_server_write_input(struct attach_server *s)
{
	while (attach_server_wants_guest(s)) {
		ssize_t k = send(s->guest_fd, s->in, s->in_len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EAGAIN)
			return;
		if (k < 0) {
			/* QEMU has gone: the console's EOF tells the loop; the input has nowhere to go. */
			attach_server_set_guest(s, -1);
			return;
		}
		memmove(s->in, s->in + k, s->in_len - (size_t)k);
		s->in_len -= (size_t)k;
	}
}

/* Send what the client has not had yet, as much as its socket takes; -errno when it is gone. */
static int client_send(const struct attach_server *s, struct attach_client *c)
{
	while (c->pos < s->total) {
		size_t off = (size_t)(c->pos % ATTACH_LAG_MAX), len = (size_t)(s->total - c->pos);
		if (len > ATTACH_LAG_MAX - off)
			len = ATTACH_LAG_MAX - off;
		ssize_t k = send(c->fd, s->ring + off, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return errno == EAGAIN ? 0 : -errno;
		c->pos += (size_t)k;
	}
	return 0;
}

static void client_flush(struct attach_server *s, struct attach_client *c)
{
	if (c->fd >= 0 && client_send(s, c) < 0)
		client_close(c);
}

/* Bytes [total, total + n) go into the ring, n <= ATTACH_LAG_MAX: a client that would then
 * be more than the ring behind gets a last try, and goes if it is still too slow. */
static void ring_put(struct attach_server *s, const char *p, size_t n)
{
	for (size_t i = 0; i < ATTACH_CLIENTS_MAX; i++) {
		struct attach_client *c = &s->clients[i];
		if (c->fd < 0 || s->total + n - c->pos <= ATTACH_LAG_MAX)
			continue;
		client_flush(s, c);
		if (c->fd >= 0 && s->total + n - c->pos > ATTACH_LAG_MAX) {
			log_info("vm=%s msg=\"attach client dropped: it fell %d bytes behind the console\"", s->id,
				 ATTACH_LAG_MAX);
			client_close(c);
		}
	}
	size_t off = (size_t)(s->total % ATTACH_LAG_MAX), first = n < ATTACH_LAG_MAX - off ? n : ATTACH_LAG_MAX - off;
	memcpy(s->ring + off, p, first);
	memcpy(s->ring, p + first, n - first);
	s->total += n;
}

void attach_server_output(struct attach_server *s, const void *buf, size_t n)
{
	const char *p = buf;
	if (!s->ring) {
		/* No client has ever come: none needs these bytes. */
		s->total += n;
		return;
	}
	while (n > 0) {
		size_t k = n < ATTACH_LAG_MAX ? n : ATTACH_LAG_MAX;
		ring_put(s, p, k);
		p += k;
		n -= k;
	}
	/* Out at once when the sockets take it; the rest when poll says they can. */
	for (size_t i = 0; i < ATTACH_CLIENTS_MAX; i++)
		client_flush(s, &s->clients[i]);
}

/* Client input is read while there is room for it (or, without input, to throw it away). */
static bool reads_input(const struct attach_server *s, const struct attach_client *c)
{
	return !c->input_done && (s->guest_fd < 0 || s->in_len < sizeof(s->in));
}

void attach_server_pollfds(const struct attach_server *s, uint64_t now_ns, struct pollfd p[ATTACH_POLLFDS])
{
	bool paused = now_ns < s->accept_paused_until_ns;
	p[0] = (struct pollfd){ .fd = paused ? -1 : s->listen_fd, .events = POLLIN };
	for (size_t i = 0; i < ATTACH_CLIENTS_MAX; i++) {
		const struct attach_client *c = &s->clients[i];
		short ev = (short)((c->fd >= 0 && c->pos < s->total ? POLLOUT : 0) |
				   (c->fd >= 0 && reads_input(s, c) ? POLLIN : 0));
		/* With no events, poll still reports POLLHUP: a client that has gone. */
		p[1 + i] = (struct pollfd){ .fd = c->fd, .events = ev };
	}
}

int attach_server_timeout_ms(const struct attach_server *s, uint64_t now_ns)
{
	if (now_ns >= s->accept_paused_until_ns)
		return -1;
	uint64_t ms = (s->accept_paused_until_ns - now_ns + NS_PER_MS - 1) / NS_PER_MS;
	return (int)ms;
}

static void client_read(struct attach_server *s, struct attach_client *c)
{
	char discard[4096];
	bool keep = s->guest_fd >= 0;
	ssize_t k = keep ? read(c->fd, s->in + s->in_len, sizeof(s->in) - s->in_len) : read(c->fd, discard, sizeof(discard));
	if (k < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (k < 0) {
		client_close(c);
		return;
	}
	if (k == 0) {
		/* It shut its sending side; it may still want the console. */
		c->input_done = true;
		return;
	}
	if (keep) {
		s->in_len += (size_t)k;
		attach_server_write_input(s);
	}
}

static void accept_clients(struct attach_server *s, uint64_t now_ns)
{
	/* A bounded number per round, so a stream of connections cannot hold the loop here. */
	for (int i = 0; i < 2 * ATTACH_CLIENTS_MAX; i++) {
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				s->accept_paused_until_ns = now_ns + ACCEPT_PAUSE_NS;
			/* EAGAIN: none left; ECONNABORTED, EINTR: the next round tries again. */
			return;
		}
		struct attach_client *c = NULL;
		for (size_t k = 0; k < ATTACH_CLIENTS_MAX && !c; k++)
			if (s->clients[k].fd < 0)
				c = &s->clients[k];
		if (c && !s->ring)
			s->ring = malloc(ATTACH_LAG_MAX);
		if (!c || !s->ring) {
			/* Over the limit (or no memory for the ring): closed at once. */
			discard_input(fd);
			safe_close(fd);
			continue;
		}
		*c = (struct attach_client){ .fd = fd, .pos = s->total };
	}
}

void attach_server_process(struct attach_server *s, const struct pollfd p[ATTACH_POLLFDS], uint64_t now_ns)
{
	for (size_t i = 0; i < ATTACH_CLIENTS_MAX; i++) {
		struct attach_client *c = &s->clients[i];
		short rev = p[1 + i].fd == c->fd ? p[1 + i].revents : 0;
		if (c->fd < 0 || !rev)
			continue;
		if ((rev & (POLLIN | POLLHUP | POLLERR)) && reads_input(s, c))
			client_read(s, c);
		if (c->fd >= 0 && (rev & POLLOUT))
			client_flush(s, c);
		/* POLLHUP on a unix stream socket: the peer has closed both ways. */
		if (c->fd >= 0 && (rev & (POLLHUP | POLLERR)))
			client_close(c);
	}
	if (p[0].fd >= 0 && p[0].revents)
		accept_clients(s, now_ns);
}

void attach_server_finish(struct attach_server *s, int timeout_ms)
{
	uint64_t deadline = uk_now_mono_ns() + (uint64_t)timeout_ms * NS_PER_MS;
	s->listen_fd = safe_close(s->listen_fd);
	attach_server_set_guest(s, -1);
	for (;;) {
		struct pollfd p[ATTACH_CLIENTS_MAX];
		nfds_t n = 0;
		for (size_t i = 0; i < ATTACH_CLIENTS_MAX; i++) {
			struct attach_client *c = &s->clients[i];
			client_flush(s, c);
			if (c->fd >= 0 && c->pos < s->total)
				p[n++] = (struct pollfd){ .fd = c->fd, .events = POLLOUT };
		}
		uint64_t now = uk_now_mono_ns();
		if (n == 0 || now >= deadline)
			break;
		/* Whatever poll says, the next round's sends find out; an error only ends the wait. */
		if (poll(p, n, (int)((deadline - now + NS_PER_MS - 1) / NS_PER_MS)) < 0 && errno != EINTR)
			break;
	}
	for (size_t i = 0; i < ATTACH_CLIENTS_MAX; i++) {
		struct attach_client *c = &s->clients[i];
		if (c->fd >= 0 && c->pos < s->total)
			log_info("vm=%s msg=\"attach client closed with %llu console bytes it did not take\"", s->id,
				 (unsigned long long)(s->total - c->pos));
		if (c->fd >= 0)
			discard_input(c->fd);
		client_close(c);
	}
}
