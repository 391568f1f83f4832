/* The attach socket's server (docs/architecture.md, "The attach socket"): the console's
 * bytes to every client, and with the spec's stdin, the clients' bytes to the guest.
 *
 * The console goes to the clients through one ring of ATTACH_LAG_MAX bytes: each client
 * has its place in the console's output and is sent from the ring without blocking. The
 * CRI log never waits for a client: a client that falls ATTACH_LAG_MAX behind loses its
 * connection. Input goes through a buffer of ATTACH_INPUT_MAX bytes; while it is full,
 * clients are not read, so a guest that does not read its serial port holds them back.
 *
 * Like vmctl_server.h, it leaves the poll loop to its caller: attach_server_pollfds()
 * gives the fds to watch, attach_server_timeout_ms() how long the loop may wait, and
 * attach_server_process() does what they allow, without blocking. */
#ifndef VMW_ATTACH_H
#define VMW_ATTACH_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* In the state directory, next to ctl.sock. */
#define ATTACH_SOCKET "attach.sock"
/* Clients at once; the next one is closed at once. */
#define ATTACH_CLIENTS_MAX 16
/* How far a client may fall behind the console before it is dropped: the ring's size. */
#define ATTACH_LAG_MAX (1024 * 1024)
/* Client input not yet taken by the guest. */
#define ATTACH_INPUT_MAX 4096
/* When the VM has ended, how long the clients get to take what is left. */
#define ATTACH_DRAIN_MS 1000

struct attach_client {
	int fd; /* -1: a free slot */
	uint64_t pos; /* the offset in the console's output of the next byte it gets */
	bool input_done; /* it shut its sending side: not read any more */
};

struct attach_server {
	int listen_fd;
	bool input; /* the spec's stdin: client bytes go to the guest */
	int guest_fd; /* where input goes (not ours to close); -1: it is read and discarded */
	const char *id; /* the VM's, for log lines */
	/* After EMFILE or ENFILE, accept waits until then rather than spin. */
	uint64_t accept_paused_until_ns;
	char *ring; /* ATTACH_LAG_MAX bytes, from the first client on */
	uint64_t total; /* console bytes seen so far: byte k is at ring[k % ATTACH_LAG_MAX] */
	size_t in_len;
	char in[ATTACH_INPUT_MAX];
	struct attach_client clients[ATTACH_CLIENTS_MAX];
};

/* The pollfds attach_server_pollfds() fills: the listener, then one per client slot. */
#define ATTACH_POLLFDS (1 + ATTACH_CLIENTS_MAX)

/* Takes over listen_fd (a listening socket, made non-blocking here; -1 for none yet: init
 * again with one later). input: the spec's stdin. id is kept, not copied. */
void attach_server_init(struct attach_server *s, int listen_fd, bool input, const char *id);
/* Closes the listener and every client; frees the ring. */
void attach_server_done(struct attach_server *s);

/* Where input goes from now on: the console's fd, or -1 once it has ended (input still
 * pending is dropped). Ignored when input is off. */
void attach_server_set_guest(struct attach_server *s, int fd);
/* Input is waiting for the guest: poll its fd for POLLOUT and call attach_server_write_input(). */
/* A pool VM's claim decides the spec's stdin late: input on or off, and where it goes. */
void attach_server_set_input(struct attach_server *s, bool input, int fd);
bool attach_server_wants_guest(const struct attach_server *s);
void attach_server_write_input(struct attach_server *s);

/* Console bytes, as QEMU gave them, for every client connected now. Never blocks. */
void attach_server_output(struct attach_server *s, const void *buf, size_t n);

void attach_server_pollfds(const struct attach_server *s, uint64_t now_ns, struct pollfd p[ATTACH_POLLFDS]);
/* Milliseconds until accept may go on, -1 when nothing waits on the clock. */
int attach_server_timeout_ms(const struct attach_server *s, uint64_t now_ns);
/* p: what poll() made of attach_server_pollfds()'s array. */
void attach_server_process(struct attach_server *s, const struct pollfd p[ATTACH_POLLFDS], uint64_t now_ns);

/* The console has ended: stop accepting and reading, give the clients what is queued for
 * at most timeout_ms, then close them all (their unread input read away first, a bounded
 * amount, so they see EOF rather than a reset). */
void attach_server_finish(struct attach_server *s, int timeout_ms);

#endif
