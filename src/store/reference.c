/* Image reference parsing after docker/distribution's reference grammar. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_word(char c)
{
	return is_alnum(c) || c == '_';
}

bool image_hex_valid(const char *s, size_t min, size_t max)
{
	if (!s)
		return false;
	size_t n = 0;
	for (; s[n]; n++) {
		if (n >= max)
			return false;
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return false;
	}
	return n >= min;
}

bool image_digest_valid(const char *s)
{
	return s && strncmp(s, "sha256:", 7) == 0 && image_hex_valid(s + 7, 64, 64);
}

/* path-component := [a-z0-9]+ ((?:[._]|__|[-]*)[a-z0-9]+)*, over [p, end). */
static bool path_component_valid(const char *p, const char *end)
{
	if (p == end || !is_lower_alnum(*p))
		return false;
	while (p < end) {
		while (p < end && is_lower_alnum(*p))
			p++;
		if (p == end)
			return true;
		/* A separator, which must be followed by another alphanumeric run. */
		if (*p == '.')
			p++;
		else if (*p == '_')
			p += (p + 1 < end && p[1] == '_') ? 2 : 1;
		else if (*p == '-')
			while (p < end && *p == '-')
				p++;
		else
			return false;
		if (p == end || !is_lower_alnum(*p))
			return false;
	}
	return true;
}

/* tag := [\w][\w.-]{0,127} */
static bool tag_valid(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > IMAGE_REF_TAG_MAX || !is_word(t[0]))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!is_word(t[i]) && t[i] != '.' && t[i] != '-')
			return false;
	return true;
}

/* host[:port] with host a dotted name of [A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])? components
 * or a bracketed IPv6 address; port := [0-9]+. */
static bool domain_valid(const char *d, size_t n)
{
	const char *p = d, *end = d + n;
	if (p < end && *p == '[') {
		const char *close = memchr(p, ']', n);
		if (!close || close == p + 1)
			return false;
		for (const char *q = p + 1; q < close; q++)
			if (!(isxdigit((unsigned char)*q) || *q == ':'))
				return false;
		p = close + 1;
	} else {
		for (;;) {
			const char *start = p;
			while (p < end && (is_alnum(*p) || *p == '-'))
				p++;
			if (p == start || start[0] == '-' || p[-1] == '-')
				return false;
			if (p < end && *p == '.') {
				p++;
				continue;
			}
			break;
		}
	}
	if (p < end && *p == ':') {
		p++;
		const char *start = p;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
		if (p == start)
			return false;
	}
	return p == end;
}

void image_ref_clear(struct image_ref *r)
{
	if (!r)
		return;
	free(r->domain);
	free(r->path);
	free(r->tag);
	free(r->digest);
	*r = (struct image_ref){ 0 };
}

#define BAD(...) uk_err(err, EINVAL, "invalid reference \"%s\": " __VA_ARGS__)

int image_ref_parse(const char *s, struct image_ref *ret, uk_error *err)
{
	*ret = (struct image_ref){ 0 };
	if (!s || !*s)
		return uk_err(err, EINVAL, "reference is empty");
	size_t len = strnlen(s, IMAGE_REF_MAX + 1);
	if (len > IMAGE_REF_MAX)
		return uk_err(err, EINVAL, "reference is longer than %d characters", IMAGE_REF_MAX);
	/* A bare 64-hex string reads as an image id; docker refuses it as a name too. */
	if (image_hex_valid(s, 64, 64))
		return BAD("a 64-hex string is an image id, not a repository name", s);

	_cleanup_image_ref_ struct image_ref r = { 0 };
	size_t name_len = len;
	const char *at = strchr(s, '@');
	if (at) {
		const char *d = at + 1;
		if (strncmp(d, "sha256:", 7) != 0) {
			const char *colon = strchr(d, ':');
			if (colon && colon > d)
				return BAD("unsupported digest algorithm \"%.*s\" (only sha256)", s,
					   (int)(colon - d), d);
			return BAD("digest must look like sha256:<64 hex digits>", s);
		}
		if (!image_digest_valid(d))
			return BAD("digest must be sha256: and 64 lowercase hex digits", s);
		if (!(r.digest = strdup(d)))
			return uk_err(err, ENOMEM, "out of memory");
		name_len = (size_t)(at - s);
	}

	/* The tag follows the last ':' that comes after the last '/'; an earlier ':' is a port. */
	const char *last_slash = memrchr(s, '/', name_len);
	const char *last_colon = memrchr(s, ':', name_len);
	if (last_colon && (!last_slash || last_colon > last_slash)) {
		size_t tlen = name_len - (size_t)(last_colon + 1 - s);
		if (!(r.tag = strndup(last_colon + 1, tlen)))
			return uk_err(err, ENOMEM, "out of memory");
		if (!tag_valid(r.tag))
			return BAD("tag \"%s\" must match [A-Za-z0-9_][A-Za-z0-9_.-]* and be at most %d characters",
				   s, r.tag, IMAGE_REF_TAG_MAX);
		name_len = (size_t)(last_colon - s);
	}
	if (name_len == 0)
		return BAD("repository name is empty", s);

	/* The first component is a domain if it looks like a host: has '.' or ':', or is localhost. */
	const char *rest = s;
	size_t rest_len = name_len;
	const char *slash = memchr(s, '/', name_len);
	if (slash) {
		size_t dlen = (size_t)(slash - s);
		bool is_domain = memchr(s, '.', dlen) || memchr(s, ':', dlen) ||
				 (dlen == 9 && memcmp(s, "localhost", 9) == 0);
		if (is_domain) {
			if (!domain_valid(s, dlen))
				return BAD("invalid domain \"%.*s\"", s, (int)dlen, s);
			if (dlen == 15 && memcmp(s, "index.docker.io", 15) == 0)
				r.domain = strdup(IMAGE_REF_DEFAULT_DOMAIN);
			else
				r.domain = strndup(s, dlen);
			if (!r.domain)
				return uk_err(err, ENOMEM, "out of memory");
			rest = slash + 1;
			rest_len = name_len - dlen - 1;
		}
	}
	if (!r.domain && !(r.domain = strdup(IMAGE_REF_DEFAULT_DOMAIN)))
		return uk_err(err, ENOMEM, "out of memory");

	/* Path components. */
	const char *end = rest + rest_len;
	for (const char *p = rest;;) {
		const char *q = memchr(p, '/', (size_t)(end - p));
		const char *cend = q ? q : end;
		if (cend == p)
			return BAD("empty path component", s);
		if (!path_component_valid(p, cend)) {
			bool upper = false;
			char low[IMAGE_REF_MAX + 1];
			size_t n = (size_t)(cend - p);
			for (size_t i = 0; i < n; i++) {
				upper |= (p[i] >= 'A' && p[i] <= 'Z');
				low[i] = (char)tolower((unsigned char)p[i]);
			}
			if (upper && path_component_valid(low, low + n))
				return BAD("repository name must be lowercase", s);
			return BAD("path component \"%.*s\" must match [a-z0-9]+ joined by '.', '_', '__' or '-'",
				   s, (int)n, p);
		}
		if (!q)
			break;
		p = q + 1;
	}

	bool library = strcmp(r.domain, IMAGE_REF_DEFAULT_DOMAIN) == 0 && !memchr(rest, '/', rest_len);
	if (asprintf(&r.path, "%s%.*s", library ? "library/" : "", (int)rest_len, rest) < 0) {
		r.path = NULL;
		return uk_err(err, ENOMEM, "out of memory");
	}
	if (strlen(r.domain) + 1 + strlen(r.path) > IMAGE_REF_NAME_MAX)
		return BAD("repository name is longer than %d characters", s, IMAGE_REF_NAME_MAX);
	if (!r.tag && !r.digest && !(r.tag = strdup(IMAGE_REF_DEFAULT_TAG)))
		return uk_err(err, ENOMEM, "out of memory");
	*ret = r;
	r = (struct image_ref){ 0 };
	return 0;
}

char *image_ref_name(const struct image_ref *r)
{
	char *s;
	return asprintf(&s, "%s/%s", r->domain, r->path) < 0 ? NULL : s;
}

char *image_ref_string(const struct image_ref *r)
{
	char *s;
	if (asprintf(&s, "%s/%s%s%s%s%s", r->domain, r->path, r->tag ? ":" : "", r->tag ? r->tag : "",
		     r->digest ? "@" : "", r->digest ? r->digest : "") < 0)
		return NULL;
	return s;
}
