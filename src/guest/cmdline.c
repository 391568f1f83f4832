#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cmdline.h"

static const char *nz(const char *s)
{
	return s ? s : "";
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool has_space(const char *s)
{
	for (; *s; s++)
		if (is_space(*s))
			return true;
	return false;
}

void guest_line_init(struct guest_line *l, char *buf, size_t cap, const char *field_prefix)
{
	*l = (struct guest_line){ .buf = buf, .len = 0, .cap = cap, .prefix = nz(field_prefix) };
	if (cap)
		buf[0] = '\0';
}

int guest_line_too_long(const struct guest_line *l, const char *field, size_t idx, uk_error *err)
{
	return uk_err(err, E2BIG, "%s%s[%zu] makes the kernel command line longer than %zu bytes", l->prefix, field,
		      idx, l->cap - 1);
}

/* Bytes written at the end of a line; `full` once one did not fit (the NUL keeps its slot). */
struct writer {
	char *p;
	size_t n, cap;
	bool full;
};

static void put(struct writer *w, char c)
{
	if (w->n + 1 < w->cap)
		w->p[w->n++] = c;
	else
		w->full = true;
}

static void puts_n(struct writer *w, const char *s, size_t n)
{
	for (size_t i = 0; i < n && !w->full; i++)
		put(w, s[i]);
}

/* Start a word: the separator, if the line has words already. */
static struct writer word_start(const struct guest_line *l)
{
	struct writer w = { .p = l->buf, .n = l->len, .cap = l->cap };
	if (l->len)
		put(&w, ' ');
	return w;
}

/* Keep what w wrote, or leave the line as it was: -E2BIG. */
static int word_end(struct guest_line *l, const struct writer *w)
{
	if (w->full) {
		if (l->cap)
			l->buf[l->len] = '\0';
		return -E2BIG;
	}
	l->len = w->n;
	l->buf[l->len] = '\0';
	return 0;
}

int guest_line_raw(struct guest_line *l, const char *text, size_t n)
{
	if (n == 0)
		return 0;
	struct writer w = word_start(l);
	puts_n(&w, text, n);
	return word_end(l, &w);
}

/* Unikraft: "…" where the word holds no '"' or '\' (the form people write); else runs in
 * '…', which every ukargparse release reads literally, with each '\'' written as "'". */
static void write_unikraft(struct writer *w, const char *s)
{
	if (!strpbrk(s, "\"\\")) {
		put(w, '"');
		puts_n(w, s, strlen(s));
		put(w, '"');
		return;
	}
	bool open = false;
	for (; *s; s++) {
		if (*s == '\'') {
			if (open)
				put(w, '\'');
			open = false;
			puts_n(w, "\"'\"", 3);
			continue;
		}
		if (!open)
			put(w, '\'');
		open = true;
		put(w, *s);
	}
	if (open)
		put(w, '\'');
}

/* MirageOS: "…" with '\' before each '"' and '\'. */
static void write_mirage(struct writer *w, const char *s)
{
	put(w, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			put(w, '\\');
		put(w, *s);
	}
	put(w, '"');
}

static bool needs_quotes(enum guest_quoting q, const char *s)
{
	switch (q) {
	case GUEST_QUOTING_LINUX:
		return has_space(s);
	case GUEST_QUOTING_UNIKRAFT:
		return has_space(s) || strpbrk(s, "\"'\\");
	case GUEST_QUOTING_MIRAGE:
		return has_space(s) || strpbrk(s, "\"\\");
	case GUEST_QUOTING_NONE:
		break;
	}
	return false;
}

/* What q cannot carry at all, as the end of an error message; NULL: it can. */
static const char *cannot_carry(enum guest_quoting q, const char *s)
{
	if (q == GUEST_QUOTING_NONE && has_space(s))
		return "holds white space, which a kernel command line cannot carry";
	if (q == GUEST_QUOTING_LINUX && strchr(s, '"'))
		return "holds a double quote, which the Linux kernel's command line cannot carry";
	return NULL;
}

int guest_line_word(struct guest_line *l, enum guest_quoting q, bool force, const char *word, const char *field,
		    size_t idx, uk_error *err)
{
	const char *s = nz(word);
	if (!*s)
		return 0;
	const char *why = cannot_carry(q, s);
	if (why)
		return uk_err(err, EINVAL, "%s%s[%zu] %s", l->prefix, field, idx, why);
	struct writer w = word_start(l);
	if (q == GUEST_QUOTING_NONE || !(force || needs_quotes(q, s))) {
		puts_n(&w, s, strlen(s));
	} else if (q == GUEST_QUOTING_UNIKRAFT) {
		write_unikraft(&w, s);
	} else if (q == GUEST_QUOTING_MIRAGE) {
		write_mirage(&w, s);
	} else {
		put(&w, '"');
		puts_n(&w, s, strlen(s));
		put(&w, '"');
	}
	if (word_end(l, &w) < 0)
		return guest_line_too_long(l, field, idx, err);
	return 0;
}

int guest_line_words(struct guest_line *l, enum guest_quoting q, const char *const *words, size_t n,
		     const char *field, uk_error *err)
{
	for (size_t i = 0; i < n; i++) {
		int r = guest_line_word(l, q, false, words[i], field, i, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int guest_line_env(struct guest_line *l, enum guest_quoting q, bool force, const struct guest_env *e, size_t idx,
		   uk_error *err)
{
	const char *key = nz(e->key), *value = nz(e->value);
	if (!*key || strchr(key, '='))
		return uk_err(err, EINVAL, "%senvs[%zu].key must be non-empty and hold no \"=\"", l->prefix, idx);
	/* The word is quoted as a whole, so it is put together first. */
	char word[GUEST_CMDLINE_MAX];
	size_t k = strlen(key), v = strlen(value);
	if (k + 1 + v >= sizeof(word))
		return guest_line_too_long(l, "envs", idx, err);
	memcpy(word, key, k);
	word[k] = '=';
	memcpy(word + k + 1, value, v + 1);
	return guest_line_word(l, q, force, word, "envs", idx, err);
}

static int build(struct guest_line *l, const struct guest_cmdline_in *in, uk_error *err)
{
	int r;
	for (size_t i = 0; i < in->n_envs; i++)
		if ((r = guest_line_env(l, GUEST_QUOTING_NONE, false, &in->envs[i], i, err)) < 0)
			return r;
	if (in->n_command > 0) {
		if ((r = guest_line_words(l, GUEST_QUOTING_NONE, in->command, in->n_command, "command", err)) < 0)
			return r;
	} else if (in->image_cmdline && *in->image_cmdline) {
		/* The image's own line, several words already; it came through the image store. */
		if (guest_line_raw(l, in->image_cmdline, strlen(in->image_cmdline)) < 0)
			return uk_err(err, E2BIG, "the image's default command line, after %senvs, makes the kernel command line longer than %zu bytes",
				      l->prefix, l->cap - 1);
	}
	return guest_line_words(l, GUEST_QUOTING_NONE, in->args, in->n_args, "args", err);
}

int guest_cmdline_build(const struct guest_cmdline_in *in, char *buf, size_t len, uk_error *err)
{
	if (!buf || len == 0)
		return uk_err(err, EINVAL, "no buffer for the command line");
	struct guest_line l;
	guest_line_init(&l, buf, len, in->field_prefix);
	int r = build(&l, in, err);
	if (r < 0)
		buf[0] = '\0';
	return r;
}

/* The next word of t[*pos, n) as q's parser delimits it: [*start, *end). False at the end. */
static bool next_word(const char *t, size_t n, size_t *pos, enum guest_quoting q, size_t *start, size_t *end)
{
	size_t i = *pos;
	while (i < n && is_space(t[i]))
		i++;
	if (i >= n) {
		*pos = n;
		return false;
	}
	*start = i;
	bool escapes = q == GUEST_QUOTING_UNIKRAFT || q == GUEST_QUOTING_MIRAGE;
	char quote = 0;
	for (; i < n; i++) {
		char c = t[i];
		if (c == '\\' && escapes && quote != '\'' && i + 1 < n) {
			i++;
			continue;
		}
		if (quote) {
			if (c == quote)
				quote = 0;
			continue;
		}
		if (is_space(c))
			break;
		if ((c == '"' && q != GUEST_QUOTING_NONE) || (c == '\'' && q == GUEST_QUOTING_UNIKRAFT))
			quote = c;
	}
	*end = i;
	*pos = i;
	return true;
}

static struct guest_span span(size_t from, size_t to)
{
	return (struct guest_span){ .at = from, .len = to > from ? to - from : 0 };
}

void guest_split_dashes(const char *line, enum guest_quoting q, struct guest_span *before,
			struct guest_span *after, bool *has_dashes)
{
	const char *t = nz(line);
	size_t n = strlen(t), pos = 0, start, end, first = n, last_end = 0;
	*has_dashes = false;
	while (next_word(t, n, &pos, q, &start, &end)) {
		if (end - start == 2 && memcmp(t + start, "--", 2) == 0) {
			*has_dashes = true;
			size_t rest = end, rest_end = n;
			while (rest < n && is_space(t[rest]))
				rest++;
			while (rest_end > rest && is_space(t[rest_end - 1]))
				rest_end--;
			*before = span(first == n ? 0 : first, last_end);
			*after = span(rest, rest_end);
			return;
		}
		if (first == n)
			first = start;
		last_end = end;
	}
	*before = span(first == n ? 0 : first, last_end);
	*after = span(0, 0);
}

bool guest_next_word(const char *text, size_t n, size_t *pos, enum guest_quoting q, struct guest_span *word)
{
	size_t start, end;
	if (!next_word(text, n, pos, q, &start, &end))
		return false;
	*word = span(start, end);
	return true;
}

size_t guest_count_words(const char *text, size_t n, enum guest_quoting q)
{
	size_t pos = 0, start, end, count = 0;
	while (next_word(text, n, &pos, q, &start, &end))
		count++;
	return count;
}

void guest_textf(char *buf, size_t size, const char *fmt, ...)
{
	if (size == 0)
		return;
	size_t len = strnlen(buf, size);
	if (len == size) {
		buf[size - 1] = '\0';
		len = size - 1;
	}
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf + len, size - len, fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n >= size - len && size >= 4)
		memcpy(buf + size - 4, "...", 4);
}
