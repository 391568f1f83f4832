/* The runtime's pod networking: one bridge, its dnsmasq and NAT table, and per pod an
 * address, a DHCP host entry, hostPort rules and (per VM) a tap. */
#ifndef UK_RT_NETWORK_H
#define UK_RT_NETWORK_H

#include <pthread.h>

#include "../net/net.h"
#include "../store/records.h"

#define RT_NET_MAX_CIDRS 8
#define RT_NET_MAX_PORTS 64

struct rt_cni;

struct rt_net_config {
	bool enabled;          /* bridge mode: unikd's own bridge, addresses, dnsmasq, NAT */
	bool cni;              /* cni mode: the node's CNI plugins (network_cni.c) */
	const char *cni_conf_dir;
	const char *cni_bin_dirs; /* ':'-separated */
	unsigned cni_timeout_s;   /* one plugin run; 0: CNI_TIMEOUT_MS */
	const char *bridge;
	const char *cidr;      /* the default pod CIDR */
	const char *dnsmasq;   /* binary */
	const char *state_dir; /* persistent: IPAM, CIDRs in use */
	const char *run_dir;   /* dnsmasq's files */
};

struct rt_net {
	bool enabled;      /* bridge mode */
	struct rt_cni *cni; /* cni mode, else NULL */
	char bridge[IFNAMSIZ];
	struct net_cidr cidrs[RT_NET_MAX_CIDRS]; /* in use; the last one is where new pods go */
	size_t n_cidrs;
	char *dir, *cidr_file, *dnsmasq_bin, *dnsmasq_dir;
	struct ipam *ipam;
	struct dnsmasq *dns;
	bool ready;
	char why[512];
	pthread_mutex_t lock; /* guards dns and readiness; per-pod calls run under the runtime lock */
};

/* Brings the network up. Failing to is not fatal: NetworkReady goes false with the reason,
 * and pods are refused with it. */
int rt_net_open(const struct rt_net_config *cfg, struct rt_net **ret, uk_error *err);
void rt_net_free(struct rt_net *n);
bool rt_net_ready(struct rt_net *n, char *why, size_t len);
/* kubelet's pod CIDR: new pods take their addresses from it. */
int rt_net_set_cidr(struct rt_net *n, const char *cidr, uk_error *err);

/* Parse and check a pod's port mappings (host_port > 0 only). */
int rt_net_parse_ports(json_object *mappings, struct hostport *out, size_t *n, uk_error *err);

/* Address, DHCP entry, hostPorts; fills s->ip, s->mac, s->prefix. Rolls back on failure. */
int rt_net_sandbox_up(struct rt_net *n, struct sandbox *s, uk_error *err);
/* Idempotent: releases everything sandbox_up made, and any tap left by name. */
int rt_net_sandbox_down(struct rt_net *n, struct sandbox *s, uk_error *err);
/* A tap for the pod's VM, on the bridge or (CNI) wired to eth0 in the pod's namespace, where
 * with dhcp the pod's own DHCP server answers the guest; the fd goes to QEMU. */
int rt_net_tap(struct rt_net *n, const struct sandbox *s, bool dhcp, uk_error *err);
/* A pool VM's tap (bridge mode): on no bridge and down until its claim; the fd goes to
 * QEMU. -ENOENT without bridge networking. */
int rt_net_pool_tap(struct rt_net *n, const char *ifname, uk_error *err);
/* The claim of a pool VM for pod s: its MAC becomes the pod's (the DHCP entry, s->mac; the
 * caller saves the record), then its tap goes onto the bridge, up. */
int rt_net_claim_tap(struct rt_net *n, struct sandbox *s, const char *ifname, const char *mac, uk_error *err);
/* The pod's address as a guest sees it, as text; false when the pod has none. dns is its
 * first dns_config server, "" if none. */
struct rt_pod_net {
	char ip[NET_IP_MAX], mask[NET_IP_MAX], gateway[NET_IP_MAX];
	unsigned prefix;
	char dns[256];
};
bool rt_net_pod(struct rt_net *n, const struct sandbox *s, struct rt_pod_net *out);
/* Fill in the network placeholders of a command line. */
int rt_net_expand(struct rt_net *n, const struct sandbox *s, const char *in, char **out, uk_error *err);
/* The lease dnsmasq holds for the pod: 1 with expiry, 0 none. */
int rt_net_lease(struct rt_net *n, const struct sandbox *s, int64_t *expiry);
/* For the main loop: a pidfd that becomes readable when dnsmasq dies (-1: none). */
int rt_net_dnsmasq_pidfd(struct rt_net *n);
/* dnsmasq died: start it again. */
void rt_net_dnsmasq_restart(struct rt_net *n);
/* Keep dnsmasq's log within its bound (rotated past it); for a timer of the main loop,
 * since a guest's DHCP problems log lines between pod changes. 1 if it rotated. */
int rt_net_bound_logs(struct rt_net *n, uk_error *err);
/* The strings of o[key] (an array), NULL-terminated and malloc'd; empty if absent. */
char **rt_net_strv(json_object *o, const char *key);

/* ---- cni mode (network_cni.c) ---- */

/* Load the CNI config and watch its directory. Not having a usable config is not fatal:
 * NetworkReady is false (NetworkPluginNotReady) with the cause until one loads. */
int rt_cni_open(const struct rt_net_config *cfg, struct rt_cni **ret, uk_error *err);
void rt_cni_free(struct rt_cni *c);
bool rt_cni_ready(struct rt_cni *c, char *why, size_t len);
/* For the main loop: the inotify fd of the config directory (-1: none); when it is
 * readable, rt_cni_reload() drains it and loads the directory again. */
int rt_cni_watch_fd(struct rt_cni *c);
void rt_cni_reload(struct rt_cni *c);
/* The pod's network: its namespace, then ADD with the config in use now; on success s gets
 * ip, prefix, mac (eth0's) and s->cni = {"phase": "added", "state", "ips", "gateway", "mtu"}.
 * On failure nothing is left: DEL ran, the namespace is gone. Runs without the runtime's
 * lock (a plugin may take seconds); s is the caller's, claimed for this call. */
int rt_cni_up(struct rt_cni *c, struct sandbox *s, uk_error *err);
/* DEL with what ADD recorded (or, without a record of it, the config in use now), then the
 * pod's DHCP server and namespace go. netns may be gone (after a reboot): DEL runs with an
 * empty CNI_NETNS so the plugins release their reservations. Idempotent. */
int rt_cni_down(struct rt_cni *c, struct sandbox *s, uk_error *err);
/* At start-up, before a pod's DEL: the plugin processes an earlier unikd started for it may
 * finish (within the plugin timeout), then are killed. */
int rt_cni_settle(struct rt_cni *c, const char *sandbox_id, uk_error *err);
/* At start-up, DEL for an ADD that never finished (cut short by a crash), after whatever its
 * plugins still run has ended; should DEL fail on what the cut-short ADD left half made, eth0
 * goes and DEL runs once more. */
int rt_cni_undo_add(struct rt_cni *c, struct sandbox *s, uk_error *err);
/* The VM's tap in the pod's namespace, wired to eth0 (fd for QEMU); with dhcp, the pod's
 * own dnsmasq answers the guest on it with eth0's address. */
int rt_cni_tap(struct rt_cni *c, const struct sandbox *s, bool dhcp, uk_error *err);
/* At start-up: every pinned unikd-* namespace without a sandbox record goes (DEL with the
 * config in use, then the namespace). has(id) says whether a record exists. */
void rt_cni_reconcile_orphans(struct rt_cni *c, bool (*has)(const char *sandbox_id, void *ud), void *ud);
/* Whether the config in use has a plugin for hostPorts (portMappings). */
bool rt_cni_has_portmap(struct rt_cni *c);

/* Re-add the hostPorts of live pods after a restart. */
int rt_net_restore(struct rt_net *n, struct sandbox **sb, size_t n_sb, uk_error *err);

/* What rt_net_reconcile removed. */
struct rt_net_cleanup {
	size_t addresses, dhcp_hosts, hostports, taps;
};
/* At start-up, once the sandboxes are final: every address, DHCP entry and hostPort element
 * that no ready sandbox holds goes (the sandbox's own, by its id and address, whether or not
 * its record still exists); ready sandboxes get back a missing DHCP entry and their
 * hostPorts; a tap goes unless has_vm() says its pod runs a VM. Logs what it removes. */
int rt_net_reconcile(struct rt_net *n, struct sandbox **sb, size_t n_sb, bool (*has_vm)(const char *sandbox_id, void *ud),
		     void *ud, struct rt_net_cleanup *out, uk_error *err);

#endif
