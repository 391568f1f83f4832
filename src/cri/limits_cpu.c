/* QEMU's CPU models and CPUID flags, parsed from `qemu-system-x86_64 -cpu help`, and the
 * check of a `-cpu` value (the unikd.io/cpu annotation) against them. Pure. */
#include <stdlib.h>
#include <string.h>

#include "limits.h"

#define CPU_VALUE_MAX 1024 /* a model and its flags; QEMU's own list is far shorter */

struct cri_cpu_models {
	char *text; /* a copy of the output, cut into the words below */
	char **models, **flags;
	size_t n_models, n_flags;
};

void cri_cpu_models_free(struct cri_cpu_models *m)
{
	if (!m)
		return;
	free(m->text);
	free(m->models);
	free(m->flags);
	free(m);
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* The next blank-separated word of line (NUL-terminated in place), or NULL. */
static char *next_word(char **line)
{
	char *p = *line;
	while (is_blank(*p))
		p++;
	if (!*p)
		return NULL;
	char *w = p;
	while (*p && !is_blank(*p))
		p++;
	if (*p)
		*p++ = '\0';
	*line = p;
	return w;
}

/* Each list has room for every word the text holds, so no growth is needed. */
static int push(char **v, size_t *n, size_t cap, char *w)
{
	if (*n >= cap)
		return -E2BIG;
	v[(*n)++] = w;
	return 0;
}

enum section { NONE, MODELS, FLAGS };

/* One line of the list. Models: "x86 NAME  description" (QEMU before 9.1) or
 * "  NAME  description" (since); flags: words. A header switches the section; a blank line
 * ends it. */
static int parse_line(struct cri_cpu_models *m, char *line, enum section *sec, size_t cap)
{
	if (!strncmp(line, "Available CPUs:", 15)) {
		*sec = MODELS;
		return 0;
	}
	if (!strncmp(line, "Recognized CPUID flags:", 23)) {
		*sec = FLAGS;
		return 0;
	}
	char *p = line, *w = next_word(&p);
	if (!w) {
		*sec = NONE;
		return 0;
	}
	if (*sec == MODELS) {
		if (!strcmp(w, "x86") && !(w = next_word(&p)))
			return 0;
		return push(m->models, &m->n_models, cap, w);
	}
	if (*sec == FLAGS)
		for (; w; w = next_word(&p))
			if (push(m->flags, &m->n_flags, cap, w) < 0)
				return -E2BIG;
	return 0;
}

int cri_cpu_models_parse(const char *text, struct cri_cpu_models **ret, uk_error *err)
{
	*ret = NULL;
	struct cri_cpu_models *m = calloc(1, sizeof(*m));
	size_t cap = strlen(text) / 2 + 1; /* a word and its separator take two bytes at least */
	if (!m || !(m->text = strdup(text)) || !(m->models = calloc(cap, sizeof(char *))) ||
	    !(m->flags = calloc(cap, sizeof(char *)))) {
		cri_cpu_models_free(m);
		return uk_err(err, ENOMEM, "out of memory");
	}
	enum section sec = NONE;
	for (char *line = m->text; line && *line;) {
		char *eol = strchr(line, '\n');
		if (eol)
			*eol = '\0';
		int r = parse_line(m, line, &sec, cap);
		if (r < 0) {
			cri_cpu_models_free(m);
			return uk_err(err, -r, "QEMU's CPU list has more words than it has bytes");
		}
		line = eol ? eol + 1 : NULL;
	}
	if (m->n_models == 0) {
		cri_cpu_models_free(m);
		return uk_err(err, EINVAL, "no CPU model in the output of -cpu help (no \"Available CPUs:\" list)");
	}
	*ret = m;
	return 0;
}

static bool listed(char *const *v, size_t n, const char *w, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(v[i]) == len && !memcmp(v[i], w, len))
			return true;
	return false;
}

/* QEMU spells feature names with '-', and takes '_' for it (feat2prop). */
static bool flag_listed(const struct cri_cpu_models *m, const char *w, size_t len)
{
	char name[CPU_VALUE_MAX + 1];
	memcpy(name, w, len);
	for (size_t i = 0; i < len; i++)
		if (name[i] == '_')
			name[i] = '-';
	return listed(m->flags, m->n_flags, name, len);
}

/* One ",flag" part: "+f", "-f", "f", "f=on" or "f=off" with f listed. */
static bool flag_ok(const struct cri_cpu_models *m, const char *w, size_t len)
{
	if (len > 0 && (w[0] == '+' || w[0] == '-'))
		return len > 1 && flag_listed(m, w + 1, len - 1);
	const char *eq = memchr(w, '=', len);
	if (!eq)
		return len > 0 && flag_listed(m, w, len);
	size_t vlen = len - (size_t)(eq - w) - 1;
	bool on_off = (vlen == 2 && !memcmp(eq + 1, "on", 2)) || (vlen == 3 && !memcmp(eq + 1, "off", 3));
	return on_off && flag_listed(m, w, (size_t)(eq - w));
}

int cri_cpu_check(const struct cri_cpu_models *m, const char *value, const char *field, uk_error *err)
{
	char q[CRI_QUOTE_MAX];
	cri_quote(q, value);
	size_t len = strnlen(value, CPU_VALUE_MAX + 1);
	if (len > CPU_VALUE_MAX)
		return uk_err(err, E2BIG, "%s is longer than %d bytes", field, CPU_VALUE_MAX);
	size_t mlen = strcspn(value, ",");
	if (!listed(m->models, m->n_models, value, mlen))
		return uk_err(err, EINVAL, "%s \"%s\": not a CPU model of this QEMU (qemu-system-x86_64 -cpu help lists %zu)",
			      field, q, m->n_models);
	size_t part = 0;
	for (const char *p = value + mlen; *p == ',';) {
		p++;
		part++;
		size_t n = strcspn(p, ",");
		if (!flag_ok(m, p, n))
			return uk_err(err, EINVAL,
				      "%s \"%s\": part %zu after the model is not +flag, -flag or flag=on|off with a "
				      "CPUID flag this QEMU lists",
				      field, q, part);
		p += n;
	}
	return 0;
}
