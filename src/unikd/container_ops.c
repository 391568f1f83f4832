/* A container's operations after its creation, but for starting it (vm_start.c): stop,
 * remove, log reopen, resource updates; taking a container for slow work; its cgroup. */
#include <limits.h>
#include <signal.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"
#include "../common/vmctl.h"
#include "../qmp/qmp.h"
#include "runtime_internal.h"

#define QMP_TIMEOUT_MS 5000
#define STOP_REAP_MS 2000   /* for vmwrapper to record a killed VM's end and leave */
#define REOPEN_TIMEOUT_MS 5000

/* ---- taking a container ---- */

int rt_claim(struct runtime *rt, const char *id, struct container **ret, uk_error *err)
{
	struct container *c;
	int r = rt_find_container(rt, id, &c, err);
	if (r < 0)
		return r;
	if (c->busy)
		return uk_err(err, EAGAIN, "container %s has another operation under way; retry", c->id);
	c->busy = true;
	c->refs++;
	c->watcher = rt->watch;
	*ret = c;
	return 0;
}

int rt_begin_op(struct runtime *rt, const char *id, struct container **ret, uk_error *err)
{
	int r = rt_lock_container(rt, id, ret, err);
	if (r < 0)
		return r;
	/* An end the watcher has not recorded yet (its event waits for this lock). */
	vm_refresh_one(rt, *ret);
	if ((r = rt_claim(rt, (*ret)->id, ret, err)) < 0)
		rt_unlock(rt);
	return r;
}

void rt_release(struct container *c)
{
	c->busy = false;
	c->refs--;
	if (c->removed && c->refs == 0) {
		exit_watch_drop(c);
		container_free(c);
		return;
	}
	/* A start that made it RUNNING is watched from here on. */
	exit_watch_sync(c);
}

/* ---- cgroups ---- */

void rt_cgroup_limits(const struct runtime *rt, const struct container *c, struct cg_limits *l)
{
	/* Never below the guest's RAM: QEMU allocates all of it, and more for itself. */
	int64_t guest = (int64_t)c->memory_mib << 20;
	int64_t mem = c->memory_limit > guest ? c->memory_limit : guest;
	*l = (struct cg_limits){
		.memory_bytes = mem + ((int64_t)rt->cfg.memory_overhead_mib << 20),
		.cpu_quota_us = c->cpu_quota,
		.cpu_period_us = c->cpu_period,
		.cpu_shares = c->cpu_shares > 0 ? (uint64_t)c->cpu_shares : 0,
	};
}

int rt_ctr_cgroup_path(struct runtime *rt, const struct container *c, char *out, size_t len, uk_error *err)
{
	if (c->cgroup && *c->cgroup) {
		snprintf(out, len, "%s", c->cgroup);
		return 0;
	}
	struct sandbox *sb = rt_sandbox_by_id(rt, c->sandbox_id);
	return cg_path_for(sb ? sb->cgroup_parent : NULL, c->id, out, len, err);
}

int rt_remove_cgroup(struct runtime *rt, const struct container *c, uk_error *err)
{
	char path[CG_PATH_MAX];
	/* A path that cannot be built was never made. */
	if (rt->cg.version == CG_NONE || rt_ctr_cgroup_path(rt, c, path, sizeof(path), NULL) < 0)
		return 0;
	return cg_remove(&rt->cg, path, err);
}

/* ---- stop ---- */

static int ms_until(uint64_t deadline)
{
	uint64_t now = uk_now_mono_ns();
	if (now >= deadline)
		return 0;
	uint64_t ms = (deadline - now + 999999) / 1000000;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* Wait for the process behind pidfd until the deadline; true if it ended. */
static bool wait_until(int pidfd, uint64_t deadline)
{
	for (;;) {
		if (uk_pidfd_wait(pidfd, ms_until(deadline)))
			return true;
		if (ms_until(deadline) == 0)
			return false;
	}
}

static int qmp_command(const char *vmdir, const char *cmd, int timeout_ms, uk_error *err)
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
	return qmp_execute(q, cmd, NULL, timeout_ms, NULL, err);
}

/* The ACPI power button, then the deadline; at the deadline QEMU is killed whatever QMP
 * does (a hung or stopped QEMU never answers), and vmwrapper records the end (137,
 * "Killed") and leaves. Without the lock; c is claimed. */
static void stop_vm(struct runtime *rt, const struct container *c, const char *vmdir, int pidfd,
		    int64_t timeout_s)
{
	const int64_t year = 365LL * 24 * 3600; /* "forever", without overflow */
	int64_t t = timeout_s <= 0 ? 0 : timeout_s < year ? timeout_s : year;
	uint64_t deadline = uk_now_mono_ns() + (uint64_t)t * 1000000000ull;
	if (timeout_s > 0) {
		uk_error qerr = { 0 };
		int ms = ms_until(deadline);
		/* A guest that handles the button exits on its own; one that does not is killed at
		 * the deadline, so a failed press changes nothing. */
		(void)qmp_command(vmdir, "system_powerdown", ms < QMP_TIMEOUT_MS ? ms : QMP_TIMEOUT_MS, &qerr);
		if (wait_until(pidfd, deadline))
			return;
	}
	_cleanup_close_ int qemu = vm_qemu_pidfd(rt, c->id);
	if (qemu >= 0)
		(void)uk_pidfd_signal(qemu, SIGKILL); /* ESRCH: it has just ended, as wanted */
	else
		(void)uk_pidfd_signal(pidfd, SIGTERM); /* no vmwrapper.json: vmwrapper quits QEMU */
	if (!uk_pidfd_wait(pidfd, STOP_REAP_MS))
		(void)vm_kill_wait(pidfd); /* its end is then recorded as unknown */
}

/* A container that never started ends here, as in containerd. Recorded first: a stop that
 * cannot be saved changes nothing. Lock held. */
static int stop_created(struct runtime *rt, struct container *c, uk_error *err)
{
	vm_set_exited(c, 0, "Stopped", NULL);
	int r = rt_save_container(rt, c, err);
	if (r < 0) {
		c->state = CTR_CREATED;
		c->exit_code = 0;
		c->finished_ns = 0;
		rt_set_str(&c->reason, NULL);
	}
	return r;
}

int rt_container_stop(struct runtime *rt, const char *id, int64_t timeout_s, uk_error *err)
{
	struct container *c;
	char vmdir[PATH_MAX];
	int r;
	if ((r = rt_begin_op(rt, id, &c, err)) < 0)
		return r;
	if (c->state != CTR_RUNNING) {
		if (c->state == CTR_CREATED)
			r = stop_created(rt, c, err);
		rt_release(c);
		rt_unlock(rt);
		return r;
	}
	(void)rt_vm_dir(rt, c->id, vmdir, sizeof(vmdir)); /* its start fitted it */
	/* Every signal goes through a pidfd of the recorded process (PID and start time). */
	_cleanup_close_ int pidfd = vm_wrapper_pidfd(c);
	rt_unlock(rt);
	log_debug("pod=%s ctr=%s msg=\"stopping container\" timeout=%lld", c->sandbox_id, c->id,
		  (long long)timeout_s);
	if (pidfd >= 0)
		stop_vm(rt, c, vmdir, pidfd, timeout_s);
	rt_lock(rt);
	c->busy = false;
	vm_refresh_one(rt, c);
	if (c->state == CTR_RUNNING)
		r = uk_err(err, ETIMEDOUT, "container %s did not stop", c->id);
	else
		log_info("pod=%s ctr=%s msg=\"container stopped\" exit_code=%d", c->sandbox_id, c->id, c->exit_code);
	c->busy = true;
	rt_release(c);
	rt_unlock(rt);
	return r;
}

/* ---- remove ---- */

/* The record goes (durably), then the container leaves the registry. Lock held. */
static int forget_container(struct runtime *rt, struct container *c, uk_error *err)
{
	int r = record_delete(rt->container_dir, c->id, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < rt->n_ct; i++)
		if (rt->ct[i] == c) {
			rt->ct[i] = rt->ct[--rt->n_ct];
			break;
		}
	c->removed = true;
	log_info("pod=%s ctr=%s msg=\"container removed\"", c->sandbox_id, c->id);
	return 0;
}

int rt_container_remove(struct runtime *rt, const char *id, uk_error *err)
{
	struct container *c;
	char vmdir[PATH_MAX], ctrdir[PATH_MAX];
	rt_id full;
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
	if ((r = rt_claim(rt, full, &c, err)) < 0) {
		rt_unlock(rt);
		return r;
	}
	rt_unlock(rt);
	/* The order: the VM ends, its cgroup goes, then the record (durably), then the VM
	 * directory and the container's directory, which start-up removes should a crash come
	 * first. A crash before the record goes leaves an EXITED container to remove again. */
	vm_reap_wrapper(c);
	vm_reap_qemu(rt, c->id);
	rt_lock(rt);
	if ((r = rt_remove_cgroup(rt, c, err)) < 0 || (r = forget_container(rt, c, err)) < 0) {
		(void)uk_err_ctx_r(err, r, "remove container %s", c->id);
		rt_release(c);
		rt_unlock(rt);
		return r;
	}
	(void)rt_vm_dir(rt, full, vmdir, sizeof(vmdir));
	(void)rt_ctr_dir(rt, full, ctrdir, sizeof(ctrdir));
	rt_release(c);
	rt_unlock(rt);
	/* After the record: a crash in between leaves stray directories, removed at start-up. */
	(void)uk_rm_rf(vmdir, NULL);
	uk_error rmerr = { 0 };
	if (uk_rm_rf(ctrdir, &rmerr) < 0)
		log_error("ctr=%s msg=\"cannot remove the container directory\" error=\"%s\"", full, rmerr.msg);
	return 0;
}

/* ---- log reopen ---- */

int rt_container_reopen_log(struct runtime *rt, const char *id, uk_error *err)
{
	struct container *c;
	char vmdir[PATH_MAX];
	int r;
	if ((r = rt_lock_container(rt, id, &c, err)) < 0)
		return r;
	vm_refresh_one(rt, c);
	if (c->state != CTR_RUNNING) {
		rt_unlock(rt);
		return uk_err(err, EBUSY, "container %s is not running", c->id);
	}
	(void)rt_vm_dir(rt, c->id, vmdir, sizeof(vmdir)); /* its start fitted it */
	_cleanup_close_ int pidfd = vm_wrapper_pidfd(c);
	rt_unlock(rt);
	/* vmwrapper answers once the new file is open, or with why it could not be. */
	char reply[VMCTL_REPLY_MAX];
	uk_error e = { 0 };
	r = vmctl_request(vmdir, VMCTL_CMD_REOPEN_LOG, REOPEN_TIMEOUT_MS, reply, sizeof(reply), &e);
	if (r == -ENOENT && pidfd >= 0) {
		/* A vmwrapper from before the control socket: it reopens on SIGHUP, unanswered. */
		if ((r = uk_pidfd_signal(pidfd, SIGHUP)) < 0)
			return uk_err_errno(err, -r, "signal vmwrapper of container %s", id);
		return 0;
	}
	if (r < 0) {
		*err = e;
		(void)uk_err_ctx_r(err, r, "reopen the log of container %s", id);
	}
	return r;
}

/* ---- resources ---- */

struct resources {
	int64_t memory_limit, cpu_quota, cpu_period, cpu_shares;
};

static void get_resources(const struct container *c, struct resources *r)
{
	*r = (struct resources){ c->memory_limit, c->cpu_quota, c->cpu_period, c->cpu_shares };
}

static void set_resources(struct container *c, const struct resources *r)
{
	c->memory_limit = r->memory_limit;
	c->cpu_quota = r->cpu_quota;
	c->cpu_period = r->cpu_period;
	c->cpu_shares = r->cpu_shares;
}

/* Write the container's limits to its VM's cgroup, if it runs in one. */
static int apply_cgroup(struct runtime *rt, const struct container *c, uk_error *err)
{
	if (c->state != CTR_RUNNING || !c->cgroup || rt->cg.version == CG_NONE)
		return 0;
	struct cg_limits l;
	rt_cgroup_limits(rt, c, &l);
	return cg_update(&rt->cg, c->cgroup, &l, err);
}

int rt_container_update_resources(struct runtime *rt, const char *id, int64_t memory_limit, int64_t cpu_quota,
				  int64_t cpu_period, int64_t cpu_shares, uk_error *err)
{
	struct container *c;
	struct resources old, new;
	int r;
	if ((r = rt_begin_op(rt, id, &c, err)) < 0)
		return r;
	get_resources(c, &old);
	/* The CRI sends 0 for what it leaves unchanged. */
	new = (struct resources){ memory_limit > 0 ? memory_limit : old.memory_limit,
				  cpu_quota != 0 ? cpu_quota : old.cpu_quota, cpu_period > 0 ? cpu_period : old.cpu_period,
				  cpu_shares > 0 ? cpu_shares : old.cpu_shares };
	if (c->state == CTR_EXITED)
		r = uk_err(err, EBUSY, "container %s has exited", c->id);
	else if (new.memory_limit > 0 && ((new.memory_limit + (1 << 20) - 1) >> 20) < (int64_t)c->memory_mib)
		r = uk_err(err, EINVAL,
			   "linux.memory_limit_in_bytes %lld is below the VM's memory of %u MiB, which cannot shrink "
			   "while it runs",
			   (long long)new.memory_limit, c->memory_mib);
	if (r < 0)
		goto out;
	/* All or nothing: the cgroup first, then the record; either failing puts the old
	 * limits back. A crash in between leaves the old record, whose limits start-up
	 * applies again: the update did not happen. */
	set_resources(c, &new);
	if ((r = apply_cgroup(rt, c, err)) < 0 || (r = rt_save_container(rt, c, err)) < 0) {
		set_resources(c, &old);
		(void)apply_cgroup(rt, c, NULL); /* the old values were accepted before */
		(void)uk_err_ctx_r(err, r, "update the resources of container %s", c->id);
		goto out;
	}
	log_info("pod=%s ctr=%s msg=\"resources updated\" memory_limit=%lld cpu_quota=%lld cpu_period=%lld "
		 "cpu_shares=%lld",
		 c->sandbox_id, c->id, (long long)new.memory_limit, (long long)new.cpu_quota, (long long)new.cpu_period,
		 (long long)new.cpu_shares);
out:
	rt_release(c);
	rt_unlock(rt);
	return r;
}
