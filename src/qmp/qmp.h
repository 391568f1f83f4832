/* A non-blocking QMP client on json-c, for use inside an event loop.
 *
 * The caller polls qmp_fd() for qmp_poll_events() and calls qmp_process() when the fd
 * is ready. Commands carry numeric ids; replies are matched against a table of pending
 * requests and delivered to their callbacks. Commands sent before the capabilities
 * negotiation has finished are queued and go out once it has. */
#ifndef UK_QMP_H
#define UK_QMP_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "../common/error.h"

/* Largest single message we accept from the peer; more is a protocol error. */
#define QMP_MAX_MESSAGE (1024 * 1024)
/* Requests that may be outstanding at once. */
#define QMP_MAX_PENDING 256
/* fds (qmp_send_fd) waiting to go out at once. */
#define QMP_MAX_FDS 16

typedef struct qmp qmp;

enum qmp_state {
	QMP_STATE_GREETING,    /* waiting for the {"QMP": …} greeting */
	QMP_STATE_NEGOTIATING, /* qmp_capabilities sent, reply not yet seen */
	QMP_STATE_READY,       /* commands flow */
	QMP_STATE_CLOSED,      /* EOF or protocol error; every pending request has failed */
};

/* The outcome of one command. On success, err is NULL and ret is the "return" member
 * (borrowed: take a reference to keep it). On an error reply, err->klass and err->desc
 * come from the reply. When the connection ends first, klass is "Disconnected". */
struct qmp_error {
	const char *klass;
	const char *desc;
};
typedef void (*qmp_reply_fn)(qmp *q, json_object *ret, const struct qmp_error *err, void *userdata);

/* An async event: name such as "SHUTDOWN", data may be NULL, timestamp in microseconds
 * since the epoch (0 if absent). When the connection ends, the handler is called once
 * with event == NULL. */
typedef void (*qmp_event_fn)(qmp *q, const char *event, json_object *data, uint64_t timestamp_us,
			     void *userdata);

/* Wrap a connected stream socket; the fd is taken over (closed by qmp_free, even on error). */
int qmp_new(int fd, qmp **ret);
/* Connect to a unix socket path (blocking connect, then non-blocking use). */
int qmp_connect_unix(const char *path, qmp **ret, uk_error *err);
/* Frees and closes; pending callbacks are called with a "Disconnected" error. NULL is fine. */
void qmp_free(qmp *q);
static inline void qmp_freep(qmp **q)
{
	qmp_free(*q);
}
#define _cleanup_qmp_ __attribute__((cleanup(qmp_freep)))

int qmp_fd(const qmp *q);
/* POLLIN, plus POLLOUT while output is queued. */
short qmp_poll_events(const qmp *q);
enum qmp_state qmp_get_state(const qmp *q);
void qmp_set_event_handler(qmp *q, qmp_event_fn fn, void *userdata);
/* Called once when the negotiation completes (state becomes READY). */
void qmp_set_ready_handler(qmp *q, void (*fn)(qmp *q, void *userdata), void *userdata);

/* Read and write what the socket allows without blocking, dispatching every complete
 * message. Returns 0 while the connection is usable, -errno once it has ended
 * (-ECONNRESET on EOF, -EPROTO on a malformed or oversized message). */
int qmp_process(qmp *q);

/* Queue a command. args may be NULL; its reference is taken over in all cases.
 * Returns the numeric id (>= 0) or -errno (-ENOTCONN when closed, -EBUSY past QMP_MAX_PENDING). */
int64_t qmp_send(qmp *q, const char *command, json_object *args, qmp_reply_fn fn, void *userdata);
/* As qmp_send, with fd passed as SCM_RIGHTS on the send that carries the command's first
 * byte (for "getfd", "add-fd"), never with another command's bytes. The caller keeps fd:
 * the engine sends its own O_CLOEXEC copy and closes that once it has gone out (or when the
 * command is dropped, the connection ends or the object is freed). -EBADF for fd < 0,
 * -EBUSY past QMP_MAX_FDS fds waiting to go out, else as qmp_send. */
int64_t qmp_send_fd(qmp *q, const char *command, json_object *args, int fd, qmp_reply_fn fn, void *userdata);

/* The QEMU version from the greeting; -ENODATA before it has arrived. */
int qmp_version(const qmp *q, int *major, int *minor, int *micro);

/* Blocking helpers for simple callers: they run qmp_process() under poll() until done or
 * timeout_ms passes (-ETIMEDOUT). Events that arrive meanwhile go to the event handler. */
int qmp_wait_ready(qmp *q, int timeout_ms, uk_error *err);
/* On success *ret (if non-NULL) gets a new reference to the "return" member. An error
 * reply returns -EREMOTEIO with "Class: desc" in err. */
int qmp_execute(qmp *q, const char *command, json_object *args, int timeout_ms, json_object **ret,
		uk_error *err);

#endif
