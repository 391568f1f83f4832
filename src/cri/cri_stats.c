/* The CRI stats calls: per container from its VM's cgroup (or /proc when there is none),
 * per pod as the sum of its containers. */
#include <string.h>

#include "../common/util.h"
#include "../unikd/stats.h"
#include "cri.h"
#include "limits.h"

#define MAP_ENTRY_DESC (&runtime__v1__pod_sandbox_config__labels_entry__descriptor)

static Runtime__V1__UInt64Value *u64(arena *a, uint64_t v)
{
	Runtime__V1__UInt64Value *x = arena_new0(a, Runtime__V1__UInt64Value);
	*x = (Runtime__V1__UInt64Value)RUNTIME__V1__UINT64_VALUE__INIT;
	x->value = v;
	return x;
}

static Runtime__V1__CpuUsage *cpu_msg(arena *a, const struct rt_stats *s)
{
	Runtime__V1__CpuUsage *c = arena_new0(a, Runtime__V1__CpuUsage);
	*c = (Runtime__V1__CpuUsage)RUNTIME__V1__CPU_USAGE__INIT;
	c->timestamp = (int64_t)s->timestamp_ns;
	c->usage_core_nano_seconds = u64(a, s->cpu_ns);
	c->usage_nano_cores = u64(a, s->nano_cores);
	return c;
}

static Runtime__V1__MemoryUsage *mem_msg(arena *a, const struct rt_stats *s)
{
	Runtime__V1__MemoryUsage *m = arena_new0(a, Runtime__V1__MemoryUsage);
	*m = (Runtime__V1__MemoryUsage)RUNTIME__V1__MEMORY_USAGE__INIT;
	m->timestamp = (int64_t)s->timestamp_ns;
	m->working_set_bytes = u64(a, s->mem_working_set);
	m->usage_bytes = u64(a, s->mem_usage);
	m->rss_bytes = u64(a, s->mem_rss);
	m->page_faults = u64(a, s->page_faults);
	m->major_page_faults = u64(a, s->major_page_faults);
	return m;
}

static Runtime__V1__ContainerStats *container_msg(arena *a, struct runtime *rt, struct container *c,
						  struct rt_stats *sum)
{
	struct rt_stats s;
	/* What cannot be read stays zero with its timestamp: a list answers for every container. */
	(void)rt_container_stats(rt, c, &s, NULL);
	if (sum) {
		sum->timestamp_ns = s.timestamp_ns;
		sum->cpu_ns += s.cpu_ns;
		sum->nano_cores += s.nano_cores;
		sum->mem_usage += s.mem_usage;
		sum->mem_working_set += s.mem_working_set;
		sum->mem_rss += s.mem_rss;
		sum->page_faults += s.page_faults;
		sum->major_page_faults += s.major_page_faults;
	}
	Runtime__V1__ContainerStats *o = arena_new0(a, Runtime__V1__ContainerStats);
	*o = (Runtime__V1__ContainerStats)RUNTIME__V1__CONTAINER_STATS__INIT;
	Runtime__V1__ContainerAttributes *at = arena_new0(a, Runtime__V1__ContainerAttributes);
	*at = (Runtime__V1__ContainerAttributes)RUNTIME__V1__CONTAINER_ATTRIBUTES__INIT;
	at->id = arena_strdup(a, c->id);
	at->metadata = cri_container_metadata(a, c);
	cri_json_to_map(a, c->labels, &at->n_labels, (void ***)&at->labels, MAP_ENTRY_DESC);
	cri_json_to_map(a, c->annotations, &at->n_annotations, (void ***)&at->annotations, MAP_ENTRY_DESC);
	o->attributes = at;
	o->cpu = cpu_msg(a, &s);
	o->memory = mem_msg(a, &s);
	/* The writable layer is the container's directory in the state directory. */
	Runtime__V1__FilesystemUsage *fs = arena_new0(a, Runtime__V1__FilesystemUsage);
	*fs = (Runtime__V1__FilesystemUsage)RUNTIME__V1__FILESYSTEM_USAGE__INIT;
	fs->timestamp = (int64_t)s.timestamp_ns;
	Runtime__V1__FilesystemIdentifier *fid = arena_new0(a, Runtime__V1__FilesystemIdentifier);
	*fid = (Runtime__V1__FilesystemIdentifier)RUNTIME__V1__FILESYSTEM_IDENTIFIER__INIT;
	fid->mountpoint = arena_strdup(a, rt->container_dir);
	fs->fs_id = fid;
	fs->used_bytes = u64(a, s.writable_bytes);
	fs->inodes_used = u64(a, s.writable_inodes);
	o->writable_layer = fs;
	return o;
}

CRI_HANDLER(cri_container_stats)
{
	struct cri_context *ctx = ud;
	const Runtime__V1__ContainerStatsRequest *q = (const void *)req;
	struct container *c;
	int r = cri_require(q->container_id, "container_id", err);
	if (r < 0)
		return r;
	if ((r = rt_lock_container(ctx->rt, q->container_id, &c, err)) < 0)
		return r;
	Runtime__V1__ContainerStatsResponse *o = arena_new0(a, Runtime__V1__ContainerStatsResponse);
	*o = (Runtime__V1__ContainerStatsResponse)RUNTIME__V1__CONTAINER_STATS_RESPONSE__INIT;
	o->stats = container_msg(a, ctx->rt, c, NULL);
	rt_unlock(ctx->rt);
	*resp = (ProtobufCMessage *)o;
	return 0;
}

CRI_HANDLER(cri_list_container_stats)
{
	struct cri_context *ctx = ud;
	const Runtime__V1__ListContainerStatsRequest *q = (const void *)req;
	const Runtime__V1__ContainerStatsFilter *f = q->filter;
	int r = f ? cri_check_selector("filter.label_selector", f->n_label_selector, (void *const *)f->label_selector, err)
		  : 0;
	if (r < 0)
		return r;
	Runtime__V1__ListContainerStatsResponse *o = arena_new0(a, Runtime__V1__ListContainerStatsResponse);
	*o = (Runtime__V1__ListContainerStatsResponse)RUNTIME__V1__LIST_CONTAINER_STATS_RESPONSE__INIT;
	rt_lock(ctx->rt);
	o->stats = arena_array(a, Runtime__V1__ContainerStats *, ctx->rt->n_ct);
	for (size_t i = 0; i < ctx->rt->n_ct; i++) {
		struct container *c = ctx->rt->ct[i];
		if (f && !cri_container_matches(c, f->id, f->pod_sandbox_id, -1, f->n_label_selector,
						(void **)f->label_selector))
			continue;
		o->stats[o->n_stats++] = container_msg(a, ctx->rt, c, NULL);
	}
	rt_unlock(ctx->rt);
	*resp = (ProtobufCMessage *)o;
	return 0;
}

static Runtime__V1__PodSandboxStats *sandbox_msg(arena *a, struct runtime *rt, struct sandbox *s)
{
	Runtime__V1__PodSandboxStats *o = arena_new0(a, Runtime__V1__PodSandboxStats);
	*o = (Runtime__V1__PodSandboxStats)RUNTIME__V1__POD_SANDBOX_STATS__INIT;
	Runtime__V1__PodSandboxAttributes *at = arena_new0(a, Runtime__V1__PodSandboxAttributes);
	*at = (Runtime__V1__PodSandboxAttributes)RUNTIME__V1__POD_SANDBOX_ATTRIBUTES__INIT;
	at->id = arena_strdup(a, s->id);
	at->metadata = cri_sandbox_metadata(a, s);
	cri_json_to_map(a, s->labels, &at->n_labels, (void ***)&at->labels, MAP_ENTRY_DESC);
	cri_json_to_map(a, s->annotations, &at->n_annotations, (void ***)&at->annotations, MAP_ENTRY_DESC);
	o->attributes = at;
	Runtime__V1__LinuxPodSandboxStats *lx = arena_new0(a, Runtime__V1__LinuxPodSandboxStats);
	*lx = (Runtime__V1__LinuxPodSandboxStats)RUNTIME__V1__LINUX_POD_SANDBOX_STATS__INIT;
	struct rt_stats sum = { .timestamp_ns = uk_now_realtime_ns() };
	lx->containers = arena_array(a, Runtime__V1__ContainerStats *, rt->n_ct);
	for (size_t i = 0; i < rt->n_ct; i++)
		if (strcmp(rt->ct[i]->sandbox_id, s->id) == 0)
			lx->containers[lx->n_containers++] = container_msg(a, rt, rt->ct[i], &sum);
	lx->cpu = cpu_msg(a, &sum);
	lx->memory = mem_msg(a, &sum);
	o->linux = lx;
	return o;
}

CRI_HANDLER(cri_pod_sandbox_stats)
{
	struct cri_context *ctx = ud;
	const Runtime__V1__PodSandboxStatsRequest *q = (const void *)req;
	struct sandbox *s;
	int r = cri_require(q->pod_sandbox_id, "pod_sandbox_id", err);
	if (r < 0)
		return r;
	rt_lock(ctx->rt);
	if ((r = rt_find_sandbox(ctx->rt, q->pod_sandbox_id, &s, err)) < 0) {
		rt_unlock(ctx->rt);
		return r;
	}
	Runtime__V1__PodSandboxStatsResponse *o = arena_new0(a, Runtime__V1__PodSandboxStatsResponse);
	*o = (Runtime__V1__PodSandboxStatsResponse)RUNTIME__V1__POD_SANDBOX_STATS_RESPONSE__INIT;
	o->stats = sandbox_msg(a, ctx->rt, s);
	rt_unlock(ctx->rt);
	*resp = (ProtobufCMessage *)o;
	return 0;
}

CRI_HANDLER(cri_list_pod_sandbox_stats)
{
	struct cri_context *ctx = ud;
	const Runtime__V1__ListPodSandboxStatsRequest *q = (const void *)req;
	const Runtime__V1__PodSandboxStatsFilter *f = q->filter;
	int r = f ? cri_check_selector("filter.label_selector", f->n_label_selector, (void *const *)f->label_selector, err)
		  : 0;
	if (r < 0)
		return r;
	Runtime__V1__ListPodSandboxStatsResponse *o = arena_new0(a, Runtime__V1__ListPodSandboxStatsResponse);
	*o = (Runtime__V1__ListPodSandboxStatsResponse)RUNTIME__V1__LIST_POD_SANDBOX_STATS_RESPONSE__INIT;
	rt_lock(ctx->rt);
	o->stats = arena_array(a, Runtime__V1__PodSandboxStats *, ctx->rt->n_sb);
	for (size_t i = 0; i < ctx->rt->n_sb; i++) {
		struct sandbox *s = ctx->rt->sb[i];
		if (s->adding || (f && !cri_sandbox_matches(s, f->id, -1, f->n_label_selector, (void **)f->label_selector)))
			continue;
		o->stats[o->n_stats++] = sandbox_msg(a, ctx->rt, s);
	}
	rt_unlock(ctx->rt);
	*resp = (ProtobufCMessage *)o;
	return 0;
}
