/* StartContainer: the VM's cgroup, its state directory and spec, a vmwrapper started
 * detached and held before exec until the record names it, then its startup status. */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <string.h>

#include "../common/log.h"
#include "../common/spawn.h"
#include "../common/util.h"
#include "pool_vms.h"
#include "runtime_internal.h"

#define SYNC_LINE_MAX 8192

/* What a start takes from the records (under the lock) to the slow work (without it). */
struct start {
	struct container *c;
	char vmdir[PATH_MAX];
	int tap_fd, vhost_fd;
	json_object *spec;
	char cg_path[CG_PATH_MAX]; /* "" without cgroups */
	struct cg_limits limits;
	struct uk_child child;
	int sync_fd; /* read end of vmwrapper's sync pipe */
};

static void start_done(struct start *st)
{
	st->tap_fd = safe_close(st->tap_fd);
	st->vhost_fd = safe_close(st->vhost_fd);
	st->sync_fd = safe_close(st->sync_fd);
	json_object_put(TAKE_PTR(st->spec));
	uk_child_done(&st->child);
}

static json_object *vm_spec_json(struct runtime *rt, struct container *c, const char *vmdir, bool tap, bool vhost,
				 const char *mac)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "version", json_object_new_int(1));
	json_object_object_add(o, "id", json_object_new_string(c->id));
	container_vm_fields_to_json(c, o);
	uk_json_add_str(o, "console_log", c->log_path);
	json_object_object_add(o, "state_dir", json_object_new_string(vmdir));
	if (tap) {
		json_object *nets = json_object_new_array(), *nic = json_object_new_object();
		json_object_object_add(nic, "tap_fd", json_object_new_int(SPAWN_TAP_FD));
		if (vhost)
			json_object_object_add(nic, "vhost_fd", json_object_new_int(SPAWN_VHOST_FD));
		json_object_object_add(nic, "mac", json_object_new_string(mac));
		json_object_array_add(nets, nic);
		json_object_object_add(o, "net", nets);
	}
	uk_json_add_str(o, "qemu", rt->cfg.qemu);
	return o;
}

/* Under the lock: the container can start, and what its start needs. The tap is made here
 * (the network's per-pod calls run under the runtime lock). */
static int start_check(struct runtime *rt, const struct container *c, uk_error *err)
{
	static const char *names[] = { "created", "running", "exited", "unknown" };
	struct container *other;
	if (c->state != CTR_CREATED)
		return uk_err(err, EBUSY, "container %s is %s; only a created container can be started", c->id,
			      names[c->state]);
	if ((other = rt_running_in(rt, c->sandbox_id, c->id)))
		return uk_err(err, EBUSY, "pod sandbox %s already runs container %s: one running VM per pod",
			      c->sandbox_id, other->id);
	return 0;
}

bool vm_wants_dhcp(const struct container *c)
{
	json_object *dhcp = NULL;
	return !c->guest || !json_object_object_get_ex(c->guest, "dhcp", &dhcp) || json_object_get_boolean(dhcp);
}

static int start_prepare(struct runtime *rt, struct start *st, uk_error *err)
{
	struct container *c = st->c;
	if (rt_vm_dir(rt, c->id, st->vmdir, sizeof(st->vmdir) - 32) < 0)
		return uk_err(err, ENAMETOOLONG, "run directory path too long");
	struct sandbox *sb = rt_sandbox_by_id(rt, c->sandbox_id);
	/* The guest contract may leave the NIC out (a Solo5 guest that declares no network). */
	if (sb && sb->ip && (rt->net->enabled || rt->net->cni) && c->nic) {
		st->tap_fd = rt_net_tap(rt->net, sb, vm_wants_dhcp(c), err);
		if (st->tap_fd < 0) {
			int r = st->tap_fd;
			(void)uk_err_ctx_r(err, r, "create the pod's tap");
			return r;
		}
		/* Optional: without vhost-net QEMU moves the packets itself. */
		st->vhost_fd = open("/dev/vhost-net", O_RDWR | O_CLOEXEC);
	}
	free(c->cgroup_error);
	c->cgroup_error = NULL;
	if (rt->cg.version == CG_NONE) {
		/* The documented mode without usable cgroups: the VM runs without limits. */
		c->cgroup_error = strdup(rt->cg.why);
	} else {
		uk_error e = { 0 };
		if (cg_path_for(sb ? sb->cgroup_parent : NULL, c->id, st->cg_path, sizeof(st->cg_path), &e) < 0)
			return uk_err(err, EINVAL, "the VM's cgroup: %s", e.msg);
		rt_cgroup_limits(rt, c, &st->limits);
	}
	st->spec = vm_spec_json(rt, c, st->vmdir, st->tap_fd >= 0, st->vhost_fd >= 0, sb ? sb->mac : NULL);
	return st->spec ? 0 : uk_err(err, ENOMEM, "out of memory");
}

int vm_spawn_wrapper(struct runtime *rt, const char *vmdir, int tap_fd, int vhost_fd, char cg_files[][PATH_MAX],
		     size_t n_cg_files, bool hold, struct uk_child *child, int *sync_fd, uk_error *err)
{
	char spec[PATH_MAX + 32], logp[PATH_MAX + 32], go_num[16];
	snprintf(spec, sizeof(spec), "%s/spec.json", vmdir);
	snprintf(logp, sizeof(logp), "%s/vmwrapper.log", vmdir);
	snprintf(go_num, sizeof(go_num), "%d", SPAWN_GO_FD);
	_cleanup_close_ int logfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	int p[2];
	if (logfd < 0)
		return uk_err_errno(err, errno, "open %s", logp);
	if (pipe2(p, O_CLOEXEC) < 0)
		return uk_err_errno(err, errno, "pipe");
	_cleanup_close_ int rd = p[0];
	_cleanup_close_ int wr = p[1];
	_cleanup_close_ int go_r = -1;
	_cleanup_close_ int go_w = -1;
	if (hold) {
		if (pipe2(p, O_CLOEXEC) < 0)
			return uk_err_errno(err, errno, "pipe");
		go_r = p[0];
		go_w = p[1];
	}
	const char *argv[8 + 2 * CG_PROCS_MAX] = { rt->cfg.vmwrapper, "--spec", spec, "--sync-fd", "3" };
	size_t argc = 5;
	struct uk_spawn_fd fds[4] = { { wr, SPAWN_SYNC_FD } };
	size_t n_fds = 1;
	if (tap_fd >= 0)
		fds[n_fds++] = (struct uk_spawn_fd){ tap_fd, SPAWN_TAP_FD };
	if (vhost_fd >= 0)
		fds[n_fds++] = (struct uk_spawn_fd){ vhost_fd, SPAWN_VHOST_FD };
	struct uk_spawn_opts o;
	uk_spawn_opts_init(&o, argv);
	if (hold) {
		/* Held after its exec, by vmwrapper itself, which joins the cgroups on the
		 * go-ahead: so the spawn can share our memory (uk_spawn's vfork) instead of
		 * copying it, which uk_spawn's own hold would. */
		fds[n_fds++] = (struct uk_spawn_fd){ go_r, SPAWN_GO_FD };
		argv[argc++] = "--go-fd";
		argv[argc++] = go_num;
		for (size_t i = 0; i < n_cg_files && i < CG_PROCS_MAX; i++) {
			argv[argc++] = "--cgroup-procs";
			argv[argc++] = cg_files[i];
		}
	} else {
		o.cgroup_files = (const char(*)[PATH_MAX])cg_files;
		o.n_cgroup_files = n_cg_files;
	}
	o.stdout_fd = logfd;
	o.stderr_fd = logfd;
	o.fds = fds;
	o.n_fds = n_fds;
	o.detach = true;
	int r = uk_spawn(&o, child, err);
	if (r < 0)
		return r;
	child->go_fd = TAKE_FD(go_w);
	*sync_fd = TAKE_FD(rd);
	return 0;
}

/* vmwrapper, detached (never our child) and held right after its exec until the go-ahead,
 * on which it joins the VM's cgroup: so the record can name it (PID and start time) before
 * anything of the VM exists, and a unikd killed before that leaves nothing running: the
 * held vmwrapper sees the go pipe close and exits. */
static int spawn_held(struct runtime *rt, struct start *st, char cg_files[][PATH_MAX], size_t n_cg_files,
		      uk_error *err)
{
	return vm_spawn_wrapper(rt, st->vmdir, st->tap_fd, st->vhost_fd, cg_files, n_cg_files, true, &st->child,
				&st->sync_fd, err);
}

int vm_write_new_json(const char *dir, const char *name, json_object *o, uk_error *err)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return uk_err_errno(err, errno, "create %s", path);
	int r = uk_write_all(fd, text, strlen(text));
	return r < 0 ? uk_err_errno(err, -r, "write %s", path) : 0;
}

/* Without the lock: the cgroup, the VM directory with its spec, and the held vmwrapper.
 * The order, for crash safety: a crash before the record names vmwrapper leaves a CREATED
 * container with leftovers (cgroup, directory), which start-up removes. */
static int start_spawn(struct runtime *rt, struct start *st, uk_error *err)
{
	char cg_files[CG_PROCS_MAX][PATH_MAX];
	size_t n_cg_files = 0;
	int r;
	(void)uk_rm_rf(st->vmdir, NULL); /* a leftover of a start cut short; recreated below */
	if (st->cg_path[0] &&
	    ((r = cg_create(&rt->cg, st->cg_path, &st->limits, err)) < 0 ||
	     (r = cg_procs_files(&rt->cg, st->cg_path, cg_files, CG_PROCS_MAX, &n_cg_files, err)) < 0)) {
		(void)uk_err_ctx_r(err, r, "the VM's cgroup %s", st->cg_path);
		return r;
	}
	if ((r = uk_mkdir_p(st->vmdir, 0700, err)) < 0 || (r = vm_write_new_json(st->vmdir, "spec.json", st->spec, err)) < 0 ||
	    (r = spawn_held(rt, st, cg_files, n_cg_files, err)) < 0)
		return r;
	/* The tap lives on in the held process's fds only. */
	st->tap_fd = safe_close(st->tap_fd);
	st->vhost_fd = safe_close(st->vhost_fd);
	return 0;
}

int vm_read_sync(int fd, const char *vmdir, json_object **sync_ret, uk_error *err)
{
	char buf[SYNC_LINE_MAX];
	size_t len = 0;
	uint64_t deadline = uk_now_mono_ns() + (uint64_t)SYNC_TIMEOUT_MS * 1000000ull;
	for (;;) {
		uint64_t now = uk_now_mono_ns();
		if (now >= deadline)
			return uk_err(err, ETIMEDOUT, "vmwrapper did not report within %d s", SYNC_TIMEOUT_MS / 1000);
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		int pr = poll(&pf, 1, (int)((deadline - now) / 1000000ull) + 1);
		if (pr < 0 && errno != EINTR)
			return uk_err_errno(err, errno, "poll");
		if (pr <= 0)
			continue;
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
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

/* Let the held process exec vmwrapper, and read vmwrapper's one line of startup status. */
static int start_go(struct start *st, json_object **sync_ret, uk_error *err)
{
	int r = uk_spawn_release(&st->child, err);
	return r < 0 ? r : vm_read_sync(st->sync_fd, st->vmdir, sync_ret, err);
}

static void set_start_failed(struct container *c, const char *msg)
{
	vm_set_exited(c, 128, "Error", msg);
}

/* The record names the held vmwrapper; if it cannot be saved, nothing ran: the start is
 * undone and the container stays CREATED. Lock held on entry and exit. */
static int start_record(struct runtime *rt, struct start *st, uk_error *err)
{
	struct container *c = st->c;
	c->wrapper_pid = st->child.pid;
	c->wrapper_start = st->child.start_time;
	memcpy(c->boot_id, rt->boot_id, sizeof(c->boot_id));
	c->started_ns = (int64_t)uk_now_realtime_ns();
	if (st->cg_path[0])
		rt_set_str(&c->cgroup, st->cg_path);
	int r = rt_save_container_start(rt, c, err);
	if (r >= 0)
		return 0;
	c->wrapper_pid = 0;
	c->wrapper_start = 0;
	c->boot_id[0] = '\0';
	c->started_ns = 0;
	rt_set_str(&c->cgroup, NULL);
	rt_unlock(rt);
	/* The held process exits on the closed pipe; wait for that, so nothing outlives us. */
	st->child.go_fd = safe_close(st->child.go_fd);
	if (st->child.pidfd >= 0 && !uk_pidfd_wait(st->child.pidfd, KILL_WAIT_MS))
		(void)vm_kill_wait(st->child.pidfd);
	(void)uk_rm_rf(st->vmdir, NULL); /* leftovers go at start-up */
	if (st->cg_path[0])
		(void)cg_remove(&rt->cg, st->cg_path, NULL);
	rt_lock(rt);
	(void)uk_err_ctx_r(err, r, "container %s was not started", c->id);
	return r;
}

/* vmwrapper's report: RUNNING, or the start failed with its story. Lock held. */
static int start_result(struct runtime *rt, struct start *st, json_object *sync, uk_error *err)
{
	struct container *c = st->c;
	json_object *v;
	int r = 0;
	if (json_object_object_get_ex(sync, "ok", &v) && json_object_get_boolean(v)) {
		c->state = CTR_RUNNING;
		log_info("pod=%s ctr=%s msg=\"container started\" vmwrapper_pid=%d", c->sandbox_id, c->id,
			 c->wrapper_pid);
	} else {
		const char *e = json_object_object_get_ex(sync, "error", &v) ? json_object_get_string(v) : "unknown";
		r = uk_err(err, EIO, "starting the VM failed: %s", e);
		set_start_failed(c, e);
		/* If QEMU did run, exit.json has the precise story. */
		(void)vm_apply_exit(rt, c);
		rt_unlock(rt);
		vm_reap_wrapper(c);
		rt_lock(rt);
		if (!c->reason)
			rt_set_str(&c->reason, "Error");
	}
	if (r == 0)
		c->record_pending = true; /* written once StartContainer is answered */
	else
		(void)rt_save_container(rt, c, NULL); /* logged there; the VM's fate is in exit.json */
	return r;
}

/* Without the lock, once the record names vmwrapper: let it run and hear how it went. */
static int start_run(struct runtime *rt, struct start *st, uk_error *err)
{
	_cleanup_json_ json_object *sync = NULL;
	struct container *c = st->c;
	int r = start_go(st, &sync, err);
	rt_lock(rt);
	if (r < 0) {
		/* A vmwrapper that has not reported in time does not get to run on unsupervised. */
		rt_unlock(rt);
		_cleanup_close_ int pidfd = vm_wrapper_pidfd(c);
		(void)vm_kill_wait(pidfd);
		rt_lock(rt);
		if (!vm_apply_exit(rt, c))
			set_start_failed(c, err->msg);
		(void)rt_save_container(rt, c, NULL);
		return r;
	}
	return start_result(rt, st, sync, err);
}

int rt_container_start(struct runtime *rt, const char *id, uk_error *err)
{
	_cleanup_(start_done) struct start st = { .tap_fd = -1, .vhost_fd = -1, .sync_fd = -1,
						   .child = UK_CHILD_INIT };
	int r;
	/* The VM's cgroup join comes in a few ms: its lock's grace period starts now. */
	cg_prime(&rt->cg);
	if ((r = rt_begin_op(rt, id, &st.c, err)) < 0)
		return r;
	rt_pool_start_begin(rt);
	if ((r = start_check(rt, st.c, err)) < 0 || rt_start_pooled(rt, st.c) == 1) {
		rt_pool_start_end(rt);
		rt_release(st.c);
		rt_unlock(rt);
		return r;
	}
	/* Cold: a pool VM goes first if the host is short of memory for this one. */
	rt_pool_make_room(rt, (uint64_t)st.c->memory_mib + rt->cfg.memory_overhead_mib);
	r = start_prepare(rt, &st, err);
	rt_unlock(rt);
	if (r >= 0 && (r = start_spawn(rt, &st, err)) < 0) {
		rt_lock(rt);
		set_start_failed(st.c, err->msg);
		(void)rt_save_container(rt, st.c, NULL);
		rt_unlock(rt);
		(void)uk_rm_rf(st.vmdir, NULL);
		if (st.cg_path[0])
			(void)cg_remove(&rt->cg, st.cg_path, NULL); /* or at start-up */
	}
	rt_lock(rt);
	if (r >= 0 && (r = start_record(rt, &st, err)) >= 0) {
		rt_unlock(rt);
		r = start_run(rt, &st, err);
	}
	rt_pool_start_end(rt);
	rt_release(st.c);
	rt_unlock(rt);
	return r;
}
