/* The streaming server's tokens (server.h): a bounded array, searched linearly (at most
 * STREAM_MAX_TOKENS, each used once within a minute). Pure: the clock and the token come in. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

void stream_tokens_init(struct stream_tokens *tk, size_t max, uint64_t ttl_ns)
{
	*tk = (struct stream_tokens){ .max = max, .ttl_ns = ttl_ns };
}

void stream_tokens_free(struct stream_tokens *tk)
{
	free(tk->v);
	tk->v = NULL;
	tk->n = 0;
}

static void purge(struct stream_tokens *tk, uint64_t now)
{
	size_t k = 0;
	for (size_t i = 0; i < tk->n; i++)
		if (tk->v[i].expires_ns > now)
			tk->v[k++] = tk->v[i];
	tk->n = k;
}

int stream_tokens_add(struct stream_tokens *tk, const char *token, const struct stream_target *t, uint64_t now_ns,
		      uk_error *err)
{
	purge(tk, now_ns);
	if (tk->n >= tk->max)
		return uk_err(err, ENOSPC, "%zu streaming URLs are waiting to be used (at most %zu, each valid %llu s)",
			      tk->n, tk->max, (unsigned long long)(tk->ttl_ns / 1000000000u));
	if (!tk->v && !(tk->v = calloc(tk->max ? tk->max : 1, sizeof(*tk->v))))
		return uk_err(err, ENOMEM, "out of memory");
	if (strlen(token) != STREAM_TOKEN_LEN)
		return uk_err(err, EINVAL, "a token is %d characters", STREAM_TOKEN_LEN);
	struct stream_token *e = &tk->v[tk->n++];
	memcpy(e->token, token, STREAM_TOKEN_LEN + 1);
	e->expires_ns = now_ns + tk->ttl_ns;
	e->target = *t;
	return 0;
}

int stream_tokens_take(struct stream_tokens *tk, const char *token, enum stream_kind kind, uint64_t now_ns,
		       struct stream_target *t)
{
	purge(tk, now_ns);
	for (size_t i = 0; i < tk->n; i++) {
		if (strcmp(tk->v[i].token, token) != 0)
			continue;
		bool ok = tk->v[i].target.kind == kind;
		if (ok)
			*t = tk->v[i].target;
		tk->v[i] = tk->v[--tk->n];
		return ok ? 0 : -ENOENT;
	}
	return -ENOENT;
}
