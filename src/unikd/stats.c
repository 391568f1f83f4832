#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/util.h"
#include "stats.h"

struct proc_sample {
	uint64_t cpu_ns, rss, minflt, majflt;
};

/* Add a process's CPU time, RSS and page faults (from /proc/PID/stat) to *s. */
static int proc_sample(pid_t pid, struct proc_sample *s)
{
	struct uk_proc_stat st;
	int r = uk_proc_stat(pid, &st);
	if (r < 0)
		return r;
	long hz = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	s->minflt += st.minflt;
	s->majflt += st.majflt;
	s->cpu_ns += (st.utime + st.stime) * (1000000000ull / (uint64_t)(hz > 0 ? hz : 100));
	s->rss += st.rss * (uint64_t)(page > 0 ? page : 4096);
	return 0;
}

static int vm_pids(struct runtime *rt, struct container *c, pid_t *wrapper, pid_t *qemu)
{
	char path[PATH_MAX];
	_cleanup_free_ char *text = NULL;
	if (rt_vm_dir(rt, c->id, path, sizeof(path) - 20) < 0)
		return -ENAMETOOLONG;
	strcat(path, "/vmwrapper.json");
	if (uk_read_file(path, 64 * 1024, &text, NULL, NULL) < 0)
		return -ENOENT;
	_cleanup_json_ json_object *o = json_tokener_parse(text);
	json_object *v, *st;
	if (!o || !json_object_object_get_ex(o, "qemu_pid", &v) || !json_object_object_get_ex(o, "qemu_start_time", &st))
		return -EIO;
	uint64_t now_st;
	/* Neither PID is trusted without its start time: a recycled PID is not our process. */
	*wrapper = uk_proc_alive(c->wrapper_pid, c->wrapper_start) ? c->wrapper_pid : 0;
	*qemu = (pid_t)json_object_get_int(v);
	/* A recycled PID is not our QEMU. */
	if (uk_proc_starttime(*qemu, &now_st) < 0 || now_st != (uint64_t)json_object_get_int64(st))
		*qemu = 0;
	return 0;
}

/* The writable layer: the container's directory with what is in it (its disk overlay, the
 * guest's writes plus qcow2 metadata), allocated bytes and inodes. The boot files linked from
 * the store are not counted: they are the image's. */
static void writable_layer(struct runtime *rt, struct container *c, struct rt_stats *st)
{
	static const char *const shared[] = { RT_CTR_KERNEL, RT_CTR_INITRD, RT_CTR_DISK_BASE };
	char path[PATH_MAX];
	struct stat sb;
	if (rt_ctr_dir(rt, c->id, path, sizeof(path)) < 0)
		return;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return; /* a record from before container directories */
	if (fstat(fd, &sb) == 0) {
		st->writable_bytes += (uint64_t)sb.st_blocks * 512;
		st->writable_inodes++;
	}
	_cleanup_closedir_ DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		bool skip = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
		for (size_t i = 0; i < ARRAY_SIZE(shared) && !skip; i++)
			skip = strcmp(de->d_name, shared[i]) == 0;
		if (skip || fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		st->writable_bytes += (uint64_t)sb.st_blocks * 512;
		st->writable_inodes++;
	}
}

int rt_container_stats(struct runtime *rt, struct container *c, struct rt_stats *st, uk_error *err)
{
	(void)err;
	memset(st, 0, sizeof(*st));
	st->timestamp_ns = uk_now_realtime_ns();
	st->source = "proc";
	writable_layer(rt, c, st);
	if (c->state != CTR_RUNNING)
		return 0;
	struct cg_stats cs;
	if (c->cgroup && rt->cg.version != CG_NONE && cg_read_stats(&rt->cg, c->cgroup, &cs, NULL) == 0) {
		st->source = "cgroup";
		st->cpu_ns = cs.cpu_usage_ns;
		st->mem_usage = cs.memory_usage_bytes;
		st->mem_working_set = cs.memory_working_set_bytes;
		st->mem_rss = cs.memory_rss_bytes;
		st->page_faults = cs.page_faults;
		st->major_page_faults = cs.major_page_faults;
	} else {
		/* No cgroup: the VM's own processes tell nearly the same. */
		pid_t wrapper = 0, qemu = 0;
		struct proc_sample s = { 0 };
		if (vm_pids(rt, c, &wrapper, &qemu) == 0) {
			/* A process that just ended counts as nothing: the sample is best effort. */
			if (qemu > 0)
				(void)proc_sample(qemu, &s);
			if (wrapper > 0)
				(void)proc_sample(wrapper, &s);
		}
		st->cpu_ns = s.cpu_ns;
		st->mem_usage = st->mem_working_set = st->mem_rss = s.rss;
		st->page_faults = s.minflt + s.majflt;
		st->major_page_faults = s.majflt;
	}
	/* usage_nano_cores is a rate: between this sample and the previous one (or since start). */
	uint64_t prev_ns = c->stats_ts_ns ? c->stats_ts_ns : (uint64_t)c->started_ns;
	uint64_t prev_cpu = c->stats_ts_ns ? c->stats_cpu_ns : 0;
	if (st->timestamp_ns > prev_ns && st->cpu_ns >= prev_cpu)
		st->nano_cores = (uint64_t)((double)(st->cpu_ns - prev_cpu) * 1e9 / (double)(st->timestamp_ns - prev_ns));
	c->stats_ts_ns = st->timestamp_ns;
	c->stats_cpu_ns = st->cpu_ns;
	return 0;
}
