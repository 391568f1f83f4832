/* Unit tests for the pure logic of src/net: CIDR parsing, derived addresses, tap names and
 * MACs, the command-line template, and the directory IPAM (in a temp directory). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "../../src/common/util.h"
#include "../../src/net/net.h"

static uint32_t IP(const char *s)
{
	uint32_t v = 0;
	if (net_ip_parse(s, &v) < 0)
		fail_msg("bad test address %s", s);
	return v;
}

static const char *ipstr(uint32_t a, char buf[NET_IP_MAX])
{
	net_ip_str(a, buf);
	return buf;
}

/* ---- cidr ---- */

static void cidr_parse_valid(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		uint32_t net;
		int prefix;
	} cases[] = {
		{ "10.77.0.0/16", 0x0a4d0000, 16 },     { "192.168.1.0/24", 0xc0a80100, 24 },
		{ "10.0.0.0/8", 0x0a000000, 8 },         { "10.77.0.4/30", 0x0a4d0004, 30 },
		{ "255.255.255.252/30", 0xfffffffc, 30 }, { "0.0.0.0/8", 0, 8 },
		{ "172.16.0.0/12", 0xac100000, 12 },     { "100.64.128.0/17", 0x64408000, 17 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct net_cidr c = { 0 };
		uk_error err = { 0 };
		if (net_cidr_parse(cases[i].text, &c, &err) != 0)
			fail_msg("%s rejected: %s", cases[i].text, err.msg);
		assert_int_equal(c.net, cases[i].net);
		assert_int_equal(c.prefix, cases[i].prefix);
	}
}

static void cidr_parse_invalid(void **state)
{
	(void)state;
	static const char *bad[] = {
		"",
		"10.77.0.0",
		"10.77.0.0/",
		"/16",
		"10.77.0/16",
		"10.77.0.0.0/16",
		"10..0.0/16",
		"256.0.0.0/8",
		"1000.0.0.0/8",
		"-1.0.0.0/8",
		"10.77.0.1/16",    /* host bits */
		"10.77.0.2/30",    /* host bits */
		"10.77.0.0/7",     /* prefix too short */
		"10.77.0.0/31",    /* no room for hosts */
		"10.77.0.0/32",
		"10.77.0.0/0",
		"10.77.0.0/1000",
		"+10.77.0.0/16",
		" 10.77.0.0/16",
		"10.77.0.0/16 ",
		"10.77.0.0/ 16",
		"10.77.0.0 /16",
		"10.77.0.0/+16",
		"10.77.0.0/-16",
		"10.077.0.0/16",   /* leading zero: octal to some tools */
		"10.77.0.0/016",
		"0x0a.0.0.0/8",
		"10.77.0.0/16\n",
		"10.77.0.0/16/16",
		"10.77.0.0/1a",
		"a.b.c.d/16",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct net_cidr c = { 0 };
		uk_error err = { 0 };
		int r = net_cidr_parse(bad[i], &c, &err);
		if (r != -EINVAL)
			fail_msg("\"%s\" gave %d, expected -EINVAL", bad[i], r);
		assert_int_equal(err.code, EINVAL);
		/* The message quotes the text. */
		char quoted[64];
		snprintf(quoted, sizeof(quoted), "\"%s\"", bad[i]);
		if (!strstr(err.msg, quoted))
			fail_msg("message for \"%s\" does not name it: %s", bad[i], err.msg);
	}
	uk_error err = { 0 };
	struct net_cidr c;
	assert_int_equal(net_cidr_parse(NULL, &c, &err), -EINVAL);
	/* A useful hint for host bits. */
	assert_int_equal(net_cidr_parse("10.77.3.4/16", &c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "10.77.0.0/16"));
	assert_int_equal(net_cidr_parse("10.77.0.0/31", &c, NULL), -EINVAL);
}

static void cidr_derived(void **state)
{
	(void)state;
	char b[NET_IP_MAX];
	struct net_cidr c;
	assert_int_equal(net_cidr_parse("10.77.0.0/16", &c, NULL), 0);
	assert_string_equal(ipstr(net_cidr_gateway(&c), b), "10.77.0.1");
	assert_string_equal(ipstr(net_cidr_broadcast(&c), b), "10.77.255.255");
	assert_int_equal(net_cidr_parse("192.168.7.0/24", &c, NULL), 0);
	assert_string_equal(ipstr(net_cidr_gateway(&c), b), "192.168.7.1");
	assert_string_equal(ipstr(net_cidr_broadcast(&c), b), "192.168.7.255");
	assert_int_equal(net_cidr_parse("10.0.0.8/30", &c, NULL), 0);
	assert_string_equal(ipstr(net_cidr_gateway(&c), b), "10.0.0.9");
	assert_string_equal(ipstr(net_cidr_broadcast(&c), b), "10.0.0.11");
	assert_int_equal(net_cidr_parse("10.0.0.0/8", &c, NULL), 0);
	assert_string_equal(ipstr(net_cidr_broadcast(&c), b), "10.255.255.255");

	static const struct {
		int prefix;
		const char *mask;
	} masks[] = {
		{ 0, "0.0.0.0" },         { 8, "255.0.0.0" },       { 12, "255.240.0.0" },
		{ 16, "255.255.0.0" },    { 17, "255.255.128.0" },  { 24, "255.255.255.0" },
		{ 30, "255.255.255.252" }, { 32, "255.255.255.255" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(masks); i++) {
		net_netmask_str(masks[i].prefix, b);
		assert_string_equal(b, masks[i].mask);
	}
}

static void ip_str_parse(void **state)
{
	(void)state;
	static const uint32_t vals[] = { 0, 1, 0xffffffff, 0x0a4d0001, 0xc0a80101, 0x7f000001, 0x01020304,
					 0x80000000, 0x00ff00ff };
	for (size_t i = 0; i < ARRAY_SIZE(vals); i++) {
		char b[NET_IP_MAX];
		uint32_t back = 0;
		net_ip_str(vals[i], b);
		assert_int_equal(net_ip_parse(b, &back), 0);
		assert_int_equal(back, vals[i]);
	}
	char b[NET_IP_MAX];
	net_ip_str(0xffffffff, b);
	assert_string_equal(b, "255.255.255.255");
	net_ip_str(0x0a4d0002, b);
	assert_string_equal(b, "10.77.0.2");
	uint32_t v;
	assert_int_equal(net_ip_parse("1.2.3.4", &v), 0);
	assert_int_equal(v, 0x01020304);
	static const char *bad[] = { "", "1.2.3", "1.2.3.4.", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", " 1.2.3.4",
				     "1.2.3.4 ", "+1.2.3.4", "1.2.3.4/8", "1..3.4", "a.b.c.d", "1.2.3.-4" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (net_ip_parse(bad[i], &v) != -EINVAL)
			fail_msg("\"%s\" accepted", bad[i]);
	assert_int_equal(net_ip_parse(NULL, &v), -EINVAL);
}

/* ---- names ---- */

static void tap_name_and_mac(void **state)
{
	(void)state;
	const char *id = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
	char tap[IFNAMSIZ];
	net_tap_name(id, tap);
	assert_string_equal(tap, "uka1b2c3d4e5f6");
	assert_true(strlen(tap) < IFNAMSIZ);
	net_tap_name("abc", tap);
	assert_string_equal(tap, "ukabc");

	char mac[18];
	net_mac_from_id(id, mac);
	assert_string_equal(mac, "02:a1:b2:c3:d4:e5");
	net_mac_from_id("0000000000ffff", mac);
	assert_string_equal(mac, "02:00:00:00:00:00");
	net_mac_from_id("FFEEDDCCBBAA", mac);
	assert_string_equal(mac, "02:ff:ee:dd:cc:bb");

	/* Not hex: still a stable, well-formed, locally administered unicast MAC. */
	char mac2[18];
	net_mac_from_id("pod-xyz", mac);
	net_mac_from_id("pod-xyz", mac2);
	assert_string_equal(mac, mac2);
	net_mac_from_id("pod-xyw", mac2);
	assert_string_not_equal(mac, mac2);
	assert_int_equal(strlen(mac), 17);
	assert_memory_equal(mac, "02:", 3);
	for (int i = 0; i < 17; i++) {
		if (i % 3 == 2)
			assert_int_equal(mac[i], ':');
		else
			assert_non_null(strchr("0123456789abcdef", mac[i]));
	}
	net_mac_from_id("abc", mac); /* shorter than 10 */
	assert_int_equal(strlen(mac), 17);
}

/* ---- template ---- */

static const struct net_template_vars all_vars = {
	.ip = "10.77.0.2",
	.prefix = "16",
	.netmask = "255.255.0.0",
	.gateway = "10.77.0.1",
	.mac = "02:a1:b2:c3:d4:e5",
	.dns = "10.96.0.10",
	.dns_search = "default.svc.cluster.local",
	.hostname = "web-0",
};

static void template_expand_all(void **state)
{
	(void)state;
	_cleanup_free_ char *out = NULL;
	uk_error err = { 0 };
	const char *in = "ip={{ip}}/{{prefix}} mask={{netmask}} gw={{gateway}} mac={{mac}} dns={{dns}} "
			 "search={{dns_search}} host={{hostname}} again={{ip}}{{ip}}";
	if (net_template_expand(in, &all_vars, 4096, &out, &err) != 0)
		fail_msg("%s", err.msg);
	assert_string_equal(out, "ip=10.77.0.2/16 mask=255.255.0.0 gw=10.77.0.1 mac=02:a1:b2:c3:d4:e5 "
				 "dns=10.96.0.10 search=default.svc.cluster.local host=web-0 "
				 "again=10.77.0.210.77.0.2");
	free(TAKE_PTR(out));

	/* No placeholders: copied. Single braces and a lone "}}" are text. */
	assert_int_equal(net_template_expand("console=ttyS0 {x} }} {", &all_vars, 4096, &out, &err), 0);
	assert_string_equal(out, "console=ttyS0 {x} }} {");
	free(TAKE_PTR(out));

	/* Empty template: an empty, malloc'ed string. */
	assert_int_equal(net_template_expand("", &all_vars, 4096, &out, &err), 0);
	assert_string_equal(out, "");
	free(TAKE_PTR(out));

	/* NULL variables (and a NULL vars struct) expand to "". */
	struct net_template_vars some = { .ip = "1.2.3.4" };
	assert_int_equal(net_template_expand("[{{ip}}][{{dns}}][{{dns_search}}]", &some, 4096, &out, &err), 0);
	assert_string_equal(out, "[1.2.3.4][][]");
	free(TAKE_PTR(out));
	assert_int_equal(net_template_expand("a{{hostname}}b", NULL, 4096, &out, &err), 0);
	assert_string_equal(out, "ab");
	free(TAKE_PTR(out));
	struct net_template_vars empty = { .ip = "" };
	assert_int_equal(net_template_expand("{{ip}}", &empty, 4096, &out, &err), 0);
	assert_string_equal(out, "");
}

static void template_errors(void **state)
{
	(void)state;
	char *out = NULL;
	uk_error err = { 0 };

	assert_int_equal(net_template_expand("ip={{ipaddr}}", &all_vars, 4096, &out, &err), -EINVAL);
	assert_null(out);
	assert_int_equal(err.code, EINVAL);
	assert_non_null(strstr(err.msg, "{{ipaddr}}"));
	assert_non_null(strstr(err.msg, "{{ip}}"));
	assert_non_null(strstr(err.msg, "{{hostname}}"));

	/* Names are exact: no spaces, no case folding, not empty. */
	static const char *unknown[] = { "{{ ip }}", "{{IP}}", "{{}}", "{{{ip}}}", "x{{ip}}{{mac }}" };
	for (size_t i = 0; i < ARRAY_SIZE(unknown); i++)
		if (net_template_expand(unknown[i], &all_vars, 4096, &out, &err) != -EINVAL)
			fail_msg("\"%s\" accepted", unknown[i]);

	/* A very long unknown name is shortened in the message. */
	char longname[600];
	memset(longname, 'z', sizeof(longname));
	memcpy(longname, "{{", 2);
	memcpy(longname + sizeof(longname) - 3, "}}", 3);
	assert_int_equal(net_template_expand(longname, &all_vars, 4096, &out, &err), -EINVAL);
	assert_true(strlen(err.msg) < 300);

	assert_int_equal(net_template_expand("ip={{ip} x", &all_vars, 4096, &out, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "unterminated"));
	assert_non_null(strstr(err.msg, "{{ip} x"));
	assert_int_equal(net_template_expand("a {{ip}} {{", &all_vars, 4096, &out, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "unterminated"));
	assert_null(out);
	assert_int_equal(net_template_expand(NULL, &all_vars, 4096, &out, &err), -EINVAL);
}

static void template_length(void **state)
{
	(void)state;
	char *out = NULL;
	uk_error err = { 0 };
	/* "ip=10.77.0.2" is 12 bytes: max_len 12 fits, 11 does not. */
	assert_int_equal(net_template_expand("ip={{ip}}", &all_vars, 12, &out, &err), 0);
	assert_string_equal(out, "ip=10.77.0.2");
	free(TAKE_PTR(out));
	assert_int_equal(net_template_expand("ip={{ip}}", &all_vars, 11, &out, &err), -E2BIG);
	assert_int_equal(err.code, E2BIG);
	assert_non_null(strstr(err.msg, "11"));
	assert_null(out);
	/* Literal text counts too. */
	assert_int_equal(net_template_expand("0123456789", &all_vars, 9, &out, &err), -E2BIG);
	assert_int_equal(net_template_expand("0123456789", &all_vars, 10, &out, &err), 0);
	free(TAKE_PTR(out));
	assert_int_equal(net_template_expand("", &all_vars, 0, &out, &err), 0);
	free(TAKE_PTR(out));
	/* Many expansions of a long value stop at the bound, without building the whole. */
	char big[4096];
	memset(big, 'v', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	struct net_template_vars v = { .hostname = big };
	char in[2048] = "";
	for (int i = 0; i < 100; i++)
		strcat(in, "{{hostname}}");
	assert_int_equal(net_template_expand(in, &v, 64 * 1024, &out, &err), -E2BIG);
	assert_int_equal(net_template_expand(in, &v, 4095 * 100, &out, &err), 0);
	assert_int_equal(strlen(out), 4095 * 100);
	free(TAKE_PTR(out));
}

static void template_has_placeholders(void **state)
{
	(void)state;
	assert_true(net_template_has_placeholders("ip={{ip}}"));
	assert_true(net_template_has_placeholders("{{"));
	assert_false(net_template_has_placeholders("console=ttyS0 {x}"));
	assert_false(net_template_has_placeholders(""));
	assert_false(net_template_has_placeholders(NULL));
}

/* ---- ipam ---- */

/* The directory goes in teardown, which cmocka runs even when an assertion fails. */
static int tmpdir_setup(void **state)
{
	char *dir = strdup("/tmp/uk-test-net-XXXXXX");
	if (!dir || !mkdtemp(dir)) {
		free(dir);
		return -1;
	}
	*state = dir;
	return 0;
}

static int tmpdir_teardown(void **state)
{
	int r = uk_rm_rf(*state, NULL);
	free(*state);
	return r;
}

static void ipam_freep(struct ipam **p)
{
	ipam_free(*p);
}
#define _cleanup_ipam_ _cleanup_(ipam_freep)

static struct ipam *open_ipam(const char *dir)
{
	struct ipam *ip = NULL;
	uk_error err = { 0 };
	if (ipam_open(dir, &ip, &err) != 0)
		fail_msg("ipam_open: %s", err.msg);
	return ip;
}

static uint32_t alloc_ok(struct ipam *ip, const struct net_cidr *c, const char *id)
{
	uint32_t a = 0;
	uk_error err = { 0 };
	if (ipam_allocate(ip, c, id, &a, &err) != 0)
		fail_msg("allocate %s: %s", id, err.msg);
	return a;
}

static struct net_cidr cidr(const char *s)
{
	struct net_cidr c;
	uk_error err = { 0 };
	if (net_cidr_parse(s, &c, &err) != 0)
		fail_msg("%s", err.msg);
	return c;
}

struct seen {
	uint32_t addr[512];
	char id[512][64];
	size_t n;
};

static int seen_cb(uint32_t addr, const char *id, void *ud)
{
	struct seen *s = ud;
	if (s->n == ARRAY_SIZE(s->addr))
		return -E2BIG;
	s->addr[s->n] = addr;
	snprintf(s->id[s->n], sizeof(s->id[0]), "%s", id);
	s->n++;
	return 0;
}

static void ipam_distinct_and_lookup(void **state)
{
	_cleanup_ipam_ struct ipam *ip = open_ipam(*state);
	struct net_cidr c = cidr("10.77.5.0/24");
	uint32_t got[20];
	for (int i = 0; i < 20; i++) {
		char id[32];
		snprintf(id, sizeof(id), "sb%02d", i);
		got[i] = alloc_ok(ip, &c, id);
		assert_int_equal(got[i] & 0xffffff00u, c.net);
		assert_true(got[i] > net_cidr_gateway(&c) && got[i] < net_cidr_broadcast(&c));
		for (int j = 0; j < i; j++)
			assert_int_not_equal(got[i], got[j]);
		uint32_t l = 0;
		assert_int_equal(ipam_lookup(ip, id, &l), 0);
		assert_int_equal(l, got[i]);
	}
	/* The first one on a fresh directory is the first after the gateway. */
	assert_int_equal(got[0], IP("10.77.5.2"));
	/* The file is named by the address and holds the id. */
	char path[256];
	snprintf(path, sizeof(path), "%s/10.77.5.2", (char *)*state);
	_cleanup_free_ char *content = NULL;
	assert_int_equal(uk_read_file(path, 1024, &content, NULL, NULL), 0);
	assert_string_equal(content, "sb00\n");

	uint32_t l;
	assert_int_equal(ipam_lookup(ip, "nobody", &l), -ENOENT);
	assert_int_equal(ipam_lookup(ip, "../x", &l), -EINVAL);

	static struct seen s;
	memset(&s, 0, sizeof(s));
	uk_error err = { 0 };
	assert_int_equal(ipam_foreach(ip, seen_cb, &s, &err), 0);
	assert_int_equal(s.n, 20);
	for (size_t i = 0; i < s.n; i++) {
		if (i > 0)
			assert_true(s.addr[i] > s.addr[i - 1]); /* sorted */
		int idx = atoi(s.id[i] + 2);
		assert_int_equal(s.addr[i], got[idx]);
	}
}

static int failing_cb(uint32_t addr, const char *id, void *ud)
{
	(void)addr;
	(void)id;
	(*(int *)ud)++;
	return -EIO;
}

static void ipam_idempotent_and_args(void **state)
{
	_cleanup_ipam_ struct ipam *ip = open_ipam(*state);
	struct net_cidr c = cidr("10.77.0.0/16");
	uint32_t a = alloc_ok(ip, &c, "pod-a");
	assert_int_equal(alloc_ok(ip, &c, "pod-a"), a);
	assert_int_equal(alloc_ok(ip, &c, "pod-a"), a);
	uint32_t b = alloc_ok(ip, &c, "pod-b");
	assert_int_not_equal(a, b);
	assert_int_equal(alloc_ok(ip, &c, "pod-a"), a);

	/* The sandbox already has an address elsewhere: not a second one. */
	struct net_cidr other = cidr("10.88.0.0/24");
	uint32_t x;
	uk_error err = { 0 };
	assert_int_equal(ipam_allocate(ip, &other, "pod-a", &x, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "pod-a"));

	/* Invalid ids and ranges. */
	static const char *bad_ids[] = { "", "../etc", "a/b", ".hidden", "a b" };
	for (size_t i = 0; i < ARRAY_SIZE(bad_ids); i++) {
		assert_int_equal(ipam_allocate(ip, &c, bad_ids[i], &x, &err), -EINVAL);
		assert_int_equal(ipam_release(ip, bad_ids[i], &err), -EINVAL);
	}
	assert_int_equal(ipam_allocate(ip, &c, NULL, &x, &err), -EINVAL);
	struct net_cidr bad1 = { .net = IP("10.0.0.1"), .prefix = 24 };
	struct net_cidr bad2 = { .net = IP("10.0.0.0"), .prefix = 31 };
	struct net_cidr bad3 = { .net = IP("10.0.0.0"), .prefix = 7 };
	assert_int_equal(ipam_allocate(ip, &bad1, "pod-c", &x, &err), -EINVAL);
	assert_int_equal(ipam_allocate(ip, &bad2, "pod-c", &x, &err), -EINVAL);
	assert_int_equal(ipam_allocate(ip, &bad3, "pod-c", &x, &err), -EINVAL);
	assert_int_equal(ipam_allocate(ip, NULL, "pod-c", &x, &err), -EINVAL);

	/* A failing callback stops the walk, and its error comes back with context. */
	int calls = 0;
	assert_int_equal(ipam_foreach(ip, failing_cb, &calls, &err), -EIO);
	assert_int_equal(calls, 1);
	assert_non_null(strstr(err.msg, "pod-"));

	/* No temp files are left behind. */
	DIR *d = opendir(*state);
	assert_non_null(d);
	struct dirent *de;
	while ((de = readdir(d)))
		if (strncmp(de->d_name, ".tmp.", 5) == 0)
			fail_msg("temp file %s left behind", de->d_name);
	closedir(d);
}

static void ipam_release_idempotent(void **state)
{
	_cleanup_ipam_ struct ipam *ip = open_ipam(*state);
	struct net_cidr c = cidr("10.77.0.0/24");
	uint32_t a = alloc_ok(ip, &c, "pod-a");
	uint32_t b = alloc_ok(ip, &c, "pod-b");
	uk_error err = { 0 };
	assert_int_equal(ipam_release(ip, "pod-a", &err), 0);
	uint32_t l;
	assert_int_equal(ipam_lookup(ip, "pod-a", &l), -ENOENT);
	assert_int_equal(ipam_lookup(ip, "pod-b", &l), 0);
	assert_int_equal(l, b);
	assert_int_equal(ipam_release(ip, "pod-a", &err), 0);
	assert_int_equal(ipam_release(ip, "never-had-one", &err), 0);
	char path[256];
	char s[NET_IP_MAX];
	snprintf(path, sizeof(path), "%s/%s", (char *)*state, ipstr(a, s));
	assert_int_equal(access(path, F_OK), -1);
	/* Released, it can allocate again. */
	uint32_t a2 = alloc_ok(ip, &c, "pod-a");
	assert_int_not_equal(a2, b);
}

static void ipam_exhaustion(void **state)
{
	_cleanup_ipam_ struct ipam *ip = open_ipam(*state);
	/* /30: .0 network, .1 gateway, .3 broadcast: .2 is the only address. */
	struct net_cidr c = cidr("10.9.9.0/30");
	assert_int_equal(alloc_ok(ip, &c, "only"), IP("10.9.9.2"));
	uint32_t x;
	uk_error err = { 0 };
	assert_int_equal(ipam_allocate(ip, &c, "second", &x, &err), -ENOSPC);
	assert_int_equal(err.code, ENOSPC);
	assert_non_null(strstr(err.msg, "10.9.9.0/30"));
	assert_non_null(strstr(err.msg, "1 addresses"));
	/* The holder still gets its address; after a release the other one gets it. */
	assert_int_equal(alloc_ok(ip, &c, "only"), IP("10.9.9.2"));
	assert_int_equal(ipam_release(ip, "only", &err), 0);
	assert_int_equal(alloc_ok(ip, &c, "second"), IP("10.9.9.2"));

	/* /29: .2 to .6, five addresses. */
	struct net_cidr c29 = cidr("10.9.8.0/29");
	for (int i = 0; i < 5; i++) {
		char id[16];
		snprintf(id, sizeof(id), "s%d", i);
		uint32_t a = alloc_ok(ip, &c29, id);
		assert_true(a >= IP("10.9.8.2") && a <= IP("10.9.8.6"));
	}
	assert_int_equal(ipam_allocate(ip, &c29, "s5", &x, &err), -ENOSPC);
	assert_non_null(strstr(err.msg, "5 addresses"));
}

static void ipam_round_robin(void **state)
{
	_cleanup_ipam_ struct ipam *ip = open_ipam(*state);
	struct net_cidr c = cidr("10.1.0.0/24");
	uk_error err = { 0 };
	uint32_t a = alloc_ok(ip, &c, "a");
	uint32_t b = alloc_ok(ip, &c, "b");
	assert_int_equal(a, IP("10.1.0.2"));
	assert_int_equal(b, IP("10.1.0.3"));
	assert_int_equal(ipam_release(ip, "a", &err), 0);
	/* Not the address just released: the next one. */
	assert_int_equal(alloc_ok(ip, &c, "c"), IP("10.1.0.4"));
	assert_int_equal(ipam_release(ip, "c", &err), 0);
	assert_int_equal(alloc_ok(ip, &c, "d"), IP("10.1.0.5"));

	/* At the end of the range it wraps around, skipping the taken ones. */
	struct net_cidr c29 = cidr("10.2.0.0/29"); /* .2 .. .6 */
	for (int i = 0; i < 5; i++) {
		char id[16];
		snprintf(id, sizeof(id), "w%d", i);
		assert_int_equal(alloc_ok(ip, &c29, id), IP("10.2.0.2") + (uint32_t)i);
	}
	assert_int_equal(ipam_release(ip, "w3", &err), 0); /* .5 */
	assert_int_equal(ipam_release(ip, "w1", &err), 0); /* .3 */
	/* The cursor is at .6: wrap to .2 (taken), then .3. */
	assert_int_equal(alloc_ok(ip, &c29, "n1"), IP("10.2.0.3"));
	assert_int_equal(alloc_ok(ip, &c29, "n2"), IP("10.2.0.5"));

	/* A cursor outside the range, or garbage, just means starting at the beginning. */
	char path[256];
	snprintf(path, sizeof(path), "%s/.cursor", (char *)*state);
	assert_int_equal(uk_write_file_atomic(path, "garbage", 7, 0600, NULL), 0);
	struct net_cidr c3 = cidr("10.3.0.0/24");
	assert_int_equal(alloc_ok(ip, &c3, "g"), IP("10.3.0.2"));
}

static void ipam_restart(void **state)
{
	struct net_cidr c = cidr("10.77.0.0/16");
	uint32_t a, b;
	{
		_cleanup_ipam_ struct ipam *ip = open_ipam(*state);
		a = alloc_ok(ip, &c, "pod-a");
		b = alloc_ok(ip, &c, "pod-b");
	}
	_cleanup_ipam_ struct ipam *ip = open_ipam(*state);
	uint32_t l;
	assert_int_equal(ipam_lookup(ip, "pod-a", &l), 0);
	assert_int_equal(l, a);
	assert_int_equal(ipam_lookup(ip, "pod-b", &l), 0);
	assert_int_equal(l, b);
	assert_int_equal(alloc_ok(ip, &c, "pod-a"), a);
	uint32_t n = alloc_ok(ip, &c, "pod-n");
	assert_int_not_equal(n, a);
	assert_int_not_equal(n, b);
	/* The cursor survived too: the next after pod-b's. */
	assert_int_equal(n, b + 1);

	/* The directory is created if missing, with parents. */
	char sub[256];
	snprintf(sub, sizeof(sub), "%s/x/y/ipam", (char *)*state);
	_cleanup_ipam_ struct ipam *ip2 = open_ipam(sub);
	assert_int_equal(alloc_ok(ip2, &c, "pod-a"), IP("10.77.0.2"));
	struct ipam *bad = NULL;
	uk_error err = { 0 };
	assert_int_equal(ipam_open("", &bad, &err), -EINVAL);
}

static void ipam_junk_and_stale(void **state)
{
	const char *dir = *state;
	char path[256];
	/* An address file whose content is not an id: the address stays taken, no one is
	 * reported for it. Other names are ignored. */
	snprintf(path, sizeof(path), "%s/10.4.0.2", dir);
	assert_int_equal(uk_write_file_atomic(path, "not an id!\n", 11, 0644, NULL), 0);
	char target[256];
	snprintf(target, sizeof(target), "%s/10.4.0.4", dir);
	assert_int_equal(symlink("/dev/null", target), 0);
	snprintf(target, sizeof(target), "%s/10.4.0.5", dir);
	assert_int_equal(mkdir(target, 0700), 0);
	snprintf(path, sizeof(path), "%s/README", dir);
	assert_int_equal(uk_write_file_atomic(path, "x", 1, 0644, NULL), 0);
	snprintf(path, sizeof(path), "%s/010.4.0.3", dir); /* not canonical: not an address */
	assert_int_equal(uk_write_file_atomic(path, "pod-z\n", 6, 0644, NULL), 0);

	/* A temp file of a dead process is removed at open; a live one's is kept. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	char stale[256], live[256];
	snprintf(stale, sizeof(stale), "%s/.tmp.%d.7", dir, (int)pid);
	snprintf(live, sizeof(live), "%s/.tmp.%d.7", dir, (int)getpid());
	assert_int_equal(uk_write_file_atomic(stale, "pod-q\n", 6, 0644, NULL), 0);
	assert_int_equal(uk_write_file_atomic(live, "pod-q\n", 6, 0644, NULL), 0);

	/* An empty address file, what a power loss leaves of an allocation never written back,
	 * is removed at open: it holds nobody's address. */
	char empty[256];
	snprintf(empty, sizeof(empty), "%s/10.4.0.7", dir);
	int efd = open(empty, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	assert_true(efd >= 0);
	close(efd);

	_cleanup_ipam_ struct ipam *ip = open_ipam(dir);
	assert_int_equal(access(stale, F_OK), -1);
	assert_int_equal(access(live, F_OK), 0);
	assert_int_equal(access(empty, F_OK), -1);
	snprintf(path, sizeof(path), "%s/10.4.0.2", dir);
	assert_int_equal(access(path, F_OK), 0); /* junk content: kept, as said above */

	struct net_cidr c = cidr("10.4.0.0/24");
	assert_int_equal(alloc_ok(ip, &c, "pod-a"), IP("10.4.0.3"));
	/* .4 is a symlink and .5 a directory: taken, and not in the way of a scan. */
	assert_int_equal(alloc_ok(ip, &c, "pod-b"), IP("10.4.0.6"));
	assert_int_equal(alloc_ok(ip, &c, "pod-b"), IP("10.4.0.6"));
	uint32_t l;
	assert_int_equal(ipam_lookup(ip, "pod-z", &l), -ENOENT);
	static struct seen s;
	memset(&s, 0, sizeof(s));
	uk_error err = { 0 };
	assert_int_equal(ipam_foreach(ip, seen_cb, &s, &err), 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.id[0], "pod-a");
	assert_string_equal(s.id[1], "pod-b");
	unlink(live);
}

#define PER_PROC 50

static int alloc_many(const char *dir, const char *prefix, int rfd, uint32_t *out)
{
	struct ipam *ip = NULL;
	if (ipam_open(dir, &ip, NULL) != 0)
		return -1;
	char go;
	if (read(rfd, &go, 1) != 1) /* both start together */
		return -1;
	struct net_cidr c = { .net = 0x0a630000, .prefix = 24 }; /* 10.99.0.0/24 */
	for (int i = 0; i < PER_PROC; i++) {
		char id[32];
		snprintf(id, sizeof(id), "%s-%d", prefix, i);
		uk_error err = { 0 };
		if (ipam_allocate(ip, &c, id, &out[i], &err) != 0) {
			fprintf(stderr, "%s: %s\n", id, err.msg);
			ipam_free(ip);
			return -1;
		}
	}
	ipam_free(ip);
	return 0;
}

static void ipam_concurrent_processes(void **state)
{
	const char *dir = *state;
	int go[2], res[2];
	assert_int_equal(pipe2(go, O_CLOEXEC), 0);
	assert_int_equal(pipe2(res, O_CLOEXEC), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		uint32_t mine[PER_PROC];
		close(go[1]);
		close(res[0]);
		int r = alloc_many(dir, "child", go[0], mine);
		if (r == 0 && uk_write_all(res[1], mine, sizeof(mine)) < 0)
			r = -1;
		_exit(r == 0 ? 0 : 1);
	}
	close(res[1]);
	/* Two bytes: one for the child, one for us; then both go. */
	assert_int_equal(write(go[1], "gg", 2), 2);
	close(go[1]);
	uint32_t all[2 * PER_PROC];
	int r = alloc_many(dir, "parent", go[0], all);
	close(go[0]);
	size_t got = 0;
	while (got < sizeof(uint32_t) * PER_PROC) {
		ssize_t n = read(res[0], (char *)(all + PER_PROC) + got, sizeof(uint32_t) * PER_PROC - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(res[0]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(r, 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(got, sizeof(uint32_t) * PER_PROC);
	for (int i = 0; i < 2 * PER_PROC; i++) {
		assert_true(all[i] >= 0x0a630002 && all[i] <= 0x0a6300fe);
		for (int j = 0; j < i; j++)
			if (all[i] == all[j])
				fail_msg("address given twice (%d and %d)", i, j);
	}
	/* And the directory agrees: 100 allocations, each to whom it was returned. */
	_cleanup_ipam_ struct ipam *ip = open_ipam(dir);
	static struct seen s;
	memset(&s, 0, sizeof(s));
	uk_error err = { 0 };
	assert_int_equal(ipam_foreach(ip, seen_cb, &s, &err), 0);
	assert_int_equal(s.n, 2 * PER_PROC);
	for (size_t i = 0; i < s.n; i++) {
		bool child = strncmp(s.id[i], "child-", 6) == 0;
		int idx = atoi(strchr(s.id[i], '-') + 1);
		assert_int_equal(s.addr[i], all[(child ? PER_PROC : 0) + idx]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(cidr_parse_valid),
		cmocka_unit_test(cidr_parse_invalid),
		cmocka_unit_test(cidr_derived),
		cmocka_unit_test(ip_str_parse),
		cmocka_unit_test(tap_name_and_mac),
		cmocka_unit_test(template_expand_all),
		cmocka_unit_test(template_errors),
		cmocka_unit_test(template_length),
		cmocka_unit_test(template_has_placeholders),
		cmocka_unit_test_setup_teardown(ipam_distinct_and_lookup, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(ipam_idempotent_and_args, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(ipam_release_idempotent, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(ipam_exhaustion, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(ipam_round_robin, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(ipam_restart, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(ipam_junk_and_stale, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(ipam_concurrent_processes, tmpdir_setup, tmpdir_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
