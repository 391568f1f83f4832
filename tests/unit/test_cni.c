/* Tests for src/net/cni_*.c.
 *
 * Pure parts, fed recorded and mutated bytes: configs (files and directories), a plugin's
 * stdin (capability filtering, prevResult, name and cniVersion), its environment, results
 * and error messages, the state.
 *
 * Then the real Debian plugins from /usr/lib/cni (root only): in a child process with a
 * network and a mount namespace of its own (unshare), so the bridge, veths, iptables rules
 * and the pod namespace's bind mount all vanish with that process, whatever happens to it.
 * A hanging plugin is this test binary itself, run under the name "hang": it then waits
 * forever on poll() and never answers. */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/common/spawn.h"
#include "../../src/common/util.h"
#include "../../src/net/cni.h"
#include "../../src/net/net.h"

#define PLUGINS "/usr/lib/cni"

static char g_tmp[64]; /* made by main(), removed by it */

/* ---- helpers ---- */

static struct cni_config *parse_ok(const char *text)
{
	struct cni_config *c = NULL;
	uk_error e = { 0 };
	int r = cni_config_parse("test.conflist", text, &c, &e);
	if (r < 0)
		fail_msg("parse: %s", e.msg);
	return c;
}

/* The parse fails with -code and a message holding want. */
static void parse_fails(const char *text, int code, const char *want)
{
	struct cni_config *c = NULL;
	uk_error e = { 0 };
	int r = cni_config_parse("test.conflist", text, &c, &e);
	if (r != -code || !strstr(e.msg, want))
		fail_msg("%s: got %d \"%s\", want %d with \"%s\"", text, r, e.msg, -code, want);
	assert_null(c);
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(uk_write_file_atomic(path, text, strlen(text), 0644, NULL), 0);
}

static json_object *get(json_object *o, const char *key)
{
	json_object *v = NULL;
	json_object_object_get_ex(o, key, &v);
	return v;
}

static const char *str(json_object *o, const char *key)
{
	json_object *v = get(o, key);
	return v ? json_object_get_string(v) : NULL;
}

static json_object *json(const char *text)
{
	json_object *o = json_tokener_parse(text);
	assert_non_null(o);
	return o;
}

static char *repeat(char ch, size_t n)
{
	char *s = malloc(n + 1);
	assert_non_null(s);
	memset(s, ch, n);
	s[n] = '\0';
	return s;
}

/* head, n items from fmt (its one %zu is the index) separated by ", ", then tail. */
static char *json_items(const char *head, const char *fmt, size_t n, const char *tail)
{
	size_t cap = strlen(head) + strlen(tail) + n * (strlen(fmt) + 24) + 1;
	char *s = malloc(cap);
	assert_non_null(s);
	size_t off = (size_t)snprintf(s, cap, "%s", head);
	for (size_t i = 0; i < n; i++) {
		if (i)
			off += (size_t)snprintf(s + off, cap - off, ", ");
		off += (size_t)snprintf(s + off, cap - off, fmt, i);
	}
	snprintf(s + off, cap - off, "%s", tail);
	return s;
}

/* ---- configs ---- */

/* The config's name, version, plugin count and first type. */
static void assert_conf(const struct cni_config *c, const char *name, const char *version, size_t n, const char *type0)
{
	assert_string_equal(cni_config_name(c), name);
	assert_string_equal(cni_config_version(c), version);
	assert_int_equal(cni_config_n_plugins(c), n);
	assert_string_equal(cni_plugin_type(c, 0), type0);
}


static const char *const BRIDGE_LIST =
	"{\"cniVersion\": \"1.0.0\", \"name\": \"podnet\", \"plugins\": ["
	"{\"type\": \"bridge\", \"bridge\": \"cni0\", \"isGateway\": true, \"ipMasq\": true,"
	" \"ipam\": {\"type\": \"host-local\", \"ranges\": [[{\"subnet\": \"10.22.0.0/16\"}]]}},"
	"{\"type\": \"portmap\", \"capabilities\": {\"portMappings\": true}, \"snat\": true},"
	"{\"type\": \"loopback\"}]}";

static void config_conflist(void **state)
{
	(void)state;
	struct cni_config *c = parse_ok(BRIDGE_LIST);
	assert_conf(c, "podnet", "1.0.0", 3, "bridge");
	assert_string_equal(cni_config_file(c), "test.conflist");
	assert_string_equal(cni_plugin_type(c, 1), "portmap");
	assert_string_equal(cni_plugin_type(c, 2), "loopback");
	assert_null(cni_plugin_type(c, 3));
	assert_true(cni_config_has_capability(c, "portMappings"));
	assert_false(cni_config_has_capability(c, "bandwidth"));
	assert_false(cni_config_disable_check(c));
	assert_int_equal(json_object_array_length(get(cni_config_json(c), "plugins")), 3);
	cni_config_free(c);
	cni_config_free(NULL);
}

static void config_single_plugin(void **state)
{
	(void)state;
	struct cni_config *c = parse_ok("{\"cniVersion\": \"0.4.0\", \"name\": \"one\", \"type\": \"bridge\","
					" \"capabilities\": {\"bandwidth\": true, \"portMappings\": false}}");
	assert_conf(c, "one", "0.4.0", 1, "bridge");
	assert_true(cni_config_has_capability(c, "bandwidth"));
	assert_false(cni_config_has_capability(c, "portMappings"));
	/* Recorded as a list of one, which reads back the same. */
	json_object *list = cni_config_json(c);
	assert_string_equal(str(list, "name"), "one");
	assert_string_equal(str(list, "cniVersion"), "0.4.0");
	struct cni_config *again = NULL;
	assert_int_equal(cni_config_from_json("state", list, &again, NULL), 0);
	assert_conf(again, "one", "0.4.0", 1, "bridge");
	assert_string_equal(cni_config_file(again), "state");
	cni_config_free(again);
	cni_config_free(c);
}

static void config_versions(void **state)
{
	(void)state;
	/* CNI 1.1's cniVersions: the highest unikd speaks. */
	struct cni_config *c = parse_ok("{\"cniVersions\": [\"0.4.0\", \"1.0.0\", \"1.1.0\"], \"name\": \"n\","
					" \"disableCheck\": \"true\", \"plugins\": [{\"type\": \"bridge\"}]}");
	assert_conf(c, "n", "1.0.0", 1, "bridge");
	assert_true(cni_config_disable_check(c));
	cni_config_free(c);
	c = parse_ok("{\"cniVersion\": \"0.3.1\", \"name\": \"n\", \"disableCheck\": true, \"plugins\": [{\"type\": \"b\"}]}");
	assert_conf(c, "n", "0.3.1", 1, "b");
	assert_true(cni_config_disable_check(c));
	cni_config_free(c);
	parse_fails("{\"cniVersion\": \"0.2.0\", \"name\": \"n\", \"plugins\": [{\"type\": \"b\"}]}", EINVAL,
		    "cniVersion 0.2.0 is not supported");
	parse_fails("{\"cniVersion\": \"1.1.0\", \"name\": \"n\", \"plugins\": [{\"type\": \"b\"}]}", EINVAL,
		    "cniVersion 1.1.0 is not supported");
	parse_fails("{\"cniVersions\": [\"2.0.0\"], \"name\": \"n\", \"plugins\": [{\"type\": \"b\"}]}", EINVAL,
		    "not supported");
	parse_fails("{\"cniVersions\": [1], \"name\": \"n\", \"plugins\": [{\"type\": \"b\"}]}", EINVAL,
		    "cniVersions[0] is not a string");
}

static void config_bad_fields(void **state)
{
	(void)state;
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "{\"cniVersion\": \"1.0.0\", \"plugins\": [{\"type\": \"b\"}]}", "no name" },
		{ "{\"name\": \"n\", \"plugins\": [{\"type\": \"b\"}]}", "no cniVersion" },
		{ "{\"cniVersion\": 1, \"name\": \"n\", \"plugins\": [{\"type\": \"b\"}]}", "cniVersion is not a string" },
		{ "{\"cniVersion\": \"1.0.0\", \"name\": 5, \"plugins\": [{\"type\": \"b\"}]}", "name is not a string" },
		{ "{\"cniVersion\": \"1.0.0\", \"name\": \"../etc\", \"plugins\": [{\"type\": \"b\"}]}",
		  "name \"../etc\" is not a valid network name" },
		{ "{\"cniVersion\": \"1.0.0\", \"name\": \"\", \"plugins\": [{\"type\": \"b\"}]}", "name \"\"" },
		{ "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": {}}", "plugins is not an array" },
		{ "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": []}", "plugins is empty" },
		{ "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": [{\"type\": \"b\"}, 7]}",
		  "plugins[1] is not an object" },
		{ "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": [{\"bridge\": \"b\"}]}", "plugins[0] has no type" },
		{ "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": [{\"type\": [\"b\"]}]}",
		  "plugins[0].type is not a string" },
		{ "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": [{\"type\": \"../../bin/sh\"}]}",
		  "plugins[0].type \"../../bin/sh\" is not a plain name" },
		{ "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": [{\"type\": \"/bin/sh\"}]}",
		  "is not a plain name" },
		{ "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": [{\"type\": \"a\\nb\"}]}",
		  "plugins[0].type \"a b\" is not a plain name" },
		{ "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": [{\"type\": \"b\", \"ipam\": "
		  "{\"type\": \"../x\"}}]}",
		  "plugins[0].ipam.type \"../x\" is not a plain name" },
		{ "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": [{\"type\": \"b\", \"ipam\": 3}]}",
		  "plugins[0].ipam is not an object" },
		{ "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": [{\"type\": \"b\", \"capabilities\": []}]}",
		  "plugins[0].capabilities is not an object" },
		{ "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": [{\"type\": \"b\", \"capabilities\": "
		  "{\"portMappings\": \"yes\"}}]}",
		  "plugins[0].capabilities.portMappings is not a boolean" },
		{ "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"disableCheck\": \"maybe\", \"plugins\": [{\"type\": \"b\"}]}",
		  "disableCheck is not a boolean" },
		{ "{\"cniVersion\": \"1.0.0\", \"name\": \"n\"}", "neither a list (plugins) nor one plugin (type)" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++)
		parse_fails(cases[i].text, EINVAL, cases[i].want);
}

static char *list_of(size_t n_plugins)
{
	return json_items("{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": [", "{\"type\": \"p%zu\"}",
			  n_plugins, "]}");
}

static void config_plugin_count(void **state)
{
	(void)state;
	char *s = list_of(CNI_PLUGINS_MAX);
	struct cni_config *c = parse_ok(s);
	assert_int_equal(cni_config_n_plugins(c), CNI_PLUGINS_MAX);
	assert_string_equal(cni_plugin_type(c, CNI_PLUGINS_MAX - 1), "p15");
	cni_config_free(c);
	free(s);
	s = list_of(CNI_PLUGINS_MAX + 1);
	parse_fails(s, EINVAL, "17 plugins, at most 16");
	free(s);
}

/* A plugin whose "x" is nested depth levels deep. */
static char *nested(size_t depth)
{
	char *open = repeat('[', depth), *close = repeat(']', depth);
	char *s = uk_strf("{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"type\": \"b\", \"x\": %s%s}", open, close);
	assert_non_null(s);
	free(open);
	free(close);
	return s;
}

static void config_deep_nesting(void **state)
{
	(void)state;
	char *s = nested(CNI_JSON_DEPTH - 2);
	struct cni_config *c = parse_ok(s);
	cni_config_free(c);
	free(s);
	s = nested(100000);
	parse_fails(s, EINVAL, "nested deeper than 32 levels");
	free(s);
}

static void config_huge(void **state)
{
	(void)state;
	/* Valid JSON, but past the bound: refused before parsing. */
	char *pad = repeat(' ', CNI_CONF_MAX);
	char *s = malloc(CNI_CONF_MAX + 128);
	assert_non_null(s);
	snprintf(s, CNI_CONF_MAX + 128, "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"type\": \"b\"}%s", pad);
	parse_fails(s, EFBIG, "larger than 1048576 bytes");
	free(s);
	free(pad);
}

static void config_not_json(void **state)
{
	(void)state;
	parse_fails("", EINVAL, "ends too early");
	parse_fails("not json", EINVAL, "is not JSON");
	parse_fails("{\"cniVersion\": \"1.0.0\"", EINVAL, "ends too early");
	parse_fails("[1, 2]", EINVAL, "is not a JSON object");
	parse_fails("{\"name\": \"n\"} {}", EINVAL, "is not JSON");
	parse_fails("{\"name\": 'n'}", EINVAL, "is not JSON");
	parse_fails("{/* comment */ \"name\": \"n\"}", EINVAL, "is not JSON");
	parse_fails("{\"name\": \"\xff\xfe\"}", EINVAL, "is not JSON");
	parse_fails("{\"name\": \"n\",}", EINVAL, "is not JSON");
}

static void mkdtemp_in(char *out, size_t len, const char *what)
{
	snprintf(out, len, "%s/%s-XXXXXX", g_tmp, what);
	assert_non_null(mkdtemp(out));
}

static void config_directory(void **state)
{
	(void)state;
	char dir[PATH_MAX], path[PATH_MAX + 32];
	mkdtemp_in(dir, sizeof(dir), "conf");
	struct cni_config *c = NULL;
	uk_error e = { 0 };
	/* Empty, then missing. */
	assert_int_equal(cni_config_load(dir, &c, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "no CNI config in"));
	snprintf(path, sizeof(path), "%s/missing", dir);
	assert_int_equal(cni_config_load(path, &c, &e), -ENOENT);
	/* Not config files, a directory and a FIFO with config names, a broken file first. */
	write_file(dir, "README", "{}");
	write_file(dir, "99-last.conf", "{\"cniVersion\": \"1.0.0\", \"name\": \"last\", \"type\": \"bridge\"}");
	write_file(dir, "00-broken.conflist", "{\"cniVersion\": \"1.0.0\", \"name\": \"broken\"");
	write_file(dir, "20-good.conflist", BRIDGE_LIST);
	write_file(dir, "30-other.json", "{\"cniVersion\": \"1.0.0\", \"name\": \"other\", \"type\": \"ptp\"}");
	snprintf(path, sizeof(path), "%s/10-dir.conflist", dir);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/11-fifo.conf", dir);
	assert_int_equal(mkfifo(path, 0644), 0);
	assert_int_equal(cni_config_load(dir, &c, &e), 0);
	assert_string_equal(cni_config_name(c), "podnet");
	snprintf(path, sizeof(path), "%s/20-good.conflist", dir);
	assert_string_equal(cni_config_file(c), path);
	cni_config_free(c);
	/* Lexicographic: a symlink named before it wins. */
	snprintf(path, sizeof(path), "%s/15-link.conf", dir);
	char target[PATH_MAX + 32];
	snprintf(target, sizeof(target), "%s/30-other.json", dir);
	assert_int_equal(symlink(target, path), 0);
	assert_int_equal(cni_config_load(dir, &c, &e), 0);
	assert_string_equal(cni_config_name(c), "other");
	cni_config_free(c);
	uk_rm_rf(dir, NULL);
}

static void config_directory_all_bad(void **state)
{
	(void)state;
	char dir[PATH_MAX];
	mkdtemp_in(dir, sizeof(dir), "conf");
	write_file(dir, "a.conf", "{\"cniVersion\": \"1.0.0\", \"name\": \"n\"}");
	write_file(dir, "b.conflist", "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": [{\"type\": \"../sh\"}]}");
	write_file(dir, "c.json", "garbage");
	struct cni_config *c = NULL;
	uk_error e = { 0 };
	assert_int_equal(cni_config_load(dir, &c, &e), -ENOENT);
	assert_null(c);
	assert_non_null(strstr(e.msg, "no valid CNI config in"));
	assert_non_null(strstr(e.msg, "a.conf: neither a list"));
	assert_non_null(strstr(e.msg, "; b.conflist: plugins[0].type \"../sh\" is not a plain name"));
	assert_non_null(strstr(e.msg, "; c.json is not JSON"));
	/* Many bad files: the message stays one bounded line. */
	for (int i = 0; i < 200; i++) {
		char name[32];
		snprintf(name, sizeof(name), "x%03d.conf", i);
		write_file(dir, name, "{}");
	}
	assert_int_equal(cni_config_load(dir, &c, &e), -ENOENT);
	assert_true(strlen(e.msg) < UK_ERROR_MSG_MAX);
	assert_non_null(strstr(e.msg, "..."));
	assert_null(strchr(e.msg, '\n'));
	uk_rm_rf(dir, NULL);
}

/* ---- stdin ---- */

static const char *const CAPS_LIST =
	"{\"cniVersion\": \"1.0.0\", \"name\": \"caps\", \"plugins\": ["
	"{\"type\": \"bridge\", \"cniVersion\": \"0.1.0\", \"name\": \"other\", \"bridge\": \"cni0\","
	" \"keyA\": [\"some\", {\"more\": 1}], \"args\": {\"cni\": {\"x\": 1}}},"
	"{\"type\": \"portmap\", \"capabilities\": {\"portMappings\": true, \"bandwidth\": false}},"
	"{\"type\": \"bandwidth\", \"capabilities\": {\"bandwidth\": true}},"
	"{\"type\": \"dnsy\", \"capabilities\": {\"dns\": true, \"ipRanges\": true}},"
	"{\"type\": \"all\", \"capabilities\": {\"dns\": true, \"bandwidth\": true, \"portMappings\": true}}]}";

static const struct cni_port_mapping PORTS[] = {
	{ .host_port = 8080, .container_port = 80, .protocol = "tcp" },
	{ .host_port = 0, .container_port = 9090, .protocol = "tcp" }, /* no hostPort */
	{ .host_port = 5353, .container_port = 53, .protocol = "udp", .host_ip = "192.168.1.2" },
};
static const char *const SERVERS[] = { "10.96.0.10", "fd00::10" };
static const char *const SEARCHES[] = { "default.svc.cluster.local", "svc.cluster.local" };
static const char *const OPTIONS[] = { "ndots:5" };

static struct cni_pod full_pod(void)
{
	return (struct cni_pod){
		.sandbox_id = "0123456789abcdef",
		.netns = "/run/netns/unikd-0123456789abcdef",
		.k8s_namespace = "default",
		.k8s_name = "web-0",
		.k8s_uid = "6f1f3c1e-0000-4000-8000-000000000001",
		.ports = PORTS,
		.n_ports = 3,
		.dns_servers = SERVERS,
		.n_dns_servers = 2,
		.dns_searches = SEARCHES,
		.n_dns_searches = 2,
		.dns_options = OPTIONS,
		.n_dns_options = 1,
		.ingress_bps = 1000000,
	};
}

static void assert_json(json_object *o, const char *want)
{
	json_object *w = json(want);
	if (!json_object_equal(o, w))
		fail_msg("got %s\nwant %s", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
			 json_object_to_json_string_ext(w, JSON_C_TO_STRING_PLAIN));
	json_object_put(w);
}

static void stdin_capabilities(void **state)
{
	(void)state;
	struct cni_config *c = parse_ok(CAPS_LIST);
	struct cni_pod pod = full_pod();
	/* No capabilities: the config as it is, with the list's name and cniVersion. */
	json_object *in = cni_plugin_stdin(c, 0, "ADD", &pod, NULL);
	assert_json(in, "{\"cniVersion\": \"1.0.0\", \"name\": \"caps\", \"type\": \"bridge\", \"bridge\": \"cni0\","
			" \"keyA\": [\"some\", {\"more\": 1}], \"args\": {\"cni\": {\"x\": 1}}}");
	json_object_put(in);
	/* portMappings only; the mapping without a hostPort is left out; hostIP when given. */
	in = cni_plugin_stdin(c, 1, "ADD", &pod, NULL);
	assert_json(in, "{\"cniVersion\": \"1.0.0\", \"name\": \"caps\", \"type\": \"portmap\", \"runtimeConfig\": "
			"{\"portMappings\": [{\"hostPort\": 8080, \"containerPort\": 80, \"protocol\": \"tcp\"},"
			" {\"hostPort\": 5353, \"containerPort\": 53, \"protocol\": \"udp\", \"hostIP\": \"192.168.1.2\"}]}}");
	json_object_put(in);
	/* bandwidth: a rate without a burst gets the largest one; no egress. */
	in = cni_plugin_stdin(c, 2, "ADD", &pod, NULL);
	assert_json(in, "{\"cniVersion\": \"1.0.0\", \"name\": \"caps\", \"type\": \"bandwidth\", \"runtimeConfig\": "
			"{\"bandwidth\": {\"ingressRate\": 1000000, \"ingressBurst\": 4294967295, \"egressRate\": 0,"
			" \"egressBurst\": 0}}}");
	json_object_put(in);
	/* dns; ipRanges is declared but the runtime offers none. */
	in = cni_plugin_stdin(c, 3, "ADD", &pod, NULL);
	assert_json(in, "{\"cniVersion\": \"1.0.0\", \"name\": \"caps\", \"type\": \"dnsy\", \"runtimeConfig\": "
			"{\"dns\": {\"servers\": [\"10.96.0.10\", \"fd00::10\"], \"searches\": "
			"[\"default.svc.cluster.local\", \"svc.cluster.local\"], \"options\": [\"ndots:5\"]}}}");
	json_object_put(in);
	/* A pod with nothing to offer: no runtimeConfig at all. */
	struct cni_pod bare = { .sandbox_id = "s1", .netns = "/run/netns/x" };
	in = cni_plugin_stdin(c, 4, "ADD", &bare, NULL);
	assert_json(in, "{\"cniVersion\": \"1.0.0\", \"name\": \"caps\", \"type\": \"all\"}");
	json_object_put(in);
	cni_config_free(c);
}

static void stdin_prev_result(void **state)
{
	(void)state;
	struct cni_config *c = parse_ok(CAPS_LIST);
	struct cni_pod pod = full_pod();
	json_object *prev = json("{\"cniVersion\": \"1.0.0\", \"ips\": [{\"address\": \"10.22.0.5/16\"}]}");
	json_object *in = cni_plugin_stdin(c, 0, "DEL", &pod, prev);
	assert_true(json_object_equal(get(in, "prevResult"), prev));
	json_object_put(in);
	in = cni_plugin_stdin(c, 0, "ADD", &pod, NULL);
	assert_null(get(in, "prevResult"));
	json_object_put(in);
	cni_config_free(c);
	/* Before 0.4.0, DEL takes no prevResult (libcni); ADD does. */
	c = parse_ok("{\"cniVersion\": \"0.3.1\", \"name\": \"old\", \"plugins\": [{\"type\": \"b\"}]}");
	in = cni_plugin_stdin(c, 0, "DEL", &pod, prev);
	assert_null(get(in, "prevResult"));
	json_object_put(in);
	in = cni_plugin_stdin(c, 0, "ADD", &pod, prev);
	assert_non_null(get(in, "prevResult"));
	assert_string_equal(str(in, "cniVersion"), "0.3.1");
	json_object_put(in);
	cni_config_free(c);
	json_object_put(prev);
}

/* ---- the environment ---- */

static void env_exact(void **state)
{
	(void)state;
	struct cni_pod pod = full_pod();
	char buf[4096];
	const char *env[CNI_ENV_MAX + 1];
	assert_int_equal(cni_plugin_env("ADD", &pod, "/opt/cni/bin:/usr/lib/cni", buf, sizeof(buf), env, NULL), 0);
	const char *want[] = {
		"CNI_COMMAND=ADD",
		"CNI_CONTAINERID=0123456789abcdef",
		"CNI_NETNS=/run/netns/unikd-0123456789abcdef",
		"CNI_IFNAME=eth0",
		"CNI_PATH=/opt/cni/bin:/usr/lib/cni",
		"CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;"
		"K8S_POD_INFRA_CONTAINER_ID=0123456789abcdef;K8S_POD_UID=6f1f3c1e-0000-4000-8000-000000000001",
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(*want); i++)
		assert_string_equal(env[i], want[i]);
	assert_null(env[sizeof(want) / sizeof(*want)]);
	/* DEL after a reboot: an empty CNI_NETNS; names that are not given are left out. */
	struct cni_pod del = { .sandbox_id = "abc", .netns = "" };
	assert_int_equal(cni_plugin_env("DEL", &del, "/usr/lib/cni", buf, sizeof(buf), env, NULL), 0);
	assert_string_equal(env[0], "CNI_COMMAND=DEL");
	assert_string_equal(env[2], "CNI_NETNS=");
	assert_string_equal(env[5], "CNI_ARGS=IgnoreUnknown=1;K8S_POD_INFRA_CONTAINER_ID=abc");
}

static void env_bad(void **state)
{
	(void)state;
	char buf[4096];
	const char *env[CNI_ENV_MAX + 1];
	uk_error e = { 0 };
	struct cni_pod pod = full_pod();
	assert_int_equal(cni_plugin_env("RUN", &pod, "/usr/lib/cni", buf, sizeof(buf), env, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "CNI_COMMAND"));
	pod.sandbox_id = "../x";
	assert_int_equal(cni_plugin_env("ADD", &pod, "/usr/lib/cni", buf, sizeof(buf), env, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "sandbox id"));
	pod = full_pod();
	pod.netns = "";
	assert_int_equal(cni_plugin_env("ADD", &pod, "/usr/lib/cni", buf, sizeof(buf), env, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "netns"));
	pod.netns = "run/netns/x";
	assert_int_equal(cni_plugin_env("DEL", &pod, "/usr/lib/cni", buf, sizeof(buf), env, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "netns: not an absolute path"));
	pod = full_pod();
	pod.k8s_name = "web;IP=10.0.0.1";
	assert_int_equal(cni_plugin_env("ADD", &pod, "/usr/lib/cni", buf, sizeof(buf), env, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "k8s_name"));
	pod = full_pod();
	pod.k8s_namespace = "a\nb";
	assert_int_equal(cni_plugin_env("ADD", &pod, "/usr/lib/cni", buf, sizeof(buf), env, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "k8s_namespace"));
	pod = full_pod();
	assert_int_equal(cni_plugin_env("ADD", &pod, "/usr/lib/cni", buf, 64, env, &e), -ENOBUFS);
	struct cni_port_mapping sctp_bad[] = { { .host_port = 1, .container_port = 1, .protocol = "icmp" } };
	pod.ports = sctp_bad;
	pod.n_ports = 1;
	assert_int_equal(cni_pod_check(&pod, true, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "ports[0].protocol"));
	pod = full_pod();
	const char *bad_servers[] = { "dns.example.com" };
	pod.dns_servers = bad_servers;
	pod.n_dns_servers = 1;
	assert_int_equal(cni_pod_check(&pod, true, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "dns_servers[0]: not an IP address"));
	pod = full_pod();
	pod.egress_bps = -1;
	assert_int_equal(cni_pod_check(&pod, true, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "bandwidth"));
}

/* ---- results ---- */

/* What bridge (1.1.1) printed for a pod, with the interfaces it made. */
static const char *const RESULT_100 =
	"{\n    \"cniVersion\": \"1.0.0\",\n    \"interfaces\": [\n"
	"        {\"name\": \"cni0\", \"mac\": \"5a:1e:9c:00:00:01\"},\n"
	"        {\"name\": \"veth1234\", \"mac\": \"5a:1e:9c:00:00:02\"},\n"
	"        {\"name\": \"eth0\", \"mac\": \"9A:88:77:66:55:44\", \"sandbox\": \"/run/netns/unikd-x\"}\n    ],\n"
	"    \"ips\": [{\"interface\": 2, \"address\": \"10.22.0.5/16\", \"gateway\": \"10.22.0.1\"}],\n"
	"    \"routes\": [{\"dst\": \"0.0.0.0/0\"}],\n    \"dns\": {}\n}";

static void result_parse_ok(const char *text, struct cni_result *res)
{
	uk_error e = { 0 };
	if (cni_result_parse(text, res, NULL, &e) < 0)
		fail_msg("%s: %s", text, e.msg);
}

static void result_fails(const char *text, const char *want)
{
	struct cni_result res;
	uk_error e = { 0 };
	json_object *raw = NULL;
	int r = cni_result_parse(text, &res, &raw, &e);
	if (r >= 0 || !strstr(e.msg, want))
		fail_msg("%s: got %d \"%s\", want an error with \"%s\"", text, r, e.msg, want);
	assert_null(raw);
}

static void result_100(void **state)
{
	(void)state;
	struct cni_result res;
	json_object *raw = NULL;
	assert_int_equal(cni_result_parse(RESULT_100, &res, &raw, NULL), 0);
	assert_int_equal(res.n_ips, 1);
	assert_string_equal(res.ips[0].address, "10.22.0.5/16");
	assert_string_equal(res.ips[0].gateway, "10.22.0.1");
	assert_int_equal(res.ips[0].interface, 2);
	assert_true(res.ips[0].v4);
	assert_string_equal(res.pod_ip, "10.22.0.5");
	assert_string_equal(res.mac, "9a:88:77:66:55:44");
	assert_non_null(get(raw, "routes"));
	json_object_put(raw);
}

static void result_040(void **state)
{
	(void)state;
	struct cni_result res;
	result_parse_ok("{\"cniVersion\": \"0.4.0\", \"interfaces\": [{\"name\": \"eth0\", \"sandbox\": \"/x\"}],"
			" \"ips\": [{\"version\": \"6\", \"interface\": 0, \"address\": \"fd00::5/64\"},"
			" {\"version\": \"4\", \"interface\": 0, \"address\": \"10.1.0.7/24\", \"gateway\": \"10.1.0.1\"}]}",
			&res);
	assert_int_equal(res.n_ips, 2);
	assert_false(res.ips[0].v4);
	assert_string_equal(res.pod_ip, "10.1.0.7"); /* IPv6 first, the pod IP is the IPv4 */
	assert_string_equal(res.mac, "");
	/* An IPAM plugin's: no interfaces, no index: the address is eth0's. */
	result_parse_ok("{\"cniVersion\": \"0.3.1\", \"ips\": [{\"version\": \"4\", \"address\": \"10.9.0.2/24\"}]}",
			&res);
	assert_int_equal(res.ips[0].interface, -1);
	assert_string_equal(res.pod_ip, "10.9.0.2");
}

static void result_pod_ip_rules(void **state)
{
	(void)state;
	struct cni_result res;
	/* No IPs at all. */
	result_parse_ok("{\"cniVersion\": \"1.0.0\", \"dns\": {}}", &res);
	assert_int_equal(res.n_ips, 0);
	assert_string_equal(res.pod_ip, "");
	/* What loopback returns: lo's addresses are not the pod's. */
	result_parse_ok("{\"cniVersion\": \"1.0.0\", \"interfaces\": [{\"name\": \"lo\", \"mac\": \"00:00:00:00:00:00\","
			" \"sandbox\": \"/x\"}], \"ips\": [{\"interface\": 0, \"address\": \"127.0.0.1/8\"},"
			" {\"interface\": 0, \"address\": \"::1/128\"}], \"dns\": {}}",
			&res);
	assert_int_equal(res.n_ips, 2);
	assert_string_equal(res.pod_ip, "");
	assert_string_equal(res.mac, "");
	/* A host interface's address first, then one without an index, then eth0's. */
	result_parse_ok("{\"cniVersion\": \"1.0.0\", \"interfaces\": [{\"name\": \"cni0\"}, {\"name\": \"eth0\"}],"
			" \"ips\": [{\"interface\": 0, \"address\": \"10.0.0.1/24\"}, {\"address\": \"10.0.0.9/24\"},"
			" {\"interface\": 1, \"address\": \"10.0.0.5/24\"}]}",
			&res);
	assert_string_equal(res.pod_ip, "10.0.0.9");
	/* IPv6 only. */
	result_parse_ok("{\"cniVersion\": \"1.0.0\", \"ips\": [{\"address\": \"fd00::5/64\"}]}", &res);
	assert_int_equal(res.n_ips, 1);
	assert_string_equal(res.pod_ip, "");
}

static char *result_with_ips(size_t n)
{
	return json_items("{\"cniVersion\": \"1.0.0\", \"ips\": [", "{\"address\": \"10.0.%zu.1/24\"}", n, "]}");
}

static void result_bounds(void **state)
{
	(void)state;
	struct cni_result res;
	char *s = result_with_ips(CNI_IPS_MAX);
	result_parse_ok(s, &res);
	assert_int_equal(res.n_ips, CNI_IPS_MAX);
	assert_string_equal(res.ips[CNI_IPS_MAX - 1].address, "10.0.15.1/24");
	free(s);
	s = result_with_ips(CNI_IPS_MAX + 1);
	result_fails(s, "17 ips, at most 16");
	free(s);
	s = json_items("{\"interfaces\": [", "{\"name\": \"v%zu\"}", CNI_INTERFACES_MAX, "]}");
	result_parse_ok(s, &res);
	free(s);
	s = json_items("{\"interfaces\": [", "{\"name\": \"v%zu\"}", CNI_INTERFACES_MAX + 1, "]}");
	result_fails(s, "33 interfaces, at most 32");
	free(s);
	/* Overlong strings. */
	char *pad = repeat('1', 80);
	char buf[512];
	snprintf(buf, sizeof(buf), "{\"ips\": [{\"address\": \"10.0.0.1/2%s\"}]}", pad);
	result_fails(buf, "ips[0].address is longer than 63 bytes");
	snprintf(buf, sizeof(buf), "{\"interfaces\": [{\"name\": \"%s\"}]}", pad);
	result_fails(buf, "interfaces[0].name is longer than 64 bytes");
	free(pad);
	result_fails("{\"ips\": [{\"address\": \"10.0.0.1/16\"}]} trailing", "result is not JSON");
}

static void result_hostile(void **state)
{
	(void)state;
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "", "result is not JSON" },
		{ "null", "result is not JSON" },
		{ "[]", "result is not a JSON object" },
		{ "{\"cniVersion\": \"0.2.0\", \"ip4\": {\"ip\": \"10.0.0.2/24\"}}", "cniVersion 0.2.0 is not one unikd reads" },
		{ "{\"cniVersion\": 1}", "result.cniVersion is not a string" },
		{ "{\"ips\": {}}", "ips is not an array" },
		{ "{\"ips\": [5]}", "ips[0] is not an object" },
		{ "{\"ips\": [{}]}", "ips[0] has no address" },
		{ "{\"ips\": [{\"address\": 5}]}", "ips[0].address is not a string" },
		{ "{\"ips\": [{\"address\": \"10.0.0.1\"}]}", "ips[0].address is not an address in CIDR form" },
		{ "{\"ips\": [{\"address\": \"10.0.0.1/33\"}]}", "ips[0].address is not an address in CIDR form" },
		{ "{\"ips\": [{\"address\": \"10.0.0.300/24\"}]}", "not an address in CIDR form" },
		{ "{\"ips\": [{\"address\": \"fd00::1/129\"}]}", "not an address in CIDR form" },
		{ "{\"ips\": [{\"address\": \"10.0.0.1/-1\"}]}", "not an address in CIDR form" },
		{ "{\"ips\": [{\"address\": \"10.0.0.1/24\", \"gateway\": \"router\"}]}", "ips[0].gateway is not an IP address" },
		{ "{\"ips\": [{\"address\": \"10.0.0.1/24\", \"interface\": \"0\"}]}", "ips[0].interface is not an integer" },
		{ "{\"ips\": [{\"address\": \"10.0.0.1/24\", \"interface\": 0}]}",
		  "ips[0].interface 0 is not an index into interfaces (0)" },
		{ "{\"interfaces\": [{\"name\": \"eth0\"}], \"ips\": [{\"address\": \"10.0.0.1/24\", \"interface\": -1}]}",
		  "ips[0].interface -1 is not an index" },
		{ "{\"interfaces\": [{\"name\": \"eth0\"}], \"ips\": [{\"address\": \"10.0.0.1/24\", \"interface\": 1.5}]}",
		  "ips[0].interface is not an integer" },
		{ "{\"ips\": [{\"address\": \"10.0.0.1/24\", \"version\": \"6\"}]}", "ips[0].version does not match" },
		{ "{\"ips\": [{\"address\": \"10.0.0.1/24\", \"version\": 4}]}", "ips[0].version is not a string" },
		{ "{\"interfaces\": {}}", "interfaces is not an array" },
		{ "{\"interfaces\": [\"eth0\"]}", "interfaces[0] is not an object" },
		{ "{\"interfaces\": [{\"mac\": \"00:11:22:33:44:55\"}]}", "interfaces[0] has no name" },
		{ "{\"interfaces\": [{\"name\": 0}]}", "interfaces[0].name is not a string" },
		{ "{\"interfaces\": [{\"name\": \"eth0\", \"mac\": \"zz:11:22:33:44:55\"}]}",
		  "interfaces[0].mac is not a MAC address" },
		{ "{\"interfaces\": [{\"name\": \"eth0\", \"mac\": \"00:11:22:33:44:55:66\"}]}", "is not a MAC address" },
		{ "{\"interfaces\": [{\"name\": \"eth0\", \"sandbox\": []}]}", "interfaces[0].sandbox is not a string" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++)
		result_fails(cases[i].text, cases[i].want);
	/* A host interface with another kind of hardware address is not checked as a MAC. */
	struct cni_result res;
	result_parse_ok("{\"interfaces\": [{\"name\": \"ib0\", \"mac\": \"80:00:02:08:fe:80:00:00:00:00:00:00:00:02\"}]}",
			&res);
}

/* ---- error messages ---- */

static void error_messages(void **state)
{
	(void)state;
	char out[256];
	cni_error_message("host-local",
			  "{\"cniVersion\": \"1.0.0\", \"code\": 7, \"msg\": \"Invalid Configuration\","
			  " \"details\": \"Network 192.168.0.0/31 too small to allocate from.\"}",
			  out, sizeof(out));
	assert_string_equal(out, "plugin host-local: code 7: Invalid Configuration: Network 192.168.0.0/31 too small "
				 "to allocate from.");
	/* What bridge printed here for a /31 (recorded). */
	const char *rec = "{\n    \"code\": 999,\n    \"msg\": \"invalid range set 0: Network 10.99.0.0/31 too small to "
			  "allocate from\"\n}";
	cni_error_message("bridge", rec, out, sizeof(out));
	assert_string_equal(out, "plugin bridge: code 999: invalid range set 0: Network 10.99.0.0/31 too small to "
				 "allocate from");
	assert_int_equal(cni_error_code(rec), 999);
	assert_int_equal(cni_error_code("{\"code\": 11, \"msg\": \"later\"}"), 11);
	assert_int_equal(cni_error_code("oops"), 0);
	cni_error_message("x", "{\"msg\": \"line one\\nline\\ttwo\\u0007\"}", out, sizeof(out));
	assert_string_equal(out, "plugin x: line one line two ");
	cni_error_message("x", "{\"code\": 4, \"details\": \"only details\"}", out, sizeof(out));
	assert_string_equal(out, "plugin x: code 4: only details");
	/* Not JSON: the first bytes, on one line. */
	cni_error_message("x", "panic: runtime error\n\ngoroutine 1 [running]:\n\tmain.go:12\n", out, sizeof(out));
	assert_string_equal(out, "plugin x: panic: runtime error goroutine 1 [running]: main.go:12");
	cni_error_message("x", "{\"code\": \"7\"}", out, sizeof(out));
	assert_string_equal(out, "plugin x: {\"code\": \"7\"}");
	cni_error_message("x", "", out, sizeof(out));
	assert_string_equal(out, "plugin x: (no output)");
	cni_error_message("x", NULL, out, sizeof(out));
	assert_string_equal(out, "plugin x: (no output)");
	cni_error_message("x", "bad \xff\xfe bytes \xc3\xa9t\xc3", out, sizeof(out));
	assert_string_equal(out, "plugin x: bad ?? bytes \xc3\xa9t?");
}

static void error_message_bounded(void **state)
{
	(void)state;
	char *big = repeat('m', 100000);
	size_t cap = 100100;
	char *text = malloc(cap);
	assert_non_null(text);
	snprintf(text, cap, "{\"code\": 1, \"msg\": \"%s\"}", big);
	char out[100];
	cni_error_message("bridge", text, out, sizeof(out));
	assert_int_equal(strlen(out), sizeof(out) - 1);
	assert_memory_equal(out, "plugin bridge: code 1: mmm", 26);
	assert_string_equal(out + sizeof(out) - 4, "...");
	cni_error_message("bridge", big, out, sizeof(out));
	assert_int_equal(strlen(out), sizeof(out) - 1);
	assert_string_equal(out + sizeof(out) - 4, "...");
	/* A cut never splits a character: é is two bytes. */
	char acc[200] = "";
	for (int i = 0; i < 60; i++)
		strcat(acc, "\xc3\xa9");
	for (size_t len = 20; len < 40; len++) {
		char small[40];
		cni_error_message("x", acc, small, len);
		size_t n = strlen(small);
		assert_true(n < len);
		assert_string_equal(small + n - 3, "...");
		for (size_t i = strlen("plugin x: "); i + 3 < n; i += 2)
			assert_memory_equal(small + i, "\xc3\xa9", 2);
	}
	free(text);
	free(big);
}

/* ---- the state, without plugins ---- */

static void state_round_trip(void **state)
{
	(void)state;
	struct cni_config *c = parse_ok(BRIDGE_LIST);
	struct cni_pod pod = full_pod();
	json_object *st = cni_state_new(c, &pod);
	assert_non_null(st);
	assert_int_equal(json_object_get_int(get(st, "version")), 1);
	assert_string_equal(str(st, "containerId"), "0123456789abcdef");
	assert_string_equal(str(st, "netns"), "/run/netns/unikd-0123456789abcdef");
	assert_string_equal(str(get(st, "k8s"), "name"), "web-0");
	assert_true(json_object_equal(get(st, "config"), cni_config_json(c)));
	assert_non_null(get(get(st, "capabilityArgs"), "portMappings"));
	struct cni_result res;
	uk_error e = { 0 };
	assert_int_equal(cni_state_result(st, &res, &e), -ENOENT);
	/* The runtime writes it and reads it back. */
	const char *text = json_object_to_json_string_ext(st, JSON_C_TO_STRING_PLAIN);
	json_object *back = json(text);
	json_object_array_add(get(back, "results"), json(RESULT_100));
	assert_int_equal(cni_state_result(back, &res, &e), 0);
	assert_string_equal(res.pod_ip, "10.22.0.5");
	json_object_put(back);
	json_object_put(st);
	cni_config_free(c);
}

/* A malformed state is refused before any plugin runs (the directory has none). */
static void state_malformed(void **state)
{
	(void)state;
	char bin[PATH_MAX];
	mkdtemp_in(bin, sizeof(bin), "bin");
	const char *dirs[] = { bin };
	struct cni_runner r = { .bin_dirs = dirs, .n_bin_dirs = 1 };
	struct cni_pod pod = { .sandbox_id = "s1", .netns = "" };
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "[]", "CNI state: not a JSON object" },
		{ "{\"version\": 2}", "version is not 1" },
		{ "{\"version\": 1, \"containerId\": \"s1\", \"results\": []}", "no file" },
		{ "{\"version\": 1, \"file\": \"f\", \"containerId\": \"s1\", \"results\": {}}", "results is not an array" },
		{ "{\"version\": 1, \"file\": \"f\", \"containerId\": \"s1\", \"results\": [1]}", "results[0] is not an object" },
		{ "{\"version\": 1, \"file\": \"f\", \"containerId\": \"s1\", \"results\": []}", "no config" },
		{ "{\"version\": 1, \"file\": \"f\", \"containerId\": \"s1\", \"results\": [], \"config\": "
		  "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": [{\"type\": \"/bin/sh\"}]}}",
		  "not a plain name" },
		{ "{\"version\": 1, \"file\": \"f\", \"containerId\": \"s1\", \"results\": [], \"config\": "
		  "{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": [{\"type\": \"b\"}]}}",
		  "capabilityArgs is not an object" },
		{ "{\"version\": 1, \"file\": \"f\", \"containerId\": \"s2\", \"results\": [], \"capabilityArgs\": {},"
		  " \"config\": {\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"plugins\": [{\"type\": \"b\"}]}}",
		  "the state is sandbox s2's, not s1's" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		json_object *st = json(cases[i].text);
		uk_error e = { 0 };
		int rr = cni_del(&r, st, NULL, &pod, &e);
		if (rr != -EINVAL || !strstr(e.msg, cases[i].want))
			fail_msg("%s: got %d \"%s\", want \"%s\"", cases[i].text, rr, e.msg, cases[i].want);
		json_object_put(st);
	}
	uk_rm_rf(bin, NULL);
}

static void clean_append(void **state)
{
	(void)state;
	char out[16];
	size_t off = 0;
	out[0] = '\0';
	cni_clean_append(out, sizeof(out), &off, "a\r\n\tb", 5);
	assert_string_equal(out, "a b");
	cni_clean_append(out, sizeof(out), &off, "\x7f" "c", 2);
	assert_string_equal(out, "a b c");
	cni_clean_append(out, sizeof(out), &off, "0123456789abcdef", 16);
	assert_string_equal(out, "a b c0123456..."); /* 15 bytes and the NUL */
	assert_int_equal(off, strlen(out));
}

/* ---- the real plugins (root, in namespaces of their own) ---- */

#define NET_NAME "uktest"

static char g_run[200];   /* this part's directory */
static char g_podns[256]; /* the pod's network namespace: a bind mount */
static char g_conf[256];  /* the CNI config directory */
static char g_data[256];  /* host-local's dataDir */
static char g_bin[256];   /* a plugin directory with "hang" in it */
static char g_bridge[IFNAMSIZ];
static int g_node_ns = -1;     /* the test's own namespace, playing the node's */
static char g_sandbox[32];     /* a new one for each test: rules a failed test left name another */

/* A new network namespace pinned at path, as `ip netns add` pins one. */
static void netns_pin(const char *path)
{
	int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(unshare(CLONE_NEWNET), 0);
	int r = mount("/proc/self/ns/net", path, NULL, MS_BIND, NULL);
	assert_int_equal(setns(g_node_ns, CLONE_NEWNET), 0);
	assert_int_equal(r, 0);
}

/* The pod's namespace goes, as after a reboot. The kernel frees a namespace (and the veth
 * ends in it) in the background, so eth0 is deleted first: its peer on the node goes at
 * once, and the next test finds no veth. Not asserting: teardowns call it. */
static void pod_destroy(void)
{
	int fd = open(g_podns, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && setns(fd, CLONE_NEWNET) == 0) {
		(void)net_link_delete("eth0", NULL); /* absent when DEL ran or ADD made none */
		if (setns(g_node_ns, CLONE_NEWNET) < 0)
			abort(); /* the rest would run in the pod's namespace */
	}
	if (fd >= 0)
		close(fd);
	(void)umount2(g_podns, MNT_DETACH); /* not pinned: a test destroyed it already */
	(void)unlink(g_podns);
}

/* Enter the pod's namespace (true) or come back to the node's (false). */
static void in_pod(bool enter)
{
	if (!enter) {
		assert_int_equal(setns(g_node_ns, CLONE_NEWNET), 0);
		return;
	}
	int fd = open(g_podns, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	int r = setns(fd, CLONE_NEWNET);
	close(fd);
	assert_int_equal(r, 0);
}

/* ifname's first IPv4 address in the current namespace, "" if none. */
static void ipv4_of(const char *ifname, char out[INET_ADDRSTRLEN])
{
	struct ifaddrs *ifa = NULL;
	out[0] = '\0';
	assert_int_equal(getifaddrs(&ifa), 0);
	for (struct ifaddrs *i = ifa; i && !out[0]; i = i->ifa_next)
		if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && strcmp(i->ifa_name, ifname) == 0)
			inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, out, INET_ADDRSTRLEN);
	freeifaddrs(ifa);
}

/* Links whose name starts with prefix in the current namespace. */
static int links_named(const char *prefix)
{
	struct if_nameindex *ni = if_nameindex();
	assert_non_null(ni);
	int n = 0;
	for (struct if_nameindex *i = ni; i->if_index; i++)
		n += strncmp(i->if_name, prefix, strlen(prefix)) == 0;
	if_freenameindex(ni);
	return n;
}

static bool pod_has_eth0(void)
{
	in_pod(true);
	bool has = if_nametoindex("eth0") != 0;
	in_pod(false);
	return has;
}

/* host-local's reservations: one file per address in <dataDir>/<network>. */
static int reservations(const char *holding)
{
	char dir[PATH_MAX + 16];
	snprintf(dir, sizeof(dir), "%s/" NET_NAME, g_data);
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int n = 0;
	for (struct dirent *e; (e = readdir(d));) {
		struct in_addr a;
		if (inet_pton(AF_INET, e->d_name, &a) != 1)
			continue; /* lock, last_reserved_ip.0 */
		char path[PATH_MAX + 300], *text = NULL;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		assert_int_equal(uk_read_file(path, 4096, &text, NULL, NULL), 0);
		n += !holding || strstr(text, holding) != NULL;
		free(text);
	}
	closedir(d);
	return n;
}

/* The nat table as iptables-save prints it (portmap's DNAT, bridge's masquerade). */
static char *nat_rules(void)
{
	const char *argv[] = { "/usr/sbin/iptables-save", "-t", "nat", NULL };
	struct uk_spawn_opts o;
	uk_spawn_opts_init(&o, argv);
	struct uk_run_result res;
	uk_error e = { 0 };
	if (uk_run(&o, NULL, 0, 1 << 20, 30000, &res, &e) < 0 || uk_run_result_check(&res, "iptables-save", &e) < 0)
		fail_msg("%s", e.msg);
	return res.out;
}

static void conf_write(const char *plugins)
{
	char text[8192];
	snprintf(text, sizeof(text), "{\"cniVersion\": \"1.0.0\", \"name\": \"" NET_NAME "\", \"plugins\": [%s]}", plugins);
	write_file(g_conf, "10-test.conflist", text);
}

static void bridge_json(char *out, size_t len, const char *subnet)
{
	snprintf(out, len,
		 "{\"type\": \"bridge\", \"bridge\": \"%s\", \"isGateway\": true, \"ipMasq\": true, \"hairpinMode\": true,"
		 " \"ipam\": {\"type\": \"host-local\", \"dataDir\": \"%s\", \"ranges\": [[{\"subnet\": \"%s\"}]],"
		 " \"routes\": [{\"dst\": \"0.0.0.0/0\"}]}}",
		 g_bridge, g_data, subnet);
}

static struct cni_config *conf_load(void)
{
	struct cni_config *c = NULL;
	uk_error e = { 0 };
	if (cni_config_load(g_conf, &c, &e) < 0)
		fail_msg("load: %s", e.msg);
	return c;
}

static const struct cni_port_mapping REAL_PORTS[] = { { .host_port = 18080, .container_port = 80, .protocol = "tcp" } };

static struct cni_pod real_pod(void)
{
	return (struct cni_pod){ .sandbox_id = g_sandbox, .netns = g_podns, .k8s_namespace = "default",
				 .k8s_name = "web", .k8s_uid = "00000000-0000-4000-8000-00000000000a",
				 .ports = REAL_PORTS, .n_ports = 1 };
}

static const char *const PLUGIN_DIRS[] = { PLUGINS };
static const struct cni_runner RUNNER = { .bin_dirs = PLUGIN_DIRS, .n_bin_dirs = 1 };

static int real_setup(void **state)
{
	(void)state;
	static int n;
	snprintf(g_sandbox, sizeof(g_sandbox), "5b1c0ffee%04d", n++);
	snprintf(g_podns, sizeof(g_podns), "%s/podns", g_run);
	snprintf(g_data, sizeof(g_data), "%s/data", g_run);
	snprintf(g_conf, sizeof(g_conf), "%s/net.d", g_run);
	netns_pin(g_podns);
	assert_int_equal(uk_mkdir_p(g_data, 0755, NULL), 0);
	assert_int_equal(uk_mkdir_p(g_conf, 0755, NULL), 0);
	return 0;
}

/* Runs after a failed test too: the namespace goes, and with it what a plugin left in it;
 * the bridge goes too (it keeps the gateway address of its first subnet). */
static int real_teardown(void **state)
{
	(void)state;
	pod_destroy();
	(void)net_link_delete(g_bridge, NULL); /* a test that failed early made none */
	(void)uk_rm_rf(g_data, NULL); /* fresh for the next test */
	(void)uk_rm_rf(g_conf, NULL);
	return 0;
}

static void real_add_del(void **state)
{
	(void)state;
	char plugins[4096], bridge[2048];
	bridge_json(bridge, sizeof(bridge), "10.123.0.0/24");
	snprintf(plugins, sizeof(plugins), "%s, {\"type\": \"portmap\", \"capabilities\": {\"portMappings\": true}},"
		 " {\"type\": \"loopback\"}", bridge);
	conf_write(plugins);
	struct cni_config *c = conf_load();
	struct cni_pod pod = real_pod();
	struct cni_result res;
	json_object *st = NULL;
	uk_error e = { 0 };
	if (cni_add(&RUNNER, c, &pod, &res, &st, &e) < 0)
		fail_msg("ADD: %s", e.msg);
	/* The result, and what is really there. */
	assert_int_equal(strncmp(res.pod_ip, "10.123.0.", 9), 0);
	assert_int_equal(strlen(res.mac), 17);
	char addr[INET_ADDRSTRLEN];
	in_pod(true);
	ipv4_of("eth0", addr);
	in_pod(false);
	assert_string_equal(addr, res.pod_ip);
	assert_int_equal(reservations(g_sandbox), 1);
	assert_int_equal(links_named("veth"), 1);
	assert_int_equal(json_object_array_length(get(st, "results")), 3);
	char *nat = nat_rules();
	assert_non_null(strstr(nat, "18080")); /* portmap got the hostPort through runtimeConfig */
	assert_non_null(strstr(nat, g_sandbox)); /* bridge's ipMasq rule names the container */
	free(nat);
	/* DEL with the state as the runtime stores and reads it back. */
	json_object *back = json(json_object_to_json_string_ext(st, JSON_C_TO_STRING_PLAIN));
	struct cni_result again;
	assert_int_equal(cni_state_result(back, &again, NULL), 0);
	assert_string_equal(again.pod_ip, res.pod_ip);
	struct cni_pod del = { .sandbox_id = g_sandbox, .netns = g_podns };
	if (cni_del(&RUNNER, back, NULL, &del, &e) < 0)
		fail_msg("DEL: %s", e.msg);
	assert_int_equal(reservations(NULL), 0);
	assert_int_equal(links_named("veth"), 0);
	assert_false(pod_has_eth0());
	nat = nat_rules();
	assert_null(strstr(nat, "18080"));
	assert_null(strstr(nat, g_sandbox));
	free(nat);
	/* DEL again: nothing left, still fine. */
	if (cni_del(&RUNNER, back, NULL, &del, &e) < 0)
		fail_msg("second DEL: %s", e.msg);
	json_object_put(back);
	json_object_put(st);
	cni_config_free(c);
}

/* After a reboot the namespace is gone: DEL with an empty CNI_NETNS still releases the
 * address, and without a state, with the config alone. (bridge then cannot find the
 * addresses its masquerade rules name; after a real reboot those are gone too.) */
static void real_del_after_reboot(void **state)
{
	(void)state;
	char bridge[2048];
	bridge_json(bridge, sizeof(bridge), "10.124.0.0/24");
	conf_write(bridge);
	struct cni_config *c = conf_load();
	struct cni_pod pod = real_pod();
	struct cni_result res;
	json_object *st = NULL;
	uk_error e = { 0 };
	if (cni_add(&RUNNER, c, &pod, &res, &st, &e) < 0)
		fail_msg("ADD: %s", e.msg);
	assert_int_equal(reservations(g_sandbox), 1);
	pod_destroy();
	assert_int_equal(links_named("veth"), 0);
	struct cni_pod del = { .sandbox_id = g_sandbox, .netns = "" };
	if (cni_del(&RUNNER, NULL, c, &del, &e) < 0)
		fail_msg("DEL: %s", e.msg);
	assert_int_equal(reservations(NULL), 0);
	json_object_put(st);
	cni_config_free(c);
}

/* Two pods ADD and DEL at once, from two threads, with one config. */
struct parallel_pod {
	const struct cni_config *c;
	struct cni_pod pod;
	char id[48], netns[300];
	struct cni_result res;
	int add, del;
	uk_error e;
};

static void *parallel_run(void *arg)
{
	struct parallel_pod *p = arg;
	json_object *st = NULL;
	p->add = cni_add(&RUNNER, p->c, &p->pod, &p->res, &st, &p->e);
	p->del = p->add < 0 ? 0 : cni_del(&RUNNER, st, NULL, &p->pod, &p->e);
	json_object_put(st);
	return NULL;
}

static void real_parallel(void **state)
{
	(void)state;
	char bridge[2048];
	bridge_json(bridge, sizeof(bridge), "10.127.0.0/24");
	conf_write(bridge);
	struct cni_config *c = conf_load();
	struct parallel_pod pods[2];
	pthread_t th[2];
	for (int i = 0; i < 2; i++) {
		struct parallel_pod *p = &pods[i];
		memset(p, 0, sizeof(*p));
		snprintf(p->id, sizeof(p->id), "%s-%d", g_sandbox, i);
		snprintf(p->netns, sizeof(p->netns), "%s-%d", g_podns, i);
		netns_pin(p->netns);
		p->c = c;
		p->pod = (struct cni_pod){ .sandbox_id = p->id, .netns = p->netns };
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, parallel_run, &pods[i]), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (int i = 0; i < 2; i++) {
		(void)umount2(pods[i].netns, MNT_DETACH); /* DEL removed the veths */
		(void)unlink(pods[i].netns);
		if (pods[i].add < 0 || pods[i].del < 0)
			fail_msg("pod %d: ADD %d, DEL %d: %s", i, pods[i].add, pods[i].del, pods[i].e.msg);
	}
	assert_string_not_equal(pods[0].res.pod_ip, pods[1].res.pod_ip);
	assert_int_equal(reservations(NULL), 0);
	assert_int_equal(links_named("veth"), 0);
	cni_config_free(c);
}

/* ADD failed: what the plugins before made is gone, and so is what the failing one left. */
static void assert_nothing_left(void)
{
	assert_int_equal(reservations(NULL), 0);
	assert_int_equal(links_named("veth"), 0);
	assert_false(pod_has_eth0());
	char *nat = nat_rules();
	assert_null(strstr(nat, g_sandbox));
	free(nat);
}

static void add_fails(const struct cni_runner *r, int code, const char *want)
{
	struct cni_config *c = conf_load();
	struct cni_pod pod = real_pod();
	struct cni_result res;
	json_object *st = NULL;
	uk_error e = { 0 };
	int rr = cni_add(r, c, &pod, &res, &st, &e);
	if (rr != -code || !strstr(e.msg, want))
		fail_msg("got %d \"%s\", want %d with \"%s\"", rr, e.msg, -code, want);
	assert_null(st);
	cni_config_free(c);
	assert_nothing_left();
}

static void real_missing_plugin(void **state)
{
	(void)state;
	char plugins[4096], bridge[2048];
	bridge_json(bridge, sizeof(bridge), "10.125.0.0/24");
	snprintf(plugins, sizeof(plugins), "%s, {\"type\": \"nosuchplugin\"}", bridge);
	conf_write(plugins);
	const char *dirs[] = { "/nonexistent/cni", PLUGINS };
	struct cni_runner r = { .bin_dirs = dirs, .n_bin_dirs = 2 };
	add_fails(&r, ENOENT,
		  "CNI ADD (network " NET_NAME "): plugin nosuchplugin: no executable nosuchplugin in "
		  "/nonexistent/cni:" PLUGINS);
}

/* host-local refuses a /31: bridge passes on its error JSON, after it made the veth. */
static void real_plugin_error(void **state)
{
	(void)state;
	char bridge[2048];
	bridge_json(bridge, sizeof(bridge), "10.99.0.0/31");
	conf_write(bridge);
	add_fails(&RUNNER, EIO,
		  "CNI ADD (network " NET_NAME "): plugin bridge: code 999: invalid range set 0: Network "
		  "10.99.0.0/31 too small to allocate from");
}

/* The hanging plugin is killed at the deadline, its DEL too; bridge's DEL still runs. */
static void real_plugin_hangs(void **state)
{
	(void)state;
	char plugins[4096], bridge[2048];
	bridge_json(bridge, sizeof(bridge), "10.126.0.0/24");
	snprintf(plugins, sizeof(plugins), "%s, {\"type\": \"hang\"}", bridge);
	conf_write(plugins);
	const char *dirs[] = { g_bin };
	struct cni_runner r = { .bin_dirs = dirs, .n_bin_dirs = 1, .timeout_ms = 2000 };
	add_fails(&r, ETIMEDOUT,
		  "plugin hang did not answer within 2 s; the DEL that followed failed too: plugin hang did not "
		  "answer within 2 s");
}

/* loopback alone: its result has lo's addresses, none of eth0. */
static void real_no_ip(void **state)
{
	(void)state;
	conf_write("{\"type\": \"loopback\"}");
	add_fails(&RUNNER, EADDRNOTAVAIL, "the CNI result holds no IPv4 address of eth0 (it has 127.0.0.1/8, ::1/128)");
}

static int real_group_setup(void **state)
{
	(void)state;
	snprintf(g_run, sizeof(g_run), "%s/real", g_tmp);
	snprintf(g_bin, sizeof(g_bin), "%s/bin", g_run);
	snprintf(g_bridge, sizeof(g_bridge), "ukcni%d", (int)getpid());
	if (uk_mkdir_p(g_bin, 0755, NULL) < 0)
		return -1;
	/* The plugins bridge needs, and this binary as "hang". */
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return -1;
	self[n] = '\0';
	const char *links[][2] = { { PLUGINS "/bridge", "bridge" }, { PLUGINS "/host-local", "host-local" },
				   { self, "hang" } };
	for (size_t i = 0; i < sizeof(links) / sizeof(*links); i++) {
		char path[PATH_MAX + 16];
		snprintf(path, sizeof(path), "%s/%s", g_bin, links[i][1]);
		if (symlink(links[i][0], path) < 0)
			return -1;
	}
	return 0;
}

/* In a child with a network and a mount namespace of its own: all it makes dies with it. */
static int run_real_plugins(void)
{
	if (geteuid() != 0) {
		printf("test_cni: real plugins skipped, needs root (network namespaces)\n");
		return 0;
	}
	if (access(PLUGINS "/bridge", X_OK) < 0 || access("/usr/sbin/iptables-save", X_OK) < 0) {
		printf("test_cni: real plugins skipped, " PLUGINS "/bridge or iptables-save is missing "
		       "(containernetworking-plugins, iptables)\n");
		return 0;
	}
	const struct CMUnitTest real[] = {
		cmocka_unit_test_setup_teardown(real_add_del, real_setup, real_teardown),
		cmocka_unit_test_setup_teardown(real_del_after_reboot, real_setup, real_teardown),
		cmocka_unit_test_setup_teardown(real_missing_plugin, real_setup, real_teardown),
		cmocka_unit_test_setup_teardown(real_plugin_error, real_setup, real_teardown),
		cmocka_unit_test_setup_teardown(real_plugin_hangs, real_setup, real_teardown),
		cmocka_unit_test_setup_teardown(real_no_ip, real_setup, real_teardown),
		cmocka_unit_test_setup_teardown(real_parallel, real_setup, real_teardown),
	};
	fflush(stdout);
	pid_t child = fork();
	if (child < 0)
		return 1;
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (unshare(CLONE_NEWNET | CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    (g_node_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)) < 0) {
			perror("test_cni: namespaces");
			_exit(1);
		}
		/* exit, not _exit: the sanitizers check for leaks at exit. */
		exit(cmocka_run_group_tests_name("cni (real plugins)", real, real_group_setup, NULL) ? 1 : 0);
	}
	int st;
	while (waitpid(child, &st, 0) < 0)
		if (errno != EINTR)
			return 1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

/* ---- processes left by plugins (cni_strays.c) ---- */

static void environ_match(void **state)
{
	(void)state;
	const char env[] = "PATH=/bin\0CNI_CONTAINERID=abc\0CNI_COMMAND=ADD";
	assert_true(cni_environ_has_container(env, sizeof(env) - 1, "abc"));
	assert_false(cni_environ_has_container(env, sizeof(env) - 1, "ab"));   /* a prefix is not the id */
	assert_false(cni_environ_has_container(env, sizeof(env) - 1, "abcd"));
	assert_false(cni_environ_has_container(env, sizeof(env) - 1, ""));
	assert_false(cni_environ_has_container(env, sizeof(env) - 1, NULL));
	const char value_only[] = "X=CNI_CONTAINERID=abc";                     /* only a whole entry */
	assert_false(cni_environ_has_container(value_only, sizeof(value_only) - 1, "abc"));
	const char cut[] = "CNI_CONTAINERID=ab";                               /* no NUL at the end */
	assert_false(cni_environ_has_container(cut, 17, "ab"));
	assert_true(cni_environ_has_container(cut, 18, "ab"));
	char huge[200];
	memset(huge, 'a', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	assert_false(cni_environ_has_container(env, sizeof(env) - 1, huge));
}

/* A "plugin" and the program it started, both carrying the id, end; a process with another
 * id does not. */
static void strays_end(void **state)
{
	(void)state;
	pid_t pids[3];
	const char *ids[3] = { "s1", "s1", "s2" };
	int pfd[2];
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	for (int i = 0; i < 3; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			char env[64];
			snprintf(env, sizeof(env), "CNI_CONTAINERID=%s", ids[i]);
			char *argv[] = { "sleep", "600", NULL }, *envp[] = { env, NULL };
			execve("/bin/sleep", argv, envp);
			_exit(127);
		}
	}
	/* Each child holds the write end until its execve (O_CLOEXEC): EOF means all have. */
	close(pfd[1]);
	char c;
	assert_int_equal(read(pfd[0], &c, 1), 0);
	close(pfd[0]);
	uk_error err = { 0 };
	assert_int_equal(cni_stop_strays("s1", 5000, &err), 2);
	int st;
	assert_int_equal(waitpid(pids[0], &st, 0), pids[0]);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	assert_int_equal(waitpid(pids[1], &st, 0), pids[1]);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	assert_int_equal(waitpid(pids[2], &st, WNOHANG), 0); /* s2 runs on */
	assert_int_equal(cni_stop_strays("s1", 5000, &err), 0);
	kill(pids[2], SIGKILL);
	waitpid(pids[2], &st, 0);
}

int main(int argc, char **argv)
{
	/* Run as the plugin "hang": never answer (see the comment at the top). */
	const char *base = strrchr(argv[0], '/');
	if (argc == 1 && getenv("CNI_COMMAND") && strcmp(base ? base + 1 : argv[0], "hang") == 0) {
		for (;;)
			poll(NULL, 0, -1);
	}
	snprintf(g_tmp, sizeof(g_tmp), "/tmp/uk-test-cni-XXXXXX");
	if (!mkdtemp(g_tmp)) {
		perror("mkdtemp");
		return 1;
	}
	const struct CMUnitTest pure[] = {
		cmocka_unit_test(config_conflist),
		cmocka_unit_test(config_single_plugin),
		cmocka_unit_test(config_versions),
		cmocka_unit_test(config_bad_fields),
		cmocka_unit_test(config_plugin_count),
		cmocka_unit_test(config_deep_nesting),
		cmocka_unit_test(config_huge),
		cmocka_unit_test(config_not_json),
		cmocka_unit_test(config_directory),
		cmocka_unit_test(config_directory_all_bad),
		cmocka_unit_test(stdin_capabilities),
		cmocka_unit_test(stdin_prev_result),
		cmocka_unit_test(env_exact),
		cmocka_unit_test(env_bad),
		cmocka_unit_test(result_100),
		cmocka_unit_test(result_040),
		cmocka_unit_test(result_pod_ip_rules),
		cmocka_unit_test(result_bounds),
		cmocka_unit_test(result_hostile),
		cmocka_unit_test(error_messages),
		cmocka_unit_test(error_message_bounded),
		cmocka_unit_test(state_round_trip),
		cmocka_unit_test(state_malformed),
		cmocka_unit_test(clean_append),
		cmocka_unit_test(environ_match),
		cmocka_unit_test(strays_end),
	};
	int failed = cmocka_run_group_tests_name("cni (pure)", pure, NULL, NULL);
	failed += run_real_plugins();
	uk_rm_rf(g_tmp, NULL);
	return failed ? 1 : 0;
}
