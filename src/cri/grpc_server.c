/* The CRI's gRPC server: pollers drive gRPC (and run a quick call's handler when it need
 * not wait), pools run the other handlers, the door thread owns the socket, the connections
 * and the deadlines (see grpc_server.h).
 *
 * A call is a struct rpc. It is freed when its last reference goes: each batch started on
 * gRPC holds one until its completion comes out of the queue, and so do its place in a
 * pool's queue and the thread that runs its handler (on a poller, the request's). Whoever
 * moves it to RPC_DONE (under the lock) sends its one reply: the thread that ran the
 * handler, with its result, the door thread at the deadline, a poller for a bad request. A
 * handler that finishes after its call was answered finds it DONE and drops the result; its
 * arena and request live until then. */
#include <fcntl.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>

#include "../common/log.h"
#include "../common/util.h"
#include "grpc_server.h"
#include "wire_check.h"

#define POLLERS 2
/* Calls requested from gRPC ahead of their arrival. */
#define PENDING_REQUESTS 16
/* Calls in flight at once, queued or not; more are answered RESOURCE_EXHAUSTED. */
#define MAX_CALLS 2048
/* Bytes of request messages held at once (received and not yet freed, each counted once
 * for its bytes and once for what it unpacks to); a large request past it is answered
 * RESOURCE_EXHAUSTED, so 2048 calls of 16 MiB cannot make us hold 64 GiB. A small one is
 * always taken, so that big ones never keep Version or a relist out: those are bounded by
 * MAX_CALLS instead (2048 x 2 x 64 KiB). */
#define MAX_HELD_BYTES (512ULL << 20)
#define SMALL_REQUEST_BYTES (64U << 10)
/* Concurrent streams per connection. */
#define MAX_STREAMS 1024
/* Connections accepted per wake-up, so timers are served in between. */
#define ACCEPT_BATCH 64
#define NS_PER_MS 1000000ULL
#define NS_PER_S 1000000000ULL
#define BACKOFF_MIN_NS (100 * NS_PER_MS)
#define BACKOFF_MAX_NS (1000 * NS_PER_MS)
/* How much earlier than a client's deadline its call is answered (see deadline_of). */
#define CLIENT_MARGIN_NS (50 * NS_PER_MS)
/* Refused connections are logged at most this often. */
#define REFUSED_LOG_NS (10 * NS_PER_S)

struct pool_spec {
	const char *name;
	unsigned queue_max;
	uint64_t cap_s;
};

static const struct pool_spec pool_specs[GRPC_N_CLASSES] = {
	[GRPC_CLASS_READ] = { "read", GRPC_READ_QUEUE, GRPC_READ_CAP_S },
	[GRPC_CLASS_LIFECYCLE] = { "lifecycle", GRPC_LIFECYCLE_QUEUE, GRPC_LIFECYCLE_CAP_S },
	[GRPC_CLASS_IMAGE] = { "image", GRPC_IMAGE_QUEUE, GRPC_IMAGE_CAP_S },
};

enum tag_kind { TAG_NEW, TAG_RECV, TAG_CLOSE, TAG_SEND, N_TAGS };

/* A doubly linked list threaded through the calls: the live ones, and each pool's queue. */
struct link {
	struct rpc *prev, *next;
};
struct list {
	struct rpc *head, *tail;
	unsigned n;
	size_t off; /* of the struct link in struct rpc */
};

struct rpc;
struct tag {
	struct rpc *r;
	enum tag_kind kind;
};

enum rpc_state {
	RPC_REQUESTED, /* waiting for gRPC to hand over a call */
	RPC_RECEIVING, /* the call came; its request message has not yet */
	RPC_QUEUED,    /* in its pool's queue */
	RPC_RUNNING,   /* a handler runs it */
	RPC_DONE,      /* answered, or abandoned by the client: nothing more is sent */
};

struct rpc {
	struct uk_grpc_server *srv;
	struct tag tags[N_TAGS];
	grpc_call *call;
	grpc_call_details details;
	grpc_metadata_array md;
	grpc_byte_buffer *in, *out;
	int cancelled;
	const struct grpc_method *m;
	struct pool *pool;
	ProtobufCMessage *req;
	arena *a;
	char path[128];
	size_t held; /* bytes counted in srv->held_bytes for this request */
	uint64_t t0, deadline;
	bool client_deadline; /* the deadline is the client's, not the cap */
	/* Under srv->lock: where its handler runs, for the log ("poller", "pool", or
	 * "pool-from-poller" for a quick call a poller handed over because its handler would
	 * have waited); the client cancelled it while a poller tried it (on_close saw it
	 * running). */
	bool cancel_seen;
	const char *ran;
	/* A raw answer set by grpc_call_reply_raw (the delegate's, forwarded as it came). */
	grpc_byte_buffer *raw;
	int raw_code;
	char *raw_msg;
	/* grpc_call_after_reply's: run by the worker once it has answered. */
	void (*after_fn)(void *ud, const char *arg);
	void *after_ud;
	char *after_arg;
	/* Under srv->lock. */
	enum rpc_state state, expired_from;
	unsigned refs;
	struct link live;    /* in srv->live */
	struct link queue;   /* in its pool's queue */
	struct rpc *expired; /* a list built by expire_calls */
};

struct pool {
	struct uk_grpc_server *srv;
	const struct pool_spec *spec;
	pthread_cond_t cond;
	struct list queue;
	pthread_t threads[GRPC_MAX_THREADS];
	unsigned n_threads, started;
};

/* The door thread's epoll keys: the kind in the high half, a connection's slot below. */
enum door_key { KEY_LISTEN = 1, KEY_BACKOFF, KEY_DEADLINE, KEY_STOP, KEY_CONN };

struct uk_grpc_server {
	struct grpc_server_config cfg;
	grpc_server *server;
	bool grpc_started;
	grpc_completion_queue *cq, *shutdown_cq;
	grpc_server_credentials *creds;
	pthread_t pollers[POLLERS];
	unsigned pollers_started;
	struct pool pools[GRPC_N_CLASSES];

	uint64_t held_bytes; /* atomic: see MAX_HELD_BYTES */
	pthread_mutex_t lock;
	struct list live; /* every call past RPC_REQUESTED */
	unsigned n_requested; /* calls asked of gRPC whose tag has not come back */
	bool stopping;        /* uk_grpc_server_stop waits on `idle` for both counts to reach 0 */
	pthread_cond_t idle;
	bool workers_exit; /* stopping, and every call is done */
	uint64_t armed; /* when the deadline timer fires; UINT64_MAX: disarmed */

	/* The door thread's; the fds are made before it starts and closed after it ends. */
	pthread_t door;
	bool door_started, door_exit, hang_up; /* set by stop, read by the door thread */
	bool closed; /* the door thread's: no longer accepting */
	int listen_fd, epoll_fd, backoff_fd, deadline_fd, stop_fd;
	int *conns; /* a dup of each live connection, watched for its end */
	unsigned n_conns;
	uint64_t backoff_ns, paused_at, accept_failures;
	uint64_t refused, refused_logged_at;
};

static __thread uint64_t tls_deadline = UINT64_MAX;
static __thread struct rpc *tls_rpc;
static __thread bool tls_may_wait = true;

uint64_t grpc_call_deadline_mono_ns(void)
{
	return tls_deadline;
}

grpc_byte_buffer *grpc_call_request_bytes(void)
{
	return tls_rpc ? tls_rpc->in : NULL;
}

void grpc_call_reply_raw(grpc_byte_buffer *bb, int code, const char *msg)
{
	struct rpc *r = tls_rpc;
	if (!r) {
		grpc_byte_buffer_destroy(bb);
		return;
	}
	grpc_byte_buffer_destroy(r->raw);
	r->raw = bb;
	r->raw_code = code;
	r->raw_msg = arena_strdup(r->a, msg ? msg : "");
}

void grpc_call_after_reply(void (*fn)(void *ud, const char *arg), void *ud, const char *arg)
{
	struct rpc *r = tls_rpc;
	if (!r)
		return;
	r->after_fn = fn;
	r->after_ud = ud;
	r->after_arg = arena_strdup(r->a, arg ? arg : "");
}

bool grpc_call_may_wait(void)
{
	return tls_may_wait;
}

int errno_to_grpc_status(int r)
{
	switch (-r) {
	case 0: return GRPC_STATUS_OK;
	case ENOENT: case ESRCH: return GRPC_STATUS_NOT_FOUND;
	case EINVAL: case E2BIG: case ERANGE: case ENAMETOOLONG: return GRPC_STATUS_INVALID_ARGUMENT;
	case EEXIST: case EADDRINUSE: return GRPC_STATUS_ALREADY_EXISTS;
	case EBUSY: case ENOTEMPTY: case EALREADY: return GRPC_STATUS_FAILED_PRECONDITION;
	case ENOSPC: case EDQUOT: case ENOMEM: case EMFILE: case ENFILE: case EADDRNOTAVAIL:
		return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case ENOSYS: case EOPNOTSUPP: return GRPC_STATUS_UNIMPLEMENTED;
	case ETIMEDOUT: return GRPC_STATUS_DEADLINE_EXCEEDED;
	case EPERM: case EACCES: return GRPC_STATUS_PERMISSION_DENIED;
	case EAGAIN: case ECONNREFUSED: return GRPC_STATUS_UNAVAILABLE;
	case ECANCELED: return GRPC_STATUS_CANCELLED;
	case EPROTO: return GRPC_STATUS_INTERNAL; /* a malformed answer from the delegate */
	default: return GRPC_STATUS_UNKNOWN;
	}
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t mul_sat(uint64_t a, uint64_t b)
{
	return b && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

/* ---- calls ---- */

static struct rpc *rpc_new(struct uk_grpc_server *s)
{
	struct rpc *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->srv = s;
	for (int i = 0; i < N_TAGS; i++)
		r->tags[i] = (struct tag){ r, (enum tag_kind)i };
	grpc_call_details_init(&r->details);
	grpc_metadata_array_init(&r->md);
	r->a = arena_new();
	r->refs = 1; /* TAG_NEW's */
	return r;
}

static void rpc_free(struct rpc *r)
{
	if (r->held)
		(void)__atomic_sub_fetch(&r->srv->held_bytes, r->held, __ATOMIC_RELAXED);
	if (r->call)
		grpc_call_unref(r->call);
	grpc_call_details_destroy(&r->details);
	grpc_metadata_array_destroy(&r->md);
	grpc_byte_buffer_destroy(r->in);
	grpc_byte_buffer_destroy(r->out);
	grpc_byte_buffer_destroy(r->raw);
	if (r->req)
		protobuf_c_message_free_unpacked(r->req, NULL);
	arena_free(r->a);
	free(r);
}

static struct link *link_of(const struct list *l, struct rpc *r)
{
	return (struct link *)((char *)r + l->off);
}

static void list_append(struct list *l, struct rpc *r)
{
	struct link *k = link_of(l, r);
	k->prev = l->tail;
	k->next = NULL;
	if (l->tail)
		link_of(l, l->tail)->next = r;
	else
		l->head = r;
	l->tail = r;
	l->n++;
}

static void list_remove(struct list *l, struct rpc *r)
{
	struct link *k = link_of(l, r);
	if (k->prev)
		link_of(l, k->prev)->next = k->next;
	else
		l->head = k->next;
	if (k->next)
		link_of(l, k->next)->prev = k->prev;
	else
		l->tail = k->prev;
	k->prev = k->next = NULL;
	l->n--;
}

/* Under the lock: wake a stop waiting for the last call. */
static void note_idle(struct uk_grpc_server *s)
{
	if (s->stopping && !s->live.n && !s->n_requested)
		pthread_cond_broadcast(&s->idle);
}

static void rpc_unref_n(struct rpc *r, unsigned n)
{
	struct uk_grpc_server *s = r->srv;
	pthread_mutex_lock(&s->lock);
	r->refs -= n;
	bool last = r->refs == 0;
	if (last && r->state != RPC_REQUESTED) { /* past RPC_REQUESTED: in srv->live */
		list_remove(&s->live, r);
		note_idle(s);
	}
	if (last && !s->live.n && s->armed != UINT64_MAX) {
		/* No call left to expire: an idle unikd wakes for nothing. */
		struct itimerspec off = { 0 };
		if (timerfd_settime(s->deadline_fd, TFD_TIMER_ABSTIME, &off, NULL) == 0)
			s->armed = UINT64_MAX;
	}
	pthread_mutex_unlock(&s->lock);
	if (last)
		rpc_free(r);
}

static void rpc_unref(struct rpc *r)
{
	rpc_unref_n(r, 1);
}

/* Under the lock: claim the call's one reply. A queued call leaves its queue, whose
 * reference the reply takes over; otherwise the reply takes a reference of its own. */
static bool take_answer(struct rpc *r)
{
	if (r->state == RPC_DONE)
		return false;
	if (r->state == RPC_QUEUED)
		list_remove(&r->pool->queue, r);
	else
		r->refs++;
	r->state = RPC_DONE;
	return true;
}

/* Send the reply claimed by take_answer: r->out (if any) with status code and a message
 * formatted here, since the arena may still be a running handler's. The reply's reference
 * may be the last: r is not touched once the batch is started. */
static void vsend_reply(struct rpc *r, int code, const char *fmt, va_list ap)
{
	char msg[UK_ERROR_MSG_MAX];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	double ms = (double)(uk_now_mono_ns() - r->t0) / 1e6;
	const char *ran = r->ran ? r->ran : "-";
	if (code == GRPC_STATUS_OK)
		log_debug("rpc=%s code=0 ms=%.3f ran=%s", r->path, ms, ran);
	else
		log_info("rpc=%s code=%d ms=%.3f ran=%s error=\"%s\"", r->path, code, ms, ran, msg);
	grpc_slice details = grpc_slice_from_copied_string(msg);
	grpc_op ops[3] = { { .op = GRPC_OP_SEND_INITIAL_METADATA } };
	size_t n = 1;
	if (r->out) {
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = r->out;
	}
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = (grpc_status_code)code;
	ops[n++].data.send_status_from_server.status_details = &details;
	if (grpc_call_start_batch(r->call, ops, n, &r->tags[TAG_SEND], NULL) != GRPC_CALL_OK)
		rpc_unref(r); /* no completion will come */
	grpc_slice_unref(details); /* the batch holds its own reference */
}

static void _printf_(3, 4) send_reply(struct rpc *r, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsend_reply(r, code, fmt, ap);
	va_end(ap);
}

/* Claim the reply and send an error, unless the call was answered already. */
static void _printf_(3, 4) answer(struct rpc *r, int code, const char *fmt, ...)
{
	pthread_mutex_lock(&r->srv->lock);
	bool mine = take_answer(r);
	pthread_mutex_unlock(&r->srv->lock);
	if (!mine)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsend_reply(r, code, fmt, ap);
	va_end(ap);
}

/* Under the lock: make the deadline timer fire by `at`. */
static void arm_deadline(struct uk_grpc_server *s, uint64_t at)
{
	if (at >= s->armed)
		return;
	struct itimerspec its = { .it_value = { .tv_sec = (time_t)(at / NS_PER_S), .tv_nsec = (long)(at % NS_PER_S) } };
	if (at == 0)
		its.it_value.tv_nsec = 1; /* 0 would disarm */
	if (timerfd_settime(s->deadline_fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
		s->armed = at;
}

static int start_batch(struct rpc *r, grpc_op *op, enum tag_kind kind)
{
	if (grpc_call_start_batch(r->call, op, 1, &r->tags[kind], NULL) == GRPC_CALL_OK)
		return 0;
	rpc_unref(r);
	return -EIO;
}

static void request_call(struct uk_grpc_server *s)
{
	struct rpc *r = rpc_new(s);
	if (!r)
		return; /* the next arrival asks again */
	pthread_mutex_lock(&s->lock);
	s->n_requested++;
	pthread_mutex_unlock(&s->lock);
	if (grpc_server_request_call(s->server, &r->call, &r->details, &r->md, s->cq, s->cq, &r->tags[TAG_NEW]) ==
	    GRPC_CALL_OK)
		return;
	rpc_free(r);
	pthread_mutex_lock(&s->lock);
	s->n_requested--;
	note_idle(s);
	pthread_mutex_unlock(&s->lock);
}

static const struct grpc_method *find_method(struct uk_grpc_server *s, grpc_slice method)
{
	size_t len = GRPC_SLICE_LENGTH(method);
	const char *p = (const char *)GRPC_SLICE_START_PTR(method);
	for (size_t i = 0; i < s->cfg.n_methods; i++)
		if (strlen(s->cfg.methods[i].path) == len && memcmp(s->cfg.methods[i].path, p, len) == 0)
			return &s->cfg.methods[i];
	return NULL;
}

/* The deadline: the client's, or the class's cap (plus extra_s) from the call's arrival
 * if that is earlier. A client's deadline is met a moment early (a tenth of the time it
 * gave, at most CLIENT_MARGIN_NS), so that the reply saying why reaches it before its own
 * timer, and gRPC's, cut the call short without a word. */
static uint64_t deadline_of(const struct rpc *r, uint64_t extra_s, bool *client_deadline)
{
	uint64_t cap = add_sat(r->t0, mul_sat(add_sat(r->pool->spec->cap_s, extra_s), NS_PER_S));
	uint64_t client = UINT64_MAX;
	gpr_timespec dl = gpr_convert_clock_type(r->details.deadline, GPR_CLOCK_MONOTONIC);
	if (gpr_time_cmp(dl, gpr_inf_future(GPR_CLOCK_MONOTONIC)) != 0) {
		gpr_timespec left = gpr_time_sub(dl, gpr_now(GPR_CLOCK_MONOTONIC));
		uint64_t ns = left.tv_sec < 0 ? 0 : (uint64_t)left.tv_sec * NS_PER_S + (uint64_t)left.tv_nsec;
		uint64_t margin = ns / 10 < CLIENT_MARGIN_NS ? ns / 10 : CLIENT_MARGIN_NS;
		client = add_sat(uk_now_mono_ns(), ns - margin);
	}
	*client_deadline = client < cap;
	return *client_deadline ? client : cap;
}

/* A call came: refuse it at once, or start reading its request. */
static void on_new(struct rpc *r, bool ok)
{
	struct uk_grpc_server *s = r->srv;
	if (!ok) {
		/* The server is shutting down. */
		pthread_mutex_lock(&s->lock);
		s->n_requested--;
		note_idle(s);
		pthread_mutex_unlock(&s->lock);
		rpc_unref(r);
		return;
	}
	request_call(s);
	r->t0 = uk_now_mono_ns();
	size_t plen = GRPC_SLICE_LENGTH(r->details.method);
	snprintf(r->path, sizeof(r->path), "%.*s", (int)(plen < sizeof(r->path) ? plen : sizeof(r->path) - 1),
		 (const char *)GRPC_SLICE_START_PTR(r->details.method));
	r->m = find_method(s, r->details.method);
	bool served = r->m && (r->m->fn || (s->cfg.router && r->m->routable));
	if (served) {
		r->pool = &s->pools[r->m->cls];
		r->deadline = deadline_of(r, 0, &r->client_deadline);
	}
	int code = GRPC_STATUS_OK;
	pthread_mutex_lock(&s->lock);
	s->n_requested--;
	list_append(&s->live, r);
	r->state = RPC_RECEIVING;
	if (!served)
		code = GRPC_STATUS_UNIMPLEMENTED;
	else if (s->live.n > MAX_CALLS)
		code = GRPC_STATUS_RESOURCE_EXHAUSTED;
	if (code != GRPC_STATUS_OK) {
		take_answer(r);
	} else {
		r->refs += 2; /* TAG_CLOSE, TAG_RECV */
		arm_deadline(s, r->deadline);
	}
	pthread_mutex_unlock(&s->lock);

	if (code == GRPC_STATUS_UNIMPLEMENTED && !r->m)
		send_reply(r, code, "unknown method %s", r->path);
	else if (code == GRPC_STATUS_UNIMPLEMENTED)
		send_reply(r, code, "%s: %s", r->path, r->m->unimplemented_msg ? r->m->unimplemented_msg : "not implemented");
	else if (code == GRPC_STATUS_RESOURCE_EXHAUSTED)
		send_reply(r, code, "too many calls in flight (at most %d)", MAX_CALLS);
	if (code == GRPC_STATUS_OK) {
		grpc_op closing = { .op = GRPC_OP_RECV_CLOSE_ON_SERVER };
		closing.data.recv_close_on_server.cancelled = &r->cancelled;
		grpc_op recv = { .op = GRPC_OP_RECV_MESSAGE };
		recv.data.recv_message.recv_message = &r->in;
		(void)start_batch(r, &closing, TAG_CLOSE); /* a failure drops its reference */
		if (start_batch(r, &recv, TAG_RECV) < 0)
			answer(r, GRPC_STATUS_INTERNAL, "cannot read the request");
	}
	rpc_unref(r); /* TAG_NEW's */
}

/* The request's bytes: checked for NUL bytes in strings, then unpacked into r->req. */
static int unpack_request(struct rpc *r, uk_error *err)
{
	grpc_byte_buffer_reader rd;
	if (!r->in)
		return uk_err(err, EINVAL, "request message missing");
	if (!grpc_byte_buffer_reader_init(&rd, r->in))
		return uk_err(err, EIO, "cannot read the request");
	size_t held = 2 * grpc_byte_buffer_length(r->in);
	r->held = held;
	if (__atomic_add_fetch(&r->srv->held_bytes, held, __ATOMIC_RELAXED) > MAX_HELD_BYTES &&
	    held > 2 * SMALL_REQUEST_BYTES) {
		grpc_byte_buffer_reader_destroy(&rd);
		return uk_err(err, ENOMEM, "the requests in flight hold more than %llu MiB; retry",
			      (unsigned long long)(MAX_HELD_BYTES >> 20));
	}
	grpc_slice sl = grpc_byte_buffer_reader_readall(&rd);
	grpc_byte_buffer_reader_destroy(&rd);
	const uint8_t *p = GRPC_SLICE_START_PTR(sl);
	size_t n = GRPC_SLICE_LENGTH(sl);
	int rc = wire_check_strings(r->m->input, p, n, err);
	if (rc == 0 && !(r->req = protobuf_c_message_unpack(r->m->input, NULL, n, p)))
		rc = uk_err(err, EINVAL, "malformed request message");
	grpc_slice_unref(sl);
	return rc;
}

static int call_handler(struct rpc *r, bool may_wait, ProtobufCMessage **resp, uk_error *err);
static void finish_call(struct rpc *r, int rc, ProtobufCMessage *resp, const uk_error *err);

/* A quick method's call runs here, on the poller, when its router (if any) and its handler
 * need not wait: that saves one of its two thread wake-ups, waking a pool thread
 * (docs/architecture.md, "Quick calls"). True: answered (or being answered). */
static bool run_inline(struct rpc *r)
{
	struct uk_grpc_server *s = r->srv;
	if (!r->m->quick)
		return false;
	pthread_mutex_lock(&s->lock);
	bool mine = r->state == RPC_RECEIVING;
	if (mine) {
		r->state = RPC_RUNNING;
		r->ran = "poller";
	}
	pthread_mutex_unlock(&s->lock);
	if (!mine)
		return false; /* answered meanwhile: on_recv lets it go */
	ProtobufCMessage *resp = NULL;
	uk_error err = { 0 };
	int rc = call_handler(r, false, &resp, &err);
	if (rc == GRPC_QUEUE_CALL) {
		/* Nothing was done: back to where it was, and on to its pool. */
		pthread_mutex_lock(&s->lock);
		/* A cancel seen meanwhile drops it, as it would have dropped it waiting here. */
		if (r->state == RPC_RUNNING) {
			r->state = r->cancel_seen ? RPC_DONE : RPC_RECEIVING;
			r->ran = "pool-from-poller";
		}
		pthread_mutex_unlock(&s->lock);
		return false;
	}
	finish_call(r, rc, resp, &err);
	rpc_unref(r); /* TAG_RECV's */
	return true;
}

/* The request came: refuse it, run it here (run_inline), or queue it on its pool. */
static void on_recv(struct rpc *r, bool ok)
{
	struct uk_grpc_server *s = r->srv;
	uk_error err = { 0 };
	if (!ok) {
		/* The call is gone (cancelled, connection closed): nothing to answer. */
		pthread_mutex_lock(&s->lock);
		if (r->state == RPC_RECEIVING)
			r->state = RPC_DONE;
		pthread_mutex_unlock(&s->lock);
		rpc_unref(r);
		return;
	}
	int rc = unpack_request(r, &err);
	if (rc < 0) {
		answer(r, errno_to_grpc_status(rc), "%s", err.msg);
		rpc_unref(r);
		return;
	}
	if (run_inline(r))
		return;
	struct pool *p = r->pool;
	bool full, queued = false, client = false;
	uint64_t deadline = r->m->extra_s ? deadline_of(r, r->m->extra_s(r->req), &client) : 0;
	pthread_mutex_lock(&s->lock);
	if (deadline) {
		/* Later than the first one: the timer may fire early, and looks again. */
		r->deadline = deadline;
		r->client_deadline = client;
	}
	if (r->state == RPC_RECEIVING && p->queue.n < p->spec->queue_max) {
		list_append(&p->queue, r); /* TAG_RECV's reference is the queue's now */
		r->state = RPC_QUEUED;
		queued = true;
		pthread_cond_signal(&p->cond);
	} else {
		full = r->state == RPC_RECEIVING;
	}
	pthread_mutex_unlock(&s->lock);
	if (queued)
		return;
	if (full)
		answer(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "the %s pool's queue is full (%u calls waiting)", p->spec->name,
		       p->spec->queue_max);
	rpc_unref(r);
}

/* The call ended for gRPC; cancelled by the client, a call not yet running is dropped. */
static void on_close(struct rpc *r)
{
	struct uk_grpc_server *s = r->srv;
	unsigned drop = 1;
	bool dropped = false;
	pthread_mutex_lock(&s->lock);
	if (r->cancelled && r->state == RPC_RUNNING)
		r->cancel_seen = true; /* a quick call a poller tries now: see run_inline */
	if (r->cancelled && (r->state == RPC_RECEIVING || r->state == RPC_QUEUED)) {
		if (r->state == RPC_QUEUED) {
			list_remove(&r->pool->queue, r);
			drop++; /* the queue's reference */
		}
		r->state = RPC_DONE;
		dropped = true;
	}
	pthread_mutex_unlock(&s->lock);
	if (dropped)
		log_debug("rpc=%s msg=\"cancelled by the client before it ran\"", r->path);
	rpc_unref_n(r, drop);
}

static void *poller_main(void *arg)
{
	struct uk_grpc_server *s = arg;
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		struct tag *t = ev.tag;
		switch (t->kind) {
		case TAG_NEW: on_new(t->r, ev.success); break;
		case TAG_RECV: on_recv(t->r, ev.success); break;
		case TAG_CLOSE: on_close(t->r); break;
		default: rpc_unref(t->r); break; /* TAG_SEND */
		}
	}
	return NULL;
}

/* ---- pools ---- */

/* Run the router and the handler, on a pool thread or (a quick method) on a poller. */
static int call_handler(struct rpc *r, bool may_wait, ProtobufCMessage **resp, uk_error *err)
{
	struct uk_grpc_server *s = r->srv;
	tls_deadline = r->deadline;
	tls_rpc = r;
	tls_may_wait = may_wait;
	int rc = s->cfg.router ? s->cfg.router(s->cfg.userdata, r->m, r->a, r->req, resp, err) : GRPC_ROUTE_LOCAL;
	if (rc == GRPC_ROUTE_LOCAL && r->m->fn)
		rc = r->m->fn(s->cfg.userdata, r->a, r->req, resp, err);
	else if (rc == GRPC_ROUTE_LOCAL)
		rc = uk_err(err, ENOSYS, "%s: %s", r->path,
			    r->m->unimplemented_msg ? r->m->unimplemented_msg : "not implemented");
	tls_may_wait = true;
	tls_rpc = NULL;
	tls_deadline = UINT64_MAX;
	return rc;
}

/* Reply with the handler's result unless the call was answered meanwhile; then run what
 * the handler left for after its answer. */
static void finish_call(struct rpc *r, int rc, ProtobufCMessage *resp, const uk_error *err)
{
	struct uk_grpc_server *s = r->srv;
	pthread_mutex_lock(&s->lock);
	bool mine = take_answer(r);
	pthread_mutex_unlock(&s->lock);
	if (!mine) {
		log_info("rpc=%s ms=%.3f msg=\"finished after the call was answered; result dropped\" result=%d", r->path,
			 (double)(uk_now_mono_ns() - r->t0) / 1e6, rc);
	} else if (rc < 0) {
		send_reply(r, errno_to_grpc_status(rc), "%s", err->msg[0] ? err->msg : strerror(-rc));
	} else if (rc == GRPC_REPLY_RAW) {
		r->out = TAKE_PTR(r->raw);
		send_reply(r, r->raw_code, "%s", r->raw_msg ? r->raw_msg : "");
	} else if (rc != 0 || !resp) {
		send_reply(r, GRPC_STATUS_INTERNAL, "handler returned no response (%d)", rc);
	} else {
		size_t n = protobuf_c_message_get_packed_size(resp);
		uint8_t *buf = arena_alloc(r->a, n);
		protobuf_c_message_pack(resp, buf);
		grpc_slice sl = grpc_slice_from_copied_buffer((const char *)buf, n);
		r->out = grpc_raw_byte_buffer_create(&sl, 1);
		grpc_slice_unref(sl);
		send_reply(r, GRPC_STATUS_OK, "%s", "");
	}
	if (r->after_fn)
		r->after_fn(r->after_ud, r->after_arg);
}

/* A pool thread runs a queued call. */
static void run_call(struct rpc *r)
{
	ProtobufCMessage *resp = NULL;
	uk_error err = { 0 };
	int rc = call_handler(r, true, &resp, &err);
	finish_call(r, rc, resp, &err);
	rpc_unref(r); /* the worker's: the queue's reference it took over */
}

static void *worker_main(void *arg)
{
	struct pool *p = arg;
	struct uk_grpc_server *s = p->srv;
	for (;;) {
		pthread_mutex_lock(&s->lock);
		while (!p->queue.head && !s->workers_exit)
			pthread_cond_wait(&p->cond, &s->lock);
		struct rpc *r = p->queue.head;
		if (r) {
			list_remove(&p->queue, r);
			r->state = RPC_RUNNING;
			if (!r->ran)
				r->ran = "pool";
		}
		pthread_mutex_unlock(&s->lock);
		if (!r)
			break; /* stopped: every call is done */
		run_call(r);
	}
	return NULL;
}

/* ---- the door thread: deadlines ---- */

/* Answer every call past its deadline; arm the timer for the next one. */
static void expire_calls(struct uk_grpc_server *s)
{
	uint64_t now = uk_now_mono_ns(), next = UINT64_MAX;
	struct rpc *expired = NULL;
	pthread_mutex_lock(&s->lock);
	for (struct rpc *r = s->live.head; r; r = r->live.next) {
		if (r->state != RPC_RECEIVING && r->state != RPC_QUEUED && r->state != RPC_RUNNING)
			continue;
		if (r->deadline > now) {
			next = r->deadline < next ? r->deadline : next;
			continue;
		}
		r->expired_from = r->state;
		take_answer(r);
		r->expired = expired;
		expired = r;
	}
	s->armed = UINT64_MAX;
	if (next != UINT64_MAX)
		arm_deadline(s, next);
	pthread_mutex_unlock(&s->lock);
	while (expired) {
		struct rpc *r = expired;
		expired = r->expired;
		const char *where = r->expired_from == RPC_RUNNING ? "still running"
				    : r->expired_from == RPC_QUEUED ? "still queued"
								    : "still waiting for its request";
		char cap[96];
		snprintf(cap, sizeof(cap), "the server's cap for %s calls", r->pool->spec->name);
		send_reply(r, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded: %s in the %s pool after %.1f s (%s)",
			   where, r->pool->spec->name, (double)(now - r->t0) / 1e9,
			   r->client_deadline ? "the client's deadline" : cap);
	}
}

/* ---- the door thread: connections ---- */

static int epoll_set(int ep, int op, int fd, uint32_t events, enum door_key key, uint32_t slot)
{
	struct epoll_event ev = { .events = events, .data.u64 = (uint64_t)key << 32 | slot };
	return epoll_ctl(ep, op, fd, &ev);
}

/* Stop accepting until the backoff timer fires: EMFILE and the like pass with time, and
 * a listener left readable would spin. */
static void pause_accepting(struct uk_grpc_server *s, int error)
{
	uint64_t now = uk_now_mono_ns();
	if (!s->accept_failures++) {
		s->paused_at = now;
		log_warn("msg=\"cannot accept connections; retrying\" error=\"%s\" retry_ms=%llu", strerror(error),
			 (unsigned long long)(s->backoff_ns / NS_PER_MS));
	}
	struct itimerspec its = { .it_value = { .tv_sec = (time_t)(s->backoff_ns / NS_PER_S),
						.tv_nsec = (long)(s->backoff_ns % NS_PER_S) } };
	if (epoll_set(s->epoll_fd, EPOLL_CTL_MOD, s->listen_fd, 0, KEY_LISTEN, 0) < 0 ||
	    timerfd_settime(s->backoff_fd, 0, &its, NULL) < 0)
		log_error("msg=\"cannot pause accepting\" error=\"%s\"", strerror(errno));
	s->backoff_ns = s->backoff_ns * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : s->backoff_ns * 2;
}

static void resume_accepting(struct uk_grpc_server *s)
{
	uint64_t expirations;
	(void)!read(s->backoff_fd, &expirations, sizeof(expirations)); /* nonblocking; only clears it */
	if (!s->closed && epoll_set(s->epoll_fd, EPOLL_CTL_MOD, s->listen_fd, EPOLLIN, KEY_LISTEN, 0) < 0)
		log_error("msg=\"cannot resume accepting\" error=\"%s\"", strerror(errno));
}

static void refuse(struct uk_grpc_server *s, int fd)
{
	uint64_t now = uk_now_mono_ns();
	close(fd);
	s->refused++;
	if (now - s->refused_logged_at >= REFUSED_LOG_NS || !s->refused_logged_at) {
		log_warn("msg=\"connections refused: too many open\" max_connections=%u refused=%llu",
			 s->cfg.max_connections, (unsigned long long)s->refused);
		s->refused = 0;
		s->refused_logged_at = now;
	}
}

/* Hand a connection to gRPC, keeping a dup of it: gRPC shuts a connection down before
 * it closes it, and the dup then reports EPOLLHUP (EPOLLRDHUP when the client closes). */
static int add_connection(struct uk_grpc_server *s, int fd)
{
	int watch = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (watch < 0)
		return -errno;
	if (epoll_set(s->epoll_fd, EPOLL_CTL_ADD, watch, EPOLLRDHUP, KEY_CONN, s->n_conns) < 0) {
		int r = -errno;
		close(watch);
		return r;
	}
	s->conns[s->n_conns++] = watch;
	grpc_server_add_channel_from_fd(s->server, fd, s->creds);
	log_debug("msg=\"connection accepted\" connections=%u", s->n_conns);
	return 0;
}

static void drop_connection(struct uk_grpc_server *s, uint32_t slot)
{
	if (slot >= s->n_conns)
		return;
	(void)epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, s->conns[slot], NULL); /* before close: gRPC's fd shares the file */
	close(s->conns[slot]);
	s->conns[slot] = s->conns[--s->n_conns];
	log_debug("msg=\"connection closed\" connections=%u", s->n_conns);
	if (slot < s->n_conns &&
	    epoll_set(s->epoll_fd, EPOLL_CTL_MOD, s->conns[slot], EPOLLRDHUP, KEY_CONN, slot) < 0)
		log_error("msg=\"cannot watch a connection\" error=\"%s\"", strerror(errno));
}

static void accept_connections(struct uk_grpc_server *s)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (fd < 0 && (errno == ECONNABORTED || errno == EPROTO || errno == EPERM))
			continue; /* that connection's trouble, not the listener's */
		if (fd < 0) {
			pause_accepting(s, errno); /* EMFILE, ENFILE, ENOBUFS, ENOMEM, or worse: retried */
			return;
		}
		if (s->n_conns >= s->cfg.max_connections) {
			refuse(s, fd);
			continue;
		}
		int r = add_connection(s, fd);
		if (r < 0) {
			close(fd);
			pause_accepting(s, -r);
			return;
		}
		if (s->accept_failures) {
			log_info("msg=\"accepting connections again\" after_ms=%llu failures=%llu",
				 (unsigned long long)((uk_now_mono_ns() - s->paused_at) / NS_PER_MS),
				 (unsigned long long)s->accept_failures);
			s->accept_failures = 0;
		}
		s->backoff_ns = BACKOFF_MIN_NS;
	}
}

/* Stopping: no more connections, first; once every call is done, the connections left are
 * shut down, so gRPC closes them now rather than after its 20 s GOAWAY grace for clients
 * that never answer its ping. Deadlines and connection ends still count meanwhile. */
static void door_stopping(struct uk_grpc_server *s)
{
	if (!s->closed) {
		(void)epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, s->listen_fd, NULL); /* closed at the end anyway */
		s->closed = true;
	}
	if (__atomic_load_n(&s->hang_up, __ATOMIC_ACQUIRE))
		for (unsigned i = 0; i < s->n_conns; i++)
			(void)shutdown(s->conns[i], SHUT_RDWR); /* a connection already gone: nothing to do */
}

static void *door_main(void *arg)
{
	struct uk_grpc_server *s = arg;
	struct epoll_event evs[64];
	for (;;) {
		int n = epoll_wait(s->epoll_fd, evs, ARRAY_SIZE(evs), -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_error("msg=\"the CRI server's door failed\" error=\"%s\"", strerror(errno));
			return NULL;
		}
		/* Accepting last: a new connection may take a slot an event of this batch names. */
		bool incoming = false;
		for (int i = 0; i < n; i++) {
			uint64_t expirations;
			switch ((enum door_key)(evs[i].data.u64 >> 32)) {
			case KEY_LISTEN: incoming = !s->closed; break;
			case KEY_BACKOFF: resume_accepting(s); break;
			case KEY_DEADLINE:
				(void)!read(s->deadline_fd, &expirations, sizeof(expirations)); /* only clears it */
				expire_calls(s);
				break;
			case KEY_STOP:
				(void)!read(s->stop_fd, &expirations, sizeof(expirations)); /* only clears it */
				if (__atomic_load_n(&s->door_exit, __ATOMIC_ACQUIRE))
					return NULL;
				door_stopping(s);
				incoming = false;
				break;
			case KEY_CONN: drop_connection(s, (uint32_t)evs[i].data.u64); break;
			}
		}
		if (incoming)
			accept_connections(s);
	}
}

/* ---- start and stop ---- */

static int listen_on(const char *path, unsigned mode, uk_error *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return uk_err(err, ENAMETOOLONG, "the socket path %s is longer than %zu bytes", path,
			      sizeof(sa.sun_path) - 1);
	strcpy(sa.sun_path, path);
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return uk_err_errno(err, errno, "cannot make a socket");
	/* The caller holds the single-instance lock: a socket left here is stale. */
	if (unlink(path) < 0 && errno != ENOENT)
		return uk_err_errno(err, errno, "cannot remove the old socket %s", path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return uk_err_errno(err, errno, "cannot bind %s", path);
	/* Before listen(): until then nobody can connect, whatever the umask gave. */
	int r = 0;
	if (chmod(path, mode) < 0)
		r = uk_err_errno(err, errno, "cannot set the mode of %s to %04o", path, mode);
	else if (listen(fd, SOMAXCONN) < 0)
		r = uk_err_errno(err, errno, "cannot listen on %s", path);
	if (r < 0) {
		(void)unlink(path); /* ours, half made; the error says why */
		return r;
	}
	return TAKE_FD(fd);
}

/* The door's fds: listener, epoll, timers, stop event. */
static int open_door(struct uk_grpc_server *s, uk_error *err)
{
	int r;
	if ((r = listen_on(s->cfg.socket_path, s->cfg.socket_mode, err)) < 0)
		return r;
	s->listen_fd = r;
	s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	s->backoff_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	s->deadline_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->conns = calloc(s->cfg.max_connections, sizeof(*s->conns));
	if (s->epoll_fd < 0 || s->backoff_fd < 0 || s->deadline_fd < 0 || s->stop_fd < 0)
		return uk_err_errno(err, errno, "cannot make the server's event fds");
	if (!s->conns)
		return uk_err(err, ENOMEM, "out of memory");
	if (epoll_set(s->epoll_fd, EPOLL_CTL_ADD, s->listen_fd, EPOLLIN, KEY_LISTEN, 0) < 0 ||
	    epoll_set(s->epoll_fd, EPOLL_CTL_ADD, s->backoff_fd, EPOLLIN, KEY_BACKOFF, 0) < 0 ||
	    epoll_set(s->epoll_fd, EPOLL_CTL_ADD, s->deadline_fd, EPOLLIN, KEY_DEADLINE, 0) < 0 ||
	    epoll_set(s->epoll_fd, EPOLL_CTL_ADD, s->stop_fd, EPOLLIN, KEY_STOP, 0) < 0)
		return uk_err_errno(err, errno, "cannot watch the server's fds");
	return 0;
}

static int start_grpc(struct uk_grpc_server *s, uk_error *err)
{
	grpc_arg args[] = {
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, .value.integer = s->cfg.max_message_bytes },
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, .value.integer = s->cfg.max_message_bytes },
		/* Also closes a connection on which no call ever comes (checked for from_fd). */
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_CONNECTION_IDLE_MS,
		  .value.integer = (int)(s->cfg.idle_timeout_s * 1000) },
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_CONCURRENT_STREAMS, .value.integer = MAX_STREAMS },
	};
	grpc_channel_args chargs = { .num_args = ARRAY_SIZE(args), .args = args };
	s->server = grpc_server_create(&chargs, NULL);
	s->cq = grpc_completion_queue_create_for_next(NULL);
	s->shutdown_cq = grpc_completion_queue_create_for_pluck(NULL);
	s->creds = grpc_insecure_server_credentials_create();
	if (!s->server || !s->cq || !s->shutdown_cq || !s->creds)
		return uk_err(err, ENOMEM, "cannot create the gRPC server");
	grpc_server_register_completion_queue(s->server, s->cq, NULL);
	grpc_server_register_completion_queue(s->server, s->shutdown_cq, NULL);
	grpc_server_start(s->server);
	s->grpc_started = true;
	for (int i = 0; i < PENDING_REQUESTS; i++)
		request_call(s);
	return 0;
}

static int start_threads(struct uk_grpc_server *s, uk_error *err)
{
	for (; s->pollers_started < POLLERS; s->pollers_started++)
		if (pthread_create(&s->pollers[s->pollers_started], NULL, poller_main, s) != 0)
			return uk_err(err, EAGAIN, "cannot start the server's threads");
	for (int c = 0; c < GRPC_N_CLASSES; c++) {
		struct pool *p = &s->pools[c];
		for (; p->started < p->n_threads; p->started++)
			if (pthread_create(&p->threads[p->started], NULL, worker_main, p) != 0)
				return uk_err(err, EAGAIN, "cannot start the %s pool's threads", p->spec->name);
	}
	if (pthread_create(&s->door, NULL, door_main, s) != 0)
		return uk_err(err, EAGAIN, "cannot start the server's door thread");
	s->door_started = true;
	return 0;
}

int uk_grpc_server_start(const struct grpc_server_config *cfg, uk_grpc_server **ret, uk_error *err)
{
	for (int c = 0; c < GRPC_N_CLASSES; c++)
		if (cfg->threads[c] < 1 || cfg->threads[c] > GRPC_MAX_THREADS)
			return uk_err(err, EINVAL, "the %s pool's threads must be within 1..%d", pool_specs[c].name,
				      GRPC_MAX_THREADS);
	if (cfg->max_connections < 1 || cfg->idle_timeout_s < 1 || cfg->idle_timeout_s > INT32_MAX / 1000)
		return uk_err(err, EINVAL, "max_connections and the idle timeout must be positive");
	struct uk_grpc_server *s = calloc(1, sizeof(*s));
	if (!s)
		return uk_err(err, ENOMEM, "out of memory");
	s->cfg = *cfg;
	s->listen_fd = s->epoll_fd = s->backoff_fd = s->deadline_fd = s->stop_fd = -1;
	s->armed = UINT64_MAX;
	s->backoff_ns = BACKOFF_MIN_NS;
	s->live.off = offsetof(struct rpc, live);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->idle, NULL);
	for (int c = 0; c < GRPC_N_CLASSES; c++) {
		s->pools[c] = (struct pool){ .srv = s, .spec = &pool_specs[c], .n_threads = cfg->threads[c],
					     .queue.off = offsetof(struct rpc, queue) };
		pthread_cond_init(&s->pools[c].cond, NULL);
	}
	grpc_init();
	int r;
	if ((r = open_door(s, err)) < 0 || (r = start_grpc(s, err)) < 0 || (r = start_threads(s, err)) < 0) {
		uk_grpc_server_stop(s);
		return r;
	}
	*ret = s;
	return 0;
}

static void door_signal(struct uk_grpc_server *s)
{
	uint64_t one = 1;
	if (write(s->stop_fd, &one, sizeof(one)) != sizeof(one))
		log_error("msg=\"cannot signal the server's door thread\" error=\"%s\"", strerror(errno));
}

void uk_grpc_server_stop(uk_grpc_server *s)
{
	if (!s)
		return;
	/* No new connections or calls; the calls in flight finish, each by its deadline. */
	if (s->door_started)
		door_signal(s);
	int tag;
	if (s->grpc_started) {
		pthread_mutex_lock(&s->lock);
		s->stopping = true;
		pthread_mutex_unlock(&s->lock);
		grpc_server_shutdown_and_notify(s->server, s->shutdown_cq, &tag);
		pthread_mutex_lock(&s->lock);
		while (s->pollers_started && (s->live.n || s->n_requested))
			pthread_cond_wait(&s->idle, &s->lock);
		pthread_mutex_unlock(&s->lock);
		if (s->door_started) {
			__atomic_store_n(&s->hang_up, true, __ATOMIC_RELEASE);
			door_signal(s);
		}
		grpc_completion_queue_pluck(s->shutdown_cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	}
	pthread_mutex_lock(&s->lock);
	s->workers_exit = true;
	for (int c = 0; c < GRPC_N_CLASSES; c++)
		pthread_cond_broadcast(&s->pools[c].cond);
	pthread_mutex_unlock(&s->lock);
	for (int c = 0; c < GRPC_N_CLASSES; c++)
		for (unsigned i = 0; i < s->pools[c].started; i++)
			pthread_join(s->pools[c].threads[i], NULL);
	if (s->door_started) {
		__atomic_store_n(&s->door_exit, true, __ATOMIC_RELEASE);
		door_signal(s);
		pthread_join(s->door, NULL);
	}
	if (s->cq)
		grpc_completion_queue_shutdown(s->cq);
	for (unsigned i = 0; i < s->pollers_started; i++)
		pthread_join(s->pollers[i], NULL);
	if (s->server)
		grpc_server_destroy(s->server);
	if (s->cq)
		grpc_completion_queue_destroy(s->cq);
	if (s->shutdown_cq) {
		grpc_completion_queue_shutdown(s->shutdown_cq);
		grpc_completion_queue_destroy(s->shutdown_cq);
	}
	if (s->creds)
		grpc_server_credentials_release(s->creds);
	for (unsigned i = 0; i < s->n_conns; i++)
		close(s->conns[i]);
	free(s->conns);
	if (s->listen_fd >= 0)
		unlink(s->cfg.socket_path);
	safe_close(s->listen_fd);
	safe_close(s->epoll_fd);
	safe_close(s->backoff_fd);
	safe_close(s->deadline_fd);
	safe_close(s->stop_fd);
	for (int c = 0; c < GRPC_N_CLASSES; c++)
		pthread_cond_destroy(&s->pools[c].cond);
	pthread_cond_destroy(&s->idle);
	pthread_mutex_destroy(&s->lock);
	free(s);
	grpc_shutdown();
}
