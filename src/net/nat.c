/* NAT for pods with libnftables: masquerade of traffic leaving the pod CIDRs, and hostPort
 * DNAT through maps, in a table of our own ("table ip unikd"). See README.md for the table.
 * Every command text is built here from integers and addresses formatted by net_ip_str():
 * no caller string reaches nft. */
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nftables/libnftables.h>

#include "../common/util.h"
#include "net.h"

#define MAX_CIDRS 256
#define MAX_HOSTPORTS 1024
#define CMD_MAX (1024 * 1024)

/* One table for the whole process: commands that read and then change it are serialized. */
static pthread_mutex_t nat_lock = PTHREAD_MUTEX_INITIALIZER;

/* The base of the table: every object is created if missing ("add" is idempotent) and every
 * chain's rules are replaced, in one transaction with the pod CIDR set's new contents. The
 * hostPort maps are never flushed: they hold the entries of running pods. */
static const char TABLE_BASE[] =
	"add table ip unikd\n"
	"add set ip unikd pod_cidrs { type ipv4_addr; flags interval; auto-merge; }\n"
	"add map ip unikd hp_tcp_ip { type ipv4_addr . inet_service : ipv4_addr . inet_service; }\n"
	"add map ip unikd hp_udp_ip { type ipv4_addr . inet_service : ipv4_addr . inet_service; }\n"
	"add map ip unikd hp_tcp_any { type inet_service : ipv4_addr . inet_service; }\n"
	"add map ip unikd hp_udp_any { type inet_service : ipv4_addr . inet_service; }\n"
	"add chain ip unikd hostports\n"
	"add chain ip unikd prerouting { type nat hook prerouting priority dstnat; policy accept; }\n"
	"add chain ip unikd output { type nat hook output priority -100; policy accept; }\n"
	"add chain ip unikd postrouting { type nat hook postrouting priority srcnat; policy accept; }\n"
	"flush chain ip unikd hostports\n"
	"flush chain ip unikd prerouting\n"
	"flush chain ip unikd output\n"
	"flush chain ip unikd postrouting\n"
	"flush set ip unikd pod_cidrs\n";

static const char TABLE_RULES[] =
	/* hostPorts: a port on one host address first, then a port on every local address. */
	"add rule ip unikd hostports dnat ip to ip daddr . tcp dport map @hp_tcp_ip\n"
	"add rule ip unikd hostports dnat ip to ip daddr . udp dport map @hp_udp_ip\n"
	"add rule ip unikd hostports dnat ip to tcp dport map @hp_tcp_any\n"
	"add rule ip unikd hostports dnat ip to udp dport map @hp_udp_any\n"
	/* From outside and from pods (prerouting), and from the node itself (output), to one of
	 * the node's addresses. Loopback is left alone: 127/8 cannot be routed to a pod. */
	"add rule ip unikd prerouting fib daddr type local jump hostports\n"
	"add rule ip unikd output ip daddr != 127.0.0.0/8 fib daddr type local jump hostports\n"
	/* Pods reaching beyond the pod networks leave with the node's address. */
	"add rule ip unikd postrouting ip saddr @pod_cidrs ip daddr != @pod_cidrs masquerade\n"
	/* Hairpin: a pod reaching a hostPort that lands on a pod of the pod networks (itself
	 * included) would get the answer straight from that pod, not through the node, and
	 * drop it; masqueraded, the answer comes back through the node. */
	"add rule ip unikd postrouting ct status dnat ip saddr @pod_cidrs ip daddr @pod_cidrs masquerade\n"
	/* The node reaching a hostPort through one of its own addresses: the answer comes back
	 * to the bridge address, on-link, whatever the pod's routes. */
	"add rule ip unikd postrouting ct status dnat ip daddr @pod_cidrs fib saddr type local masquerade\n";

/* ---- a bounded string builder ---- */

struct sb {
	char *p;
	size_t len, cap;
	bool failed;
};

static void sb_add(struct sb *b, const char *fmt, ...) _printf_(2, 3);
static void sb_add(struct sb *b, const char *fmt, ...)
{
	if (b->failed)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = true;
			return;
		}
		if (b->p && b->len + (size_t)n < b->cap) {
			b->len += (size_t)n;
			return;
		}
		size_t ncap = b->cap ? b->cap * 2 : 4096;
		while (ncap < b->len + (size_t)n + 1)
			ncap *= 2;
		if (ncap > CMD_MAX) {
			b->failed = true;
			return;
		}
		char *np = realloc(b->p, ncap);
		if (!np) {
			b->failed = true;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

static void sb_free(struct sb *b)
{
	free(b->p);
}

/* ---- running nft ---- */

static void nft_ctx_freep(struct nft_ctx **c)
{
	if (*c)
		nft_ctx_free(*c);
}

/* nft's error text as one line: "Error: ...: File exists | add element ..." */
static void one_line(const char *in, char *out, size_t size)
{
	size_t o = 0;
	bool space = false;
	for (const char *p = in; *p && o + 4 < size; p++) {
		char c = *p;
		if (c == '\n') {
			/* Skip the "^^^^" marker lines. */
			const char *q = p + 1;
			while (*q == ' ' || *q == '\t' || *q == '^')
				q++;
			if (*q == '\n' || *q == '\0')
				p = q - 1;
			if (o > 0 && p[1])
				out[o++] = ' ', out[o++] = '|', out[o++] = ' ';
			space = false;
			continue;
		}
		if (c == '\t' || c == ' ') {
			if (!space && o > 0)
				out[o++] = ' ';
			space = true;
			continue;
		}
		space = false;
		out[o++] = c;
	}
	while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == '|'))
		o--;
	out[o] = '\0';
}

/* nft reports a kernel error as its strerror() text: take the errno back from it. */
static int errno_of(const char *msg)
{
	static const int codes[] = { ENOENT, EEXIST, EBUSY, EPERM, EACCES, ENOMEM, EINVAL, EOPNOTSUPP, ENOSPC };
	for (size_t i = 0; i < ARRAY_SIZE(codes); i++)
		if (strstr(msg, strerror(codes[i])))
			return codes[i];
	return EIO;
}

/* Run cmd as one transaction; with out, the (JSON) output. */
static int nft_run(const char *cmd, bool json, char **out, uk_error *err)
{
	_cleanup_(nft_ctx_freep) struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!ctx)
		return uk_err(err, ENOMEM, "nft: cannot create a context");
	if (nft_ctx_buffer_output(ctx) < 0 || nft_ctx_buffer_error(ctx) < 0)
		return uk_err(err, ENOMEM, "nft: cannot buffer output");
	if (json)
		nft_ctx_output_set_flags(ctx, nft_ctx_output_get_flags(ctx) | NFT_CTX_OUTPUT_JSON);
	if (nft_run_cmd_from_buffer(ctx, cmd) != 0) {
		const char *e = nft_ctx_get_error_buffer(ctx);
		char msg[UK_ERROR_MSG_MAX - 64];
		one_line(e && *e ? e : "failed without a message", msg, sizeof(msg));
		return uk_err(err, errno_of(msg), "nft: %s", msg);
	}
	if (out) {
		const char *o = nft_ctx_get_output_buffer(ctx);
		*out = strdup(o ? o : "");
		if (!*out)
			return uk_err(err, ENOMEM, "out of memory");
	}
	return 0;
}

/* ---- validation ---- */

static uint32_t prefix_mask(int prefix)
{
	return prefix <= 0 ? 0 : (prefix >= 32 ? 0xffffffffu : 0xffffffffu << (32 - prefix));
}

static const char *proto_name(int proto)
{
	return proto == IPPROTO_TCP ? "tcp" : proto == IPPROTO_UDP ? "udp" : NULL;
}

static int check_hostports(uint32_t pod_ip, const struct hostport *hp, size_t n, uk_error *err)
{
	if (n > 0 && !hp)
		return uk_err(err, EINVAL, "hostports: NULL list");
	if (n > MAX_HOSTPORTS)
		return uk_err(err, EINVAL, "hostports: %zu entries, at most %d", n, MAX_HOSTPORTS);
	if (pod_ip == 0 || pod_ip == 0xffffffffu)
		return uk_err(err, EINVAL, "hostports: pod ip is not a host address");
	for (size_t i = 0; i < n; i++) {
		if (!proto_name(hp[i].proto))
			return uk_err(err, EPROTONOSUPPORT, "hostport[%zu]: protocol %d is not tcp or udp", i, hp[i].proto);
		if (hp[i].host_port == 0)
			return uk_err(err, EINVAL, "hostport[%zu]: host_port 0 is out of range 1..65535", i);
		if (hp[i].container_port == 0)
			return uk_err(err, EINVAL, "hostport[%zu]: container_port 0 is out of range 1..65535", i);
		if (hp[i].host_ip == 0xffffffffu)
			return uk_err(err, EINVAL, "hostport[%zu]: host_ip 255.255.255.255 is not an address", i);
	}
	return 0;
}

/* ---- the hostPort maps as they are ---- */

struct hp_elem {
	int proto;
	bool any;         /* the _any map: keyed by port only */
	uint32_t host_ip; /* 0 for any */
	uint16_t host_port;
	uint32_t pod_ip;
	uint16_t pod_port;
};

struct hp_list {
	struct hp_elem *e;
	size_t n, cap;
};

static void hp_list_free(struct hp_list *l)
{
	free(l->e);
}

static bool json_port(json_object *o, uint16_t *ret)
{
	if (!o || !json_object_is_type(o, json_type_int))
		return false;
	int64_t v = json_object_get_int64(o);
	if (v < 0 || v > 65535)
		return false;
	*ret = (uint16_t)v;
	return true;
}

static bool json_ip(json_object *o, uint32_t *ret)
{
	return o && json_object_is_type(o, json_type_string) && net_ip_parse(json_object_get_string(o), ret) == 0;
}

/* {"concat": ["10.77.0.5", 80]} */
static bool json_concat(json_object *o, uint32_t *ip, uint16_t *port)
{
	json_object *c;
	if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, "concat", &c) ||
	    !json_object_is_type(c, json_type_array) || json_object_array_length(c) != 2)
		return false;
	return json_ip(json_object_array_get_idx(c, 0), ip) && json_port(json_object_array_get_idx(c, 1), port);
}

/* The elements of our four maps, from `list table ip unikd` in JSON. 0 with an empty list
 * if the table does not exist. */
static int hp_list_read(struct hp_list *l, bool *table_exists, uk_error *err)
{
	_cleanup_free_ char *tables = NULL;
	int r = nft_run("list tables ip", true, &tables, err);
	if (r < 0)
		return r;
	*table_exists = false;
	_cleanup_json_ json_object *t = json_tokener_parse(tables);
	json_object *arr, *nf;
	if (t && json_object_object_get_ex(t, "nftables", &arr) && json_object_is_type(arr, json_type_array))
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			json_object *tab, *name;
			if (json_object_object_get_ex(json_object_array_get_idx(arr, i), "table", &tab) &&
			    json_object_object_get_ex(tab, "name", &name) &&
			    strcmp(json_object_get_string(name), "unikd") == 0)
				*table_exists = true;
		}
	if (!*table_exists)
		return 0;

	static const struct {
		const char *name;
		int proto;
		bool any;
	} maps[] = {
		{ "hp_tcp_ip", IPPROTO_TCP, false },
		{ "hp_udp_ip", IPPROTO_UDP, false },
		{ "hp_tcp_any", IPPROTO_TCP, true },
		{ "hp_udp_any", IPPROTO_UDP, true },
	};
	_cleanup_free_ char *out = NULL;
	if ((r = nft_run("list table ip unikd", true, &out, err)) < 0)
		return r;
	_cleanup_json_ json_object *o = json_tokener_parse(out);
	if (!o || !json_object_object_get_ex(o, "nftables", &nf) || !json_object_is_type(nf, json_type_array))
		return uk_err(err, EIO, "nft: cannot parse the listing of table ip unikd");
	for (size_t i = 0; i < json_object_array_length(nf); i++) {
		json_object *map, *name, *elems;
		if (!json_object_object_get_ex(json_object_array_get_idx(nf, i), "map", &map) ||
		    !json_object_object_get_ex(map, "name", &name))
			continue;
		size_t m;
		for (m = 0; m < ARRAY_SIZE(maps); m++)
			if (strcmp(json_object_get_string(name), maps[m].name) == 0)
				break;
		if (m == ARRAY_SIZE(maps) || !json_object_object_get_ex(map, "elem", &elems))
			continue;
		for (size_t k = 0; k < json_object_array_length(elems); k++) {
			/* [key, value]; an element with attributes comes as {"elem": {"val": ...}}. */
			json_object *pair = json_object_array_get_idx(elems, k);
			if (!json_object_is_type(pair, json_type_array) || json_object_array_length(pair) != 2)
				return uk_err(err, EIO, "nft: unexpected element in map %s", maps[m].name);
			json_object *key = json_object_array_get_idx(pair, 0), *val = json_object_array_get_idx(pair, 1);
			json_object *inner, *v;
			if (json_object_is_type(key, json_type_object) && json_object_object_get_ex(key, "elem", &inner) &&
			    json_object_object_get_ex(inner, "val", &v))
				key = v;
			struct hp_elem e = { .proto = maps[m].proto, .any = maps[m].any };
			bool ok = maps[m].any ? json_port(key, &e.host_port) : json_concat(key, &e.host_ip, &e.host_port);
			if (!ok || !json_concat(val, &e.pod_ip, &e.pod_port))
				return uk_err(err, EIO, "nft: unexpected element in map %s", maps[m].name);
			if (l->n == l->cap) {
				size_t ncap = l->cap ? l->cap * 2 : 32;
				struct hp_elem *ne = realloc(l->e, ncap * sizeof(*ne));
				if (!ne)
					return uk_err(err, ENOMEM, "out of memory");
				l->e = ne;
				l->cap = ncap;
			}
			l->e[l->n++] = e;
		}
	}
	return 0;
}

static void hp_str(int proto, uint32_t host_ip, uint16_t port, char *out, size_t size)
{
	char ip[NET_IP_MAX];
	net_ip_str(host_ip, ip);
	snprintf(out, size, "%s %s:%u", proto_name(proto), ip, (unsigned)port);
}

/* "add element ip unikd <map> { k : v, ... }" or "delete element ... { k, ... }" for the
 * entries of hp that go into one map. */
static void elements_cmd(struct sb *b, const char *verb, int proto, bool any, uint32_t pod_ip,
			 const struct hostport *hp, const bool *pick, size_t n)
{
	bool first = true;
	char pod[NET_IP_MAX];
	net_ip_str(pod_ip, pod);
	for (size_t i = 0; i < n; i++) {
		if (!pick[i] || hp[i].proto != proto || (hp[i].host_ip == 0) != any)
			continue;
		if (first)
			sb_add(b, "%s element ip unikd hp_%s_%s { ", verb, proto_name(proto), any ? "any" : "ip");
		else
			sb_add(b, ", ");
		first = false;
		if (!any) {
			char hip[NET_IP_MAX];
			net_ip_str(hp[i].host_ip, hip);
			sb_add(b, "%s . ", hip);
		}
		sb_add(b, "%u", (unsigned)hp[i].host_port);
		if (strcmp(verb, "add") == 0)
			sb_add(b, " : %s . %u", pod, (unsigned)hp[i].container_port);
	}
	if (!first)
		sb_add(b, " }\n");
}

static void all_elements_cmd(struct sb *b, const char *verb, uint32_t pod_ip, const struct hostport *hp,
			     const bool *pick, size_t n)
{
	for (int any = 0; any < 2; any++) {
		elements_cmd(b, verb, IPPROTO_TCP, any, pod_ip, hp, pick, n);
		elements_cmd(b, verb, IPPROTO_UDP, any, pod_ip, hp, pick, n);
	}
}

/* ---- the API ---- */

int nat_setup(const struct net_cidr *cidrs, size_t n, uk_error *err)
{
	if (n > 0 && !cidrs)
		return uk_err(err, EINVAL, "nat: NULL CIDR list");
	if (n > MAX_CIDRS)
		return uk_err(err, EINVAL, "nat: %zu CIDRs, at most %d", n, MAX_CIDRS);
	struct sb b = { 0 };
	sb_add(&b, "%s", TABLE_BASE);
	for (size_t i = 0; i < n; i++) {
		char net[NET_IP_MAX];
		net_ip_str(cidrs[i].net, net);
		if (cidrs[i].prefix < 1 || cidrs[i].prefix > 32) {
			sb_free(&b);
			return uk_err(err, EINVAL, "nat: CIDR %s/%d: prefix must be within 1..32", net, cidrs[i].prefix);
		}
		if (cidrs[i].net & ~prefix_mask(cidrs[i].prefix)) {
			sb_free(&b);
			return uk_err(err, EINVAL, "nat: CIDR %s/%d has host bits set", net, cidrs[i].prefix);
		}
		sb_add(&b, "%s%s/%d", i == 0 ? "add element ip unikd pod_cidrs { " : ", ", net, cidrs[i].prefix);
	}
	if (n > 0)
		sb_add(&b, " }\n");
	sb_add(&b, "%s", TABLE_RULES);
	if (b.failed) {
		sb_free(&b);
		return uk_err(err, ENOMEM, "out of memory");
	}
	pthread_mutex_lock(&nat_lock);
	int r = nft_run(b.p, false, NULL, err);
	pthread_mutex_unlock(&nat_lock);
	sb_free(&b);
	return r < 0 ? uk_err_ctx_r(err, r, "nat setup") : 0;
}

int nat_add_hostports(uint32_t pod_ip, const struct hostport *hp, size_t n, uk_error *err)
{
	int r = check_hostports(pod_ip, hp, n, err);
	if (r < 0)
		return r;
	if (n == 0)
		return 0;
	char pod[NET_IP_MAX];
	net_ip_str(pod_ip, pod);
	_cleanup_free_ bool *pick = calloc(n, sizeof(bool));
	if (!pick)
		return uk_err(err, ENOMEM, "out of memory");
	/* Two entries of the request for one key must agree. */
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < i; j++)
			if (hp[i].proto == hp[j].proto && hp[i].host_ip == hp[j].host_ip &&
			    hp[i].host_port == hp[j].host_port && hp[i].container_port != hp[j].container_port) {
				char k[64];
				hp_str(hp[i].proto, hp[i].host_ip, hp[i].host_port, k, sizeof(k));
				return uk_err(err, EINVAL, "hostport[%zu]: %s is also hostport[%zu] with another port", i,
					      k, j);
			}

	pthread_mutex_lock(&nat_lock);
	_cleanup_(hp_list_free) struct hp_list cur = { 0 };
	bool exists;
	r = hp_list_read(&cur, &exists, err);
	if (r >= 0 && !exists)
		r = uk_err(err, ENOENT, "nft table ip unikd does not exist (nat_setup first)");
	size_t todo = 0;
	for (size_t i = 0; r >= 0 && i < n; i++) {
		pick[i] = true;
		for (size_t j = 0; j < i && pick[i]; j++)
			if (pick[j] && hp[j].proto == hp[i].proto && hp[j].host_ip == hp[i].host_ip &&
			    hp[j].host_port == hp[i].host_port)
				pick[i] = false; /* the same entry twice */
		for (size_t k = 0; pick[i] && k < cur.n; k++) {
			const struct hp_elem *e = &cur.e[k];
			if (e->proto != hp[i].proto || e->host_port != hp[i].host_port)
				continue;
			bool same_key = e->any == (hp[i].host_ip == 0) && (e->any || e->host_ip == hp[i].host_ip);
			bool same_target = e->pod_ip == pod_ip && e->pod_port == hp[i].container_port;
			/* A port on every address and the same port on one address overlap. */
			bool overlaps = same_key || e->any || hp[i].host_ip == 0;
			if (same_key && same_target) {
				pick[i] = false; /* already there: adding again is fine */
			} else if (overlaps && !same_target) {
				char k1[64], pip[NET_IP_MAX];
				hp_str(hp[i].proto, hp[i].host_ip, hp[i].host_port, k1, sizeof(k1));
				net_ip_str(e->pod_ip, pip);
				if (same_key)
					r = uk_err(err, EBUSY, "hostport[%zu]: %s is taken by %s:%u", i, k1, pip,
						   (unsigned)e->pod_port);
				else {
					char k2[64];
					hp_str(e->proto, e->host_ip, e->host_port, k2, sizeof(k2));
					r = uk_err(err, EBUSY, "hostport[%zu]: %s overlaps %s, taken by %s:%u", i, k1, k2,
						   pip, (unsigned)e->pod_port);
				}
				break;
			}
		}
		todo += pick[i];
	}
	if (r >= 0 && todo > 0) {
		struct sb b = { 0 };
		all_elements_cmd(&b, "add", pod_ip, hp, pick, n);
		r = b.failed ? uk_err(err, ENOMEM, "out of memory") : nft_run(b.p, false, NULL, err);
		sb_free(&b);
	}
	pthread_mutex_unlock(&nat_lock);
	return r < 0 ? uk_err_ctx_r(err, r, "hostports of %s", pod) : 0;
}

int nat_remove_hostports(uint32_t pod_ip, const struct hostport *hp, size_t n, uk_error *err)
{
	int r = check_hostports(pod_ip, hp, n, err);
	if (r < 0)
		return r;
	if (n == 0)
		return 0;
	char pod[NET_IP_MAX];
	net_ip_str(pod_ip, pod);
	_cleanup_free_ bool *pick = calloc(n, sizeof(bool));
	if (!pick)
		return uk_err(err, ENOMEM, "out of memory");
	pthread_mutex_lock(&nat_lock);
	_cleanup_(hp_list_free) struct hp_list cur = { 0 };
	bool exists;
	r = hp_list_read(&cur, &exists, err);
	/* Only elements that exist and still lead to this pod: a missing one is fine, and a key
	 * that meanwhile belongs to another pod is not ours to delete. */
	size_t todo = 0;
	for (size_t i = 0; r >= 0 && i < n; i++) {
		for (size_t j = 0; j < i && !pick[i]; j++)
			if (pick[j] && hp[j].proto == hp[i].proto && hp[j].host_ip == hp[i].host_ip &&
			    hp[j].host_port == hp[i].host_port)
				goto next; /* the same key twice */
		for (size_t k = 0; k < cur.n; k++) {
			const struct hp_elem *e = &cur.e[k];
			if (e->proto == hp[i].proto && e->any == (hp[i].host_ip == 0) &&
			    (e->any || e->host_ip == hp[i].host_ip) && e->host_port == hp[i].host_port &&
			    e->pod_ip == pod_ip && e->pod_port == hp[i].container_port) {
				pick[i] = true;
				todo++;
				break;
			}
		}
	next:;
	}
	if (r >= 0 && todo > 0) {
		struct sb b = { 0 };
		all_elements_cmd(&b, "delete", pod_ip, hp, pick, n);
		r = b.failed ? uk_err(err, ENOMEM, "out of memory") : nft_run(b.p, false, NULL, err);
		sb_free(&b);
	}
	pthread_mutex_unlock(&nat_lock);
	return r < 0 ? uk_err_ctx_r(err, r, "remove hostports of %s", pod) : 0;
}

int nat_prune_hostports(bool (*keep)(uint32_t pod_ip, void *ud), void *ud, size_t *removed, uk_error *err)
{
	if (!keep)
		return uk_err(err, EINVAL, "nat: no callback");
	if (removed)
		*removed = 0;
	pthread_mutex_lock(&nat_lock);
	_cleanup_(hp_list_free) struct hp_list cur = { 0 };
	bool exists;
	int r = hp_list_read(&cur, &exists, err);
	struct sb b = { 0 };
	size_t n = 0;
	for (size_t k = 0; r >= 0 && exists && k < cur.n; k++) {
		const struct hp_elem *e = &cur.e[k];
		if (keep(e->pod_ip, ud))
			continue;
		/* One element per command: the same text as the pod's own removal would use. */
		struct hostport h = { .proto = e->proto, .host_port = e->host_port, .container_port = e->pod_port,
				      .host_ip = e->any ? 0 : e->host_ip };
		bool pick = true;
		all_elements_cmd(&b, "delete", e->pod_ip, &h, &pick, 1);
		n++;
	}
	if (r >= 0 && n > 0)
		r = b.failed ? uk_err(err, ENOMEM, "out of memory") : nft_run(b.p, false, NULL, err);
	sb_free(&b);
	pthread_mutex_unlock(&nat_lock);
	if (r < 0)
		return uk_err_ctx_r(err, r, "prune hostports");
	if (removed)
		*removed = n;
	return 0;
}

int nat_teardown(uk_error *err)
{
	/* "add" first makes the delete succeed whether or not the table exists. */
	pthread_mutex_lock(&nat_lock);
	int r = nft_run("add table ip unikd\ndelete table ip unikd\n", false, NULL, err);
	pthread_mutex_unlock(&nat_lock);
	return r < 0 ? uk_err_ctx_r(err, r, "nat teardown") : 0;
}
