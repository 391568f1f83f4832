/* StartContainer from the warm pool (pool_vms.h): a ready VM that matches the container is
 * made the container's, in an order that a crash at any point leaves recoverable:
 *   1. out of the pool (lock);
 *   2. its directory renamed to the container's VM directory (from now on no pool adopts
 *      it; start-up ends it unless a record names it), the container's cgroup made and
 *      vmwrapper and QEMU moved into it, claim.json written;
 *   3. the pod's network takes its MAC and tap (in CNI mode: the pod's tap is made as for a
 *      cold start), and the record names its vmwrapper (lock);
 *   4. vmwrapper's "claim": in CNI mode the NIC is plugged in with eth0's MAC and the tap's
 *      fd; the log opens and the guest runs (start-up resends it: without the fds, only a
 *      claim that took is completed);
 *   5. RUNNING (lock).
 * A failure before 4 answers ends the VM and the start goes on cold. */
#include <fcntl.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"
#include "../common/vmctl.h"
#include "pool_vms.h"
#include "runtime_internal.h"

#define CLAIM_TIMEOUT_MS 10000

/* The NIC that a claim plugs in (a CNI pod: its MAC is eth0's, which the plugins chose). */
struct claim_nic {
	char mac[18]; /* "": the VM has its NIC already, or none */
	int tap_fd, vhost_fd;
};

static void claim_nic_done(struct claim_nic *n)
{
	n->tap_fd = safe_close(n->tap_fd);
	n->vhost_fd = safe_close(n->vhost_fd);
}

/* A pid into each cgroup.procs file. */
static int move_into(char files[][PATH_MAX], size_t n, pid_t pid, uk_error *err)
{
	char buf[24];
	int len = snprintf(buf, sizeof(buf), "%d", (int)pid);
	for (size_t i = 0; i < n; i++) {
		_cleanup_close_ int fd = open(files[i], O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, buf, (size_t)len) != len)
			return uk_err_errno(err, errno, "move pid %d into %s", (int)pid, files[i]);
	}
	return 0;
}

/* QEMU's pid from vmwrapper.json in dir, checked against its start time. */
static int qemu_pid_of(const char *dir, pid_t *ret, uk_error *err)
{
	_cleanup_json_ json_object *o = vm_dir_json(dir, "vmwrapper.json");
	json_object *p, *st;
	uint64_t now;
	if (!o || !json_object_object_get_ex(o, "qemu_pid", &p) || !json_object_object_get_ex(o, "qemu_start_time", &st))
		return uk_err(err, EIO, "%s/vmwrapper.json names no QEMU", dir);
	*ret = (pid_t)json_object_get_int(p);
	if (uk_proc_starttime(*ret, &now) < 0 || now != (uint64_t)json_object_get_int64(st))
		return uk_err(err, ESRCH, "the pool VM's QEMU (pid %d) is gone", (int)*ret);
	return 0;
}

/* Step 2, without the lock. */
static int claim_prepare(struct runtime *rt, struct container *c, const struct rt_pool_vm *vm, const char *vmdir,
			 const char *cg_path, const struct cg_limits *limits, bool input, struct claim_nic *nic,
			 uk_error *err)
{
	char cg_files[CG_PROCS_MAX][PATH_MAX];
	size_t n_cg = 0;
	pid_t qemu = 0;
	int r;
	(void)uk_rm_rf(vmdir, NULL); /* a leftover of a start cut short */
	if (rename(vm->dir, vmdir) < 0)
		return uk_err_errno(err, errno, "rename %s to %s", vm->dir, vmdir);
	if ((r = qemu_pid_of(vmdir, &qemu, err)) < 0)
		return r;
	if (cg_path[0] &&
	    ((r = cg_create(&rt->cg, cg_path, limits, err)) < 0 ||
	     (r = cg_procs_files(&rt->cg, cg_path, cg_files, CG_PROCS_MAX, &n_cg, err)) < 0 ||
	     (r = move_into(cg_files, n_cg, vm->pid, err)) < 0 || (r = move_into(cg_files, n_cg, qemu, err)) < 0))
		return uk_err_ctx_r(err, r, "the VM's cgroup %s", cg_path);
	if (vm->cg_path[0])
		(void)cg_remove(&rt->cg, vm->cg_path, NULL); /* empty now; or at the pool's next sweep */
	struct vmctl_claim cl = { .id = c->id, .console_log = c->log_path, .log_format = VMCTL_LOG_CRI,
				  .input = input, .state_dir = (char *)vmdir };
	if (nic->mac[0]) {
		nic->vhost_fd = open("/dev/vhost-net", O_RDWR | O_CLOEXEC); /* optional, as for a cold start */
		cl.nets[0] = (struct vmctl_claim_net){ .mac = nic->mac, .vhost = nic->vhost_fd >= 0 };
		cl.n_nets = 1;
	}
	return vmctl_claim_write(vmdir, &cl, err);
}

/* Step 3, lock held: the network, then the record. The pod is looked up again: the lock was
 * not held since it was last (the container is busy, its pod is not). */
static int claim_record(struct runtime *rt, struct container *c, const struct rt_pool_vm *vm, const char *cg_path,
			struct claim_nic *nic, uk_error *err)
{
	struct sandbox *sb = rt_sandbox_by_id(rt, c->sandbox_id);
	int r;
	if ((vm->tap[0] || nic->mac[0]) && !sb)
		return uk_err(err, ENOENT, "pod sandbox %s is gone", c->sandbox_id);
	if (vm->tap[0] && ((r = rt_net_claim_tap(rt->net, sb, vm->tap, vm->mac, err)) < 0 ||
			   (r = rt_save_sandbox(rt, sb, err)) < 0))
		return r;
	if (nic->mac[0] && (nic->tap_fd = rt_net_tap(rt->net, sb, vm_wants_dhcp(c), err)) < 0)
		return uk_err_ctx_r(err, nic->tap_fd, "create the pod's tap");
	c->wrapper_pid = vm->pid;
	c->wrapper_start = vm->start_time;
	memcpy(c->boot_id, rt->boot_id, sizeof(c->boot_id));
	c->started_ns = (int64_t)uk_now_realtime_ns();
	rt_set_str(&c->cgroup, cg_path[0] ? cg_path : NULL);
	rt_set_str(&c->pool_vm, vm->id);
	free(c->cgroup_error);
	c->cgroup_error = rt->cg.version == CG_NONE ? strdup(rt->cg.why) : NULL;
	return rt_save_container_start(rt, c, err);
}

static void forget_claim(struct container *c)
{
	c->wrapper_pid = 0;
	c->wrapper_start = 0;
	c->boot_id[0] = '\0';
	c->started_ns = 0;
	rt_set_str(&c->pool_vm, NULL);
}

int rt_start_pooled(struct runtime *rt, struct container *c)
{
	struct sandbox *sb = rt_sandbox_by_id(rt, c->sandbox_id);
	struct rt_pool_vm vm;
	char vmdir[PATH_MAX], cg_path[CG_PATH_MAX] = "";
	struct cg_limits limits = { 0 };
	_cleanup_(claim_nic_done) struct claim_nic nic = { .tap_fd = -1, .vhost_fd = -1 };
	uk_error e = { 0 };
	int r;
	if (rt_pool_take(rt, c, sb, &vm) != 1)
		return 0;
	if (vm.nics_at_claim && sb && sb->mac)
		snprintf(nic.mac, sizeof(nic.mac), "%s", sb->mac);
	if ((vm.nics_at_claim && !nic.mac[0]) || rt_vm_dir(rt, c->id, vmdir, sizeof(vmdir) - 32) < 0 ||
	    (rt->cg.version != CG_NONE && cg_path_for(sb ? sb->cgroup_parent : NULL, c->id, cg_path, sizeof(cg_path), &e) < 0)) {
		rt_unlock(rt);
		rt_pool_discard(rt, &vm, vm.dir);
		rt_lock(rt);
		return 0;
	}
	rt_cgroup_limits(rt, c, &limits);
	bool input = c->stdin_open;
	rt_unlock(rt);
	const char *where = vm.dir;
	r = claim_prepare(rt, c, &vm, vmdir, cg_path, &limits, input, &nic, &e);
	if (r >= 0 || access(vmdir, F_OK) == 0)
		where = vmdir;
	rt_lock(rt);
	if (r >= 0 && (r = claim_record(rt, c, &vm, cg_path, &nic, &e)) < 0)
		forget_claim(c);
	rt_unlock(rt);
	char reply[VMCTL_REPLY_MAX];
	/* The NIC's fds in the order vmwrapper takes them: the tap, then vhost-net. */
	int fds[2], n_fds = 0;
	if (nic.tap_fd >= 0) {
		fds[n_fds++] = nic.tap_fd;
		if (nic.vhost_fd >= 0)
			fds[n_fds++] = nic.vhost_fd;
	}
	if (r >= 0)
		r = vmctl_request_fds(vmdir, VMCTL_CMD_CLAIM, fds, (size_t)n_fds, CLAIM_TIMEOUT_MS, reply, sizeof(reply),
				      &e);
	claim_nic_done(&nic); /* QEMU holds them now, or the VM is ended below */
	if (r < 0) {
		log_warn("pod=%s ctr=%s msg=\"the pool VM could not be claimed; starting cold\" vm=%s error=\"%s\"",
			 c->sandbox_id, c->id, vm.id, e.msg);
		rt_pool_discard(rt, &vm, where);
		if (cg_path[0])
			(void)cg_remove(&rt->cg, cg_path, NULL); /* the cold start makes it again */
		rt_lock(rt);
		if (vm.nics_at_claim && strstr(e.msg, VMCTL_ERR_PLUG))
			rt_pool_plug_failed(rt, &vm, e.msg);
		if (c->wrapper_pid) {
			forget_claim(c);
			(void)rt_save_container(rt, c, NULL); /* logged there; start-up undoes it either way */
		}
		return 0;
	}
	rt_lock(rt);
	c->state = CTR_RUNNING;
	c->record_pending = true; /* written once StartContainer is answered */
	log_info("pod=%s ctr=%s msg=\"container started from the pool\" vm=%s vmwrapper_pid=%d", c->sandbox_id, c->id,
		 vm.id, c->wrapper_pid);
	return 1;
}

bool rt_claim_completes(struct runtime *rt, const struct container *c)
{
	char vmdir[PATH_MAX], reply[VMCTL_REPLY_MAX];
	uk_error e = { 0 };
	if (rt_vm_dir(rt, c->id, vmdir, sizeof(vmdir)) < 0)
		return false;
	int r = vmctl_request(vmdir, VMCTL_CMD_CLAIM, CLAIM_TIMEOUT_MS, reply, sizeof(reply), &e);
	return r == 0 || (r == -EIO && strstr(e.msg, VMCTL_ERR_CLAIMED));
}
