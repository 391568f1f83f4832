/* The warm pool's VMs (pool_vms.h). A key is learnt from a pod's cold start: its VM
 * fields are the template, and its boot files are linked under STATE/pool/<key>/ so the
 * pool outlives the container that taught it. A pool VM lives in RUN/pool/<id>/ until its
 * claim renames that to the container's VM directory. One thread starts and drops VMs as
 * src/pool's decisions say, never while a container start is under way. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#include "../common/log.h"
#include "../common/spawn.h"
#include "../common/util.h"
#include "../net/net.h"
#include "pool_vms.h"
#include "runtime_internal.h"

#define POOL_KEY_FILE "key.json"
#define POOL_VM_FILE "pool.json"
#define POOL_CG_PARENT "/unikd-pool"
#define POOL_JSON_MAX (64 * 1024)

struct pool_vm {
	struct rt_pool_vm v;
	size_t key;
	int pidfd;       /* its vmwrapper's, while it is in the pool's list (in the epoll set) */
	uint64_t serial; /* its epoll key; never reused (0 is the wake eventfd) */
};

struct pool_keyinfo {
	struct pool_key key;
	json_object *tmpl; /* {"vm": VM fields, "nic": bool, ...} with boot files under the key's dir */
	struct pool_entry e;
	bool failed;       /* its last start failed: nothing more until a pod wants it again */
	bool unpluggable;  /* a claim could not plug its NIC: no more of it until unikd restarts */
	bool written;      /* its directory (boot files, key.json) is made */
};

struct rt_pool {
	struct pool_config cfg;
	char vm_root[PATH_MAX - 128];  /* RUN/pool (room left for "/<id>/file") */
	char key_root[PATH_MAX - 128]; /* STATE/pool */
	struct pool_keyinfo *keys;
	size_t n_keys;
	struct pool_vm **vms;
	size_t n_vms;
	unsigned starts_in_flight;
	int wake_fd;
	int ep_fd;            /* the thread waits here: wake_fd, and each ready VM's pidfd */
	uint64_t next_serial;
	bool stopping;
	pthread_t thread;
	char last_error[UK_ERROR_MSG_MAX + 64];
};

static uint64_t now_ms(void)
{
	return uk_now_mono_ns() / 1000000ull;
}

static void pool_wake(struct rt_pool *p)
{
	uint64_t one = 1;
	(void)!write(p->wake_fd, &one, sizeof(one)); /* a full counter wakes the thread as well */
}

static const char *str_of(json_object *o, const char *key)
{
	json_object *v;
	return o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : NULL;
}

static int int_of(json_object *o, const char *key)
{
	json_object *v;
	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_int(v) : 0;
}

/* ---- keys ---- */

/* A template whose NIC the claim plugs in (CNI mode). */
static bool nics_at_claim(json_object *t)
{
	json_object *o;
	return json_object_object_get_ex(t, "nics_at_claim", &o) && json_object_get_boolean(o);
}

/* The key of a template: {"vm": {...}, "nic": bool, "nics_at_claim": bool, "image_ref",
 * "framework"}. */
static int key_of_template(json_object *t, struct pool_key *key, uk_error *err)
{
	json_object *vm = NULL, *dev, *nic;
	if (!json_object_object_get_ex(t, "vm", &vm) || !json_object_is_type(vm, json_type_object))
		return uk_err(err, EINVAL, "a pool template without \"vm\"");
	char devices[POOL_FIELD_MAX] = "";
	if (json_object_object_get_ex(vm, "devices", &dev) && json_object_is_type(dev, json_type_array))
		for (size_t i = 0; i < json_object_array_length(dev); i++) {
			size_t l = strlen(devices);
			snprintf(devices + l, sizeof(devices) - l, "%s%s", i ? "," : "",
				 json_object_get_string(json_object_array_get_idx(dev, i)));
		}
	/* The PIT choice changes QEMU's machine: it is part of the machine for the key. */
	char machine[POOL_FIELD_MAX];
	snprintf(machine, sizeof(machine), "%s%s%s", str_of(vm, "machine") ? str_of(vm, "machine") : "",
		 str_of(vm, "pit") ? ",pit=" : "", str_of(vm, "pit") ? str_of(vm, "pit") : "");
	struct pool_key_facts f = {
		.image_digest = str_of(t, "image_ref"), .cmdline = str_of(vm, "cmdline"),
		.memory_mib = (unsigned)int_of(vm, "memory_mib"), .vcpus = (unsigned)int_of(vm, "vcpus"),
		.machine = machine, .accel = str_of(vm, "accel"), .firmware = str_of(vm, "firmware"),
		.cpu_model = str_of(vm, "cpu"), .framework = str_of(t, "framework"), .exit_contract = str_of(vm, "exit"),
		.devices = devices,
		.n_nets = json_object_object_get_ex(t, "nic", &nic) && json_object_get_boolean(nic) ? 1 : 0,
		.disk = str_of(vm, "disk") != NULL, .nics_at_claim = nics_at_claim(t),
	};
	return pool_key_make(&f, key, err);
}

/* In CNI mode the guest's NIC must have the MAC the plugins gave the pod's eth0, known only
 * after the pod's ADD; a pool VM gets its NIC at the claim instead (vmwrapper's
 * nics_at_claim: QMP device_add before the guest's first instruction). That needs a bus that
 * takes a device after QEMU has started: pc's PCI root bus, not microvm's virtio-mmio nor
 * q35's PCIe root bus; and the NIC last in the device order, where a plugged device lands as
 * a cold start's would. */
static bool nic_pluggable(const struct container *c)
{
	if (!c->machine || strcmp(c->machine, "pc") != 0)
		return false;
	bool net_seen = false;
	for (size_t i = 0; c->devices && i < json_object_array_length(c->devices); i++) {
		bool net = strcmp(json_object_get_string(json_object_array_get_idx(c->devices, i)) ?: "", "net") == 0;
		if (net_seen && !net)
			return false;
		net_seen = net_seen || net;
	}
	return true;
}

/* A pod whose VM can come from the pool: booted from a kernel, nothing of the pod's own
 * (disk overlay, volumes) in the VM, a command line that does not name the pod's address (a
 * guest configured by DHCP, or without a network), and in CNI mode a NIC the claim can plug. */
static bool poolable(struct runtime *rt, const struct container *c, const struct sandbox *sb)
{
	if (!c->kernel || c->disk || c->shares || c->blockdevs || c->mounts || !c->image_ref)
		return false;
	if (c->nic && sb && sb->ip && c->cmdline && strstr(c->cmdline, sb->ip))
		return false;
	if (c->nic && rt->net->cni && !nic_pluggable(c))
		return false;
	return true;
}

static json_object *template_of(struct runtime *rt, const struct container *c)
{
	json_object *t = json_object_new_object(), *vm = json_object_new_object(), *g;
	container_vm_fields_to_json(c, vm);
	json_object_object_del(vm, "stdin"); /* the claim's, not the VM's */
	json_object_object_add(t, "vm", vm);
	uk_json_add_str(t, "image_ref", c->image_ref);
	if (c->guest && json_object_object_get_ex(c->guest, "framework", &g))
		uk_json_add_str(t, "framework", json_object_get_string(g));
	bool nic = c->nic && (rt->net->enabled || rt->net->cni);
	json_object_object_add(t, "nic", json_object_new_boolean(nic));
	if (nic && rt->net->cni)
		json_object_object_add(t, "nics_at_claim", json_object_new_boolean(true));
	return t;
}

static ssize_t key_find(struct rt_pool *p, const struct pool_key *k)
{
	for (size_t i = 0; i < p->n_keys; i++)
		if (p->keys[i].key.len == k->len && memcmp(p->keys[i].key.text, k->text, k->len) == 0)
			return (ssize_t)i;
	return -1;
}

/* The template's boot files as links in the key's directory: they stay while the key does,
 * whatever happens to the container or the image. Another file system: the path as it is. */
static int link_boot_file(json_object *vm, const char *name, const char *dir, uk_error *err)
{
	const char *src = str_of(vm, name);
	if (!src)
		return 0;
	_cleanup_free_ char *dst = NULL;
	if (asprintf(&dst, "%s/%s", dir, name) < 0)
		return uk_err(err, ENOMEM, "out of memory");
	(void)unlink(dst); /* a leftover of a key learnt before */
	if (link(src, dst) < 0)
		return errno == EXDEV ? 0 : uk_err_errno(err, errno, "link %s to %s", src, dst);
	json_object_object_add(vm, name, json_object_new_string(dst));
	return 0;
}

/* The key's directory: its boot files linked, and the template (with their new paths) in
 * key.json, read back at start-up. tmpl is changed. No lock (a copy). */
static int key_write(struct rt_pool *p, const char *key_id, json_object *tmpl, uk_error *err)
{
	char dir[PATH_MAX], path[PATH_MAX + 16];
	if (snprintf(dir, sizeof(dir), "%s/%s", p->key_root, key_id) >= (int)sizeof(dir))
		return uk_err(err, ENAMETOOLONG, "pool key directory too long");
	json_object *vm;
	json_object_object_get_ex(tmpl, "vm", &vm);
	int r;
	if ((r = uk_mkdir_p(dir, 0700, err)) < 0 || (r = link_boot_file(vm, "kernel", dir, err)) < 0 ||
	    (r = link_boot_file(vm, "initrd", dir, err)) < 0)
		return r;
	snprintf(path, sizeof(path), "%s/" POOL_KEY_FILE, dir);
	const char *s = json_object_to_json_string_ext(tmpl, JSON_C_TO_STRING_PLAIN);
	return uk_write_file_atomic(path, s, strlen(s), 0600, err);
}

/* A key in memory; written: its directory exists (read back at start-up). */
static int key_add(struct runtime *rt, json_object *tmpl, const struct pool_key *k, bool written, uk_error *err)
{
	struct rt_pool *p = rt->pool;
	if (p->n_keys >= POOL_KEYS_MAX)
		return uk_err(err, ENOSPC, "the pool holds %d keys already", POOL_KEYS_MAX);
	struct pool_keyinfo *n = realloc(p->keys, (p->n_keys + 1) * sizeof(*n));
	if (!n)
		return uk_err(err, ENOMEM, "out of memory");
	p->keys = n;
	json_object *vm;
	json_object_object_get_ex(tmpl, "vm", &vm);
	n[p->n_keys] = (struct pool_keyinfo){
		.key = *k, .tmpl = json_object_get(tmpl), .written = written,
		.e = { .memory_mib = (uint64_t)int_of(vm, "memory_mib") + rt->cfg.memory_overhead_mib,
		       .last_used_ms = now_ms() },
	};
	p->n_keys++;
	return 0;
}

/* ---- one pool VM ---- */

static struct pool_vm *vm_new(void)
{
	struct pool_vm *vm = calloc(1, sizeof(*vm));
	if (vm)
		vm->pidfd = -1;
	return vm;
}

static void vm_free(struct pool_vm *vm)
{
	if (vm)
		safe_close(vm->pidfd);
	free(vm);
}

static void vm_freep(struct pool_vm **vm)
{
	vm_free(*vm);
}

/* End a pool VM and remove what it had: its vmwrapper and QEMU, its cgroup, its directory
 * (dir: where it is now). The tap goes with QEMU's fd. No lock. */
static void vm_destroy(struct runtime *rt, const struct rt_pool_vm *v, const char *dir)
{
	_cleanup_close_ int pidfd = uk_pidfd_open_checked(v->pid, v->start_time);
	(void)vm_kill_wait(pidfd); /* QEMU dies with it (PR_SET_PDEATHSIG) */
	_cleanup_close_ int qfd = vm_pidfd_in(dir, "qemu_pid", "qemu_start_time");
	if (qfd >= 0 && !uk_pidfd_wait(qfd, KILL_WAIT_MS))
		(void)vm_kill_wait(qfd);
	if (v->cg_path[0])
		(void)cg_remove(&rt->cg, v->cg_path, NULL); /* or at the next start-up's sweep */
	(void)uk_rm_rf(dir, NULL);                       /* the same */
}

static json_object *pool_spec(struct runtime *rt, const struct pool_vm *vm, json_object *tmpl, bool vhost)
{
	json_object *o = json_object_new_object(), *fields;
	json_object_object_get_ex(tmpl, "vm", &fields);
	json_object_object_add(o, "version", json_object_new_int(1));
	json_object_object_add(o, "id", json_object_new_string(vm->v.id));
	json_object_object_foreach(fields, k, v) json_object_object_add(o, k, json_object_get(v));
	json_object_object_add(o, "pool", json_object_new_boolean(true));
	json_object_object_add(o, "state_dir", json_object_new_string(vm->v.dir));
	if (vm->v.tap[0]) {
		json_object *nets = json_object_new_array(), *nic = json_object_new_object();
		json_object_object_add(nic, "tap_fd", json_object_new_int(SPAWN_TAP_FD));
		if (vhost)
			json_object_object_add(nic, "vhost_fd", json_object_new_int(SPAWN_VHOST_FD));
		json_object_object_add(nic, "mac", json_object_new_string(vm->v.mac));
		json_object_array_add(nets, nic);
		json_object_object_add(o, "net", nets);
	} else if (nics_at_claim(tmpl)) {
		json_object_object_add(o, "nics_at_claim", json_object_new_int(1));
	}
	uk_json_add_str(o, "qemu", rt->cfg.qemu);
	return o;
}

/* vmwrapper in pool mode, detached, in the pool VM's cgroup; then its sync line. */
static int vm_spawn(struct runtime *rt, struct pool_vm *vm, json_object *spec, int tap_fd, int vhost_fd,
		    uk_error *err)
{
	char cg_files[CG_PROCS_MAX][PATH_MAX];
	size_t n_cg = 0;
	int r;
	if (vm->v.cg_path[0] &&
	    (r = cg_procs_files(&rt->cg, vm->v.cg_path, cg_files, CG_PROCS_MAX, &n_cg, err)) < 0)
		return r;
	_cleanup_(uk_child_done) struct uk_child child = UK_CHILD_INIT;
	_cleanup_close_ int rd = -1;
	if ((r = vm_write_new_json(vm->v.dir, "spec.json", spec, err)) < 0 ||
	    (r = vm_spawn_wrapper(rt, vm->v.dir, tap_fd, vhost_fd, cg_files, n_cg, false, &child, &rd, err)) < 0)
		return r;
	vm->v.pid = child.pid;
	vm->v.start_time = child.start_time;
	vm->pidfd = TAKE_FD(child.pidfd); /* watched once the VM is in the pool's list */
	_cleanup_json_ json_object *sync = NULL;
	if ((r = vm_read_sync(rd, vm->v.dir, &sync, err)) < 0)
		return r;
	json_object *ok;
	if (!json_object_object_get_ex(sync, "ok", &ok) || !json_object_get_boolean(ok))
		return uk_err(err, EIO, "the pool VM did not start: %s",
			      str_of(sync, "error") ? str_of(sync, "error") : "unknown");
	return 0;
}

/* The pool VM's cgroup, tap, files and vmwrapper (lock not held). On failure the caller
 * ends and removes what was made. */
static int vm_make(struct runtime *rt, struct pool_vm *vm, json_object *tmpl, const char *key_id, uk_error *err)
{
	json_object *nic, *fields;
	bool has_nic = json_object_object_get_ex(tmpl, "nic", &nic) && json_object_get_boolean(nic);
	json_object_object_get_ex(tmpl, "vm", &fields);
	_cleanup_close_ int tap_fd = -1, vhost_fd = -1;
	int r;
	if ((r = uk_mkdir_p(vm->v.dir, 0700, err)) < 0)
		return r;
	if (rt->cg.version != CG_NONE) {
		struct cg_limits l = { .memory_bytes = ((int64_t)int_of(fields, "memory_mib") +
							(int64_t)rt->cfg.memory_overhead_mib) << 20 };
		if ((r = cg_path_for(POOL_CG_PARENT, vm->v.id, vm->v.cg_path, sizeof(vm->v.cg_path), err)) < 0 ||
		    (r = cg_create(&rt->cg, vm->v.cg_path, &l, err)) < 0)
			return r;
	}
	if (has_nic && !nics_at_claim(tmpl)) {
		snprintf(vm->v.tap, sizeof(vm->v.tap), "ukp%.12s", vm->v.id);
		net_mac_from_id(vm->v.id, vm->v.mac);
		if ((tap_fd = rt_net_pool_tap(rt->net, vm->v.tap, err)) < 0)
			return tap_fd;
		vhost_fd = open("/dev/vhost-net", O_RDWR | O_CLOEXEC); /* optional, as for any VM */
	}
	_cleanup_json_ json_object *spec = pool_spec(rt, vm, tmpl, vhost_fd >= 0);
	_cleanup_json_ json_object *mine = json_object_new_object();
	json_object_object_add(mine, "key", json_object_new_string(key_id));
	uk_json_add_str(mine, "tap", vm->v.tap[0] ? vm->v.tap : NULL);
	uk_json_add_str(mine, "mac", vm->v.mac[0] ? vm->v.mac : NULL);
	uk_json_add_str(mine, "cgroup", vm->v.cg_path[0] ? vm->v.cg_path : NULL);
	if ((r = vm_write_new_json(vm->v.dir, POOL_VM_FILE, mine, err)) < 0)
		return r;
	return vm_spawn(rt, vm, spec, tap_fd, vhost_fd, err);
}

/* Start one VM of a key (lock not held; tmpl is the caller's reference). 0 and *ret ready. */
static int vm_start_one(struct runtime *rt, json_object *tmpl, const char *key_id, struct pool_vm **ret,
			uk_error *err)
{
	_cleanup_(vm_freep) struct pool_vm *vm = vm_new();
	if (!vm)
		return uk_err(err, ENOMEM, "out of memory");
	int r = uk_random_hex_id(vm->v.id);
	if (r < 0)
		return uk_err_errno(err, -r, "a pool VM's id");
	snprintf(vm->v.dir, sizeof(vm->v.dir), "%s/%s", rt->pool->vm_root, vm->v.id);
	if ((r = vm_make(rt, vm, tmpl, key_id, err)) < 0) {
		vm_destroy(rt, &vm->v, vm->v.dir);
		return r;
	}
	*ret = TAKE_PTR(vm);
	return 0;
}

/* ---- the thread ---- */

/* The keys the decisions see: not those whose last start failed (until a pod wants them
 * again). map[i] is the key of entry i. Returns how many. */
static size_t entries(struct rt_pool *p, struct pool_entry *e, size_t *map)
{
	size_t n = 0;
	for (size_t i = 0; i < p->n_keys; i++)
		if (!p->keys[i].failed || p->keys[i].e.ready) {
			e[n] = p->keys[i].e;
			map[n++] = i;
		}
	return n;
}

/* A key no pod wanted for the idle timeout, with no VM left, is forgotten with its files. */
static void forget_idle_keys(struct rt_pool *p)
{
	uint64_t now = now_ms();
	for (size_t i = 0; p->cfg.idle_ms && i < p->n_keys;) {
		struct pool_keyinfo *k = &p->keys[i];
		if (k->e.ready || k->e.starting || now - k->e.last_used_ms < p->cfg.idle_ms) {
			i++;
			continue;
		}
		char dir[PATH_MAX + 80];
		snprintf(dir, sizeof(dir), "%s/%s", p->key_root, k->key.id);
		(void)uk_rm_rf(dir, NULL); /* a key directory left is read back and forgotten again */
		json_object_put(k->tmpl);
		memmove(p->keys + i, p->keys + i + 1, (p->n_keys - i - 1) * sizeof(*p->keys));
		p->n_keys--;
		for (size_t v = 0; v < p->n_vms; v++)
			if (p->vms[v]->key > i)
				p->vms[v]->key--;
	}
}

/* VM i leaves the pool's list (and the thread's epoll set); the caller ends or claims it. */
static struct pool_vm *remove_vm(struct rt_pool *p, size_t i)
{
	struct pool_vm *vm = p->vms[i];
	memmove(p->vms + i, p->vms + i + 1, (p->n_vms - i - 1) * sizeof(*p->vms));
	p->n_vms--;
	p->keys[vm->key].e.ready--;
	(void)epoll_ctl(p->ep_fd, EPOLL_CTL_DEL, vm->pidfd, NULL); /* registered by add_vm */
	return vm;
}

/* The VM to drop for key k: the oldest ready one. Removed from the pool; the caller ends it. */
static struct pool_vm *take_ready_of(struct rt_pool *p, size_t k)
{
	for (size_t i = 0; i < p->n_vms; i++)
		if (p->vms[i]->key == k)
			return remove_vm(p, i);
	return NULL;
}

/* Into the list, its vmwrapper watched: a ready VM that ends is noticed then, not at a claim.
 * -ESRCH: it has already ended. */
static int add_vm(struct rt_pool *p, struct pool_vm *vm)
{
	if (vm->pidfd < 0 && (vm->pidfd = uk_pidfd_open_checked(vm->v.pid, vm->v.start_time)) < 0)
		return -ESRCH;
	struct pool_vm **n = realloc(p->vms, (p->n_vms + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	p->vms = n;
	vm->serial = ++p->next_serial;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = vm->serial };
	if (epoll_ctl(p->ep_fd, EPOLL_CTL_ADD, vm->pidfd, &ev) < 0)
		return -errno;
	p->vms[p->n_vms++] = vm;
	p->keys[vm->key].e.ready++;
	return 0;
}


static void vm_end_unlocked(struct runtime *rt, struct pool_vm *vm)
{
	rt_unlock(rt);
	vm_destroy(rt, &vm->v, vm->v.dir);
	vm_free(vm);
	rt_lock(rt);
}

/* A ready VM's vmwrapper ended (the epoll key serial said so): out of the pool, its remains
 * removed; the next step starts a replacement. Lock held on entry and exit. */
static void ready_vm_ended(struct runtime *rt, uint64_t serial)
{
	struct rt_pool *p = rt->pool;
	for (size_t i = 0; i < p->n_vms; i++)
		if (p->vms[i]->serial == serial) {
			if (!uk_pidfd_wait(p->vms[i]->pidfd, 0))
				return; /* not ended: a stale event */
			struct pool_vm *vm = remove_vm(p, i);
			log_warn("msg=\"a ready pool VM ended before its claim\" vm=%s key=%.12s", vm->v.id,
				 p->keys[vm->key].key.id);
			snprintf(p->last_error, sizeof(p->last_error), "pool VM %.12s ended before its claim", vm->v.id);
			vm_end_unlocked(rt, vm);
			return;
		}
}

/* Start one VM of key k; lock held on entry and exit, dropped meanwhile. */
static void pool_start_one(struct runtime *rt, size_t k)
{
	struct rt_pool *p = rt->pool;
	uk_error e = { 0 };
	struct pool_key key = p->keys[k].key;
	if (!p->keys[k].written) {
		/* Its files first, on a copy, without the lock: the start that taught it is not
		 * delayed by them. */
		_cleanup_json_ json_object *copy = json_tokener_parse(json_object_to_json_string(p->keys[k].tmpl));
		rt_unlock(rt);
		int r = copy ? key_write(p, key.id, copy, &e) : uk_err(&e, ENOMEM, "out of memory");
		rt_lock(rt);
		ssize_t now_k = key_find(p, &key);
		if (now_k < 0)
			return;
		if (r < 0) {
			p->keys[now_k].failed = true;
			snprintf(p->last_error, sizeof(p->last_error), "key %.12s: %s", key.id, e.msg);
			return;
		}
		json_object_put(p->keys[now_k].tmpl);
		p->keys[now_k].tmpl = TAKE_PTR(copy);
		p->keys[now_k].written = true;
		k = (size_t)now_k;
	}
	_cleanup_json_ json_object *tmpl = json_object_get(p->keys[k].tmpl);
	p->keys[k].e.starting++;
	rt_unlock(rt);
	struct pool_vm *vm = NULL;
	int r = vm_start_one(rt, tmpl, key.id, &vm, &e);
	rt_lock(rt);
	ssize_t now_k = key_find(p, &key); /* the key list may have changed meanwhile */
	if (now_k >= 0)
		p->keys[now_k].e.starting--;
	if (r < 0) {
		if (now_k >= 0)
			p->keys[now_k].failed = true;
		snprintf(p->last_error, sizeof(p->last_error), "key %.12s: %s", key.id, e.msg);
		log_warn("msg=\"a pool VM did not start\" key=%.12s error=\"%s\"", key.id, e.msg);
		return;
	}
	if (now_k < 0 || (vm->key = (size_t)now_k, add_vm(p, vm) < 0)) {
		vm_end_unlocked(rt, vm);
		return;
	}
	log_info("msg=\"pool VM ready\" vm=%s key=%.12s", vm->v.id, key.id);
}

/* One step, lock held on entry and exit. Returns false when there is nothing to do. */
static bool pool_step(struct runtime *rt)
{
	struct rt_pool *p = rt->pool;
	struct pool_action a;
	uk_error e = { 0 };
	forget_idle_keys(p);
	if (p->n_keys == 0)
		return false;
	_cleanup_free_ struct pool_entry *ent = calloc(p->n_keys, sizeof(*ent));
	_cleanup_free_ size_t *map = calloc(p->n_keys, sizeof(*map));
	if (!ent || !map)
		return false;
	size_t n = entries(p, ent, map);
	if (n == 0)
		return false;
	if (pool_next(&p->cfg, ent, n, now_ms(), &a, &e) < 0) {
		snprintf(p->last_error, sizeof(p->last_error), "%s", e.msg);
		return false;
	}
	if (a.decision == POOL_DROP) {
		struct pool_vm *vm = take_ready_of(p, map[a.entry]);
		if (!vm)
			return false;
		log_info("msg=\"pool VM dropped\" vm=%s key=%.12s why=\"%s\"", vm->v.id, p->keys[map[a.entry]].key.id,
			 a.why);
		vm_end_unlocked(rt, vm);
		return true;
	}
	/* A start under way takes the CPU first; the thread is woken when none is. */
	if (a.decision != POOL_START || p->starts_in_flight > 0)
		return false;
	pool_start_one(rt, map[a.entry]);
	return true;
}

/* When the next key goes idle (ms from now), or -1. Lock held. */
static int next_timeout(struct rt_pool *p)
{
	if (!p->cfg.idle_ms)
		return -1;
	uint64_t now = now_ms(), soonest = UINT64_MAX;
	for (size_t i = 0; i < p->n_keys; i++)
		if (p->keys[i].e.ready) {
			uint64_t at = p->keys[i].e.last_used_ms + p->cfg.idle_ms;
			soonest = at < soonest ? at : soonest;
		}
	if (soonest == UINT64_MAX)
		return -1;
	return soonest <= now ? 0 : (int)(soonest - now > INT32_MAX ? INT32_MAX : soonest - now) + 1;
}

static void *pool_main(void *arg)
{
	struct runtime *rt = arg;
	struct rt_pool *p = rt->pool;
	rt_lock(rt);
	while (!p->stopping) {
		if (pool_step(rt))
			continue;
		int timeout = next_timeout(p);
		rt_unlock(rt);
		struct epoll_event ev[16];
		int n = epoll_wait(p->ep_fd, ev, (int)ARRAY_SIZE(ev), timeout);
		rt_lock(rt);
		for (int i = 0; i < n; i++) {
			if (ev[i].data.u64 == 0) {
				uint64_t v;
				(void)!read(p->wake_fd, &v, sizeof(v)); /* only to reset it */
			} else {
				ready_vm_ended(rt, ev[i].data.u64);
			}
		}
	}
	rt_unlock(rt);
	return NULL;
}

/* ---- claim ---- */

int rt_pool_take(struct runtime *rt, const struct container *c, const struct sandbox *sb, struct rt_pool_vm *out)
{
	struct rt_pool *p = rt->pool;
	if (!p || !poolable(rt, c, sb))
		return 0;
	_cleanup_json_ json_object *tmpl = template_of(rt, c);
	struct pool_key key;
	uk_error e = { 0 };
	if (key_of_template(tmpl, &key, &e) < 0)
		return 0; /* a VM the pool cannot describe is simply not pooled */
	ssize_t k = key_find(p, &key);
	if (k < 0) {
		if (key_add(rt, tmpl, &key, false, &e) < 0) {
			snprintf(p->last_error, sizeof(p->last_error), "learning key %.12s: %s", key.id, e.msg);
			return 0;
		}
		pool_wake(p);
		return 0;
	}
	if (p->keys[k].unpluggable)
		return 0;
	p->keys[k].e.last_used_ms = now_ms();
	p->keys[k].failed = false;
	struct pool_vm *vm = take_ready_of(p, (size_t)k);
	pool_wake(p); /* a replacement, once the start is done */
	if (!vm)
		return 0;
	*out = vm->v;
	out->nics_at_claim = nics_at_claim(p->keys[k].tmpl);
	snprintf(out->key_id, sizeof(out->key_id), "%s", p->keys[k].key.id);
	vm_free(vm);
	return 1;
}

void rt_pool_discard(struct runtime *rt, struct rt_pool_vm *vm, const char *dir)
{
	vm_destroy(rt, vm, dir);
}

void rt_pool_plug_failed(struct runtime *rt, const struct rt_pool_vm *vm, const char *why)
{
	struct rt_pool *p = rt->pool;
	for (size_t k = 0; p && k < p->n_keys; k++)
		if (strcmp(p->keys[k].key.id, vm->key_id) == 0) {
			p->keys[k].unpluggable = p->keys[k].failed = true;
			snprintf(p->last_error, sizeof(p->last_error), "key %.12s: a claim could not plug the NIC: %s",
				 vm->key_id, why);
		}
}

void rt_pool_start_begin(struct runtime *rt)
{
	if (rt->pool)
		rt->pool->starts_in_flight++;
}

void rt_pool_start_end(struct runtime *rt)
{
	if (rt->pool && --rt->pool->starts_in_flight == 0)
		pool_wake(rt->pool);
}

static uint64_t mem_available_mib(void)
{
	_cleanup_free_ char *text = NULL;
	if (uk_read_file("/proc/meminfo", 64 * 1024, &text, NULL, NULL) < 0)
		return UINT64_MAX;
	const char *l = strstr(text, "MemAvailable:");
	unsigned long long kb;
	return l && sscanf(l, "MemAvailable: %llu kB", &kb) == 1 ? kb / 1024 : UINT64_MAX;
}

void rt_pool_make_room(struct runtime *rt, uint64_t need_mib)
{
	struct rt_pool *p = rt->pool;
	if (!p || p->n_vms == 0)
		return;
	uint64_t avail = mem_available_mib();
	while (p->n_vms) {
		_cleanup_free_ struct pool_entry *ent = calloc(p->n_keys, sizeof(*ent));
		_cleanup_free_ size_t *map = calloc(p->n_keys, sizeof(*map));
		struct pool_action a;
		if (!ent || !map)
			return;
		size_t n = entries(p, ent, map);
		if (pool_make_room(ent, n, need_mib, avail, &a, NULL) < 0 || a.decision != POOL_DROP)
			return;
		struct pool_vm *vm = take_ready_of(p, map[a.entry]);
		if (!vm)
			return;
		log_info("msg=\"pool VM dropped for a cold start\" vm=%s need_mib=%llu available_mib=%llu", vm->v.id,
			 (unsigned long long)need_mib, (unsigned long long)avail);
		avail += ent[a.entry].memory_mib;
		vm_end_unlocked(rt, vm);
	}
}

/* ---- start-up ---- */

void rt_pool_reap_orphans(struct runtime *rt)
{
	char root[PATH_MAX];
	if (snprintf(root, sizeof(root), "%s/pool", rt->cfg.run_dir) >= (int)sizeof(root))
		return;
	_cleanup_closedir_ DIR *d = opendir("/proc");
	struct dirent *de;
	while (d && (de = readdir(d))) {
		uint64_t pid64, st;
		char id[UK_FULL_ID_LEN + 1], dir[PATH_MAX + 80];
		if (uk_parse_u64(de->d_name, 1, INT32_MAX, &pid64) < 0 || !vm_wrapper_argv_id((pid_t)pid64, root, id) ||
		    uk_proc_starttime((pid_t)pid64, &st) < 0)
			continue;
		snprintf(dir, sizeof(dir), "%s/%s", root, id);
		bool named = access(dir, F_OK) == 0;
		for (size_t i = 0; !named && i < rt->n_ct; i++)
			named = rt->ct[i]->pool_vm && strcmp(rt->ct[i]->pool_vm, id) == 0 &&
				rt->ct[i]->wrapper_pid == (pid_t)pid64;
		if (named)
			continue;
		_cleanup_close_ int pidfd = uk_pidfd_open_checked((pid_t)pid64, st);
		if (pidfd >= 0) {
			(void)vm_kill_wait(pidfd); /* logged below either way */
			log_warn("msg=\"killed a pool VM that nothing names (a claim cut short)\" vm=%s pid=%d", id,
				 (int)pid64);
		}
	}
}

/* A key learnt under another network mode (the node was switched between bridge and CNI)
 * makes VMs no pod here can take: its NIC is made with the VM in bridge mode, plugged by the
 * claim in CNI mode, and there is none without a network. */
static bool template_fits(struct runtime *rt, json_object *t)
{
	json_object *nic;
	if (!json_object_object_get_ex(t, "nic", &nic) || !json_object_get_boolean(nic))
		return true;
	return rt->net->cni ? nics_at_claim(t) : rt->net->enabled && !nics_at_claim(t);
}

static int load_keys(struct runtime *rt)
{
	struct rt_pool *p = rt->pool;
	_cleanup_closedir_ DIR *d = opendir(p->key_root);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (!uk_id_valid(de->d_name) || strlen(de->d_name) != SHA256_HEX_SIZE - 1)
			continue;
		char path[PATH_MAX + 80];
		snprintf(path, sizeof(path), "%s/%.64s/" POOL_KEY_FILE, p->key_root, de->d_name);
		_cleanup_free_ char *text = NULL;
		_cleanup_json_ json_object *t = NULL;
		struct pool_key key;
		uk_error e = { 0 };
		if (uk_read_file(path, POOL_JSON_MAX, &text, NULL, NULL) < 0 || !(t = json_tokener_parse(text)) ||
		    key_of_template(t, &key, &e) < 0 || strcmp(key.id, de->d_name) != 0 || !template_fits(rt, t) ||
		    key_add(rt, t, &key, true, &e) < 0) {
			snprintf(path, sizeof(path), "%s/%.64s", p->key_root, de->d_name);
			(void)uk_rm_rf(path, NULL); /* a key that cannot be read is learnt again */
			log_warn("msg=\"dropped a pool key that cannot be read or was learnt under another network "
				 "mode\" key=%s", de->d_name);
		}
	}
	return 0;
}

/* What a pool VM's directory says of it: pool.json (tap, MAC, cgroup) and vmwrapper.json
 * (its vmwrapper's pid and start time). What is missing stays empty. */
static void vm_identity(const char *dir, struct rt_pool_vm *v)
{
	_cleanup_json_ json_object *mine = vm_dir_json(dir, POOL_VM_FILE);
	_cleanup_json_ json_object *state = vm_dir_json(dir, "vmwrapper.json");
	const char *s;
	if ((s = str_of(mine, "tap")) && net_ifname_valid(s))
		snprintf(v->tap, sizeof(v->tap), "%s", s);
	if ((s = str_of(mine, "mac")) && strlen(s) == 17)
		snprintf(v->mac, sizeof(v->mac), "%s", s);
	/* The cgroup is the one the id gives, whatever the file says. */
	const char *id = strrchr(dir, '/');
	if (str_of(mine, "cgroup") && id && cg_path_for(POOL_CG_PARENT, id + 1, v->cg_path, sizeof(v->cg_path), NULL) < 0)
		v->cg_path[0] = '\0';
	v->pid = (pid_t)int_of(state, "pid");
	json_object *st;
	v->start_time = state && json_object_object_get_ex(state, "start_time", &st) ? (uint64_t)json_object_get_int64(st) : 0;
}

/* The key id pool.json names, "" if none. */
static void vm_key_id(const char *dir, char out[SHA256_HEX_SIZE])
{
	_cleanup_json_ json_object *o = vm_dir_json(dir, POOL_VM_FILE);
	const char *k = str_of(o, "key");
	out[0] = '\0';
	if (k && strlen(k) == SHA256_HEX_SIZE - 1)
		snprintf(out, SHA256_HEX_SIZE, "%s", k);
}

/* A VM in RUN/pool from before: adopted while its vmwrapper runs and its key is known. */
static void adopt_or_end(struct runtime *rt, const char *id)
{
	struct rt_pool *p = rt->pool;
	_cleanup_(vm_freep) struct pool_vm *vm = vm_new();
	if (!vm)
		return;
	snprintf(vm->v.id, sizeof(vm->v.id), "%.64s", id);
	snprintf(vm->v.dir, sizeof(vm->v.dir), "%s/%.64s", p->vm_root, id);
	char key_id[SHA256_HEX_SIZE], argv_id[UK_FULL_ID_LEN + 1];
	vm_identity(vm->v.dir, &vm->v);
	vm_key_id(vm->v.dir, key_id);
	ssize_t k = -1;
	for (size_t i = 0; key_id[0] && i < p->n_keys; i++)
		if (strcmp(p->keys[i].key.id, key_id) == 0)
			k = (ssize_t)i;
	_cleanup_close_ int pidfd = vm->v.pid > 0 ? uk_pidfd_open_checked(vm->v.pid, vm->v.start_time) : -1;
	if (k >= 0 && pidfd >= 0 && vm_wrapper_argv_id(vm->v.pid, p->vm_root, argv_id) && strcmp(argv_id, id) == 0 &&
	    (!vm->v.cg_path[0] || rt->cg.version != CG_NONE)) {
		vm->key = (size_t)k;
		vm->pidfd = TAKE_FD(pidfd);
		if (add_vm(p, vm) == 0) {
			log_info("msg=\"adopted a pool VM\" vm=%s key=%.12s", id, key_id);
			TAKE_PTR(vm);
			return;
		}
	}
	vm_destroy(rt, &vm->v, vm->v.dir);
	log_warn("msg=\"removed a pool VM from before that cannot be adopted\" vm=%s", id);
}

/* The pool is off: what an earlier unikd left of one goes (its VMs, their files, the keys). */
static void pool_clear(struct runtime *rt)
{
	char vm_root[PATH_MAX - 128], key_root[PATH_MAX - 128];
	if (snprintf(vm_root, sizeof(vm_root), "%s/pool", rt->cfg.run_dir) >= (int)sizeof(vm_root) ||
	    snprintf(key_root, sizeof(key_root), "%s/pool", rt->cfg.state_dir) >= (int)sizeof(key_root))
		return;
	_cleanup_closedir_ DIR *d = opendir(vm_root);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (!uk_id_valid(de->d_name) || strlen(de->d_name) != UK_FULL_ID_LEN)
			continue;
		struct rt_pool_vm v = { 0 };
		char dir[PATH_MAX];
		snprintf(v.id, sizeof(v.id), "%.64s", de->d_name);
		snprintf(dir, sizeof(dir), "%s/%.64s", vm_root, de->d_name);
		vm_identity(dir, &v);
		vm_destroy(rt, &v, dir);
		log_info("msg=\"the pool is off: ended a pool VM from before\" vm=%s", de->d_name);
	}
	(void)uk_rm_rf(vm_root, NULL); /* nothing is left to adopt */
	(void)uk_rm_rf(key_root, NULL);
}

int rt_pool_open(struct runtime *rt, const struct pool_config *cfg, uk_error *err)
{
	if (!cfg->per_key) {
		pool_clear(rt);
		return 0;
	}
	_cleanup_free_ struct rt_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return uk_err(err, ENOMEM, "out of memory");
	p->cfg = *cfg;
	p->wake_fd = -1;
	p->ep_fd = -1;
	int r;
	if (snprintf(p->vm_root, sizeof(p->vm_root), "%s/pool", rt->cfg.run_dir) >= (int)sizeof(p->vm_root) ||
	    snprintf(p->key_root, sizeof(p->key_root), "%s/pool", rt->cfg.state_dir) >= (int)sizeof(p->key_root))
		return uk_err(err, ENAMETOOLONG, "pool directory path too long");
	if ((r = uk_mkdir_p(p->vm_root, 0700, err)) < 0 || (r = uk_mkdir_p(p->key_root, 0700, err)) < 0)
		return r;
	p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->wake_fd < 0)
		return uk_err_errno(err, errno, "eventfd");
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0 };
	if ((p->ep_fd = epoll_create1(EPOLL_CLOEXEC)) < 0 || epoll_ctl(p->ep_fd, EPOLL_CTL_ADD, p->wake_fd, &ev) < 0) {
		r = uk_err_errno(err, errno, "the pool's epoll");
		safe_close(p->ep_fd);
		close(p->wake_fd);
		return r;
	}
	rt->pool = TAKE_PTR(p);
	(void)load_keys(rt);
	_cleanup_closedir_ DIR *d = opendir(rt->pool->vm_root);
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (uk_id_valid(de->d_name) && strlen(de->d_name) == UK_FULL_ID_LEN)
			adopt_or_end(rt, de->d_name);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old); /* signals are the main loop's */
	r = pthread_create(&rt->pool->thread, NULL, pool_main, rt);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		close(rt->pool->wake_fd);
		close(rt->pool->ep_fd);
		free(rt->pool);
		rt->pool = NULL;
		return uk_err_errno(err, r, "start the pool's thread");
	}
	return 0;
}

void rt_pool_free(struct runtime *rt)
{
	struct rt_pool *p = rt->pool;
	if (!p)
		return;
	rt_lock(rt);
	p->stopping = true;
	pool_wake(p);
	rt_unlock(rt);
	pthread_join(p->thread, NULL);
	rt->pool = NULL;
	for (size_t i = 0; i < p->n_vms; i++)
		vm_free(p->vms[i]); /* they run on, for the next unikd to adopt */
	for (size_t i = 0; i < p->n_keys; i++)
		json_object_put(p->keys[i].tmpl);
	free(p->vms);
	free(p->keys);
	close(p->wake_fd);
	close(p->ep_fd);
	free(p);
}

json_object *rt_pool_info(struct runtime *rt)
{
	struct rt_pool *p = rt->pool;
	if (!p)
		return NULL;
	json_object *o = json_object_new_object(), *keys = json_object_new_array(), *vms = json_object_new_array();
	json_object_object_add(o, "size", json_object_new_int((int)p->cfg.per_key));
	json_object_object_add(o, "total", json_object_new_int((int)p->cfg.total));
	json_object_object_add(o, "memory_mib", json_object_new_int64((int64_t)p->cfg.budget_mib));
	json_object_object_add(o, "idle_timeout_s", json_object_new_int64((int64_t)(p->cfg.idle_ms / 1000)));
	for (size_t i = 0; i < p->n_keys; i++) {
		json_object *k = json_object_new_object(), *vm;
		json_object_object_get_ex(p->keys[i].tmpl, "vm", &vm);
		json_object_object_add(k, "key", json_object_new_string(p->keys[i].key.id));
		uk_json_add_str(k, "image", str_of(p->keys[i].tmpl, "image_ref"));
		uk_json_add_str(k, "cmdline", str_of(vm, "cmdline"));
		json_object_object_add(k, "ready", json_object_new_int((int)p->keys[i].e.ready));
		json_object_object_add(k, "starting", json_object_new_int((int)p->keys[i].e.starting));
		json_object_object_add(k, "memory_mib", json_object_new_int64((int64_t)p->keys[i].e.memory_mib));
		json_object_object_add(k, "failed", json_object_new_boolean(p->keys[i].failed));
		if (p->keys[i].unpluggable)
			json_object_object_add(k, "unpluggable", json_object_new_boolean(true));
		json_object_array_add(keys, k);
	}
	for (size_t i = 0; i < p->n_vms; i++) {
		json_object *v = json_object_new_object();
		json_object_object_add(v, "id", json_object_new_string(p->vms[i]->v.id));
		json_object_object_add(v, "key", json_object_new_string(p->keys[p->vms[i]->key].key.id));
		json_object_object_add(v, "vmwrapper_pid", json_object_new_int(p->vms[i]->v.pid));
		uk_json_add_str(v, "tap", p->vms[i]->v.tap[0] ? p->vms[i]->v.tap : NULL);
		json_object_array_add(vms, v);
	}
	json_object_object_add(o, "keys", keys);
	json_object_object_add(o, "vms", vms);
	if (p->last_error[0])
		json_object_object_add(o, "last_error", json_object_new_string(p->last_error));
	return o;
}
