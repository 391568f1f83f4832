/* The HTTP/1.1 side of a streaming connection: the upgrade request kubelet (or crictl) sends
 * before SPDY, and the answers to it. Pure: bytes in, a parsed request or a response out. */
#ifndef UK_STREAM_HTTP_H
#define UK_STREAM_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "../common/error.h"

/* The request head (request line and headers) is at most this long. */
#define HTTP_MAX_HEAD 8192
/* At most this many X-Stream-Protocol-Version values, each under 64 bytes; more is -EINVAL
 * (kubelet offers four for attach, one for port-forward). */
#define HTTP_MAX_PROTOCOLS 16

struct http_request {
	char method[16];
	char path[512];   /* the request target, e.g. /attach/TOKEN; no query kept */
	bool upgrade_spdy;      /* Connection: Upgrade and Upgrade: SPDY/3.1 (case-insensitive) */
	bool upgrade_websocket; /* Upgrade: websocket */
	/* X-Stream-Protocol-Version values, in the client's order (repeated headers and
	 * comma-separated lists both count). */
	char protocols[HTTP_MAX_PROTOCOLS][64];
	size_t n_protocols;
	size_t head_len; /* bytes of the head, CRLFCRLF included: SPDY starts after them */
};

/* Parse the head at the start of buf. -EAGAIN: incomplete (read more, up to HTTP_MAX_HEAD);
 * -E2BIG: the head is over HTTP_MAX_HEAD; -EINVAL: not HTTP/1.x, with err naming what.
 * Lines end with CRLF: a bare CR or LF anywhere is -EINVAL, as are folded lines, control
 * bytes in values and header names that are not tokens. Header names match in any case.
 * What cannot start an HTTP request line (binary, TLS, SPDY without the upgrade) fails on
 * its first bytes, without waiting for a whole head. On an error *req is zeroed. */
int http_parse_request(const char *buf, size_t n, struct http_request *req, uk_error *err);

/* The first of the client's protocols that is in ours (in the client's order), or NULL. */
const char *http_pick_protocol(const struct http_request *req, const char *const *ours, size_t n_ours);

/* Responses, written into buf (NUL-terminated); the length, or -ENOSPC when it does not fit.
 * 101 Switching Protocols to SPDY/3.1 with the chosen X-Stream-Protocol-Version; an error with
 * its status line and a short text body (Connection: close); 403 with
 * X-Accepted-Stream-Protocol-Versions listing ours (one header line each, as Kubernetes'
 * servers answer). -EINVAL for a status outside 400-599 or a protocol with a control byte,
 * which could end a header line early. */
int http_response_switch(char *buf, size_t len, const char *protocol); /* NULL/"": no header */
int http_response_error(char *buf, size_t len, int status, const char *text);
int http_response_no_protocol(char *buf, size_t len, const char *const *ours, size_t n_ours);

#endif
