/* A non-blocking QMP client; see qmp.h for the API and README.md for the design. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "../common/util.h"
#include "qmp.h"

/* Bytes we hold for the peer (written or deferred until READY) before qmp_send says
 * -ENOBUFS, so a peer that stops reading cannot make us buffer without limit. */
#define QMP_MAX_OUTPUT (4 * QMP_MAX_MESSAGE)
/* Nesting the tokener accepts; QEMU's replies (query-qmp-schema included) stay far below. */
#define QMP_MAX_DEPTH 64
#define QMP_READ_CHUNK 16384
/* A command's fd waits here, at the stream offset of the command's first byte. */
struct fd_at {
	uint64_t pos;
	int fd; /* our own copy, closed once it has gone out */
};

struct pending {
	int64_t id;
	qmp_reply_fn fn; /* NULL once abandoned by a timed-out qmp_execute */
	void *userdata;
	char *deferred; /* serialized command not yet in the output buffer (before READY) */
	size_t deferred_len;
	int deferred_fd; /* the fd of a deferred qmp_send_fd command (our copy), else -1 */
};

struct qmp {
	int fd;
	enum qmp_state state;

	json_tokener *tok;
	bool in_msg;    /* the tokener holds part of a message */
	size_t msg_len; /* bytes fed for the current message */
	char rbuf[QMP_READ_CHUNK];

	char *out;
	size_t out_start, out_len, out_cap;
	size_t deferred_bytes;
	/* Bytes ever sent, and the fds to attach at given offsets of the stream, in order. */
	uint64_t sent_total;
	struct fd_at fds[QMP_MAX_FDS];
	size_t n_fds;
	int write_err; /* from an opportunistic write in qmp_send; acted on by qmp_process */

	/* In id order, which is also the order commands go out. */
	struct pending pending[QMP_MAX_PENDING];
	size_t n_pending;
	int64_t next_id;
	int64_t caps_id;

	bool have_version;
	int version[3];

	qmp_event_fn event_fn;
	void *event_userdata;
	void (*ready_fn)(qmp *q, void *userdata);
	void *ready_userdata;

	int close_err; /* -errno once CLOSED */
	char close_msg[256];

	/* Public calls that may run callbacks are in progress; qmp_free inside a callback
	 * only marks the object and the outermost call frees it on the way out. */
	unsigned busy;
	bool free_requested;
};

/* The fds not sent yet: those of the output buffer and of deferred commands. */
static void close_fds(qmp *q)
{
	for (size_t i = 0; i < q->n_fds; i++)
		safe_close(q->fds[i].fd);
	q->n_fds = 0;
	for (size_t i = 0; i < q->n_pending; i++)
		q->pending[i].deferred_fd = safe_close(q->pending[i].deferred_fd);
}

/* How many fds wait, in the output and in deferred commands (bounded by QMP_MAX_FDS). */
static size_t fds_waiting(const qmp *q)
{
	size_t n = q->n_fds;
	for (size_t i = 0; i < q->n_pending; i++)
		n += q->pending[i].deferred_fd >= 0;
	return n;
}

static void really_free(qmp *q)
{
	close_fds(q);
	for (size_t i = 0; i < q->n_pending; i++)
		free(q->pending[i].deferred);
	if (q->tok)
		json_tokener_free(q->tok);
	free(q->out);
	safe_close(q->fd);
	free(q);
}

static int leave(qmp *q, int r)
{
	if (--q->busy == 0 && q->free_requested)
		really_free(q);
	return r;
}

static void pending_remove(qmp *q, size_t i)
{
	memmove(&q->pending[i], &q->pending[i + 1], (q->n_pending - i - 1) * sizeof(q->pending[0]));
	q->n_pending--;
}

static ssize_t pending_find(const qmp *q, int64_t id)
{
	for (size_t i = 0; i < q->n_pending; i++)
		if (q->pending[i].id == id)
			return (ssize_t)i;
	return -1;
}

/* Ends the connection once: fails every pending request, then tells the event handler
 * (unless the owner is freeing us). The fd stays open until qmp_free so that callers can
 * still remove it from their event loop. Callbacks may re-enter: state is CLOSED first and
 * each request leaves the table before its callback runs. */
static void conn_close(qmp *q, int error, const char *fmt, ...) _printf_(3, 4);
static void conn_close(qmp *q, int error, const char *fmt, ...)
{
	if (q->state == QMP_STATE_CLOSED)
		return;
	q->state = QMP_STATE_CLOSED;
	q->close_err = error < 0 ? error : -EIO;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(q->close_msg, sizeof(q->close_msg), fmt, ap);
	va_end(ap);

	/* Let the peer see the end too, and drop what it would never read. */
	(void)shutdown(q->fd, SHUT_RDWR); /* the fd is closed right after anyway */
	free(q->out);
	q->out = NULL;
	q->out_start = q->out_len = q->out_cap = 0;
	close_fds(q);
	json_tokener_reset(q->tok);
	q->in_msg = false;

	const struct qmp_error e = { .klass = "Disconnected", .desc = q->close_msg };
	while (q->n_pending > 0) {
		struct pending p = q->pending[0];
		pending_remove(q, 0);
		if (p.deferred)
			q->deferred_bytes -= p.deferred_len;
		free(p.deferred);
		safe_close(p.deferred_fd);
		if (p.fn)
			p.fn(q, NULL, &e, p.userdata);
	}
	if (q->event_fn && !q->free_requested)
		q->event_fn(q, NULL, NULL, 0, q->event_userdata);
}

static int out_append(qmp *q, const char *s, size_t len)
{
	if (q->out_start > 0 && q->out_start == q->out_len)
		q->out_start = q->out_len = 0;
	if (q->out_len + len > q->out_cap && q->out_start > 0) {
		memmove(q->out, q->out + q->out_start, q->out_len - q->out_start);
		q->out_len -= q->out_start;
		q->out_start = 0;
	}
	if (q->out_len + len > q->out_cap) {
		size_t cap = q->out_cap ? q->out_cap : 4096;
		while (cap < q->out_len + len)
			cap *= 2;
		char *n = realloc(q->out, cap);
		if (!n)
			return -ENOMEM;
		q->out = n;
		q->out_cap = cap;
	}
	memcpy(q->out + q->out_len, s, len);
	q->out_len += len;
	return 0;
}

/* Writes what the socket takes now. MSG_NOSIGNAL: a vanished peer must not raise SIGPIPE.
 * A send stops before the next command with an fd, and that one's first send carries the
 * fd: the peer (QEMU) gets the fd with the command's first byte, and never with another's. */
static int flush(qmp *q)
{
	while (q->out_start < q->out_len) {
		size_t len = q->out_len - q->out_start;
		int fd = -1;
		if (q->n_fds > 0 && q->fds[0].pos == q->sent_total) {
			fd = q->fds[0].fd;
			if (q->n_fds > 1 && q->fds[1].pos - q->sent_total < len)
				len = (size_t)(q->fds[1].pos - q->sent_total);
		} else if (q->n_fds > 0 && q->fds[0].pos - q->sent_total < len) {
			len = (size_t)(q->fds[0].pos - q->sent_total);
		}
		ssize_t n = uk_send_fds(q->fd, q->out + q->out_start, len, &fd, fd >= 0 ? 1 : 0, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		if (fd >= 0 && n > 0) {
			/* Gone with those bytes: the peer has its own copy now. */
			safe_close(fd);
			memmove(&q->fds[0], &q->fds[1], (q->n_fds - 1) * sizeof(q->fds[0]));
			q->n_fds--;
		}
		q->out_start += (size_t)n;
		q->sent_total += (uint64_t)n;
	}
	q->out_start = q->out_len = 0;
	/* A large command should not pin its buffer for the life of the connection. */
	if (q->out_cap > 65536) {
		free(q->out);
		q->out = NULL;
		q->out_cap = 0;
	}
	return 0;
}

/* A command's bytes to the output, its fd (ours, taken over; -1 for none) to go with the first. */
static int out_command(qmp *q, const char *s, size_t len, int fd)
{
	uint64_t pos = q->sent_total + (q->out_len - q->out_start);
	int r = out_append(q, s, len);
	if (r < 0)
		return r;
	if (fd >= 0)
		q->fds[q->n_fds++] = (struct fd_at){ .pos = pos, .fd = fd };
	return 0;
}

static char *serialize_command(const char *command, json_object *args, int64_t id, size_t *ret_len)
{
	_cleanup_json_ json_object *cmd = json_object_new_object();
	if (!cmd)
		return NULL;
	json_object *s = json_object_new_string(command);
	if (!s || json_object_object_add(cmd, "execute", s) < 0) {
		json_object_put(s);
		return NULL;
	}
	if (args && json_object_object_add(cmd, "arguments", json_object_get(args)) < 0) {
		json_object_put(args);
		return NULL;
	}
	json_object *i = json_object_new_int64(id);
	if (!i || json_object_object_add(cmd, "id", i) < 0) {
		json_object_put(i);
		return NULL;
	}
	size_t len;
	const char *text = json_object_to_json_string_length(
		cmd, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	if (!text)
		return NULL;
	/* The newline is not needed by QEMU; it keeps traces readable. */
	char *buf = malloc(len + 2);
	if (!buf)
		return NULL;
	memcpy(buf, text, len);
	buf[len] = '\n';
	buf[len + 1] = '\0';
	*ret_len = len + 1;
	return buf;
}

static bool get_int(json_object *o, const char *key, int64_t *ret)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return false;
	*ret = json_object_get_int64(v);
	return true;
}

static int handle_greeting(qmp *q, json_object *msg)
{
	json_object *g, *v, *qemu, *caps;
	if (!json_object_object_get_ex(msg, "QMP", &g) || !json_object_is_type(g, json_type_object)) {
		conn_close(q, -EPROTO, "protocol error: expected the QMP greeting");
		return -EPROTO;
	}
	int64_t ver[3];
	if (!json_object_object_get_ex(g, "version", &v) ||
	    !json_object_object_get_ex(v, "qemu", &qemu) ||
	    !json_object_is_type(qemu, json_type_object) || !get_int(qemu, "major", &ver[0]) ||
	    !get_int(qemu, "minor", &ver[1]) || !get_int(qemu, "micro", &ver[2])) {
		conn_close(q, -EPROTO, "protocol error: greeting without a QEMU version");
		return -EPROTO;
	}
	for (int i = 0; i < 3; i++) {
		if (ver[i] < 0 || ver[i] > INT_MAX) {
			conn_close(q, -EPROTO, "protocol error: bad version in greeting");
			return -EPROTO;
		}
		q->version[i] = (int)ver[i];
	}
	/* We enable no capability (no OOB), so the list only needs to be well-formed. */
	if (json_object_object_get_ex(g, "capabilities", &caps) &&
	    !json_object_is_type(caps, json_type_array)) {
		conn_close(q, -EPROTO, "protocol error: greeting capabilities is not an array");
		return -EPROTO;
	}
	q->have_version = true;

	size_t len;
	q->caps_id = q->next_id++;
	_cleanup_free_ char *s = serialize_command("qmp_capabilities", NULL, q->caps_id, &len);
	if (!s || out_append(q, s, len) < 0) {
		conn_close(q, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	q->state = QMP_STATE_NEGOTIATING;
	return 0;
}

static int become_ready(qmp *q)
{
	q->state = QMP_STATE_READY;
	/* Commands queued meanwhile go out first, in the order they were sent. */
	for (size_t i = 0; i < q->n_pending; i++) {
		struct pending *p = &q->pending[i];
		if (!p->deferred)
			continue;
		if (out_command(q, p->deferred, p->deferred_len, p->deferred_fd) < 0) {
			conn_close(q, -ENOMEM, "out of memory");
			return -ENOMEM;
		}
		p->deferred_fd = -1; /* the output's now */
		q->deferred_bytes -= p->deferred_len;
		free(p->deferred);
		p->deferred = NULL;
	}
	if (q->ready_fn)
		q->ready_fn(q, q->ready_userdata);
	return 0;
}

static void error_strings(json_object *e, const char **klass, const char **desc)
{
	json_object *v;
	*klass = "GenericError";
	*desc = "";
	if (json_object_object_get_ex(e, "class", &v) && json_object_is_type(v, json_type_string))
		*klass = json_object_get_string(v);
	if (json_object_object_get_ex(e, "desc", &v) && json_object_is_type(v, json_type_string))
		*desc = json_object_get_string(v);
}

static int handle_reply(qmp *q, json_object *msg, json_object *ret, json_object *error)
{
	int64_t id;
	if (!get_int(msg, "id", &id)) {
		conn_close(q, -EPROTO, "protocol error: reply without a numeric id");
		return -EPROTO;
	}
	if (error && !json_object_is_type(error, json_type_object)) {
		conn_close(q, -EPROTO, "protocol error: error member is not an object");
		return -EPROTO;
	}
	const char *klass = NULL, *desc = NULL;
	if (error)
		error_strings(error, &klass, &desc);

	if (q->state == QMP_STATE_NEGOTIATING && id == q->caps_id) {
		if (error) {
			conn_close(q, -EPROTO, "capabilities negotiation failed: %s: %s", klass, desc);
			return -EPROTO;
		}
		return become_ready(q);
	}

	/* We never send without an id and never forget one, so an unknown id means the
	 * stream is out of step with us: treat it as a protocol error. */
	ssize_t i = pending_find(q, id);
	if (i < 0 || q->pending[i].deferred) {
		conn_close(q, -EPROTO, "protocol error: reply with unknown id %" PRId64, id);
		return -EPROTO;
	}
	struct pending p = q->pending[i];
	pending_remove(q, (size_t)i);
	if (!p.fn)
		return 0;
	if (error) {
		const struct qmp_error e = { .klass = klass, .desc = desc };
		p.fn(q, NULL, &e, p.userdata);
	} else {
		p.fn(q, ret, NULL, p.userdata);
	}
	return 0;
}

static int handle_event(qmp *q, json_object *msg, json_object *name)
{
	if (!json_object_is_type(name, json_type_string)) {
		conn_close(q, -EPROTO, "protocol error: event name is not a string");
		return -EPROTO;
	}
	json_object *data = NULL, *ts;
	json_object_object_get_ex(msg, "data", &data);
	uint64_t ts_us = 0;
	int64_t sec, usec;
	if (json_object_object_get_ex(msg, "timestamp", &ts) && get_int(ts, "seconds", &sec) &&
	    get_int(ts, "microseconds", &usec) && sec >= 0 && usec >= 0 &&
	    (uint64_t)sec <= (UINT64_MAX - (uint64_t)usec) / 1000000)
		ts_us = (uint64_t)sec * 1000000 + (uint64_t)usec;
	if (q->event_fn)
		q->event_fn(q, json_object_get_string(name), data, ts_us, q->event_userdata);
	return 0;
}

/* Takes over msg. Objects with none of the known members are ignored, for
 * forward compatibility. */
static int dispatch(qmp *q, json_object *m)
{
	_cleanup_json_ json_object *msg = m;
	json_object *v, *ret = NULL, *error = NULL;

	if (q->state == QMP_STATE_GREETING)
		return handle_greeting(q, msg);
	if (json_object_object_get_ex(msg, "event", &v))
		return handle_event(q, msg, v);
	bool is_ret = json_object_object_get_ex(msg, "return", &ret);
	bool is_err = json_object_object_get_ex(msg, "error", &error);
	if (is_ret || is_err)
		return handle_reply(q, msg, is_err ? NULL : ret, is_err ? error : NULL);
	return 0;
}

/* Splits the byte stream into messages. The tokener keeps a partial message across
 * calls; whitespace between messages is skipped here so it never counts against the
 * size limit, and a message must start with '{' (QMP only sends objects, and a bare
 * number or literal at the end of a chunk would otherwise leave the tokener waiting). */
static int feed(qmp *q, const char *p, size_t n)
{
	while (n > 0 && q->state != QMP_STATE_CLOSED) {
		if (!q->in_msg) {
			while (n > 0 && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
				p++;
				n--;
			}
			if (n == 0)
				break;
			if (*p != '{') {
				conn_close(q, -EPROTO, "protocol error: message is not a JSON object");
				return -EPROTO;
			}
			q->in_msg = true;
			q->msg_len = 0;
		}
		size_t room = QMP_MAX_MESSAGE - q->msg_len;
		if (room == 0) {
			conn_close(q, -EPROTO, "protocol error: message larger than %d bytes",
				   QMP_MAX_MESSAGE);
			return -EPROTO;
		}
		size_t chunk = n < room ? n : room;
		json_object *obj = json_tokener_parse_ex(q->tok, p, (int)chunk);
		enum json_tokener_error e = json_tokener_get_error(q->tok);
		size_t used = json_tokener_get_parse_end(q->tok);
		if (obj) {
			if (used == 0 || used > chunk) {
				json_object_put(obj);
				conn_close(q, -EPROTO, "protocol error: tokener out of step");
				return -EPROTO;
			}
			json_tokener_reset(q->tok);
			q->in_msg = false;
			p += used;
			n -= used;
			int r = dispatch(q, obj);
			if (r < 0)
				return r;
		} else if (e == json_tokener_continue && used == chunk) {
			q->msg_len += chunk;
			p += chunk;
			n -= chunk;
		} else {
			conn_close(q, -EPROTO, "protocol error: invalid JSON: %s",
				   json_tokener_error_desc(e));
			return -EPROTO;
		}
	}
	return 0;
}

static void do_read(qmp *q)
{
	while (q->state != QMP_STATE_CLOSED) {
		ssize_t n = recv(q->fd, q->rbuf, sizeof(q->rbuf), MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			conn_close(q, -errno, "read: %s", strerror(errno));
			return;
		}
		if (n == 0) {
			conn_close(q, -ECONNRESET, "connection closed by peer");
			return;
		}
		if (feed(q, q->rbuf, (size_t)n) < 0)
			return;
	}
}

/* One non-blocking pass; the caller holds busy. Reading comes first so that what the peer
 * said before it went away (say, a SHUTDOWN event) is delivered before a write error. */
static int process(qmp *q)
{
	if (q->state == QMP_STATE_CLOSED)
		return q->close_err;
	do_read(q);
	if (q->state == QMP_STATE_CLOSED)
		return q->close_err;
	int r = q->write_err ? q->write_err : flush(q);
	if (r < 0) {
		conn_close(q, r, "write: %s", strerror(-r));
		return q->close_err;
	}
	return 0;
}

int qmp_new(int fd, qmp **ret)
{
	_cleanup_close_ int owned = fd;
	if (!ret)
		return -EINVAL;
	*ret = NULL;
	if (fd < 0)
		return -EBADF;
	int r = uk_set_nonblock(fd, true);
	if (r < 0)
		return r;
	r = uk_set_cloexec(fd, true);
	if (r < 0)
		return r;
	_cleanup_free_ qmp *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->tok = json_tokener_new_ex(QMP_MAX_DEPTH);
	if (!q->tok)
		return -ENOMEM;
	json_tokener_set_flags(q->tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
	q->fd = TAKE_FD(owned);
	q->state = QMP_STATE_GREETING;
	q->next_id = 1;
	q->caps_id = -1;
	*ret = TAKE_PTR(q);
	return 0;
}

int qmp_connect_unix(const char *path, qmp **ret, uk_error *err)
{
	if (!path || !*path || !ret)
		return uk_err(err, EINVAL, "invalid QMP socket path");
	*ret = NULL;
	int fd = uk_unix_connect(path, err);
	if (fd < 0)
		return uk_err_ctx_r(err, fd, "QMP");
	int r = qmp_new(fd, ret);
	if (r < 0)
		return uk_err_errno(err, -r, "QMP client for %s", path);
	return 0;
}

void qmp_free(qmp *q)
{
	if (!q || q->free_requested)
		return;
	q->free_requested = true;
	q->busy++;
	conn_close(q, -ECANCELED, "connection closed by client");
	(void)leave(q, 0); /* returns the 0 given: nothing to report from a free */
}

int qmp_fd(const qmp *q)
{
	return q ? q->fd : -EINVAL;
}

short qmp_poll_events(const qmp *q)
{
	if (!q || q->state == QMP_STATE_CLOSED)
		return 0;
	return POLLIN | (q->out_start < q->out_len ? POLLOUT : 0);
}

enum qmp_state qmp_get_state(const qmp *q)
{
	return q ? q->state : QMP_STATE_CLOSED;
}

void qmp_set_event_handler(qmp *q, qmp_event_fn fn, void *userdata)
{
	if (!q)
		return;
	q->event_fn = fn;
	q->event_userdata = userdata;
}

void qmp_set_ready_handler(qmp *q, void (*fn)(qmp *q, void *userdata), void *userdata)
{
	if (!q)
		return;
	q->ready_fn = fn;
	q->ready_userdata = userdata;
}

int qmp_process(qmp *q)
{
	if (!q)
		return -EINVAL;
	/* The dispatch loop below us holds parser state; nesting would tangle it. */
	if (q->busy)
		return -EDEADLK;
	q->busy++;
	return leave(q, process(q));
}

/* qmp_send and qmp_send_fd: fd (>= 0) is the caller's, copied here. */
static int64_t send_command(qmp *q, const char *command, json_object *args, int fd, qmp_reply_fn fn, void *userdata)
{
	_cleanup_json_ json_object *a = args;
	if (!q || !command || !*command)
		return -EINVAL;
	if (a && !json_object_is_type(a, json_type_object))
		return -EINVAL;
	if (q->state == QMP_STATE_CLOSED)
		return -ENOTCONN;
	if (q->n_pending >= QMP_MAX_PENDING || (fd >= 0 && fds_waiting(q) >= QMP_MAX_FDS))
		return -EBUSY;

	int64_t id = q->next_id;
	size_t len;
	_cleanup_free_ char *s = serialize_command(command, a, id, &len);
	if (!s)
		return -ENOMEM;
	if ((q->out_len - q->out_start) + q->deferred_bytes + len > QMP_MAX_OUTPUT)
		return -ENOBUFS;
	_cleanup_close_ int copy = -1;
	if (fd >= 0 && (copy = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0)
		return -errno;

	struct pending *p = &q->pending[q->n_pending];
	*p = (struct pending){ .id = id, .fn = fn, .userdata = userdata, .deferred_fd = -1 };
	if (q->state == QMP_STATE_READY) {
		if (out_command(q, s, len, copy) < 0)
			return -ENOMEM;
		copy = -1; /* the output's now */
	} else {
		p->deferred = TAKE_PTR(s);
		p->deferred_len = len;
		p->deferred_fd = TAKE_FD(copy);
		q->deferred_bytes += len;
	}
	q->n_pending++;
	q->next_id++;

	/* Most commands leave right away and the caller never needs POLLOUT. Errors wait for
	 * qmp_process, so that callbacks never run from inside qmp_send. */
	if (q->state == QMP_STATE_READY && !q->write_err) {
		int r = flush(q);
		if (r < 0)
			q->write_err = r;
	}
	return id;
}

int64_t qmp_send(qmp *q, const char *command, json_object *args, qmp_reply_fn fn, void *userdata)
{
	return send_command(q, command, args, -1, fn, userdata);
}

int64_t qmp_send_fd(qmp *q, const char *command, json_object *args, int fd, qmp_reply_fn fn, void *userdata)
{
	if (fd < 0) {
		json_object_put(args);
		return -EBADF;
	}
	return send_command(q, command, args, fd, fn, userdata);
}

int qmp_version(const qmp *q, int *major, int *minor, int *micro)
{
	if (!q)
		return -EINVAL;
	if (!q->have_version)
		return -ENODATA;
	if (major)
		*major = q->version[0];
	if (minor)
		*minor = q->version[1];
	if (micro)
		*micro = q->version[2];
	return 0;
}

/* Runs process() under poll() until done() holds, the connection ends or the deadline
 * passes. A negative timeout waits for ever. */
static int run_until(qmp *q, int timeout_ms, bool (*done)(qmp *q, void *arg), void *arg)
{
	uint64_t deadline = 0;
	if (timeout_ms >= 0)
		deadline = uk_now_mono_ns() + (uint64_t)timeout_ms * 1000000ull;
	for (;;) {
		int r = process(q);
		if (done(q, arg))
			return 0;
		if (r < 0)
			return r;
		int wait_ms = -1;
		if (timeout_ms >= 0) {
			uint64_t now = uk_now_mono_ns();
			if (now >= deadline)
				return -ETIMEDOUT;
			uint64_t left = (deadline - now + 999999) / 1000000;
			wait_ms = left > INT_MAX ? INT_MAX : (int)left;
		}
		struct pollfd pfd = { .fd = q->fd, .events = qmp_poll_events(q) };
		if (poll(&pfd, 1, wait_ms) < 0 && errno != EINTR)
			return -errno;
	}
}

static bool is_ready(qmp *q, void *arg)
{
	(void)arg;
	return q->state == QMP_STATE_READY;
}

int qmp_wait_ready(qmp *q, int timeout_ms, uk_error *err)
{
	if (!q)
		return uk_err(err, EINVAL, "no QMP connection");
	if (q->busy)
		return uk_err(err, EDEADLK, "qmp_wait_ready called from a QMP callback");
	q->busy++;
	int r = run_until(q, timeout_ms, is_ready, NULL);
	if (r == -ETIMEDOUT)
		r = uk_err(err, ETIMEDOUT, "timed out after %d ms waiting for QMP %s", timeout_ms,
			   q->state == QMP_STATE_GREETING ? "greeting" : "negotiation");
	else if (r < 0 && q->state == QMP_STATE_CLOSED)
		r = uk_err(err, -r, "QMP connection closed: %s", q->close_msg);
	else if (r < 0)
		r = uk_err_errno(err, -r, "poll");
	return leave(q, r);
}

struct exec_state {
	bool done;
	int r;
	json_object *ret;
	uk_error err;
};

static void exec_reply(qmp *q, json_object *ret, const struct qmp_error *e, void *userdata)
{
	struct exec_state *st = userdata;
	st->done = true;
	if (!e) {
		st->r = 0;
		st->ret = ret ? json_object_get(ret) : NULL;
	} else if (q->state == QMP_STATE_CLOSED) {
		st->r = uk_err(&st->err, -q->close_err, "QMP connection closed: %s", e->desc);
	} else {
		st->r = uk_err(&st->err, EREMOTEIO, "%s: %s", e->klass, e->desc);
	}
}

static bool exec_done(qmp *q, void *arg)
{
	(void)q;
	return ((struct exec_state *)arg)->done;
}

/* A timed-out qmp_execute must not leave a callback pointing into its stack frame. An
 * unsent command is dropped; a sent one keeps its id so the late reply is recognised
 * and discarded. */
static void abandon(qmp *q, int64_t id)
{
	ssize_t i = pending_find(q, id);
	if (i < 0)
		return;
	struct pending *p = &q->pending[i];
	if (p->deferred) {
		q->deferred_bytes -= p->deferred_len;
		free(p->deferred);
		safe_close(p->deferred_fd);
		pending_remove(q, (size_t)i);
		return;
	}
	p->fn = NULL;
	p->userdata = NULL;
}

int qmp_execute(qmp *q, const char *command, json_object *args, int timeout_ms, json_object **ret,
		uk_error *err)
{
	if (ret)
		*ret = NULL;
	if (!q || !command) {
		json_object_put(args);
		return uk_err(err, EINVAL, "invalid QMP command");
	}
	if (q->busy) {
		json_object_put(args);
		return uk_err(err, EDEADLK, "qmp_execute(%s) called from a QMP callback", command);
	}
	struct exec_state st = { 0 };
	int64_t id = qmp_send(q, command, args, exec_reply, &st);
	if (id < 0) {
		if (id == -ENOTCONN)
			return uk_err(err, ENOTCONN, "%s: QMP connection closed: %s", command,
				      q->close_msg);
		return uk_err_errno(err, (int)-id, "%s: queueing command", command);
	}

	q->busy++;
	int r = run_until(q, timeout_ms, exec_done, &st);
	if (st.done) {
		r = st.r;
		if (r < 0) {
			if (err)
				*err = st.err;
		} else if (ret) {
			*ret = TAKE_PTR(st.ret);
		}
		json_object_put(st.ret);
	} else {
		abandon(q, id);
		if (r == -ETIMEDOUT)
			r = uk_err(err, ETIMEDOUT, "%s: no reply within %d ms", command, timeout_ms);
		else
			r = uk_err_errno(err, -r, "%s: poll", command);
	}
	return leave(q, r);
}
