/* What a CRI request may hold: the size limits of every repeated field unikd reads (per item,
 * in total, in count), Kubernetes' rules for label and annotation keys, the resources a VM
 * and the kernel accept, and known values for enums. Pure functions over the decoded
 * messages: no I/O, no runtime state; errors are -EINVAL or -E2BIG (INVALID_ARGUMENT at the
 * gRPC edge) and name the field. docs/cri.md, "Limits", lists the same table. */
#ifndef UK_CRI_LIMITS_H
#define UK_CRI_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.pb-c.h"
#include "../cgroup/cgroup.h"
#include "../common/error.h"
#include "../../vmwrapper/spec.h"

/* Kubernetes' label and annotation key: an optional DNS-subdomain prefix and '/', then a
 * name. The API server's limit for all of an object's annotations together is 256 KiB. */
#define CRI_KEY_PREFIX_MAX 253
#define CRI_KEY_NAME_MAX 63
#define CRI_KEY_MAX (CRI_KEY_PREFIX_MAX + 1 + CRI_KEY_NAME_MAX)
/* Kubernetes allows 63 bytes in a label value, but kubelet's own io.kubernetes.pod.name
 * label carries the pod's name, a DNS subdomain of up to 253 bytes. */
#define CRI_LABEL_VALUE_MAX 253
#define CRI_ANNOTATIONS_TOTAL_MAX (256 * 1024)

/* Strings that are not lists. */
#define CRI_NAME_MAX 253       /* metadata name, uid, namespace; hostname; ids */
#define CRI_PATH_MAX 4095      /* log_directory, mount and device paths (PATH_MAX - 1) */

/* Resources: the VM's own bounds (vmwrapper/spec.h) and the kernel's CFS bounds
 * (src/cgroup/cgroup.h, from kernel/sched/core.c). */
#define CRI_MEMORY_MIN_MIB VM_MEMORY_MIN_MIB
#define CRI_MEMORY_MAX_MIB VM_MEMORY_MAX_MIB /* 1 TiB */
#define CRI_VCPUS_MAX VM_VCPUS_MAX

/* The lists, one row each in cri_limits[]. */
enum cri_limit_id {
	CRI_LIM_LABELS,        /* labels of pods and containers, and label selectors of filters */
	CRI_LIM_ANNOTATIONS,   /* of pods, containers, images and updates */
	CRI_LIM_COMMAND,
	CRI_LIM_ARGS,
	CRI_LIM_ENVS,
	CRI_LIM_MOUNTS,
	CRI_LIM_ID_MAPPINGS,   /* a mount's or a user namespace's uid or gid mappings */
	CRI_LIM_DEVICES,
	CRI_LIM_CDI_DEVICES,
	CRI_LIM_PORT_MAPPINGS,
	CRI_LIM_DNS_SERVERS,
	CRI_LIM_DNS_SEARCHES,
	CRI_LIM_DNS_OPTIONS,
	CRI_LIM_SYSCTLS,
	CRI_LIM_SUPPLEMENTAL_GROUPS,
	CRI_LIM_CAPABILITIES,  /* each of add, drop, add_ambient */
	CRI_LIM_SECURITY_PATHS, /* masked_paths, readonly_paths */
	CRI_LIM_HUGEPAGE_LIMITS,
	CRI_LIM_UNIFIED,       /* resources.unified (cgroup v2 files) */
	CRI_LIM__COUNT
};

struct cri_limit {
	const char *what;  /* as docs/cri.md names the fields it covers */
	size_t count;      /* most items */
	size_t key;        /* most bytes of a key (maps, envs); 0: the items have none */
	size_t item;       /* most bytes of an item (its value, for maps); 0: not strings */
	size_t total;      /* most bytes of all keys and items together; 0: not strings */
};

extern const struct cri_limit cri_limits[CRI_LIM__COUNT];

/* A list of n strings against row id: count, each item, the total. field names it. */
int cri_check_strings(enum cri_limit_id id, const char *field, size_t n, char *const *v, uk_error *err);

/* A map<string,string> (every map entry of the CRI has this layout), against row id. Labels
 * and annotations also check their keys (Kubernetes' qualified names), labels their values. */
int cri_check_map(enum cri_limit_id id, const char *field, size_t n, void *const *entries, uk_error *err);

/* A value for an error message: printable ASCII as it is, other bytes as '?', cut with
 * "..." to fit CRI_QUOTE_MAX (NUL included). */
#define CRI_QUOTE_MAX 72
void cri_quote(char out[CRI_QUOTE_MAX], const char *v);

/* A required name or id: non-empty, at most CRI_NAME_MAX bytes. -EINVAL naming field. */
int cri_require(const char *v, const char *field, uk_error *err);

/* Kubernetes' rules, for tests and the checks above. */
bool cri_qualified_name_ok(const char *key);
bool cri_label_value_ok(const char *value);

/* LinuxContainerResources as the VM and the kernel take them, identical for
 * CreateContainer (config.linux.resources) and UpdateContainerResources (linux). CRI
 * semantics: 0 means "not specified". */
struct cri_resources {
	int64_t memory_limit; /* bytes; 0: not given */
	int64_t cpu_quota;    /* µs; 0: not given; -1: no quota (lifts one on update) */
	int64_t cpu_period;   /* µs; 0: not given (100000) */
	int64_t cpu_shares;   /* 0: not given */
	unsigned memory_mib;  /* the guest RAM memory_limit asks for, rounded up; 0: not given */
	unsigned vcpus;       /* the vCPUs quota/period asks for, rounded up; 0: not given */
};

/* r may be NULL (all zero). Memory: 0, or 16 MiB .. 1 TiB. Period: 0, or 1000..1000000 µs.
 * Quota: 0, -1, or 1000 µs .. the kernel's 2^44-1 µs, and at most 256 vCPUs against the
 * period given (or 100000). Shares: 0, or 2..262144. The repeated fields (hugepage_limits,
 * unified) against their rows. field_prefix comes before each field's name in errors
 * ("config.linux.resources."). */
int cri_check_resources(const Runtime__V1__LinuxContainerResources *r, const char *field_prefix,
			struct cri_resources *out, uk_error *err);

/* Everything of RunPodSandbox's config that is checked without the runtime: metadata,
 * hostname, log_directory, labels, annotations, port mappings (known protocols; SCTP is
 * refused), DNS, sysctls, the security context's lists and enums. cgroup_parent's rules are
 * the cgroup library's (cg_parent_check); only its length is checked here. */
int cri_check_pod_config(const Runtime__V1__PodSandboxConfig *cfg, uk_error *err);

/* The same for CreateContainer's config: metadata, image, command/args/envs (counts and
 * items; the command line they make is bounded by src/guest/cmdline), mounts, devices, CDI
 * devices, labels, annotations, log_path, the security context, stop_signal, and resources
 * into *res. */
int cri_check_container_config(const Runtime__V1__ContainerConfig *cfg, struct cri_resources *res,
			       uk_error *err);

/* UpdateContainerResources: linux (cri_check_resources with "linux."), annotations. */
int cri_check_update(const Runtime__V1__UpdateContainerResourcesRequest *q, struct cri_resources *res,
		     uk_error *err);

/* An ImageSpec: image at most CRI_PATH_MAX bytes, its annotations. */
int cri_check_image_spec(const Runtime__V1__ImageSpec *s, const char *field, uk_error *err);

/* List filters: the label selector against the labels row, the state a known value. */
int cri_check_pod_filter(const Runtime__V1__PodSandboxFilter *f, uk_error *err);
int cri_check_container_filter(const Runtime__V1__ContainerFilter *f, uk_error *err);
int cri_check_selector(const char *field, size_t n, void *const *sel, uk_error *err);

/* The console log's path: log_directory "/" log_path, which must fit len bytes (PATH_MAX)
 * with no component over NAME_MAX; -ENAMETOOLONG naming config.log_path otherwise, never a
 * truncated path. */
int cri_log_path_join(const char *log_directory, const char *log_path, char *out, size_t len, uk_error *err);

/* QEMU's CPU models and CPUID flags, from `qemu-system-x86_64 -cpu help` (limits_cpu.c). */
struct cri_cpu_models;
/* Parse the output: "x86 NAME  description" lines under "Available CPUs:", and the words
 * under "Recognized CPUID flags:". -EINVAL when no model is found (not QEMU's list). */
int cri_cpu_models_parse(const char *text, struct cri_cpu_models **ret, uk_error *err);
void cri_cpu_models_free(struct cri_cpu_models *m);
/* A `-cpu` value: a listed model, then optional ",+flag", ",-flag" or ",flag=on|off" with
 * listed flags. -EINVAL naming field otherwise. */
int cri_cpu_check(const struct cri_cpu_models *m, const char *value, const char *field, uk_error *err);

#endif
