/* Unit tests for src/delegate/: every routing decision (table-driven), the unknown handler's
 * message, PullImage's side, the config check, the list merges with duplicates, NULL items and
 * limits, and the parser of the delegate's Status answer (its runtime handlers). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/delegate/route.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char *const handlers2[] = { "unikd", "unikd-linux" };

static struct delegate_config cfg_of(bool enabled, bool default_unikd)
{
	return (struct delegate_config){ .handlers = handlers2, .n_handlers = N(handlers2), .default_unikd = default_unikd, .enabled = enabled };
}

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

/* A sandbox config with the given namespace modes, built on the stack. */
struct sbx {
	Runtime__V1__PodSandboxConfig config;
	Runtime__V1__LinuxPodSandboxConfig linux_;
	Runtime__V1__LinuxSandboxSecurityContext sc;
	Runtime__V1__NamespaceOption ns;
};

static void sbx_init(struct sbx *s, int net, int pid, int ipc)
{
	runtime__v1__pod_sandbox_config__init(&s->config);
	runtime__v1__linux_pod_sandbox_config__init(&s->linux_);
	runtime__v1__linux_sandbox_security_context__init(&s->sc);
	runtime__v1__namespace_option__init(&s->ns);
	s->ns.network = net;
	s->ns.pid = pid;
	s->ns.ipc = ipc;
	s->sc.namespace_options = &s->ns;
	s->linux_.security_context = &s->sc;
	s->config.linux = &s->linux_;
}

enum { POD = RUNTIME__V1__NAMESPACE_MODE__POD, CTR = RUNTIME__V1__NAMESPACE_MODE__CONTAINER,
       NODE = RUNTIME__V1__NAMESPACE_MODE__NODE };

struct route_row {
	const char *name;
	bool enabled, default_unikd;
	const char *handler;
	bool has_config;
	int net, pid, ipc;
	int rc;
	enum delegate_side side;
	const char *why;
};

static const struct route_row route_rows[] = {
	{ "off: everything is unikd's", false, false, "runc", true, NODE, POD, POD, 0, SIDE_UNIKD, "off" },
	{ "unikd's handler", true, false, "unikd", true, POD, POD, POD, 0, SIDE_UNIKD, "one of unikd's" },
	{ "unikd's second handler", true, false, "unikd-linux", true, CTR, CTR, POD, 0, SIDE_UNIKD, "one of unikd's" },
	{ "no config, unikd's handler", true, false, "unikd", false, 0, 0, 0, 0, SIDE_UNIKD, "one of unikd's" },
	{ "host network beats unikd's handler", true, true, "unikd", true, NODE, POD, POD, 0, SIDE_DELEGATE, "network" },
	{ "host pid", true, true, "", true, POD, NODE, POD, 0, SIDE_DELEGATE, "PID" },
	{ "host ipc", true, true, NULL, true, POD, POD, NODE, 0, SIDE_DELEGATE, "IPC" },
	{ "empty handler, default delegate", true, false, "", true, POD, POD, POD, 0, SIDE_DELEGATE, "default = delegate" },
	{ "NULL handler, default delegate", true, false, NULL, false, 0, 0, 0, 0, SIDE_DELEGATE, "default = delegate" },
	{ "empty handler, default unikd", true, true, "", true, POD, CTR, POD, 0, SIDE_UNIKD, "default = unikd" },
	{ "unknown handler", true, false, "runc", true, POD, POD, POD, -EINVAL, SIDE_UNIKD, NULL },
	{ "unknown handler, default unikd", true, true, "kata", false, 0, 0, 0, -EINVAL, SIDE_UNIKD, NULL },
	{ "handler is case-sensitive", true, false, "UNIKD", true, POD, POD, POD, -EINVAL, SIDE_UNIKD, NULL },
	{ "a prefix is not a handler", true, false, "unik", true, POD, POD, POD, -EINVAL, SIDE_UNIKD, NULL },
};

static void test_route_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(route_rows); i++) {
		const struct route_row *row = &route_rows[i];
		struct delegate_config cfg = cfg_of(row->enabled, row->default_unikd);
		struct sbx s;
		struct delegate_route out = { SIDE_UNIKD, NULL };
		uk_error err = { 0 };
		Runtime__V1__RunPodSandboxRequest req;

		sbx_init(&s, row->net, row->pid, row->ipc);
		runtime__v1__run_pod_sandbox_request__init(&req);
		req.config = row->has_config ? &s.config : NULL;
		req.runtime_handler = (char *)row->handler;
		int r = delegate_route_run(&cfg, &req, &out, &err);
		if (r != row->rc)
			fail_msg("%s: rc %d, want %d (%s)", row->name, r, row->rc, err.msg);
		if (r < 0)
			continue;
		if (out.side != row->side)
			fail_msg("%s: side %s", row->name, delegate_side_name(out.side));
		assert_non_null(out.why);
		assert_contains(out.why, row->why);
	}
}

/* A config with no linux part, or no security context, asks for no host namespace. */
static void test_route_partial_config(void **state)
{
	(void)state;
	struct delegate_config cfg = cfg_of(true, true);
	struct sbx s;
	struct delegate_route out;

	sbx_init(&s, NODE, NODE, NODE);
	s.sc.namespace_options = NULL;
	assert_int_equal(delegate_route_sandbox(&cfg, &s.config, "", &out, NULL), 0);
	assert_int_equal(out.side, SIDE_UNIKD);
	s.linux_.security_context = NULL;
	assert_int_equal(delegate_route_sandbox(&cfg, &s.config, "", &out, NULL), 0);
	assert_int_equal(out.side, SIDE_UNIKD);
	s.config.linux = NULL;
	assert_int_equal(delegate_route_sandbox(&cfg, &s.config, "", &out, NULL), 0);
	assert_int_equal(out.side, SIDE_UNIKD);
	assert_int_equal(delegate_route_run(&cfg, NULL, &out, NULL), -EINVAL);
	/* No config at all: the delegate is off. */
	assert_int_equal(delegate_route_sandbox(NULL, &s.config, "runc", &out, NULL), 0);
	assert_int_equal(out.side, SIDE_UNIKD);
}

static void test_unknown_handler_message(void **state)
{
	(void)state;
	struct delegate_config cfg = cfg_of(true, false);
	struct delegate_route out;
	uk_error err = { 0 };

	assert_int_equal(delegate_route_sandbox(&cfg, NULL, "runc", &out, &err), -EINVAL);
	assert_int_equal(err.code, EINVAL);
	assert_contains(err.msg, "runtime_handler \"runc\"");
	assert_string_equal(err.msg, "runtime_handler \"runc\" is not served here; served: \"unikd\", "
				     "\"unikd-linux\" (unikd), \"\" (the delegate)");

	/* A huge handler is cut in the message, which stays within its buffer. */
	char *big = malloc(100000);
	assert_non_null(big);
	memset(big, 'x', 99999);
	big[99999] = '\0';
	memset(&err, 0, sizeof(err));
	assert_int_equal(delegate_route_sandbox(&cfg, NULL, big, &out, &err), -EINVAL);
	assert_contains(err.msg, "runtime_handler \"xxxx");
	assert_contains(err.msg, "\"unikd\"");
	assert_true(strlen(err.msg) < 400);
	free(big);

	/* The longest served list the config allows ends in "..." within the message. */
	char names[DELEGATE_MAX_HANDLERS][DELEGATE_HANDLER_MAX + 1];
	const char *many[DELEGATE_MAX_HANDLERS];
	for (size_t i = 0; i < DELEGATE_MAX_HANDLERS; i++) {
		memset(names[i], 'a' + (char)i, DELEGATE_HANDLER_MAX);
		names[i][DELEGATE_HANDLER_MAX] = '\0';
		many[i] = names[i];
	}
	cfg = (struct delegate_config){ .handlers = many, .n_handlers = DELEGATE_MAX_HANDLERS, .default_unikd = true, .enabled = true };
	assert_int_equal(delegate_config_check(&cfg, &err), 0);
	assert_int_equal(delegate_route_sandbox(&cfg, NULL, "runc", &out, &err), -EINVAL);
	assert_contains(err.msg, "\"aaaa");
	assert_contains(err.msg, "... (unikd), \"\" (unikd)");
}

/* The delegate's handlers, learnt from its Status: they route there, and the refusal of an
 * unknown handler lists them. */
static void test_route_delegate_handlers(void **state)
{
	(void)state;
	struct delegate_config cfg = cfg_of(true, false);
	const char *theirs[] = { "runc", "crun" };
	cfg.delegate_handlers = theirs;
	cfg.n_delegate_handlers = 2;
	struct delegate_route out;
	uk_error err = { 0 };
	assert_int_equal(delegate_route_sandbox(&cfg, NULL, "crun", &out, &err), 0);
	assert_int_equal(out.side, SIDE_DELEGATE);
	/* unikd's own name wins over a delegate that also claims it. */
	theirs[1] = "unikd";
	assert_int_equal(delegate_route_sandbox(&cfg, NULL, "unikd", &out, &err), 0);
	assert_int_equal(out.side, SIDE_UNIKD);
	assert_int_equal(delegate_route_sandbox(&cfg, NULL, "kata", &out, &err), -EINVAL);
	assert_string_equal(err.msg, "runtime_handler \"kata\" is not served here; served: \"unikd\", "
				     "\"unikd-linux\" (unikd), \"\" (the delegate), \"runc\", \"unikd\" (the delegate)");
}

static Runtime__V1__StatusResponse *status_with(const char *config, const char *const *handlers, size_t n)
{
	Runtime__V1__StatusResponse *st = calloc(1, sizeof(*st));
	runtime__v1__status_response__init(st);
	if (config) {
		st->n_info = 1;
		st->info = calloc(1, sizeof(*st->info));
		st->info[0] = calloc(1, sizeof(*st->info[0]));
		runtime__v1__status_response__info_entry__init(st->info[0]);
		st->info[0]->key = strdup("config");
		st->info[0]->value = strdup(config);
	}
	st->n_runtime_handlers = n;
	st->runtime_handlers = calloc(n + 1, sizeof(*st->runtime_handlers));
	for (size_t i = 0; i < n; i++) {
		st->runtime_handlers[i] = calloc(1, sizeof(*st->runtime_handlers[i]));
		runtime__v1__runtime_handler__init(st->runtime_handlers[i]);
		st->runtime_handlers[i]->name = strdup(handlers[i]);
	}
	return st;
}

static void names_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* The parser of the delegate's Status answer: outside input, so every odd shape. */
static void test_handlers_from_status(void **state)
{
	(void)state;
	char **names;
	size_t n;
	uk_error err = { 0 };
	/* containerd 1.6: the names under containerd.runtimes in its verbose config. */
	Runtime__V1__StatusResponse *st =
		status_with("{\"containerd\":{\"defaultRuntimeName\":\"runc\",\"runtimes\":{\"runc\":{},\"kata-qemu\":{}}}}", NULL, 0);
	assert_int_equal(delegate_handlers_from_status(st, &names, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "runc");
	assert_string_equal(names[1], "kata-qemu");
	assert_null(names[2]);
	names_free(names, n);
	runtime__v1__status_response__free_unpacked(st, NULL);

	/* CRI 1.30+: runtime_handlers wins; invalid names and repeats are skipped. */
	const char *hs[] = { "runc", "", "Bad Name", "runc", "crun" };
	st = status_with("{\"containerd\":{\"runtimes\":{\"other\":{}}}}", hs, 5);
	assert_int_equal(delegate_handlers_from_status(st, &names, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "runc");
	assert_string_equal(names[1], "crun");
	names_free(names, n);
	runtime__v1__status_response__free_unpacked(st, NULL);

	/* Malformed or unexpected configs give no names, never an error. */
	const char *odd[] = { "not json", "[]", "{\"containerd\":5}", "{\"containerd\":{\"runtimes\":[\"runc\"]}}", "" };
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		st = status_with(odd[i], NULL, 0);
		assert_int_equal(delegate_handlers_from_status(st, &names, &n, &err), 0);
		assert_int_equal(n, 0);
		names_free(names, n);
		runtime__v1__status_response__free_unpacked(st, NULL);
	}
	assert_int_equal(delegate_handlers_from_status(NULL, &names, &n, &err), 0);
	assert_int_equal(n, 0);
	names_free(names, n);

	/* More names than the bound: the first DELEGATE_MAX_HANDLERS are kept. */
	const char *lots[DELEGATE_MAX_HANDLERS + 5];
	char buf[DELEGATE_MAX_HANDLERS + 5][8];
	for (size_t i = 0; i < DELEGATE_MAX_HANDLERS + 5; i++) {
		snprintf(buf[i], sizeof(buf[i]), "h%zu", i);
		lots[i] = buf[i];
	}
	st = status_with(NULL, lots, DELEGATE_MAX_HANDLERS + 5);
	assert_int_equal(delegate_handlers_from_status(st, &names, &n, &err), 0);
	assert_int_equal(n, DELEGATE_MAX_HANDLERS);
	assert_null(names[DELEGATE_MAX_HANDLERS]);
	names_free(names, n);
	runtime__v1__status_response__free_unpacked(st, NULL);
}

static Runtime__V1__RuntimeCondition *cond_of(const char *type, bool ok, const char *reason, const char *msg)
{
	Runtime__V1__RuntimeCondition *c = calloc(1, sizeof(*c));
	runtime__v1__runtime_condition__init(c);
	c->type = strdup(type);
	c->status = ok;
	c->reason = strdup(reason);
	c->message = strdup(msg);
	return c;
}

/* The delegate's readiness from its own conditions: RuntimeReady and NetworkReady count. */
static void test_status_ready(void **state)
{
	(void)state;
	char why[128];
	Runtime__V1__StatusResponse *st = status_with(NULL, NULL, 0);
	assert_false(delegate_status_ready(st, why, sizeof(why)));
	assert_string_equal(why, "no runtime status");
	st->status = calloc(1, sizeof(*st->status));
	runtime__v1__runtime_status__init(st->status);
	assert_true(delegate_status_ready(st, why, sizeof(why)));
	st->status->n_conditions = 3;
	st->status->conditions = calloc(3, sizeof(*st->status->conditions));
	st->status->conditions[0] = cond_of("RuntimeReady", true, "", "");
	st->status->conditions[1] = cond_of("Other", false, "X", "ignored");
	st->status->conditions[2] = cond_of("NetworkReady", false, "NetworkPluginNotReady", "cni config uninitialized");
	assert_false(delegate_status_ready(st, why, sizeof(why)));
	assert_string_equal(why, "NetworkReady false (NetworkPluginNotReady: cni config uninitialized)");
	st->status->conditions[2]->status = true;
	assert_true(delegate_status_ready(st, why, sizeof(why)));
	/* A long message is cut to the buffer. */
	free(st->status->conditions[0]->message);
	st->status->conditions[0]->message = malloc(5000);
	memset(st->status->conditions[0]->message, 'm', 4999);
	st->status->conditions[0]->message[4999] = '\0';
	st->status->conditions[0]->status = false;
	assert_false(delegate_status_ready(st, why, sizeof(why)));
	assert_int_equal(strlen(why), sizeof(why) - 1);
	runtime__v1__status_response__free_unpacked(st, NULL);
}

static void test_route_pull(void **state)
{
	(void)state;
	struct delegate_config deleg = cfg_of(true, false), unik = cfg_of(true, true), off = cfg_of(false, false);
	Runtime__V1__PullImageRequest req;
	Runtime__V1__ImageSpec spec;
	struct delegate_route out;
	struct sbx s;
	uk_error err = { 0 };
	enum delegate_side pod = SIDE_UNIKD;

	runtime__v1__pull_image_request__init(&req);
	runtime__v1__image_spec__init(&spec);
	/* No sandbox_config, no image: the default side. */
	assert_int_equal(delegate_route_pull(&deleg, &req, NULL, &out, &err), 0);
	assert_int_equal(out.side, SIDE_DELEGATE);
	assert_int_equal(delegate_route_pull(&unik, &req, NULL, &out, &err), 0);
	assert_int_equal(out.side, SIDE_UNIKD);
	assert_int_equal(delegate_route_pull(&off, &req, NULL, &out, &err), 0);
	assert_int_equal(out.side, SIDE_UNIKD);
	/* The pod's sandbox side wins over the default. */
	assert_int_equal(delegate_route_pull(&deleg, &req, &pod, &out, &err), 0);
	assert_int_equal(out.side, SIDE_UNIKD);
	assert_contains(out.why, "sandbox");
	/* The RunPodSandbox decision on sandbox_config and image.runtime_handler. */
	sbx_init(&s, NODE, POD, POD);
	req.sandbox_config = &s.config;
	assert_int_equal(delegate_route_pull(&unik, &req, NULL, &out, &err), 0);
	assert_int_equal(out.side, SIDE_DELEGATE);
	s.ns.network = RUNTIME__V1__NAMESPACE_MODE__POD;
	spec.runtime_handler = "unikd";
	req.image = &spec;
	assert_int_equal(delegate_route_pull(&deleg, &req, NULL, &out, &err), 0);
	assert_int_equal(out.side, SIDE_UNIKD);
	spec.runtime_handler = "runc";
	assert_int_equal(delegate_route_pull(&deleg, &req, NULL, &out, &err), -EINVAL);
	assert_contains(err.msg, "image: runtime_handler \"runc\"");
	assert_int_equal(delegate_route_pull(&deleg, NULL, NULL, &out, &err), -EINVAL);
}

static void test_config_check(void **state)
{
	(void)state;
	struct delegate_config cfg = cfg_of(true, false);
	uk_error err = { 0 };
	const char *dup[] = { "unikd", "b", "unikd" };
	const char *bad[][1] = { { "" }, { "Unikd" }, { "a/b" }, { NULL },
				 { "a123456789012345678901234567890123456789012345678901234567890123" } };
	const char *many[DELEGATE_MAX_HANDLERS + 1];

	assert_int_equal(delegate_config_check(&cfg, &err), 0);
	cfg.n_handlers = 0;
	assert_int_equal(delegate_config_check(&cfg, &err), -EINVAL);
	assert_contains(err.msg, "[delegate] handlers");
	assert_int_equal(delegate_config_check(NULL, &err), -EINVAL);
	cfg = (struct delegate_config){ .handlers = dup, .n_handlers = N(dup), .enabled = true };
	assert_int_equal(delegate_config_check(&cfg, &err), -EINVAL);
	assert_contains(err.msg, "\"unikd\" is listed twice");
	for (size_t i = 0; i < N(bad); i++) {
		cfg = (struct delegate_config){ .handlers = bad[i], .n_handlers = 1, .enabled = true };
		assert_int_equal(delegate_config_check(&cfg, &err), -EINVAL);
		assert_contains(err.msg, "[delegate] handlers: name 1");
	}
	for (size_t i = 0; i < N(many); i++)
		many[i] = "x";
	cfg = (struct delegate_config){ .handlers = many, .n_handlers = N(many), .enabled = true };
	assert_int_equal(delegate_config_check(&cfg, &err), -EINVAL);
}

static void test_merge_lists(void **state)
{
	(void)state;
	Runtime__V1__PodSandbox a, b, c;
	Runtime__V1__PodSandbox *ua[] = { &a, &b }, *da[] = { &c }, *holes[] = { &a, NULL };
	Runtime__V1__ListPodSandboxResponse u, d, out;
	uk_error err = { 0 };

	runtime__v1__list_pod_sandbox_response__init(&u);
	runtime__v1__list_pod_sandbox_response__init(&d);
	u.items = ua;
	u.n_items = 2;
	d.items = da;
	d.n_items = 1;
	delegate_merge_sandboxes_done(NULL);

	/* Absent or empty answers. */
	assert_int_equal(delegate_merge_sandboxes(NULL, &d, &out, &err), 0);
	assert_int_equal(out.n_items, 1);
	delegate_merge_sandboxes_done(&out);
	assert_int_equal(delegate_merge_sandboxes(NULL, NULL, &out, &err), 0);
	assert_int_equal(out.n_items, 0);
	delegate_merge_sandboxes_done(&out);

	/* A NULL item, and a count over the limit (never read), name the side. */
	d.items = holes;
	d.n_items = 2;
	assert_int_equal(delegate_merge_sandboxes(&u, &d, &out, &err), -EINVAL);
	assert_contains(err.msg, "the delegate's ListPodSandbox answer: item 1");
	assert_null(out.items);
	d.n_items = SIZE_MAX;
	assert_int_equal(delegate_merge_sandboxes(&u, &d, &out, &err), -E2BIG);
	assert_contains(err.msg, "the delegate's ListPodSandbox answer");
	u.n_items = DELEGATE_MAX_LIST_ITEMS + 1;
	assert_int_equal(delegate_merge_sandboxes(&u, NULL, &out, &err), -E2BIG);
	assert_contains(err.msg, "unikd's ListPodSandbox answer");
}

/* For each list type: unikd's two items then the delegate's one, borrowed; and the
 * delegate's NULL item named. */
#define CHECK_MERGE(fn, done, type, n_field, field, what)                                             \
	do {                                                                                         \
		type u, d, out;                                                                      \
		memset(&u, 0, sizeof(u));                                                            \
		memset(&d, 0, sizeof(d));                                                            \
		u.field = (void *)three;                                                             \
		u.n_field = 2;                                                                       \
		d.field = (void *)(three + 2);                                                       \
		d.n_field = 1;                                                                       \
		assert_int_equal(fn(&u, &d, &out, &err), 0);                                         \
		assert_int_equal(out.n_field, 3);                                                    \
		for (size_t i = 0; i < 3; i++)                                                       \
			assert_ptr_equal(out.field[i], three[i]);                                    \
		done(&out);                                                                          \
		d.n_field = 2; /* three[3] is NULL */                                                \
		assert_int_equal(fn(&u, &d, &out, &err), -EINVAL);                                   \
		assert_contains(err.msg, "the delegate's " what " answer: item 1 is empty");        \
		assert_null(out.field);                                                              \
	} while (0)

static void test_merge_every_list(void **state)
{
	(void)state;
	char x[3];
	void *three[] = { &x[0], &x[1], &x[2], NULL };
	uk_error err = { 0 };

	CHECK_MERGE(delegate_merge_sandboxes, delegate_merge_sandboxes_done, Runtime__V1__ListPodSandboxResponse,
		    n_items, items, "ListPodSandbox");
	CHECK_MERGE(delegate_merge_containers, delegate_merge_containers_done, Runtime__V1__ListContainersResponse,
		    n_containers, containers, "ListContainers");
	CHECK_MERGE(delegate_merge_container_stats, delegate_merge_container_stats_done,
		    Runtime__V1__ListContainerStatsResponse, n_stats, stats, "ListContainerStats");
	CHECK_MERGE(delegate_merge_sandbox_stats, delegate_merge_sandbox_stats_done,
		    Runtime__V1__ListPodSandboxStatsResponse, n_stats, stats, "ListPodSandboxStats");
}

static void image_init(Runtime__V1__Image *img, const char *id, char **tags, size_t nt, char **digests, size_t nd,
		       uint64_t size)
{
	runtime__v1__image__init(img);
	img->id = (char *)id;
	img->repo_tags = tags;
	img->n_repo_tags = nt;
	img->repo_digests = digests;
	img->n_repo_digests = nd;
	img->size = size;
}

static void test_merge_images(void **state)
{
	(void)state;
	char *ut[] = { "busybox:1", "shared:latest" }, *ud[] = { "busybox@sha256:aa" };
	char *dt[] = { "shared:latest", "docker.io/busybox:1", NULL }, *dd[] = { "busybox@sha256:aa", "b@sha256:bb" };
	Runtime__V1__Image u1, u2, d1, d2;
	Runtime__V1__Image *ua[] = { &u1, &u2 }, *da[] = { &d1, &d2 };
	Runtime__V1__ListImagesResponse u = RUNTIME__V1__LIST_IMAGES_RESPONSE__INIT, d = u;
	struct delegate_images out;
	uk_error err = { 0 };

	image_init(&u1, "sha256:1", ut, 2, ud, 1, 100);
	image_init(&u2, "sha256:2", NULL, 0, NULL, 0, 200);
	image_init(&d1, "sha256:3", NULL, 0, NULL, 0, 300);
	image_init(&d2, "sha256:1", dt, 3, dd, 2, 999);
	u.images = ua;
	u.n_images = 2;
	d.images = da;
	d.n_images = 2;
	assert_int_equal(delegate_merge_images(&u, &d, &out, &err), 0);
	assert_int_equal(out.resp.n_images, 3);
	assert_int_equal(out.n_copies, 1);
	/* unikd's entry kept (its size), in its place, with the delegate's refs added once. */
	Runtime__V1__Image *m = out.resp.images[0];
	assert_ptr_not_equal(m, &u1);
	assert_string_equal(m->id, "sha256:1");
	assert_int_equal(m->size, 100);
	assert_int_equal(m->n_repo_tags, 3);
	assert_string_equal(m->repo_tags[0], "busybox:1");
	assert_string_equal(m->repo_tags[1], "shared:latest");
	assert_string_equal(m->repo_tags[2], "docker.io/busybox:1");
	assert_int_equal(m->n_repo_digests, 2);
	assert_string_equal(m->repo_digests[1], "b@sha256:bb");
	assert_ptr_equal(out.resp.images[1], &u2);
	assert_ptr_equal(out.resp.images[2], &d1);
	/* The answers themselves are untouched. */
	assert_int_equal(u1.n_repo_tags, 2);
	delegate_images_done(&out);
	delegate_images_done(NULL);

	/* An id twice on one side, or none, names the side. */
	image_init(&d1, "sha256:1", NULL, 0, NULL, 0, 1);
	assert_int_equal(delegate_merge_images(&u, &d, &out, &err), -EINVAL);
	assert_contains(err.msg, "the delegate's ListImages answer: image id \"sha256:1\" is listed twice");
	assert_null(out.resp.images);
	image_init(&d1, "", NULL, 0, NULL, 0, 1);
	assert_int_equal(delegate_merge_images(&u, &d, &out, &err), -EINVAL);
	assert_contains(err.msg, "the delegate's ListImages answer: images[0].id is empty");
	image_init(&u2, NULL, NULL, 0, NULL, 0, 1);
	assert_int_equal(delegate_merge_images(&u, NULL, &out, &err), -EINVAL);
	assert_contains(err.msg, "unikd's ListImages answer: images[1].id is empty");
	d.n_images = SIZE_MAX;
	image_init(&u2, "sha256:2", NULL, 0, NULL, 0, 1);
	assert_int_equal(delegate_merge_images(&u, &d, &out, &err), -E2BIG);
	assert_contains(err.msg, "the delegate's ListImages answer");
	assert_int_equal(delegate_merge_images(NULL, NULL, &out, &err), 0);
	assert_int_equal(out.resp.n_images, 0);
	delegate_images_done(&out);
}

/* n distinct refs "<prefix><i>". */
static char **refs_new(const char *prefix, size_t n)
{
	char **v = calloc(n + 1, sizeof(*v));
	assert_non_null(v);
	for (size_t i = 0; i < n; i++)
		assert_true(asprintf(&v[i], "%s%zu", prefix, i) > 0);
	return v;
}

static void refs_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void test_merge_images_limits(void **state)
{
	(void)state;
	const size_t lim = DELEGATE_MAX_IMAGE_REFS;
	char **a = refs_new("a:", lim), **b = refs_new("b:", lim);
	Runtime__V1__Image u1, d1;
	Runtime__V1__Image *ua[] = { &u1 }, *da[] = { &d1 };
	Runtime__V1__ListImagesResponse u = RUNTIME__V1__LIST_IMAGES_RESPONSE__INIT, d = u;
	struct delegate_images out;
	uk_error err = { 0 };

	u.images = ua;
	u.n_images = 1;
	d.images = da;
	d.n_images = 1;
	/* At the bound on each side, and after the merge when the refs are the same: fine. */
	image_init(&u1, "sha256:1", a, lim, a, lim, 1);
	image_init(&d1, "sha256:1", a, lim, a, lim, 1);
	assert_int_equal(delegate_merge_images(&u, &d, &out, &err), 0);
	assert_int_equal(out.resp.images[0]->n_repo_tags, lim);
	delegate_images_done(&out);
	/* One over on a side. */
	image_init(&d1, "sha256:9", a, lim + 1, NULL, 0, 1);
	assert_int_equal(delegate_merge_images(&u, &d, &out, &err), -E2BIG);
	assert_contains(err.msg, "the delegate's ListImages answer: images[0] has over");
	/* Over after the merge. */
	image_init(&d1, "sha256:1", NULL, 0, b, 1, 1);
	assert_int_equal(delegate_merge_images(&u, &d, &out, &err), -E2BIG);
	assert_contains(err.msg, "merged image has over 1024 repo digests");
	assert_null(out.copies);

	/* Over the answer's total: many images sharing one tag array. */
	size_t n = DELEGATE_MAX_ANSWER_REFS / lim + 1;
	Runtime__V1__Image *imgs = calloc(n, sizeof(*imgs));
	Runtime__V1__Image **ptrs = calloc(n, sizeof(*ptrs));
	char **ids = refs_new("sha256:", n);
	assert_non_null(imgs);
	assert_non_null(ptrs);
	for (size_t i = 0; i < n; i++) {
		image_init(&imgs[i], ids[i], a, lim, NULL, 0, 1);
		ptrs[i] = &imgs[i];
	}
	d.images = ptrs;
	d.n_images = n;
	assert_int_equal(delegate_merge_images(NULL, &d, &out, &err), -E2BIG);
	assert_contains(err.msg, "the delegate's ListImages answer: over 131072 repo tags and digests");
	d.n_images = n - 1;
	assert_int_equal(delegate_merge_images(NULL, &d, &out, &err), 0);
	assert_int_equal(out.resp.n_images, n - 1);
	delegate_images_done(&out);
	free(imgs);
	free(ptrs);
	refs_free(ids, n);
	refs_free(a, lim);
	refs_free(b, lim);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route_table),
		cmocka_unit_test(test_route_partial_config),
		cmocka_unit_test(test_unknown_handler_message),
		cmocka_unit_test(test_route_delegate_handlers),
		cmocka_unit_test(test_handlers_from_status),
		cmocka_unit_test(test_status_ready),
		cmocka_unit_test(test_route_pull),
		cmocka_unit_test(test_config_check),
		cmocka_unit_test(test_merge_lists),
		cmocka_unit_test(test_merge_every_list),
		cmocka_unit_test(test_merge_images),
		cmocka_unit_test(test_merge_images_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
