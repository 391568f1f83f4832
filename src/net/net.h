/* Pod networking: bridge and taps (netlink), addresses (IPAM), DHCP (dnsmasq), NAT and
 * hostPorts (nftables), and the command-line template for guests that take their address
 * as arguments. Every object made here is named or tagged with the sandbox id. */
#ifndef UK_NET_H
#define UK_NET_H

#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/error.h"

#define NET_DEFAULT_BRIDGE "unikd0"
/* Clear of docker0 (172.17/16), podman (10.88/16), flannel (10.244/16), k3s (10.42/16). */
#define NET_DEFAULT_CIDR "10.77.0.0/16"
#define NET_IP_MAX 16 /* "255.255.255.255" + NUL */

/* ---- addresses: cidr.c ---- */
struct net_cidr {
	uint32_t net;  /* host byte order, host bits zero */
	int prefix;    /* 8..30 */
};
/* "10.77.0.0/16"; host bits must be zero. Errors name the text. */
int net_cidr_parse(const char *s, struct net_cidr *ret, uk_error *err);
uint32_t net_cidr_gateway(const struct net_cidr *c);   /* first host: .1 */
uint32_t net_cidr_broadcast(const struct net_cidr *c);
void net_ip_str(uint32_t ip, char out[NET_IP_MAX]);    /* host order in, dotted out */
int net_ip_parse(const char *s, uint32_t *ret);        /* dotted in, host order out */
void net_netmask_str(int prefix, char out[NET_IP_MAX]);

/* ---- netlink.c (libnl-route-3) ---- */
/* An interface name unikd accepts: 1..IFNAMSIZ-1 of [A-Za-z0-9_.-], not "." or "..". */
bool net_ifname_valid(const char *name);
/* Create the bridge if missing, give it gw/prefix if it lacks it, bring it up. */
int net_bridge_ensure(const char *name, uint32_t gw, int prefix, uk_error *err);
/* A tap named ifname on the bridge, up; returns its fd (O_CLOEXEC). The tap is not
 * persistent: it disappears when the last fd to it (QEMU's) closes. With bridge NULL the
 * tap is on no bridge and down (a pool VM's, until its claim: net_tap_attach). */
int net_tap_create(const char *ifname, const char *bridge, uk_error *err);
/* An existing tap onto the bridge, up. */
int net_tap_attach(const char *ifname, const char *bridge, uk_error *err);
bool net_link_exists(const char *ifname);
/* Idempotent: a missing link is fine. */
int net_link_delete(const char *ifname, uk_error *err);
int net_ip_forward_enable(uk_error *err);
/* "uk" + first 12 hex of the sandbox id: unique, and tells whose it is. */
void net_tap_name(const char *sandbox_id, char out[IFNAMSIZ]);
/* 02:xx:xx:xx:xx:xx from the sandbox id: locally administered, unicast. */
void net_mac_from_id(const char *sandbox_id, char out[18]);

/* ---- ipam.c ---- */
/* One file per allocated address in dir, named by the address and holding the sandbox id,
 * created with O_EXCL: an address can never be handed to two sandboxes, across restarts
 * and crashes included. */
struct ipam;
int ipam_open(const char *dir, struct ipam **ret, uk_error *err);
void ipam_free(struct ipam *ip);
/* Allocate in cidr for the sandbox; returns its existing address if it has one.
 * -ENOSPC when the range is full (message says which range). */
int ipam_allocate(struct ipam *ip, const struct net_cidr *cidr, const char *sandbox_id, uint32_t *ret,
		  uk_error *err);
/* Idempotent. */
int ipam_release(struct ipam *ip, const char *sandbox_id, uk_error *err);
/* -ENOENT if the sandbox has no address. */
int ipam_lookup(struct ipam *ip, const char *sandbox_id, uint32_t *ret);
/* Every allocation, for reconciliation. */
int ipam_foreach(struct ipam *ip, int (*fn)(uint32_t addr, const char *sandbox_id, void *ud), void *ud,
		 uk_error *err);

/* ---- template.c ---- */
struct net_template_vars {
	const char *ip, *prefix, *netmask, *gateway, *mac, *dns, *dns_search, *hostname;
};
/* Replace {{ip}}, {{prefix}}, {{netmask}}, {{gateway}}, {{mac}}, {{dns}}, {{dns_search}},
 * {{hostname}}. An unknown placeholder is -EINVAL naming it; a NULL variable expands to
 * "". *ret is malloc'ed. Bounded by max_len. */
int net_template_expand(const char *in, const struct net_template_vars *v, size_t max_len, char **ret,
			uk_error *err);
bool net_template_has_placeholders(const char *in);

/* ---- dnsmasq.c ---- */
struct dns_options {
	char **servers;  /* NULL-terminated */
	char **searches;
	char **options;  /* resolv.conf options: passed as DHCP option 15 is not possible; see docs */
};
struct dnsmasq_config {
	const char *binary;     /* /usr/sbin/dnsmasq */
	const char *bridge;
	const char *dir;        /* its files: pid, hosts.d/, opts.d/, leases, log */
	const struct net_cidr *ranges; /* static ranges, one per pod CIDR in use */
	size_t n_ranges;
	uint64_t log_max;       /* dnsmasq.log's bound in bytes; 0: DNSMASQ_LOG_MAX */
	/* A pod's own dnsmasq (CNI mode): it runs in this network namespace (> 2; 0 or -1: ours),
	 * with these extra options ("--…", NULL-terminated, at most DNSMASQ_EXTRA_MAX). */
	int netns_fd;
	const char *const *extra;
};
#define DNSMASQ_EXTRA_MAX 16
#define DNSMASQ_LOG_MAX (1024 * 1024)
struct dnsmasq;
/* Adopt the dnsmasq recorded in dir if it is alive and ours (pid + start time + argv), or
 * start one. It runs detached (own session) and outlives unikd. */
int dnsmasq_ensure(const struct dnsmasq_config *cfg, struct dnsmasq **ret, uk_error *err);
/* If it died, start it again. Returns 1 if it was restarted. */
int dnsmasq_check(struct dnsmasq *d, uk_error *err);
/* For a supervisor to wait on: a new pidfd (O_CLOEXEC) of the running dnsmasq, which the
 * caller closes; -1 if none. add/remove may restart dnsmasq: when it fires, call
 * dnsmasq_check() and take a new one. */
int dnsmasq_pidfd(struct dnsmasq *d);
pid_t dnsmasq_pid(const struct dnsmasq *d);
/* One file per pod in hosts.d/ (MAC, address, hostname, tag) and opts.d/ (its DNS options,
 * under that tag); dnsmasq re-reads them itself. Written atomically. A host whose address,
 * MAC or id a removed host had, while dnsmasq still holds that one, restarts dnsmasq. */
int dnsmasq_add_host(struct dnsmasq *d, const char *sandbox_id, const char *mac, uint32_t ip,
		     const char *hostname, const struct dns_options *dns, uk_error *err);
/* Idempotent. dnsmasq keeps running and keeps the host as a stale entry (stale.d/) until it
 * next starts; at most DNSMASQ_STALE_MAX of them, the removal after that restarts it. */
int dnsmasq_remove_host(struct dnsmasq *d, const char *sandbox_id, uk_error *err);
#define DNSMASQ_STALE_MAX 64
/* Call fn with the sandbox id of every file in hosts.d/ and opts.d/ (each id once), for
 * reconciliation; fn may remove hosts. fn returning <0 stops the walk with that error. */
int dnsmasq_foreach_host(struct dnsmasq *d, int (*fn)(const char *sandbox_id, void *ud), void *ud, uk_error *err);
/* Keep dnsmasq.log within its bound: past it, it becomes dnsmasq.log.1 (one old file is
 * kept) and dnsmasq reopens a new one. add/remove/lease_of and every start do it; a caller
 * with a timer may call it too. Returns 1 if it rotated, 0 if not needed. */
int dnsmasq_bound_log(struct dnsmasq *d, uk_error *err);
/* From the lease file: 1 and the expiry if mac holds a lease, 0 if not. */
int dnsmasq_lease_of(struct dnsmasq *d, const char *mac, int64_t *expiry, uk_error *err);
/* Frees the handle; dnsmasq keeps running. */
void dnsmasq_free(struct dnsmasq *d);
/* Stop it (tests, and when networking is turned off). */
int dnsmasq_stop(struct dnsmasq *d, uk_error *err);
/* Stop the dnsmasq cfg describes, if one runs (adopted as dnsmasq_ensure would), without
 * starting one; its directory stays. Idempotent. */
int dnsmasq_stop_config(const struct dnsmasq_config *cfg, uk_error *err);

/* ---- nat.c (libnftables) ---- */
struct hostport {
	int proto;            /* IPPROTO_TCP or IPPROTO_UDP */
	uint16_t host_port;
	uint16_t container_port;
	uint32_t host_ip;     /* host order; 0 = every local address */
};
/* Table "ip unikd": masquerade of traffic from the CIDRs leaving them, and the DNAT maps
 * for hostPorts (prerouting and output, to local addresses). Idempotent; recreates the
 * table's base if it is missing. */
int nat_setup(const struct net_cidr *cidrs, size_t n, uk_error *err);
int nat_add_hostports(uint32_t pod_ip, const struct hostport *hp, size_t n, uk_error *err);
/* Idempotent: missing elements are fine. */
int nat_remove_hostports(uint32_t pod_ip, const struct hostport *hp, size_t n, uk_error *err);
/* Delete every hostPort element whose pod address keep() refuses (reconciliation: the
 * elements of pods that are gone, whatever their ports were). *removed: how many. */
int nat_prune_hostports(bool (*keep)(uint32_t pod_ip, void *ud), void *ud, size_t *removed, uk_error *err);
/* Delete the whole table (tests). */
int nat_teardown(uk_error *err);

#endif
