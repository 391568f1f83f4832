/* Unit tests for src/store/reference: docker reference grammar and normalisation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "store/reference.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define DIG "sha256:" HEX64

struct valid_case {
	const char *in;
	const char *string; /* image_ref_string */
	const char *domain;
	const char *path;
	const char *tag;    /* NULL: none */
	const char *digest; /* NULL: none */
};

static const struct valid_case valid[] = {
	{ "hello", "docker.io/library/hello:latest", "docker.io", "library/hello", "latest", NULL },
	{ "hello:1", "docker.io/library/hello:1", "docker.io", "library/hello", "1", NULL },
	{ "library/hello", "docker.io/library/hello:latest", "docker.io", "library/hello", "latest", NULL },
	{ "docker.io/hello", "docker.io/library/hello:latest", "docker.io", "library/hello", "latest", NULL },
	{ "index.docker.io/hello", "docker.io/library/hello:latest", "docker.io", "library/hello", "latest", NULL },
	{ "index.docker.io/foo/bar:v2", "docker.io/foo/bar:v2", "docker.io", "foo/bar", "v2", NULL },
	{ "foo/bar", "docker.io/foo/bar:latest", "docker.io", "foo/bar", "latest", NULL },
	{ "foo/bar/baz:1.0", "docker.io/foo/bar/baz:1.0", "docker.io", "foo/bar/baz", "1.0", NULL },
	{ "localhost/hello", "localhost/hello:latest", "localhost", "hello", "latest", NULL },
	{ "localhost:5000/hello:dev", "localhost:5000/hello:dev", "localhost:5000", "hello", "dev", NULL },
	/* Without a '/', "localhost:5000" is the name localhost with tag 5000, as in docker. */
	{ "localhost:5000", "docker.io/library/localhost:5000", "docker.io", "library/localhost", "5000", NULL },
	{ "registry.example.com/team/app:v1.2.3-rc_1", "registry.example.com/team/app:v1.2.3-rc_1",
	  "registry.example.com", "team/app", "v1.2.3-rc_1", NULL },
	{ "Registry.Example.com/app", "Registry.Example.com/app:latest", "Registry.Example.com", "app", "latest",
	  NULL },
	{ "192.168.1.1:5000/img", "192.168.1.1:5000/img:latest", "192.168.1.1:5000", "img", "latest", NULL },
	{ "[::1]:5000/img:1", "[::1]:5000/img:1", "[::1]:5000", "img", "1", NULL },
	{ "my-host.local/img", "my-host.local/img:latest", "my-host.local", "img", "latest", NULL },
	{ "x/a.b_c__d-e---f", "docker.io/x/a.b_c__d-e---f:latest", "docker.io", "x/a.b_c__d-e---f", "latest", NULL },
	{ "0/1", "docker.io/0/1:latest", "docker.io", "0/1", "latest", NULL },
	{ "abc", "docker.io/library/abc:latest", "docker.io", "library/abc", "latest", NULL },
	{ "hello:_X-1.b", "docker.io/library/hello:_X-1.b", "docker.io", "library/hello", "_X-1.b", NULL },
	{ "hello@" DIG, "docker.io/library/hello@" DIG, "docker.io", "library/hello", NULL, DIG },
	{ "quay.io/coreos/etcd@" DIG, "quay.io/coreos/etcd@" DIG, "quay.io", "coreos/etcd", NULL, DIG },
	{ "ghcr.io/a/b:tag@" DIG, "ghcr.io/a/b:tag@" DIG, "ghcr.io", "a/b", "tag", DIG },
	{ "localhost:5000/a:1@" DIG, "localhost:5000/a:1@" DIG, "localhost:5000", "a", "1", DIG },
};

struct invalid_case {
	const char *in;
	const char *msg; /* a substring of the error message */
};

static const struct invalid_case invalid[] = {
	{ "", "empty" },
	{ "Hello", "lowercase" },
	{ "foo/Bar", "lowercase" },
	{ "Foo/bar", "lowercase" },
	{ "hello:", "tag" },
	{ "hello:-x", "tag" },
	{ "hello:.x", "tag" },
	{ "hello:a b", "tag" },
	{ "hello:a/b", "invalid domain" }, /* "hello:a" has a ':', so it is a host with a bad port */
	{ "hello:1:2", "path component" },
	{ "hello@sha256:abc", "digest" },
	{ "hello@sha256:" "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", "digest" },
	{ "hello@sha256:" HEX64 "0", "digest" },
	{ "hello@md5:0123", "unsupported digest algorithm \"md5\"" },
	{ "hello@", "digest" },
	{ "hello@" DIG "@" DIG, "digest" },
	{ "@" DIG, "repository name is empty" },
	{ ":1", "repository name is empty" },
	{ "/hello", "empty path component" },
	{ "foo//bar", "empty path component" },
	{ "foo/", "empty path component" },
	{ "example.com/", "empty path component" },
	{ "a..b", "path component" },
	{ "a___b", "path component" },
	{ "a._b", "path component" },
	{ "-a", "path component" },
	{ "a-", "path component" },
	{ "_a", "path component" },
	{ "a__", "path component" },
	{ "hello world", "path component" },
	{ "h\xc3\xa9llo", "path component" },
	{ "example.com:/x", "invalid domain" },
	{ "exa_mple.com/x", "invalid domain" },
	{ "-example.com/x", "invalid domain" },
	{ "example-.com/x", "invalid domain" },
	{ "example..com/x", "invalid domain" },
	{ "example.com:80a/x", "invalid domain" },
	{ "[zz]:80/x", "invalid domain" },
	{ "[]:80/x", "invalid domain" },
	{ HEX64, "64-hex" },
};

static void parse_valid(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(valid) / sizeof(*valid); i++) {
		const struct valid_case *c = &valid[i];
		struct image_ref r;
		uk_error err = { 0 };
		if (image_ref_parse(c->in, &r, &err) < 0)
			fail_msg("\"%s\" rejected: %s", c->in, err.msg);
		char *s = image_ref_string(&r);
		char *name = image_ref_name(&r);
		assert_non_null(s);
		assert_non_null(name);
		if (strcmp(s, c->string) != 0)
			fail_msg("\"%s\" -> \"%s\", expected \"%s\"", c->in, s, c->string);
		assert_string_equal(r.domain, c->domain);
		assert_string_equal(r.path, c->path);
		if (c->tag)
			assert_string_equal(r.tag, c->tag);
		else
			assert_null(r.tag);
		if (c->digest)
			assert_string_equal(r.digest, c->digest);
		else
			assert_null(r.digest);
		char expect_name[600];
		snprintf(expect_name, sizeof(expect_name), "%s/%s", c->domain, c->path);
		assert_string_equal(name, expect_name);

		/* Normalisation is idempotent: the normalised string parses to itself. */
		struct image_ref r2;
		assert_int_equal(image_ref_parse(s, &r2, &err), 0);
		char *s2 = image_ref_string(&r2);
		assert_string_equal(s2, s);
		free(s2);
		image_ref_clear(&r2);

		free(s);
		free(name);
		image_ref_clear(&r);
		image_ref_clear(&r); /* cleared twice is fine */
	}
}

static void parse_invalid(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(invalid) / sizeof(*invalid); i++) {
		const struct invalid_case *c = &invalid[i];
		struct image_ref r;
		uk_error err = { 0 };
		int rc = image_ref_parse(c->in, &r, &err);
		if (rc >= 0)
			fail_msg("\"%s\" accepted", c->in);
		assert_int_equal(rc, -EINVAL);
		assert_int_equal(err.code, EINVAL);
		if (!strstr(err.msg, c->msg))
			fail_msg("\"%s\": message \"%s\" lacks \"%s\"", c->in, err.msg, c->msg);
		/* Nothing is left allocated on failure. */
		assert_null(r.domain);
		assert_null(r.path);
		assert_null(r.tag);
		assert_null(r.digest);
	}
	struct image_ref r;
	assert_int_equal(image_ref_parse(NULL, &r, NULL), -EINVAL);
}

static void parse_limits(void **state)
{
	(void)state;
	struct image_ref r;
	uk_error err = { 0 };
	char buf[1024];

	/* Tags of up to 128 characters. */
	memset(buf, 0, sizeof(buf));
	memcpy(buf, "hello:", 6);
	memset(buf + 6, 't', 128);
	assert_int_equal(image_ref_parse(buf, &r, &err), 0);
	image_ref_clear(&r);
	buf[6 + 128] = 't';
	assert_int_equal(image_ref_parse(buf, &r, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "tag"));

	/* The normalised name (domain/path) is at most 255 characters. */
	memset(buf, 0, sizeof(buf));
	memcpy(buf, "example.com/", 12);
	memset(buf + 12, 'a', 255 - 12);
	assert_int_equal(image_ref_parse(buf, &r, &err), 0);
	assert_int_equal(strlen(r.domain) + 1 + strlen(r.path), 255);
	image_ref_clear(&r);
	buf[255] = 'a';
	assert_int_equal(image_ref_parse(buf, &r, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "255"));
	/* ... counting the docker.io/library/ that normalisation adds. */
	memset(buf, 0, sizeof(buf));
	memset(buf, 'a', 255 - 18);
	assert_int_equal(image_ref_parse(buf, &r, &err), 0);
	image_ref_clear(&r);
	buf[255 - 18] = 'a';
	assert_int_equal(image_ref_parse(buf, &r, &err), -EINVAL);

	/* Whole inputs are bounded before any work. */
	memset(buf, 'a', sizeof(buf) - 1);
	buf[sizeof(buf) - 1] = '\0';
	assert_int_equal(image_ref_parse(buf, &r, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "longer than"));
}

static void digest_and_hex_helpers(void **state)
{
	(void)state;
	assert_true(image_digest_valid(DIG));
	assert_false(image_digest_valid(HEX64));
	assert_false(image_digest_valid("sha256:" HEX64 "0"));
	assert_false(image_digest_valid("sha256:0123"));
	assert_false(image_digest_valid("sha512:" HEX64));
	assert_false(image_digest_valid(NULL));
	assert_true(image_hex_valid("abc", 3, 64));
	assert_false(image_hex_valid("ab", 3, 64));
	assert_false(image_hex_valid("abg", 3, 64));
	assert_false(image_hex_valid("ABC", 3, 64));
	assert_false(image_hex_valid(HEX64, 3, 63));
	assert_true(image_hex_valid(HEX64, 64, 64));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parse_valid),
		cmocka_unit_test(parse_invalid),
		cmocka_unit_test(parse_limits),
		cmocka_unit_test(digest_and_hex_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
