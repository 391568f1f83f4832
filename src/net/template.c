/* The command-line template for guests that take their network settings as arguments:
 * "{{name}}" placeholders replaced by the pod's values. Strict: a typo is an error, not a
 * silently empty argument. */
#include <stdint.h>
#include <string.h>

#include "net.h"

/* Names are quoted in messages; a runaway "{{..." must not fill them. */
#define NAME_SHOWN 32

struct placeholder {
	const char *name;
	size_t offset; /* of the value's pointer in struct net_template_vars */
};

static const struct placeholder placeholders[] = {
	{ "ip", offsetof(struct net_template_vars, ip) },
	{ "prefix", offsetof(struct net_template_vars, prefix) },
	{ "netmask", offsetof(struct net_template_vars, netmask) },
	{ "gateway", offsetof(struct net_template_vars, gateway) },
	{ "mac", offsetof(struct net_template_vars, mac) },
	{ "dns", offsetof(struct net_template_vars, dns) },
	{ "dns_search", offsetof(struct net_template_vars, dns_search) },
	{ "hostname", offsetof(struct net_template_vars, hostname) },
};

static const char known_list[] =
	"{{ip}}, {{prefix}}, {{netmask}}, {{gateway}}, {{mac}}, {{dns}}, {{dns_search}}, {{hostname}}";

static const struct placeholder *placeholder_find(const char *name, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(placeholders); i++)
		if (strlen(placeholders[i].name) == len && memcmp(placeholders[i].name, name, len) == 0)
			return &placeholders[i];
	return NULL;
}

struct outbuf {
	char *buf;
	size_t len, cap, max;
};

static int out_append(struct outbuf *o, const char *s, size_t n)
{
	if (n > o->max - o->len)
		return -E2BIG;
	if (o->len + n + 1 > o->cap) {
		size_t ncap = o->cap ? o->cap : 64;
		while (ncap < o->len + n + 1)
			ncap *= 2;
		if (o->max < SIZE_MAX && ncap > o->max + 1)
			ncap = o->max + 1;
		char *nb = realloc(o->buf, ncap);
		if (!nb)
			return -ENOMEM;
		o->buf = nb;
		o->cap = ncap;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
	return 0;
}

static void outbuf_done(struct outbuf *o)
{
	free(o->buf);
}

int net_template_expand(const char *in, const struct net_template_vars *v, size_t max_len, char **ret,
			uk_error *err)
{
	if (!in)
		return uk_err(err, EINVAL, "no template given");
	static const struct net_template_vars none = { 0 };
	if (!v)
		v = &none;
	_cleanup_(outbuf_done) struct outbuf o = { .max = max_len };
	int r;

	const char *p = in;
	for (;;) {
		const char *open = strstr(p, "{{");
		size_t lit = open ? (size_t)(open - p) : strlen(p);
		r = out_append(&o, p, lit);
		if (r < 0)
			goto fail;
		if (!open)
			break;
		const char *name = open + 2;
		const char *close = strstr(name, "}}");
		if (!close)
			return uk_err(err, EINVAL,
				      "template: unterminated placeholder at offset %zu: \"%.*s\" has no closing }}",
				      (size_t)(open - in), NAME_SHOWN, open);
		size_t nlen = (size_t)(close - name);
		const struct placeholder *ph = placeholder_find(name, nlen);
		if (!ph) {
			int shown = nlen > NAME_SHOWN ? NAME_SHOWN : (int)nlen;
			return uk_err(err, EINVAL, "template: unknown placeholder {{%.*s%s}}; known: %s", shown, name,
				      nlen > NAME_SHOWN ? "..." : "", known_list);
		}
		const char *val = *(const char *const *)((const char *)v + ph->offset);
		if (val) {
			r = out_append(&o, val, strlen(val));
			if (r < 0)
				goto fail;
		}
		p = close + 2;
	}
	if (!o.buf) {
		/* Empty template: still a malloc'ed "". */
		o.buf = strdup("");
		if (!o.buf)
			return uk_err(err, ENOMEM, "out of memory");
	}
	*ret = TAKE_PTR(o.buf);
	return 0;

fail:
	if (r == -E2BIG)
		return uk_err(err, E2BIG, "template: the expanded text is longer than %zu bytes", max_len);
	return uk_err(err, -r, "out of memory");
}

bool net_template_has_placeholders(const char *in)
{
	return in && strstr(in, "{{") != NULL;
}
