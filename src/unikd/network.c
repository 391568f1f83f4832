#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"
#include "network.h"

#define CIDR_FILE_MAX 4096

static int save_cidrs(struct rt_net *n, uk_error *err)
{
	_cleanup_json_ json_object *o = json_object_new_object();
	json_object *arr = json_object_new_array();
	for (size_t i = 0; i < n->n_cidrs; i++) {
		char ip[NET_IP_MAX], buf[64];
		net_ip_str(n->cidrs[i].net, ip);
		snprintf(buf, sizeof(buf), "%s/%d", ip, n->cidrs[i].prefix);
		json_object_array_add(arr, json_object_new_string(buf));
	}
	json_object_object_add(o, "cidrs", arr);
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
	return uk_write_file_atomic(n->cidr_file, s, strlen(s), 0600, err);
}

static bool has_cidr(struct rt_net *n, const struct net_cidr *c)
{
	for (size_t i = 0; i < n->n_cidrs; i++)
		if (n->cidrs[i].net == c->net && n->cidrs[i].prefix == c->prefix)
			return true;
	return false;
}

static void load_cidrs(struct rt_net *n)
{
	_cleanup_free_ char *text = NULL;
	if (uk_read_file(n->cidr_file, CIDR_FILE_MAX, &text, NULL, NULL) < 0)
		return;
	_cleanup_json_ json_object *o = json_tokener_parse(text);
	json_object *arr;
	if (!o || !json_object_object_get_ex(o, "cidrs", &arr) || !json_object_is_type(arr, json_type_array))
		return;
	for (size_t i = 0; i < json_object_array_length(arr) && n->n_cidrs < RT_NET_MAX_CIDRS; i++) {
		struct net_cidr c;
		if (net_cidr_parse(json_object_get_string(json_object_array_get_idx(arr, i)), &c, NULL) == 0 &&
		    !has_cidr(n, &c))
			n->cidrs[n->n_cidrs++] = c;
	}
}

static void not_ready(struct rt_net *n, const char *what, const uk_error *err)
{
	n->ready = false;
	snprintf(n->why, sizeof(n->why), "%.64s: %.400s", what, err->msg);
}

/* Bridge addresses, forwarding, NAT and dnsmasq for the CIDRs in use. */
static int bring_up(struct rt_net *n, uk_error *err)
{
	int r;
	for (size_t i = 0; i < n->n_cidrs; i++)
		if ((r = net_bridge_ensure(n->bridge, net_cidr_gateway(&n->cidrs[i]), n->cidrs[i].prefix, err)) < 0) {
			not_ready(n, "bridge", err);
			return r;
		}
	if ((r = net_ip_forward_enable(err)) < 0) {
		not_ready(n, "IPv4 forwarding", err);
		return r;
	}
	if ((r = nat_setup(n->cidrs, n->n_cidrs, err)) < 0) {
		not_ready(n, "nftables", err);
		return r;
	}
	struct dnsmasq_config dc = { .binary = n->dnsmasq_bin, .bridge = n->bridge, .dir = n->dnsmasq_dir,
				     .ranges = n->cidrs, .n_ranges = n->n_cidrs };
	struct dnsmasq *d = NULL;
	if ((r = dnsmasq_ensure(&dc, &d, err)) < 0) {
		not_ready(n, "dnsmasq", err);
		return r;
	}
	dnsmasq_free(n->dns);
	n->dns = d;
	n->ready = true;
	n->why[0] = '\0';
	return 0;
}

int rt_net_open(const struct rt_net_config *cfg, struct rt_net **ret, uk_error *err)
{
	struct rt_net *n = calloc(1, sizeof(*n));
	struct net_cidr def;
	int r;
	if (!n)
		return uk_err(err, ENOMEM, "out of memory");
	pthread_mutex_init(&n->lock, NULL);
	n->enabled = cfg->enabled;
	if (cfg->cni) {
		if ((r = rt_cni_open(cfg, &n->cni, err)) < 0) {
			rt_net_free(n);
			return r;
		}
		*ret = n;
		return 0;
	}
	if (!n->enabled) {
		snprintf(n->why, sizeof(n->why), "pod networking is turned off (--network none)");
		*ret = n;
		return 0;
	}
	if (strlen(cfg->bridge) >= IFNAMSIZ) {
		rt_net_free(n);
		return uk_err(err, EINVAL, "bridge name \"%s\" is longer than %d bytes", cfg->bridge, IFNAMSIZ - 1);
	}
	if ((r = net_cidr_parse(cfg->cidr, &def, err)) < 0) {
		rt_net_free(n);
		return uk_err_ctx_r(err, r, "pod CIDR");
	}
	snprintf(n->bridge, sizeof(n->bridge), "%s", cfg->bridge);
	if (asprintf(&n->dir, "%s/net", cfg->state_dir) < 0 || asprintf(&n->cidr_file, "%s/net/cidrs.json", cfg->state_dir) < 0 ||
	    asprintf(&n->dnsmasq_dir, "%s/dnsmasq-%s", cfg->run_dir, cfg->bridge) < 0 ||
	    !(n->dnsmasq_bin = strdup(cfg->dnsmasq))) {
		rt_net_free(n);
		return uk_err(err, ENOMEM, "out of memory");
	}
	char ipam_dir[PATH_MAX];
	snprintf(ipam_dir, sizeof(ipam_dir), "%s/ipam", n->dir);
	if ((r = uk_mkdir_p(ipam_dir, 0700, err)) < 0 || (r = uk_mkdir_p(n->dnsmasq_dir, 0700, err)) < 0 ||
	    (r = ipam_open(ipam_dir, &n->ipam, err)) < 0) {
		rt_net_free(n);
		return r;
	}
	load_cidrs(n);
	if (!has_cidr(n, &def) && n->n_cidrs == 0)
		n->cidrs[n->n_cidrs++] = def;
	(void)save_cidrs(n, NULL); /* the CIDR is in use; a failed save is redone by the next change */
	uk_error e = { 0 };
	if (bring_up(n, &e) < 0)
		log_error("msg=\"pod network is not ready\" reason=\"%s\"", n->why);
	*ret = n;
	return 0;
}

void rt_net_free(struct rt_net *n)
{
	if (!n)
		return;
	ipam_free(n->ipam);
	dnsmasq_free(n->dns);
	rt_cni_free(n->cni);
	free(n->dir);
	free(n->cidr_file);
	free(n->dnsmasq_bin);
	free(n->dnsmasq_dir);
	pthread_mutex_destroy(&n->lock);
	free(n);
}

bool rt_net_ready(struct rt_net *n, char *why, size_t len)
{
	if (n->cni)
		return rt_cni_ready(n->cni, why, len);
	pthread_mutex_lock(&n->lock);
	bool ok = n->enabled && n->ready;
	snprintf(why, len, "%s", n->why);
	pthread_mutex_unlock(&n->lock);
	return ok;
}

int rt_net_set_cidr(struct rt_net *n, const char *cidr, uk_error *err)
{
	struct net_cidr c;
	int r;
	if ((r = net_cidr_parse(cidr, &c, err)) < 0)
		return r;
	if (!n->enabled)
		return 0;
	pthread_mutex_lock(&n->lock);
	if (n->n_cidrs && n->cidrs[n->n_cidrs - 1].net == c.net && n->cidrs[n->n_cidrs - 1].prefix == c.prefix) {
		pthread_mutex_unlock(&n->lock);
		return 0;
	}
	/* Keep older CIDRs while pods still hold addresses there; the new one goes last. */
	size_t k = 0;
	for (size_t i = 0; i < n->n_cidrs; i++)
		if (!(n->cidrs[i].net == c.net && n->cidrs[i].prefix == c.prefix))
			n->cidrs[k++] = n->cidrs[i];
	n->n_cidrs = k;
	if (n->n_cidrs == RT_NET_MAX_CIDRS) {
		memmove(n->cidrs, n->cidrs + 1, sizeof(n->cidrs[0]) * (RT_NET_MAX_CIDRS - 1));
		n->n_cidrs--;
	}
	n->cidrs[n->n_cidrs++] = c;
	r = save_cidrs(n, err);
	if (r >= 0)
		r = bring_up(n, err);
	pthread_mutex_unlock(&n->lock);
	return r;
}

int rt_net_parse_ports(json_object *m, struct hostport *out, size_t *n, uk_error *err)
{
	*n = 0;
	if (!m)
		return 0;
	for (size_t i = 0; i < json_object_array_length(m); i++) {
		json_object *e = json_object_array_get_idx(m, i), *v;
		int64_t hp = json_object_object_get_ex(e, "host_port", &v) ? json_object_get_int64(v) : 0;
		int64_t cp = json_object_object_get_ex(e, "container_port", &v) ? json_object_get_int64(v) : 0;
		const char *proto = json_object_object_get_ex(e, "proto", &v) ? json_object_get_string(v) : "tcp";
		const char *hip = json_object_object_get_ex(e, "host_ip", &v) ? json_object_get_string(v) : "";
		if (hp == 0)
			continue; /* only hostPorts need rules */
		if (*n >= RT_NET_MAX_PORTS)
			return uk_err(err, E2BIG, "config.port_mappings: more than %d host ports", RT_NET_MAX_PORTS);
		if (hp < 1 || hp > 65535)
			return uk_err(err, EINVAL, "config.port_mappings[%zu].host_port %lld is not a port", i, (long long)hp);
		if (cp < 1 || cp > 65535)
			return uk_err(err, EINVAL, "config.port_mappings[%zu].container_port %lld is not a port", i,
				      (long long)cp);
		struct hostport *h = &out[(*n)++];
		h->proto = strcmp(proto, "udp") == 0 ? IPPROTO_UDP : IPPROTO_TCP;
		h->host_port = (uint16_t)hp;
		h->container_port = (uint16_t)cp;
		h->host_ip = 0;
		if (hip && *hip && strcmp(hip, "0.0.0.0") != 0 && net_ip_parse(hip, &h->host_ip) < 0)
			return uk_err(err, EINVAL, "config.port_mappings[%zu].host_ip \"%s\" is not an IPv4 address", i, hip);
	}
	return 0;
}

char **rt_net_strv(json_object *o, const char *key)
{
	json_object *a;
	if (!o || !json_object_object_get_ex(o, key, &a) || !json_object_is_type(a, json_type_array))
		return calloc(1, sizeof(char *));
	size_t len = json_object_array_length(a);
	char **v = calloc(len + 1, sizeof(char *));
	for (size_t i = 0; v && i < len; i++)
		v[i] = strdup(json_object_get_string(json_object_array_get_idx(a, i)));
	return v;
}

/* The pod's DHCP host entry (MAC, address, host name, DNS options). Idempotent. */
static int add_dhcp_host(struct rt_net *n, const struct sandbox *s, uint32_t ip, const char *mac, uk_error *err)
{
	_cleanup_strv_ char **servers = rt_net_strv(s->dns, "servers");
	_cleanup_strv_ char **searches = rt_net_strv(s->dns, "searches");
	_cleanup_strv_ char **options = rt_net_strv(s->dns, "options");
	struct dns_options dns = { .servers = servers, .searches = searches, .options = options };
	/* DHCP's host name is one label: "web.example" is offered as "web". */
	char host[64] = "";
	int r;
	if (s->hostname)
		snprintf(host, sizeof(host), "%.*s", (int)strcspn(s->hostname, "."), s->hostname);
	pthread_mutex_lock(&n->lock);
	/* The main loop restarts a dead dnsmasq too; checking here closes the race with it. */
	if (n->dns && (r = dnsmasq_check(n->dns, err)) < 0)
		not_ready(n, "dnsmasq", err);
	else
		r = n->dns ? dnsmasq_add_host(n->dns, s->id, mac, ip, *host ? host : NULL, &dns, err)
			   : uk_err(err, EAGAIN, "no dnsmasq");
	pthread_mutex_unlock(&n->lock);
	return r;
}

int rt_net_sandbox_up(struct rt_net *n, struct sandbox *s, uk_error *err)
{
	struct hostport hp[RT_NET_MAX_PORTS];
	size_t nhp = 0;
	uint32_t ip;
	int r;
	if (!n->enabled)
		return 0;
	char why[512];
	if (!rt_net_ready(n, why, sizeof(why)))
		return uk_err(err, EAGAIN, "the pod network is not ready: %s", why);
	if ((r = rt_net_parse_ports(s->port_mappings, hp, &nhp, err)) < 0)
		return r;
	/* In this order, each step in place before the next: the address (a file in the state
	 * directory, named by the address and holding the id; not fsync'ed, since a reboot
	 * releases every address anyway), the DHCP entry (files named by the id), the hostPorts
	 * (nft elements whose value is the address). A crash before the
	 * sandbox's record is written leaves objects that all lead back to the address, and the
	 * address to the id: start-up finds them without the record (rt_net_reconcile). */
	const struct net_cidr *c = &n->cidrs[n->n_cidrs - 1];
	if ((r = ipam_allocate(n->ipam, c, s->id, &ip, err)) < 0)
		return r;
	char ipstr[NET_IP_MAX], mac[18];
	net_ip_str(ip, ipstr);
	net_mac_from_id(s->id, mac);
	if ((r = add_dhcp_host(n, s, ip, mac, err)) < 0) {
		(void)ipam_release(n->ipam, s->id, NULL); /* or by id at the next start-up */
		return r;
	}
	if ((r = nat_add_hostports(ip, hp, nhp, err)) < 0) {
		pthread_mutex_lock(&n->lock);
		(void)dnsmasq_remove_host(n->dns, s->id, NULL); /* or by id at the next start-up */
		pthread_mutex_unlock(&n->lock);
		(void)ipam_release(n->ipam, s->id, NULL); /* or by id at the next start-up */
		return uk_err_ctx_r(err, r, "hostPorts");
	}
	free(s->ip);
	free(s->mac);
	s->ip = strdup(ipstr);
	s->mac = strdup(mac);
	s->prefix = c->prefix;
	return 0;
}

int rt_net_sandbox_down(struct rt_net *n, struct sandbox *s, uk_error *err)
{
	struct hostport hp[RT_NET_MAX_PORTS];
	size_t nhp = 0;
	uint32_t ip;
	int r = 0;
	if (!n->enabled)
		return 0;
	char tap[IFNAMSIZ];
	net_tap_name(s->id, tap);
	(void)net_link_delete(tap, NULL); /* a missing tap is what we want; start-up sweeps the rest */
	if (s->ip && *s->ip && net_ip_parse(s->ip, &ip) == 0 && rt_net_parse_ports(s->port_mappings, hp, &nhp, NULL) == 0 &&
	    (r = nat_remove_hostports(ip, hp, nhp, err)) < 0)
		return uk_err_ctx_r(err, r, "remove hostPorts");
	pthread_mutex_lock(&n->lock);
	r = n->dns ? dnsmasq_remove_host(n->dns, s->id, err) : 0;
	pthread_mutex_unlock(&n->lock);
	if (r < 0)
		return r;
	if ((r = ipam_release(n->ipam, s->id, err)) < 0)
		return r;
	free(s->ip);
	s->ip = NULL;
	return 0;
}

int rt_net_tap(struct rt_net *n, const struct sandbox *s, bool dhcp, uk_error *err)
{
	if (n->cni && s->ip)
		return rt_cni_tap(n->cni, s, dhcp, err);
	if (!n->enabled || !s->ip)
		return -ENOENT;
	char tap[IFNAMSIZ];
	net_tap_name(s->id, tap);
	/* A tap left by a VM that died uncleanly would block the name; its create says so. */
	(void)net_link_delete(tap, NULL);
	return net_tap_create(tap, n->bridge, err);
}

int rt_net_pool_tap(struct rt_net *n, const char *ifname, uk_error *err)
{
	if (!n->enabled)
		return -ENOENT;
	/* A tap left by a pool VM that died uncleanly would block the name; its create says so. */
	(void)net_link_delete(ifname, NULL);
	return net_tap_create(ifname, NULL, err);
}

int rt_net_claim_tap(struct rt_net *n, struct sandbox *s, const char *ifname, const char *mac, uk_error *err)
{
	uint32_t ip;
	int r;
	if (!n->enabled || !s->ip || net_ip_parse(s->ip, &ip) < 0)
		return uk_err(err, ENOENT, "pod %s has no address on the bridge", s->id);
	/* The DHCP entry first: the guest asks for its address only once it runs, after this. */
	if ((r = add_dhcp_host(n, s, ip, mac, err)) < 0)
		return uk_err_ctx_r(err, r, "the DHCP entry of the pooled VM's MAC %s", mac);
	char *m = strdup(mac);
	if (!m)
		return uk_err(err, ENOMEM, "out of memory");
	free(s->mac);
	s->mac = m;
	return net_tap_attach(ifname, n->bridge, err);
}

static char *join(json_object *o, const char *key)
{
	json_object *a;
	size_t len = 1;
	if (!o || !json_object_object_get_ex(o, key, &a) || !json_object_is_type(a, json_type_array))
		return strdup("");
	for (size_t i = 0; i < json_object_array_length(a); i++)
		len += strlen(json_object_get_string(json_object_array_get_idx(a, i))) + 1;
	char *s = calloc(1, len);
	for (size_t i = 0; s && i < json_object_array_length(a); i++) {
		if (i)
			strcat(s, ",");
		strcat(s, json_object_get_string(json_object_array_get_idx(a, i)));
	}
	return s;
}

bool rt_net_pod(struct rt_net *n, const struct sandbox *s, struct rt_pod_net *out)
{
	uint32_t ip;
	json_object *gw;
	*out = (struct rt_pod_net){ 0 };
	if (!(n->enabled || n->cni) || !s->ip || net_ip_parse(s->ip, &ip) < 0)
		return false;
	struct net_cidr c = { .prefix = s->prefix };
	c.net = ip & (s->prefix ? ~0u << (32 - s->prefix) : 0);
	snprintf(out->ip, sizeof(out->ip), "%s", s->ip);
	out->prefix = (unsigned)s->prefix;
	net_netmask_str(s->prefix, out->mask);
	/* CNI: the gateway the pod's namespace routes through (read after ADD); bridge: ours. */
	if (n->cni && s->cni && json_object_object_get_ex(s->cni, "gateway", &gw))
		snprintf(out->gateway, sizeof(out->gateway), "%s", json_object_get_string(gw));
	else
		net_ip_str(net_cidr_gateway(&c), out->gateway);
	json_object *a;
	if (s->dns && json_object_object_get_ex(s->dns, "servers", &a) && json_object_is_type(a, json_type_array) &&
	    json_object_array_length(a) > 0)
		snprintf(out->dns, sizeof(out->dns), "%s", json_object_get_string(json_object_array_get_idx(a, 0)));
	return true;
}

int rt_net_expand(struct rt_net *n, const struct sandbox *s, const char *in, char **out, uk_error *err)
{
	char prefix[8] = "";
	struct rt_pod_net pn;
	if (rt_net_pod(n, s, &pn))
		snprintf(prefix, sizeof(prefix), "%u", pn.prefix);
	else if (net_template_has_placeholders(in))
		return uk_err(err, EINVAL, "the command line uses network placeholders but the pod has no address");
	_cleanup_free_ char *dns = join(s->dns, "servers");
	_cleanup_free_ char *search = join(s->dns, "searches");
	struct net_template_vars v = { .ip = s->ip, .prefix = prefix, .netmask = pn.mask, .gateway = pn.gateway,
				       .mac = s->mac, .dns = dns, .dns_search = search, .hostname = s->hostname };
	return net_template_expand(in, &v, 4095, out, err);
}

int rt_net_lease(struct rt_net *n, const struct sandbox *s, int64_t *expiry)
{
	/* A stopped pod (no address) holds no lease, whatever dnsmasq still has of its stale
	 * host. */
	if (!n->enabled || !s->mac || !s->ip)
		return 0;
	pthread_mutex_lock(&n->lock);
	int r = n->dns ? dnsmasq_lease_of(n->dns, s->mac, expiry, NULL) : 0;
	pthread_mutex_unlock(&n->lock);
	return r;
}

int rt_net_dnsmasq_pidfd(struct rt_net *n)
{
	pthread_mutex_lock(&n->lock);
	int fd = n->dns ? dnsmasq_pidfd(n->dns) : -1;
	pthread_mutex_unlock(&n->lock);
	return fd;
}

void rt_net_dnsmasq_restart(struct rt_net *n)
{
	uk_error err = { 0 };
	pthread_mutex_lock(&n->lock);
	int r = n->dns ? dnsmasq_check(n->dns, &err) : bring_up(n, &err);
	if (r < 0) {
		not_ready(n, "dnsmasq", &err);
		log_error("msg=\"dnsmasq could not be restarted\" error=\"%s\"", err.msg);
	} else if (r > 0) {
		log_warn("msg=\"dnsmasq died and was restarted\" pid=%d", (int)dnsmasq_pid(n->dns));
	}
	pthread_mutex_unlock(&n->lock);
}

int rt_net_bound_logs(struct rt_net *n, uk_error *err)
{
	pthread_mutex_lock(&n->lock);
	int r = n->dns ? dnsmasq_bound_log(n->dns, err) : 0;
	pthread_mutex_unlock(&n->lock);
	return r;
}

int rt_net_restore(struct rt_net *n, struct sandbox **sb, size_t n_sb, uk_error *err)
{
	if (!n->enabled || !n->ready)
		return 0;
	for (size_t i = 0; i < n_sb; i++) {
		struct hostport hp[RT_NET_MAX_PORTS];
		size_t nhp = 0;
		uint32_t ip;
		if (sb[i]->state != SANDBOX_READY || !sb[i]->ip || net_ip_parse(sb[i]->ip, &ip) < 0 ||
		    rt_net_parse_ports(sb[i]->port_mappings, hp, &nhp, NULL) < 0 || nhp == 0)
			continue;
		int r = nat_add_hostports(ip, hp, nhp, err);
		if (r < 0)
			return uk_err_ctx_r(err, r, "restore hostPorts of %s", sb[i]->id);
	}
	return 0;
}

/* ---- reconciliation at start-up ---- */

struct reconcile_ctx {
	struct rt_net *n;
	struct sandbox **sb;
	size_t n_sb;
	bool (*has_vm)(const char *sandbox_id, void *ud);
	void *ud;
	struct rt_net_cleanup *out;
};

/* The ready sandbox that holds an address, or NULL. */
static struct sandbox *ready_with_ip(struct reconcile_ctx *x, const char *id)
{
	for (size_t i = 0; i < x->n_sb; i++) {
		struct sandbox *s = x->sb[i];
		if (strcmp(s->id, id) == 0)
			return s->state == SANDBOX_READY && s->ip && *s->ip ? s : NULL;
	}
	return NULL;
}

static int drop_address(uint32_t addr, const char *sandbox_id, void *ud)
{
	struct reconcile_ctx *x = ud;
	if (ready_with_ip(x, sandbox_id))
		return 0;
	/* No ready pod holds it: a RunPodSandbox cut short before its record, or a sandbox
	 * whose record is gone (quarantined). Its DHCP entry and tap are named by the id; its
	 * hostPorts are pruned by address below. */
	struct sandbox ghost = { 0 };
	snprintf(ghost.id, sizeof(ghost.id), "%s", sandbox_id);
	uk_error e = { 0 };
	if (rt_net_sandbox_down(x->n, &ghost, &e) < 0) {
		log_error("pod=%s msg=\"cannot release an address no pod holds\" error=\"%s\"", sandbox_id, e.msg);
		return 0;
	}
	char ip[NET_IP_MAX];
	net_ip_str(addr, ip);
	log_warn("pod=%s msg=\"released an address no live pod holds\" ip=%s", sandbox_id, ip);
	x->out->addresses++;
	return 0;
}

static int check_dhcp_host(const char *sandbox_id, void *ud)
{
	struct reconcile_ctx *x = ud;
	if (ready_with_ip(x, sandbox_id))
		return 0;
	uk_error e = { 0 };
	pthread_mutex_lock(&x->n->lock);
	int r = x->n->dns ? dnsmasq_remove_host(x->n->dns, sandbox_id, &e) : 0;
	pthread_mutex_unlock(&x->n->lock);
	if (r < 0)
		log_error("pod=%s msg=\"cannot remove a stray DHCP entry\" error=\"%s\"", sandbox_id, e.msg);
	else {
		log_warn("pod=%s msg=\"removed a DHCP entry no live pod holds\"", sandbox_id);
		x->out->dhcp_hosts++;
	}
	return 0;
}

static bool keep_hostports_of(uint32_t pod_ip, void *ud)
{
	struct reconcile_ctx *x = ud;
	for (size_t i = 0; i < x->n_sb; i++) {
		uint32_t a;
		const struct sandbox *s = x->sb[i];
		if (s->state == SANDBOX_READY && s->ip && net_ip_parse(s->ip, &a) == 0 && a == pod_ip)
			return true;
	}
	return false;
}

/* "uk" + 12 lowercase hex: one of our taps. */
static bool tap_name(const char *name)
{
	return strlen(name) == 14 && strncmp(name, "uk", 2) == 0 && strspn(name + 2, "0123456789abcdef") == 12;
}

int rt_net_reconcile(struct rt_net *n, struct sandbox **sb, size_t n_sb, bool (*has_vm)(const char *sandbox_id, void *ud),
		     void *ud, struct rt_net_cleanup *out, uk_error *err)
{
	struct reconcile_ctx x = { .n = n, .sb = sb, .n_sb = n_sb, .has_vm = has_vm, .ud = ud, .out = out };
	int r;
	*out = (struct rt_net_cleanup){ 0 };
	if (!n->enabled)
		return 0;
	if ((r = ipam_foreach(n->ipam, drop_address, &x, err)) < 0)
		return uk_err_ctx_r(err, r, "reconcile addresses");
	if (n->ready) {
		/* Ready pods get their DHCP entry back if it is missing (a run directory emptied
		 * under us); anything else in hosts.d/ and opts.d/ goes. */
		for (size_t i = 0; i < n_sb; i++) {
			uint32_t ip;
			uk_error e = { 0 };
			if (sb[i]->state != SANDBOX_READY || !sb[i]->ip || !sb[i]->mac || net_ip_parse(sb[i]->ip, &ip) < 0)
				continue;
			if (add_dhcp_host(n, sb[i], ip, sb[i]->mac, &e) < 0)
				log_error("pod=%s msg=\"cannot restore the DHCP entry\" error=\"%s\"", sb[i]->id, e.msg);
		}
		if (n->dns && (r = dnsmasq_foreach_host(n->dns, check_dhcp_host, &x, err)) < 0)
			return uk_err_ctx_r(err, r, "reconcile DHCP entries");
		if ((r = nat_prune_hostports(keep_hostports_of, &x, &out->hostports, err)) < 0)
			return r;
		if (out->hostports)
			log_warn("msg=\"removed hostPort rules of pods that are gone\" count=%zu", out->hostports);
		if ((r = rt_net_restore(n, sb, n_sb, err)) < 0)
			return r;
	}
	/* A tap lives as long as the fd QEMU holds; one without a VM of its pod is a leftover. */
	struct if_nameindex *ifs = if_nameindex();
	for (struct if_nameindex *i = ifs; i && i->if_index; i++) {
		if (!tap_name(i->if_name))
			continue;
		bool live = false;
		for (size_t k = 0; k < n_sb && !live; k++)
			live = strncmp(sb[k]->id, i->if_name + 2, 12) == 0 && has_vm(sb[k]->id, ud);
		if (live)
			continue;
		uk_error e = { 0 };
		if (net_link_delete(i->if_name, &e) < 0)
			log_error("msg=\"cannot remove a stray tap\" tap=%s error=\"%s\"", i->if_name, e.msg);
		else {
			log_warn("msg=\"removed a tap no VM holds\" tap=%s", i->if_name);
			out->taps++;
		}
	}
	if (ifs)
		if_freenameindex(ifs);
	return 0;
}
