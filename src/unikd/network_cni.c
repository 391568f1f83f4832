/* The runtime's side of CNI mode: the node's network config (loaded, watched), a namespace
 * per pod with the plugins' ADD and DEL, and the VM's tap wired into that namespace
 * (src/net/cni.h, src/net/podnet.h; docs/networking.md, "CNI mode"). */
#include <arpa/inet.h>
#include <dirent.h>
#include <limits.h>
#include <string.h>
#include <sys/inotify.h>

#include "../common/log.h"
#include "../common/util.h"
#include "../net/cni.h"
#include "../net/podnet.h"
#include "network.h"

#define BIN_DIRS_MAX 16
#define BANDWIDTH_MAX 1000000000000000LL /* bits/s: a petabit, more than any link */

struct rt_cni {
	pthread_rwlock_t cfg_lock; /* conf: readers are ADD and DEL, the writer a reload */
	struct cni_config *conf;
	char *conf_dir;
	char *bin_buf;
	const char *bin_dirs[BIN_DIRS_MAX];
	size_t n_bin_dirs;
	int timeout_ms; /* one plugin run */
	int ifd;
	char *run_dir;     /* the pods' DHCP servers: RUN/cni/<id>/ */
	char *dnsmasq_bin;
	pthread_mutex_t lock; /* ready, why, portmap_warned */
	bool ready, portmap_warned;
	char why[512];
};

static int split_dirs(struct rt_cni *c, const char *dirs, uk_error *err)
{
	if (!(c->bin_buf = strdup(dirs)))
		return uk_err(err, ENOMEM, "out of memory");
	for (char *save = NULL, *d = strtok_r(c->bin_buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		if (c->n_bin_dirs == BIN_DIRS_MAX)
			return uk_err(err, E2BIG, "cni_bin_dirs: more than %d directories", BIN_DIRS_MAX);
		c->bin_dirs[c->n_bin_dirs++] = d;
	}
	return c->n_bin_dirs ? 0 : uk_err(err, EINVAL, "cni_bin_dirs: no directory");
}

/* Load the directory's config; on failure keep the one in use (a half-written file must not
 * take a running node's network away) unless there is none. */
static void load(struct rt_cni *c)
{
	struct cni_config *conf = NULL;
	uk_error e = { 0 };
	int r = cni_config_load(c->conf_dir, &conf, &e);
	pthread_rwlock_wrlock(&c->cfg_lock);
	if (r >= 0) {
		cni_config_free(c->conf);
		c->conf = conf;
	}
	bool have = c->conf != NULL;
	pthread_rwlock_unlock(&c->cfg_lock);
	pthread_mutex_lock(&c->lock);
	bool was = c->ready;
	c->ready = have;
	c->portmap_warned = false;
	if (r < 0)
		snprintf(c->why, sizeof(c->why), "no usable CNI config in %s: %.400s", c->conf_dir, e.msg);
	else
		c->why[0] = '\0';
	pthread_mutex_unlock(&c->lock);
	if (r >= 0)
		log_info("msg=\"CNI config loaded\" file=%s network=%s plugins=%zu", cni_config_file(conf),
			 cni_config_name(conf), cni_config_n_plugins(conf));
	else if (was || !have)
		log_warn("msg=\"no usable CNI config\" dir=%s error=\"%s\"%s", c->conf_dir, e.msg,
			 have ? " keeping=\"the config in use\"" : "");
}

int rt_cni_open(const struct rt_net_config *cfg, struct rt_cni **ret, uk_error *err)
{
	struct rt_cni *c = calloc(1, sizeof(*c));
	int r;
	if (!c)
		return uk_err(err, ENOMEM, "out of memory");
	pthread_rwlock_init(&c->cfg_lock, NULL);
	pthread_mutex_init(&c->lock, NULL);
	c->ifd = -1;
	c->timeout_ms = cfg->cni_timeout_s ? (int)cfg->cni_timeout_s * 1000 : CNI_TIMEOUT_MS;
	if (!(c->conf_dir = strdup(cfg->cni_conf_dir)) || asprintf(&c->run_dir, "%s/cni", cfg->run_dir) < 0 ||
	    !(c->dnsmasq_bin = strdup(cfg->dnsmasq))) {
		rt_cni_free(c);
		return uk_err(err, ENOMEM, "out of memory");
	}
	if ((r = split_dirs(c, cfg->cni_bin_dirs, err)) < 0 || (r = uk_mkdir_p(c->conf_dir, 0755, err)) < 0) {
		rt_cni_free(c);
		return r;
	}
	/* Watched before the first load, so a file written in between is not missed. */
	c->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (c->ifd < 0 || inotify_add_watch(c->ifd, c->conf_dir, IN_CREATE | IN_DELETE | IN_CLOSE_WRITE |
								 IN_MOVED_TO | IN_MOVED_FROM | IN_ATTRIB) < 0) {
		r = uk_err_errno(err, errno, "watch %s", c->conf_dir);
		rt_cni_free(c);
		return r;
	}
	load(c);
	*ret = c;
	return 0;
}

void rt_cni_free(struct rt_cni *c)
{
	if (!c)
		return;
	cni_config_free(c->conf);
	safe_close(c->ifd);
	free(c->conf_dir);
	free(c->run_dir);
	free(c->dnsmasq_bin);
	free(c->bin_buf);
	pthread_rwlock_destroy(&c->cfg_lock);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

bool rt_cni_ready(struct rt_cni *c, char *why, size_t len)
{
	pthread_mutex_lock(&c->lock);
	bool ok = c->ready;
	snprintf(why, len, "%s", c->why);
	pthread_mutex_unlock(&c->lock);
	return ok;
}

int rt_cni_watch_fd(struct rt_cni *c)
{
	return c ? c->ifd : -1;
}

void rt_cni_reload(struct rt_cni *c)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	/* Drained whole: one load for a burst of events (an editor's write and rename). */
	while (read(c->ifd, buf, sizeof(buf)) > 0)
		;
	load(c);
}

bool rt_cni_has_portmap(struct rt_cni *c)
{
	pthread_rwlock_rdlock(&c->cfg_lock);
	bool has = c->conf && cni_config_has_capability(c->conf, "portMappings");
	pthread_rwlock_unlock(&c->cfg_lock);
	return has;
}

/* ---- a pod's arguments ---- */

/* A Kubernetes quantity of bits per second ("10M", "1Gi", "500k", "100"). */
static int parse_rate(const char *v, int64_t *ret)
{
	static const struct {
		const char *suffix;
		int64_t mult;
	} units[] = { { "Ki", 1LL << 10 }, { "Mi", 1LL << 20 }, { "Gi", 1LL << 30 }, { "Ti", 1LL << 40 },
		      { "k", 1000LL },	   { "M", 1000000LL },	{ "G", 1000000000LL }, { "T", 1000000000000LL },
		      { "", 1 } };
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (end == v || n <= 0 || errno)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++)
		if (strcmp(end, units[i].suffix) == 0) {
			if (n > BANDWIDTH_MAX / units[i].mult)
				return -ERANGE;
			*ret = n * units[i].mult;
			return 0;
		}
	return -EINVAL;
}

static const char *annotation(const struct sandbox *s, const char *key)
{
	json_object *v;
	return s->annotations && json_object_object_get_ex(s->annotations, key, &v) ? json_object_get_string(v) : NULL;
}

static size_t strings_of(json_object *o, const char *key, const char **out, size_t max)
{
	json_object *a;
	size_t n = 0;
	if (!o || !json_object_object_get_ex(o, key, &a) || !json_object_is_type(a, json_type_array))
		return 0;
	for (size_t i = 0; i < json_object_array_length(a) && n < max; i++)
		out[n++] = json_object_get_string(json_object_array_get_idx(a, i));
	return n;
}

/* What a pod hands its plugins. The arrays live in bufs, which outlives the call. */
#define POD_LIST_MAX 64
struct pod_bufs {
	char netns[PATH_MAX];
	struct cni_port_mapping ports[RT_NET_MAX_PORTS];
	const char *servers[POD_LIST_MAX], *searches[POD_LIST_MAX], *options[POD_LIST_MAX];
};

static int pod_of(const struct sandbox *s, bool netns, struct pod_bufs *b, struct cni_pod *p, uk_error *err)
{
	*p = (struct cni_pod){ .sandbox_id = s->id, .netns = "", .k8s_namespace = s->ns, .k8s_name = s->name,
			       .k8s_uid = s->uid };
	if (netns) {
		podnet_netns_path(s->id, b->netns, sizeof(b->netns));
		p->netns = b->netns;
	}
	struct hostport hp[RT_NET_MAX_PORTS];
	size_t n = 0;
	int r = rt_net_parse_ports(s->port_mappings, hp, &n, err);
	if (r < 0)
		return r;
	json_object *pm = s->port_mappings;
	for (size_t i = 0, k = 0; pm && i < json_object_array_length(pm) && k < n; i++) {
		json_object *e = json_object_array_get_idx(pm, i), *v;
		if (!json_object_object_get_ex(e, "host_port", &v) || json_object_get_int(v) <= 0)
			continue;
		struct cni_port_mapping *m = &b->ports[k++];
		m->host_port = (uint16_t)json_object_get_int(v);
		m->container_port = json_object_object_get_ex(e, "container_port", &v) ? (uint16_t)json_object_get_int(v) : 0;
		m->protocol = json_object_object_get_ex(e, "proto", &v) ? json_object_get_string(v) : "tcp";
		m->host_ip = json_object_object_get_ex(e, "host_ip", &v) && *json_object_get_string(v)
				     ? json_object_get_string(v)
				     : NULL;
		p->n_ports = k;
	}
	p->ports = b->ports;
	p->n_dns_servers = strings_of(s->dns, "servers", b->servers, POD_LIST_MAX);
	p->n_dns_searches = strings_of(s->dns, "searches", b->searches, POD_LIST_MAX);
	p->n_dns_options = strings_of(s->dns, "options", b->options, POD_LIST_MAX);
	p->dns_servers = b->servers;
	p->dns_searches = b->searches;
	p->dns_options = b->options;
	static const char *const keys[2] = { "kubernetes.io/ingress-bandwidth", "kubernetes.io/egress-bandwidth" };
	int64_t *rates[2] = { &p->ingress_bps, &p->egress_bps };
	for (size_t i = 0; i < 2; i++) {
		const char *v = annotation(s, keys[i]);
		if (v && parse_rate(v, rates[i]) < 0)
			return uk_err(err, EINVAL, "config.annotations[%s]: \"%.64s\" is not a rate in bits per second "
				      "(e.g. 10M)", keys[i], v);
	}
	return 0;
}

static struct cni_runner runner_of(const struct rt_cni *c)
{
	return (struct cni_runner){ .bin_dirs = c->bin_dirs, .n_bin_dirs = c->n_bin_dirs, .timeout_ms = c->timeout_ms };
}

/* ---- the pod's DHCP server ---- */

/* The pod's own DHCP server: dnsmasq in the pod's namespace on tap0 only, from tap0's
 * link-local address (--shared-network lets it serve eth0's subnet there), replies
 * broadcast (the guest's address routes through eth0 in this namespace), one host: the
 * guest, with eth0's MAC and address, the gateway, the pod's DNS and the MTU. */
#define DHCP_EXTRA 5
static int dhcp_config(struct rt_cni *c, const struct sandbox *s, const struct podnet_info *info, char *dir,
		       char extra[DHCP_EXTRA][96], const char *argv[DHCP_EXTRA + 1], struct net_cidr *range)
{
	char ip[NET_IP_MAX], gw[NET_IP_MAX];
	net_ip_str(info->ip, ip);
	net_ip_str(info->gateway, gw);
	snprintf(dir, PATH_MAX, "%s/%s", c->run_dir, s->id);
	snprintf(extra[0], 96, "--shared-network=" PODNET_TAP ",%s", ip);
	snprintf(extra[1], 96, "--dhcp-broadcast");
	snprintf(extra[2], 96, "--dhcp-option=option:mtu,%u", info->mtu);
	size_t n = 3;
	if (info->gateway)
		snprintf(extra[n++], 96, "--dhcp-option=option:router,%s", gw);
	for (size_t i = 0; i < n; i++)
		argv[i] = extra[i];
	argv[n] = NULL;
	*range = (struct net_cidr){ .net = info->ip & (info->prefix ? ~0u << (32 - info->prefix) : 0),
				    .prefix = info->prefix };
	return info->ip && info->prefix >= 8 && info->prefix <= 30 ? 0 : -EINVAL;
}

static int dhcp_start(struct rt_cni *c, const struct sandbox *s, const struct podnet_info *info, uk_error *err)
{
	char dir[PATH_MAX], extra[DHCP_EXTRA][96], mac[18];
	const char *argv[DHCP_EXTRA + 1];
	struct net_cidr range;
	if (dhcp_config(c, s, info, dir, extra, argv, &range) < 0)
		return uk_err(err, EINVAL, "the pod's address cannot be served by DHCP (its prefix must be 8..30); "
			      "configure the guest on its command line (unikd.io/network-config: static)");
	_cleanup_close_ int nsfd = podnet_netns_open(s->id, err);
	if (nsfd < 0)
		return nsfd;
	struct dnsmasq_config dc = { .binary = c->dnsmasq_bin, .bridge = PODNET_TAP, .dir = dir, .ranges = &range,
				     .n_ranges = 1, .netns_fd = nsfd, .extra = argv };
	struct dnsmasq *d = NULL;
	int r = dnsmasq_ensure(&dc, &d, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "the pod's DHCP server");
	_cleanup_strv_ char **servers = rt_net_strv(s->dns, "servers");
	_cleanup_strv_ char **searches = rt_net_strv(s->dns, "searches");
	_cleanup_strv_ char **options = rt_net_strv(s->dns, "options");
	struct dns_options dns = { .servers = servers, .searches = searches, .options = options };
	char host[64] = "";
	if (s->hostname)
		snprintf(host, sizeof(host), "%.*s", (int)strcspn(s->hostname, "."), s->hostname);
	snprintf(mac, sizeof(mac), "%s", info->mac);
	r = dnsmasq_add_host(d, s->id, mac, info->ip, *host ? host : NULL, &dns, err);
	dnsmasq_free(d); /* it runs on, in the pod's namespace, until the pod's network goes */
	return r;
}

static int dhcp_stop(struct rt_cni *c, const struct sandbox *s, uk_error *err)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/%s", c->run_dir, s->id);
	if (access(dir, F_OK) < 0)
		return 0; /* never started */
	/* Its handle wants a range; which one does not matter to stop it. */
	struct net_cidr any = { .net = 0x0a000000, .prefix = 8 };
	struct dnsmasq_config dc = { .binary = c->dnsmasq_bin, .bridge = PODNET_TAP, .dir = dir, .ranges = &any,
				     .n_ranges = 1 };
	int r = dnsmasq_stop_config(&dc, err);
	return r < 0 ? r : uk_rm_rf(dir, err);
}

/* ---- ADD and DEL ---- */

static json_object *ips_json(const struct cni_result *res)
{
	json_object *a = json_object_new_array();
	for (size_t i = 0; a && i < res->n_ips; i++)
		json_object_array_add(a, json_object_new_string(res->ips[i].address));
	return a;
}

/* The sandbox's fields from the result and from the namespace itself (Calico puts its
 * gateway in the routes, not in the result). */
static int fill_sandbox(struct sandbox *s, const struct cni_result *res, json_object *state, uk_error *err)
{
	struct podnet_info info;
	int r = podnet_read(s->id, &info, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "the pod's eth0 after ADD");
	char ip[64], gw[NET_IP_MAX];
	snprintf(ip, sizeof(ip), "%s", res->pod_ip);
	char *slash = strchr(ip, '/');
	if (slash)
		*slash = '\0';
	net_ip_str(info.gateway, gw);
	json_object *cni = json_object_new_object();
	if (!cni)
		return uk_err(err, ENOMEM, "out of memory");
	json_object_object_add(cni, "phase", json_object_new_string("added"));
	json_object_object_add(cni, "state", json_object_get(state));
	json_object_object_add(cni, "ips", ips_json(res));
	json_object_object_add(cni, "gateway", json_object_new_string(info.gateway ? gw : ""));
	json_object_object_add(cni, "mtu", json_object_new_int((int)info.mtu));
	free(s->ip);
	free(s->mac);
	s->ip = strdup(ip);
	s->mac = strdup(info.mac);
	s->prefix = info.prefix;
	json_object_put(s->cni);
	s->cni = cni;
	return s->ip && s->mac ? 0 : uk_err(err, ENOMEM, "out of memory");
}

int rt_cni_up(struct rt_cni *c, struct sandbox *s, uk_error *err)
{
	struct pod_bufs b;
	struct cni_pod pod;
	struct cni_result res;
	_cleanup_json_ json_object *state = NULL;
	int r = pod_of(s, true, &b, &pod, err);
	if (r < 0)
		return r;
	if (pod.n_ports && !rt_cni_has_portmap(c)) {
		pthread_mutex_lock(&c->lock);
		bool warn = !c->portmap_warned;
		c->portmap_warned = true;
		pthread_mutex_unlock(&c->lock);
		if (warn)
			log_warn("pod=%s msg=\"the pod asks for hostPorts but no CNI plugin declares portMappings: "
				 "none are set up\"", s->id);
	}
	if ((r = podnet_netns_create(s->id, err)) < 0)
		return uk_err_ctx_r(err, r, "the pod's network namespace");
	pthread_rwlock_rdlock(&c->cfg_lock);
	if (!c->conf) {
		pthread_rwlock_unlock(&c->cfg_lock);
		(void)podnet_netns_remove(s->id, NULL); /* empty: nothing was added to it */
		char why[512];
		(void)rt_cni_ready(c, why, sizeof(why));
		return uk_err(err, EAGAIN, "the pod network is not ready (NetworkPluginNotReady): %s", why);
	}
	struct cni_runner run = runner_of(c);
	r = cni_add(&run, c->conf, &pod, &res, &state, err);
	pthread_rwlock_unlock(&c->cfg_lock);
	if (r >= 0 && (r = fill_sandbox(s, &res, state, err)) < 0) {
		/* ADD succeeded but the pod cannot be used: take it back as a failed ADD is. */
		uk_error e = { 0 };
		pthread_rwlock_rdlock(&c->cfg_lock);
		(void)cni_del(&run, state, c->conf, &pod, &e); /* its failure: the namespace goes all the same below */
		pthread_rwlock_unlock(&c->cfg_lock);
	}
	if (r < 0)
		(void)podnet_netns_remove(s->id, NULL); /* DEL ran (cni_add does it on failure) */
	return r;
}

int rt_cni_down(struct rt_cni *c, struct sandbox *s, uk_error *err)
{
	struct pod_bufs b;
	struct cni_pod pod;
	bool netns = podnet_netns_exists(s->id);
	int r = pod_of(s, netns, &b, &pod, err);
	if (r < 0) {
		/* The record's values were checked when it was made; DEL runs without the extras. */
		pod = (struct cni_pod){ .sandbox_id = s->id, .netns = netns ? b.netns : "", .k8s_namespace = s->ns,
					.k8s_name = s->name, .k8s_uid = s->uid };
	}
	json_object *state = NULL;
	if (s->cni)
		json_object_object_get_ex(s->cni, "state", &state);
	pthread_rwlock_rdlock(&c->cfg_lock);
	struct cni_runner run = runner_of(c);
	if (!state && !c->conf)
		r = uk_err(err, EAGAIN, "DEL: no record of what ADD ran, and no CNI config in %s", c->conf_dir);
	else
		r = cni_del(&run, state, c->conf, &pod, err);
	pthread_rwlock_unlock(&c->cfg_lock);
	if (r < 0)
		return r;
	/* Before the namespace: a process in it would keep it alive, unpinned. */
	if ((r = dhcp_stop(c, s, err)) < 0)
		return uk_err_ctx_r(err, r, "stop the pod's DHCP server");
	(void)podnet_tap_unwire(s->id, NULL); /* the namespace goes next, with whatever is left */
	return podnet_netns_remove(s->id, err);
}

int rt_cni_settle(struct rt_cni *c, const char *sandbox_id, uk_error *err)
{
	int r = cni_stop_strays(sandbox_id, c->timeout_ms, err);
	if (r > 0)
		log_warn("pod=%s msg=\"plugin processes of an earlier unikd ran on; waited for them\" processes=%d",
			 sandbox_id, r);
	return r < 0 ? uk_err_ctx_r(err, r, "the plugins still running for pod %.12s", sandbox_id) : 0;
}

int rt_cni_undo_add(struct rt_cni *c, struct sandbox *s, uk_error *err)
{
	uk_error first = { 0 };
	/* Start-up only (nothing of this unikd runs for the pod yet): what the plugins of the ADD
	 * cut short still run must end first, or it may make things after DEL. */
	int r = rt_cni_settle(c, s->id, err);
	if (r < 0)
		return r;
	r = rt_cni_down(c, s, &first);
	if (r >= 0 || !podnet_netns_exists(s->id))
		return r >= 0 ? r : uk_err(err, -r, "%s", first.msg);
	/* A plugin killed half-way may leave what its own DEL trips over (the bridge plugin's
	 * DEL deletes a masquerade rule for each address of eth0, and fails when ADD never made
	 * its chain). The pod never ran: without eth0, DEL skips what belongs to its addresses
	 * and releases the rest. */
	if ((r = podnet_eth_delete(s->id, err)) < 0)
		return uk_err_ctx_r(err, r, "after DEL failed (%s)", first.msg);
	if ((r = rt_cni_down(c, s, err)) < 0)
		return uk_err_ctx_r(err, r, "DEL again without eth0, after: %s", first.msg);
	log_warn("pod=%s msg=\"DEL of an unfinished ADD succeeded only without eth0\" first_error=\"%s\"", s->id,
		 first.msg);
	return 0;
}

int rt_cni_tap(struct rt_cni *c, const struct sandbox *s, bool dhcp, uk_error *err)
{
	struct podnet_info info;
	int r = podnet_read(s->id, &info, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "the pod's eth0");
	_cleanup_close_ int fd = podnet_tap_wire(s->id, &info, err);
	if (fd < 0)
		return fd;
	if (dhcp && (r = dhcp_start(c, s, &info, err)) < 0)
		return r;
	return TAKE_FD(fd);
}

/* ---- start-up ---- */

void rt_cni_reconcile_orphans(struct rt_cni *c, bool (*has)(const char *sandbox_id, void *ud), void *ud)
{
	_cleanup_closedir_ DIR *d = opendir(PODNET_NETNS_DIR);
	struct dirent *de;
	if (!d)
		return;
	while ((de = readdir(d))) {
		size_t pl = strlen(CNI_NETNS_PREFIX);
		const char *id = de->d_name + pl;
		if (strncmp(de->d_name, CNI_NETNS_PREFIX, pl) != 0 || strlen(id) != UK_FULL_ID_LEN ||
		    strspn(id, "0123456789abcdef") != UK_FULL_ID_LEN || has(id, ud))
			continue;
		struct sandbox s = { .name = "", .ns = "", .uid = "" };
		memcpy(s.id, id, sizeof(s.id));
		uk_error e = { 0 };
		if (rt_cni_undo_add(c, &s, &e) < 0) /* with no record, an ADD cut short */
			log_error("pod=%s msg=\"cannot remove the network of a pod that has no record\" error=\"%s\"", id,
				  e.msg);
		else
			log_warn("pod=%s msg=\"removed the network namespace of a pod that has no record\"", id);
	}
}
