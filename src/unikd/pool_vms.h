/* The warm pool's VMs in unikd (issue 18; docs/architecture.md, "The warm pool"): VMs
 * started ahead of need (vmwrapper's pool mode: QEMU paused with -S, past its QMP
 * handshake, a tap on no bridge, or in CNI mode no NIC until the claim plugs one; no log),
 * claimed by StartContainer, refilled in the
 * background, and reconciled at start-up. The decisions (keys, what to start or drop) are
 * src/pool's; this file does the work. Everything in struct rt_pool is guarded by the
 * runtime's lock. */
#ifndef UK_RT_POOL_VMS_H
#define UK_RT_POOL_VMS_H

#include <json-c/json.h>

#include "../pool/pool.h"
#include "../store/records.h"

struct runtime;
struct rt_pool;

/* The pool VM a start took, for the claim (vm_start.c). */
struct rt_pool_vm {
	char id[UK_FULL_ID_LEN + 1];
	char dir[PATH_MAX]; /* its state directory in the pool */
	pid_t pid;          /* vmwrapper */
	uint64_t start_time;
	char tap[16];       /* "" without a NIC */
	char mac[18];
	char cg_path[1024]; /* its pool cgroup; "" without cgroups */
	bool nics_at_claim; /* its NIC is plugged by the claim (CNI mode): no tap, no MAC yet */
	char key_id[SHA256_HEX_SIZE];
};

/* At start-up, after the records are reconciled (lock held): the pool's directory, its VMs
 * from before adopted (or ended), its thread started. With cfg->per_key 0 the pool is off
 * and rt->pool stays NULL. */
int rt_pool_open(struct runtime *rt, const struct pool_config *cfg, uk_error *err);
/* Stop the thread; the VMs keep running for the next unikd to adopt. Lock not held. */
void rt_pool_free(struct runtime *rt);

/* Reconciliation, before the containers' (lock held): every vmwrapper of a pool VM that
 * neither a pool directory nor a container's record (pool_vm) names is ended. */
void rt_pool_reap_orphans(struct runtime *rt);

/* StartContainer, lock held: take a ready VM that matches c (in pod sb) into *vm. Returns 1
 * when one was taken, 0 when none matches (the key is learnt, so the pool fills it), <0
 * never for the caller's sake: a pool problem means a cold start. */
int rt_pool_take(struct runtime *rt, const struct container *c, const struct sandbox *sb, struct rt_pool_vm *vm);
/* A taken VM that could not be claimed: ended, and everything of it removed. No lock. */
void rt_pool_discard(struct runtime *rt, struct rt_pool_vm *vm, const char *dir);
/* vmwrapper could not plug the claim's NIC into vm (QEMU refused a step): its key gets no
 * more pool VMs until unikd restarts, since every claim of it would fail the same way and
 * cost a VM. Lock held. */
void rt_pool_plug_failed(struct runtime *rt, const struct rt_pool_vm *vm, const char *why);
/* Before a cold start that needs need_mib (lock held): drop ready VMs while the host's
 * MemAvailable is short of it. */
void rt_pool_make_room(struct runtime *rt, uint64_t need_mib);
/* Container starts in flight: the pool starts nothing while one is (it never delays a cold
 * start). Lock held. */
void rt_pool_start_begin(struct runtime *rt);
void rt_pool_start_end(struct runtime *rt);

/* For Status verbose ("pool"); NULL when the pool is off. Lock held. */
json_object *rt_pool_info(struct runtime *rt);

#endif
