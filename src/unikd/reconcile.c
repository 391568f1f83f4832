/* Start-up reconciliation (docs/architecture.md, "Crash safety and restarts"): the records
 * against what exists. VMs are reattached or recorded as ended, half-made objects are
 * completed or removed, orphans go. Each clean-up is logged: nobody else would see it. */
#include <dirent.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/log.h"
#include "../common/util.h"
#include "pool_vms.h"
#include "runtime_internal.h"

/* The container id of a vmwrapper of ours: its argv is
 * "vmwrapper --spec <vm_dir>/<64 hex>/spec.json ...". false for anything else, and for the
 * held process before its exec (its argv is still unikd's). */
static bool vmwrapper_id_of(struct runtime *rt, pid_t pid, char id[UK_FULL_ID_LEN + 1])
{
	return vm_wrapper_argv_id(pid, rt->vm_dir, id);
}

/* The recorded vmwrapper is the container's: its argv names the container's VM directory,
 * or, for a VM claimed from the pool, the pool VM's. */
static bool wrapper_is_containers(struct runtime *rt, const struct container *c)
{
	char id[UK_FULL_ID_LEN + 1], pool_root[PATH_MAX];
	if (vmwrapper_id_of(rt, c->wrapper_pid, id))
		return strcmp(id, c->id) == 0;
	snprintf(pool_root, sizeof(pool_root), "%s/pool", rt->cfg.run_dir);
	return c->pool_vm && vm_wrapper_argv_id(c->wrapper_pid, pool_root, id) && strcmp(id, c->pool_vm) == 0;
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

/* A start cut short that never ran a VM: its directory and cgroup go, the container stays
 * CREATED and can be started again. */
static void undo_start(struct runtime *rt, struct container *c)
{
	(void)remove_vm_dir(rt, c->id); /* logs a failure itself */
	uk_error e = { 0 };
	if (rt_remove_cgroup(rt, c, &e) < 0)
		log_error("pod=%s ctr=%s msg=\"cannot remove the cgroup\" error=\"%s\"", c->sandbox_id, c->id, e.msg);
	free(c->cgroup);
	c->cgroup = NULL;
	forget_wrapper(c);
	free(c->pool_vm);
	c->pool_vm = NULL;
	c->started_ns = 0;
	log_warn("pod=%s ctr=%s msg=\"undid an interrupted start\"", c->sandbox_id, c->id);
}

/* CREATED with a vmwrapper named: StartContainer was cut short after its record was saved.
 * Complete it if vmwrapper runs (or ran), undo it if it never did. */
static void resolve_start(struct runtime *rt, struct container *c)
{
	_cleanup_close_ int pidfd = vm_wrapper_pidfd(c);
	if (pidfd >= 0 && (!wrapper_is_containers(rt, c) || (!c->pool_vm && vm_wrapper_held(c->wrapper_pid)))) {
		/* Still held, waiting for the go-ahead: nothing of the VM exists yet. End it here,
		 * so it cannot go on with the byte unikd may have written just before dying. */
		(void)vm_kill_wait(pidfd); /* gone or not, it is not ours to run */
		pidfd = safe_close(pidfd);
	}
	if (vm_apply_exit(rt, c)) {
		log_warn("pod=%s ctr=%s msg=\"completed an interrupted start: the VM has ended\" exit_code=%d reason=%s",
			 c->sandbox_id, c->id, c->exit_code, c->reason);
	} else if (pidfd >= 0 && c->pool_vm && !rt_claim_completes(rt, c)) {
		(void)vm_kill_wait(pidfd); /* a pool VM whose claim cannot be made: not ours to run */
		vm_reap_qemu(rt, c->id);
		undo_start(rt, c);
	} else if (pidfd >= 0 && vm_wrapper_alive(c)) {
		c->state = CTR_RUNNING;
		log_warn("pod=%s ctr=%s msg=\"completed an interrupted start: the VM runs\" vmwrapper_pid=%d", c->sandbox_id,
			 c->id, c->wrapper_pid);
	} else if (vm_apply_exit(rt, c)) {
		log_warn("pod=%s ctr=%s msg=\"completed an interrupted start: the VM has ended\" exit_code=%d reason=%s",
			 c->sandbox_id, c->id, c->exit_code, c->reason);
	} else if (vm_file_exists(rt, c->id, "vmwrapper.json")) {
		vm_set_vanished(c);
		log_warn("pod=%s ctr=%s msg=\"completed an interrupted start: the VM's supervisor vanished\"", c->sandbox_id,
			 c->id);
	} else {
		/* vmwrapper never started QEMU: the start is undone, and can be made again. */
		undo_start(rt, c);
	}
	(void)rt_save_container(rt, c, NULL); /* logged there */
}

/* CREATED with no vmwrapper named: a start cut short before its record may have made the VM
 * directory and the cgroup. Nothing runs there (the held vmwrapper exits on the go pipe's
 * EOF without joining the cgroup; kill_orphan_wrappers ends one still on its way out). */
static void clean_created(struct runtime *rt, struct container *c)
{
	bool dir = remove_vm_dir(rt, c->id);
	uk_error e = { 0 };
	if (rt_remove_cgroup(rt, c, &e) < 0)
		log_error("pod=%s ctr=%s msg=\"cannot remove the cgroup\" error=\"%s\"", c->sandbox_id, c->id, e.msg);
	if (c->cgroup) {
		free(c->cgroup);
		c->cgroup = NULL;
		(void)rt_save_container(rt, c, NULL); /* logged there */
	}
	if (dir)
		log_warn("pod=%s ctr=%s msg=\"removed the leftovers of a start cut short\"", c->sandbox_id, c->id);
}

/* A container that cannot be reached through the CRI (its sandbox is gone): everything of
 * it goes, its VM included. */
static void destroy_container(struct runtime *rt, struct container *c)
{
	if (!other_boot(rt, c->boot_id)) {
		_cleanup_close_ int pidfd = vm_wrapper_pidfd(c);
		(void)vm_kill_wait(pidfd); /* QEMU is then waited for */
		vm_reap_qemu(rt, c->id);
	}
	uk_error e = { 0 };
	if (rt_remove_cgroup(rt, c, &e) < 0)
		log_error("pod=%s ctr=%s msg=\"cannot remove the cgroup\" error=\"%s\"", c->sandbox_id, c->id, e.msg);
	if (record_delete(rt->container_dir, c->id, &e) < 0) {
		log_error("pod=%s ctr=%s msg=\"cannot remove the record of a container whose pod is gone\" error=\"%s\"",
			  c->sandbox_id, c->id, e.msg);
		return; /* its files stay with it; tried again at the next start */
	}
	(void)remove_vm_dir(rt, c->id); /* logs a failure itself */
	char dir[PATH_MAX];
	if (rt_ctr_dir(rt, c->id, dir, sizeof(dir)) == 0)
		(void)uk_rm_rf(dir, NULL); /* a leftover is found again at the next start */
	log_warn("pod=%s ctr=%s msg=\"removed a container whose pod is gone\"", c->sandbox_id, c->id);
}

/* The parent of a process, 0 if unknown. */
static pid_t proc_ppid(pid_t pid)
{
	struct uk_proc_stat st;
	return uk_proc_stat(pid, &st) < 0 ? 0 : st.ppid;
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
		(void)vm_kill_wait(pidfd); /* logged below either way */
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
		_cleanup_close_ int pidfd = vm_pidfd_from_state(rt, id, "pid", "start_time");
		(void)vm_kill_wait(pidfd); /* then QEMU goes with it */
		vm_reap_qemu(rt, id);
		/* Its cgroup, if it had the default parent (the pod's is unknown without a record). */
		char cg[CG_PATH_MAX];
		if (rt->cg.version != CG_NONE && cg_path_for(NULL, id, cg, sizeof(cg), NULL) == 0)
			(void)cg_remove(&rt->cg, cg, NULL); /* a pod's own parent cannot be known here */
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

/* After a reboot nothing runs: running containers ended with the node (how, if a
 * persistent run directory still tells), and ready pods lost their network. */
static void after_reboot(struct runtime *rt)
{
	for (size_t i = 0; i < rt->n_ct; i++) {
		struct container *c = rt->ct[i];
		if (!(c->state == CTR_RUNNING || (c->state == CTR_CREATED && c->wrapper_pid)) ||
		    !other_boot(rt, c->boot_id))
			continue;
		if (!vm_apply_exit(rt, c))
			vm_set_exited(c, 255, "NodeRebooted", "the node rebooted while the VM ran");
		forget_wrapper(c);
		(void)rt_save_container(rt, c, NULL); /* logged there; redone at the next start */
		log_warn("pod=%s ctr=%s msg=\"the node rebooted: container recorded as exited\" exit_code=%d reason=%s",
			 c->sandbox_id, c->id, c->exit_code, c->reason);
	}
	for (size_t i = 0; i < rt->n_sb; i++) {
		struct sandbox *s = rt->sb[i];
		if (s->state != SANDBOX_READY || !other_boot(rt, s->boot_id))
			continue;
		s->state = SANDBOX_NOTREADY;
		(void)rt_save_sandbox(rt, s, NULL);
		log_warn("pod=%s msg=\"the node rebooted: pod recorded as not ready\"", s->id);
	}
}

/* A container whose sandbox is gone cannot be reached through the CRI. */
static void drop_podless(struct runtime *rt)
{
	for (size_t i = 0; i < rt->n_ct;) {
		if (rt_sandbox_by_id(rt, rt->ct[i]->sandbox_id)) {
			i++;
			continue;
		}
		destroy_container(rt, rt->ct[i]);
		container_free(rt->ct[i]);
		rt->ct[i] = rt->ct[--rt->n_ct];
	}
}

/* UpdateContainerResources writes the cgroup before the record: a crash in between left
 * the cgroup with limits the record does not have. The record wins. */
static void apply_recorded_limits(struct runtime *rt)
{
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
}

/* The network: a stop cut short is finished, then whatever no ready pod holds goes. */
static void reconcile_network(struct runtime *rt)
{
	if (rt->net->cni) {
		rt_reconcile_cni(rt);
		return;
	}
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
		(void)rt_save_sandbox(rt, s, NULL);
		log_warn("pod=%s msg=\"released the network of a stopped pod\"", s->id);
	}
	struct rt_net_cleanup nc;
	uk_error e = { 0 };
	if (rt_net_reconcile(rt->net, rt->sb, rt->n_sb, pod_has_vm, rt, &nc, &e) < 0)
		log_error("msg=\"cannot reconcile the pod network\" error=\"%s\"", e.msg);
}

/* Lock held; runs before the CRI server, so nothing else is under way. */
void rt_reconcile(struct runtime *rt)
{
	after_reboot(rt);
	drop_podless(rt);
	/* Before the containers: a claim cut short leaves a pool VM in a container's directory,
	 * which must be gone before that directory and its cgroup can be. */
	rt_pool_reap_orphans(rt);
	/* VMs: reattached, recorded as ended, or (a start cut short) completed or undone. */
	for (size_t i = 0; i < rt->n_ct; i++) {
		struct container *c = rt->ct[i];
		if (c->state == CTR_CREATED && c->wrapper_pid)
			resolve_start(rt, c);
		else if (c->state == CTR_CREATED)
			clean_created(rt, c);
		else
			vm_refresh_one(rt, c);
	}
	kill_orphan_wrappers(rt);
	remove_orphan_vm_dirs(rt);
	remove_stray_ctr_dirs(rt);
	apply_recorded_limits(rt);
	reconcile_network(rt);
}
