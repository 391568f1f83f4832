/* The delegate at the CRI edge (forward.h). Every call passes here first:
 *  - calls without an object (Version, RuntimeConfig, the streams) stay in unikd;
 *  - RunPodSandbox goes where delegate_route_run says;
 *  - a call naming a sandbox or container goes to unikd when unikd has it, else to the
 *    delegate: unikd's records are crash-safe, so no call of one of its objects can leave;
 *  - lists, image and runtime-wide calls ask both sides and merge.
 * A forwarded call sends the request's bytes as they came and hands the delegate's answer
 * back untouched (bytes, code, message); only what routing needs is decoded. */
#include "forward.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/macros.h"
#include "../common/util.h"

struct delegate {
	struct delegate_config cfg;
	struct delegate_client *client;
	char *dir; /* <state_dir>/delegate: a file per delegated id (see record_text) */
	pthread_mutex_t lock; /* the records */
	bool checked;         /* the records were checked against the delegate's lists */
	/* The delegate's runtime handlers, learnt from its first Status answer; set once
	 * under lock, then never changed. */
	char **theirs;
	size_t n_theirs;
};

#define RS "/runtime.v1.RuntimeService/"
#define IS "/runtime.v1.ImageService/"

/* ---- records: which ids are the delegate's ---- */

/* What a record holds: "pod <sandbox id>" for a container, so that removing its pod drops
 * it; "uid <metadata uid>" for a sandbox, so that a PullImage for that pod finds its side. */
#define RECORD_TEXT_MAX 160
static void record_text(char buf[RECORD_TEXT_MAX], bool container, const char *s)
{
	s = s ? s : "";
	/* A uid longer than Kubernetes makes one is not kept: its pulls follow the rules instead. */
	snprintf(buf, RECORD_TEXT_MAX, "%s %s", container ? "pod" : "uid", strlen(s) < RECORD_TEXT_MAX - 8 ? s : "");
}

static int record_add(struct delegate *d, const char *id, const char *text, uk_error *err)
{
	char path[PATH_MAX];
	if (!uk_id_valid(id))
		return uk_err(err, EINVAL, "the delegate answered with an invalid id \"%.80s\"", id);
	snprintf(path, sizeof(path), "%s/%s", d->dir, id);
	pthread_mutex_lock(&d->lock);
	int r = uk_write_file_atomic(path, text, strlen(text), 0600, err);
	pthread_mutex_unlock(&d->lock);
	return r;
}

static bool record_has(struct delegate *d, const char *id)
{
	char path[PATH_MAX];
	if (!uk_id_valid(id))
		return false;
	snprintf(path, sizeof(path), "%s/%s", d->dir, id);
	return access(path, F_OK) == 0;
}

/* Under d->lock: whether a record holds text; with unlink_them, every such record goes. */
static bool records_find_locked(struct delegate *d, const char *text, bool unlink_them)
{
	_cleanup_closedir_ DIR *dir = opendir(d->dir);
	bool any = false;
	for (struct dirent *e; dir && (e = readdir(dir));) {
		char path[PATH_MAX];
		_cleanup_free_ char *has = NULL;
		uk_error ignored = { 0 };
		if (!uk_id_valid(e->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", d->dir, e->d_name);
		if (uk_read_file(path, RECORD_TEXT_MAX, &has, NULL, &ignored) < 0 || strcmp(has, text) != 0)
			continue;
		any = true;
		if (!unlink_them)
			break;
		(void)unlink(path); /* a failure leaves a stale record: the next check drops it */
	}
	return any;
}

/* Under d->lock: drop id's record, and with a sandbox its containers'. */
static void records_drop_locked(struct delegate *d, const char *id)
{
	char path[PATH_MAX], text[RECORD_TEXT_MAX];
	snprintf(path, sizeof(path), "%s/%s", d->dir, id);
	(void)unlink(path); /* absent already: nothing to drop */
	record_text(text, true, id);
	(void)records_find_locked(d, text, true);
}

static void record_drop(struct delegate *d, const char *id)
{
	if (!uk_id_valid(id))
		return;
	pthread_mutex_lock(&d->lock);
	records_drop_locked(d, id);
	pthread_mutex_unlock(&d->lock);
}

/* ---- forwarding ---- */

static uint64_t probe_deadline(void)
{
	uint64_t probe = uk_now_mono_ns() + (uint64_t)DELEGATE_PROBE_MS * 1000000u;
	uint64_t call = grpc_call_deadline_mono_ns();
	return call < probe ? call : probe;
}

/* Forward the current call as it came. gRPC moves the slices out of a message it sends: a
 * copy (references to the same slices, no bytes copied) leaves the request whole. */
static void forward_bytes(struct delegate *d, const struct grpc_method *m, grpc_byte_buffer *req,
			  struct delegate_answer *ans)
{
	grpc_byte_buffer *bb = req ? grpc_byte_buffer_copy(req) : NULL;
	if (!bb) {
		*ans = (struct delegate_answer){ .code = GRPC_STATUS_INTERNAL };
		snprintf(ans->msg, sizeof(ans->msg), "%s: the request's bytes are gone", m->path);
		return;
	}
	delegate_call(d->client, m->path, bb, grpc_call_deadline_mono_ns(), ans);
	grpc_byte_buffer_destroy(bb);
}

static void forward(struct delegate *d, const struct grpc_method *m, struct delegate_answer *ans)
{
	forward_bytes(d, m, grpc_call_request_bytes(), ans);
}

/* Answer the current call with the delegate's answer, as it came. */
static int reply_with(struct delegate_answer *ans)
{
	grpc_call_reply_raw(TAKE_PTR(ans->bytes), ans->code, ans->msg);
	return GRPC_REPLY_RAW;
}

/* Answer with first packed, then second (NULL: none) packed after it. Two answers of one
 * list type make the merged answer that way: each list answer is one repeated field, and
 * repeated fields concatenate, so unikd's items stay first. Packed apart, since unikd's may
 * carry its items packed ahead of time as unknown fields (src/cri/wire_items.h), which
 * protobuf-c packs after known ones. */
static int reply_concat(const ProtobufCMessage *first, const ProtobufCMessage *second, uk_error *err)
{
	size_t n1 = protobuf_c_message_get_packed_size(first);
	size_t n2 = second ? protobuf_c_message_get_packed_size(second) : 0;
	_cleanup_free_ uint8_t *buf = malloc(n1 + n2 ? n1 + n2 : 1);
	if (!buf)
		return uk_err(err, ENOMEM, "out of memory packing a merged answer (%zu bytes)", n1 + n2);
	protobuf_c_message_pack(first, buf);
	if (second)
		protobuf_c_message_pack(second, buf + n1);
	grpc_slice sl = grpc_slice_from_copied_buffer((const char *)buf, n1 + n2);
	grpc_call_reply_raw(grpc_raw_byte_buffer_create(&sl, 1), GRPC_STATUS_OK, "");
	grpc_slice_unref(sl);
	return GRPC_REPLY_RAW;
}

/* Answer with a message packed here (a merged answer). */
static int reply_packed(const ProtobufCMessage *msg, uk_error *err)
{
	return reply_concat(msg, NULL, err);
}

/* The delegate's answer decoded (only where routing or a merge needs it). */
static ProtobufCMessage *unpack_answer(const struct delegate_answer *ans, const ProtobufCMessageDescriptor *desc)
{
	size_t n = 0;
	_cleanup_free_ uint8_t *p = delegate_answer_flatten(ans, &n);
	return p ? protobuf_c_message_unpack(desc, NULL, n, p) : NULL;
}

static void free_unpacked(ProtobufCMessage **m)
{
	if (*m)
		protobuf_c_message_free_unpacked(*m, NULL);
}
#define _cleanup_unpacked_ _cleanup_(free_unpacked)

static bool unreachable(const struct delegate_answer *ans)
{
	return ans->code == GRPC_STATUS_UNAVAILABLE || ans->code == GRPC_STATUS_DEADLINE_EXCEEDED;
}

/* ---- the checks of the records against the delegate's lists ---- */

static int list_ids(struct delegate *d, bool pods, char ***ids, char ***texts, size_t *n, uk_error *err)
{
	struct delegate_answer ans;
	delegate_call_bytes(d->client, pods ? RS "ListPodSandbox" : RS "ListContainers", "", 0, probe_deadline(), &ans);
	if (ans.code != GRPC_STATUS_OK)
		return uk_err(err, EAGAIN, "%s", ans.msg);
	_cleanup_unpacked_ ProtobufCMessage *m =
		unpack_answer(&ans, pods ? &runtime__v1__list_pod_sandbox_response__descriptor
					 : &runtime__v1__list_containers_response__descriptor);
	delegate_answer_done(&ans);
	if (!m)
		return uk_err(err, EPROTO, "the delegate's list answer is malformed");
	size_t k = pods ? ((Runtime__V1__ListPodSandboxResponse *)m)->n_items
			: ((Runtime__V1__ListContainersResponse *)m)->n_containers;
	if (k > DELEGATE_MAX_LIST_ITEMS)
		return uk_err(err, E2BIG, "the delegate lists %zu objects (at most %u)", k, DELEGATE_MAX_LIST_ITEMS);
	*ids = calloc(k + 1, sizeof(char *));
	*texts = calloc(k + 1, sizeof(char *));
	*n = 0;
	if (!*ids || !*texts)
		return uk_err(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < k; i++) {
		const char *id = pods ? ((Runtime__V1__ListPodSandboxResponse *)m)->items[i]->id
				      : ((Runtime__V1__ListContainersResponse *)m)->containers[i]->id;
		const Runtime__V1__PodSandboxMetadata *md = pods ? ((Runtime__V1__ListPodSandboxResponse *)m)->items[i]->metadata : NULL;
		const char *of = pods ? (md ? md->uid : NULL) : ((Runtime__V1__ListContainersResponse *)m)->containers[i]->pod_sandbox_id;
		char text[RECORD_TEXT_MAX];
		if (!uk_id_valid(id))
			continue; /* never a path: such an id cannot be recorded, and is routed by trying */
		record_text(text, !pods, of);
		(*ids)[*n] = strdup(id);
		(*texts)[*n] = strdup(text);
		if (!(*ids)[*n] || !(*texts)[(*n)++])
			return uk_err(err, ENOMEM, "out of memory");
	}
	return 0;
}

static void free_strv(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

/* Make the records what the delegate lists: a record for each of its objects (one made
 * while unikd was down, or forwarded just before a SIGKILL), none for what it no longer has. */
static int check_records(struct delegate *d, uk_error *err)
{
	char **pods = NULL, **pods_text = NULL, **ctrs = NULL, **ctrs_text = NULL;
	size_t np = 0, nc = 0;
	/* Held across the lists: a record written meanwhile would be dropped as unlisted. */
	pthread_mutex_lock(&d->lock);
	int r = list_ids(d, true, &pods, &pods_text, &np, err);
	if (r == 0)
		r = list_ids(d, false, &ctrs, &ctrs_text, &nc, err);
	_cleanup_closedir_ DIR *dir = r == 0 ? opendir(d->dir) : NULL;
	if (r == 0 && !dir)
		r = uk_err_errno(err, errno, "cannot read %s", d->dir);
	for (struct dirent *e; r == 0 && (e = readdir(dir));) {
		bool listed = false;
		for (size_t i = 0; i < np && !listed; i++)
			listed = strcmp(pods[i], e->d_name) == 0;
		for (size_t i = 0; i < nc && !listed; i++)
			listed = strcmp(ctrs[i], e->d_name) == 0;
		if (!listed && uk_id_valid(e->d_name))
			(void)unlinkat(dirfd(dir), e->d_name, 0); /* a failure is retried at the next check */
	}
	for (size_t i = 0; r == 0 && i < np + nc; i++) {
		const char *id = i < np ? pods[i] : ctrs[i - np], *pod = i < np ? pods_text[i] : ctrs_text[i - np];
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", d->dir, id);
		if (access(path, F_OK) != 0)
			r = uk_write_file_atomic(path, pod, strlen(pod), 0600, err);
	}
	if (r == 0)
		d->checked = true;
	pthread_mutex_unlock(&d->lock);
	free_strv(pods), free_strv(pods_text), free_strv(ctrs), free_strv(ctrs_text);
	return r;
}

/* From the delegate's verbose Status answer: its handlers (replacing what was learnt, so a
 * runtime added to containerd is served without a restart) and its readiness: false, with
 * why, when one of its own conditions is false (no CNI config yet, say). */
static bool learn_from_status(struct delegate *d, const struct delegate_answer *ans, char *why, size_t why_len)
{
	_cleanup_unpacked_ ProtobufCMessage *m = unpack_answer(ans, &runtime__v1__status_response__descriptor);
	const Runtime__V1__StatusResponse *st = (const Runtime__V1__StatusResponse *)m;
	char **names = NULL;
	size_t n = 0;
	uk_error ignored = { 0 };
	if (!st) {
		snprintf(why, why_len, "delegate %s: its Status answer is malformed", delegate_client_endpoint(d->client));
		return false;
	}
	if (delegate_handlers_from_status(st, &names, &n, &ignored) == 0) {
		pthread_mutex_lock(&d->lock);
		char **old = d->theirs;
		d->theirs = TAKE_PTR(names);
		d->n_theirs = n;
		pthread_mutex_unlock(&d->lock);
		free_strv(old);
	}
	char cond[UK_ERROR_MSG_MAX / 2];
	if (delegate_status_ready(st, cond, sizeof(cond)))
		return true;
	snprintf(why, why_len, "delegate %s reports %s", delegate_client_endpoint(d->client), cond);
	return false;
}

/* StatusRequest{verbose: true}: field 1, varint 1. */
static const uint8_t status_verbose[] = { 0x08, 0x01 };

int delegate_open(const struct delegate_config *cfg, const char *endpoint, const char *state_dir, int max_receive,
		  struct delegate **ret, uk_error *err)
{
	_cleanup_free_ struct delegate *d = calloc(1, sizeof(*d));
	if (!d)
		return uk_err(err, ENOMEM, "out of memory");
	d->cfg = *cfg;
	pthread_mutex_init(&d->lock, NULL);
	if (asprintf(&d->dir, "%s/%s", state_dir, DELEGATE_RECORDS_DIR) < 0) {
		d->dir = NULL;
		return uk_err(err, ENOMEM, "out of memory");
	}
	int r = uk_mkdir_p(d->dir, 0700, err);
	if (r == 0)
		r = delegate_client_new(endpoint, max_receive, &d->client, err);
	if (r < 0) {
		free(d->dir);
		return r;
	}
	uk_error later = { 0 };
	(void)check_records(d, &later); /* a delegate down now is checked when it answers */
	struct delegate_answer ans;
	char why[UK_ERROR_MSG_MAX];
	delegate_call_bytes(d->client, RS "Status", status_verbose, sizeof(status_verbose), probe_deadline(), &ans);
	if (ans.code == GRPC_STATUS_OK)
		(void)learn_from_status(d, &ans, why, sizeof(why)); /* readiness is Status's business */
	delegate_answer_done(&ans);
	*ret = TAKE_PTR(d);
	return 0;
}

void delegate_free(struct delegate *d)
{
	if (!d)
		return;
	delegate_client_free(d->client);
	free_strv(d->theirs);
	pthread_mutex_destroy(&d->lock);
	free(d->dir);
	free(d);
}

/* ---- calls that name an object ---- */

/* Under the runtime's lock. */
static bool unikd_has_locked(struct runtime *rt, bool pod, const char *id)
{
	uk_error ignored = { 0 };
	struct sandbox *s;
	struct container *c;
	int r = pod ? rt_find_sandbox(rt, id, &s, &ignored) : rt_find_container(rt, id, &c, &ignored);
	return r != -ENOENT; /* an ambiguous prefix is unikd's to refuse */
}

static bool unikd_has(struct runtime *rt, bool pod, const char *id)
{
	rt_lock(rt);
	bool has = unikd_has_locked(rt, pod, id);
	rt_unlock(rt);
	return has;
}

/* The call names id (a sandbox when pod): unikd's own object stays; any other goes to the
 * delegate. An id the delegate cannot be asked about and never had is answered by unikd, as
 * any unknown id is; only the delegate's own objects get UNAVAILABLE. */
static int route_by_id(struct delegate *d, struct runtime *rt, const struct grpc_method *m, bool pod,
		       const char *id)
{
	if (!id || !*id || unikd_has(rt, pod, id))
		return GRPC_ROUTE_LOCAL;
	struct delegate_answer ans;
	forward(d, m, &ans);
	if (unreachable(&ans) && !record_has(d, id)) {
		delegate_answer_done(&ans);
		return GRPC_ROUTE_LOCAL;
	}
	if (ans.code == GRPC_STATUS_OK && (!strcmp(m->path, RS "RemovePodSandbox") || !strcmp(m->path, RS "RemoveContainer")))
		record_drop(d, id);
	return reply_with(&ans);
}

/* RunPodSandbox and CreateContainer forwarded: record the new id before answering, so a
 * SIGKILL after containerd made it loses nothing (the start-up check would find it too).
 * of: the container's pod id, or the sandbox's metadata uid. */
static int forward_and_record(struct delegate *d, const struct grpc_method *m, bool container, const char *of,
			      grpc_byte_buffer *bytes, uk_error *err)
{
	struct delegate_answer ans;
	forward_bytes(d, m, bytes ? bytes : grpc_call_request_bytes(), &ans);
	if (ans.code != GRPC_STATUS_OK)
		return reply_with(&ans);
	_cleanup_unpacked_ ProtobufCMessage *msg =
		unpack_answer(&ans, container ? &runtime__v1__create_container_response__descriptor
					: &runtime__v1__run_pod_sandbox_response__descriptor);
	const char *id = !msg ? NULL
		       : container ? ((Runtime__V1__CreateContainerResponse *)msg)->container_id
			      : ((Runtime__V1__RunPodSandboxResponse *)msg)->pod_sandbox_id;
	char text[RECORD_TEXT_MAX];
	record_text(text, container, of);
	int r = id ? record_add(d, id, text, err) : uk_err(err, EPROTO, "the delegate's answer to %s is malformed", m->path);
	if (r < 0) {
		delegate_answer_done(&ans);
		return r;
	}
	return reply_with(&ans);
}

/* The delegate's handlers as learnt so far, copied: a Status may replace them meanwhile. */
struct handlers_copy {
	char names[DELEGATE_MAX_HANDLERS][DELEGATE_HANDLER_MAX + 1];
	const char *v[DELEGATE_MAX_HANDLERS];
};

static struct delegate_config config_now(struct delegate *d, struct handlers_copy *hc)
{
	struct delegate_config cfg = d->cfg;
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->n_theirs && i < DELEGATE_MAX_HANDLERS; i++) {
		snprintf(hc->names[i], sizeof(hc->names[i]), "%s", d->theirs[i]);
		hc->v[i] = hc->names[i];
		cfg.n_delegate_handlers = i + 1;
	}
	pthread_mutex_unlock(&d->lock);
	cfg.delegate_handlers = hc->v;
	return cfg;
}

static int route_run(struct delegate *d, const struct grpc_method *m, const ProtobufCMessage *req, uk_error *err)
{
	struct delegate_route where;
	struct handlers_copy hc;
	struct delegate_config cfg = config_now(d, &hc);
	int r = delegate_route_run(&cfg, (const Runtime__V1__RunPodSandboxRequest *)req, &where, err);
	if (r < 0)
		return r;
	log_debug("rpc=%s side=%s why=\"%s\"", m->path, delegate_side_name(where.side), where.why);
	if (where.side == SIDE_UNIKD)
		return GRPC_ROUTE_LOCAL;
	const Runtime__V1__RunPodSandboxRequest *q = (const Runtime__V1__RunPodSandboxRequest *)req;
	const char *uid = q->config && q->config->metadata ? q->config->metadata->uid : NULL;
	if (!q->runtime_handler || !*q->runtime_handler ||
	    !delegate_handler_is_unikd(&d->cfg, q->runtime_handler))
		return forward_and_record(d, m, false, uid, NULL, err);
	/* A host-namespace pod of a unikd RuntimeClass: the delegate has no runtime by that name,
	 * so it gets the pod with its default runtime (the one change made to a request). */
	Runtime__V1__RunPodSandboxRequest copy = *q;
	copy.runtime_handler = (char *)"";
	size_t n = protobuf_c_message_get_packed_size(&copy.base);
	_cleanup_free_ uint8_t *buf = malloc(n ? n : 1);
	if (!buf)
		return uk_err(err, ENOMEM, "out of memory");
	protobuf_c_message_pack(&copy.base, buf);
	grpc_slice sl = grpc_slice_from_copied_buffer((const char *)buf, n);
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
	grpc_slice_unref(sl);
	log_debug("rpc=%s msg=\"runtime_handler %s cleared: the delegate runs the pod with its default\"", m->path,
		  q->runtime_handler);
	r = forward_and_record(d, m, false, uid, bb, err);
	grpc_byte_buffer_destroy(bb);
	return r;
}

static int route_create(struct delegate *d, struct runtime *rt, const struct grpc_method *m,
			const ProtobufCMessage *req, uk_error *err)
{
	const char *pod = ((const Runtime__V1__CreateContainerRequest *)req)->pod_sandbox_id;
	if (!pod || !*pod || unikd_has(rt, true, pod))
		return GRPC_ROUTE_LOCAL;
	uk_error stale = { 0 };
	/* Not recorded: perhaps made just before a SIGKILL; the delegate's list tells. */
	if (!record_has(d, pod) && (check_records(d, &stale) < 0 || !record_has(d, pod)))
		return GRPC_ROUTE_LOCAL; /* unikd's answer for a pod nobody has */
	return forward_and_record(d, m, true, pod, NULL, err);
}

/* ---- calls asked of both sides ---- */

enum call_kind {
	K_LOCAL, K_RUN, K_CREATE, K_POD, K_CTR, K_LIST_PODS, K_LIST_CTRS, K_LIST_CSTATS, K_LIST_PSTATS,
	K_LIST_IMAGES, K_IMAGE_STATUS, K_PULL, K_REMOVE_IMAGE, K_FS_INFO, K_STATUS, K_BOTH,
};

/* A delegate's ImageFsInfo lists a few filesystems; more is refused, not cut. */
#define DELEGATE_MAX_FILESYSTEMS 64

static int merge_fs(const Runtime__V1__ImageFsInfoResponse *u, const Runtime__V1__ImageFsInfoResponse *t,
		    uk_error *err)
{
	if (t->n_image_filesystems > DELEGATE_MAX_FILESYSTEMS || t->n_container_filesystems > DELEGATE_MAX_FILESYSTEMS)
		return uk_err(err, ENOSPC, "the delegate's ImageFsInfo lists %zu + %zu filesystems (at most %d each)",
			      t->n_image_filesystems, t->n_container_filesystems, DELEGATE_MAX_FILESYSTEMS);
	size_t ni = u->n_image_filesystems + t->n_image_filesystems;
	size_t nc = u->n_container_filesystems + t->n_container_filesystems;
	_cleanup_free_ Runtime__V1__FilesystemUsage **iv = calloc(ni + 1, sizeof(*iv));
	_cleanup_free_ Runtime__V1__FilesystemUsage **cv = calloc(nc + 1, sizeof(*cv));
	if (!iv || !cv)
		return uk_err(err, ENOMEM, "out of memory");
	if (u->n_image_filesystems)
		memcpy(iv, u->image_filesystems, u->n_image_filesystems * sizeof(*iv));
	if (t->n_image_filesystems)
		memcpy(iv + u->n_image_filesystems, t->image_filesystems, t->n_image_filesystems * sizeof(*iv));
	if (u->n_container_filesystems)
		memcpy(cv, u->container_filesystems, u->n_container_filesystems * sizeof(*cv));
	if (t->n_container_filesystems)
		memcpy(cv + u->n_container_filesystems, t->container_filesystems, t->n_container_filesystems * sizeof(*cv));
	Runtime__V1__ImageFsInfoResponse out = *u;
	out.image_filesystems = iv, out.n_image_filesystems = ni;
	out.container_filesystems = cv, out.n_container_filesystems = nc;
	return reply_packed(&out.base, err);
}

/* The delegate's list answer merged after unikd's (in *resp): packed and answered here. */
static int merge_list(enum call_kind k, ProtobufCMessage *mine, const ProtobufCMessage *theirs, uk_error *err)
{
	int r;
	switch (k) {
/* fn checks both sides' items (counts, none empty); the answer is unikd's, then theirs. */
#define MERGE(type, fn, done)                                                                      \
	{                                                                                          \
		type out = *(type *)mine;                                                  \
		if ((r = fn((type *)mine, (const type *)theirs, &out, err)) == 0)                  \
			r = reply_concat(mine, theirs, err);                                       \
		done(&out);                                                                        \
		return r;                                                                          \
	}
	case K_LIST_PODS: MERGE(Runtime__V1__ListPodSandboxResponse, delegate_merge_sandboxes, delegate_merge_sandboxes_done)
	case K_LIST_CTRS: MERGE(Runtime__V1__ListContainersResponse, delegate_merge_containers, delegate_merge_containers_done)
	case K_LIST_CSTATS:
		MERGE(Runtime__V1__ListContainerStatsResponse, delegate_merge_container_stats,
		      delegate_merge_container_stats_done)
	case K_LIST_PSTATS:
		MERGE(Runtime__V1__ListPodSandboxStatsResponse, delegate_merge_sandbox_stats,
		      delegate_merge_sandbox_stats_done)
#undef MERGE
	case K_LIST_IMAGES: {
		struct delegate_images out;
		if ((r = delegate_merge_images((Runtime__V1__ListImagesResponse *)mine,
					       (const Runtime__V1__ListImagesResponse *)theirs, &out, err)) == 0) {
			out.resp.base = *mine;
			r = reply_packed(&out.resp.base, err);
		}
		delegate_images_done(&out);
		return r;
	}
	case K_FS_INFO: return merge_fs((const void *)mine, (const void *)theirs, err);
	default: return uk_err(err, EINVAL, "no merge for this call");
	}
}

/* unikd's answer first, then the delegate's merged in. A delegate that cannot be reached
 * leaves unikd's part alone: kubelet's relist must not fail (it would mark the node NotReady
 * for the unikernel pods too); Status's DelegateReady condition says why. */
static int route_merge(struct delegate *d, const struct grpc_method *m, enum call_kind k,
		       const ProtobufCMessageDescriptor *desc, void *ud, arena *a, const ProtobufCMessage *req,
		       ProtobufCMessage **resp, uk_error *err)
{
	int r = m->fn(ud, a, req, resp, err);
	if (r < 0)
		return r;
	struct delegate_answer ans;
	forward(d, m, &ans);
	if (unreachable(&ans)) {
		delegate_answer_done(&ans);
		return 0;
	}
	if (ans.code != GRPC_STATUS_OK)
		return reply_with(&ans);
	_cleanup_unpacked_ ProtobufCMessage *theirs = unpack_answer(&ans, desc);
	delegate_answer_done(&ans);
	if (!theirs)
		return uk_err(err, EPROTO, "the delegate's answer to %s is malformed", m->path);
	r = merge_list(k, *resp, theirs, err);
	/* An answer over a bound or malformed is no fault of the caller's request. */
	return r == -E2BIG ? -ENOSPC : r == -EINVAL ? -EPROTO : r;
}

/* ImageStatus: unikd's image, else the delegate's. RemoveImage and UpdateRuntimeConfig:
 * both sides, and the delegate's error if it has one. */
static int route_both(struct delegate *d, const struct grpc_method *m, enum call_kind k, void *ud, arena *a,
		      const ProtobufCMessage *req, ProtobufCMessage **resp, uk_error *err)
{
	int r = m->fn(ud, a, req, resp, err);
	if (r < 0 || (k == K_IMAGE_STATUS && ((Runtime__V1__ImageStatusResponse *)*resp)->image))
		return r;
	struct delegate_answer ans;
	forward(d, m, &ans);
	if (ans.code == GRPC_STATUS_OK && k != K_IMAGE_STATUS) {
		delegate_answer_done(&ans);
		return 0;
	}
	if (k == K_IMAGE_STATUS && unreachable(&ans)) {
		delegate_answer_done(&ans);
		return 0; /* unikd has no such image; the delegate cannot say */
	}
	return reply_with(&ans);
}

/* Status: unikd's conditions, and the delegate's health as one of its own, never as
 * RuntimeReady: a dead containerd must not make the node NotReady for unikd's pods. */
static int route_status(struct delegate *d, const struct grpc_method *m, void *ud, arena *a,
			const ProtobufCMessage *req, ProtobufCMessage **resp, uk_error *err)
{
	int r = m->fn(ud, a, req, resp, err);
	if (r < 0)
		return r;
	struct delegate_answer ans;
	char msg[UK_ERROR_MSG_MAX + 64] = "";
	delegate_call_bytes(d->client, m->path, status_verbose, sizeof(status_verbose), probe_deadline(), &ans);
	bool answered = ans.code == GRPC_STATUS_OK;
	bool ok = answered && learn_from_status(d, &ans, msg, sizeof(msg));
	delegate_answer_done(&ans);
	if (!answered)
		snprintf(msg, sizeof(msg), "%s%s", strstr(ans.msg, "delegate ") == ans.msg ? "" : "delegate: ", ans.msg);
	uk_error later = { 0 };
	if (answered && !d->checked)
		(void)check_records(d, &later); /* it was down at start-up; its next answer checks again */
	Runtime__V1__RuntimeStatus *st = ((Runtime__V1__StatusResponse *)*resp)->status;
	Runtime__V1__RuntimeCondition **v = arena_array(a, Runtime__V1__RuntimeCondition *, st->n_conditions + 1);
	memcpy(v, st->conditions, st->n_conditions * sizeof(*v));
	v[st->n_conditions] = cri_condition(a, "DelegateReady", ok, answered ? "DelegateNotReady" : "DelegateUnavailable",
					      arena_strdup(a, msg));
	st->conditions = v;
	st->n_conditions++;
	return 0;
}

/* The unikd sandbox kubelet runs a pull for, by the sandbox_config's metadata. */
static bool unikd_runs_pod(struct runtime *rt, const Runtime__V1__PodSandboxConfig *cfg)
{
	const Runtime__V1__PodSandboxMetadata *md = cfg ? cfg->metadata : NULL;
	bool found = false;
	if (!md || !md->uid || !*md->uid)
		return false;
	rt_lock(rt);
	for (size_t i = 0; i < rt->n_sb && !found; i++) {
		const struct sandbox *s = rt->sb[i];
		found = s->uid && !strcmp(s->uid, md->uid) && s->name && md->name && !strcmp(s->name, md->name) &&
			s->ns && md->namespace_ && !strcmp(s->ns, md->namespace_);
	}
	rt_unlock(rt);
	return found;
}

/* The side of the pod a pull is for, when either side runs it (by its metadata). */
static bool pod_side(struct delegate *d, struct runtime *rt, const Runtime__V1__PodSandboxConfig *cfg,
		     enum delegate_side *side)
{
	const Runtime__V1__PodSandboxMetadata *md = cfg ? cfg->metadata : NULL;
	char text[RECORD_TEXT_MAX];
	if (unikd_runs_pod(rt, cfg)) {
		*side = SIDE_UNIKD;
		return true;
	}
	if (!md || !md->uid || !*md->uid || strlen(md->uid) >= RECORD_TEXT_MAX - 8)
		return false; /* such a uid is never recorded (record_text) */
	record_text(text, false, md->uid);
	pthread_mutex_lock(&d->lock);
	bool theirs = records_find_locked(d, text, false);
	pthread_mutex_unlock(&d->lock);
	*side = SIDE_DELEGATE;
	return theirs;
}

static int route_pull(struct delegate *d, struct runtime *rt, const struct grpc_method *m,
		      const ProtobufCMessage *req, uk_error *err)
{
	const Runtime__V1__PullImageRequest *q = (const Runtime__V1__PullImageRequest *)req;
	enum delegate_side side;
	struct delegate_route where;
	struct handlers_copy hc;
	struct delegate_config cfg = config_now(d, &hc);
	bool known = pod_side(d, rt, q->sandbox_config, &side);
	int r = delegate_route_pull(&cfg, q, known ? &side : NULL, &where, err);
	if (r < 0)
		return r;
	log_debug("rpc=%s side=%s why=\"%s\"", m->path, delegate_side_name(where.side), where.why);
	if (where.side == SIDE_UNIKD)
		return GRPC_ROUTE_LOCAL;
	struct delegate_answer ans;
	forward(d, m, &ans);
	return reply_with(&ans);
}

/* ---- the table ---- */

struct route_entry {
	const char *path;
	enum call_kind kind;
	size_t id_off; /* K_POD, K_CTR: the id's field in the request */
	const ProtobufCMessageDescriptor *resp; /* merged calls: the answer's type */
};

#define POD(name, type) { RS name, K_POD, offsetof(type, pod_sandbox_id), NULL }
#define CTR(name, type) { RS name, K_CTR, offsetof(type, container_id), NULL }
#define BOTH(svc, name, kind, msg) { svc name, kind, 0, &runtime__v1__##msg##__descriptor }

static const struct route_entry routes[] = {
	{ RS "RunPodSandbox", K_RUN, 0, NULL },
	{ RS "CreateContainer", K_CREATE, 0, NULL },
	POD("StopPodSandbox", Runtime__V1__StopPodSandboxRequest),
	POD("RemovePodSandbox", Runtime__V1__RemovePodSandboxRequest),
	POD("PodSandboxStatus", Runtime__V1__PodSandboxStatusRequest),
	POD("PodSandboxStats", Runtime__V1__PodSandboxStatsRequest),
	POD("PortForward", Runtime__V1__PortForwardRequest),
	POD("UpdatePodSandboxResources", Runtime__V1__UpdatePodSandboxResourcesRequest),
	CTR("StartContainer", Runtime__V1__StartContainerRequest),
	CTR("StopContainer", Runtime__V1__StopContainerRequest),
	CTR("RemoveContainer", Runtime__V1__RemoveContainerRequest),
	CTR("ContainerStatus", Runtime__V1__ContainerStatusRequest),
	CTR("UpdateContainerResources", Runtime__V1__UpdateContainerResourcesRequest),
	CTR("ReopenContainerLog", Runtime__V1__ReopenContainerLogRequest),
	CTR("ExecSync", Runtime__V1__ExecSyncRequest),
	CTR("Exec", Runtime__V1__ExecRequest),
	CTR("Attach", Runtime__V1__AttachRequest),
	CTR("ContainerStats", Runtime__V1__ContainerStatsRequest),
	CTR("CheckpointContainer", Runtime__V1__CheckpointContainerRequest),
	BOTH(RS, "ListPodSandbox", K_LIST_PODS, list_pod_sandbox_response),
	BOTH(RS, "ListContainers", K_LIST_CTRS, list_containers_response),
	BOTH(RS, "ListContainerStats", K_LIST_CSTATS, list_container_stats_response),
	BOTH(RS, "ListPodSandboxStats", K_LIST_PSTATS, list_pod_sandbox_stats_response),
	BOTH(IS, "ListImages", K_LIST_IMAGES, list_images_response),
	BOTH(IS, "ImageFsInfo", K_FS_INFO, image_fs_info_response),
	{ IS "ImageStatus", K_IMAGE_STATUS, 0, NULL },
	{ IS "PullImage", K_PULL, 0, NULL },
	{ IS "RemoveImage", K_REMOVE_IMAGE, 0, NULL },
	{ RS "UpdateRuntimeConfig", K_BOTH, 0, NULL },
	{ RS "Status", K_STATUS, 0, NULL },
};

/* A quick call on a poller (src/cri/grpc_server.h): only what needs neither containerd nor a
 * wait is answered here, the status of one of unikd's own objects, found under a free lock;
 * anything else (a delegate's object, a merged list) goes to its pool as GRPC_QUEUE_CALL. */
static int route_quick(struct runtime *rt, const struct route_entry *e, const char *id)
{
	if (e->kind != K_POD && e->kind != K_CTR)
		return GRPC_QUEUE_CALL;
	if (!id || !*id)
		return GRPC_ROUTE_LOCAL; /* unikd refuses it, as route_by_id lets it */
	if (!rt_trylock(rt))
		return GRPC_QUEUE_CALL;
	bool mine = unikd_has_locked(rt, e->kind == K_POD, id);
	rt_unlock(rt);
	return mine ? GRPC_ROUTE_LOCAL : GRPC_QUEUE_CALL;
}

int delegate_route_call(void *userdata, const struct grpc_method *m, arena *a, const ProtobufCMessage *req,
			ProtobufCMessage **resp, uk_error *err)
{
	struct cri_context *ctx = userdata;
	struct delegate *d = ctx->delegate;
	const struct route_entry *e = NULL;
	for (size_t i = 0; d && !e && i < ARRAY_SIZE(routes); i++)
		if (!strcmp(routes[i].path, m->path))
			e = &routes[i];
	if (!e)
		return GRPC_ROUTE_LOCAL; /* Version, RuntimeConfig, the streams: unikd's own */
	const char *id = e->id_off ? *(const char *const *)((const char *)req + e->id_off) : NULL;
	if (!grpc_call_may_wait())
		return route_quick(ctx->rt, e, id);
	switch (e->kind) {
	case K_RUN: return route_run(d, m, req, err);
	case K_CREATE: return route_create(d, ctx->rt, m, req, err);
	case K_POD: return route_by_id(d, ctx->rt, m, true, id);
	case K_CTR: return route_by_id(d, ctx->rt, m, false, id);
	case K_PULL: return route_pull(d, ctx->rt, m, req, err);
	case K_STATUS: return route_status(d, m, userdata, a, req, resp, err);
	case K_IMAGE_STATUS: case K_REMOVE_IMAGE: case K_BOTH: return route_both(d, m, e->kind, userdata, a, req, resp, err);
	case K_LOCAL: return GRPC_ROUTE_LOCAL;
	default: return route_merge(d, m, e->kind, e->resp, userdata, a, req, resp, err);
	}
}
