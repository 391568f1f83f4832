/* What the runtime core's files share among themselves (src/unikd/README.md maps them).
 * Not for the CRI layer, which uses runtime.h. Unless a comment says otherwise, the
 * functions here expect the runtime lock held. */
#ifndef UK_RUNTIME_INTERNAL_H
#define UK_RUNTIME_INTERNAL_H

#include "../common/spawn.h"
#include "runtime.h"

#define SYNC_TIMEOUT_MS 120000 /* QEMU under TCG can take a while to come up */
#define KILL_WAIT_MS 10000     /* for a process that was sent SIGKILL, or is leaving */
#define EXIT_JSON_MAX (64 * 1024)

/* ---- runtime.c: the registry, lookups, records ---- */

/* Make room for one more pointer in *arr. */
int rt_grow(void **arr, size_t *cap, size_t n);
/* ENOSPC and EDQUOT from a write in the state directory: say so, the errno stays. */
int rt_state_full_ctx(struct runtime *rt, int r, uk_error *err);
/* Save a record. With err NULL (a background update nobody waits for), a failure is
 * logged here, since no caller will; otherwise the caller reports it. */
int rt_save_sandbox(struct runtime *rt, struct sandbox *s, uk_error *err);
int rt_save_container(struct runtime *rt, struct container *c, uk_error *err);
/* A start's records (the one naming vmwrapper, then RUNNING) skip the directory's fsync: a
 * power loss ends the VM, and at the next boot either version of the record reads the same
 * way (a start under way or RUNNING from another boot is EXITED NodeRebooted; CREATED stays
 * CREATED), while a crash of unikd alone loses nothing (the page cache stays). */
int rt_save_container_start(struct runtime *rt, struct container *c, uk_error *err);
/* By full id only. */
struct sandbox *rt_sandbox_by_id(struct runtime *rt, const char *id);
/* A RUNNING container of the pod other than except (which may be NULL). */
struct container *rt_running_in(struct runtime *rt, const char *sandbox_id, const char *except);
/* The ids of the pod's containers, however many (malloc'd; *n of them). */
typedef char rt_id[UK_FULL_ID_LEN + 1];
int rt_containers_of(struct runtime *rt, const char *sandbox_id, rt_id **ids, size_t *n, uk_error *err);

/* ---- vm_state.c: a container's VM as the records see it ---- */

/* The id in a vmwrapper's argv, "vmwrapper --spec <root>/<64 hex>/spec.json ...": false for
 * any other process, and for a held one before its exec (its argv is still unikd's). */
bool vm_wrapper_argv_id(pid_t pid, const char *root, char id[UK_FULL_ID_LEN + 1]);
/* The recorded vmwrapper (PID and start time) is alive. No lock needed. */
bool vm_wrapper_alive(const struct container *c);
/* A cold start's vmwrapper still waiting for its go-ahead: its SPAWN_GO_FD is the go pipe
 * (on the go-ahead vmwrapper puts /dev/null there, so the slot never holds a pipe again). */
bool vm_wrapper_held(pid_t pid);
/* A pidfd of the recorded vmwrapper, or -1: never a process that inherited the PID. */
int vm_wrapper_pidfd(const struct container *c);
/* A pidfd of a process vmwrapper.json names (pid_key, start_key: "pid"/"start_time" for
 * vmwrapper, "qemu_pid"/"qemu_start_time" for QEMU), checked against its start time; -1 if
 * none. No lock needed. */
int vm_pidfd_from_state(struct runtime *rt, const char *id, const char *pid_key, const char *start_key);
/* The same for the vmwrapper.json of a VM directory given by path (a pool VM's). */
int vm_pidfd_in(const char *dir, const char *pid_key, const char *start_key);
/* A JSON object file (vmwrapper.json, exit.json, pool.json) of a VM directory, parsed; NULL
 * if missing, unreadable or not an object. */
json_object *vm_dir_json(const char *dir, const char *name);
/* A pidfd of the container's QEMU (from vmwrapper.json), or -1. No lock needed. */
int vm_qemu_pidfd(struct runtime *rt, const char *id);
/* SIGKILL through a pidfd and wait for the end. True if it ended (or pidfd < 0). */
bool vm_kill_wait(int pidfd);
void rt_set_str(char **dst, const char *v);
/* EXITED now, with this code, reason and message. */
void vm_set_exited(struct container *c, int code, const char *reason, const char *message);
/* The supervisor ended and left no exit record. */
void vm_set_vanished(struct container *c);
/* exit.json -> EXITED. True if the container changed. */
bool vm_apply_exit(struct runtime *rt, struct container *c);
/* A RUNNING container that is not busy: up to date with exit.json and its vmwrapper (one
 * container's I/O: for the operation that takes it, and start-up). */
void vm_refresh_one(struct runtime *rt, struct container *c);
/* Its vmwrapper is known to have ended (the exit watcher): exit.json, else vanished;
 * logged, saved, the watch dropped. */
void vm_ended(struct runtime *rt, struct container *c);
/* Wait for a leaving vmwrapper (then QEMU) to be gone, ending it should it linger, so
 * nothing of the container outlives its removal. No lock needed; slow. */
void vm_reap_wrapper(const struct container *c);
void vm_reap_qemu(struct runtime *rt, const char *id);

/* ---- exit_watch.c: VM ends as events ---- */

/* The thread that waits on the vmwrapper pidfds, and a watch for each RUNNING container
 * (runtime_open, after reconciliation). No lock held. */
int exit_watch_start(struct runtime *rt, uk_error *err);
/* Ends the thread and closes every watch. No lock held; nothing else may run. */
void exit_watch_stop(struct runtime *rt);
/* Its watch in line with its state, unless busy: a RUNNING container gets one (a vmwrapper
 * already gone is recorded as ended), an end that came while it was busy is delivered
 * again, a container that left RUNNING loses it. Nothing before the watcher starts. */
void exit_watch_sync(struct container *c);
/* Close the container's watch, if it has one. */
void exit_watch_drop(struct container *c);

/* ---- container_ops.c: taking a container for a slow operation ---- */

/* Found, not busy, then busy and referenced. */
int rt_claim(struct runtime *rt, const char *id, struct container **ret, uk_error *err);
/* Lock, refresh that one container and claim it; the lock stays held on success and is
 * dropped on failure. */
int rt_begin_op(struct runtime *rt, const char *id, struct container **ret, uk_error *err);
/* Not busy (its exit watch in line: exit_watch_sync), one reference less; a removed
 * container goes with its last reference. */
void rt_release(struct container *c);

/* ---- cgroups of VMs (container_ops.c) ---- */

/* The cgroup path a container's VM has or would have: recorded, or computed from its
 * pod's cgroup_parent (a start cut short may have made it before the record said so). */
int rt_ctr_cgroup_path(struct runtime *rt, const struct container *c, char *out, size_t len, uk_error *err);
/* Remove the VM's cgroup if it exists (idempotent). */
int rt_remove_cgroup(struct runtime *rt, const struct container *c, uk_error *err);

/* ---- sandbox_cni.c: pods in CNI mode ---- */

/* The checks done, lock held: record (adding), ADD without the lock, record (ready); takes s
 * (freed on failure, which leaves nothing behind). */
int rt_sandbox_create_cni(struct runtime *rt, struct sandbox *s, uk_error *err);
/* NOTREADY is recorded; DEL, then the namespace. Lock held (dropped around DEL). */
int rt_sandbox_release_cni(struct runtime *rt, struct sandbox *s, uk_error *err);
void rt_reconcile_cni(struct runtime *rt);

/* ---- vm_start.c, vm_claim.c: StartContainer ---- */

/* Where vmwrapper finds its sync pipe and the pod's tap and vhost-net fds. */
#define SPAWN_SYNC_FD 3
#define SPAWN_TAP_FD 4
#define SPAWN_VHOST_FD 5
#define SPAWN_GO_FD 6 /* a held vmwrapper's go-ahead (--go-fd) */
/* vmwrapper for the VM directory vmdir (its spec.json there), detached, with the sync pipe,
 * the tap and vhost-net fds (-1: none). hold: cloned on our memory, and held after its exec
 * until uk_spawn_release() on child->go_fd, on which it joins the cgroups of cg_files itself;
 * otherwise forked and born in them. *sync_fd: the sync pipe's read end. */
int vm_spawn_wrapper(struct runtime *rt, const char *vmdir, int tap_fd, int vhost_fd, char cg_files[][PATH_MAX],
		     size_t n_cg_files, bool hold, struct uk_child *child, int *sync_fd, uk_error *err);
/* Whether c's guest takes its address by DHCP (its contract says; the default is yes). */
bool vm_wants_dhcp(const struct container *c);
/* A new file dir/name with o's JSON text. Not fsync'ed: for the run directory (spec.json,
 * pool.json), read by vmwrapper and unikd in this boot only; what must be durable is the
 * record, which names vmwrapper. */
int vm_write_new_json(const char *dir, const char *name, json_object *o, uk_error *err);
/* vmwrapper's one line of startup status from its sync pipe, within SYNC_TIMEOUT_MS. */
int vm_read_sync(int fd, const char *vmdir, json_object **sync_ret, uk_error *err);
/* Start c from a ready pool VM (lock held on entry and exit, dropped meanwhile). 1: c is
 * RUNNING; 0: no VM matched or the claim failed (the VM is gone): start it cold. */
int rt_start_pooled(struct runtime *rt, struct container *c);
/* Start-up, for a pooled start cut short after its record: send the claim (again). True
 * when the VM is the container's now. No lock needed. */
bool rt_claim_completes(struct runtime *rt, const struct container *c);

/* ---- reconcile.c ---- */

/* Start-up: records against reality (docs/architecture.md, "Crash safety and restarts"). */
void rt_reconcile(struct runtime *rt);

#endif
