/* A container's VM as the records see it: is its vmwrapper alive, how did it end
 * (exit.json), and waiting for its processes to be gone. */
#include <limits.h>
#include <signal.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"
#include "runtime_internal.h"

#define CMDLINE_MAX 8192

bool vm_wrapper_argv_id(pid_t pid, const char *root, char id[UK_FULL_ID_LEN + 1])
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
	size_t rl = strlen(root);
	const char *p = argv[2];
	if (strncmp(p, root, rl) != 0 || p[rl] != '/' || strspn(p + rl + 1, "0123456789abcdef") != UK_FULL_ID_LEN ||
	    strcmp(p + rl + 1 + UK_FULL_ID_LEN, "/spec.json") != 0)
		return false;
	memcpy(id, p + rl + 1, UK_FULL_ID_LEN);
	id[UK_FULL_ID_LEN] = '\0';
	return true;
}

bool vm_wrapper_held(pid_t pid)
{
	char path[64], link[64];
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, SPAWN_GO_FD);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	return n > 5 && strncmp(link, "pipe:", 5) == 0;
}

bool vm_wrapper_alive(const struct container *c)
{
	return uk_proc_alive(c->wrapper_pid, c->wrapper_start);
}

int vm_wrapper_pidfd(const struct container *c)
{
	int fd = uk_pidfd_open_checked(c->wrapper_pid, c->wrapper_start);
	return fd < 0 ? -1 : fd;
}

bool vm_kill_wait(int pidfd)
{
	if (pidfd < 0)
		return true;
	(void)uk_pidfd_signal(pidfd, SIGKILL); /* one that has just ended is what we wait for */
	return uk_pidfd_wait(pidfd, KILL_WAIT_MS);
}

void rt_set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = v ? strdup(v) : NULL;
}

void vm_set_exited(struct container *c, int code, const char *reason, const char *message)
{
	c->state = CTR_EXITED;
	c->exit_code = code;
	rt_set_str(&c->reason, reason);
	rt_set_str(&c->message, message);
	c->finished_ns = (int64_t)uk_now_realtime_ns();
}

void vm_set_vanished(struct container *c)
{
	vm_set_exited(c, 255, "Unknown",
		      "the VM's supervisor ended without an exit record (killed, or the host rebooted)");
}

json_object *vm_dir_json(const char *dir, const char *name)
{
	char path[PATH_MAX + 64];
	_cleanup_free_ char *text = NULL;
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path) ||
	    uk_read_file(path, EXIT_JSON_MAX, &text, NULL, NULL) < 0)
		return NULL;
	json_object *o = json_tokener_parse(text);
	if (o && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* A JSON file of the container's VM directory, parsed. NULL if missing or unreadable. */
static json_object *vm_json(struct runtime *rt, const char *id, const char *name)
{
	char dir[PATH_MAX];
	return rt_vm_dir(rt, id, dir, sizeof(dir)) < 0 ? NULL : vm_dir_json(dir, name);
}

bool vm_apply_exit(struct runtime *rt, struct container *c)
{
	_cleanup_json_ json_object *o = vm_json(rt, c->id, "exit.json");
	json_object *v;
	if (!o)
		return false;
	vm_set_exited(c, json_object_object_get_ex(o, "exit_code", &v) ? json_object_get_int(v) : 255,
		      json_object_object_get_ex(o, "reason", &v) ? json_object_get_string(v) : "Unknown",
		      json_object_object_get_ex(o, "message", &v) ? json_object_get_string(v) : NULL);
	if (json_object_object_get_ex(o, "finished_ns", &v))
		c->finished_ns = json_object_get_int64(v);
	/* The host's OOM killer shows up as a kill signal; the cgroup tells it was the OOM killer. */
	struct cg_stats cs;
	if (c->cgroup && rt->cg.version != CG_NONE && cg_read_stats(&rt->cg, c->cgroup, &cs, NULL) == 0 &&
	    cs.oom_kills > 0) {
		rt_set_str(&c->reason, "OOMKilled");
		if (c->exit_code == 0)
			c->exit_code = 137;
	}
	return true;
}

/* The end is in c: the watch goes, the log and the record say so. */
static void end_recorded(struct runtime *rt, struct container *c)
{
	exit_watch_drop(c);
	log_info("pod=%s ctr=%s msg=\"vm ended\" exit_code=%d reason=%s", c->sandbox_id, c->id, c->exit_code,
		 c->reason);
	(void)rt_save_container(rt, c, NULL); /* logged there; the next start-up reads exit.json again */
}

void vm_ended(struct runtime *rt, struct container *c)
{
	/* vmwrapper writes exit.json before it leaves; without one, its end is unknown. */
	if (!vm_apply_exit(rt, c))
		vm_set_vanished(c);
	end_recorded(rt, c);
}

void vm_refresh_one(struct runtime *rt, struct container *c)
{
	if (c->state != CTR_RUNNING || c->busy)
		return;
	if (!vm_apply_exit(rt, c)) {
		if (vm_wrapper_alive(c))
			return;
		/* vmwrapper may have written exit.json just before it ended. */
		if (!vm_apply_exit(rt, c))
			vm_set_vanished(c);
	}
	end_recorded(rt, c);
}

void vm_reap_wrapper(const struct container *c)
{
	_cleanup_close_ int pidfd = vm_wrapper_pidfd(c);
	if (pidfd >= 0 && !uk_pidfd_wait(pidfd, KILL_WAIT_MS))
		(void)vm_kill_wait(pidfd); /* what is left of it dies with the VM's cgroup check */
}

int vm_pidfd_in(const char *dir, const char *pid_key, const char *start_key)
{
	_cleanup_json_ json_object *o = vm_dir_json(dir, "vmwrapper.json");
	json_object *p, *st;
	if (!o || !json_object_object_get_ex(o, pid_key, &p) || !json_object_object_get_ex(o, start_key, &st))
		return -1;
	int fd = uk_pidfd_open_checked((pid_t)json_object_get_int(p), (uint64_t)json_object_get_int64(st));
	return fd < 0 ? -1 : fd;
}

int vm_pidfd_from_state(struct runtime *rt, const char *id, const char *pid_key, const char *start_key)
{
	char dir[PATH_MAX];
	return rt_vm_dir(rt, id, dir, sizeof(dir)) < 0 ? -1 : vm_pidfd_in(dir, pid_key, start_key);
}

int vm_qemu_pidfd(struct runtime *rt, const char *id)
{
	return vm_pidfd_from_state(rt, id, "qemu_pid", "qemu_start_time");
}

/* QEMU dies with its vmwrapper (PR_SET_PDEATHSIG), but not in the same instant: a vmwrapper
 * that was killed leaves QEMU to the kernel for a moment. Wait for it (and end it, should it
 * still run), so its cgroup can go. */
void vm_reap_qemu(struct runtime *rt, const char *id)
{
	_cleanup_close_ int pidfd = vm_qemu_pidfd(rt, id);
	if (pidfd >= 0 && !uk_pidfd_wait(pidfd, KILL_WAIT_MS))
		(void)vm_kill_wait(pidfd);
}
