#include <stdbool.h>
#include <string.h>

#include "cmdline.h"

struct line {
	char *buf;
	size_t len, cap; /* cap: the buffer's size, NUL included */
	const char *prefix;
};

static const char *nz(const char *s)
{
	return s ? s : "";
}

static bool has_space(const char *s)
{
	for (; *s; s++)
		if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\v' || *s == '\f')
			return true;
	return false;
}

static int too_long(const struct line *l, const char *field, size_t idx, uk_error *err)
{
	return uk_err(err, E2BIG, "%s%s[%zu] makes the kernel command line longer than %zu bytes", l->prefix, field,
		      idx, l->cap - 1);
}

/* Append the word made of parts[0..n) (joined as they are) after one space; an empty word
 * adds nothing. -E2BIG (no message) when it does not fit. */
static int append(struct line *l, const char *const *parts, size_t n)
{
	size_t wlen = 0;
	for (size_t i = 0; i < n; i++)
		wlen += strlen(parts[i]);
	if (wlen == 0)
		return 0;
	size_t sep = l->len ? 1 : 0;
	if (wlen >= l->cap || l->len + sep + wlen >= l->cap)
		return -E2BIG;
	if (sep)
		l->buf[l->len++] = ' ';
	for (size_t i = 0; i < n; i++) {
		size_t k = strlen(parts[i]);
		memcpy(l->buf + l->len, parts[i], k);
		l->len += k;
	}
	l->buf[l->len] = '\0';
	return 0;
}

static int add_words(struct line *l, const char *const *words, size_t n, const char *field, uk_error *err)
{
	for (size_t i = 0; i < n; i++) {
		const char *w = nz(words[i]);
		if (has_space(w))
			return uk_err(err, EINVAL, "%s%s[%zu] holds white space, which a kernel command line cannot carry",
				      l->prefix, field, i);
		if (append(l, &w, 1) < 0)
			return too_long(l, field, i, err);
	}
	return 0;
}

static int add_envs(struct line *l, const struct guest_env *envs, size_t n, uk_error *err)
{
	for (size_t i = 0; i < n; i++) {
		const char *key = nz(envs[i].key), *value = nz(envs[i].value);
		if (!*key || strchr(key, '='))
			return uk_err(err, EINVAL, "%senvs[%zu].key must be non-empty and hold no \"=\"", l->prefix, i);
		if (has_space(key) || has_space(value))
			return uk_err(err, EINVAL, "%senvs[%zu] holds white space, which a kernel command line cannot carry",
				      l->prefix, i);
		const char *parts[] = { key, "=", value };
		if (append(l, parts, 3) < 0)
			return too_long(l, "envs", i, err);
	}
	return 0;
}

static int build(struct line *l, const struct guest_cmdline_in *in, uk_error *err)
{
	int r;
	if ((r = add_envs(l, in->envs, in->n_envs, err)) < 0)
		return r;
	if (in->n_command > 0) {
		if ((r = add_words(l, in->command, in->n_command, "command", err)) < 0)
			return r;
	} else if (in->image_cmdline && *in->image_cmdline) {
		/* The image's own line, several words already; it came through the image store. */
		if (append(l, &in->image_cmdline, 1) < 0)
			return uk_err(err, E2BIG, "the image's default command line, after %senvs, makes the kernel command line longer than %zu bytes",
				      l->prefix, l->cap - 1);
	}
	return add_words(l, in->args, in->n_args, "args", err);
}

int guest_cmdline_build(const struct guest_cmdline_in *in, char *buf, size_t len, uk_error *err)
{
	if (!buf || len == 0)
		return uk_err(err, EINVAL, "no buffer for the command line");
	struct line l = { .buf = buf, .len = 0, .cap = len, .prefix = nz(in->field_prefix) };
	buf[0] = '\0';
	int r = build(&l, in, err);
	if (r < 0)
		buf[0] = '\0';
	return r;
}
