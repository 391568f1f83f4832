/* Pod sandboxes: create (the network, then the record), stop (containers, then the
 * network) and remove (containers, network, record). */
#include <netinet/in.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"
#include "runtime_internal.h"

static bool ports_clash(const struct hostport *a, const struct hostport *b)
{
	return a->proto == b->proto && a->host_port == b->host_port &&
	       (!a->host_ip || !b->host_ip || a->host_ip == b->host_ip);
}

/* A hostPort belongs to one ready pod at a time. */
static int check_hostports(struct runtime *rt, const struct sandbox *s, uk_error *err)
{
	struct hostport mine[RT_NET_MAX_PORTS], theirs[RT_NET_MAX_PORTS];
	size_t n_mine = 0, n_theirs = 0;
	int r;
	if ((r = rt_net_parse_ports(s->port_mappings, mine, &n_mine, err)) < 0)
		return r;
	for (size_t i = 0; i < n_mine; i++)
		for (size_t j = i + 1; j < n_mine; j++)
			if (ports_clash(&mine[i], &mine[j]))
				return uk_err(err, EINVAL, "config.port_mappings: host port %u is given twice", mine[i].host_port);
	for (size_t k = 0; k < rt->n_sb; k++) {
		const struct sandbox *o = rt->sb[k];
		if (o->state != SANDBOX_READY || rt_net_parse_ports(o->port_mappings, theirs, &n_theirs, NULL) < 0)
			continue;
		for (size_t i = 0; i < n_mine; i++)
			for (size_t j = 0; j < n_theirs; j++)
				if (ports_clash(&mine[i], &theirs[j]))
					return uk_err(err, EADDRINUSE, "host port %s/%u is taken by pod sandbox %s (%s)",
						      mine[i].proto == IPPROTO_UDP ? "udp" : "tcp", mine[i].host_port, o->id,
						      o->reserved_name);
	}
	return 0;
}

/* Whether s can be made now: its name is free and its hostPorts too. Lock held. */
static int check_sandbox(struct runtime *rt, const struct sandbox *s, uk_error *err)
{
	for (size_t i = 0; i < rt->n_sb; i++)
		if (strcmp(rt->sb[i]->reserved_name, s->reserved_name) == 0)
			return uk_err(err, EEXIST, "pod sandbox name \"%s\" is reserved for %s", s->reserved_name,
				      rt->sb[i]->id);
	int r = check_hostports(rt, s, err);
	if (r < 0)
		return r;
	if (rt_grow((void **)&rt->sb, &rt->cap_sb, rt->n_sb) < 0)
		return uk_err(err, ENOMEM, "out of memory");
	return 0;
}

int rt_sandbox_create(struct runtime *rt, struct sandbox *s, char *id_out, uk_error *err)
{
	int r;
	if (asprintf(&s->reserved_name, "%s_%s_%s_%u", s->name, s->ns, s->uid, s->attempt) < 0) {
		s->reserved_name = NULL;
		sandbox_free(s);
		return uk_err(err, ENOMEM, "out of memory");
	}
	if ((r = uk_random_hex_id(s->id)) < 0) {
		sandbox_free(s);
		return uk_err_errno(err, -r, "random id");
	}
	s->created_ns = (int64_t)uk_now_realtime_ns();
	s->state = SANDBOX_READY;
	memcpy(s->boot_id, rt->boot_id, sizeof(s->boot_id));
	rt_lock(rt);
	if ((r = check_sandbox(rt, s, err)) < 0)
		goto fail;
	if (rt->net->cni) {
		r = rt_sandbox_create_cni(rt, s, err); /* takes s */
		if (r >= 0) {
			memcpy(id_out, s->id, UK_FULL_ID_LEN + 1);
			log_info("pod=%s msg=\"sandbox created\" name=%s ip=%s", s->id, s->reserved_name, s->ip);
		}
		rt_unlock(rt);
		return r;
	}
	/* The network first, the record last: until the record exists, nothing reaches the
	 * pod, and start-up finds what a crash left (addresses, DHCP entries and hostPorts all
	 * lead to the id) and releases it. */
	if ((r = rt_net_sandbox_up(rt->net, s, err)) < 0) {
		r = rt_state_full_ctx(rt, r, err);
		goto fail;
	}
	if ((r = rt_save_sandbox(rt, s, err)) < 0) {
		/* Idempotent, and start-up releases by id what is left. */
		(void)rt_net_sandbox_down(rt->net, s, NULL);
		goto fail;
	}
	rt->sb[rt->n_sb++] = s;
	memcpy(id_out, s->id, UK_FULL_ID_LEN + 1);
	rt_unlock(rt);
	log_info("pod=%s msg=\"sandbox created\" name=%s", s->id, s->reserved_name);
	return 0;
fail:
	rt_unlock(rt);
	sandbox_free(s);
	return r;
}

/* NOTREADY, then the network goes, in an order a crash cannot undo: the record says
 * NOTREADY (keeping the address) before anything is released, so a restart that finds a
 * NOTREADY sandbox with an address finishes the release, and a READY one still has all of
 * it. Lock held. */
static int sandbox_release(struct runtime *rt, struct sandbox *s, uk_error *err)
{
	int r;
	if (s->state != SANDBOX_NOTREADY) {
		s->state = SANDBOX_NOTREADY;
		if ((r = rt_save_sandbox(rt, s, err)) < 0) {
			s->state = SANDBOX_READY;
			return r;
		}
		log_info("pod=%s msg=\"sandbox stopped\"", s->id);
	}
	if (rt->net->cni)
		return rt_sandbox_release_cni(rt, s, err);
	if (!rt->net->enabled)
		return 0;
	bool had_ip = s->ip != NULL;
	/* The CRI: network resources are reclaimed at StopPodSandbox. Idempotent, and done
	 * again on a second stop: whatever a VM that died uncleanly left (its tap) goes too. */
	if ((r = rt_net_sandbox_down(rt->net, s, err)) < 0) {
		(void)uk_err_ctx_r(err, r, "release the network of pod %s", s->id);
		return r;
	}
	/* ip is NULL now; a failure here leaves NOTREADY with the old address, which the next
	 * stop or start-up releases again. */
	if (had_ip)
		(void)rt_save_sandbox(rt, s, NULL);
	return 0;
}

/* Stop or remove every container of the pod: the ids are taken under the lock, the work
 * runs without it. *found false (and 0) when there is no such pod; sid gets its full id. */
static int each_container(struct runtime *rt, const char *id, bool remove, rt_id sid, bool *found, uk_error *err)
{
	_cleanup_free_ rt_id *ids = NULL;
	struct sandbox *s;
	size_t n = 0;
	int r = 0;
	rt_lock(rt);
	if ((*found = rt_find_sandbox(rt, id, &s, NULL) == 0)) {
		memcpy(sid, s->id, sizeof(rt_id));
		r = rt_containers_of(rt, sid, &ids, &n, err);
	}
	rt_unlock(rt);
	for (size_t i = 0; r >= 0 && i < n; i++) {
		r = remove ? rt_container_remove(rt, ids[i], err) : rt_container_stop(rt, ids[i], 0, err);
		if (r == -ENOENT)
			r = 0; /* removed meanwhile: as good as stopped */
		else if (r < 0)
			(void)uk_err_ctx_r(err, r, "%s container %s", remove ? "remove" : "stop", ids[i]);
	}
	return r;
}

int rt_sandbox_stop(struct runtime *rt, const char *id, uk_error *err)
{
	rt_id sid;
	bool found;
	int r = each_container(rt, id, false, sid, &found, err);
	if (r < 0 || !found)
		return r; /* the CRI: stopping a missing sandbox succeeds */
	struct sandbox *s;
	rt_lock(rt);
	if (rt_find_sandbox(rt, sid, &s, NULL) == 0)
		r = sandbox_release(rt, s, err);
	rt_unlock(rt);
	return r;
}

int rt_sandbox_remove(struct runtime *rt, const char *id, uk_error *err)
{
	rt_id sid;
	bool found;
	/* The containers first: a crash in between leaves the pod with fewer of them. */
	int r = each_container(rt, id, true, sid, &found, err);
	if (r < 0 || !found)
		return r;
	rt_lock(rt);
	for (size_t i = 0; i < rt->n_sb; i++) {
		if (strcmp(rt->sb[i]->id, sid) != 0)
			continue;
		/* Then the network (as a stop does), and the record last. */
		if ((r = sandbox_release(rt, rt->sb[i], err)) < 0 || (r = record_delete(rt->sandbox_dir, sid, err)) < 0)
			break;
		sandbox_free(rt->sb[i]);
		rt->sb[i] = rt->sb[--rt->n_sb];
		log_info("pod=%s msg=\"sandbox removed\"", sid);
		break;
	}
	rt_unlock(rt);
	return r;
}
