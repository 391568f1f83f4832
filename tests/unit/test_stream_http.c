/* Unit tests for the HTTP upgrade before SPDY: the request heads kubelet and crictl send,
 * every way a head can be wrong, split input, and the exact responses. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/stream/http.h"

/* What kubelet's SPDY round tripper sends for kubectl attach (Go's net/http writes the
 * Host line first and canonical header names). */
static const char kubelet_attach[] = "POST /attach/Zm9vYmFy?stdin=1&stdout=1 HTTP/1.1\r\n"
				     "Host: 127.0.0.1:42123\r\n"
				     "User-Agent: Go-http-client/1.1\r\n"
				     "Content-Length: 0\r\n"
				     "Connection: Upgrade\r\n"
				     "Upgrade: SPDY/3.1\r\n"
				     "X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
				     "X-Stream-Protocol-Version: v3.channel.k8s.io\r\n"
				     "X-Stream-Protocol-Version: v2.channel.k8s.io\r\n"
				     "X-Stream-Protocol-Version: channel.k8s.io\r\n"
				     "\r\n";

static const char *const attach_ours[] = { "v4.channel.k8s.io", "v3.channel.k8s.io" };
static const char *const pf_ours[] = { "portforward.k8s.io" };

static int parse(const char *s, struct http_request *req, uk_error *err)
{
	return http_parse_request(s, strlen(s), req, err);
}

static void test_kubelet_attach(void **state)
{
	(void)state;
	struct http_request req;
	uk_error err = { 0 };
	/* SPDY bytes after the head are not the head's. */
	char buf[1024];
	memcpy(buf, kubelet_attach, strlen(kubelet_attach));
	memcpy(buf + strlen(kubelet_attach), "\x80\x03\x00\x01", 4);
	assert_int_equal(http_parse_request(buf, strlen(kubelet_attach) + 4, &req, &err), 0);
	assert_string_equal(req.method, "POST");
	assert_string_equal(req.path, "/attach/Zm9vYmFy");
	assert_true(req.upgrade_spdy);
	assert_false(req.upgrade_websocket);
	assert_int_equal(req.n_protocols, 4);
	assert_string_equal(req.protocols[0], "v4.channel.k8s.io");
	assert_string_equal(req.protocols[3], "channel.k8s.io");
	assert_int_equal(req.head_len, strlen(kubelet_attach));
	assert_string_equal(http_pick_protocol(&req, attach_ours, 2), "v4.channel.k8s.io");
	assert_null(http_pick_protocol(&req, pf_ours, 1));
}

/* The head may come a byte at a time: -EAGAIN until the blank line, then the same result. */
static void test_split_input(void **state)
{
	(void)state;
	size_t n = strlen(kubelet_attach);
	for (size_t i = 0; i < n; i++) {
		struct http_request req;
		uk_error err = { 0 };
		int r = http_parse_request(kubelet_attach, i, &req, &err);
		if (r != -EAGAIN)
			fail_msg("%zu bytes: %d %s", i, r, err.msg);
	}
	struct http_request req;
	assert_int_equal(http_parse_request(kubelet_attach, n, &req, NULL), 0);
	assert_int_equal(req.n_protocols, 4);
}

/* Header names in any case, comma lists, spaces and tabs around values, and the client's
 * order wins over ours. */
static void test_case_and_lists(void **state)
{
	(void)state;
	struct http_request req;
	assert_int_equal(parse("GET /portforward/abc HTTP/1.0\r\n"
			       "connection: keep-alive, UPGRADE\r\n"
			       "UPGRADE:spdy/3.1\r\n"
			       "x-stream-protocol-version: \t foo ,, portforward.k8s.io ,bar\t\r\n"
			       "X-STREAM-PROTOCOL-VERSION: baz\r\n"
			       "\r\n",
			       &req, NULL),
			 0);
	assert_string_equal(req.method, "GET");
	assert_string_equal(req.path, "/portforward/abc");
	assert_true(req.upgrade_spdy);
	assert_int_equal(req.n_protocols, 4);
	assert_string_equal(req.protocols[0], "foo");
	assert_string_equal(req.protocols[1], "portforward.k8s.io");
	assert_string_equal(req.protocols[2], "bar");
	assert_string_equal(req.protocols[3], "baz");
	assert_string_equal(http_pick_protocol(&req, pf_ours, 1), "portforward.k8s.io");
	const char *const two[] = { "baz", "bar" };
	assert_string_equal(http_pick_protocol(&req, two, 2), "bar"); /* the client's order */
	/* Protocol names are compared exactly. */
	const char *const upper[] = { "PORTFORWARD.K8S.IO" };
	assert_null(http_pick_protocol(&req, upper, 1));
}

static void test_upgrade_flags(void **state)
{
	(void)state;
	struct http_request req;
	/* Upgrade without Connection: Upgrade is not an upgrade. */
	assert_int_equal(parse("POST /attach/t HTTP/1.1\r\nUpgrade: SPDY/3.1\r\n\r\n", &req, NULL), 0);
	assert_false(req.upgrade_spdy);
	assert_int_equal(req.n_protocols, 0);
	/* Nor another protocol, nor another SPDY. */
	assert_int_equal(parse("POST /attach/t HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: SPDY/3\r\n\r\n", &req, NULL), 0);
	assert_false(req.upgrade_spdy);
	assert_int_equal(parse("POST /attach/t HTTP/1.1\r\nConnection: Upgrade2\r\nUpgrade: SPDY/3.1\r\n\r\n", &req, NULL), 0);
	assert_false(req.upgrade_spdy);
	/* A newer kubectl's WebSocket upgrade is flagged, to be answered with a 4xx. */
	assert_int_equal(parse("GET /attach/t HTTP/1.1\r\n"
			       "Connection: Upgrade\r\n"
			       "Upgrade: websocket\r\n"
			       "Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n"
			       "\r\n",
			       &req, NULL),
			 0);
	assert_true(req.upgrade_websocket);
	assert_false(req.upgrade_spdy);
	assert_int_equal(parse("GET / HTTP/1.1\r\nUpgrade: h2c, WebSocket\r\n\r\n", &req, NULL), 0);
	assert_true(req.upgrade_websocket);
	/* No headers at all. */
	assert_int_equal(parse("GET / HTTP/1.1\r\n\r\n", &req, NULL), 0);
	assert_int_equal(req.head_len, 18);
	assert_false(req.upgrade_spdy || req.upgrade_websocket);
}

static void expect_invalid(const char *head, int code, const char *msg)
{
	struct http_request req;
	uk_error err = { 0 };
	int r = parse(head, &req, &err);
	if (r != code || !strstr(err.msg, msg))
		fail_msg("'%s': %d '%s', wanted %d '%s'", head, r, err.msg, code, msg);
	/* Nothing half-parsed is left for a careless caller. */
	assert_int_equal(req.n_protocols, 0);
	assert_false(req.upgrade_spdy);
}

static void test_bad_heads(void **state)
{
	(void)state;
	/* Not HTTP: refused on the first bytes, without waiting for a whole head. */
	expect_invalid("\x80\x03\x00\x01", -EINVAL, "not an HTTP request: byte 0x80 at 0");
	expect_invalid("\x16\x03\x01", -EINVAL, "byte 0x16"); /* a TLS ClientHello */
	expect_invalid(" GET", -EINVAL, "byte 0x20 at 0");
	expect_invalid("ABCDEFGHIJKLMNOPQRS", -EINVAL, "no method in the first 16 bytes");
	expect_invalid("SSH-2.0-OpenSSH_9.2\r\n", -EINVAL, "no method in the first 16 bytes");
	/* Request lines. */
	expect_invalid("GET\r\n\r\n", -EINVAL, "byte 0x0d at 3");
	expect_invalid("GET /\r\n\r\n", -EINVAL, "no HTTP version");
	expect_invalid("GET / HTTP/2.0\r\n\r\n", -EINVAL, "not HTTP/1.x");
	expect_invalid("GET / HTTP/1.1x\r\n\r\n", -EINVAL, "not HTTP/1.x");
	expect_invalid("GET / HTTP/1.2\r\n\r\n", -EINVAL, "not HTTP/1.x");
	expect_invalid("GET  / HTTP/1.1\r\n\r\n", -EINVAL, "not HTTP/1.x");
	expect_invalid("GET x HTTP/1.1\r\n\r\n", -EINVAL, "does not start with '/'");
	expect_invalid("GET http://x/ HTTP/1.1\r\n\r\n", -EINVAL, "does not start with '/'");
	expect_invalid("GET /a\x7f HTTP/1.1\r\n\r\n", -EINVAL, "target has a byte 0x7f");
	expect_invalid("GET /a b HTTP/1.1\r\n\r\n", -EINVAL, "not HTTP/1.x");
	expect_invalid("GE@T / HTTP/1.1\r\n\r\n", -EINVAL, "byte 0x40");
	expect_invalid("VERYLONGMETHODNAME / HTTP/1.1\r\n\r\n", -EINVAL, "no method in the first 16");
	/* The longest method kept whole. */
	struct http_request req;
	assert_int_equal(parse("LONGMETHODNAME1 / HTTP/1.1\r\n\r\n", &req, NULL), 0);
	assert_string_equal(req.method, "LONGMETHODNAME1");
	/* Header lines. */
	expect_invalid("GET / HTTP/1.1\r\nNoColon\r\n\r\n", -EINVAL, "without a name");
	expect_invalid("GET / HTTP/1.1\r\n: v\r\n\r\n", -EINVAL, "without a name");
	expect_invalid("GET / HTTP/1.1\r\nBad Name: v\r\n\r\n", -EINVAL, "header name 'Bad Name' has a byte 0x20");
	expect_invalid("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", -EINVAL, "folded");
	expect_invalid("GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", -EINVAL, "header A: value has a control byte 0x01");
	expect_invalid("GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n", -EINVAL, "control byte 0x7f");
}

/* CR or LF alone could end a header early, or smuggle one in: never accepted. */
static void test_injection(void **state)
{
	(void)state;
	expect_invalid("GET / HTTP/1.1\r\nX-Stream-Protocol-Version: a\rUpgrade: SPDY/3.1\r\n\r\n", -EINVAL,
		       "bare CR");
	expect_invalid("GET / HTTP/1.1\r\nX-Stream-Protocol-Version: a\nUpgrade: SPDY/3.1\r\n\r\n", -EINVAL,
		       "bare LF");
	expect_invalid("GET / HTTP/1.1\n\n", -EINVAL, "bare LF at byte 14");
	expect_invalid("GET /\r HTTP/1.1\r\n\r\n", -EINVAL, "bare CR at byte 5");
	/* A NUL in a value. */
	struct http_request req;
	uk_error err = { 0 };
	static const char nul[] = "GET / HTTP/1.1\r\nA: x\0y\r\n\r\n";
	assert_int_equal(http_parse_request(nul, sizeof(nul) - 1, &req, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "control byte 0x00"));
	/* Bytes from 0x80 in a value are opaque, and fine. */
	assert_int_equal(parse("GET / HTTP/1.1\r\nUser-Agent: caf\xc3\xa9\r\n\r\n", &req, NULL), 0);
	/* The responses refuse values that would break their lines. */
	char buf[512];
	assert_int_equal(http_response_switch(buf, sizeof(buf), "v4\r\nSet-Cookie: x"), -EINVAL);
	const char *const bad[] = { "ok", "x\ny" };
	assert_int_equal(http_response_no_protocol(buf, sizeof(buf), bad, 2), -EINVAL);
}

static void test_limits(void **state)
{
	(void)state;
	struct http_request req;
	uk_error err = { 0 };
	/* A head that never ends: -EAGAIN up to the limit, then -E2BIG. */
	char *big = malloc(HTTP_MAX_HEAD + 64);
	assert_non_null(big);
	size_t n = (size_t)snprintf(big, HTTP_MAX_HEAD + 64, "GET / HTTP/1.1\r\n");
	while (n < HTTP_MAX_HEAD + 32)
		n += (size_t)snprintf(big + n, HTTP_MAX_HEAD + 64 - n, "A: b\r\n");
	assert_int_equal(http_parse_request(big, HTTP_MAX_HEAD - 1, &req, &err), -EAGAIN);
	assert_int_equal(http_parse_request(big, HTTP_MAX_HEAD, &req, &err), -E2BIG);
	assert_non_null(strstr(err.msg, "HTTP_MAX_HEAD"));
	assert_int_equal(http_parse_request(big, n, &req, &err), -E2BIG);
	/* A head of exactly HTTP_MAX_HEAD bytes is fine; one more byte is not. */
	size_t fill = HTTP_MAX_HEAD - strlen("GET / HTTP/1.1\r\nA: \r\n\r\n");
	n = (size_t)snprintf(big, HTTP_MAX_HEAD + 64, "GET / HTTP/1.1\r\nA: %0*d\r\n\r\n", (int)fill, 0);
	assert_int_equal(n, HTTP_MAX_HEAD);
	assert_int_equal(http_parse_request(big, n, &req, NULL), 0);
	assert_int_equal(req.head_len, HTTP_MAX_HEAD);
	n = (size_t)snprintf(big, HTTP_MAX_HEAD + 64, "GET / HTTP/1.1\r\nA: %0*d\r\n\r\n", (int)fill + 1, 0);
	assert_int_equal(http_parse_request(big, n, &req, NULL), -E2BIG);

	/* The path (without its query) fits 511 bytes. */
	n = (size_t)snprintf(big, HTTP_MAX_HEAD + 64, "GET /%0510d?q=%0600d HTTP/1.1\r\n\r\n", 0, 0);
	assert_int_equal(http_parse_request(big, n, &req, NULL), 0);
	assert_int_equal(strlen(req.path), 511);
	n = (size_t)snprintf(big, HTTP_MAX_HEAD + 64, "GET /%0511d HTTP/1.1\r\n\r\n", 0);
	assert_int_equal(http_parse_request(big, n, &req, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "request path of 512 bytes"));

	/* Protocols: at most HTTP_MAX_PROTOCOLS, each under 64 bytes; more is an error, not a
	 * silent cut. */
	n = (size_t)snprintf(big, HTTP_MAX_HEAD + 64, "GET / HTTP/1.1\r\nX-Stream-Protocol-Version: ");
	for (int i = 0; i < HTTP_MAX_PROTOCOLS; i++)
		n += (size_t)snprintf(big + n, HTTP_MAX_HEAD + 64 - n, "p%d,", i);
	snprintf(big + n, HTTP_MAX_HEAD + 64 - n, "\r\n\r\n");
	assert_int_equal(parse(big, &req, NULL), 0);
	assert_int_equal(req.n_protocols, HTTP_MAX_PROTOCOLS);
	snprintf(big + n, HTTP_MAX_HEAD + 64 - n, "one-more\r\n\r\n");
	expect_invalid(big, -EINVAL, "more than 16 X-Stream-Protocol-Version values");
	snprintf(big, HTTP_MAX_HEAD + 64, "GET / HTTP/1.1\r\nX-Stream-Protocol-Version: %064d\r\n\r\n", 0);
	expect_invalid(big, -EINVAL, "X-Stream-Protocol-Version value of 64 bytes");
	snprintf(big, HTTP_MAX_HEAD + 64, "GET / HTTP/1.1\r\nX-Stream-Protocol-Version: %063d\r\n\r\n", 0);
	assert_int_equal(parse(big, &req, NULL), 0);
	free(big);
}

static void test_responses(void **state)
{
	(void)state;
	char buf[1024];
	static const char sw[] = "HTTP/1.1 101 Switching Protocols\r\n"
				 "Connection: Upgrade\r\n"
				 "Upgrade: SPDY/3.1\r\n"
				 "X-Stream-Protocol-Version: portforward.k8s.io\r\n"
				 "\r\n";
	assert_int_equal(http_response_switch(buf, sizeof(buf), "portforward.k8s.io"), (int)strlen(sw));
	assert_string_equal(buf, sw);
	/* Without a protocol (a client that offered none): no protocol header. */
	assert_int_equal(http_response_switch(buf, sizeof(buf), NULL), 76);
	assert_string_equal(buf, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n");
	assert_int_equal(http_response_switch(buf, sizeof(sw) - 1, "portforward.k8s.io"), -ENOSPC);
	assert_int_equal(http_response_switch(buf, sizeof(sw), "portforward.k8s.io"), (int)strlen(sw));

	static const char e404[] = "HTTP/1.1 404 Not Found\r\n"
				   "Content-Type: text/plain; charset=utf-8\r\n"
				   "X-Content-Type-Options: nosniff\r\n"
				   "Content-Length: 14\r\n"
				   "Connection: close\r\n"
				   "\r\n"
				   "unknown token\n";
	assert_int_equal(http_response_error(buf, sizeof(buf), 404, "unknown token"), (int)strlen(e404));
	assert_string_equal(buf, e404);
	int codes[] = { 400, 403, 405, 408, 426, 431, 500, 501, 503, 599 };
	const char *reasons[] = { "Bad Request", "Forbidden", "Method Not Allowed", "Request Timeout",
				  "Upgrade Required", "Request Header Fields Too Large", "Internal Server Error",
				  "Not Implemented", "Service Unavailable", "Error" };
	for (size_t i = 0; i < 10; i++) {
		char want[128];
		snprintf(want, sizeof(want), "HTTP/1.1 %d %s\r\n", codes[i], reasons[i]);
		assert_true(http_response_error(buf, sizeof(buf), codes[i], "x") > 0);
		assert_memory_equal(buf, want, strlen(want));
	}
	assert_int_equal(http_response_error(buf, sizeof(buf), 200, "x"), -EINVAL);
	assert_int_equal(http_response_error(buf, sizeof(buf), 600, "x"), -EINVAL);
	assert_int_equal(http_response_error(buf, 10, 404, "x"), -ENOSPC);
	/* The body is text; a CR or LF there ends no header. */
	assert_true(http_response_error(buf, sizeof(buf), 400, "a\r\nb") > 0);
	assert_non_null(strstr(buf, "Content-Length: 5\r\nConnection: close\r\n\r\na\r\nb\n"));

	static const char e403[] = "HTTP/1.1 403 Forbidden\r\n"
				   "X-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io\r\n"
				   "X-Accepted-Stream-Protocol-Versions: v3.channel.k8s.io\r\n"
				   "Content-Type: text/plain; charset=utf-8\r\n"
				   "X-Content-Type-Options: nosniff\r\n"
				   "Content-Length: 53\r\n"
				   "Connection: close\r\n"
				   "\r\n"
				   "unable to upgrade: no common stream protocol version\n";
	assert_int_equal(http_response_no_protocol(buf, sizeof(buf), attach_ours, 2), (int)strlen(e403));
	assert_string_equal(buf, e403);
	assert_int_equal(http_response_no_protocol(buf, 100, attach_ours, 2), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kubelet_attach), cmocka_unit_test(test_split_input),
		cmocka_unit_test(test_case_and_lists), cmocka_unit_test(test_upgrade_flags),
		cmocka_unit_test(test_bad_heads),      cmocka_unit_test(test_injection),
		cmocka_unit_test(test_limits),         cmocka_unit_test(test_responses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
