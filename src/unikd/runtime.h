/* The runtime core: sandboxes and containers, their names, their VMs (README.md maps the
 * files).
 *
 * One mutex guards the registry and the records. Slow work (starting a VM, waiting for
 * a guest to power off) runs without it, with the container marked busy and a
 * reference held, so other calls go on meanwhile. */
#ifndef UK_RUNTIME_H
#define UK_RUNTIME_H

#include <pthread.h>

#include "../cgroup/cgroup.h"
#include "../common/error.h"
#include "../store/image_store.h"
#include "../store/records.h"
#include "network.h"

struct rt_config {
	const char *state_dir; /* persistent: records, images */
	const char *run_dir;   /* volatile: VM state dirs, sockets */
	const char *vmwrapper; /* path of bin/vmwrapper */
	const char *qemu;      /* NULL: vmwrapper's default */
	unsigned default_memory_mib;
	unsigned default_vcpus;
	const char *default_accel; /* auto, kvm, tcg */
	struct rt_net_config net;
	unsigned memory_overhead_mib; /* cgroup limit = guest memory + this (QEMU itself) */
	const char *cgroup_root;      /* NULL: /sys/fs/cgroup */
};

struct runtime {
	struct rt_config cfg;
	char *sandbox_dir, *container_dir, *vm_dir, *image_dir;
	pthread_mutex_t lock;
	struct sandbox **sb;
	size_t n_sb, cap_sb;
	struct container **ct;
	size_t n_ct, cap_ct;
	struct image_store *images;
	struct rt_net *net;
	struct cg_system cg; /* version CG_NONE when cgroups cannot be used; cg.why says why */
	char boot_id[UK_BOOT_ID_MAX]; /* this boot's (uk_boot_id); "" if unknown */
	struct rt_pool *pool;         /* the warm pool (pool_vms.h); NULL when it is off */
	struct exit_watch *watch;     /* records VM ends as they happen (exit_watch.c) */
};

/* Loads the records and reconciles them with what exists (docs/architecture.md, "Crash
 * safety and restarts"): VMs are reattached or recorded as ended, half-made objects are
 * completed or removed, orphans (VMs, directories, cgroups, network objects) go, and after a
 * reboot running containers are EXITED and ready pods NOTREADY. Each clean-up is logged. */
int runtime_open(const struct rt_config *cfg, struct runtime **ret, uk_error *err);
void runtime_free(struct runtime *rt);

void rt_lock(struct runtime *rt);
/* The lock if it is free, without waiting (a quick CRI call on a poller). */
bool rt_trylock(struct runtime *rt);
void rt_unlock(struct runtime *rt);

/* Lookups, with the lock held. A full id or a unique prefix; -ENOENT, or -EINVAL when the
 * prefix is ambiguous. */
int rt_find_sandbox(struct runtime *rt, const char *id, struct sandbox **ret, uk_error *err);
int rt_find_container(struct runtime *rt, const char *id, struct container **ret, uk_error *err);
/* Lock and find a container; the lock stays held on success only. No I/O: the exit
 * watcher keeps RUNNING containers up to date with their VMs. */
int rt_lock_container(struct runtime *rt, const char *id, struct container **ret, uk_error *err);

/* tmpl: the fields from the request; id and reserved names are made here. Takes tmpl. */
int rt_sandbox_create(struct runtime *rt, struct sandbox *tmpl, char *id_out, uk_error *err);
int rt_sandbox_stop(struct runtime *rt, const char *id, uk_error *err);
int rt_sandbox_remove(struct runtime *rt, const char *id, uk_error *err);

/* tmpl has the VM fields filled in (from the image and the request). Takes tmpl. */
int rt_container_create(struct runtime *rt, struct container *tmpl, char *id_out, uk_error *err);
int rt_container_start(struct runtime *rt, const char *id, uk_error *err);
/* After StartContainer is answered: the RUNNING record a successful start left to write
 * (nothing if another change saved the container since, or it is gone). The record that
 * names vmwrapper is on disk before the VM starts; until this one replaces it, start-up
 * reads it as a start under way and completes it from what runs, so the answer need not
 * wait for this write. */
void rt_container_save_started(struct runtime *rt, const char *id);
/* The power button, then at timeout_s (0: at once) QEMU is killed whatever it does; returns
 * soon after the deadline. */
int rt_container_stop(struct runtime *rt, const char *id, int64_t timeout_s, uk_error *err);
int rt_container_remove(struct runtime *rt, const char *id, uk_error *err);
/* Answers once vmwrapper has reopened the console log, or with why it could not. */
int rt_container_reopen_log(struct runtime *rt, const char *id, uk_error *err);
/* New CPU and memory limits (0: unchanged), validated by the caller: all or nothing, in the
 * record and in a running VM's cgroup. Memory below the guest's RAM is -EINVAL. */
int rt_container_update_resources(struct runtime *rt, const char *id, int64_t memory_limit, int64_t cpu_quota,
				  int64_t cpu_period, int64_t cpu_shares, uk_error *err);
/* The limits a container's cgroup gets. */
void rt_cgroup_limits(const struct runtime *rt, const struct container *c, struct cg_limits *l);

/* The VM state directory of a container (volatile, in the run directory). */
int rt_vm_dir(struct runtime *rt, const char *id, char *buf, size_t len);

/* A container's own directory, STATE/containers/<id>.d, beside its record: hard links to the
 * image files it boots, so that removing the image leaves them on disk until the container
 * goes, and its disk, a qcow2 overlay over the linked base. */
int rt_ctr_dir(struct runtime *rt, const char *id, char *buf, size_t len);
#define RT_CTR_DIR_SUFFIX ".d"
#define RT_CTR_KERNEL "kernel"       /* links to the image's blobs, shared with the store */
#define RT_CTR_INITRD "initrd"
#define RT_CTR_DISK_BASE "disk.base"
#define RT_CTR_DISK "disk.qcow2"     /* the container's writable layer */

#endif
