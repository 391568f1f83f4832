/* The delegate's routing decisions (issue 16): which side, unikd or the delegate
 * (containerd), runs a pod or pulls an image; the merge of both sides' list answers; and the
 * delegate's runtime handlers read from its Status answer.
 *
 * Pure: no I/O, no logging, no globals. Facts go in, a decision comes out with a `why` for
 * the edge to log. The list merges borrow the two answers' items: the answers must outlive
 * the merged result. */
#ifndef UK_DELEGATE_ROUTE_H
#define UK_DELEGATE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "api.pb-c.h"
#include "../common/error.h"

/* `[delegate] handlers` holds at most this many names. */
#define DELEGATE_MAX_HANDLERS 16
/* A handler name is at most this long (a RuntimeClass handler is a DNS label: 63). */
#define DELEGATE_HANDLER_MAX 63
/* One side's list answer holds at most this many items; more is an error naming the side. */
#define DELEGATE_MAX_LIST_ITEMS 65536u
/* A merged image holds at most this many repo tags (and as many repo digests). */
#define DELEGATE_MAX_IMAGE_REFS 1024u
/* One side's ListImages answer holds at most this many repo tags and digests in all; it
 * bounds the merge's work and what it allocates. */
#define DELEGATE_MAX_ANSWER_REFS 131072u

struct delegate_config {
	const char *const *handlers; /* unikd's handlers: `[delegate] handlers`, default "unikd" */
	size_t n_handlers;
	bool default_unikd; /* `[delegate] default = unikd` (else `delegate`) */
	bool enabled;       /* a `[delegate] endpoint` is set */
	/* The delegate's own handlers (its RuntimeClasses, e.g. "runc"), as it reports them. */
	const char *const *delegate_handlers;
	size_t n_delegate_handlers;
};

enum delegate_side { SIDE_UNIKD, SIDE_DELEGATE };

struct delegate_route {
	enum delegate_side side;
	const char *why; /* static text, for the log */
};

/* "unikd" or "the delegate". */
const char *delegate_side_name(enum delegate_side side);

/* 0 when the config is usable: 1..DELEGATE_MAX_HANDLERS handlers, each a non-empty name of
 * [a-z0-9._-] up to DELEGATE_HANDLER_MAX bytes, none twice. -EINVAL naming
 * `[delegate] handlers` otherwise. */
int delegate_config_check(const struct delegate_config *cfg, uk_error *err);

/* The side of a new pod sandbox, from its config (may be NULL) and runtime_handler (NULL
 * counts as empty). Host network, PID or IPC namespaces (NODE) go to the delegate; one of
 * unikd's handlers goes to unikd; one of the delegate's to the delegate; an empty handler
 * goes to the default side; any other handler is -EINVAL, naming runtime_handler and
 * listing the served handlers. With the
 * delegate off, everything is unikd's. */
int delegate_route_sandbox(const struct delegate_config *cfg, const Runtime__V1__PodSandboxConfig *config,
			   const char *runtime_handler, struct delegate_route *out, uk_error *err);

/* Whether h is one of unikd's handlers (`[delegate] handlers`). */
bool delegate_handler_is_unikd(const struct delegate_config *cfg, const char *h);

/* RunPodSandbox: delegate_route_sandbox on the request's config and runtime_handler. */
int delegate_route_run(const struct delegate_config *cfg, const Runtime__V1__RunPodSandboxRequest *req,
		       struct delegate_route *out, uk_error *err);

/* PullImage. pod_side, when non-NULL, is the side of the sandbox already run for this pod
 * (kubelet runs RunPodSandbox before it pulls; the edge finds it by the sandbox_config's
 * metadata): it wins, since kubelet leaves image.runtime_handler empty unless its feature
 * gate RuntimeClassInImageCriApi is on. Otherwise the RunPodSandbox decision on the
 * sandbox_config and image.runtime_handler; no sandbox_config and no handler: the default. */
int delegate_route_pull(const struct delegate_config *cfg, const Runtime__V1__PullImageRequest *req,
			const enum delegate_side *pod_side, struct delegate_route *out, uk_error *err);

/* The delegate's runtime handlers, from its Status answer (verbose): runtime_handlers, or,
 * from a containerd before CRI 1.30, the names under containerd.runtimes in info["config"]
 * (at most DELEGATE_MAX_STATUS_CONFIG bytes of JSON are read). At most DELEGATE_MAX_HANDLERS
 * names, each a handler name (others are skipped), none twice; *ret is NULL-terminated,
 * free each and it. 0 with none found. */
#define DELEGATE_MAX_STATUS_CONFIG (1u << 20)
int delegate_handlers_from_status(const Runtime__V1__StatusResponse *st, char ***ret, size_t *n_ret, uk_error *err);

/* Whether the delegate's Status answer says it can run pods: no RuntimeReady or NetworkReady
 * condition false (other conditions are its own business). When not, why gets the condition,
 * its reason and message, cut to fit. */
bool delegate_status_ready(const Runtime__V1__StatusResponse *st, char *why, size_t len);

/* List merges: out gets unikd's items, then the delegate's, each side already filtered by
 * the request's filter. Items are borrowed; free out's array with the matching *_done.
 * -E2BIG naming the side when a side has more than DELEGATE_MAX_LIST_ITEMS items; -EINVAL
 * naming the side and index for a NULL item. A NULL answer counts as empty. On failure
 * out is left empty. */
int delegate_merge_sandboxes(const Runtime__V1__ListPodSandboxResponse *unikd,
			     const Runtime__V1__ListPodSandboxResponse *delegate,
			     Runtime__V1__ListPodSandboxResponse *out, uk_error *err);
int delegate_merge_containers(const Runtime__V1__ListContainersResponse *unikd,
			      const Runtime__V1__ListContainersResponse *delegate,
			      Runtime__V1__ListContainersResponse *out, uk_error *err);
int delegate_merge_container_stats(const Runtime__V1__ListContainerStatsResponse *unikd,
				   const Runtime__V1__ListContainerStatsResponse *delegate,
				   Runtime__V1__ListContainerStatsResponse *out, uk_error *err);
int delegate_merge_sandbox_stats(const Runtime__V1__ListPodSandboxStatsResponse *unikd,
				 const Runtime__V1__ListPodSandboxStatsResponse *delegate,
				 Runtime__V1__ListPodSandboxStatsResponse *out, uk_error *err);
void delegate_merge_sandboxes_done(Runtime__V1__ListPodSandboxResponse *out);
void delegate_merge_containers_done(Runtime__V1__ListContainersResponse *out);
void delegate_merge_container_stats_done(Runtime__V1__ListContainerStatsResponse *out);
void delegate_merge_sandbox_stats_done(Runtime__V1__ListPodSandboxStatsResponse *out);

/* ListImages merged: unikd's images, then the delegate's whose id unikd does not list. For
 * an id on both sides unikd's entry is kept and the delegate's repo tags and digests are
 * added to it, each once. Merged entries are shallow copies owned here; the rest is
 * borrowed. Errors as above, all naming the side: -EINVAL for an image without an id or an
 * id listed twice by one side, -E2BIG for an image over DELEGATE_MAX_IMAGE_REFS tags or
 * digests (before or after the merge) or an answer over DELEGATE_MAX_ANSWER_REFS. */
struct delegate_images {
	Runtime__V1__ListImagesResponse resp;
	Runtime__V1__Image *copies; /* the merged entries */
	size_t n_copies;
	char **refs; /* the merged entries' tag and digest arrays */
};
int delegate_merge_images(const Runtime__V1__ListImagesResponse *unikd,
			  const Runtime__V1__ListImagesResponse *delegate, struct delegate_images *out,
			  uk_error *err);
void delegate_images_done(struct delegate_images *out);

#endif
