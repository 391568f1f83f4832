/* The control socket's server: bounded clients, one line each, one reply; see ctl.h. */
#include <string.h>
#include <sys/socket.h>

#include "../src/common/util.h"
#include "vmctl_server.h"

#define NS_PER_MS 1000000ULL
/* How long accept rests after running out of fds. */
#define ACCEPT_PAUSE_NS (100 * NS_PER_MS)

void vmctl_server_init(struct vmctl_server *s, int listen_fd, int timeout_ms, vmctl_handler_fn fn, void *userdata)
{
	s->listen_fd = listen_fd;
	/* accept4 gives each client its own O_NONBLOCK; the listener needs it too, so a client
	 * that went away between poll and accept cannot block the loop. A failure here leaves
	 * that rare case blocking, nothing else. */
	if (listen_fd >= 0)
		(void)uk_set_nonblock(listen_fd, true);
	s->timeout_ns = (uint64_t)timeout_ms * NS_PER_MS;
	s->accept_paused_until_ns = 0;
	s->handler = fn;
	s->userdata = userdata;
	for (size_t i = 0; i < VMCTL_CLIENTS_MAX; i++) {
		s->clients[i].fd = -1;
		s->clients[i].len = 0;
		s->clients[i].pending = false;
		s->clients[i].too_many_fds = false;
		s->clients[i].n_fds = 0;
	}
}

/* The fds a client brought and no command kept. */
static void client_close_fds(struct vmctl_client *c)
{
	for (size_t i = 0; i < c->n_fds; i++)
		safe_close(c->fds[i]);
	c->n_fds = 0;
}

static void client_close(struct vmctl_client *c)
{
	c->fd = safe_close(c->fd);
	client_close_fds(c);
	c->len = 0;
	c->pending = false;
	c->too_many_fds = false;
}

void vmctl_server_done(struct vmctl_server *s)
{
	for (size_t i = 0; i < VMCTL_CLIENTS_MAX; i++)
		client_close(&s->clients[i]);
	s->listen_fd = safe_close(s->listen_fd);
}

void vmctl_server_pollfds(const struct vmctl_server *s, uint64_t now_ns, struct pollfd p[VMCTL_POLLFDS])
{
	bool paused = now_ns < s->accept_paused_until_ns;
	p[0] = (struct pollfd){ .fd = paused ? -1 : s->listen_fd, .events = POLLIN };
	for (size_t i = 0; i < VMCTL_CLIENTS_MAX; i++)
		p[1 + i] = (struct pollfd){ .fd = s->clients[i].pending ? -1 : s->clients[i].fd, .events = POLLIN };
}

static int ms_until(uint64_t deadline_ns, uint64_t now_ns)
{
	if (deadline_ns <= now_ns)
		return 0;
	uint64_t ms = (deadline_ns - now_ns + NS_PER_MS - 1) / NS_PER_MS;
	return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

int vmctl_server_timeout_ms(const struct vmctl_server *s, uint64_t now_ns)
{
	int t = now_ns < s->accept_paused_until_ns ? ms_until(s->accept_paused_until_ns, now_ns) : -1;
	for (size_t i = 0; i < VMCTL_CLIENTS_MAX; i++) {
		if (s->clients[i].fd < 0)
			continue;
		int ct = ms_until(s->clients[i].deadline_ns, now_ns);
		if (t < 0 || ct < t)
			t = ct;
	}
	return t;
}

/* Closing with input unread makes the kernel fail the client's next read with ECONNRESET
 * instead of EOF, and a client that reads to EOF would miss that the reply is whole. Bytes
 * already sent after the line (or past the limit) are read away first, a bounded amount. */
static void discard_input(int fd)
{
	char buf[VMCTL_LINE_MAX];
	for (int i = 0; i < 4; i++)
		if (read(fd, buf, sizeof(buf)) <= 0)
			return;
}

/* Answer and hang up. */
static void reply_fd(int fd, int r, const char *msg)
{
	char out[VMCTL_REPLY_MAX];
	size_t n = vmctl_format_reply(out, r, msg);
	/* A reply fits a new socket's empty buffer; a client that has gone loses it, which is
	 * its own doing. */
	(void)send(fd, out, n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void client_reply(struct vmctl_client *c, int r, const char *msg)
{
	discard_input(c->fd);
	reply_fd(c->fd, r, msg);
	client_close(c);
}

/* The fds of one recvmsg: kept while they fit, else all of them closed and the client
 * marked, to be answered once. MSG_CTRUNC: the kernel dropped some, which is the same. */
static void take_fds(struct vmctl_client *c, struct msghdr *m)
{
	for (struct cmsghdr *h = CMSG_FIRSTHDR(m); h; h = CMSG_NXTHDR(m, h)) {
		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
			if (c->too_many_fds || c->n_fds == VMCTL_FDS_MAX) {
				c->too_many_fds = true;
				safe_close(fd);
				continue;
			}
			c->fds[c->n_fds++] = fd;
		}
	}
	if (m->msg_flags & MSG_CTRUNC)
		c->too_many_fds = true;
	if (c->too_many_fds)
		client_close_fds(c);
}

/* read(), with the fds that come along (MSG_CMSG_CLOEXEC: none leaks into QEMU). */
static ssize_t client_recv(struct vmctl_client *c)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * VMCTL_FDS_MAX)];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { .iov_base = c->buf + c->len, .iov_len = sizeof(c->buf) - c->len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf) };
	ssize_t k = recvmsg(c->fd, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (k >= 0)
		take_fds(c, &m);
	return k;
}

/* The complete line's command, with the fds that came with it. */
static void client_command(struct vmctl_server *s, struct vmctl_client *c, uint64_t now_ns)
{
	enum vmctl_command cmd;
	if (vmctl_parse_command(c->buf, &cmd) < 0) {
		client_reply(c, -EINVAL, VMCTL_ERR_UNKNOWN);
		return;
	}
	if (c->n_fds > 0 && cmd != VMCTL_CLAIM) {
		client_reply(c, -EINVAL, VMCTL_ERR_FDS);
		return;
	}
	uk_error err = { 0 };
	int r = s->handler(cmd, c->fds, c->n_fds, &err, s->userdata);
	/* What the handler did not keep goes now, whatever the outcome. */
	client_close_fds(c);
	if (r == VMCTL_ANSWER_LATER) {
		c->pending = true;
		c->deadline_ns = now_ns + s->timeout_ns;
		return;
	}
	client_reply(c, r, err.msg);
}

static void client_read(struct vmctl_server *s, struct vmctl_client *c, uint64_t now_ns)
{
	ssize_t k = client_recv(c);
	if (k < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (k <= 0) {
		/* Gone (or broken) before its line was complete: nobody to answer. */
		client_close(c);
		return;
	}
	c->len += (size_t)k;
	if (c->too_many_fds) {
		client_reply(c, -E2BIG, VMCTL_ERR_TOO_MANY_FDS);
		return;
	}
	size_t line_len;
	int r = vmctl_line_take(c->buf, c->len, sizeof(c->buf), &line_len);
	if (r == 0)
		return;
	if (r < 0) {
		client_reply(c, r, r == -EMSGSIZE ? VMCTL_ERR_TOO_LONG : VMCTL_ERR_BAD_LINE);
		return;
	}
	client_command(s, c, now_ns);
}

static struct vmctl_client *free_slot(struct vmctl_server *s)
{
	for (size_t i = 0; i < VMCTL_CLIENTS_MAX; i++)
		if (s->clients[i].fd < 0)
			return &s->clients[i];
	return NULL;
}

static void accept_clients(struct vmctl_server *s, uint64_t now_ns)
{
	/* A bounded number per round, so a stream of connections cannot hold the loop here. */
	for (int i = 0; i < 2 * VMCTL_CLIENTS_MAX; i++) {
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				s->accept_paused_until_ns = now_ns + ACCEPT_PAUSE_NS;
			/* EAGAIN: none left; ECONNABORTED, EINTR: the next round tries again. */
			return;
		}
		struct vmctl_client *c = free_slot(s);
		if (!c) {
			discard_input(fd);
			reply_fd(fd, -EBUSY, VMCTL_ERR_BUSY);
			safe_close(fd);
			continue;
		}
		c->fd = fd;
		c->len = 0;
		c->n_fds = 0;
		c->too_many_fds = false;
		c->deadline_ns = now_ns + s->timeout_ns;
	}
}

void vmctl_server_process(struct vmctl_server *s, const struct pollfd p[VMCTL_POLLFDS], uint64_t now_ns)
{
	for (size_t i = 0; i < VMCTL_CLIENTS_MAX; i++) {
		struct vmctl_client *c = &s->clients[i];
		if (c->fd >= 0 && p[1 + i].fd == c->fd && p[1 + i].revents)
			client_read(s, c, now_ns);
		if (c->fd >= 0 && now_ns >= c->deadline_ns)
			client_reply(c, -ETIMEDOUT, c->pending ? VMCTL_ERR_NO_OUTCOME : VMCTL_ERR_TIMEOUT);
	}
	if (p[0].fd >= 0 && p[0].revents)
		accept_clients(s, now_ns);
}

void vmctl_server_answer(struct vmctl_server *s, int r, const char *msg)
{
	for (size_t i = 0; i < VMCTL_CLIENTS_MAX; i++)
		if (s->clients[i].fd >= 0 && s->clients[i].pending)
			client_reply(&s->clients[i], r, msg);
}
