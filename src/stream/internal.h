/* The streaming server's insides, shared by server.c (the loop, connections, HTTP),
 * portforward.c and attach.c (what a session relays). Everything here runs on the server's
 * one thread. */
#ifndef UK_STREAM_INTERNAL_H
#define UK_STREAM_INTERNAL_H

#include <pthread.h>

#include "http.h"
#include "server.h"
#include "spdy.h"

/* Bytes read from a socket at a time. */
#define STREAM_READ_CHUNK 16384
/* Bytes waiting to go to a pod's port or the attach socket, per stream: past this the client's
 * connection is not read until they drain (SPDY has no flow control to ask for less). */
#define STREAM_UP_PAUSE 65536
/* ... and never more than this (one read past the pause, with room to spare). */
#define STREAM_UP_MAX (STREAM_UP_PAUSE + 4 * STREAM_READ_CHUNK)
/* A session's queued output (the engine's max_output): the relays read their sockets only
 * while it is under half. With the socket's send buffer (fixed, so the kernel's autotuning
 * cannot hold megabytes for a client that does not read), what one session holds is bounded. */
#define STREAM_MAX_OUTPUT (1024 * 1024)
#define STREAM_SNDBUF (256 * 1024)
/* A client that reads nothing of what waits for it this long is dropped (with a reset). */
#define STREAM_STALL_TIMEOUT_S 10
/* Port-forward pairs (one per forwarded connection) open at once in one session. */
#define STREAM_MAX_PAIRS 32

/* What an epoll event is for. */
enum watch_kind { W_LISTEN, W_WAKE, W_TIMER, W_CONN, W_PF, W_ATTACH };
struct watch {
	enum watch_kind kind;
	void *obj; /* the conn (W_CONN, W_ATTACH), or the pair (W_PF) */
};

/* Bytes on their way to an upstream socket. */
struct upbuf {
	uint8_t *p;
	size_t n;
};

struct conn;

/* One forwarded connection: the client's error and data streams, and the pod's socket. */
struct pf_pair {
	struct conn *c;
	struct watch w;
	char reqid[64];
	uint16_t port;
	uint32_t err_id, data_id;
	int up;
	bool connecting, connected, up_eof, client_fin, shut_wr, ended;
	bool dead; /* freed at the end of the loop's batch: an event for it may still be there */
	/* The socket hung up while the session had no room for its last bytes: out of epoll
	 * (a hang-up is reported whatever the mask), read again when the output drains. */
	bool parked;
	struct upbuf out;
	struct pf_pair *trash_next;
};

struct attach_state {
	uint32_t err_id, in_id, out_id, errout_id, resize_id;
	unsigned expected, got;
	int up;
	struct watch w;
	bool started, up_eof, ended, parked; /* parked: as pf_pair's */
	struct upbuf out; /* the client's stdin, on its way to vmwrapper */
};

enum conn_phase { C_HTTP, C_SPDY, C_CLOSING };

struct conn {
	struct stream_server *srv;
	struct watch w;
	int fd;
	enum conn_phase phase;
	uint64_t since, last_io;
	uint64_t last_out; /* the last write that made progress, or when nothing waited */
	char head[HTTP_MAX_HEAD];
	size_t head_n;
	char reply[1024]; /* the HTTP answer, before SPDY */
	size_t reply_n, reply_off;
	struct spdy_session *spdy;
	struct stream_target t;
	bool v4;         /* attach: the error stream carries a metav1.Status */
	bool in_paused;  /* the client's socket is not read: an upstream buffer is full */
	uint32_t events; /* what epoll watches on fd now */
	struct pf_pair *pairs[STREAM_MAX_PAIRS];
	struct attach_state att;
	bool dead; /* as pf_pair's */
	struct conn *prev, *next, *trash_next;
};

struct stream_server {
	struct stream_config cfg;
	char base[96];
	int listen_fd, epoll_fd, wake_fd, timer_fd;
	struct watch w_listen, w_wake, w_timer;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock; /* tokens: the gRPC threads add, the loop takes */
	struct stream_tokens tokens;
	struct conn *conns;
	unsigned n_conns;
	struct conn *trash_conns; /* freed after each batch of events */
	struct pf_pair *trash_pairs;
};

/* server.c, for the relays */
void conn_update_events(struct conn *c);
void conn_end(struct conn *c, const char *why); /* flush what is queued, then close */
/* Write what is queued (a closing connection with nothing left goes); after any event that
 * may have queued output. */
void conn_flush(struct conn *c);
int watch_add(struct stream_server *s, int fd, uint32_t events, struct watch *w);
void watch_mod(struct stream_server *s, int fd, uint32_t events, struct watch *w);
void watch_del(struct stream_server *s, int fd);
/* Whether the session's output has room for a read's worth more. */
bool conn_output_room(const struct conn *c);
/* upbuf: append (bounded by STREAM_UP_MAX: -ENOBUFS), write what the socket takes. */
int upbuf_add(struct upbuf *b, const uint8_t *p, size_t n);
int upbuf_flush(struct upbuf *b, int fd);
void upbuf_free(struct upbuf *b);

/* portforward.c */
int pf_syn_stream(struct conn *c, uint32_t id, const struct spdy_headers *h);
int pf_data(struct conn *c, uint32_t id, const uint8_t *p, size_t n, bool fin);
void pf_rst(struct conn *c, uint32_t id);
void pf_up_event(struct pf_pair *pp, uint32_t events);
void pf_resume(struct conn *c); /* the session's output drained: read the pods again */
bool pf_blocked(const struct conn *c);  /* an upstream buffer is past STREAM_UP_PAUSE */
void pf_free_all(struct conn *c); /* into the server's trash */

/* attach.c */
int att_syn_stream(struct conn *c, uint32_t id, const struct spdy_headers *h);
int att_data(struct conn *c, uint32_t id, const uint8_t *p, size_t n, bool fin);
void att_rst(struct conn *c, uint32_t id);
void att_up_event(struct conn *c, uint32_t events);
void att_resume(struct conn *c);
bool att_blocked(const struct conn *c);
void att_free(struct conn *c);

#endif
