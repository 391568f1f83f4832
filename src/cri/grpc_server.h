/* The unary gRPC server of the CRI, on the gRPC C core.
 *
 * Three kinds of threads, so that no call ever waits behind another kind:
 *  - pollers drive gRPC: they sit in grpc_completion_queue_next, where gRPC's epoll engine
 *    does all the I/O (handshakes included), and never wait. They read a call's request,
 *    refuse a bad one at once (unknown method, NUL bytes, malformed), run a quick method's
 *    handler when it can answer without waiting, and queue the rest on the pool of its class;
 *  - one pool of threads per class of call (read, lifecycle, image), each with a bounded
 *    queue: a full queue answers RESOURCE_EXHAUSTED naming the pool;
 *  - the door thread accepts connections on a socket unikd owns, caps them, sees gRPC close
 *    them, re-enables accepting after EMFILE and the like, and answers every call that
 *    reaches its deadline DEADLINE_EXCEEDED, queued or running.
 * docs/architecture.md ("The CRI server") tells the whole story. */
#ifndef UK_GRPC_SERVER_H
#define UK_GRPC_SERVER_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "../common/error.h"
#include "arena.h"

/* A handler fills *resp (allocated in the call's arena) or returns -errno with err set;
 * the errno becomes the gRPC status (see errno_to_grpc_status). */
typedef int (*grpc_handler_fn)(void *userdata, arena *a, const ProtobufCMessage *req,
			       ProtobufCMessage **resp, uk_error *err);

/* Each class of call has its own pool of threads and queue, and a cap on how long a call
 * may take from its arrival (its deadline is the earlier of the cap and the client's). */
enum grpc_call_class {
	GRPC_CLASS_READ,      /* Version, Status, List*, *Status, *Stats: answers from records */
	GRPC_CLASS_LIFECYCLE, /* create, start, stop, remove, update: may wait on a VM */
	GRPC_CLASS_IMAGE,     /* PullImage, RemoveImage: may wait on a registry */
	GRPC_N_CLASSES,
};

/* The caps, in seconds. A StopContainer may run its own timeout on top of its cap. */
#define GRPC_READ_CAP_S 30
#define GRPC_LIFECYCLE_CAP_S 240
#define GRPC_IMAGE_CAP_S 1800
/* Calls waiting for a thread, per pool. */
#define GRPC_READ_QUEUE 256
#define GRPC_LIFECYCLE_QUEUE 256
#define GRPC_IMAGE_QUEUE 64
/* Threads per pool. */
#define GRPC_MAX_THREADS 64

struct grpc_method {
	const char *path; /* "/runtime.v1.RuntimeService/Version" */
	const ProtobufCMessageDescriptor *input;
	grpc_handler_fn fn; /* NULL: UNIMPLEMENTED (unless a router takes the call) */
	const char *unimplemented_msg;
	enum grpc_call_class cls;
	/* Seconds the call may take beyond its class's cap, from its request (StopContainer's
	 * timeout); NULL for none. */
	uint64_t (*extra_s)(const ProtobufCMessage *req);
	/* Without fn, the router may still answer it (a delegated container's Exec). */
	bool routable;
	/* fn may run on the poller that received the call, saving the hand-over to a pool
	 * thread: it answers from memory, and where it would have to wait (a lock held) it
	 * returns GRPC_QUEUE_CALL having done nothing, and the call goes to its pool (it asks
	 * grpc_call_may_wait(); every lock it takes is a trylock there). It never uses
	 * grpc_call_after_reply, whose work would run on the poller. A router runs on the
	 * poller too, and returns GRPC_QUEUE_CALL, having done nothing, for whatever it would
	 * forward, merge or wait for. */
	bool quick;
};

/* What a router or handler returns besides 0 and -errno. */
#define GRPC_ROUTE_LOCAL 1 /* router: run the method's own handler */
#define GRPC_REPLY_RAW 2   /* the answer was set with grpc_call_reply_raw */
#define GRPC_QUEUE_CALL 3  /* a quick handler or router on a poller: run me on my pool instead */

/* A router sees every call before its handler (the delegate, src/delegate/forward.c): it
 * answers it itself (0 with *resp, GRPC_REPLY_RAW, -errno) or returns GRPC_ROUTE_LOCAL; for a
 * quick call on a poller (grpc_call_may_wait() false), GRPC_QUEUE_CALL, having done nothing
 * (no raw reply, no record), if it would forward, merge or wait: the pool runs it again. */
typedef int (*grpc_router_fn)(void *userdata, const struct grpc_method *m, arena *a, const ProtobufCMessage *req,
			      ProtobufCMessage **resp, uk_error *err);

struct grpc_server_config {
	const char *socket_path;
	unsigned socket_mode; /* e.g. 0660 */
	unsigned threads[GRPC_N_CLASSES]; /* 1..GRPC_MAX_THREADS each */
	unsigned max_connections;         /* more are closed as they come */
	unsigned idle_timeout_s;          /* a connection without calls for this long is closed */
	int max_message_bytes;
	const struct grpc_method *methods;
	size_t n_methods;
	void *userdata;
	grpc_router_fn router; /* NULL: every call goes to its handler */
};

typedef struct uk_grpc_server uk_grpc_server;

/* Listen on cfg->socket_path (replacing a stale socket: the caller holds the lock that
 * makes it ours) and serve. */
int uk_grpc_server_start(const struct grpc_server_config *cfg, uk_grpc_server **ret, uk_error *err);
/* Stop accepting; answer calls not yet started UNAVAILABLE; let the running ones finish;
 * join every thread; free. */
void uk_grpc_server_stop(uk_grpc_server *s);

/* In a handler: the CLOCK_MONOTONIC time (ns) at which its call is answered
 * DEADLINE_EXCEEDED whatever the handler does; a handler that must finish something
 * (StopContainer's kill) does it before. UINT64_MAX outside a handler. */
uint64_t grpc_call_deadline_mono_ns(void);

/* In a handler or router: the request's bytes as they came (borrowed for the call's life),
 * so that a forwarder sends them on untouched. NULL outside a handler. */
grpc_byte_buffer *grpc_call_request_bytes(void);
/* In a handler or router: answer with these bytes (taken over; NULL for none), status code
 * and message rather than a packed response; the handler then returns GRPC_REPLY_RAW. */
void grpc_call_reply_raw(grpc_byte_buffer *bb, int code, const char *msg);

/* In a handler: run fn(ud, arg) on this thread once the answer is on its way (or dropped),
 * whatever it was: work the client need not wait for. arg is copied. One per call. */
void grpc_call_after_reply(void (*fn)(void *ud, const char *arg), void *ud, const char *arg);

/* In a handler or router: false on a poller (a quick method's call run where it came), where
 * it must not wait but return GRPC_QUEUE_CALL instead, having done nothing; true on a pool
 * thread. */
bool grpc_call_may_wait(void);
int errno_to_grpc_status(int neg_errno);

#endif
