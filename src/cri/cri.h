/* The mapping from CRI calls to the runtime: handlers and the method table. */
#ifndef UK_CRI_H
#define UK_CRI_H

#include "api.pb-c.h"
#include "grpc_server.h"
#include "../guest/guest.h"
#include "../unikd/runtime.h"

#define CRI_RUNTIME_NAME "unikd"
#define CRI_API_VERSION "v1"
#define CRI_HANDLER_NAME "unikd"

/* Annotations that choose VM settings per pod (sandbox) or per container. */
#define ANN_ACCEL "unikd.io/accel"
#define ANN_MACHINE "unikd.io/machine"
#define ANN_CPU "unikd.io/cpu"
#define ANN_FIRMWARE "unikd.io/firmware"         /* auto | qboot | seabios */
#define ANN_NETCFG "unikd.io/network-config"     /* auto | dhcp | static (docs/guests.md) */
#define ANN_PIT "unikd.io/pit"                   /* auto | on | off: the i8254 PIT (docs/guests.md) */

struct cri_context {
	struct runtime *rt;
	json_object *config_info; /* for Status verbose */
	char *qemu_version;
	bool kvm_available;
	const char *const *insecure_registries; /* plain-HTTP registries (--insecure-registry); may be NULL */
	const char *const *handlers; /* unikd's runtime handlers (`[delegate] handlers`); NULL: "unikd" */
	struct delegate *delegate;   /* NULL: the delegate is off (src/delegate/forward.h) */
	struct stream_server *stream; /* Attach and PortForward's URLs (src/stream/server.h) */
};

extern const struct grpc_method cri_methods[];
extern const size_t cri_n_methods;

/* Maps between protobuf map entries and json-c string objects. */
typedef Runtime__V1__PodSandboxConfig__LabelsEntry cri_map_entry; /* all map<string,string> entries share this layout */
json_object *cri_map_to_json(size_t n, void **entries);
void cri_json_to_map(arena *a, json_object *o, size_t *n, void ***entries, const ProtobufCMessageDescriptor *d);
bool cri_labels_match(json_object *labels, size_t n, void **selector);
/* A map's value for key: in protobuf entries (the last one wins, as in the JSON made of
 * them), or in a JSON object; NULL when absent. */
const char *cri_map_get(size_t n, void *const *entries, const char *key);
const char *cri_json_get(json_object *o, const char *key);
/* unikd.io/cpu against the models and flags this QEMU lists (`-cpu help`, run on first
 * use, once per process, under a mutex; cri_util.c). -EINVAL naming field when refused. */
int cri_cpu_model_check(const struct cri_context *ctx, const char *value, const char *field, uk_error *err);
/* The CRI's list filters: id and pod id match by prefix, state < 0 matches any state,
 * and every selector label must match. */
bool cri_container_matches(const struct container *c, const char *id, const char *pod_id, int state, size_t n_sel,
			   void **sel);
bool cri_sandbox_matches(const struct sandbox *s, const char *id, int state, size_t n_sel, void **sel);
Runtime__V1__PodSandboxMetadata *cri_sandbox_metadata(arena *a, const struct sandbox *s);
Runtime__V1__ContainerMetadata *cri_container_metadata(arena *a, const struct container *c);

/* The guest contract (cri_guest.c). Probe the image's kernel, without the lock (NULL without
 * a kernel). Then, under the runtime's lock, plan the guest from the pod, the request and the
 * image and fill the container's VM fields: the command line (network placeholders
 * expanded), machine and firmware (the annotations over the contract's choice), exit,
 * devices, nic and the plan for people; *use_disk: whether the image's disk is attached. */
struct guest_binary;
int cri_guest_probe(const struct image_info *img, struct guest_binary **ret, uk_error *err);
struct cri_volumes;
int cri_guest_plan(struct runtime *rt, const struct sandbox *s, const Runtime__V1__ContainerConfig *cfg,
		   const struct image_info *img, const struct guest_binary *bin, const struct cri_volumes *vols,
		   struct container *c, bool *use_disk, uk_error *err);
/* For ImageStatus verbose: the framework the image's kernel is taken for, and why. */
json_object *cri_guest_of_image(const struct image_info *img);

/* A Status condition (msg borrowed: it must live as long as the arena). */
Runtime__V1__RuntimeCondition *cri_condition(arena *a, const char *type, bool ok, const char *reason,
					      const char *msg);

/* Handlers per service (cri_runtime.c, cri_image.c). */
#define CRI_HANDLER(name) int name(void *ud, arena *a, const ProtobufCMessage *req, ProtobufCMessage **resp, uk_error *err)
CRI_HANDLER(cri_version);
CRI_HANDLER(cri_status);
CRI_HANDLER(cri_run_pod_sandbox);
CRI_HANDLER(cri_stop_pod_sandbox);
CRI_HANDLER(cri_remove_pod_sandbox);
CRI_HANDLER(cri_pod_sandbox_status);
CRI_HANDLER(cri_list_pod_sandbox);
CRI_HANDLER(cri_create_container);
CRI_HANDLER(cri_start_container);
CRI_HANDLER(cri_stop_container);
CRI_HANDLER(cri_remove_container);
CRI_HANDLER(cri_list_containers);
CRI_HANDLER(cri_container_status);
CRI_HANDLER(cri_reopen_container_log);
CRI_HANDLER(cri_update_runtime_config);
CRI_HANDLER(cri_runtime_config);
CRI_HANDLER(cri_update_container_resources);
CRI_HANDLER(cri_container_stats);
CRI_HANDLER(cri_list_container_stats);
CRI_HANDLER(cri_pod_sandbox_stats);
CRI_HANDLER(cri_list_pod_sandbox_stats);
CRI_HANDLER(cri_list_images);
CRI_HANDLER(cri_image_status);
CRI_HANDLER(cri_pull_image);
CRI_HANDLER(cri_remove_image);
CRI_HANDLER(cri_image_fs_info);
CRI_HANDLER(cri_attach);
CRI_HANDLER(cri_port_forward);

#endif
