/* Unit tests for the QMP client. QEMU's side is played by the test through the other end
 * of a socketpair (or by a small thread for the blocking helpers). */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/util.h"
#include "qmp/qmp.h"

#define GREETING                                                                                   \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "          \
	"\"package\": \"Debian 1:7.2+dfsg-7\"}, \"capabilities\": [\"oob\"]}}\r\n"

struct event_rec {
	char *name; /* NULL for the end-of-connection call */
	char *data; /* JSON text, NULL when the event had none */
	uint64_t ts;
};

struct fx {
	qmp *q;
	int peer;
	int ready_calls;
	int null_events;
	int n_events;
	struct event_rec ev[64];
};

/* Records one reply; "then" lets a test act from inside the callback. */
struct slot {
	struct fx *fx;
	int calls;
	bool is_err;
	char klass[64];
	char desc[256];
	char *ret;
	void (*then)(struct slot *s, qmp *q);
	int64_t then_id;
	struct slot *then_slot;
};

static void on_event(qmp *q, const char *event, json_object *data, uint64_t ts, void *userdata)
{
	struct fx *fx = userdata;
	assert_ptr_equal(q, fx->q);
	if (!event) {
		fx->null_events++;
		return;
	}
	assert_true(fx->n_events < (int)ARRAY_SIZE(fx->ev));
	struct event_rec *e = &fx->ev[fx->n_events++];
	e->name = strdup(event);
	e->data = data ? strdup(json_object_to_json_string_ext(
				 data, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE))
		       : NULL;
	e->ts = ts;
}

static void on_ready(qmp *q, void *userdata)
{
	struct fx *fx = userdata;
	assert_ptr_equal(q, fx->q);
	fx->ready_calls++;
}

static void slot_cb(qmp *q, json_object *ret, const struct qmp_error *err, void *userdata)
{
	struct slot *s = userdata;
	s->calls++;
	if (err) {
		assert_null(ret);
		s->is_err = true;
		snprintf(s->klass, sizeof(s->klass), "%s", err->klass);
		snprintf(s->desc, sizeof(s->desc), "%s", err->desc);
	} else {
		assert_non_null(ret);
		free(s->ret);
		s->ret = strdup(json_object_to_json_string_ext(ret, JSON_C_TO_STRING_PLAIN));
	}
	if (s->then)
		s->then(s, q);
}

static void slot_clear(struct slot *s)
{
	free(s->ret);
	s->ret = NULL;
}

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	fx->peer = sv[1];
	assert_int_equal(qmp_new(sv[0], &fx->q), 0);
	qmp_set_event_handler(fx->q, on_event, fx);
	qmp_set_ready_handler(fx->q, on_ready, fx);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	qmp_free(fx->q);
	if (fx->peer >= 0)
		close(fx->peer);
	for (int i = 0; i < fx->n_events; i++) {
		free(fx->ev[i].name);
		free(fx->ev[i].data);
	}
	free(fx);
	return 0;
}

static void peer_write(struct fx *fx, const char *s)
{
	assert_int_equal(uk_write_all(fx->peer, s, strlen(s)), 0);
}

static void peer_writef(struct fx *fx, const char *fmt, ...) _printf_(2, 3);
static void peer_writef(struct fx *fx, const char *fmt, ...)
{
	char buf[4096];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < sizeof(buf));
	peer_write(fx, buf);
}

static bool peer_has_data(struct fx *fx)
{
	struct pollfd p = { .fd = fx->peer, .events = POLLIN };
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* One command line from the client; NULL if nothing arrives within a second. The client
 * ends each command with a newline and never puts one inside. */
static json_object *peer_read_line_fd(int fd)
{
	static _Thread_local char line[1 << 17];
	size_t n = 0;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 1000) != 1)
			return NULL;
		ssize_t r = recv(fd, &line[n], sizeof(line) - 1 - n, MSG_PEEK);
		if (r <= 0)
			return NULL;
		char *nl = memchr(&line[n], '\n', (size_t)r);
		size_t take = nl ? (size_t)(nl - &line[n]) + 1 : (size_t)r;
		if (read(fd, &line[n], take) != (ssize_t)take)
			return NULL;
		n += take;
		if (nl)
			break;
		if (n == sizeof(line) - 1)
			return NULL;
	}
	line[n] = '\0';
	return json_tokener_parse(line);
}

/* Checks the client's next command and returns its id. */
static int64_t peer_expect(struct fx *fx, const char *execute)
{
	_cleanup_json_ json_object *cmd = peer_read_line_fd(fx->peer);
	assert_non_null(cmd);
	assert_true(json_object_is_type(cmd, json_type_object));
	json_object *e, *id;
	assert_true(json_object_object_get_ex(cmd, "execute", &e));
	assert_string_equal(json_object_get_string(e), execute);
	assert_true(json_object_object_get_ex(cmd, "id", &id));
	assert_true(json_object_is_type(id, json_type_int));
	assert_true(json_object_get_int64(id) >= 0);
	return json_object_get_int64(id);
}

static void make_ready(struct fx *fx)
{
	peer_write(fx, GREETING);
	assert_int_equal(qmp_process(fx->q), 0);
	int64_t id = peer_expect(fx, "qmp_capabilities");
	peer_writef(fx, "{\"return\": {}, \"id\": %" PRId64 "}\r\n", id);
	assert_int_equal(qmp_process(fx->q), 0);
	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_READY);
	assert_int_equal(fx->ready_calls, 1);
}

/* ---- greeting and negotiation ---- */

static void test_greeting_version(void **state)
{
	struct fx *fx = *state;
	int ma = -1, mi = -1, mc = -1;
	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_GREETING);
	assert_int_equal(qmp_version(fx->q, &ma, &mi, &mc), -ENODATA);
	assert_int_equal(qmp_poll_events(fx->q), POLLIN);
	assert_int_equal(qmp_process(fx->q), 0); /* nothing to read yet */

	peer_write(fx, GREETING);
	assert_int_equal(qmp_process(fx->q), 0);
	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_NEGOTIATING);
	assert_int_equal(qmp_version(fx->q, &ma, &mi, &mc), 0);
	assert_int_equal(ma, 7);
	assert_int_equal(mi, 2);
	assert_int_equal(mc, 0);
	assert_int_equal(fx->ready_calls, 0);
}

static void test_negotiation(void **state)
{
	struct fx *fx = *state;
	peer_write(fx, GREETING);
	assert_int_equal(qmp_process(fx->q), 0);

	_cleanup_json_ json_object *cmd = peer_read_line_fd(fx->peer);
	assert_non_null(cmd);
	json_object *v;
	assert_true(json_object_object_get_ex(cmd, "execute", &v));
	assert_string_equal(json_object_get_string(v), "qmp_capabilities");
	assert_true(json_object_object_get_ex(cmd, "id", &v));
	assert_true(json_object_is_type(v, json_type_int));
	int64_t id = json_object_get_int64(v);
	assert_false(json_object_object_get_ex(cmd, "arguments", &v)); /* no OOB asked for */

	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_NEGOTIATING);
	peer_writef(fx, "{\"return\": {}, \"id\": %" PRId64 "}\n", id);
	assert_int_equal(qmp_process(fx->q), 0);
	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_READY);
	assert_int_equal(fx->ready_calls, 1);
	assert_int_equal(qmp_poll_events(fx->q), POLLIN);
}

static void test_queued_before_ready(void **state)
{
	struct fx *fx = *state;
	struct slot a = { 0 }, b = { 0 };
	int64_t ida = qmp_send(fx->q, "query-status", NULL, slot_cb, &a);
	json_object *args = json_object_new_object();
	json_object_object_add(args, "device", json_object_new_string("net0"));
	int64_t idb = qmp_send(fx->q, "device_del", args, slot_cb, &b);
	assert_true(ida >= 0 && idb >= 0 && ida != idb);
	assert_int_equal(qmp_process(fx->q), 0);
	assert_false(peer_has_data(fx)); /* nothing before the greeting */
	assert_int_equal(qmp_poll_events(fx->q), POLLIN);

	peer_write(fx, GREETING);
	assert_int_equal(qmp_process(fx->q), 0);
	int64_t caps = peer_expect(fx, "qmp_capabilities");
	assert_false(peer_has_data(fx)); /* user commands wait for the negotiation */

	peer_writef(fx, "{\"return\": {}, \"id\": %" PRId64 "}\n", caps);
	assert_int_equal(qmp_process(fx->q), 0);
	assert_int_equal(peer_expect(fx, "query-status"), ida);

	_cleanup_json_ json_object *cmd = peer_read_line_fd(fx->peer);
	assert_non_null(cmd);
	json_object *v, *dev;
	assert_true(json_object_object_get_ex(cmd, "execute", &v));
	assert_string_equal(json_object_get_string(v), "device_del");
	assert_true(json_object_object_get_ex(cmd, "arguments", &v));
	assert_true(json_object_object_get_ex(v, "device", &dev));
	assert_string_equal(json_object_get_string(dev), "net0");
	assert_true(json_object_object_get_ex(cmd, "id", &v));
	assert_int_equal(json_object_get_int64(v), idb);
	assert_int_equal(a.calls + b.calls, 0);
	/* The slots live on this stack frame: end their requests before it goes. */
	qmp_free(fx->q);
	fx->q = NULL;
	assert_int_equal(a.calls + b.calls, 2);
}

static void send_on_ready(qmp *q, void *userdata)
{
	struct fx *fx = userdata;
	fx->ready_calls++;
	assert_true(qmp_send(q, "from-ready", NULL, NULL, NULL) >= 0);
}

static void test_ready_handler_sends_after_queue(void **state)
{
	struct fx *fx = *state;
	qmp_set_ready_handler(fx->q, send_on_ready, fx);
	int64_t id = qmp_send(fx->q, "queued", NULL, NULL, NULL);
	peer_write(fx, GREETING);
	assert_int_equal(qmp_process(fx->q), 0);
	int64_t caps = peer_expect(fx, "qmp_capabilities");
	peer_writef(fx, "{\"return\": {}, \"id\": %" PRId64 "}\n", caps);
	assert_int_equal(qmp_process(fx->q), 0);
	assert_int_equal(fx->ready_calls, 1);
	assert_int_equal(peer_expect(fx, "queued"), id);
	assert_true(peer_expect(fx, "from-ready") > id);
}

static void test_caps_failure(void **state)
{
	struct fx *fx = *state;
	struct slot a = { 0 };
	assert_true(qmp_send(fx->q, "query-status", NULL, slot_cb, &a) >= 0);
	peer_write(fx, GREETING);
	assert_int_equal(qmp_process(fx->q), 0);
	int64_t caps = peer_expect(fx, "qmp_capabilities");
	peer_writef(fx,
		    "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"nope\"}, \"id\": %" PRId64
		    "}\n",
		    caps);
	assert_int_equal(qmp_process(fx->q), -EPROTO);
	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_CLOSED);
	assert_int_equal(a.calls, 1);
	assert_string_equal(a.klass, "Disconnected");
	assert_non_null(strstr(a.desc, "CommandNotFound"));
	assert_int_equal(fx->ready_calls, 0);
	assert_int_equal(fx->null_events, 1);
}

static void test_bad_greeting(void **state)
{
	struct fx *fx = *state;
	peer_write(fx, "{\"return\": {}, \"id\": 1}\n");
	assert_int_equal(qmp_process(fx->q), -EPROTO);
	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_CLOSED);
	assert_int_equal(qmp_version(fx->q, NULL, NULL, NULL), -ENODATA);
	assert_int_equal(fx->null_events, 1);
}

/* ---- replies ---- */

static void test_out_of_order_replies(void **state)
{
	struct fx *fx = *state;
	make_ready(fx);
	struct slot a = { 0 }, b = { 0 };
	int64_t ida = qmp_send(fx->q, "query-status", NULL, slot_cb, &a);
	int64_t idb = qmp_send(fx->q, "query-version", NULL, slot_cb, &b);
	assert_int_equal(peer_expect(fx, "query-status"), ida);
	assert_int_equal(peer_expect(fx, "query-version"), idb);

	peer_writef(fx, "{\"return\": {\"qemu\": {\"major\": 7}}, \"id\": %" PRId64 "}\n", idb);
	assert_int_equal(qmp_process(fx->q), 0);
	assert_int_equal(a.calls, 0);
	assert_int_equal(b.calls, 1);
	assert_string_equal(b.ret, "{\"qemu\":{\"major\":7}}");

	peer_writef(fx, "{\"return\": {\"status\": \"paused\", \"running\": false}, \"id\": %" PRId64 "}\n",
		    ida);
	assert_int_equal(qmp_process(fx->q), 0);
	assert_int_equal(a.calls, 1);
	assert_false(a.is_err);
	assert_string_equal(a.ret, "{\"status\":\"paused\",\"running\":false}");
	assert_int_equal(b.calls, 1);
	slot_clear(&a);
	slot_clear(&b);
}

static void test_error_reply(void **state)
{
	struct fx *fx = *state;
	make_ready(fx);
	struct slot a = { 0 };
	int64_t id = qmp_send(fx->q, "no-such-cmd", NULL, slot_cb, &a);
	assert_int_equal(peer_expect(fx, "no-such-cmd"), id);
	peer_writef(fx,
		    "{\"id\": %" PRId64 ", \"error\": {\"class\": \"CommandNotFound\", \"desc\": "
		    "\"The command no-such-cmd has not been found\"}}\n",
		    id);
	assert_int_equal(qmp_process(fx->q), 0);
	assert_int_equal(a.calls, 1);
	assert_true(a.is_err);
	assert_string_equal(a.klass, "CommandNotFound");
	assert_string_equal(a.desc, "The command no-such-cmd has not been found");
	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_READY);
}

static void test_unknown_id(void **state)
{
	struct fx *fx = *state;
	make_ready(fx);
	struct slot a = { 0 };
	int64_t id = qmp_send(fx->q, "query-status", NULL, slot_cb, &a);
	peer_writef(fx, "{\"return\": {}, \"id\": %" PRId64 "}\n", id + 100);
	assert_int_equal(qmp_process(fx->q), -EPROTO);
	assert_int_equal(a.calls, 1);
	assert_string_equal(a.klass, "Disconnected");
	assert_int_equal(fx->null_events, 1);
}

static void test_send_invalid(void **state)
{
	struct fx *fx = *state;
	assert_int_equal(qmp_send(fx->q, NULL, NULL, NULL, NULL), -EINVAL);
	assert_int_equal(qmp_send(fx->q, "", NULL, NULL, NULL), -EINVAL);
	/* A non-object argument is refused, and its reference still taken over (ASan). */
	assert_int_equal(qmp_send(fx->q, "x", json_object_new_array(), NULL, NULL), -EINVAL);
	/* A command without a callback: the reply is consumed silently. */
	make_ready(fx);
	int64_t id = qmp_send(fx->q, "cont", NULL, NULL, NULL);
	assert_int_equal(peer_expect(fx, "cont"), id);
	peer_writef(fx, "{\"return\": {}, \"id\": %" PRId64 "}\n", id);
	assert_int_equal(qmp_process(fx->q), 0);
}

/* ---- events ---- */

static void test_events(void **state)
{
	struct fx *fx = *state;
	make_ready(fx);
	peer_write(fx,
		   "{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 123456}, "
		   "\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": "
		   "\"guest-shutdown\"}}\r\n"
		   "{\"event\": \"POWERDOWN\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n"
		   "{\"event\": \"STOP\"}\r\n"
		   "{\"event\": \"RESUME\", \"timestamp\": {\"seconds\": 5, \"microseconds\": 0}}\r\n"
		   "{\"event\": \"RESET\", \"data\": {\"guest\": false, \"reason\": \"host-qmp\"}}\r\n"
		   "{\"event\": \"GUEST_PANICKED\", \"data\": {\"action\": \"pause\"}}\r\n"
		   "{\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"net0\", \"path\": "
		   "\"/machine/peripheral/net0\"}}\r\n"
		   "{\"event\": \"SOMETHING_NEW\", \"data\": [1, 2]}\r\n");
	assert_int_equal(qmp_process(fx->q), 0);
	assert_int_equal(fx->n_events, 8);
	assert_string_equal(fx->ev[0].name, "SHUTDOWN");
	assert_string_equal(fx->ev[0].data, "{\"guest\":true,\"reason\":\"guest-shutdown\"}");
	assert_true(fx->ev[0].ts == 1700000000123456ull);
	assert_string_equal(fx->ev[1].name, "POWERDOWN");
	assert_null(fx->ev[1].data);
	assert_true(fx->ev[1].ts == 1000002ull);
	assert_string_equal(fx->ev[2].name, "STOP");
	assert_true(fx->ev[2].ts == 0);
	assert_string_equal(fx->ev[3].name, "RESUME");
	assert_true(fx->ev[3].ts == 5000000ull);
	assert_string_equal(fx->ev[4].name, "RESET");
	assert_string_equal(fx->ev[5].name, "GUEST_PANICKED");
	assert_string_equal(fx->ev[5].data, "{\"action\":\"pause\"}");
	assert_string_equal(fx->ev[6].name, "DEVICE_DELETED");
	assert_string_equal(fx->ev[6].data,
			    "{\"device\":\"net0\",\"path\":\"/machine/peripheral/net0\"}");
	assert_string_equal(fx->ev[7].name, "SOMETHING_NEW");
	assert_string_equal(fx->ev[7].data, "[1,2]");
	assert_int_equal(fx->null_events, 0);
}

static void test_event_while_negotiating(void **state)
{
	struct fx *fx = *state;
	peer_write(fx, GREETING);
	assert_int_equal(qmp_process(fx->q), 0);
	int64_t caps = peer_expect(fx, "qmp_capabilities");
	peer_writef(fx, "{\"event\": \"RESUME\"}{\"return\": {}, \"id\": %" PRId64 "}", caps);
	assert_int_equal(qmp_process(fx->q), 0);
	assert_int_equal(fx->n_events, 1);
	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_READY);
}

/* ---- framing ---- */

static void test_several_in_one_write(void **state)
{
	struct fx *fx = *state;
	struct slot a = { 0 }, b = { 0 };
	int64_t ida = qmp_send(fx->q, "stop", NULL, slot_cb, &a);
	int64_t idb = qmp_send(fx->q, "cont", NULL, slot_cb, &b);
	peer_write(fx, GREETING);
	assert_int_equal(qmp_process(fx->q), 0);
	int64_t caps = peer_expect(fx, "qmp_capabilities");
	/* The negotiation reply, two replies and an event, no separators at all. */
	peer_writef(fx,
		    "{\"return\": {}, \"id\": %" PRId64 "}{\"return\": {}, \"id\": %" PRId64 "}"
		    "{\"event\": \"STOP\"}{\"return\": {}, \"id\": %" PRId64 "}",
		    caps, ida, idb);
	assert_int_equal(qmp_process(fx->q), 0);
	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_READY);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 1);
	assert_int_equal(fx->n_events, 1);
	slot_clear(&a);
	slot_clear(&b);
}

static void write_bytewise(struct fx *fx, const char *s)
{
	for (const char *p = s; *p; p++) {
		assert_int_equal(write(fx->peer, p, 1), 1);
		assert_int_equal(qmp_process(fx->q), 0);
	}
}

static void test_split_byte_by_byte(void **state)
{
	struct fx *fx = *state;
	write_bytewise(fx, GREETING);
	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_NEGOTIATING);
	int64_t caps = peer_expect(fx, "qmp_capabilities");
	char buf[256];
	snprintf(buf, sizeof(buf), "{\"return\": {}, \"id\": %" PRId64 "}\r\n", caps);
	write_bytewise(fx, buf);
	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_READY);

	struct slot a = { 0 };
	int64_t id = qmp_send(fx->q, "query-status", NULL, slot_cb, &a);
	snprintf(buf, sizeof(buf),
		 "{\"event\": \"STOP\", \"data\": {\"s\": \"\\u00e9\\\"}\"}}"
		 "{\"return\": {\"status\": \"paused\"}, \"id\": %" PRId64 "}",
		 id);
	write_bytewise(fx, buf);
	assert_int_equal(fx->n_events, 1);
	assert_string_equal(fx->ev[0].data, "{\"s\":\"\xc3\xa9\\\"}\"}");
	assert_int_equal(a.calls, 1);
	assert_string_equal(a.ret, "{\"status\":\"paused\"}");
	slot_clear(&a);
}

static void test_crlf_and_pretty(void **state)
{
	struct fx *fx = *state;
	peer_write(fx, "\r\n  \n{\r\n    \"QMP\": {\r\n        \"version\": {\r\n"
		       "            \"qemu\": {\"micro\": 1, \"minor\": 0, \"major\": 8}\r\n"
		       "        },\r\n        \"capabilities\": []\r\n    }\r\n}\r\n\r\n");
	assert_int_equal(qmp_process(fx->q), 0);
	int ma, mi, mc;
	assert_int_equal(qmp_version(fx->q, &ma, &mi, &mc), 0);
	assert_int_equal(ma * 100 + mi * 10 + mc, 801);
	int64_t caps = peer_expect(fx, "qmp_capabilities");
	peer_writef(fx, "{\n    \"return\": {\n    },\n    \"id\": %" PRId64 "\n}\n\t\n", caps);
	assert_int_equal(qmp_process(fx->q), 0);
	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_READY);
	peer_write(fx, "{\n  \"event\": \"RESET\",\n  \"data\": {\n    \"guest\": true\n  }\n}\r\n");
	assert_int_equal(qmp_process(fx->q), 0);
	assert_int_equal(fx->n_events, 1);
	assert_string_equal(fx->ev[0].data, "{\"guest\":true}");
}

/* Writes len bytes from gen() without blocking the test, running the client in between.
 * Returns the client's first error, or 0 once everything was written and read. */
static int pump(struct fx *fx, size_t len, char (*gen)(size_t i, void *arg), void *arg,
		size_t *written)
{
	char chunk[65536];
	size_t off = 0;
	assert_int_equal(uk_set_nonblock(fx->peer, true), 0);
	while (off < len) {
		size_t n = len - off < sizeof(chunk) ? len - off : sizeof(chunk);
		for (size_t i = 0; i < n; i++)
			chunk[i] = gen(off + i, arg);
		ssize_t w = send(fx->peer, chunk, n, MSG_NOSIGNAL);
		if (w > 0)
			off += (size_t)w;
		else if (w < 0 && errno != EAGAIN && errno != EPIPE && errno != ECONNRESET)
			fail_msg("send: %s", strerror(errno));
		int r = qmp_process(fx->q);
		if (r < 0) {
			*written = off;
			return r;
		}
	}
	*written = off;
	return qmp_process(fx->q);
}

struct big {
	size_t len; /* of the whole message, braces included */
};
static const char big_head[] = "{\"event\": \"BIG\", \"data\": {\"s\": \"";
static const char big_tail[] = "\"}}";

static char gen_big(size_t i, void *arg)
{
	const struct big *b = arg;
	size_t head = sizeof(big_head) - 1, tail = sizeof(big_tail) - 1;
	if (i < head)
		return big_head[i];
	if (i >= b->len) /* separator after the message */
		return "\r\n"[(i - b->len) % 2];
	if (i >= b->len - tail)
		return big_tail[i - (b->len - tail)];
	return 'a';
}

static void test_max_size_accepted(void **state)
{
	struct fx *fx = *state;
	make_ready(fx);
	struct big b = { .len = QMP_MAX_MESSAGE };
	size_t written;
	assert_int_equal(pump(fx, b.len + 2, gen_big, &b, &written), 0);
	assert_int_equal(fx->n_events, 1);
	assert_string_equal(fx->ev[0].name, "BIG");
	/* {"s":"aaa..."} */
	assert_int_equal(strlen(fx->ev[0].data), QMP_MAX_MESSAGE - (sizeof(big_head) - 1) -
							  (sizeof(big_tail) - 1) + 8);
	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_READY);
}

static void test_oversized_message(void **state)
{
	struct fx *fx = *state;
	make_ready(fx);
	struct slot a = { 0 };
	assert_true(qmp_send(fx->q, "query-status", NULL, slot_cb, &a) >= 0);
	/* One byte over the limit is refused... */
	struct big b = { .len = QMP_MAX_MESSAGE + 1 };
	size_t written;
	assert_int_equal(pump(fx, b.len, gen_big, &b, &written), -EPROTO);
	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_CLOSED);
	assert_int_equal(fx->n_events, 0);
	assert_int_equal(a.calls, 1);
	assert_string_equal(a.klass, "Disconnected");
	assert_non_null(strstr(a.desc, "larger"));
	assert_int_equal(fx->null_events, 1);
}

static void test_endless_message(void **state)
{
	struct fx *fx = *state;
	make_ready(fx);
	/* ...and a peer that never ends its message is cut off after the limit, not after
	 * whatever it cares to send (64 MiB here, as a bound on the test itself). */
	struct big b = { .len = SIZE_MAX };
	size_t written;
	assert_int_equal(pump(fx, 64u << 20, gen_big, &b, &written), -EPROTO);
	assert_true(written > QMP_MAX_MESSAGE);
	assert_true(written < 2 * QMP_MAX_MESSAGE);
	assert_int_equal(fx->null_events, 1);
	/* The client has shut the socket: nothing more gets through. */
	assert_true(send(fx->peer, "x", 1, MSG_NOSIGNAL) < 0);
}

static void expect_garbage(const char *greeting, const char *garbage)
{
	struct fx *fx;
	assert_int_equal(setup((void **)&fx), 0);
	if (greeting)
		make_ready(fx);
	struct slot a = { 0 };
	assert_true(qmp_send(fx->q, "query-status", NULL, slot_cb, &a) >= 0);
	assert_int_equal(uk_write_all(fx->peer, garbage, strlen(garbage) + 1 /* NUL too */), 0);
	assert_int_equal(qmp_process(fx->q), -EPROTO);
	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_CLOSED);
	assert_int_equal(a.calls, 1);
	assert_string_equal(a.klass, "Disconnected");
	assert_int_equal(fx->null_events, 1);
	/* Later calls report the same end without calling anyone again. */
	assert_int_equal(qmp_process(fx->q), -EPROTO);
	assert_int_equal(a.calls, 1);
	assert_int_equal(fx->null_events, 1);
	assert_int_equal(qmp_send(fx->q, "x", NULL, NULL, NULL), -ENOTCONN);
	assert_int_equal(qmp_poll_events(fx->q), 0);
	teardown((void **)&fx);
}

static void test_garbage(void **state)
{
	(void)state;
	const char *cases[] = {
		"hello\n",
		"[1, 2]\n",
		"42\n",
		"{\"a\": ]}\n",
		"{\"a\": 1,}\n",
		"{\"event\": 5}\n",
		"{\"return\": {}}\n",
		"{\"return\": {}, \"id\": \"abc\"}\n",
		"{\"error\": \"x\", \"id\": 1}\n",
		"{\"a\": \"b\0",
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		expect_garbage(GREETING, cases[i]);
		expect_garbage(NULL, cases[i]);
	}
	expect_garbage(NULL, "{\"QMP\": {\"capabilities\": []}}");
	expect_garbage(NULL, "{\"QMP\": {\"version\": {\"qemu\": {\"major\": \"7\"}}}}");
}

static void test_too_deep(void **state)
{
	struct fx *fx = *state;
	make_ready(fx);
	char buf[1024] = "";
	for (int i = 0; i < 40; i++)
		strcat(buf, "{\"a\":[");
	strcat(buf, "1");
	for (int i = 0; i < 40; i++)
		strcat(buf, "]}");
	peer_write(fx, buf);
	assert_int_equal(qmp_process(fx->q), -EPROTO);
	assert_int_equal(fx->null_events, 1);
}

static void test_unknown_members_ignored(void **state)
{
	struct fx *fx = *state;
	make_ready(fx);
	peer_write(fx, "{\"something\": \"new\"}\n{\"QMP\": {}}\n{\"event\": \"STOP\"}\n");
	assert_int_equal(qmp_process(fx->q), 0);
	assert_int_equal(fx->n_events, 1);
	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_READY);
}

/* ---- end of connection ---- */

static void test_eof_fails_pending(void **state)
{
	struct fx *fx = *state;
	make_ready(fx);
	struct slot a = { 0 }, b = { 0 };
	assert_true(qmp_send(fx->q, "stop", NULL, slot_cb, &a) >= 0);
	assert_true(qmp_send(fx->q, "cont", NULL, slot_cb, &b) >= 0);
	/* What was said before the end is still delivered, first. */
	peer_write(fx, "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false}}\n");
	close(fx->peer);
	fx->peer = -1;
	assert_int_equal(qmp_process(fx->q), -ECONNRESET);
	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_CLOSED);
	assert_int_equal(fx->n_events, 1);
	assert_string_equal(fx->ev[0].name, "SHUTDOWN");
	assert_int_equal(a.calls, 1);
	assert_true(a.is_err);
	assert_string_equal(a.klass, "Disconnected");
	assert_int_equal(b.calls, 1);
	assert_string_equal(b.klass, "Disconnected");
	assert_int_equal(fx->null_events, 1);

	assert_int_equal(qmp_process(fx->q), -ECONNRESET);
	assert_int_equal(fx->null_events, 1);
	assert_int_equal(a.calls + b.calls, 2);
	assert_int_equal(qmp_send(fx->q, "cont", NULL, slot_cb, &a), -ENOTCONN);
	assert_true(qmp_fd(fx->q) >= 0); /* still open, for the owner to unregister */
}

static void test_eof_mid_message(void **state)
{
	struct fx *fx = *state;
	peer_write(fx, "{\"QMP\": {\"vers");
	assert_int_equal(qmp_process(fx->q), 0);
	shutdown(fx->peer, SHUT_WR);
	assert_int_equal(qmp_process(fx->q), -ECONNRESET);
	assert_int_equal(fx->null_events, 1);
}

static void test_no_sigpipe(void **state)
{
	struct fx *fx = *state;
	make_ready(fx);
	close(fx->peer);
	fx->peer = -1;
	struct slot a = { 0 };
	/* The write inside qmp_send fails with EPIPE; we must still be alive, and the
	 * error comes from qmp_process, not from inside qmp_send. */
	assert_true(qmp_send(fx->q, "cont", NULL, slot_cb, &a) >= 0);
	assert_int_equal(a.calls, 0);
	int r = qmp_process(fx->q);
	assert_true(r == -ECONNRESET || r == -EPIPE);
	assert_int_equal(a.calls, 1);
	assert_string_equal(a.klass, "Disconnected");
}

static void test_free_with_pending(void **state)
{
	struct fx *fx = *state;
	make_ready(fx);
	struct slot a = { 0 }, b = { 0 };
	assert_true(qmp_send(fx->q, "stop", NULL, slot_cb, &a) >= 0);
	assert_true(qmp_send(fx->q, "cont", NULL, slot_cb, &b) >= 0);
	qmp_free(fx->q);
	fx->q = NULL;
	assert_int_equal(a.calls, 1);
	assert_string_equal(a.klass, "Disconnected");
	assert_int_equal(b.calls, 1);
	/* The owner is tearing down: no end-of-connection event for it. */
	assert_int_equal(fx->null_events, 0);
	qmp_free(NULL);
}

static void free_in_cb(struct slot *s, qmp *q)
{
	assert_ptr_equal(q, s->fx->q);
	qmp_free(q);
	s->fx->q = NULL;
	qmp_free(q); /* a second call, still inside, is harmless */
}

static void test_free_inside_callback(void **state)
{
	struct fx *fx = *state;
	make_ready(fx);
	struct slot a = { .fx = fx, .then = free_in_cb }, b = { 0 };
	int64_t ida = qmp_send(fx->q, "stop", NULL, slot_cb, &a);
	int64_t idb = qmp_send(fx->q, "cont", NULL, slot_cb, &b);
	peer_writef(fx,
		    "{\"return\": {}, \"id\": %" PRId64 "}{\"event\": \"STOP\"}"
		    "{\"return\": {}, \"id\": %" PRId64 "}\n",
		    ida, idb);
	assert_int_equal(qmp_process(fx->q), -ECANCELED);
	/* Freed on the way out of qmp_process; nothing after the callback was dispatched. */
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 1);
	assert_string_equal(b.klass, "Disconnected");
	assert_int_equal(fx->n_events, 0);
	assert_int_equal(fx->null_events, 0);
	slot_clear(&a);
}

static void free_in_event(qmp *q, const char *event, json_object *data, uint64_t ts, void *userdata)
{
	struct fx *fx = userdata;
	on_event(q, event, data, ts, userdata);
	qmp_free(q);
	fx->q = NULL;
}

static void test_free_inside_event_handler(void **state)
{
	struct fx *fx = *state;
	make_ready(fx);
	qmp_set_event_handler(fx->q, free_in_event, fx);
	peer_write(fx, "{\"event\": \"SHUTDOWN\"}{\"event\": \"STOP\"}");
	close(fx->peer);
	fx->peer = -1;
	assert_int_equal(qmp_process(fx->q), -ECANCELED);
	assert_int_equal(fx->n_events, 1);
	assert_int_equal(fx->null_events, 0);
}

static void free_on_end(qmp *q, const char *event, json_object *data, uint64_t ts, void *userdata)
{
	struct fx *fx = userdata;
	on_event(q, event, data, ts, userdata);
	if (!event) {
		qmp_free(q);
		fx->q = NULL;
	}
}

static void test_free_inside_end_event(void **state)
{
	struct fx *fx = *state;
	make_ready(fx);
	qmp_set_event_handler(fx->q, free_on_end, fx);
	close(fx->peer);
	fx->peer = -1;
	assert_int_equal(qmp_process(fx->q), -ECONNRESET);
	assert_int_equal(fx->null_events, 1);
}

static void send_in_cb(struct slot *s, qmp *q)
{
	s->then_id = qmp_send(q, "cont", NULL, slot_cb, s->then_slot);
	/* Blocking helpers and nested processing are refused inside callbacks. */
	assert_int_equal(qmp_process(q), -EDEADLK);
	uk_error err = { 0 };
	assert_int_equal(qmp_execute(q, "x", json_object_new_object(), 10, NULL, &err), -EDEADLK);
	assert_int_equal(qmp_wait_ready(q, 10, NULL), -EDEADLK);
}

static void test_send_inside_callback(void **state)
{
	struct fx *fx = *state;
	make_ready(fx);
	struct slot b = { 0 };
	struct slot a = { .fx = fx, .then = send_in_cb, .then_slot = &b };
	int64_t ida = qmp_send(fx->q, "stop", NULL, slot_cb, &a);
	assert_int_equal(peer_expect(fx, "stop"), ida);
	peer_writef(fx, "{\"return\": {}, \"id\": %" PRId64 "}\n", ida);
	assert_int_equal(qmp_process(fx->q), 0);
	assert_int_equal(a.calls, 1);
	assert_true(a.then_id >= 0);
	assert_int_equal(peer_expect(fx, "cont"), a.then_id);
	peer_writef(fx, "{\"return\": {}, \"id\": %" PRId64 "}\n", a.then_id);
	assert_int_equal(qmp_process(fx->q), 0);
	assert_int_equal(b.calls, 1);
	slot_clear(&a);
	slot_clear(&b);
}

/* ---- limits and output ---- */

static void test_max_pending(void **state)
{
	struct fx *fx = *state;
	make_ready(fx);
	static struct slot slots[QMP_MAX_PENDING];
	memset(slots, 0, sizeof(slots));
	int64_t first = -1;
	for (int i = 0; i < QMP_MAX_PENDING; i++) {
		int64_t id = qmp_send(fx->q, "query-status", NULL, slot_cb, &slots[i]);
		assert_true(id >= 0);
		if (i == 0)
			first = id;
	}
	struct slot extra = { 0 };
	assert_int_equal(qmp_send(fx->q, "query-status", NULL, slot_cb, &extra), -EBUSY);
	assert_int_equal(qmp_send(fx->q, "query-status", json_object_new_object(), NULL, NULL),
			 -EBUSY);
	for (int i = 0; i < QMP_MAX_PENDING; i++)
		peer_expect(fx, "query-status");

	peer_writef(fx, "{\"return\": {}, \"id\": %" PRId64 "}\n", first);
	assert_int_equal(qmp_process(fx->q), 0);
	assert_int_equal(slots[0].calls, 1);
	assert_true(qmp_send(fx->q, "query-status", NULL, slot_cb, &extra) >= 0);
	assert_int_equal(qmp_send(fx->q, "query-status", NULL, slot_cb, &extra), -EBUSY);

	qmp_free(fx->q);
	fx->q = NULL;
	for (int i = 0; i < QMP_MAX_PENDING; i++) {
		assert_int_equal(slots[i].calls, 1);
		slot_clear(&slots[i]);
	}
	assert_int_equal(extra.calls, 1);
}

static void test_pollout_and_output_bound(void **state)
{
	struct fx *fx = *state;
	make_ready(fx);
	size_t big = 64 * 1024;
	char *s = malloc(big + 1);
	assert_non_null(s);
	memset(s, 'x', big);
	s[big] = '\0';

	/* The peer does not read: output piles up until the bound refuses more. */
	int sent = 0;
	int64_t r = 0;
	while (sent < 1000) {
		json_object *args = json_object_new_object();
		json_object_object_add(args, "blob", json_object_new_string(s));
		r = qmp_send(fx->q, "guest-blob", args, NULL, NULL);
		if (r < 0)
			break;
		sent++;
		assert_int_equal(qmp_process(fx->q), 0);
	}
	free(s);
	assert_int_equal(r, -ENOBUFS);
	assert_true(sent >= 4 * QMP_MAX_MESSAGE / (int)big);
	assert_true(sent < 8 * QMP_MAX_MESSAGE / (int)big);
	assert_int_equal(qmp_poll_events(fx->q), POLLIN | POLLOUT);

	/* The peer drains; every command arrives whole and in order. */
	int64_t last = -1;
	for (int i = 0; i < sent; i++) {
		assert_int_equal(qmp_process(fx->q), 0);
		int64_t id = peer_expect(fx, "guest-blob");
		assert_true(id > last);
		last = id;
	}
	assert_int_equal(qmp_process(fx->q), 0);
	assert_int_equal(qmp_poll_events(fx->q), POLLIN);
	assert_false(peer_has_data(fx));
}

/* ---- blocking helpers ---- */

/* Plays QEMU for the blocking helpers: greets, then answers by command name. */
struct script {
	int fd;
};

static void *peer_thread(void *arg)
{
	struct script *sc = arg;
	if (uk_write_all(sc->fd, GREETING, strlen(GREETING)) < 0)
		return NULL;
	for (;;) {
		_cleanup_json_ json_object *cmd = NULL;
		/* Wait as long as the test needs; EOF ends the thread. */
		struct pollfd p = { .fd = sc->fd, .events = POLLIN };
		if (poll(&p, 1, 5000) != 1)
			return NULL;
		cmd = peer_read_line_fd(sc->fd);
		if (!cmd)
			return NULL;
		json_object *e, *idv;
		if (!json_object_object_get_ex(cmd, "execute", &e) ||
		    !json_object_object_get_ex(cmd, "id", &idv))
			return NULL;
		const char *name = json_object_get_string(e);
		int64_t id = json_object_get_int64(idv);
		char buf[512];
		if (!strcmp(name, "qmp_capabilities"))
			snprintf(buf, sizeof(buf), "{\"return\": {}, \"id\": %" PRId64 "}\r\n", id);
		else if (!strcmp(name, "query-status"))
			snprintf(buf, sizeof(buf),
				 "{\"event\": \"RESUME\"}\r\n{\"return\": {\"status\": \"running\", "
				 "\"running\": true}, \"id\": %" PRId64 "}\r\n",
				 id);
		else if (!strcmp(name, "die")) {
			shutdown(sc->fd, SHUT_RDWR);
			return NULL;
		} else if (!strcmp(name, "hang"))
			continue;
		else
			snprintf(buf, sizeof(buf),
				 "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command "
				 "%s has not been found\"}, \"id\": %" PRId64 "}\r\n",
				 name, id);
		if (uk_write_all(sc->fd, buf, strlen(buf)) < 0)
			return NULL;
	}
}

static void test_execute_success_and_error(void **state)
{
	struct fx *fx = *state;
	struct script sc = { .fd = fx->peer };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, peer_thread, &sc), 0);

	uk_error err = { 0 };
	assert_int_equal(qmp_wait_ready(fx->q, 5000, &err), 0);
	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_READY);
	assert_int_equal(qmp_wait_ready(fx->q, 0, &err), 0); /* already there */

	json_object *ret = NULL;
	assert_int_equal(qmp_execute(fx->q, "query-status", NULL, 5000, &ret, &err), 0);
	assert_non_null(ret);
	json_object *st;
	assert_true(json_object_object_get_ex(ret, "status", &st));
	assert_string_equal(json_object_get_string(st), "running");
	json_object_put(ret);
	assert_int_equal(fx->n_events, 1); /* the event that came first went to the handler */

	ret = (json_object *)&err; /* must be reset */
	assert_int_equal(qmp_execute(fx->q, "boom", json_object_new_object(), 5000, &ret, &err),
			 -EREMOTEIO);
	assert_null(ret);
	assert_int_equal(err.code, EREMOTEIO);
	assert_string_equal(err.msg, "CommandNotFound: The command boom has not been found");
	assert_int_equal(qmp_execute(fx->q, "boom", NULL, 5000, NULL, NULL), -EREMOTEIO);
	assert_int_equal(qmp_execute(fx->q, "query-status", NULL, 5000, NULL, NULL), 0);

	qmp_free(fx->q);
	fx->q = NULL;
	assert_int_equal(pthread_join(th, NULL), 0);
}

static void test_execute_before_ready(void **state)
{
	struct fx *fx = *state;
	struct script sc = { .fd = fx->peer };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, peer_thread, &sc), 0);
	json_object *ret = NULL;
	uk_error err = { 0 };
	/* Negotiation happens inside the wait. */
	assert_int_equal(qmp_execute(fx->q, "query-status", NULL, 5000, &ret, &err), 0);
	json_object_put(ret);
	assert_int_equal(fx->ready_calls, 1);
	qmp_free(fx->q);
	fx->q = NULL;
	assert_int_equal(pthread_join(th, NULL), 0);
}

static void test_execute_timeout(void **state)
{
	struct fx *fx = *state;
	make_ready(fx);
	uk_error err = { 0 };
	json_object *ret = NULL;
	uint64_t t0 = uk_now_mono_ns();
	assert_int_equal(qmp_execute(fx->q, "hang", NULL, 100, &ret, &err), -ETIMEDOUT);
	uint64_t ms = (uk_now_mono_ns() - t0) / 1000000;
	assert_true(ms >= 100);
	assert_true(ms < 2000);
	assert_null(ret);
	assert_int_equal(err.code, ETIMEDOUT);
	assert_non_null(strstr(err.msg, "hang"));

	/* The late reply is recognised and dropped; its slot is freed for reuse. */
	int64_t id = peer_expect(fx, "hang");
	peer_writef(fx, "{\"return\": {\"late\": true}, \"id\": %" PRId64 "}\n", id);
	assert_int_equal(qmp_process(fx->q), 0);
	assert_int_equal(qmp_get_state(fx->q), QMP_STATE_READY);
	for (int i = 0; i < QMP_MAX_PENDING; i++)
		assert_true(qmp_send(fx->q, "x", NULL, NULL, NULL) >= 0);

	/* A zero timeout is one non-blocking pass. */
	assert_int_equal(qmp_wait_ready(fx->q, 0, NULL), 0);
}

static void test_execute_timeout_before_ready(void **state)
{
	struct fx *fx = *state;
	uk_error err = { 0 };
	assert_int_equal(qmp_wait_ready(fx->q, 50, &err), -ETIMEDOUT);
	assert_non_null(strstr(err.msg, "greeting"));
	/* Timed out while still queued: the command is dropped, never sent. */
	assert_int_equal(qmp_execute(fx->q, "hang", NULL, 50, NULL, &err), -ETIMEDOUT);
	make_ready(fx);
	assert_false(peer_has_data(fx));
}

static void test_execute_disconnect(void **state)
{
	struct fx *fx = *state;
	struct script sc = { .fd = fx->peer };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, peer_thread, &sc), 0);
	uk_error err = { 0 };
	assert_int_equal(qmp_wait_ready(fx->q, 5000, &err), 0);
	assert_int_equal(qmp_execute(fx->q, "die", NULL, 5000, NULL, &err), -ECONNRESET);
	assert_non_null(strstr(err.msg, "closed"));
	assert_int_equal(fx->null_events, 1);
	assert_int_equal(qmp_execute(fx->q, "query-status", NULL, 5000, NULL, &err), -ENOTCONN);
	assert_int_equal(qmp_wait_ready(fx->q, 5000, &err), -ECONNRESET);
	assert_int_equal(pthread_join(th, NULL), 0);
}

/* ---- connecting ---- */

static void test_connect_unix(void **state)
{
	(void)state;
	char dir[] = "/tmp/test_qmp.XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128];
	snprintf(path, sizeof(path), "%s/qmp.sock", dir);

	uk_error err = { 0 };
	qmp *q = (qmp *)&err;
	assert_int_equal(qmp_connect_unix(path, &q, &err), -ENOENT);
	assert_null(q);
	assert_non_null(strstr(err.msg, path));

	char longpath[200];
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(qmp_connect_unix(longpath, &q, &err), -ENAMETOOLONG);

	/* A path longer than sun_path whose last component fits: reached through its
	 * directory's fd (a VM directory deep under a long root). */
	char deep[256];
	snprintf(deep, sizeof(deep), "%s/%0120d", dir, 0);
	assert_int_equal(mkdir(deep, 0700), 0);
	char deep_sock[300];
	snprintf(deep_sock, sizeof(deep_sock), "%s/qmp.sock", deep);
	assert_true(strlen(deep_sock) >= sizeof(((struct sockaddr_un *)0)->sun_path));
	int dfd = open(deep, O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	int dl = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un dsa = { .sun_family = AF_UNIX };
	snprintf(dsa.sun_path, sizeof(dsa.sun_path), "/proc/self/fd/%d/qmp.sock", dfd);
	assert_int_equal(bind(dl, (struct sockaddr *)&dsa, sizeof(dsa)), 0);
	assert_int_equal(listen(dl, 1), 0);
	assert_int_equal(qmp_connect_unix(deep_sock, &q, &err), 0);
	qmp_free(q);
	q = NULL;
	close(dl);
	close(dfd);
	assert_int_equal(unlink(deep_sock), 0);
	assert_int_equal(rmdir(deep), 0);

	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(l >= 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	assert_true(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 1), 0);

	assert_int_equal(qmp_connect_unix(path, &q, &err), 0);
	int fd = qmp_fd(q);
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	assert_true(c >= 0);
	assert_int_equal(uk_write_all(c, GREETING, strlen(GREETING)), 0);
	assert_int_equal(qmp_wait_ready(q, 0, NULL), -ETIMEDOUT); /* greeting read, caps sent */
	assert_int_equal(qmp_get_state(q), QMP_STATE_NEGOTIATING);
	qmp_free(q);
	/* The client end is closed: the peer sees the command, then EOF. */
	char buf[256];
	ssize_t n, total = 0;
	while ((n = read(c, buf, sizeof(buf))) > 0)
		total += n;
	assert_int_equal(n, 0);
	assert_true(total > 0);
	close(c);
	close(l);
	unlink(path);
	rmdir(dir);
}

static void test_new_bad_fd(void **state)
{
	(void)state;
	qmp *q = NULL;
	assert_int_equal(qmp_new(-1, &q), -EBADF);
	assert_null(q);
	assert_int_equal(qmp_get_state(NULL), QMP_STATE_CLOSED);
	assert_int_equal(qmp_poll_events(NULL), 0);
}

/* ---- fd passing ---- */

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	int n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own */
}

/* The peer reads byte by byte until n_lines lines have come: an fd arrives with the first
 * byte of the send that carried it, so *fd_at is where that send began (-1: no fd). */
static size_t peer_read_lines_fd(int peer, char *buf, size_t size, int n_lines, ssize_t *fd_at, int *got_fd)
{
	size_t n = 0;
	*fd_at = -1;
	*got_fd = -1;
	while (n_lines > 0 && n + 1 < size) {
		union {
			char b[CMSG_SPACE(sizeof(int) * 4)];
			struct cmsghdr align;
		} c;
		struct iovec iov = { .iov_base = buf + n, .iov_len = 1 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.b, .msg_controllen = sizeof(c.b) };
		struct pollfd p = { .fd = peer, .events = POLLIN };
		assert_int_equal(poll(&p, 1, 1000), 1);
		assert_int_equal(recvmsg(peer, &m, MSG_CMSG_CLOEXEC), 1);
		for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
			assert_int_equal(h->cmsg_type, SCM_RIGHTS);
			assert_int_equal(h->cmsg_len, CMSG_LEN(sizeof(int))); /* one fd, never two at once */
			assert_int_equal(*got_fd, -1);
			memcpy(got_fd, CMSG_DATA(h), sizeof(int));
			*fd_at = (ssize_t)n;
		}
		if (buf[n++] == '\n')
			n_lines--;
	}
	buf[n] = '\0';
	return n;
}

static void assert_same_file(int a, int b)
{
	struct stat sa, sb;
	assert_int_equal(fstat(a, &sa), 0);
	assert_int_equal(fstat(b, &sb), 0);
	assert_true(sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino);
}

static json_object *fdname_args(const char *name)
{
	json_object *a = json_object_new_object();
	json_object_object_add(a, "fdname", json_object_new_string(name));
	return a;
}

static void test_send_fd(void **state)
{
	struct fx *fx = *state;
	int pfd[2];
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	int before = count_fds();
	/* Queued before READY behind a plain command, so both go out from one buffer: the
	 * send must stop where the getfd begins and carry the fd from there. */
	assert_true(qmp_send(fx->q, "query-status", NULL, NULL, NULL) >= 0);
	assert_true(qmp_send_fd(fx->q, "getfd", fdname_args("t0"), pfd[1], NULL, NULL) >= 0);
	assert_int_equal(count_fds(), before + 1); /* the engine's copy; the caller keeps its own */
	assert_true(fcntl(pfd[1], F_GETFD) >= 0);
	make_ready(fx);
	char buf[512];
	ssize_t at;
	int got;
	peer_read_lines_fd(fx->peer, buf, sizeof(buf), 2, &at, &got);
	const char *second = strchr(buf, '\n') + 1;
	assert_true(strncmp(second, "{\"execute\":\"getfd\",", strlen("{\"execute\":\"getfd\",")) == 0);
	assert_int_equal(at, second - buf);
	assert_true(got >= 0);
	assert_same_file(got, pfd[1]);
	/* Gone out: the engine closed its copy; what is left is the peer's. */
	assert_int_equal(count_fds(), before + 1);
	close(got);
	assert_int_equal(count_fds(), before);

	/* Once READY, another goes out at once, with its own first byte. */
	assert_true(qmp_send_fd(fx->q, "getfd", fdname_args("t1"), pfd[0], NULL, NULL) >= 0);
	assert_true(qmp_send(fx->q, "query-status", NULL, NULL, NULL) >= 0);
	peer_read_lines_fd(fx->peer, buf, sizeof(buf), 2, &at, &got);
	assert_int_equal(at, 0);
	assert_same_file(got, pfd[0]);
	close(got);
	assert_int_equal(count_fds(), before);
	close(pfd[0]);
	close(pfd[1]);
}

static void test_send_fd_bounds(void **state)
{
	struct fx *fx = *state;
	int pfd[2];
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	int before = count_fds();
	assert_int_equal(qmp_send_fd(fx->q, "getfd", fdname_args("x"), -1, NULL, NULL), -EBADF);
	/* Before READY they wait, at most QMP_MAX_FDS of them. */
	for (int i = 0; i < QMP_MAX_FDS; i++)
		assert_true(qmp_send_fd(fx->q, "getfd", fdname_args("x"), pfd[0], NULL, NULL) >= 0);
	assert_int_equal(qmp_send_fd(fx->q, "getfd", fdname_args("x"), pfd[0], NULL, NULL), -EBUSY);
	assert_true(qmp_send(fx->q, "query-status", NULL, NULL, NULL) >= 0); /* plain ones still go */
	assert_int_equal(count_fds(), before + QMP_MAX_FDS);
	/* Never sent: every copy goes with the object (and so does its socket). */
	qmp_free(fx->q);
	fx->q = NULL;
	assert_int_equal(count_fds(), before - 1);
	close(pfd[0]);
	close(pfd[1]);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_greeting_version),
		T(test_negotiation),
		T(test_queued_before_ready),
		T(test_ready_handler_sends_after_queue),
		T(test_caps_failure),
		T(test_bad_greeting),
		T(test_out_of_order_replies),
		T(test_error_reply),
		T(test_unknown_id),
		T(test_send_invalid),
		T(test_events),
		T(test_event_while_negotiating),
		T(test_several_in_one_write),
		T(test_split_byte_by_byte),
		T(test_crlf_and_pretty),
		T(test_max_size_accepted),
		T(test_oversized_message),
		T(test_endless_message),
		cmocka_unit_test(test_garbage),
		T(test_too_deep),
		T(test_unknown_members_ignored),
		T(test_eof_fails_pending),
		T(test_eof_mid_message),
		T(test_no_sigpipe),
		T(test_free_with_pending),
		T(test_free_inside_callback),
		T(test_free_inside_event_handler),
		T(test_free_inside_end_event),
		T(test_send_inside_callback),
		T(test_max_pending),
		T(test_pollout_and_output_bound),
		T(test_execute_success_and_error),
		T(test_execute_before_ready),
		T(test_execute_timeout),
		T(test_execute_timeout_before_ready),
		T(test_execute_disconnect),
		T(test_send_fd),
		T(test_send_fd_bounds),
		cmocka_unit_test(test_connect_unix),
		cmocka_unit_test(test_new_bad_fd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
