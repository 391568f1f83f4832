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

/* ENOSPC and EDQUOT from a write in the state directory: say so, the errno stays. */
static int state_full_ctx(struct runtime *rt, int r, uk_error *err)
{
	if (r == -ENOSPC || r == -EDQUOT)
		return uk_err_ctx(err, "the state directory %s is full", rt->cfg.state_dir);
	return r;
}

static int save_sandbox(struct runtime *rt, struct sandbox *s, uk_error *err)
{
	_cleanup_json_ json_object *o = sandbox_to_json(s);
	uk_error e = { 0 };
	int r = record_save(rt->sandbox_dir, s->id, o, &e);
	if (r < 0) {
		log_error("pod=%s msg=\"cannot save the sandbox record\" error=\"%s\"", s->id, e.msg);
		if (err)
			*err = e;
		return state_full_ctx(rt, r, err);
	}
	return 0;
}

static int save_container(struct runtime *rt, struct container *c, uk_error *err)
{
	_cleanup_json_ json_object *o = container_to_json(c);
	uk_error e = { 0 };
	int r = record_save(rt->container_dir, c->id, o, &e);
	if (r < 0) {
		log_error("pod=%s ctr=%s msg=\"cannot save the container record\" error=\"%s\"", c->sandbox_id, c->id,
			  e.msg);
		if (err)
			*err = e;
		return state_full_ctx(rt, r, err);
	}
	return 0;
}

static int load_sandbox(json_object *o, const char *id, void *ud)
{
	struct runtime *rt = ud;
	struct sandbox *s = NULL;
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

static void report_bad(const char *path, const char *why, const char *moved_to, void *ud)
{
	(void)ud;
	/* The record's id is its file name: say which object is concerned. */
	const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	bool ctr = strstr(path, "/containers/") != NULL;
	log_error("%s=%.64s msg=\"corrupt state file quarantined\" path=%s quarantine=%s error=\"%s\"", ctr ? "ctr" : "pod",
		  name, path, moved_to ? moved_to : "(left in place)", why);
}

static void reconcile(struct runtime *rt);

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
	uk_error be = { 0 };
	if (uk_boot_id(rt->boot_id, &be) < 0) {
		/* Without it a reboot cannot be told; PIDs and start times still are checked. */
		rt->boot_id[0] = '\0';
		log_warn("msg=\"cannot read the boot id\" error=\"%s\"", be.msg);
	}
	if ((r = uk_mkdir_p(rt->sandbox_dir, 0700, err)) < 0 || (r = uk_mkdir_p(rt->container_dir, 0700, err)) < 0 ||
	    (r = uk_mkdir_p(rt->vm_dir, 0700, err)) < 0 ||
	    (r = image_store_open(rt->image_dir, &rt->images, err)) < 0 ||
	    (r = records_load(rt->sandbox_dir, load_sandbox, report_bad, rt, err)) < 0 ||
	    (r = records_load(rt->container_dir, load_container, report_bad, rt, err)) < 0) {
		runtime_free(rt);
		return r;
	}
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
	rt_lock(rt);
	reconcile(rt);
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

/* A pidfd of the container's vmwrapper, or -1: only ever the process recorded (PID and start
 * time), so no signal reaches a process that inherited the PID. */
static int wrapper_pidfd(const struct container *c)
{
	int fd = uk_pidfd_open_checked(c->wrapper_pid, c->wrapper_start);
	return fd < 0 ? -1 : fd;
}

/* SIGKILL through a pidfd and wait for the end. True if it ended. */
static bool kill_wait(int pidfd)
{
	if (pidfd < 0)
		return true;
	uk_pidfd_signal(pidfd, SIGKILL);
	return uk_pidfd_wait(pidfd, KILL_WAIT_MS);
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
		save_container(rt, c, NULL);
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
	save_container(rt, c, NULL);
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
	_cleanup_close_ int pidfd = wrapper_pidfd(c);
	if (pidfd >= 0 && !uk_pidfd_wait(pidfd, KILL_WAIT_MS))
		kill_wait(pidfd);
}

/* QEMU dies with its vmwrapper (PR_SET_PDEATHSIG), but not in the same instant: a vmwrapper
 * that was killed leaves QEMU to the kernel for a moment. Wait for it (and end it, should it
 * still run), so its cgroup can go. The PID and start time come from vmwrapper.json. */
static void reap_qemu(struct runtime *rt, const char *id)
{
	char path[PATH_MAX];
	_cleanup_free_ char *text = NULL;
	if (rt_vm_dir(rt, id, path, sizeof(path) - 32) < 0)
		return;
	strcat(path, "/vmwrapper.json");
	if (uk_read_file(path, EXIT_JSON_MAX, &text, NULL, NULL) < 0)
		return;
	_cleanup_json_ json_object *o = json_tokener_parse(text);
	json_object *p, *st;
	if (!o || !json_object_object_get_ex(o, "qemu_pid", &p) || !json_object_object_get_ex(o, "qemu_start_time", &st))
		return;
	_cleanup_close_ int pidfd = uk_pidfd_open_checked((pid_t)json_object_get_int(p), (uint64_t)json_object_get_int64(st));
	if (pidfd >= 0 && !uk_pidfd_wait(pidfd, KILL_WAIT_MS))
		kill_wait(pidfd);
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
	memcpy(s->boot_id, rt->boot_id, sizeof(s->boot_id));
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
	/* The network first, the record last: until the record exists, nothing reaches the
	 * pod, and start-up finds what a crash left (addresses, DHCP entries and hostPorts all
	 * lead to the id) and releases it. */
	if ((r = rt_net_sandbox_up(rt->net, s, err)) < 0) {
		r = state_full_ctx(rt, r, err);
		goto fail;
	}
	o = sandbox_to_json(s);
	if ((r = record_save(rt->sandbox_dir, s->id, o, err)) < 0) {
		r = state_full_ctx(rt, r, err);
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

/* NOTREADY, then the network goes, in an order a crash cannot undo: the record says
 * NOTREADY (keeping the address) before anything is released, so a restart that finds a
 * NOTREADY sandbox with an address finishes the release, and a READY one still has all of
 * it. Lock held. */
static int sandbox_release(struct runtime *rt, struct sandbox *s, uk_error *err)
{
	int r;
	if (s->state != SANDBOX_NOTREADY) {
		s->state = SANDBOX_NOTREADY;
		if ((r = save_sandbox(rt, s, err)) < 0) {
			s->state = SANDBOX_READY;
			return uk_err_ctx(err, "pod %s", s->id);
		}
		log_info("pod=%s msg=\"sandbox stopped\"", s->id);
	}
	if (!rt->net->enabled)
		return 0;
	bool had_ip = s->ip != NULL;
	/* The CRI: network resources are reclaimed at StopPodSandbox. Idempotent, and done
	 * again on a second stop: whatever a VM that died uncleanly left (its tap) goes too. */
	if ((r = rt_net_sandbox_down(rt->net, s, err)) < 0)
		return uk_err_ctx(err, "release the network of pod %s", s->id);
	/* ip is NULL now; a failure here leaves NOTREADY with the old address, which the next
	 * stop or start-up releases again. */
	if (had_ip)
		save_sandbox(rt, s, NULL);
	return 0;
}

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
	if (rt_find_sandbox(rt, sid, &s, NULL) == 0)
		r = sandbox_release(rt, s, err);
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
	/* The containers first: a crash in between leaves the pod with fewer of them. */
	for (size_t i = 0; i < n; i++)
		if ((r = rt_container_remove(rt, ids[i], err)) < 0)
			return uk_err_ctx(err, "remove container %s", ids[i]);
	rt_lock(rt);
	for (size_t i = 0; i < rt->n_sb; i++)
		if (strcmp(rt->sb[i]->id, sid) == 0) {
			/* Then the network (as a stop does), and the record last. */
			if ((r = sandbox_release(rt, rt->sb[i], err)) < 0 ||
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
	/* The container's directory first, the record last: a crash in between leaves a
	 * directory without a record, which start-up removes. */
	if ((r = make_ctr_dir(rt, c, err)) < 0) {
		uk_err_ctx(err, "container %s", c->id);
		r = state_full_ctx(rt, r, err);
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
	if ((r = record_save(rt->container_dir, c->id, o, err)) < 0) {
		r = state_full_ctx(rt, r, err);
		goto fail;
	}
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
#define SPAWN_GO_FD 6 /* only while the process is held, closed before exec */

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

/* A vmwrapper forked (double fork, so it is never our child) but held before its exec: it
 * waits for one byte on `go`, and exits without exec'ing if `go` closes first. So the record
 * can name it (PID and start time) before anything of the VM exists, and a unikd killed
 * before that leaves nothing running: the held process sees the pipe close and exits. */
struct spawn {
	pid_t pid;
	uint64_t start;
	int go;   /* write end: one byte lets it exec vmwrapper */
	int sync; /* read end of vmwrapper's sync pipe */
};

static void spawn_done(struct spawn *sp)
{
	sp->go = safe_close(sp->go);
	sp->sync = safe_close(sp->sync);
}

/* Called off: it exits on the closed pipe; wait for that, so nothing outlives the call. */
static void spawn_abort(struct spawn *sp)
{
	_cleanup_close_ int pidfd = uk_pidfd_open_checked(sp->pid, sp->start);
	spawn_done(sp);
	if (pidfd >= 0 && !uk_pidfd_wait(pidfd, KILL_WAIT_MS))
		kill_wait(pidfd);
}

static int spawn_fork(struct runtime *rt, const char *vmdir, int tap_fd, int vhost_fd, char cg_files[][PATH_MAX],
		      size_t n_cg_files, struct spawn *sp, uk_error *err)
{
	char spec[PATH_MAX + 32], logp[PATH_MAX + 32];
	snprintf(spec, sizeof(spec), "%s/spec.json", vmdir);
	snprintf(logp, sizeof(logp), "%s/vmwrapper.log", vmdir);
	_cleanup_close_ int logfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	_cleanup_close_ int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	int p[2], g[2], q[2];
	if (logfd < 0 || nullfd < 0)
		return uk_err_errno(err, errno, "open %s", logp);
	if (pipe2(p, O_CLOEXEC) < 0)
		return uk_err_errno(err, errno, "pipe");
	_cleanup_close_ int rd = p[0];
	_cleanup_close_ int wr = p[1];
	if (pipe2(g, O_CLOEXEC) < 0)
		return uk_err_errno(err, errno, "pipe");
	_cleanup_close_ int go_r = g[0];
	_cleanup_close_ int go_w = g[1];
	if (pipe2(q, O_CLOEXEC) < 0)
		return uk_err_errno(err, errno, "pipe");
	_cleanup_close_ int pid_r = q[0];
	_cleanup_close_ int pid_w = q[1];
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
		pid_t held = fork();
		if (held != 0) {
			(void)!write(pid_w, &held, sizeof(held));
			_exit(0);
		}
		/* Lift the fds above the targets first, so no dup2 clobbers a source. */
		int hi_tap = tap_fd >= 0 ? fcntl(tap_fd, F_DUPFD_CLOEXEC, 64) : -1;
		int hi_vhost = vhost_fd >= 0 ? fcntl(vhost_fd, F_DUPFD_CLOEXEC, 64) : -1;
		int hi_wr = fcntl(wr, F_DUPFD_CLOEXEC, 64);
		int hi_go = fcntl(go_r, F_DUPFD_CLOEXEC, 64);
		if (hi_wr < 0 || hi_go < 0 || dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0 ||
		    dup2(hi_wr, 3) < 0 || dup2(hi_go, SPAWN_GO_FD) < 0)
			_exit(127);
		if (hi_tap >= 0 ? dup2(hi_tap, SPAWN_TAP_FD) < 0 : close(SPAWN_TAP_FD) < 0 && errno != EBADF)
			_exit(127);
		if (hi_vhost >= 0 ? dup2(hi_vhost, SPAWN_VHOST_FD) < 0 : close(SPAWN_VHOST_FD) < 0 && errno != EBADF)
			_exit(127);
		/* Before waiting: holding other pipes' ends (other starts running now) would keep
		 * their held processes from seeing unikd die. */
		close_range(SPAWN_GO_FD + 1, ~0U, 0);
		char b;
		ssize_t n;
		do
			n = read(SPAWN_GO_FD, &b, 1);
		while (n < 0 && errno == EINTR);
		if (n != 1)
			_exit(0); /* unikd died or called the start off: nothing was started */
		close(SPAWN_GO_FD);
		/* Join the VM's cgroup before exec, so QEMU is born inside it. */
		if (n_cg_files && cg_enter_files_self(cg_files, n_cg_files) < 0)
			_exit(126);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	pid_w = safe_close(pid_w);
	go_r = safe_close(go_r);
	wr = safe_close(wr);
	waitpid(pid, NULL, 0);
	pid_t held = -1;
	ssize_t n;
	do
		n = read(pid_r, &held, sizeof(held));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(held) || held <= 0)
		return uk_err(err, EAGAIN, "cannot fork vmwrapper");
	int r = uk_proc_starttime(held, &sp->start);
	if (r < 0)
		return uk_err_errno(err, -r, "vmwrapper process %d vanished", (int)held);
	sp->pid = held;
	sp->go = TAKE_FD(go_w);
	sp->sync = TAKE_FD(rd);
	return 0;
}

/* Let the held process exec vmwrapper, and read vmwrapper's one line of startup status. */
static int spawn_go(struct spawn *sp, const char *vmdir, json_object **sync_ret, uk_error *err)
{
	ssize_t w;
	do
		w = write(sp->go, "g", 1);
	while (w < 0 && errno == EINTR);
	sp->go = safe_close(sp->go);
	int rd = sp->sync;
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
		return uk_err(err, EIO, "vmwrapper failed before reporting (see %s/vmwrapper.log)", vmdir);
	}
	*sync_ret = o;
	return 0;
}

/* The cgroup path a container's VM has or would have: recorded, or computed from its pod's
 * cgroup_parent (a start cut short may have made it before the record said so). */
static int ctr_cgroup_path(struct runtime *rt, const struct container *c, char *out, size_t len)
{
	if (c->cgroup && *c->cgroup) {
		snprintf(out, len, "%s", c->cgroup);
		return 0;
	}
	struct sandbox *sb = sandbox_by_id(rt, c->sandbox_id);
	return cg_path_for(sb ? sb->cgroup_parent : NULL, c->id, out, len, NULL);
}

/* Remove the VM's cgroup if it exists (idempotent). Logs nothing. */
static int remove_cgroup(struct runtime *rt, const struct container *c, uk_error *err)
{
	char path[CG_PATH_MAX];
	if (rt->cg.version == CG_NONE || ctr_cgroup_path(rt, c, path, sizeof(path)) < 0)
		return 0;
	return cg_remove(&rt->cg, path, err);
}

static void set_start_failed(struct container *c, const char *msg)
{
	c->state = CTR_EXITED;
	c->exit_code = 128;
	set_str(&c->reason, "Error");
	set_str(&c->message, msg);
	c->finished_ns = (int64_t)uk_now_realtime_ns();
}

int rt_container_start(struct runtime *rt, const char *id, uk_error *err)
{
	_cleanup_json_ json_object *spec = NULL, *sync = NULL;
	_cleanup_(spawn_done) struct spawn sp = { .go = -1, .sync = -1 };
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

	/* The order, for crash safety: the VM directory and the cgroup (a crash here leaves a
	 * CREATED container with leftovers, which start-up removes), a held vmwrapper, the
	 * record naming it (from here a restart completes or undoes the start: docs/
	 * architecture.md), and only then vmwrapper may run. The tap lives in our fds and the
	 * held process's, so it vanishes with them. */
	uk_rm_rf(vmdir, NULL);
	char specpath[PATH_MAX + 16];
	snprintf(specpath, sizeof(specpath), "%s/spec.json", vmdir);
	const char *text = json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PRETTY);
	if ((r = uk_mkdir_p(vmdir, 0700, err)) < 0 ||
	    (r = uk_write_file_atomic(specpath, text, strlen(text), 0600, err)) < 0 ||
	    (r = spawn_fork(rt, vmdir, tap_fd, vhost_fd, cg_files, n_cg_files, &sp, err)) < 0) {
		rt_lock(rt);
		set_start_failed(c, err->msg);
		save_container(rt, c, NULL);
		goto out_locked;
	}
	tap_fd = safe_close(tap_fd);
	vhost_fd = safe_close(vhost_fd);
	rt_lock(rt);
	c->wrapper_pid = sp.pid;
	c->wrapper_start = sp.start;
	memcpy(c->boot_id, rt->boot_id, sizeof(c->boot_id));
	c->started_ns = (int64_t)uk_now_realtime_ns();
	if ((r = save_container(rt, c, err)) < 0) {
		/* Nothing ran: the container stays CREATED, and can be started again. */
		c->wrapper_pid = 0;
		c->wrapper_start = 0;
		c->boot_id[0] = '\0';
		c->started_ns = 0;
		rt_unlock(rt);
		spawn_abort(&sp);
		uk_rm_rf(vmdir, NULL);
		remove_cgroup(rt, c, NULL);
		rt_lock(rt);
		free(c->cgroup);
		c->cgroup = NULL;
		uk_err_ctx(err, "container %s was not started", c->id);
		goto out_locked;
	}
	rt_unlock(rt);
	if ((r = spawn_go(&sp, vmdir, &sync, err)) < 0) {
		/* A vmwrapper that has not reported in time does not get to run on unsupervised. */
		_cleanup_close_ int pidfd = wrapper_pidfd(c);
		kill_wait(pidfd);
		rt_lock(rt);
		if (!apply_exit(rt, c))
			set_start_failed(c, err->msg);
		save_container(rt, c, NULL);
		goto out_locked;
	}
	json_object *v;
	bool ok = json_object_object_get_ex(sync, "ok", &v) && json_object_get_boolean(v);
	rt_lock(rt);
	if (ok) {
		c->state = CTR_RUNNING;
		log_info("pod=%s ctr=%s msg=\"container started\" vmwrapper_pid=%d", c->sandbox_id, c->id, c->wrapper_pid);
	} else {
		const char *e = json_object_object_get_ex(sync, "error", &v) ? json_object_get_string(v) : "unknown";
		r = uk_err(err, EIO, "starting the VM failed: %s", e);
		set_start_failed(c, e);
		/* If QEMU did run, exit.json has the precise story. */
		apply_exit(rt, c);
		rt_unlock(rt);
		reap_wrapper(c);
		rt_lock(rt);
		if (!c->reason)
			set_str(&c->reason, "Error");
	}
	save_container(rt, c, NULL);
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
			/* Never started: it ends here, as containerd does. Recorded first: a stop that
			 * cannot be saved changes nothing. */
			c->state = CTR_EXITED;
			c->exit_code = 0;
			c->finished_ns = (int64_t)uk_now_realtime_ns();
			set_str(&c->reason, "Stopped");
			if ((r = save_container(rt, c, err)) < 0) {
				c->state = CTR_CREATED;
				c->exit_code = 0;
				c->finished_ns = 0;
				set_str(&c->reason, NULL);
				uk_err_ctx(err, "stop container %s", c->id);
			}
		}
		release(c);
		rt_unlock(rt);
		return r;
	}
	rt_vm_dir(rt, c->id, vmdir, sizeof(vmdir) - 32);
	/* Every signal goes through a pidfd of the recorded process (PID and start time). */
	_cleanup_close_ int pidfd = wrapper_pidfd(c);
	rt_unlock(rt);

	uk_error qerr = { 0 };
	bool gone = pidfd < 0;
	if (!gone && timeout_s > 0) {
		/* ACPI power button first; a guest that handles it exits on its own. */
		if (qmp_command(vmdir, "system_powerdown", &qerr) < 0)
			log_warn("pod=%s ctr=%s msg=\"system_powerdown failed\" error=\"%s\"", c->sandbox_id, c->id,
				 qerr.msg);
		int64_t ms = timeout_s > INT_MAX / 1000 ? INT_MAX : timeout_s * 1000;
		gone = uk_pidfd_wait(pidfd, (int)ms);
	}
	if (!gone) {
		/* vmwrapper turns SIGTERM into QMP quit, and a second one into SIGKILL. */
		uk_pidfd_signal(pidfd, SIGTERM);
		gone = uk_pidfd_wait(pidfd, KILL_WAIT_MS);
		if (!gone) {
			uk_pidfd_signal(pidfd, SIGTERM);
			gone = uk_pidfd_wait(pidfd, KILL_WAIT_MS);
		}
		if (!gone)
			gone = kill_wait(pidfd);
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
	/* The order: the VM ends, its cgroup goes, then the record (durably), then the VM
	 * directory and the container's directory, which start-up removes should a crash come
	 * first. A crash before the record goes leaves an EXITED container to remove again. */
	reap_wrapper(c);
	reap_qemu(rt, c->id);
	uk_error cgerr = { 0 };
	rt_lock(rt);
	r = remove_cgroup(rt, c, &cgerr);
	rt_unlock(rt);
	if (r < 0)
		log_warn("pod=%s ctr=%s msg=\"cannot remove the cgroup\" error=\"%s\"", c->sandbox_id, c->id, cgerr.msg);
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
	_cleanup_close_ int pidfd = wrapper_pidfd(c);
	if (pidfd >= 0 && (r = uk_pidfd_signal(pidfd, SIGHUP)) < 0)
		r = uk_err_errno(err, -r, "signal vmwrapper");
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
	/* The CRI sends 0 for what it leaves unchanged. The record first, then the cgroup: a
	 * crash in between is completed at start-up, which applies the recorded limits to
	 * running VMs. */
	struct container old = *c;
	if (memory_limit > 0)
		c->memory_limit = memory_limit;
	if (cpu_quota != 0)
		c->cpu_quota = cpu_quota;
	if (cpu_period > 0)
		c->cpu_period = cpu_period;
	if (cpu_shares > 0)
		c->cpu_shares = cpu_shares;
	if ((r = save_container(rt, c, err)) < 0) {
		c->memory_limit = old.memory_limit;
		c->cpu_quota = old.cpu_quota;
		c->cpu_period = old.cpu_period;
		c->cpu_shares = old.cpu_shares;
		rt_unlock(rt);
		return uk_err_ctx(err, "update the resources of container %s", c->id);
	}
	if (c->state == CTR_RUNNING && c->cgroup && rt->cg.version != CG_NONE) {
		struct cg_limits l;
		rt_cgroup_limits(rt, c, &l);
		if ((r = cg_update(&rt->cg, c->cgroup, &l, err)) < 0) {
			rt_unlock(rt);
			return uk_err_ctx(err, "update the cgroup of container %s", c->id);
		}
	}
	log_info("pod=%s ctr=%s msg=\"resources updated\" memory_limit=%lld cpu_quota=%lld cpu_period=%lld cpu_shares=%lld",
		 c->sandbox_id, c->id, (long long)memory_limit, (long long)cpu_quota, (long long)cpu_period,
		 (long long)cpu_shares);
	rt_unlock(rt);
	return 0;
}

/* ---- start-up: reconciliation (docs/architecture.md, "Crash safety and restarts") ---- */

#define CMDLINE_MAX 8192

/* The container id of a vmwrapper of ours: its argv is
 * "vmwrapper --spec <vm_dir>/<64 hex>/spec.json ...". false for anything else, and for the
 * held process before its exec (its argv is still unikd's). */
static bool vmwrapper_id_of(struct runtime *rt, pid_t pid, char id[UK_FULL_ID_LEN + 1])
{
	char path[64];
	_cleanup_free_ char *cmd = NULL;
	size_t len = 0;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if (uk_read_file(path, CMDLINE_MAX, &cmd, &len, NULL) < 0)
		return false;
	const char *argv[3] = { 0 };
	size_t n = 0;
	for (size_t off = 0; off < len && n < 3; off += strlen(cmd + off) + 1)
		argv[n++] = cmd + off;
	if (n < 3 || strcmp(argv[1], "--spec") != 0)
		return false;
	size_t vl = strlen(rt->vm_dir);
	const char *p = argv[2];
	if (strncmp(p, rt->vm_dir, vl) != 0 || p[vl] != '/' || strspn(p + vl + 1, "0123456789abcdef") != UK_FULL_ID_LEN ||
	    strcmp(p + vl + 1 + UK_FULL_ID_LEN, "/spec.json") != 0)
		return false;
	memcpy(id, p + vl + 1, UK_FULL_ID_LEN);
	id[UK_FULL_ID_LEN] = '\0';
	return true;
}

static bool vm_file_exists(struct runtime *rt, const char *id, const char *name)
{
	char path[PATH_MAX];
	if (rt_vm_dir(rt, id, path, sizeof(path) - 64) < 0)
		return false;
	strcat(path, "/");
	strcat(path, name);
	return access(path, F_OK) == 0;
}

static bool remove_vm_dir(struct runtime *rt, const char *id)
{
	char path[PATH_MAX];
	struct stat st;
	if (rt_vm_dir(rt, id, path, sizeof(path)) < 0 || lstat(path, &st) < 0)
		return false;
	uk_error e = { 0 };
	if (uk_rm_rf(path, &e) < 0) {
		log_error("ctr=%s msg=\"cannot remove a VM directory\" path=%s error=\"%s\"", id, path, e.msg);
		return false;
	}
	return true;
}

/* Recorded under another boot: the processes it names are gone, whatever runs under those
 * PIDs now. An unknown boot id (older records) falls back to PID and start time. */
static bool other_boot(struct runtime *rt, const char *recorded)
{
	return recorded[0] && rt->boot_id[0] && strcmp(recorded, rt->boot_id) != 0;
}

static void forget_wrapper(struct container *c)
{
	c->wrapper_pid = 0;
	c->wrapper_start = 0;
	c->boot_id[0] = '\0';
}

/* A container whose vmwrapper was named in its record, then vanished without exit.json. */
static void set_vanished(struct container *c)
{
	c->state = CTR_EXITED;
	c->exit_code = 255;
	set_str(&c->reason, "Unknown");
	set_str(&c->message, "the VM's supervisor ended without an exit record (killed, or the host rebooted)");
	c->finished_ns = (int64_t)uk_now_realtime_ns();
}

/* CREATED with a vmwrapper named: StartContainer was cut short after its record was saved.
 * Complete it if vmwrapper runs (or ran), undo it if it never did. */
static void resolve_start(struct runtime *rt, struct container *c)
{
	char id[UK_FULL_ID_LEN + 1];
	_cleanup_close_ int pidfd = wrapper_pidfd(c);
	if (pidfd >= 0 && !(vmwrapper_id_of(rt, c->wrapper_pid, id) && strcmp(id, c->id) == 0)) {
		/* Still held before its exec: nothing of the VM exists yet. End it here, so it
		 * cannot go on to exec with the byte unikd may have written just before dying. */
		kill_wait(pidfd);
		pidfd = safe_close(pidfd);
	}
	if (apply_exit(rt, c)) {
		log_warn("pod=%s ctr=%s msg=\"completed an interrupted start: the VM has ended\" exit_code=%d reason=%s",
			 c->sandbox_id, c->id, c->exit_code, c->reason);
	} else if (pidfd >= 0 && wrapper_alive(c)) {
		c->state = CTR_RUNNING;
		log_warn("pod=%s ctr=%s msg=\"completed an interrupted start: the VM runs\" vmwrapper_pid=%d", c->sandbox_id,
			 c->id, c->wrapper_pid);
	} else if (apply_exit(rt, c)) {
		log_warn("pod=%s ctr=%s msg=\"completed an interrupted start: the VM has ended\" exit_code=%d reason=%s",
			 c->sandbox_id, c->id, c->exit_code, c->reason);
	} else if (vm_file_exists(rt, c->id, "vmwrapper.json")) {
		set_vanished(c);
		log_warn("pod=%s ctr=%s msg=\"completed an interrupted start: the VM's supervisor vanished\"", c->sandbox_id,
			 c->id);
	} else {
		/* vmwrapper never started QEMU: the start is undone, and can be made again. */
		remove_vm_dir(rt, c->id);
		uk_error e = { 0 };
		if (remove_cgroup(rt, c, &e) < 0)
			log_error("pod=%s ctr=%s msg=\"cannot remove the cgroup\" error=\"%s\"", c->sandbox_id, c->id, e.msg);
		free(c->cgroup);
		c->cgroup = NULL;
		forget_wrapper(c);
		c->started_ns = 0;
		log_warn("pod=%s ctr=%s msg=\"undid an interrupted start\"", c->sandbox_id, c->id);
	}
	save_container(rt, c, NULL);
}

/* CREATED with no vmwrapper named: a start cut short before its record may have made the VM
 * directory and the cgroup. Nothing runs there (the held process never execs). */
static void clean_created(struct runtime *rt, struct container *c)
{
	bool dir = remove_vm_dir(rt, c->id);
	uk_error e = { 0 };
	if (remove_cgroup(rt, c, &e) < 0)
		log_error("pod=%s ctr=%s msg=\"cannot remove the cgroup\" error=\"%s\"", c->sandbox_id, c->id, e.msg);
	if (c->cgroup) {
		free(c->cgroup);
		c->cgroup = NULL;
		save_container(rt, c, NULL);
	}
	if (dir)
		log_warn("pod=%s ctr=%s msg=\"removed the leftovers of a start cut short\"", c->sandbox_id, c->id);
}

/* A container that cannot be reached through the CRI (its sandbox is gone): everything of
 * it goes, its VM included. */
static void destroy_container(struct runtime *rt, struct container *c)
{
	if (!other_boot(rt, c->boot_id)) {
		_cleanup_close_ int pidfd = wrapper_pidfd(c);
		kill_wait(pidfd);
		reap_qemu(rt, c->id);
	}
	uk_error e = { 0 };
	if (remove_cgroup(rt, c, &e) < 0)
		log_error("pod=%s ctr=%s msg=\"cannot remove the cgroup\" error=\"%s\"", c->sandbox_id, c->id, e.msg);
	if (record_delete(rt->container_dir, c->id, &e) < 0) {
		log_error("pod=%s ctr=%s msg=\"cannot remove the record of a container whose pod is gone\" error=\"%s\"",
			  c->sandbox_id, c->id, e.msg);
		return; /* its files stay with it; tried again at the next start */
	}
	remove_vm_dir(rt, c->id);
	char dir[PATH_MAX];
	if (rt_ctr_dir(rt, c->id, dir, sizeof(dir)) == 0)
		uk_rm_rf(dir, NULL);
	log_warn("pod=%s ctr=%s msg=\"removed a container whose pod is gone\"", c->sandbox_id, c->id);
}

/* The parent of a process (field 4 of /proc/PID/stat), 0 if unknown. */
static pid_t proc_ppid(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	int ppid = 0;
	if (!p || sscanf(p, ") %*c %d", &ppid) != 1)
		return 0;
	return (pid_t)ppid;
}

/* Every vmwrapper serving our VM directory that no container names is killed: its record
 * is gone (quarantined, or its pod's) or names another process. */
static void kill_orphan_wrappers(struct runtime *rt)
{
	_cleanup_closedir_ DIR *d = opendir("/proc");
	struct dirent *de;
	if (!d)
		return;
	while ((de = readdir(d))) {
		uint64_t pid64, st;
		char id[UK_FULL_ID_LEN + 1];
		if (uk_parse_u64(de->d_name, 1, INT32_MAX, &pid64) < 0)
			continue;
		pid_t pid = (pid_t)pid64;
		char pid_of_parent[UK_FULL_ID_LEN + 1];
		if (!vmwrapper_id_of(rt, pid, id) || uk_proc_starttime(pid, &st) < 0)
			continue;
		/* A process made by a vmwrapper shows its argv too (a clone sharing its memory,
		 * as LeakSanitizer's tracer at exit): it is the vmwrapper's, and goes with it. */
		if (vmwrapper_id_of(rt, proc_ppid(pid), pid_of_parent) && strcmp(pid_of_parent, id) == 0)
			continue;
		struct container *c;
		if (rt_find_container(rt, id, &c, NULL) == 0 && c->wrapper_pid == pid && c->wrapper_start == st &&
		    (c->state == CTR_RUNNING || c->state == CTR_EXITED))
			continue; /* ours (an EXITED one's is writing its last bytes and leaving) */
		_cleanup_close_ int pidfd = uk_pidfd_open_checked(pid, st);
		if (pidfd < 0)
			continue;
		kill_wait(pidfd);
		log_warn("ctr=%s msg=\"killed a vmwrapper that no container owns\" pid=%d", id, (int)pid);
	}
}

/* VM directories without a container record: a remove cut short after the record, or a
 * record that was quarantined. A vmwrapper still there is killed first. */
static void remove_orphan_vm_dirs(struct runtime *rt)
{
	_cleanup_closedir_ DIR *d = opendir(rt->vm_dir);
	struct dirent *de;
	if (!d)
		return;
	while ((de = readdir(d))) {
		const char *id = de->d_name;
		struct container *c;
		if (!record_id_named(id, "") || rt_find_container(rt, id, &c, NULL) == 0)
			continue;
		char path[PATH_MAX];
		_cleanup_free_ char *text = NULL;
		if (rt_vm_dir(rt, id, path, sizeof(path) - 32) < 0)
			continue;
		strcat(path, "/vmwrapper.json");
		if (uk_read_file(path, EXIT_JSON_MAX, &text, NULL, NULL) == 0) {
			_cleanup_json_ json_object *o = json_tokener_parse(text);
			json_object *p, *s;
			if (o && json_object_object_get_ex(o, "pid", &p) && json_object_object_get_ex(o, "start_time", &s)) {
				_cleanup_close_ int pidfd =
					uk_pidfd_open_checked((pid_t)json_object_get_int(p), (uint64_t)json_object_get_int64(s));
				kill_wait(pidfd);
			}
			reap_qemu(rt, id);
		}
		/* Its cgroup, if it had the default parent (the pod's is unknown without a record). */
		char cg[CG_PATH_MAX];
		if (rt->cg.version != CG_NONE && cg_path_for(NULL, id, cg, sizeof(cg), NULL) == 0)
			cg_remove(&rt->cg, cg, NULL);
		if (remove_vm_dir(rt, id))
			log_warn("ctr=%s msg=\"removed the VM directory of a container that has no record\"", id);
	}
}

/* A container directory without a record is left by a crash in the middle of a create (or
 * of a remove, after the record), or its record was quarantined: nothing can reach it. */
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
		if (!record_id_named(name, RT_CTR_DIR_SUFFIX))
			continue;
		memcpy(id, name, UK_FULL_ID_LEN);
		id[UK_FULL_ID_LEN] = '\0';
		if (rt_find_container(rt, id, &c, NULL) == 0 || rt_ctr_dir(rt, id, path, sizeof(path)) < 0)
			continue;
		uk_error e = { 0 };
		if (uk_rm_rf(path, &e) < 0)
			log_error("ctr=%s msg=\"cannot remove a stray container directory\" path=%s error=\"%s\"", id, path,
				  e.msg);
		else
			log_warn("ctr=%s msg=\"cleaned up half-created container\" path=%s "
				 "detail=\"removed a container directory that has no record (a create or a remove was cut short)\"",
				 id, path);
	}
}

static bool pod_has_vm(const char *sandbox_id, void *ud)
{
	struct runtime *rt = ud;
	for (size_t i = 0; i < rt->n_ct; i++)
		if (strcmp(rt->ct[i]->sandbox_id, sandbox_id) == 0 && rt->ct[i]->state == CTR_RUNNING)
			return true;
	return false;
}

/* Lock held; runs before the CRI server, so nothing else is under way. */
static void reconcile(struct runtime *rt)
{
	/* After a reboot nothing runs: running containers ended with the node (how, if a
	 * persistent run directory still tells), and ready pods lost their network. */
	for (size_t i = 0; i < rt->n_ct; i++) {
		struct container *c = rt->ct[i];
		if (!(c->state == CTR_RUNNING || (c->state == CTR_CREATED && c->wrapper_pid)) ||
		    !other_boot(rt, c->boot_id))
			continue;
		if (!apply_exit(rt, c)) {
			c->state = CTR_EXITED;
			c->exit_code = 255;
			set_str(&c->reason, "NodeRebooted");
			set_str(&c->message, "the node rebooted while the VM ran");
			c->finished_ns = (int64_t)uk_now_realtime_ns();
		}
		forget_wrapper(c);
		save_container(rt, c, NULL);
		log_warn("pod=%s ctr=%s msg=\"the node rebooted: container recorded as exited\" exit_code=%d reason=%s",
			 c->sandbox_id, c->id, c->exit_code, c->reason);
	}
	for (size_t i = 0; i < rt->n_sb; i++) {
		struct sandbox *s = rt->sb[i];
		if (s->state != SANDBOX_READY || !other_boot(rt, s->boot_id))
			continue;
		s->state = SANDBOX_NOTREADY;
		save_sandbox(rt, s, NULL);
		log_warn("pod=%s msg=\"the node rebooted: pod recorded as not ready\"", s->id);
	}

	/* A container whose sandbox is gone cannot be reached through the CRI. */
	for (size_t i = 0; i < rt->n_ct;) {
		if (sandbox_by_id(rt, rt->ct[i]->sandbox_id)) {
			i++;
			continue;
		}
		destroy_container(rt, rt->ct[i]);
		container_free(rt->ct[i]);
		rt->ct[i] = rt->ct[--rt->n_ct];
	}

	/* VMs: reattached, recorded as ended, or (a start cut short) completed or undone. */
	for (size_t i = 0; i < rt->n_ct; i++) {
		struct container *c = rt->ct[i];
		if (c->state == CTR_CREATED && c->wrapper_pid)
			resolve_start(rt, c);
		else if (c->state == CTR_CREATED)
			clean_created(rt, c);
		else
			refresh_one(rt, c);
	}
	kill_orphan_wrappers(rt);
	remove_orphan_vm_dirs(rt);
	remove_stray_ctr_dirs(rt);

	/* UpdateContainerResources saves the record before the cgroup: apply what it says. */
	for (size_t i = 0; i < rt->n_ct; i++) {
		struct container *c = rt->ct[i];
		struct cg_limits l;
		uk_error e = { 0 };
		if (c->state != CTR_RUNNING || !c->cgroup || rt->cg.version == CG_NONE)
			continue;
		rt_cgroup_limits(rt, c, &l);
		if (cg_update(&rt->cg, c->cgroup, &l, &e) < 0)
			log_warn("pod=%s ctr=%s msg=\"cannot apply the recorded limits\" error=\"%s\"", c->sandbox_id, c->id,
				 e.msg);
	}

	/* The network: a stop cut short is finished, then whatever no ready pod holds goes. */
	if (!rt->net->enabled)
		return;
	for (size_t i = 0; i < rt->n_sb; i++) {
		struct sandbox *s = rt->sb[i];
		uk_error e = { 0 };
		if (s->state != SANDBOX_NOTREADY || !s->ip)
			continue;
		if (rt_net_sandbox_down(rt->net, s, &e) < 0) {
			log_error("pod=%s msg=\"cannot release the network of a stopped pod\" error=\"%s\"", s->id, e.msg);
			continue;
		}
		save_sandbox(rt, s, NULL);
		log_warn("pod=%s msg=\"released the network of a stopped pod\"", s->id);
	}
	struct rt_net_cleanup nc;
	uk_error e = { 0 };
	if (rt_net_reconcile(rt->net, rt->sb, rt->n_sb, pod_has_vm, rt, &nc, &e) < 0)
		log_error("msg=\"cannot reconcile the pod network\" error=\"%s\"", e.msg);
}
