/* The HTTP/1.1 upgrade request before SPDY, and the answers to it; see http.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http.h"

/* RFC 9110's token characters: methods and header names. */
static bool is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A header value's characters: visible ASCII, spaces, tabs, and bytes from 0x80 (opaque);
 * no control character, so a CR or LF can never ride inside one. */
static bool is_vchar(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* Calls fn for each element of a comma-separated list, trimmed, empty ones skipped. */
static int each_element(const char *v, size_t n, int (*fn)(const char *e, size_t len, void *ud), void *ud)
{
	size_t i = 0;
	while (i < n) {
		size_t start = i;
		while (i < n && v[i] != ',')
			i++;
		size_t end = i++;
		while (start < end && is_ows(v[start]))
			start++;
		while (end > start && is_ows(v[end - 1]))
			end--;
		if (end > start) {
			int r = fn(v + start, end - start, ud);
			if (r != 0)
				return r;
		}
	}
	return 0;
}

struct match {
	const char *want;
	bool found;
};

static int match_element(const char *e, size_t len, void *ud)
{
	struct match *m = ud;
	if (len == strlen(m->want) && strncasecmp(e, m->want, len) == 0)
		m->found = true;
	return 0;
}

static bool list_has(const char *v, size_t n, const char *want)
{
	struct match m = { .want = want };
	(void)each_element(v, n, match_element, &m); /* match_element never fails */
	return m.found;
}

struct protocols {
	struct http_request *req;
	uk_error *err;
};

static int add_protocol(const char *e, size_t len, void *ud)
{
	struct protocols *p = ud;
	struct http_request *req = p->req;
	if (req->n_protocols >= HTTP_MAX_PROTOCOLS)
		return uk_err(p->err, EINVAL, "more than %d X-Stream-Protocol-Version values", HTTP_MAX_PROTOCOLS);
	if (len >= sizeof(req->protocols[0]))
		return uk_err(p->err, EINVAL, "X-Stream-Protocol-Version value of %zu bytes (at most %zu)", len,
			      sizeof(req->protocols[0]) - 1);
	memcpy(req->protocols[req->n_protocols], e, len);
	req->protocols[req->n_protocols++][len] = '\0';
	return 0;
}

/* Where the head ends (after CRLFCRLF), or 0. A bare CR or LF anywhere is -EINVAL: a head
 * is CRLF-delimited, and a lone one is how header injection and smuggling start. */
static int find_end(const char *buf, size_t n, size_t *end, uk_error *err)
{
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\r') {
			if (i + 1 == n)
				break;
			if (buf[i + 1] != '\n')
				return uk_err(err, EINVAL, "bare CR at byte %zu of the request head", i);
			if (i + 3 < n && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
				*end = i + 4;
				return 0;
			}
			i++;
		} else if (buf[i] == '\n') {
			return uk_err(err, EINVAL, "bare LF at byte %zu of the request head", i);
		}
	}
	*end = 0;
	return 0;
}

static int parse_request_line(const char *l, size_t n, struct http_request *req, uk_error *err)
{
	const char *sp1 = memchr(l, ' ', n);
	if (!sp1 || sp1 == l)
		return uk_err(err, EINVAL, "request line has no method");
	size_t ml = (size_t)(sp1 - l);
	if (ml >= sizeof(req->method)) /* check_prefix stops longer ones first; kept for the copy */
		return uk_err(err, EINVAL, "method of %zu bytes (at most %zu)", ml, sizeof(req->method) - 1);
	for (size_t i = 0; i < ml; i++)
		if (!is_tchar((unsigned char)l[i]))
			return uk_err(err, EINVAL, "method has a byte 0x%02x", (unsigned char)l[i]);
	const char *t = sp1 + 1, *end = l + n;
	const char *sp2 = memchr(t, ' ', (size_t)(end - t));
	if (!sp2)
		return uk_err(err, EINVAL, "request line has no HTTP version");
	if (end - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || (sp2[8] != '0' && sp2[8] != '1'))
		return uk_err(err, EINVAL, "not HTTP/1.x: the request line ends '%.*s'", (int)(end - sp2 - 1 > 16 ? 16 : end - sp2 - 1),
			      sp2 + 1);
	size_t tl = (size_t)(sp2 - t);
	if (tl == 0 || t[0] != '/')
		return uk_err(err, EINVAL, "request target does not start with '/'");
	for (size_t i = 0; i < tl; i++)
		if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
			return uk_err(err, EINVAL, "request target has a byte 0x%02x", (unsigned char)t[i]);
	const char *q = memchr(t, '?', tl);
	size_t pl = q ? (size_t)(q - t) : tl;
	if (pl >= sizeof(req->path))
		return uk_err(err, EINVAL, "request path of %zu bytes (at most %zu)", pl, sizeof(req->path) - 1);
	memcpy(req->method, l, ml);
	req->method[ml] = '\0';
	memcpy(req->path, t, pl);
	req->path[pl] = '\0';
	return 0;
}

struct upgrade_state {
	bool connection_upgrade, upgrade_spdy;
};

static int parse_header(const char *l, size_t n, struct http_request *req, struct upgrade_state *u, uk_error *err)
{
	if (is_ows(l[0]))
		return uk_err(err, EINVAL, "folded header line (obsolete line folding)");
	const char *colon = memchr(l, ':', n);
	if (!colon || colon == l)
		return uk_err(err, EINVAL, "header line without a name");
	size_t nl = (size_t)(colon - l);
	for (size_t i = 0; i < nl; i++)
		if (!is_tchar((unsigned char)l[i]))
			return uk_err(err, EINVAL, "header name '%.*s' has a byte 0x%02x", (int)nl, l, (unsigned char)l[i]);
	const char *v = colon + 1, *end = l + n;
	for (const char *c = v; c < end; c++)
		if (!is_vchar((unsigned char)*c))
			return uk_err(err, EINVAL, "header %.*s: value has a control byte 0x%02x", (int)nl, l,
				      (unsigned char)*c);
	while (v < end && is_ows(*v))
		v++;
	while (end > v && is_ows(end[-1]))
		end--;
	size_t vl = (size_t)(end - v);
	if (nl == 10 && strncasecmp(l, "Connection", nl) == 0) {
		u->connection_upgrade |= list_has(v, vl, "upgrade");
	} else if (nl == 7 && strncasecmp(l, "Upgrade", nl) == 0) {
		u->upgrade_spdy |= list_has(v, vl, "SPDY/3.1");
		req->upgrade_websocket |= list_has(v, vl, "websocket");
	} else if (nl == 25 && strncasecmp(l, "X-Stream-Protocol-Version", nl) == 0) {
		struct protocols p = { .req = req, .err = err };
		return each_element(v, vl, add_protocol, &p);
	}
	return 0;
}

/* An early no for what cannot become an HTTP request line, so that a client that is not
 * speaking HTTP is not waited on for a whole head. */
static int check_prefix(const char *buf, size_t n, uk_error *err)
{
	for (size_t i = 0; i < n && i < 16; i++) {
		if (buf[i] == ' ' && i > 0)
			return 0;
		if (!is_tchar((unsigned char)buf[i]))
			return uk_err(err, EINVAL, "not an HTTP request: byte 0x%02x at %zu", (unsigned char)buf[i], i);
	}
	if (n >= 16)
		return uk_err(err, EINVAL, "not an HTTP request: no method in the first 16 bytes");
	return 0;
}

int http_parse_request(const char *buf, size_t n, struct http_request *req, uk_error *err)
{
	*req = (struct http_request){ 0 };
	int r = check_prefix(buf, n, err);
	if (r < 0)
		return r;
	size_t end;
	r = find_end(buf, n < HTTP_MAX_HEAD ? n : HTTP_MAX_HEAD, &end, err);
	if (r < 0)
		return r;
	if (end == 0) {
		if (n >= HTTP_MAX_HEAD)
			return uk_err(err, E2BIG, "request head passes %d bytes (HTTP_MAX_HEAD)", HTTP_MAX_HEAD);
		return -EAGAIN;
	}
	struct upgrade_state u = { 0 };
	const char *l = buf, *stop = buf + end - 2; /* the last line is the empty one */
	for (bool first = true; l < stop; first = false) {
		const char *eol = memmem(l, (size_t)(stop - l), "\r\n", 2);
		size_t len = (size_t)(eol - l);
		r = first ? parse_request_line(l, len, req, err) : parse_header(l, len, req, &u, err);
		if (r < 0) {
			*req = (struct http_request){ 0 };
			return r;
		}
		l = eol + 2;
	}
	req->upgrade_spdy = u.connection_upgrade && u.upgrade_spdy;
	req->head_len = end;
	return 0;
}

const char *http_pick_protocol(const struct http_request *req, const char *const *ours, size_t n_ours)
{
	for (size_t i = 0; i < req->n_protocols; i++)
		for (size_t j = 0; j < n_ours; j++)
			if (strcmp(req->protocols[i], ours[j]) == 0)
				return ours[j];
	return NULL;
}

/* A value we put in a header: no control characters, so nothing can end the line early. */
static bool safe_value(const char *v)
{
	for (; *v; v++)
		if (!is_vchar((unsigned char)*v))
			return false;
	return true;
}

static int finish(int n, size_t len)
{
	if (n < 0)
		return -EINVAL;
	return (size_t)n < len ? n : -ENOSPC;
}

int http_response_switch(char *buf, size_t len, const char *protocol)
{
	if (protocol && !safe_value(protocol))
		return -EINVAL;
	bool p = protocol && *protocol;
	return finish(snprintf(buf, len,
			       "HTTP/1.1 101 Switching Protocols\r\n"
			       "Connection: Upgrade\r\n"
			       "Upgrade: SPDY/3.1\r\n"
			       "%s%s%s"
			       "\r\n",
			       p ? "X-Stream-Protocol-Version: " : "", p ? protocol : "", p ? "\r\n" : ""),
		      len);
}

static const char *reason(int status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 426: return "Upgrade Required";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
}

/* The status line, the extra header lines (already CRLF-terminated) and a text body. */
static int error_response(char *buf, size_t len, int status, const char *extra, const char *text)
{
	if (status < 400 || status > 599)
		return -EINVAL;
	return finish(snprintf(buf, len,
			       "HTTP/1.1 %d %s\r\n"
			       "%s"
			       "Content-Type: text/plain; charset=utf-8\r\n"
			       "X-Content-Type-Options: nosniff\r\n"
			       "Content-Length: %zu\r\n"
			       "Connection: close\r\n"
			       "\r\n"
			       "%s\n",
			       status, reason(status), extra, strlen(text) + 1, text),
		      len);
}

int http_response_error(char *buf, size_t len, int status, const char *text)
{
	return error_response(buf, len, status, "", text);
}

int http_response_no_protocol(char *buf, size_t len, const char *const *ours, size_t n_ours)
{
	/* One header line per protocol, as Kubernetes' own servers answer. */
	char extra[HTTP_MAX_PROTOCOLS * 128];
	size_t off = 0;
	for (size_t i = 0; i < n_ours; i++) {
		if (!safe_value(ours[i]))
			return -EINVAL;
		int n = snprintf(extra + off, sizeof(extra) - off, "X-Accepted-Stream-Protocol-Versions: %s\r\n", ours[i]);
		if (n < 0 || (size_t)n >= sizeof(extra) - off)
			return -ENOSPC;
		off += (size_t)n;
	}
	extra[off] = '\0';
	return error_response(buf, len, 403, extra, "unable to upgrade: no common stream protocol version");
}
