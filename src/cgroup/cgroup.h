/* One cgroup per VM (vmwrapper and its QEMU) under the pod's cgroup_parent, on cgroup v2 or
 * v1: create with limits, update, join from a forked child, read stats and OOM kills,
 * remove. No logging, no shell; errors name the file and the value. See README.md. */
#ifndef UK_CGROUP_H
#define UK_CGROUP_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"

#define CG_DEFAULT_ROOT "/sys/fs/cgroup"
#define CG_DEFAULT_PARENT "unikd"   /* cgroupfs parent used when cgroup_parent is empty */
#define CG_PARENT_MAX 512           /* longest cgroup_parent accepted, in bytes */
#define CG_PATH_MAX 1024            /* buffer size for a relative cgroup path, NUL included */
#define CG_PROCS_MAX 4              /* most cgroup.procs files one process joins (v1) */
#define CG_CPU_PERIOD_DEFAULT 100000
#define CG_CPU_PERIOD_MIN 1000      /* kernel bounds for cpu.cfs_period_us / cpu.max */
#define CG_CPU_PERIOD_MAX 1000000
#define CG_CPU_QUOTA_MIN 1000
#define CG_CPU_QUOTA_MAX ((INT64_C(1) << 44) - 1) /* the kernel's max_cfs_runtime, in us */
#define CG_SHARES_MIN 2             /* v1 cpu.shares range; out-of-range shares are clamped */
#define CG_SHARES_MAX 262144
#define CG_SHARES_DEFAULT 1024      /* written when no shares are given (v2: cpu.weight 100) */
#define CG_WEIGHT_DEFAULT 100

enum cg_version { CG_NONE, CG_V1, CG_V2 };

struct cg_system {
	enum cg_version version;
	char root[PATH_MAX]; /* /sys/fs/cgroup, or a test's fake tree */
	char why[256];       /* CG_NONE: why cgroups are unusable */
	/* v1 hierarchies, "" when absent. memory, cpu and cpuacct are required, pids is
	 * joined when present. cpu and cpuacct may be one hierarchy ("cpu,cpuacct"). */
	char memory[PATH_MAX];
	char cpu[PATH_MAX];
	char cpuacct[PATH_MAX];
	char pids[PATH_MAX];
	bool cpuacct_is_cpu;
};

/* Find the cgroup layout under root (NULL: /sys/fs/cgroup). v2 when root holds
 * cgroup.controllers listing memory and cpu; v1 when root/memory, root/cpu (or cpu,cpuacct)
 * and root/cpuacct are hierarchies. For the default root the file system type is checked
 * too; an explicit root (a fake tree in tests) is taken as it is. Unusable cgroups are not
 * an error: version is CG_NONE, why says why, and 0 is returned. -errno only for a root
 * that cannot be examined (too long, unreadable). */
int cg_detect(struct cg_system *sys, const char *root, uk_error *err);

/* The path, relative to each hierarchy, of container id's cgroup under cgroup_parent:
 *   "/kubepods/burstable/pod1" (cgroupfs)      -> "kubepods/burstable/pod1/unikd-<id>"
 *   "kubepods-burstable-pod1.slice" (systemd)  -> "kubepods.slice/kubepods-burstable.slice/
 *                                                  kubepods-burstable-pod1.slice/unikd-<id>.scope"
 *   "" or NULL                                 -> "unikd/unikd-<id>";  "/" and "-.slice": the root
 * A parent is systemd form when it has no '/' and ends in ".slice": systemd's slice-name rules
 * (no empty dash part, no leading or trailing '-', no '@'). Components are
 * [A-Za-z0-9_.:@\-]+ (no "..", no control characters), at most 255 bytes, and neither start
 * with '.' nor look like a control file ("cgroup.x", "<controller>.x", "tasks"...); the parent
 * at most CG_PARENT_MAX. -EINVAL / -ENAMETOOLONG name the value. */
int cg_path_for(const char *cgroup_parent, const char *id, char *out, size_t len, uk_error *err);

/* Whether cg_path_for accepts cgroup_parent for container ids of id_len bytes (the whole
 * path must fit too): the check at the door, before any container exists. */
int cg_parent_check(const char *cgroup_parent, size_t id_len, uk_error *err);

struct cg_limits {
	int64_t memory_bytes;  /* <= 0: no limit (v2 "max", v1 -1) */
	int64_t cpu_quota_us;  /* <= 0: no limit; else 1000..CG_CPU_QUOTA_MAX */
	int64_t cpu_period_us; /* <= 0: 100000; else 1000..1000000 */
	uint64_t cpu_shares;   /* 0: the default (1024 / weight 100); else clamped to 2..262144 */
};

/* Create the cgroup in every hierarchy it needs (v1: memory, cpu, cpuacct, pids if
 * mounted; v2: the unified one, enabling +memory +cpu in each ancestor's
 * cgroup.subtree_control from the root down as needed) and write the limits. Missing
 * parents are created; an existing leaf is reused. If a limit cannot be written, the
 * leaf is removed again (parents stay). */
int cg_create(const struct cg_system *s, const char *path, const struct cg_limits *l,
	      uk_error *err);

/* Write the limits of an existing cgroup. Every field is applied as in cg_create: a field
 * that says "none" removes that limit. Callers merge partial updates before calling. */
int cg_update(const struct cg_system *s, const char *path, const struct cg_limits *l,
	      uk_error *err);

/* The cgroup.procs files a process writes its pid to in order to join the cgroup, one per
 * hierarchy (at most CG_PROCS_MAX), for uk_spawn's cgroup_files (or uk_enter_cgroup_files,
 * src/common/spawn.h). Precompute them before fork. -ENOSPC if max is short. */
int cg_procs_files(const struct cg_system *s, const char *path, char files[][PATH_MAX], size_t max,
		   size_t *n, uk_error *err);

struct cg_stats {
	uint64_t cpu_usage_ns;             /* v2 cpu.stat usage_usec * 1000; v1 cpuacct.usage */
	uint64_t memory_usage_bytes;       /* v2 memory.current; v1 memory.usage_in_bytes */
	uint64_t memory_working_set_bytes; /* usage - inactive_file, floored at 0 (as kubelet) */
	uint64_t memory_rss_bytes;         /* v2 memory.stat anon; v1 total_rss */
	uint64_t page_faults, major_page_faults;
	uint64_t oom_kills;                /* v2 memory.events oom_kill; v1 memory.oom_control oom_kill */
	bool oom_kills_known;              /* false on v1 kernels older than 4.13 (no oom_kill line) */
	uint64_t memory_limit_bytes;       /* 0: no limit */
};

/* Read the cgroup's usage. Only real OOM kills are counted (never memory.failcnt, which
 * counts allocations that hit the limit and were reclaimed). Read before cg_remove. */
int cg_read_stats(const struct cg_system *s, const char *path, struct cg_stats *st, uk_error *err);

/* rmdir the leaf in every hierarchy. A missing leaf is fine (idempotent); -EBUSY when
 * processes (or child cgroups) remain. Parents are left alone. On CG_NONE: 0. */
int cg_remove(const struct cg_system *s, const char *path, uk_error *err);

/* Start a grace period of the kernel's cgroup migration lock now, on a thread of this
 * process, so that a join that follows within one grace period (a VM's, a few ms later)
 * does not wait for one (prime.c says why). Returns at once; does nothing without cgroups
 * or when our own cgroup cannot be found. */
void cg_prime(const struct cg_system *s);

/* ---- pure helpers, exposed for tests ---- */

/* The cgroup.procs file of the cgroup /proc/self/cgroup's text (self_cgroup) puts us in:
 * on v2 the "0::" line under root, on v1 the memory hierarchy's line under s->memory.
 * -ENOENT without such a line, -EINVAL for a path that is not absolute or holds "." or
 * ".." components, -ENAMETOOLONG if it does not fit. */
int cg_own_procs_file(const struct cg_system *s, const char *self_cgroup, char *out, size_t len);

/* runc/kubelet's mapping of v1 shares (clamped to 2..262144) to v2 cpu.weight (1..10000):
 * 1 + ((shares - 2) * 9999) / 262142. */
uint64_t cg_shares_to_weight(uint64_t shares);

/* The value of "key N" in a flat-keyed file (memory.stat, cpu.stat, memory.events,
 * memory.oom_control). The whole key must match ("oom_kill" is not "oom_kill_disable").
 * -ENOENT if absent, -EINVAL if the value is not a non-negative integer. */
int cg_parse_flat_keyed(const char *text, const char *key, uint64_t *ret);

/* A single-value file: "N\n", or "max\n" (v2) as UINT64_MAX. -EINVAL otherwise. */
int cg_parse_value(const char *text, uint64_t *ret);

/* From memory.stat text and the usage: rss, page faults, working set (usage minus
 * inactive_file; v1 prefers the hierarchical total_* keys). Missing keys count as 0;
 * a malformed value is -EINVAL. Fills memory_usage_bytes with usage. */
int cg_parse_memory_stat(const char *text, enum cg_version v, uint64_t usage, struct cg_stats *st);

/* v2 cpu.stat: usage_usec in nanoseconds. -ENOENT without usage_usec. */
int cg_parse_cpu_stat(const char *text, uint64_t *usage_ns);

#endif
