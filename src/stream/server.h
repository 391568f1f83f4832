/* The CRI streaming server: the URLs that Attach and PortForward answer with, and the
 * connections kubelet (or crictl) makes to them: an HTTP/1.1 upgrade to SPDY/3.1, then
 * streams relayed to the VM's console (attach, through vmwrapper's attach socket) or to the
 * pod's address (port-forward). One thread with an epoll loop; the gRPC handlers only make
 * tokens. src/stream/README.md has the design and the limits. */
#ifndef UK_STREAM_SERVER_H
#define UK_STREAM_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"

/* A token is 128 random bits in hex, single-use, valid `[stream] url_timeout` (default
 * STREAM_TOKEN_TTL_S); at most STREAM_MAX_TOKENS wait at once. */
#define STREAM_TOKEN_LEN 32
#define STREAM_TOKEN_TTL_S 60
#define STREAM_MAX_TOKENS 1000
#define STREAM_MAX_PORTS 16
/* The attach socket's path, at most (a token holds it: 1000 of them stay small). */
#define STREAM_SOCKET_PATH_MAX 512

enum stream_kind { STREAM_ATTACH, STREAM_PORTFORWARD };

/* What a URL leads to, fixed when the CRI call made it. */
struct stream_target {
	enum stream_kind kind;
	char id[65]; /* the container (attach) or the pod sandbox (port-forward) */
	/* attach */
	char socket[STREAM_SOCKET_PATH_MAX]; /* vmwrapper's attach socket (uk_unix_connect takes long paths) */
	bool in, out, err, tty; /* the streams the client was allowed */
	/* port-forward */
	char ip[46];            /* the pod's address */
	uint16_t ports[STREAM_MAX_PORTS]; /* the request's ports; none: any port the client names */
	size_t n_ports;
};

/* ---- tokens (tokens.c): pure, the clock and the token passed in ---- */
struct stream_token {
	char token[STREAM_TOKEN_LEN + 1];
	uint64_t expires_ns;
	struct stream_target target;
};
struct stream_tokens {
	struct stream_token *v;
	size_t n, max;
	uint64_t ttl_ns;
};
void stream_tokens_init(struct stream_tokens *tk, size_t max, uint64_t ttl_ns);
void stream_tokens_free(struct stream_tokens *tk);
/* Expired tokens go first; -ENOSPC when max are still pending, -ENOMEM. */
int stream_tokens_add(struct stream_tokens *tk, const char *token, const struct stream_target *t, uint64_t now_ns,
		      uk_error *err);
/* Take (and forget) a token of that kind: 0 with *t, -ENOENT when unknown, expired or of
 * another kind (a token used for the wrong path is spent all the same). */
int stream_tokens_take(struct stream_tokens *tk, const char *token, enum stream_kind kind, uint64_t now_ns,
		       struct stream_target *t);

/* ---- the server ---- */
struct stream_config {
	const char *address;      /* an IPv4 or IPv6 literal; "127.0.0.1" by default */
	unsigned port;            /* 0: any free port */
	unsigned max_connections; /* more are closed as they come */
	unsigned idle_timeout_s;  /* a session with no traffic for this long is closed */
	unsigned url_timeout_s;   /* a token's life; 0: STREAM_TOKEN_TTL_S */
};
#define STREAM_DEFAULT_ADDRESS "127.0.0.1"
#define STREAM_DEFAULT_MAX_CONNECTIONS 64
#define STREAM_DEFAULT_IDLE_TIMEOUT_S 14400 /* kubelet's streaming idle timeout: 4 h */
/* An HTTP request head must arrive within this long of the connection. */
#define STREAM_HEAD_TIMEOUT_S 10

struct stream_server;

int stream_server_start(const struct stream_config *cfg, struct stream_server **ret, uk_error *err);
void stream_server_stop(struct stream_server *s);
/* The base URL, e.g. http://127.0.0.1:40123 (brackets for IPv6). */
const char *stream_server_base(const struct stream_server *s);
/* A new single-use URL for t: http://HOST:PORT/{attach,portforward}/TOKEN. -ENOSPC when too
 * many wait. */
int stream_server_url(struct stream_server *s, const struct stream_target *t, char *url, size_t len, uk_error *err);

#endif
