#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "../common/log.h"
#include "../common/util.h"
#include "../qmp/qmp.h"
#include "../store/overlay.h"
#include "runtime.h"

#define SYNC_TIMEOUT_MS 120000 /* QEMU under TCG can take a while to come up */
#define KILL_WAIT_MS 10000
#define EXIT_JSON_MAX (64 * 1024)

void rt_lock(struct runtime *rt)
{
	pthread_mutex_lock(&rt->lock);
}

void rt_unlock(struct runtime *rt)
{
	pthread_mutex_unlock(&rt->lock);
}

int rt_vm_dir(struct runtime *rt, const char *id, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s", rt->vm_dir, id);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int rt_ctr_dir(struct runtime *rt, const char *id, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s" RT_CTR_DIR_SUFFIX, rt->container_dir, id);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int grow(void **arr, size_t *cap, size_t n)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 64;
	void *a = realloc(*arr, ncap * sizeof(void *));
	if (!a)
		return -ENOMEM;
	*arr = a;
	*cap = ncap;
	return 0;
}

/* ---- lookups ---- */

static int find_prefix(void **items, size_t n, size_t id_off, const char *id, const char *what, void **ret,
		       uk_error *err)
{
	size_t len = id ? strlen(id) : 0;
	if (len == 0)
		return uk_err(err, EINVAL, "%s id is empty", what);
	void *found = NULL;
	for (size_t i = 0; i < n; i++) {
		const char *cid = (const char *)items[i] + id_off;
		if (strncmp(cid, id, len) != 0)
			continue;
		if (len == UK_FULL_ID_LEN) {
			*ret = items[i];
			return 0;
		}
		if (found)
			return uk_err(err, EINVAL, "%s id prefix \"%s\" is ambiguous", what, id);
		found = items[i];
	}
	if (!found)
		return uk_err(err, ENOENT, "%s \"%s\" not found", what, id);
	*ret = found;
	return 0;
}

int rt_find_sandbox(struct runtime *rt, const char *id, struct sandbox **ret, uk_error *err)
{
	return find_prefix((void **)rt->sb, rt->n_sb, offsetof(struct sandbox, id), id, "pod sandbox",
			   (void **)ret, err);
}

int rt_find_container(struct runtime *rt, const char *id, struct container **ret, uk_error *err)
{
	return find_prefix((void **)rt->ct, rt->n_ct, offsetof(struct container, id), id, "container",
			   (void **)ret, err);
}

/* ---- persistence ---- */

static void save_sandbox(struct runtime *rt, struct sandbox *s)
{
	_cleanup_json_ json_object *o = sandbox_to_json(s);
	uk_error err = { 0 };
	if (record_save(rt->sandbox_dir, s->id, o, &err) < 0)
		log_error("pod=%s msg=\"cannot save the sandbox record\" error=\"%s\"", s->id, err.msg);
}

static void save_container(struct runtime *rt, struct container *c)
{
	_cleanup_json_ json_object *o = container_to_json(c);
	uk_error err = { 0 };
	if (record_save(rt->container_dir, c->id, o, &err) < 0)
		log_error("pod=%s ctr=%s msg=\"cannot save the container record\" error=\"%s\"", c->sandbox_id, c->id,
			  err.msg);
}

static int load_sandbox(json_object *o, const char *id, void *ud)
{
	struct runtime *rt = ud;
	struct sandbox *s;
	if (sandbox_from_json(o, &s, NULL) < 0 || strcmp(s->id, id) != 0 ||
	    grow((void **)&rt->sb, &rt->cap_sb, rt->n_sb) < 0) {
		if (s)
			sandbox_free(s);
		return -EINVAL;
	}
	rt->sb[rt->n_sb++] = s;
	return 0;
}

static int load_container(json_object *o, const char *id, void *ud)
{
	struct runtime *rt = ud;
	struct container *c = NULL;
	if (container_from_json(o, &c, NULL) < 0 || strcmp(c->id, id) != 0 ||
	    grow((void **)&rt->ct, &rt->cap_ct, rt->n_ct) < 0) {
		container_free(c);
		return -EINVAL;
	}
	rt->ct[rt->n_ct++] = c;
	return 0;
}

static void report_bad(const char *path, const char *why, void *ud)
{
	(void)ud;
	log_error("msg=\"corrupt state file quarantined\" path=%s error=\"%s\"", path, why);
}

static int drop_stray_address(uint32_t addr, const char *sandbox_id, void *ud)
{
	struct runtime *rt = ud;
	struct sandbox *s;
	char ip[NET_IP_MAX];
	if (rt_find_sandbox(rt, sandbox_id, &s, NULL) == 0 && strlen(sandbox_id) == UK_FULL_ID_LEN && s->ip &&
	    s->state == SANDBOX_READY)
		return 0;
	net_ip_str(addr, ip);
	/* A crash between allocating and saving the record, or a stop that did not finish. */
	struct sandbox ghost = { 0 };
	snprintf(ghost.id, sizeof(ghost.id), "%s", sandbox_id);
	if (rt_find_sandbox(rt, sandbox_id, &s, NULL) == 0 && strlen(sandbox_id) == UK_FULL_ID_LEN) {
		rt_net_sandbox_down(rt->net, s, NULL);
	} else {
		rt_net_sandbox_down(rt->net, &ghost, NULL);
	}
	log_warn("pod=%s msg=\"released an address no live pod holds\" ip=%s", sandbox_id, ip);
	return 0;
}

/* Addresses and DHCP entries must match the records: release what no ready pod owns,
 * and put back the hostPorts of those that are. */
static void reconcile_network(struct runtime *rt)
{
	uk_error err = { 0 };
	if (!rt->net->enabled)
		return;
	if (ipam_foreach(rt->net->ipam, drop_stray_address, rt, &err) < 0)
		log_error("msg=\"cannot reconcile addresses\" error=\"%s\"", err.msg);
	if (rt_net_restore(rt->net, rt->sb, rt->n_sb, &err) < 0)
		log_error("msg=\"cannot restore hostPorts\" error=\"%s\"", err.msg);
}

/* A container directory without a record is left by a crash in the middle of a create or a
 * remove (or its record was quarantined): nothing can reach it, so it goes. */
static void remove_stray_ctr_dirs(struct runtime *rt)
{
	_cleanup_closedir_ DIR *d = opendir(rt->container_dir);
	struct dirent *de;
	if (!d)
		return;
	while ((de = readdir(d))) {
		const char *name = de->d_name;
		struct container *c;
		char id[UK_FULL_ID_LEN + 1], path[PATH_MAX];
		if (strlen(name) != UK_FULL_ID_LEN + strlen(RT_CTR_DIR_SUFFIX) ||
		    strspn(name, "0123456789abcdef") != UK_FULL_ID_LEN ||
		    strcmp(name + UK_FULL_ID_LEN, RT_CTR_DIR_SUFFIX) != 0)
			continue;
		memcpy(id, name, UK_FULL_ID_LEN);
		id[UK_FULL_ID_LEN] = '\0';
		if (rt_find_container(rt, id, &c, NULL) == 0 || rt_ctr_dir(rt, id, path, sizeof(path)) < 0)
			continue;
		uk_error e = { 0 };
		if (uk_rm_rf(path, &e) < 0)
			log_error("msg=\"cannot remove a stray container directory\" path=%s error=\"%s\"", path, e.msg);
		else
			log_warn("ctr=%s msg=\"removed a container directory that has no record\" path=%s", id, path);
	}
}

int runtime_open(const struct rt_config *cfg, struct runtime **ret, uk_error *err)
{
	struct runtime *rt = calloc(1, sizeof(*rt));
	int r;
	if (!rt)
		return uk_err(err, ENOMEM, "out of memory");
	rt->cfg = *cfg;
	pthread_mutex_init(&rt->lock, NULL);
	if (asprintf(&rt->sandbox_dir, "%s/sandboxes", cfg->state_dir) < 0 ||
	    asprintf(&rt->container_dir, "%s/containers", cfg->state_dir) < 0 ||
	    asprintf(&rt->image_dir, "%s/images", cfg->state_dir) < 0 ||
	    asprintf(&rt->vm_dir, "%s/vms", cfg->run_dir) < 0) {
		runtime_free(rt);
		return uk_err(err, ENOMEM, "out of memory");
	}
	if ((r = uk_mkdir_p(rt->sandbox_dir, 0700, err)) < 0 || (r = uk_mkdir_p(rt->container_dir, 0700, err)) < 0 ||
	    (r = uk_mkdir_p(rt->vm_dir, 0700, err)) < 0 ||
	    (r = image_store_open(rt->image_dir, &rt->images, err)) < 0 ||
	    (r = records_load(rt->sandbox_dir, load_sandbox, report_bad, rt, err)) < 0 ||
	    (r = records_load(rt->container_dir, load_container, report_bad, rt, err)) < 0) {
		runtime_free(rt);
		return r;
	}
	/* A container whose sandbox is gone cannot be reached through the CRI: drop it. */
	for (size_t i = 0; i < rt->n_ct;) {
		struct sandbox *s;
		if (rt_find_sandbox(rt, rt->ct[i]->sandbox_id, &s, NULL) < 0) {
			log_warn("ctr=%s msg=\"dropping a container whose sandbox is gone\"", rt->ct[i]->id);
			record_delete(rt->container_dir, rt->ct[i]->id, NULL);
			container_free(rt->ct[i]);
			rt->ct[i] = rt->ct[--rt->n_ct];
		} else {
			i++;
		}
	}
	remove_stray_ctr_dirs(rt);
	uk_error cgerr = { 0 };
	if (cg_detect(&rt->cg, cfg->cgroup_root, &cgerr) < 0 || rt->cg.version == CG_NONE) {
		rt->cg.version = CG_NONE;
		if (!rt->cg.why[0])
			snprintf(rt->cg.why, sizeof(rt->cg.why), "%.200s", cgerr.msg);
		log_warn("msg=\"cgroups unavailable: VMs run without limits\" reason=\"%s\"", rt->cg.why);
	}
	if ((r = rt_net_open(&cfg->net, &rt->net, err)) < 0) {
		runtime_free(rt);
		return r;
	}
	reconcile_network(rt);
	rt_lock(rt);
	rt_refresh(rt);
	rt_unlock(rt);
	log_info("msg=\"state loaded\" sandboxes=%zu containers=%zu", rt->n_sb, rt->n_ct);
	*ret = rt;
	return 0;
}

void runtime_free(struct runtime *rt)
{
	if (!rt)
		return;
	for (size_t i = 0; i < rt->n_sb; i++)
		sandbox_free(rt->sb[i]);
	for (size_t i = 0; i < rt->n_ct; i++)
		container_free(rt->ct[i]);
	free(rt->sb);
	free(rt->ct);
	image_store_free(rt->images);
	rt_net_free(rt->net);
	free(rt->sandbox_dir);
	free(rt->container_dir);
	free(rt->image_dir);
	free(rt->vm_dir);
	pthread_mutex_destroy(&rt->lock);
	free(rt);
}

/* ---- VM state ---- */

static bool wrapper_alive(const struct container *c)
{
	return uk_proc_alive(c->wrapper_pid, c->wrapper_start);
}

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = v ? strdup(v) : NULL;
}

/* exit.json -> EXITED. Returns true if the container changed. */
static bool apply_exit(struct runtime *rt, struct container *c)
{
	char path[PATH_MAX];
	_cleanup_free_ char *text = NULL;
	if (rt_vm_dir(rt, c->id, path, sizeof(path) - 16) < 0)
		return false;
	strcat(path, "/exit.json");
	if (uk_read_file(path, EXIT_JSON_MAX, &text, NULL, NULL) < 0)
		return false;
	_cleanup_json_ json_object *o = json_tokener_parse(text);
	json_object *v;
	if (!o)
		return false;
	c->state = CTR_EXITED;
	c->exit_code = json_object_object_get_ex(o, "exit_code", &v) ? json_object_get_int(v) : 255;
	set_str(&c->reason, json_object_object_get_ex(o, "reason", &v) ? json_object_get_string(v) : "Unknown");
	set_str(&c->message, json_object_object_get_ex(o, "message", &v) ? json_object_get_string(v) : NULL);
	c->finished_ns = json_object_object_get_ex(o, "finished_ns", &v) ? json_object_get_int64(v)
									   : (int64_t)uk_now_realtime_ns();
	/* The host's OOM killer shows up as a kill signal; the cgroup tells it was the OOM killer. */
	struct cg_stats cs;
	if (c->cgroup && rt->cg.version != CG_NONE && cg_read_stats(&rt->cg, c->cgroup, &cs, NULL) == 0 &&
	    cs.oom_kills > 0) {
		set_str(&c->reason, "OOMKilled");
		if (c->exit_code == 0)
			c->exit_code = 137;
	}
	return true;
}

static void refresh_one(struct runtime *rt, struct container *c)
{
	if (c->state != CTR_RUNNING || c->busy)
		return;
	if (apply_exit(rt, c)) {
		save_container(rt, c);
		return;
	}
	if (wrapper_alive(c))
		return;
	/* vmwrapper may have written exit.json just before it ended. */
	if (!apply_exit(rt, c)) {
		c->state = CTR_EXITED;
		c->exit_code = 255;
		set_str(&c->reason, "Unknown");
		set_str(&c->message, "the VM's supervisor ended without an exit record (killed, or the host rebooted)");
		c->finished_ns = (int64_t)uk_now_realtime_ns();
	}
	log_info("pod=%s ctr=%s msg=\"vm ended\" exit_code=%d reason=%s", c->sandbox_id, c->id, c->exit_code,
		 c->reason);
	save_container(rt, c);
}

void rt_refresh(struct runtime *rt)
{
	for (size_t i = 0; i < rt->n_ct; i++)
		refresh_one(rt, rt->ct[i]);
}

/* A vmwrapper whose VM has ended exits right after writing exit.json; wait for that,
 * so nothing of the container outlives its removal. */
static void reap_wrapper(struct container *c)
{
	if (!wrapper_alive(c))
		return;
	_cleanup_close_ int pidfd = uk_pidfd_open(c->wrapper_pid);
	if (!uk_pidfd_wait(pidfd, KILL_WAIT_MS) && wrapper_alive(c)) {
		kill(c->wrapper_pid, SIGKILL);
		uk_pidfd_wait(pidfd, KILL_WAIT_MS);
	}
}

/* ---- sandboxes ---- */

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
			if (mine[i].proto == mine[j].proto && mine[i].host_port == mine[j].host_port &&
			    (!mine[i].host_ip || !mine[j].host_ip || mine[i].host_ip == mine[j].host_ip))
				return uk_err(err, EINVAL, "config.port_mappings: host port %u is given twice", mine[i].host_port);
	for (size_t k = 0; k < rt->n_sb; k++) {
		const struct sandbox *o = rt->sb[k];
		if (o->state != SANDBOX_READY || rt_net_parse_ports(o->port_mappings, theirs, &n_theirs, NULL) < 0)
			continue;
		for (size_t i = 0; i < n_mine; i++)
			for (size_t j = 0; j < n_theirs; j++)
				if (mine[i].proto == theirs[j].proto && mine[i].host_port == theirs[j].host_port &&
				    (!mine[i].host_ip || !theirs[j].host_ip || mine[i].host_ip == theirs[j].host_ip))
					return uk_err(err, EADDRINUSE, "host port %s/%u is taken by pod sandbox %s (%s)",
						      mine[i].proto == IPPROTO_UDP ? "udp" : "tcp", mine[i].host_port, o->id,
						      o->reserved_name);
	}
	return 0;
}

int rt_sandbox_create(struct runtime *rt, struct sandbox *s, char *id_out, uk_error *err)
{
	_cleanup_json_ json_object *o = NULL;
	int r;
	if (asprintf(&s->reserved_name, "%s_%s_%s_%u", s->name, s->ns, s->uid, s->attempt) < 0) {
		sandbox_free(s);
		return uk_err(err, ENOMEM, "out of memory");
	}
	if ((r = uk_random_hex_id(s->id)) < 0) {
		sandbox_free(s);
		return uk_err_errno(err, -r, "random id");
	}
	s->created_ns = (int64_t)uk_now_realtime_ns();
	s->state = SANDBOX_READY;
	rt_lock(rt);
	for (size_t i = 0; i < rt->n_sb; i++)
		if (strcmp(rt->sb[i]->reserved_name, s->reserved_name) == 0) {
			r = uk_err(err, EEXIST, "pod sandbox name \"%s\" is reserved for %s", s->reserved_name, rt->sb[i]->id);
			goto fail;
		}
	if ((r = check_hostports(rt, s, err)) < 0)
		goto fail;
	if (grow((void **)&rt->sb, &rt->cap_sb, rt->n_sb) < 0) {
		r = uk_err(err, ENOMEM, "out of memory");
		goto fail;
	}
	if ((r = rt_net_sandbox_up(rt->net, s, err)) < 0)
		goto fail;
	o = sandbox_to_json(s);
	if ((r = record_save(rt->sandbox_dir, s->id, o, err)) < 0) {
		rt_net_sandbox_down(rt->net, s, NULL);
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

static void containers_of(struct runtime *rt, const char *sandbox_id, char ids[][UK_FULL_ID_LEN + 1], size_t *n,
			  size_t max)
{
	*n = 0;
	for (size_t i = 0; i < rt->n_ct && *n < max; i++)
		if (strcmp(rt->ct[i]->sandbox_id, sandbox_id) == 0)
			memcpy(ids[(*n)++], rt->ct[i]->id, UK_FULL_ID_LEN + 1);
}

#define MAX_CTR_PER_POD 256

int rt_sandbox_stop(struct runtime *rt, const char *id, uk_error *err)
{
	struct sandbox *s;
	char ids[MAX_CTR_PER_POD][UK_FULL_ID_LEN + 1], sid[UK_FULL_ID_LEN + 1];
	size_t n;
	rt_lock(rt);
	if (rt_find_sandbox(rt, id, &s, NULL) < 0) {
		rt_unlock(rt);
		return 0; /* the CRI: stopping a missing sandbox succeeds */
	}
	memcpy(sid, s->id, sizeof(sid));
	containers_of(rt, sid, ids, &n, MAX_CTR_PER_POD);
	rt_unlock(rt);
	for (size_t i = 0; i < n; i++) {
		int r = rt_container_stop(rt, ids[i], 0, err);
		if (r < 0 && r != -ENOENT)
			return uk_err_ctx(err, "stop container %s", ids[i]);
	}
	rt_lock(rt);
	int r = 0;
	if (rt_find_sandbox(rt, sid, &s, NULL) == 0) {
		/* The CRI: network resources are reclaimed at StopPodSandbox. */
		if ((r = rt_net_sandbox_down(rt->net, s, err)) < 0)
			uk_err_ctx(err, "release the network of pod %s", sid);
		else if (s->state != SANDBOX_NOTREADY) {
			s->state = SANDBOX_NOTREADY;
			log_info("pod=%s msg=\"sandbox stopped\"", sid);
		}
		save_sandbox(rt, s);
	}
	rt_unlock(rt);
	return r;
}

int rt_sandbox_remove(struct runtime *rt, const char *id, uk_error *err)
{
	struct sandbox *s;
	char ids[MAX_CTR_PER_POD][UK_FULL_ID_LEN + 1], sid[UK_FULL_ID_LEN + 1];
	size_t n;
	int r;
	rt_lock(rt);
	if (rt_find_sandbox(rt, id, &s, NULL) < 0) {
		rt_unlock(rt);
		return 0;
	}
	memcpy(sid, s->id, sizeof(sid));
	containers_of(rt, sid, ids, &n, MAX_CTR_PER_POD);
	rt_unlock(rt);
	for (size_t i = 0; i < n; i++)
		if ((r = rt_container_remove(rt, ids[i], err)) < 0)
			return uk_err_ctx(err, "remove container %s", ids[i]);
	rt_lock(rt);
	for (size_t i = 0; i < rt->n_sb; i++)
		if (strcmp(rt->sb[i]->id, sid) == 0) {
			if ((r = rt_net_sandbox_down(rt->net, rt->sb[i], err)) < 0 ||
			    (r = record_delete(rt->sandbox_dir, sid, err)) < 0) {
				rt_unlock(rt);
				return r;
			}
			sandbox_free(rt->sb[i]);
			rt->sb[i] = rt->sb[--rt->n_sb];
			log_info("pod=%s msg=\"sandbox removed\"", sid);
			break;
		}
	rt_unlock(rt);
	return 0;
}

/* ---- containers ---- */

static struct sandbox *sandbox_by_id(struct runtime *rt, const char *id)
{
	for (size_t i = 0; i < rt->n_sb; i++)
		if (strcmp(rt->sb[i]->id, id) == 0)
			return rt->sb[i];
	return NULL;
}

static struct container *running_in(struct runtime *rt, const char *sandbox_id, const char *except)
{
	for (size_t i = 0; i < rt->n_ct; i++) {
		struct container *c = rt->ct[i];
		if (strcmp(c->sandbox_id, sandbox_id) == 0 && c->state == CTR_RUNNING && (!except || strcmp(c->id, except)))
			return c;
	}
	return NULL;
}

/* Whether c can be created in its pod now. Lock held. */
static int check_create(struct runtime *rt, struct container *c, uk_error *err)
{
	struct sandbox *s = sandbox_by_id(rt, c->sandbox_id);
	struct container *other;
	if (!s)
		return uk_err(err, ENOENT, "pod sandbox \"%s\" not found", c->sandbox_id);
	if (s->state != SANDBOX_READY)
		return uk_err(err, EBUSY, "pod sandbox %s is not ready (stopped)", s->id);
	if ((other = running_in(rt, s->id, NULL)))
		return uk_err(err, EBUSY,
			      "pod sandbox %s already runs container %s (%s): a pod is one VM, so a second container "
			      "can only be created once the first has exited",
			      s->id, other->id, other->name);
	if (!c->reserved_name &&
	    asprintf(&c->reserved_name, "%s_%s_%s_%s_%u", c->name, s->name, s->ns, s->uid, c->attempt) < 0) {
		c->reserved_name = NULL;
		return uk_err(err, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < rt->n_ct; i++)
		if (strcmp(rt->ct[i]->reserved_name, c->reserved_name) == 0)
			return uk_err(err, EEXIST, "container name \"%s\" is reserved for %s", c->reserved_name,
				      rt->ct[i]->id);
	return 0;
}

/* *path (an image blob) becomes a hard link dir/name: constant time, and the data stays
 * while the container does, whatever happens to the image. A store on another file system
 * cannot be linked to; the container then uses the blob itself. */
static int link_image_file(const struct container *c, const char *dir, const char *name, char **path,
			   uk_error *err)
{
	_cleanup_free_ char *dst = NULL;
	if (asprintf(&dst, "%s/%s", dir, name) < 0)
		return uk_err(err, ENOMEM, "out of memory");
	if (link(*path, dst) < 0) {
		if (errno == EXDEV)
			return 0;
		if (errno == ENOENT)
			return uk_err(err, ENOENT, "image %s (%s) was removed while the container was being created",
				      c->image, c->image_ref);
		return uk_err_errno(err, errno, "link %s to %s", *path, dst);
	}
	free(*path);
	*path = TAKE_PTR(dst);
	return 0;
}

static int fsync_path(const char *path, int flags, uk_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | flags);
	if (fd < 0 || fsync(fd) < 0)
		return uk_err_errno(err, errno, "sync %s", path);
	return 0;
}

/* The container's directory: its boot files, linked, and its disk, a qcow2 overlay over the
 * linked base that QEMU writes (no snapshot=on). Nothing is left on failure. */
static int make_ctr_dir(struct runtime *rt, struct container *c, uk_error *err)
{
	char dir[PATH_MAX];
	int r;
	if (rt_ctr_dir(rt, c->id, dir, sizeof(dir) - 32) < 0)
		return uk_err(err, ENAMETOOLONG, "state directory path too long");
	if (mkdir(dir, 0700) < 0)
		return uk_err_errno(err, errno, "create %s", dir);
	if ((c->kernel && (r = link_image_file(c, dir, RT_CTR_KERNEL, &c->kernel, err)) < 0) ||
	    (c->initrd && (r = link_image_file(c, dir, RT_CTR_INITRD, &c->initrd, err)) < 0) ||
	    (c->disk && (r = link_image_file(c, dir, RT_CTR_DISK_BASE, &c->disk, err)) < 0))
		goto fail;
	if (c->disk) {
		_cleanup_free_ char *overlay = NULL, *fmt = strdup("qcow2");
		if (asprintf(&overlay, "%s/" RT_CTR_DISK, dir) < 0 || !fmt) {
			r = uk_err(err, ENOMEM, "out of memory");
			goto fail;
		}
		if ((r = overlay_create(c->disk, c->disk_format, overlay, err)) < 0 ||
		    (r = fsync_path(overlay, 0, err)) < 0)
			goto fail;
		free(c->disk);
		free(c->disk_format);
		c->disk = TAKE_PTR(overlay);
		c->disk_format = TAKE_PTR(fmt);
		c->disk_snapshot = false;
	}
	/* On disk before the record that points here (which syncs the parent directory). */
	if ((r = fsync_path(dir, O_DIRECTORY, err)) < 0)
		goto fail;
	return 0;
fail:
	uk_rm_rf(dir, NULL);
	return r;
}

int rt_container_create(struct runtime *rt, struct container *c, char *id_out, uk_error *err)
{
	_cleanup_json_ json_object *o = NULL;
	char dir[PATH_MAX] = "";
	int r;
	if ((r = uk_random_hex_id(c->id)) < 0) {
		container_free(c);
		return uk_err_errno(err, -r, "random id");
	}
	c->created_ns = (int64_t)uk_now_realtime_ns();
	c->state = CTR_CREATED;
	/* Check first, so that a refused create costs nothing; the files are made without the
	 * lock (qemu-img runs), and everything is checked again before the record is saved. */
	rt_lock(rt);
	rt_refresh(rt);
	r = check_create(rt, c, err);
	rt_unlock(rt);
	if (r < 0)
		goto fail_unlocked;
	if ((r = make_ctr_dir(rt, c, err)) < 0) {
		uk_err_ctx(err, "container %s", c->id);
		goto fail_unlocked;
	}
	rt_ctr_dir(rt, c->id, dir, sizeof(dir));
	rt_lock(rt);
	rt_refresh(rt);
	if ((r = check_create(rt, c, err)) < 0)
		goto fail;
	if (grow((void **)&rt->ct, &rt->cap_ct, rt->n_ct) < 0) {
		r = uk_err(err, ENOMEM, "out of memory");
		goto fail;
	}
	o = container_to_json(c);
	if ((r = record_save(rt->container_dir, c->id, o, err)) < 0)
		goto fail;
	rt->ct[rt->n_ct++] = c;
	memcpy(id_out, c->id, UK_FULL_ID_LEN + 1);
	rt_unlock(rt);
	log_info("pod=%s ctr=%s msg=\"container created\" name=%s image=%s", c->sandbox_id, c->id, c->reserved_name,
		 c->image_ref);
	return 0;
fail:
	rt_unlock(rt);
fail_unlocked:
	if (*dir)
		uk_rm_rf(dir, NULL);
	container_free(c);
	return r;
}

/* Take a container for a slow operation: found, not busy, referenced. Lock held on entry. */
static int claim(struct runtime *rt, const char *id, struct container **ret, uk_error *err)
{
	struct container *c;
	int r = rt_find_container(rt, id, &c, err);
	if (r < 0)
		return r;
	if (c->busy)
		return uk_err(err, EAGAIN, "container %s has another operation under way; retry", c->id);
	c->busy = true;
	c->refs++;
	*ret = c;
	return 0;
}

/* Lock, bring the records up to date and claim the container; the lock stays held on
 * success and is dropped on failure. */
static int begin_op(struct runtime *rt, const char *id, struct container **ret, uk_error *err)
{
	rt_lock(rt);
	rt_refresh(rt);
	int r = claim(rt, id, ret, err);
	if (r < 0)
		rt_unlock(rt);
	return r;
}

static void release(struct container *c)
{
	c->busy = false;
	c->refs--;
	if (c->removed && c->refs == 0)
		container_free(c);
}

/* Where vmwrapper finds the pod's tap and vhost-net fds. */
#define SPAWN_TAP_FD 4
#define SPAWN_VHOST_FD 5

static json_object *vm_spec_json(struct runtime *rt, struct container *c, const char *vmdir, int tap_fd,
				 int vhost_fd, const char *mac)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "version", json_object_new_int(1));
	json_object_object_add(o, "id", json_object_new_string(c->id));
	container_vm_fields_to_json(c, o);
	uk_json_add_str(o, "console_log", c->log_path);
	json_object_object_add(o, "state_dir", json_object_new_string(vmdir));
	if (tap_fd >= 0) {
		json_object *nets = json_object_new_array(), *nic = json_object_new_object();
		json_object_object_add(nic, "tap_fd", json_object_new_int(SPAWN_TAP_FD));
		if (vhost_fd >= 0)
			json_object_object_add(nic, "vhost_fd", json_object_new_int(SPAWN_VHOST_FD));
		json_object_object_add(nic, "mac", json_object_new_string(mac));
		json_object_array_add(nets, nic);
		json_object_object_add(o, "net", nets);
	}
	uk_json_add_str(o, "qemu", rt->cfg.qemu);
	return o;
}

void rt_cgroup_limits(const struct runtime *rt, const struct container *c, struct cg_limits *l)
{
	int64_t guest = c->memory_limit > 0 ? c->memory_limit : (int64_t)c->memory_mib << 20;
	*l = (struct cg_limits){
		.memory_bytes = guest + ((int64_t)rt->cfg.memory_overhead_mib << 20),
		.cpu_quota_us = c->cpu_quota,
		.cpu_period_us = c->cpu_period,
		.cpu_shares = c->cpu_shares > 0 ? (uint64_t)c->cpu_shares : 0,
	};
}

/* The VM's cgroup, made before it starts. Failing is not fatal: the pod runs without
 * limits and its status says why. Lock held. */
static void make_cgroup(struct runtime *rt, struct container *c, const struct sandbox *sb,
			char files[][PATH_MAX], size_t *n_files)
{
	char path[CG_PATH_MAX];
	struct cg_limits l;
	uk_error e = { 0 };
	*n_files = 0;
	free(c->cgroup_error);
	c->cgroup_error = NULL;
	if (rt->cg.version == CG_NONE) {
		c->cgroup_error = strdup(rt->cg.why);
		return;
	}
	rt_cgroup_limits(rt, c, &l);
	if (cg_path_for(sb ? sb->cgroup_parent : NULL, c->id, path, sizeof(path), &e) < 0 ||
	    cg_create(&rt->cg, path, &l, &e) < 0 || cg_procs_files(&rt->cg, path, files, CG_PROCS_MAX, n_files, &e) < 0) {
		log_warn("pod=%s ctr=%s msg=\"the VM runs without a cgroup\" error=\"%s\"", c->sandbox_id, c->id, e.msg);
		c->cgroup_error = strdup(e.msg);
		*n_files = 0;
		return;
	}
	free(c->cgroup);
	c->cgroup = strdup(path);
}

/* Start vmwrapper detached (double fork, so it is never our child) and read its sync line. */
static int spawn_vmwrapper(struct runtime *rt, const char *vmdir, int tap_fd, int vhost_fd, char cg_files[][PATH_MAX],
			   size_t n_cg_files, json_object **sync_ret, uk_error *err)
{
	char spec[PATH_MAX + 32], logp[PATH_MAX + 32];
	snprintf(spec, sizeof(spec), "%s/spec.json", vmdir);
	snprintf(logp, sizeof(logp), "%s/vmwrapper.log", vmdir);
	_cleanup_close_ int logfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	_cleanup_close_ int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	int p[2];
	if (logfd < 0 || nullfd < 0)
		return uk_err_errno(err, errno, "open %s", logp);
	if (pipe2(p, O_CLOEXEC) < 0)
		return uk_err_errno(err, errno, "pipe");
	_cleanup_close_ int rd = p[0];
	_cleanup_close_ int wr = p[1];
	char *argv[] = { (char *)rt->cfg.vmwrapper, "--spec", spec, "--sync-fd", "3", NULL };
	char *envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };

	pid_t pid = fork();
	if (pid < 0)
		return uk_err_errno(err, errno, "fork");
	if (pid == 0) {
		/* Only async-signal-safe calls: this process has other threads' locks. */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (fork() != 0)
			_exit(0);
		/* Join the VM's cgroup before exec, so QEMU is born inside it. */
		if (n_cg_files && cg_enter_files_self(cg_files, n_cg_files) < 0)
			_exit(126);
		/* Lift the fds above the targets first, so no dup2 clobbers a source. */
		int hi_tap = tap_fd >= 0 ? fcntl(tap_fd, F_DUPFD_CLOEXEC, 64) : -1;
		int hi_vhost = vhost_fd >= 0 ? fcntl(vhost_fd, F_DUPFD_CLOEXEC, 64) : -1;
		int hi_wr = fcntl(wr, F_DUPFD_CLOEXEC, 64);
		if (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0 || hi_wr < 0 || dup2(hi_wr, 3) < 0)
			_exit(127);
		if (hi_tap >= 0 && dup2(hi_tap, SPAWN_TAP_FD) < 0)
			_exit(127);
		if (hi_vhost >= 0 && dup2(hi_vhost, SPAWN_VHOST_FD) < 0)
			_exit(127);
		close_range(hi_vhost >= 0 ? SPAWN_VHOST_FD + 1 : hi_tap >= 0 ? SPAWN_TAP_FD + 1 : 4, ~0U, 0);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	waitpid(pid, NULL, 0);
	wr = safe_close(wr);

	char buf[8192];
	size_t len = 0;
	uint64_t deadline = uk_now_mono_ns() + (uint64_t)SYNC_TIMEOUT_MS * 1000000ull;
	for (;;) {
		uint64_t now = uk_now_mono_ns();
		if (now >= deadline)
			return uk_err(err, ETIMEDOUT, "vmwrapper did not report within %d s", SYNC_TIMEOUT_MS / 1000);
		struct pollfd pf = { .fd = rd, .events = POLLIN };
		int pr = poll(&pf, 1, (int)((deadline - now) / 1000000ull) + 1);
		if (pr < 0 && errno != EINTR)
			return uk_err_errno(err, errno, "poll");
		if (pr <= 0)
			continue;
		ssize_t n = read(rd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || (len += (size_t)n) >= sizeof(buf) - 1 || memchr(buf, '\n', len))
			break;
	}
	buf[len] = '\0';
	json_object *o = json_tokener_parse(buf);
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return uk_err(err, EIO, "vmwrapper failed before reporting (see %s)", logp);
	}
	*sync_ret = o;
	return 0;
}

int rt_container_start(struct runtime *rt, const char *id, uk_error *err)
{
	_cleanup_json_ json_object *spec = NULL, *sync = NULL;
	struct container *c;
	char vmdir[PATH_MAX];
	int r;
	if ((r = begin_op(rt, id, &c, err)) < 0)
		return r;
	struct container *other;
	if (c->state != CTR_CREATED) {
		static const char *names[] = { "created", "running", "exited", "unknown" };
		r = uk_err(err, EBUSY, "container %s is %s; only a created container can be started", c->id,
			   names[c->state]);
	} else if ((other = running_in(rt, c->sandbox_id, c->id))) {
		r = uk_err(err, EBUSY, "pod sandbox %s already runs container %s: one running VM per pod", c->sandbox_id,
			   other->id);
	} else if (rt_vm_dir(rt, c->id, vmdir, sizeof(vmdir) - 32) < 0) {
		r = uk_err(err, ENAMETOOLONG, "run directory path too long");
	}
	_cleanup_close_ int tap_fd = -1, vhost_fd = -1;
	struct sandbox *sb = r >= 0 ? sandbox_by_id(rt, c->sandbox_id) : NULL;
	if (r >= 0 && sb && sb->ip && rt->net->enabled) {
		tap_fd = rt_net_tap(rt->net, sb, err);
		if (tap_fd < 0)
			r = uk_err_ctx(err, "create the pod's tap");
		else
			vhost_fd = open("/dev/vhost-net", O_RDWR | O_CLOEXEC);
	}
	char cg_files[CG_PROCS_MAX][PATH_MAX];
	size_t n_cg_files = 0;
	if (r >= 0) {
		spec = vm_spec_json(rt, c, vmdir, tap_fd, vhost_fd, sb ? sb->mac : NULL);
		make_cgroup(rt, c, sb, cg_files, &n_cg_files);
	}
	rt_unlock(rt);
	if (r < 0)
		goto out;

	uk_rm_rf(vmdir, NULL);
	char specpath[PATH_MAX + 16];
	snprintf(specpath, sizeof(specpath), "%s/spec.json", vmdir);
	const char *text = json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PRETTY);
	if ((r = uk_mkdir_p(vmdir, 0700, err)) < 0 ||
	    (r = uk_write_file_atomic(specpath, text, strlen(text), 0600, err)) < 0 ||
	    (r = spawn_vmwrapper(rt, vmdir, tap_fd, vhost_fd, cg_files, n_cg_files, &sync, err)) < 0) {
		rt_lock(rt);
		c->state = CTR_EXITED;
		c->exit_code = 128;
		set_str(&c->reason, "Error");
		set_str(&c->message, err->msg);
		c->finished_ns = (int64_t)uk_now_realtime_ns();
		save_container(rt, c);
		goto out_locked;
	}
	json_object *v;
	bool ok = json_object_object_get_ex(sync, "ok", &v) && json_object_get_boolean(v);
	rt_lock(rt);
	c->started_ns = (int64_t)uk_now_realtime_ns();
	c->wrapper_pid = json_object_object_get_ex(sync, "pid", &v) ? json_object_get_int(v) : 0;
	uk_proc_starttime(c->wrapper_pid, &c->wrapper_start);
	if (ok) {
		c->state = CTR_RUNNING;
		log_info("pod=%s ctr=%s msg=\"container started\" vmwrapper_pid=%d", c->sandbox_id, c->id, c->wrapper_pid);
	} else {
		const char *e = json_object_object_get_ex(sync, "error", &v) ? json_object_get_string(v) : "unknown";
		r = uk_err(err, EIO, "starting the VM failed: %s", e);
		c->state = CTR_EXITED;
		c->exit_code = 128;
		set_str(&c->reason, "Error");
		set_str(&c->message, e);
		c->finished_ns = (int64_t)uk_now_realtime_ns();
		/* If QEMU did run, exit.json has the precise story. */
		apply_exit(rt, c);
		rt_unlock(rt);
		reap_wrapper(c);
		rt_lock(rt);
		if (!c->reason)
			set_str(&c->reason, "Error");
	}
	save_container(rt, c);
out_locked:
	release(c);
	rt_unlock(rt);
	return r;
out:
	rt_lock(rt);
	release(c);
	rt_unlock(rt);
	return r;
}


static int qmp_command(const char *vmdir, const char *cmd, uk_error *err)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/qmp.sock", vmdir);
	int fd = uk_unix_connect(path, err);
	if (fd < 0)
		return fd;
	_cleanup_qmp_ qmp *q = NULL;
	int r = qmp_new(fd, &q);
	if (r < 0)
		return uk_err(err, -r, "qmp");
	return qmp_execute(q, cmd, NULL, 5000, NULL, err);
}

int rt_container_stop(struct runtime *rt, const char *id, int64_t timeout_s, uk_error *err)
{
	struct container *c;
	char vmdir[PATH_MAX];
	int r;
	if ((r = begin_op(rt, id, &c, err)) < 0)
		return r;
	if (c->state != CTR_RUNNING) {
		if (c->state == CTR_CREATED) {
			/* Never started: it ends here, as containerd does. */
			c->state = CTR_EXITED;
			c->exit_code = 0;
			c->finished_ns = (int64_t)uk_now_realtime_ns();
			set_str(&c->reason, "Stopped");
			save_container(rt, c);
		}
		release(c);
		rt_unlock(rt);
		return 0;
	}
	rt_vm_dir(rt, c->id, vmdir, sizeof(vmdir) - 32);
	pid_t pid = c->wrapper_pid;
	bool alive = wrapper_alive(c);
	rt_unlock(rt);

	_cleanup_close_ int pidfd = alive ? uk_pidfd_open(pid) : -1;
	uk_error qerr = { 0 };
	bool gone = !alive;
	if (!gone && timeout_s > 0) {
		/* ACPI power button first; a guest that handles it exits on its own. */
		if (qmp_command(vmdir, "system_powerdown", &qerr) < 0)
			log_warn("ctr=%s msg=\"system_powerdown failed\" error=\"%s\"", c->id, qerr.msg);
		int64_t ms = timeout_s > INT_MAX / 1000 ? INT_MAX : timeout_s * 1000;
		gone = uk_pidfd_wait(pidfd, (int)ms);
	}
	if (!gone) {
		/* vmwrapper turns SIGTERM into QMP quit, and a second one into SIGKILL. */
		kill(pid, SIGTERM);
		gone = uk_pidfd_wait(pidfd, KILL_WAIT_MS);
		if (!gone) {
			kill(pid, SIGTERM);
			gone = uk_pidfd_wait(pidfd, KILL_WAIT_MS);
		}
		if (!gone) {
			kill(pid, SIGKILL);
			gone = uk_pidfd_wait(pidfd, KILL_WAIT_MS);
		}
	}
	rt_lock(rt);
	c->busy = false;
	refresh_one(rt, c);
	if (c->state == CTR_RUNNING)
		r = uk_err(err, ETIMEDOUT, "container %s did not stop", c->id);
	else
		log_info("pod=%s ctr=%s msg=\"container stopped\" exit_code=%d", c->sandbox_id, c->id, c->exit_code);
	c->busy = true;
	release(c);
	rt_unlock(rt);
	return r;
}

int rt_container_remove(struct runtime *rt, const char *id, uk_error *err)
{
	struct container *c;
	char vmdir[PATH_MAX], ctrdir[PATH_MAX];
	char full[UK_FULL_ID_LEN + 1];
	int r;
	rt_lock(rt);
	if (rt_find_container(rt, id, &c, NULL) < 0) {
		rt_unlock(rt);
		return 0; /* the CRI: removing a missing container succeeds */
	}
	memcpy(full, c->id, sizeof(full));
	rt_unlock(rt);
	if ((r = rt_container_stop(rt, full, 0, err)) < 0)
		return r;
	rt_lock(rt);
	if (rt_find_container(rt, full, &c, NULL) < 0) {
		rt_unlock(rt);
		return 0;
	}
	if ((r = claim(rt, full, &c, err)) < 0) {
		rt_unlock(rt);
		return r;
	}
	rt_unlock(rt);
	reap_wrapper(c);
	uk_error cgerr = { 0 };
	if (c->cgroup && rt->cg.version != CG_NONE && cg_remove(&rt->cg, c->cgroup, &cgerr) < 0)
		log_warn("ctr=%s msg=\"cannot remove the cgroup\" error=\"%s\"", c->id, cgerr.msg);
	rt_lock(rt);
	if ((r = record_delete(rt->container_dir, c->id, err)) < 0) {
		release(c);
		rt_unlock(rt);
		return r;
	}
	rt_vm_dir(rt, c->id, vmdir, sizeof(vmdir));
	rt_ctr_dir(rt, c->id, ctrdir, sizeof(ctrdir));
	for (size_t i = 0; i < rt->n_ct; i++)
		if (rt->ct[i] == c) {
			rt->ct[i] = rt->ct[--rt->n_ct];
			break;
		}
	c->removed = true;
	log_info("pod=%s ctr=%s msg=\"container removed\"", c->sandbox_id, c->id);
	release(c);
	rt_unlock(rt);
	uk_rm_rf(vmdir, NULL);
	/* After the record: a crash in between leaves a stray directory, removed at start-up. */
	uk_error rmerr = { 0 };
	if (uk_rm_rf(ctrdir, &rmerr) < 0)
		log_error("ctr=%s msg=\"cannot remove the container directory\" error=\"%s\"", full, rmerr.msg);
	return 0;
}

int rt_container_reopen_log(struct runtime *rt, const char *id, uk_error *err)
{
	struct container *c;
	int r;
	rt_lock(rt);
	rt_refresh(rt);
	if ((r = rt_find_container(rt, id, &c, err)) < 0) {
		rt_unlock(rt);
		return r;
	}
	if (c->state != CTR_RUNNING) {
		rt_unlock(rt);
		return uk_err(err, EBUSY, "container %s is not running", c->id);
	}
	if (wrapper_alive(c) && kill(c->wrapper_pid, SIGHUP) < 0)
		r = uk_err_errno(err, errno, "signal vmwrapper");
	rt_unlock(rt);
	return r;
}

int rt_container_update_resources(struct runtime *rt, const char *id, int64_t memory_limit, int64_t cpu_quota,
				  int64_t cpu_period, int64_t cpu_shares, uk_error *err)
{
	struct container *c;
	int r;
	rt_lock(rt);
	rt_refresh(rt);
	if ((r = rt_find_container(rt, id, &c, err)) < 0) {
		rt_unlock(rt);
		return r;
	}
	if (c->state == CTR_EXITED) {
		rt_unlock(rt);
		return uk_err(err, EBUSY, "container %s has exited", c->id);
	}
	/* The CRI sends 0 for what it leaves unchanged. */
	if (memory_limit > 0)
		c->memory_limit = memory_limit;
	if (cpu_quota != 0)
		c->cpu_quota = cpu_quota;
	if (cpu_period > 0)
		c->cpu_period = cpu_period;
	if (cpu_shares > 0)
		c->cpu_shares = cpu_shares;
	if (c->state == CTR_RUNNING && c->cgroup && rt->cg.version != CG_NONE) {
		struct cg_limits l;
		rt_cgroup_limits(rt, c, &l);
		if ((r = cg_update(&rt->cg, c->cgroup, &l, err)) < 0) {
			rt_unlock(rt);
			return uk_err_ctx(err, "update the cgroup of container %s", c->id);
		}
	}
	save_container(rt, c);
	rt_unlock(rt);
	log_info("pod=%s ctr=%s msg=\"resources updated\" memory_limit=%lld cpu_quota=%lld cpu_period=%lld cpu_shares=%lld",
		 c->sandbox_id, c->id, (long long)memory_limit, (long long)cpu_quota, (long long)cpu_period,
		 (long long)cpu_shares);
	return 0;
}
