/* Unit tests for src/store/registry: the pure parts (challenges, indexes, media types,
 * hosts and URLs). The network parts are tested against a real registry in
 * tests/integration/test_registry.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "store/registry.h"

static void challenge_bearer(void **state)
{
	(void)state;
	struct registry_challenge c;
	assert_int_equal(registry_parse_challenge(
				 "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
				 "scope=\"repository:library/hello:pull\"",
				 &c),
			 0);
	assert_string_equal(c.scheme, "bearer");
	assert_string_equal(c.realm, "https://auth.docker.io/token");
	assert_string_equal(c.service, "registry.docker.io");
	assert_string_equal(c.scope, "repository:library/hello:pull");

	/* Scheme in any case, blanks around '=' and ',', commas and escapes inside quotes,
	 * unknown parameters, keys in any case, unquoted token values. */
	assert_int_equal(registry_parse_challenge(
				 "  bEaReR   REALM = \"https://a.example/t?x=1,y=2\" , error=\"insufficient_scope\","
				 " scope=\"repository:a/b:pull,push repository:c:pull\", service=reg.example",
				 &c),
			 0);
	assert_string_equal(c.scheme, "bearer");
	assert_string_equal(c.realm, "https://a.example/t?x=1,y=2");
	assert_string_equal(c.scope, "repository:a/b:pull,push repository:c:pull");
	assert_string_equal(c.service, "reg.example");

	assert_int_equal(registry_parse_challenge("Bearer realm=\"a\\\"b\\\\c\"", &c), 0);
	assert_string_equal(c.realm, "a\"b\\c");
}

static void challenge_basic_and_multiple(void **state)
{
	(void)state;
	struct registry_challenge c;
	assert_int_equal(registry_parse_challenge("Basic realm=\"Registry Realm\"", &c), 0);
	assert_string_equal(c.scheme, "basic");
	assert_string_equal(c.realm, "Registry Realm");
	assert_string_equal(c.service, "");

	assert_int_equal(registry_parse_challenge("BASIC", &c), 0);
	assert_string_equal(c.scheme, "basic");
	assert_string_equal(c.realm, "");

	/* Two challenges in one value: the first one is read, the second not mixed in. */
	assert_int_equal(registry_parse_challenge("Basic realm=\"one\", Bearer realm=\"two\"", &c), 0);
	assert_string_equal(c.scheme, "basic");
	assert_string_equal(c.realm, "one");

	/* token68 after the scheme: read as nothing. */
	assert_int_equal(registry_parse_challenge("Negotiate abc123==", &c), 0);
	assert_string_equal(c.scheme, "negotiate");
}

static void challenge_invalid(void **state)
{
	(void)state;
	struct registry_challenge c;
	assert_int_equal(registry_parse_challenge("", &c), -EINVAL);
	assert_int_equal(registry_parse_challenge(NULL, &c), -EINVAL);
	assert_int_equal(registry_parse_challenge("\"Bearer\"", &c), -EINVAL);
	assert_int_equal(registry_parse_challenge("Bearer realm=\"unterminated", &c), -EINVAL);
	assert_int_equal(registry_parse_challenge("Bearer realm=\"x\" junk", &c), -EINVAL);
	assert_int_equal(registry_parse_challenge("Bearer realm=\"a\nb\"", &c), -EINVAL);
	assert_int_equal(registry_parse_challenge("VeryLongSchemeNameThatDoesNotFit realm=x", &c),
			 -EINVAL);
	/* A value over its field. */
	char big[3000] = "Bearer service=\"";
	memset(big + strlen(big), 'a', 400);
	strcat(big, "\"");
	assert_int_equal(registry_parse_challenge(big, &c), -EINVAL);
}

#define D(c) "sha256:" c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c
static void index_pick(void **state)
{
	(void)state;
	const char *text =
		"{\"schemaVersion\":2,\"manifests\":["
		"{\"digest\":\"" D("1") "\",\"size\":1,\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}},"
		"{\"digest\":\"" D("2") "\",\"size\":1,\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\",\"variant\":\"v3\"}},"
		"{\"digest\":\"" D("3") "\",\"size\":1,\"platform\":{\"os\":\"windows\",\"architecture\":\"amd64\"}},"
		"{\"digest\":\"" D("4") "\",\"size\":1},"
		"{\"digest\":\"" D("5") "\",\"size\":1,\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
		"{\"digest\":\"" D("6") "\",\"size\":1,\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}"
		"]}";
	json_object *idx = json_tokener_parse(text), *d;
	assert_non_null(idx);
	/* No variant wins over a variant, and the first of those. */
	assert_int_equal(registry_index_pick(idx, "linux", "amd64", &d), 0);
	assert_string_equal(json_object_get_string(json_object_object_get(d, "digest")), D("5"));
	assert_int_equal(registry_index_pick(idx, "linux", "arm64", &d), 0);
	assert_string_equal(json_object_get_string(json_object_object_get(d, "digest")), D("1"));
	assert_int_equal(registry_index_pick(idx, "linux", "s390x", &d), -ENOENT);
	assert_null(d);
	json_object_put(idx);

	/* Only a variant: taken. */
	idx = json_tokener_parse("{\"manifests\":[{\"digest\":\"" D("7") "\",\"platform\":"
				 "{\"os\":\"linux\",\"architecture\":\"amd64\",\"variant\":\"v2\"}},"
				 "{\"platform\":\"junk\"}, 42]}");
	assert_int_equal(registry_index_pick(idx, "linux", "amd64", &d), 0);
	assert_string_equal(json_object_get_string(json_object_object_get(d, "digest")), D("7"));
	json_object_put(idx);

	idx = json_tokener_parse("{\"manifests\":{}}");
	assert_int_equal(registry_index_pick(idx, "linux", "amd64", &d), -EBADMSG);
	json_object_put(idx);
	idx = json_tokener_parse("{\"manifests\":[]}");
	assert_int_equal(registry_index_pick(idx, "linux", "amd64", &d), -ENOENT);
	json_object_put(idx);
}

static void media_kinds(void **state)
{
	(void)state;
	assert_int_equal(registry_media_kind("application/vnd.oci.image.index.v1+json"), REGISTRY_MT_OCI_INDEX);
	assert_int_equal(registry_media_kind("application/vnd.oci.image.manifest.v1+json"),
			 REGISTRY_MT_OCI_MANIFEST);
	assert_int_equal(registry_media_kind("application/vnd.docker.distribution.manifest.list.v2+json"),
			 REGISTRY_MT_DOCKER_LIST);
	assert_int_equal(registry_media_kind("application/vnd.docker.distribution.manifest.v2+json"),
			 REGISTRY_MT_DOCKER_MANIFEST);
	assert_int_equal(registry_media_kind("application/vnd.docker.distribution.manifest.v1+prettyjws"),
			 REGISTRY_MT_DOCKER_SCHEMA1);
	assert_int_equal(registry_media_kind("application/vnd.docker.distribution.manifest.v1+json"),
			 REGISTRY_MT_DOCKER_SCHEMA1);
	/* Parameters, blanks and case. */
	assert_int_equal(registry_media_kind(" Application/VND.OCI.Image.Manifest.v1+JSON; charset=utf-8"),
			 REGISTRY_MT_OCI_MANIFEST);
	assert_int_equal(registry_media_kind("application/vnd.oci.image.manifest.v1+json;q=1"),
			 REGISTRY_MT_OCI_MANIFEST);
	/* Prefixes and suffixes are other types. */
	assert_int_equal(registry_media_kind("application/vnd.oci.image.manifest.v1+jsonx"), REGISTRY_MT_UNKNOWN);
	assert_int_equal(registry_media_kind("application/vnd.oci.image.manifest"), REGISTRY_MT_UNKNOWN);
	assert_int_equal(registry_media_kind("application/vnd.oci.artifact.manifest.v1+json"),
			 REGISTRY_MT_UNKNOWN);
	assert_int_equal(registry_media_kind("application/json"), REGISTRY_MT_UNKNOWN);
	assert_int_equal(registry_media_kind(""), REGISTRY_MT_UNKNOWN);
	assert_int_equal(registry_media_kind(NULL), REGISTRY_MT_UNKNOWN);
}

static void hosts_and_urls(void **state)
{
	(void)state;
	assert_string_equal(registry_api_host("docker.io"), "registry-1.docker.io");
	assert_string_equal(registry_api_host("ghcr.io"), "ghcr.io");
	assert_string_equal(registry_api_host("localhost:5000"), "localhost:5000");

	char *u = registry_url("docker.io", false, "library/hello", "manifests", "latest");
	assert_string_equal(u, "https://registry-1.docker.io/v2/library/hello/manifests/latest");
	free(u);
	u = registry_url("127.0.0.1:5000", true, "a/b", "blobs", "sha256:00");
	assert_string_equal(u, "http://127.0.0.1:5000/v2/a/b/blobs/sha256:00");
	free(u);
	u = registry_url("[::1]:5000", true, "x", "manifests", "v1");
	assert_string_equal(u, "http://[::1]:5000/v2/x/manifests/v1");
	free(u);
}

static void plain_http_decision(void **state)
{
	(void)state;
	/* Loopback, always. */
	assert_true(registry_host_plain_http("localhost", NULL));
	assert_true(registry_host_plain_http("localhost:5000", NULL));
	assert_true(registry_host_plain_http("LOCALHOST:5000", NULL));
	assert_true(registry_host_plain_http("127.0.0.1:5000", NULL));
	assert_true(registry_host_plain_http("127.8.9.10", NULL));
	assert_true(registry_host_plain_http("[::1]:5000", NULL));
	assert_true(registry_host_plain_http("[::1]", NULL));
	/* Not loopback. */
	assert_false(registry_host_plain_http("docker.io", NULL));
	assert_false(registry_host_plain_http("128.0.0.1:5000", NULL));
	assert_false(registry_host_plain_http("localhost.example.com", NULL));
	assert_false(registry_host_plain_http("127.0.0.1.nip.io:5000", NULL));
	assert_false(registry_host_plain_http("[::2]:5000", NULL));
	assert_false(registry_host_plain_http("[::1", NULL));
	assert_false(registry_host_plain_http("", NULL));
	assert_false(registry_host_plain_http(NULL, NULL));
	/* The insecure list: host alone matches every port, host:port only that port. */
	const char *const insecure[] = { "reg.lan", "10.0.0.5:5000", "[fd00::1]:443", NULL };
	assert_true(registry_host_plain_http("reg.lan", insecure));
	assert_true(registry_host_plain_http("reg.lan:8080", insecure));
	assert_true(registry_host_plain_http("REG.LAN:8080", insecure));
	assert_true(registry_host_plain_http("10.0.0.5:5000", insecure));
	assert_false(registry_host_plain_http("10.0.0.5:5001", insecure));
	assert_false(registry_host_plain_http("10.0.0.5", insecure));
	assert_true(registry_host_plain_http("[fd00::1]:443", insecure));
	assert_false(registry_host_plain_http("other.lan", insecure));
	assert_false(registry_host_plain_http("sub.reg.lan", insecure));
}

static void client_rejects_bad_input(void **state)
{
	(void)state;
	registry_client *c = NULL;
	uk_error err = { 0 };
	assert_int_equal(registry_client_new("UPPER/case", NULL, &c, &err), -EINVAL);
	assert_null(c);
	/* A registry token that could inject a header. */
	struct registry_auth a = { .registry_token = "abc\r\nX-Evil: 1" };
	struct registry_opts o = { .auth = &a };
	memset(&err, 0, sizeof(err));
	assert_int_equal(registry_client_new("localhost:1/x", &o, &c, &err), -EINVAL);
	assert_null(strstr(err.msg, "abc"));
	/* registry_image_clear on a cleared image is a no-op. */
	struct registry_image img = { 0 };
	registry_image_clear(&img);
	registry_image_clear(NULL);
	assert_int_equal(registry_client_new("localhost:1/x", NULL, &c, &err), 0);
	registry_client_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(challenge_bearer),
		cmocka_unit_test(challenge_basic_and_multiple),
		cmocka_unit_test(challenge_invalid),
		cmocka_unit_test(index_pick),
		cmocka_unit_test(media_kinds),
		cmocka_unit_test(hosts_and_urls),
		cmocka_unit_test(plain_http_decision),
		cmocka_unit_test(client_rejects_bad_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
