/* Every RPC of both CRI services, by gRPC path, with the class of call that picks its pool
 * of threads and its deadline cap (grpc_server.h): READ calls answer from records and never
 * wait on a VM or a registry, LIFECYCLE calls may wait on a VM, IMAGE calls on a registry. */
#include "cri.h"

#define RS "/runtime.v1.RuntimeService/"
#define IS "/runtime.v1.ImageService/"
#define MX(svc, name, msg, fn, cls, extra)                                                         \
	{ svc name, &runtime__v1__##msg##__descriptor, fn, NULL, GRPC_CLASS_##cls, extra, false, false }
#define M(svc, name, msg, fn, cls) MX(svc, name, msg, fn, cls, NULL)
/* A read call whose handler may run on the poller it came to (grpc_server.h, quick). */
#define MQ(svc, name, msg, fn)                                                                     \
	{ svc name, &runtime__v1__##msg##__descriptor, fn, NULL, GRPC_CLASS_READ, NULL, false, true }
#define U(svc, name, msg, why) { svc name, &runtime__v1__##msg##__descriptor, NULL, why, GRPC_CLASS_READ, NULL, false, false }
/* Served, and forwarded for the delegate's objects (src/delegate). */
#define MR(svc, name, msg, fn, cls)                                                                \
	{ svc name, &runtime__v1__##msg##__descriptor, fn, NULL, GRPC_CLASS_##cls, NULL, true, false }
/* Not served by unikd for its own objects; forwarded for the delegate's (src/delegate). */
#define UR(svc, name, msg, why, cls, extra)                                                        \
	{ svc name, &runtime__v1__##msg##__descriptor, NULL, why, GRPC_CLASS_##cls, extra, true, false }

/* StopContainer waits up to its timeout for the guest before the kill: that time comes on
 * top of the lifecycle cap. */
static uint64_t stop_timeout_s(const ProtobufCMessage *req)
{
	const Runtime__V1__StopContainerRequest *q = (const Runtime__V1__StopContainerRequest *)req;
	return q->timeout > 0 ? (uint64_t)q->timeout : 0;
}

/* A delegated ExecSync may run its command for its timeout. */
static uint64_t exec_timeout_s(const ProtobufCMessage *req)
{
	const Runtime__V1__ExecSyncRequest *q = (const Runtime__V1__ExecSyncRequest *)req;
	return q->timeout > 0 ? (uint64_t)q->timeout : 0;
}

#define NO_EXEC                                                                                    \
	"a unikernel has no processes to exec into; its console is reachable with kubectl attach (and kubectl logs)"
#define NO_STATS "metrics descriptors are not served; use the stats calls"
#define NO_STREAM "the streaming list calls are not served; use the unary List calls"

const struct grpc_method cri_methods[] = {
	MQ(RS, "Version", version_request, cri_version),
	M(RS, "RunPodSandbox", run_pod_sandbox_request, cri_run_pod_sandbox, LIFECYCLE),
	M(RS, "StopPodSandbox", stop_pod_sandbox_request, cri_stop_pod_sandbox, LIFECYCLE),
	M(RS, "RemovePodSandbox", remove_pod_sandbox_request, cri_remove_pod_sandbox, LIFECYCLE),
	MQ(RS, "PodSandboxStatus", pod_sandbox_status_request, cri_pod_sandbox_status),
	MQ(RS, "ListPodSandbox", list_pod_sandbox_request, cri_list_pod_sandbox),
	U(RS, "StreamPodSandboxes", stream_pod_sandboxes_request, NO_STREAM),
	M(RS, "CreateContainer", create_container_request, cri_create_container, LIFECYCLE),
	M(RS, "StartContainer", start_container_request, cri_start_container, LIFECYCLE),
	MX(RS, "StopContainer", stop_container_request, cri_stop_container, LIFECYCLE, stop_timeout_s),
	M(RS, "RemoveContainer", remove_container_request, cri_remove_container, LIFECYCLE),
	MQ(RS, "ListContainers", list_containers_request, cri_list_containers),
	U(RS, "StreamContainers", stream_containers_request, NO_STREAM),
	MQ(RS, "ContainerStatus", container_status_request, cri_container_status),
	M(RS, "UpdateContainerResources", update_container_resources_request, cri_update_container_resources, LIFECYCLE),
	M(RS, "ReopenContainerLog", reopen_container_log_request, cri_reopen_container_log, LIFECYCLE),
	UR(RS, "ExecSync", exec_sync_request, NO_EXEC, LIFECYCLE, exec_timeout_s),
	UR(RS, "Exec", exec_request, NO_EXEC, READ, NULL),
	MR(RS, "Attach", attach_request, cri_attach, READ),
	MR(RS, "PortForward", port_forward_request, cri_port_forward, READ),
	M(RS, "ContainerStats", container_stats_request, cri_container_stats, READ),
	M(RS, "ListContainerStats", list_container_stats_request, cri_list_container_stats, READ),
	U(RS, "StreamContainerStats", stream_container_stats_request, NO_STREAM),
	M(RS, "PodSandboxStats", pod_sandbox_stats_request, cri_pod_sandbox_stats, READ),
	M(RS, "ListPodSandboxStats", list_pod_sandbox_stats_request, cri_list_pod_sandbox_stats, READ),
	U(RS, "StreamPodSandboxStats", stream_pod_sandbox_stats_request, NO_STREAM),
	M(RS, "UpdateRuntimeConfig", update_runtime_config_request, cri_update_runtime_config, LIFECYCLE),
	M(RS, "Status", status_request, cri_status, READ),
	UR(RS, "CheckpointContainer", checkpoint_container_request, "a VM checkpoint is not supported", LIFECYCLE, NULL),
	U(RS, "GetContainerEvents", get_events_request, "container events are not streamed; kubelet polls"),
	U(RS, "ListMetricDescriptors", list_metric_descriptors_request, NO_STATS),
	U(RS, "ListPodSandboxMetrics", list_pod_sandbox_metrics_request, NO_STATS),
	U(RS, "StreamPodSandboxMetrics", stream_pod_sandbox_metrics_request, NO_STREAM),
	M(RS, "RuntimeConfig", runtime_config_request, cri_runtime_config, READ),
	UR(RS, "UpdatePodSandboxResources", update_pod_sandbox_resources_request,
	   "pod-level resources are not supported; update the container's", LIFECYCLE, NULL),
	M(IS, "ListImages", list_images_request, cri_list_images, READ),
	U(IS, "StreamImages", stream_images_request, NO_STREAM),
	M(IS, "ImageStatus", image_status_request, cri_image_status, READ),
	M(IS, "PullImage", pull_image_request, cri_pull_image, IMAGE),
	M(IS, "RemoveImage", remove_image_request, cri_remove_image, IMAGE),
	M(IS, "ImageFsInfo", image_fs_info_request, cri_image_fs_info, READ),
};

const size_t cri_n_methods = sizeof(cri_methods) / sizeof(cri_methods[0]);
