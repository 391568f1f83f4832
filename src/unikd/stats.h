/* Resource usage of a container's VM, for the CRI stats calls. */
#ifndef UK_RT_STATS_H
#define UK_RT_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime.h"

struct rt_stats {
	uint64_t timestamp_ns;
	uint64_t cpu_ns;        /* cumulative */
	uint64_t nano_cores;    /* since the previous sample */
	uint64_t mem_usage, mem_working_set, mem_rss;
	uint64_t page_faults, major_page_faults;
	uint64_t writable_bytes, writable_inodes; /* the container's directory, without the image's files */
	const char *source;     /* "cgroup" or "proc" */
};

/* Lock held. A container that is not running has zero CPU and memory usage, with a
 * timestamp; its writable layer is measured in every state. */
int rt_container_stats(struct runtime *rt, struct container *c, struct rt_stats *st, uk_error *err);

#endif
