/* Unit tests for src/cri/limits*.c: every row of the limits table at, just below and just
 * above its bounds (count, item, key, total); Kubernetes' key rules; resources on the values
 * of issue 12; the request checks (enums, ports, DNS, security contexts, filters, the log
 * path); the parser of `qemu -cpu help` and the check of a -cpu value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/cri/limits.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

typedef Runtime__V1__PodSandboxConfig__LabelsEntry entry;

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

static char *rep(char c, size_t n)
{
	char *s = malloc(n + 1);
	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* A Kubernetes qualified name of exactly len bytes (1..CRI_KEY_MAX): "a…" up to 63, then a
 * prefix "a…/" before a name of up to 63. */
static char *qkey(size_t len)
{
	char *s = rep('a', len);
	if (len > CRI_KEY_NAME_MAX) {
		size_t name = len - 2 < CRI_KEY_NAME_MAX ? len - 2 : CRI_KEY_NAME_MAX;
		s[len - name - 1] = '/';
	}
	return s;
}

/* ---- lists of strings and maps, built with given item sizes ---- */

struct list {
	size_t n;
	char **v;       /* strings, or values of entries */
	entry **e;      /* maps */
};

static void list_free(struct list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i]);
		if (l->e) {
			free(l->e[i]->key);
			free(l->e[i]);
		}
	}
	free(l->v);
	free(l->e);
}

static bool is_map(enum cri_limit_id id)
{
	return cri_limits[id].key > 0;
}

/* n items; item i has a key of klen[i] (maps) and a value of vlen[i] bytes. */
static struct list make(enum cri_limit_id id, size_t n, const size_t *klen, const size_t *vlen)
{
	struct list l = { .n = n, .v = calloc(n + 1, sizeof(char *)) };
	assert_non_null(l.v);
	if (is_map(id))
		assert_non_null(l.e = calloc(n + 1, sizeof(entry *)));
	for (size_t i = 0; i < n; i++) {
		l.v[i] = rep('a', vlen[i]);
		if (l.e) {
			l.e[i] = calloc(1, sizeof(entry));
			assert_non_null(l.e[i]);
			l.e[i]->key = qkey(klen[i]);
			l.e[i]->value = l.v[i];
		}
	}
	return l;
}

static int check(enum cri_limit_id id, struct list *l, uk_error *err)
{
	int r = is_map(id) ? cri_check_map(id, "f", l->n, (void *const *)l->e, err)
			   : cri_check_strings(id, "f", l->n, l->v, err);
	list_free(l);
	return r;
}

/* n items of the same sizes. */
static int check_same(enum cri_limit_id id, size_t n, size_t k, size_t v, uk_error *err)
{
	size_t *kl = calloc(n + 1, sizeof(size_t)), *vl = calloc(n + 1, sizeof(size_t));
	for (size_t i = 0; i < n; i++) {
		kl[i] = k;
		vl[i] = v;
	}
	struct list l = make(id, n, kl, vl);
	free(kl);
	free(vl);
	return check(id, &l, err);
}

/* Items as large as the row allows, summing to exactly total bytes; -1 if that needs more
 * items than the row's count (the total is then implied by count and item). */
static int check_total(enum cri_limit_id id, size_t total, uk_error *err)
{
	const struct cri_limit *L = &cri_limits[id];
	size_t kmax = is_map(id) ? L->key : 0, per = kmax + L->item;
	size_t n = (total + per - 1) / per;
	if (n > L->count)
		return -1;
	size_t *kl = calloc(n + 1, sizeof(size_t)), *vl = calloc(n + 1, sizeof(size_t)), left = total;
	for (size_t i = 0; i < n; i++) {
		size_t take = left < per ? left : per;
		kl[i] = kmax ? (take < kmax ? take : kmax) : 0;
		vl[i] = take - kl[i];
		left -= take;
	}
	struct list l = make(id, n, kl, vl);
	free(kl);
	free(vl);
	return check(id, &l, err);
}

static const struct {
	enum cri_limit_id id;
	const char *name;
} generic_rows[] = {
	{ CRI_LIM_LABELS, "labels" },
	{ CRI_LIM_ANNOTATIONS, "annotations" },
	{ CRI_LIM_COMMAND, "command" },
	{ CRI_LIM_ARGS, "args" },
	{ CRI_LIM_ENVS, "envs" },
	{ CRI_LIM_DNS_SERVERS, "dns servers" },
	{ CRI_LIM_DNS_SEARCHES, "dns searches" },
	{ CRI_LIM_DNS_OPTIONS, "dns options" },
	{ CRI_LIM_SYSCTLS, "sysctls" },
	{ CRI_LIM_CAPABILITIES, "capabilities" },
	{ CRI_LIM_SECURITY_PATHS, "masked/readonly paths" },
	{ CRI_LIM_UNIFIED, "unified" },
};

/* Count, item, key and total of each list row, at the bound and one past it. */
static void rows_at_their_bounds(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(generic_rows); i++) {
		enum cri_limit_id id = generic_rows[i].id;
		const struct cri_limit *L = &cri_limits[id];
		size_t k1 = is_map(id) ? 1 : 0;
		uk_error err = { 0 };
		print_message("%s: count %zu, key %zu, item %zu, total %zu\n", generic_rows[i].name, L->count, L->key,
			      L->item, L->total);
		/* count */
		if (check_same(id, L->count, k1, 0, &err) != 0)
			fail_msg("%s: %zu items refused: %s", generic_rows[i].name, L->count, err.msg);
		assert_int_equal(check_same(id, L->count - 1, k1, 0, &err), 0);
		assert_int_equal(check_same(id, L->count + 1, k1, 0, &err), -E2BIG);
		assert_contains(err.msg, "f has");
		/* item: as large as the total leaves room for */
		size_t item = L->item + k1 <= L->total ? L->item : L->total - k1;
		if (check_same(id, 1, k1, item, &err) != 0)
			fail_msg("%s: an item of %zu refused: %s", generic_rows[i].name, item, err.msg);
		assert_int_equal(check_same(id, 1, k1, item - 1, &err), 0);
		assert_int_equal(check_same(id, 1, k1, L->item + 1, &err), -E2BIG);
		/* key */
		if (is_map(id)) {
			assert_int_equal(check_same(id, 1, L->key, 0, &err), 0);
			assert_int_equal(check_same(id, 1, L->key - 1, 0, &err), 0);
			assert_int_equal(check_same(id, 1, L->key + 1, 0, &err), -E2BIG);
			assert_contains(err.msg, "key is longer");
		}
		/* total */
		int r = check_total(id, L->total, &err);
		if (r == -1) {
			/* Implied by count x item: the largest list must then fit. */
			assert_true(L->count * (L->key + L->item) <= L->total);
			continue;
		}
		if (r != 0)
			fail_msg("%s: a total of %zu refused: %s", generic_rows[i].name, L->total, err.msg);
		assert_int_equal(check_total(id, L->total - 1, &err), 0);
		r = check_total(id, L->total + 1, &err);
		if (r != -1) {
			assert_int_equal(r, -E2BIG);
			assert_contains(err.msg, "in all");
		}
	}
}

/* ---- Kubernetes' names ---- */

static void qualified_names(void **state)
{
	(void)state;
	static const char *const good[] = { "a", "app", "app.kubernetes.io/name", "io.kubernetes.pod.name", "A_b-c.D",
					    "unikd.io/cpu", "x/y", "0", "k8s.io/a" };
	static const char *const bad[] = { "", "-a", "a-", "_a", "a b", "a/b/c", "/a", "a/", "A.io/x", "a..b/x",
					   "a./x", ".a/x", "-a.io/x", "a.io-/x", "a\xc3\xa9", "a\nb", "a:b" };
	for (size_t i = 0; i < N(good); i++)
		if (!cri_qualified_name_ok(good[i]))
			fail_msg("\"%s\" refused", good[i]);
	for (size_t i = 0; i < N(bad); i++)
		if (cri_qualified_name_ok(bad[i]))
			fail_msg("\"%s\" accepted", bad[i]);
	assert_false(cri_qualified_name_ok(NULL));
	/* name 63 / 64, prefix 253 / 254 */
	char *s = rep('a', 63);
	assert_true(cri_qualified_name_ok(s));
	free(s);
	s = rep('a', 64);
	assert_false(cri_qualified_name_ok(s));
	free(s);
	for (size_t p = 252; p <= 254; p++) {
		s = rep('a', p + 2);
		s[p] = '/';
		assert_true(cri_qualified_name_ok(s) == (p <= 253));
		free(s);
	}
	s = qkey(CRI_KEY_MAX);
	assert_true(cri_qualified_name_ok(s));
	free(s);

	static const char *const vgood[] = { "", "a", "web-1", "A.b_c", "0" };
	static const char *const vbad[] = { "-a", "a-", "a b", "a/b", ".a", "\xc3\xa9" };
	for (size_t i = 0; i < N(vgood); i++)
		assert_true(cri_label_value_ok(vgood[i]));
	for (size_t i = 0; i < N(vbad); i++)
		if (cri_label_value_ok(vbad[i]))
			fail_msg("value \"%s\" accepted", vbad[i]);
	s = rep('a', CRI_LABEL_VALUE_MAX);
	assert_true(cri_label_value_ok(s));
	free(s);
	s = rep('a', CRI_LABEL_VALUE_MAX + 1);
	assert_false(cri_label_value_ok(s));
	free(s);
}

static void map_messages(void **state)
{
	(void)state;
	uk_error err = { 0 };
	entry e = { .key = "bad key", .value = "v" };
	entry *v[] = { &e };
	assert_int_equal(cri_check_map(CRI_LIM_LABELS, "config.labels", 1, (void *const *)v, &err), -EINVAL);
	assert_contains(err.msg, "config.labels[0]");
	assert_contains(err.msg, "qualified name");
	assert_null(strstr(err.msg, "bad key")); /* a bad key is named by index, never echoed */
	e.key = "app";
	e.value = "no spaces";
	assert_int_equal(cri_check_map(CRI_LIM_LABELS, "config.labels", 1, (void *const *)v, &err), -EINVAL);
	assert_contains(err.msg, "config.labels[\"app\"]");
	/* Annotation values are free; sysctl keys are not Kubernetes names. */
	assert_int_equal(cri_check_map(CRI_LIM_ANNOTATIONS, "config.annotations", 1, (void *const *)v, &err), 0);
	e.key = "net.ipv4.ip_forward";
	assert_int_equal(cri_check_map(CRI_LIM_SYSCTLS, "config.linux.sysctls", 1, (void *const *)v, &err), 0);
	e.key = NULL;
	e.value = NULL;
	assert_int_equal(cri_check_map(CRI_LIM_ENVS, "config.envs", 1, (void *const *)v, &err), 0);
	/* The 100k annotations. */
	assert_int_equal(check_same(CRI_LIM_ANNOTATIONS, 100000, 8, 100, &err), -E2BIG);
	assert_contains(err.msg, "100000 items, at most 1024");
	/* 256 KiB of annotations in 200 entries: the total, not the count. */
	assert_int_equal(check_same(CRI_LIM_ANNOTATIONS, 200, 10, 1400, &err), -E2BIG);
	assert_contains(err.msg, "more than 262144 bytes in all");
}

/* ---- resources ---- */

static Runtime__V1__LinuxContainerResources mkres(int64_t mem, int64_t quota, int64_t period, int64_t shares)
{
	Runtime__V1__LinuxContainerResources r = RUNTIME__V1__LINUX_CONTAINER_RESOURCES__INIT;
	r.memory_limit_in_bytes = mem;
	r.cpu_quota = quota;
	r.cpu_period = period;
	r.cpu_shares = shares;
	return r;
}

static void resources(void **state)
{
	(void)state;
	static const struct {
		int64_t mem, quota, period, shares;
		int rc;
		const char *field;
	} cases[] = {
		/* the values */
		{ 0, 1, 100000, 0, -EINVAL, "p.cpu_quota" },
		{ 0, -5, 0, 0, -EINVAL, "p.cpu_quota" },
		{ 0, 1000000000000000, 100000, 0, -EINVAL, "p.cpu_quota" },
		{ 0, 0, -1, 0, -EINVAL, "p.cpu_period" },
		{ 1, 0, 0, 0, -EINVAL, "p.memory_limit_in_bytes" },
		{ -1, 0, 0, 0, -EINVAL, "p.memory_limit_in_bytes" },
		{ INT64_MAX, 0, 0, 0, -EINVAL, "p.memory_limit_in_bytes" },
		/* memory: 16 MiB .. 1 TiB, rounded up to MiB */
		{ 16 << 20, 0, 0, 0, 0, NULL },
		{ (16 << 20) - (1 << 20), 0, 0, 0, -EINVAL, "p.memory_limit_in_bytes" },
		{ (15 << 20) + 1, 0, 0, 0, 0, NULL },
		{ INT64_C(1) << 40, 0, 0, 0, 0, NULL },
		{ (INT64_C(1) << 40) + 1, 0, 0, 0, -EINVAL, "p.memory_limit_in_bytes" },
		/* period: 1000..1000000 */
		{ 0, 0, 1000, 0, 0, NULL },
		{ 0, 0, 999, 0, -EINVAL, "p.cpu_period" },
		{ 0, 0, 1000000, 0, 0, NULL },
		{ 0, 0, 1000001, 0, -EINVAL, "p.cpu_period" },
		/* quota: -1 (none), 1000 .. kernel max, at most 256 vCPUs */
		{ 0, -1, 0, 0, 0, NULL },
		{ 0, -2, 0, 0, -EINVAL, "p.cpu_quota" },
		{ 0, 1000, 0, 0, 0, NULL },
		{ 0, 999, 0, 0, -EINVAL, "p.cpu_quota" },
		{ 0, 256 * 1000000, 1000000, 0, 0, NULL },
		{ 0, 256 * 1000000 + 1, 1000000, 0, -EINVAL, "p.cpu_quota" },
		{ 0, 256 * 100000 + 1, 0, 0, -EINVAL, "vCPUs" }, /* the default period, 100000 */
		{ 0, CG_CPU_QUOTA_MAX + 1, 1000000, 0, -EINVAL, "maximum" },
		/* shares: 2..262144 */
		{ 0, 0, 0, 2, 0, NULL },
		{ 0, 0, 0, 1, -EINVAL, "p.cpu_shares" },
		{ 0, 0, 0, 262144, 0, NULL },
		{ 0, 0, 0, 262145, -EINVAL, "p.cpu_shares" },
		{ 0, 0, 0, -1, -EINVAL, "p.cpu_shares" },
	};
	for (size_t i = 0; i < N(cases); i++) {
		Runtime__V1__LinuxContainerResources r = mkres(cases[i].mem, cases[i].quota, cases[i].period, cases[i].shares);
		struct cri_resources out = { .memory_limit = 7 };
		uk_error err = { 0 };
		int rc = cri_check_resources(&r, "p.", &out, &err);
		if (rc != cases[i].rc)
			fail_msg("case %zu: got %d, want %d (%s)", i, rc, cases[i].rc, err.msg);
		if (rc < 0) {
			assert_contains(err.msg, cases[i].field);
			assert_int_equal(out.memory_limit, 0); /* nothing half-filled */
		}
	}

	/* What a valid request asks for. */
	Runtime__V1__LinuxContainerResources r = mkres((100 << 20) + 1, 150000, 100000, 512);
	struct cri_resources out;
	uk_error err = { 0 };
	assert_int_equal(cri_check_resources(&r, "", &out, &err), 0);
	assert_int_equal(out.memory_mib, 101);
	assert_int_equal(out.vcpus, 2);
	assert_int_equal(out.memory_limit, (100 << 20) + 1);
	assert_int_equal(out.cpu_quota, 150000);
	assert_int_equal(out.cpu_period, 100000);
	assert_int_equal(out.cpu_shares, 512);
	r = mkres(0, 250000, 0, 0);
	assert_int_equal(cri_check_resources(&r, "", &out, &err), 0);
	assert_int_equal(out.vcpus, 3);
	assert_int_equal(out.memory_mib, 0);
	assert_int_equal(cri_check_resources(NULL, "", &out, &err), 0);
	assert_int_equal(out.vcpus, 0);

	/* hugepage_limits and unified, against their rows. */
	Runtime__V1__HugepageLimit hp = RUNTIME__V1__HUGEPAGE_LIMIT__INIT, *hps[17];
	for (size_t i = 0; i < N(hps); i++)
		hps[i] = &hp;
	hp.page_size = "2MB";
	r = mkres(0, 0, 0, 0);
	r.hugepage_limits = hps;
	r.n_hugepage_limits = 16;
	assert_int_equal(cri_check_resources(&r, "p.", &out, &err), 0);
	r.n_hugepage_limits = 17;
	assert_int_equal(cri_check_resources(&r, "p.", &out, &err), -E2BIG);
	assert_contains(err.msg, "p.hugepage_limits");
	r.n_hugepage_limits = 1;
	hp.page_size = "12345678901234567";
	assert_int_equal(cri_check_resources(&r, "p.", &out, &err), -E2BIG);
	assert_contains(err.msg, "p.hugepage_limits[0].page_size");
}

/* The same resources are refused alike by create and by update, with each one's field. */
static void create_and_update_alike(void **state)
{
	(void)state;
	static const int64_t bad[][3] = { { 1, 0, 0 }, { -1, 0, 0 }, { INT64_MAX, 0, 0 }, { 0, 1, 100000 },
					  { 0, -5, 0 }, { 0, 1000000000000000, 0 }, { 0, 0, -1 } };
	for (size_t i = 0; i < N(bad); i++) {
		Runtime__V1__LinuxContainerResources r = mkres(bad[i][0], bad[i][1], bad[i][2], 0);
		Runtime__V1__LinuxContainerConfig lx = RUNTIME__V1__LINUX_CONTAINER_CONFIG__INIT;
		Runtime__V1__ContainerMetadata md = RUNTIME__V1__CONTAINER_METADATA__INIT;
		Runtime__V1__ImageSpec img = RUNTIME__V1__IMAGE_SPEC__INIT;
		Runtime__V1__ContainerConfig cfg = RUNTIME__V1__CONTAINER_CONFIG__INIT;
		md.name = "c";
		img.image = "hello:1";
		lx.resources = &r;
		cfg.metadata = &md;
		cfg.image = &img;
		cfg.linux = &lx;
		Runtime__V1__UpdateContainerResourcesRequest q = RUNTIME__V1__UPDATE_CONTAINER_RESOURCES_REQUEST__INIT;
		q.container_id = "x";
		q.linux = &r;
		struct cri_resources out;
		uk_error ec = { 0 }, eu = { 0 };
		int rc = cri_check_container_config(&cfg, &out, &ec), ru = cri_check_update(&q, &out, &eu);
		assert_int_equal(rc, -EINVAL);
		assert_int_equal(ru, -EINVAL);
		assert_true(strncmp(ec.msg, "config.linux.resources.", 23) == 0);
		assert_true(strncmp(eu.msg, "linux.", 6) == 0);
		/* The same words after the prefix. */
		assert_string_equal(ec.msg + 23, eu.msg + 6);
	}
	Runtime__V1__UpdateContainerResourcesRequest q = RUNTIME__V1__UPDATE_CONTAINER_RESOURCES_REQUEST__INIT;
	struct cri_resources out;
	uk_error err = { 0 };
	assert_int_equal(cri_check_update(&q, &out, &err), -EINVAL);
	assert_contains(err.msg, "linux is required");
}

/* ---- RunPodSandbox ---- */

struct pod {
	Runtime__V1__PodSandboxConfig cfg;
	Runtime__V1__PodSandboxMetadata md;
	Runtime__V1__DNSConfig dns;
	Runtime__V1__LinuxPodSandboxConfig lx;
	Runtime__V1__LinuxSandboxSecurityContext sc;
	Runtime__V1__NamespaceOption ns;
};

static void pod_init(struct pod *p)
{
	p->cfg = (Runtime__V1__PodSandboxConfig)RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
	p->md = (Runtime__V1__PodSandboxMetadata)RUNTIME__V1__POD_SANDBOX_METADATA__INIT;
	p->dns = (Runtime__V1__DNSConfig)RUNTIME__V1__DNSCONFIG__INIT;
	p->lx = (Runtime__V1__LinuxPodSandboxConfig)RUNTIME__V1__LINUX_POD_SANDBOX_CONFIG__INIT;
	p->sc = (Runtime__V1__LinuxSandboxSecurityContext)RUNTIME__V1__LINUX_SANDBOX_SECURITY_CONTEXT__INIT;
	p->ns = (Runtime__V1__NamespaceOption)RUNTIME__V1__NAMESPACE_OPTION__INIT;
	p->md.name = "web";
	p->md.uid = "uid-1";
	p->md.namespace_ = "default";
	p->cfg.metadata = &p->md;
	p->cfg.log_directory = "/var/log/pods/x";
	p->cfg.dns_config = &p->dns;
	p->cfg.linux = &p->lx;
	p->lx.security_context = &p->sc;
	p->sc.namespace_options = &p->ns;
}

static void pod_config(void **state)
{
	(void)state;
	struct pod p;
	uk_error err = { 0 };
	pod_init(&p);
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), 0);
	assert_int_equal(cri_check_pod_config(NULL, &err), -EINVAL);

	/* Ports: protocol 99 is not TCP; SCTP is refused by name. */
	Runtime__V1__PortMapping pm = RUNTIME__V1__PORT_MAPPING__INIT, *pms[1025];
	for (size_t i = 0; i < N(pms); i++)
		pms[i] = &pm;
	p.cfg.port_mappings = pms;
	p.cfg.n_port_mappings = 1;
	pm.protocol = 99;
	pm.container_port = 80;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	assert_contains(err.msg, "config.port_mappings[0].protocol: unknown value 99");
	pm.protocol = RUNTIME__V1__PROTOCOL__SCTP;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	assert_contains(err.msg, "SCTP");
	pm.protocol = RUNTIME__V1__PROTOCOL__UDP;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), 0);
	pm.host_port = 65536;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	pm.host_port = 8080;
	pm.container_port = 0;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	assert_contains(err.msg, "container_port is required");
	pm.container_port = 80;
	/* count, host_ip item and total */
	p.cfg.n_port_mappings = 1024;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), 0);
	p.cfg.n_port_mappings = 1025;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -E2BIG);
	assert_contains(err.msg, "config.port_mappings has 1025 items");
	p.cfg.n_port_mappings = 1;
	pm.host_ip = rep('a', CRI_NAME_MAX);
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), 0);
	free(pm.host_ip);
	pm.host_ip = rep('a', CRI_NAME_MAX + 1);
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	assert_contains(err.msg, "config.port_mappings[0].host_ip");
	free(pm.host_ip);
	pm.host_ip = rep('a', 253);
	p.cfg.n_port_mappings = 259; /* 259 x 253 = 65527 */
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), 0);
	p.cfg.n_port_mappings = 260;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -E2BIG);
	assert_contains(err.msg, "config.port_mappings holds more than 65536 bytes");
	free(pm.host_ip);
	pm.host_ip = "bad ip";
	p.cfg.n_port_mappings = 1;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	p.cfg.n_port_mappings = 0;

	/* DNS: the 33 searches, and bad words. */
	char *searches[33];
	for (size_t i = 0; i < N(searches); i++)
		searches[i] = "svc.cluster.local";
	p.dns.searches = searches;
	p.dns.n_searches = 32;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), 0);
	p.dns.n_searches = 33;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -E2BIG);
	assert_contains(err.msg, "config.dns_config.searches has 33 items, at most 32");
	searches[1] = "a b";
	p.dns.n_searches = 2;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	assert_contains(err.msg, "config.dns_config.searches[1]");
	p.dns.n_searches = 0;
	char *opts[] = { "" };
	p.dns.options = opts;
	p.dns.n_options = 1;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	assert_contains(err.msg, "config.dns_config.options[0]");
	p.dns.n_options = 0;

	/* Hostname, log directory, metadata. */
	p.cfg.hostname = "a b";
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	assert_contains(err.msg, "config.hostname");
	p.cfg.hostname = "web-0";
	p.cfg.log_directory = "relative";
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	assert_contains(err.msg, "config.log_directory");
	p.cfg.log_directory = "/a/../b";
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	char *ld = rep('a', CRI_PATH_MAX + 1);
	ld[0] = '/';
	p.cfg.log_directory = ld;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -E2BIG);
	assert_contains(err.msg, "config.log_directory is longer");
	free(ld);
	p.cfg.log_directory = "";
	p.md.uid = "";
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	assert_contains(err.msg, "config.metadata.uid is required");
	char *longname = rep('a', CRI_NAME_MAX + 1);
	p.md.uid = longname;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	free(longname);
	p.md.uid = "uid-1";

	/* Namespace modes: known values only, and no host network. */
	p.ns.pid = 7;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	assert_contains(err.msg, "config.linux.security_context.namespace_options.pid: unknown value 7");
	p.ns.pid = RUNTIME__V1__NAMESPACE_MODE__CONTAINER;
	p.ns.network = RUNTIME__V1__NAMESPACE_MODE__NODE;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	assert_contains(err.msg, "network is NODE");
	p.ns.network = RUNTIME__V1__NAMESPACE_MODE__POD;
	Runtime__V1__UserNamespace u = RUNTIME__V1__USER_NAMESPACE__INIT;
	Runtime__V1__IDMapping idm = RUNTIME__V1__IDMAPPING__INIT, *ids[341];
	for (size_t i = 0; i < N(ids); i++)
		ids[i] = &idm;
	u.uids = ids;
	u.n_uids = 340;
	p.ns.userns_options = &u;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), 0);
	u.n_uids = 341;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -E2BIG);
	assert_contains(err.msg, "userns_options.uids has 341 items");
	u.n_uids = 0;
	u.mode = 42;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	u.mode = RUNTIME__V1__NAMESPACE_MODE__POD;
	p.sc.supplemental_groups_policy = 9;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	assert_contains(err.msg, "supplemental_groups_policy");
	p.sc.supplemental_groups_policy = 0;
	Runtime__V1__SecurityProfile prof = RUNTIME__V1__SECURITY_PROFILE__INIT;
	prof.profile_type = 3;
	p.sc.seccomp = &prof;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	assert_contains(err.msg, "seccomp.profile_type");
	p.sc.seccomp = NULL;
	int64_t *groups = calloc(65537, sizeof(int64_t));
	p.sc.supplemental_groups = groups;
	p.sc.n_supplemental_groups = 65536;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), 0);
	p.sc.n_supplemental_groups = 65537;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -E2BIG);
	free(groups);
	p.sc.n_supplemental_groups = 0;

	/* Labels and annotations reach the generic checks with their field names. */
	entry e = { .key = "-bad", .value = "" }, *ev[] = { &e };
	p.cfg.labels = (Runtime__V1__PodSandboxConfig__LabelsEntry **)ev;
	p.cfg.n_labels = 1;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	assert_contains(err.msg, "config.labels[0]");
	p.cfg.n_labels = 0;
	p.cfg.annotations = (Runtime__V1__PodSandboxConfig__AnnotationsEntry **)ev;
	p.cfg.n_annotations = 1;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -EINVAL);
	assert_contains(err.msg, "config.annotations[0]");
	p.cfg.n_annotations = 0;
	p.lx.sysctls = (Runtime__V1__LinuxPodSandboxConfig__SysctlsEntry **)ev;
	p.lx.n_sysctls = 257;
	assert_int_equal(cri_check_pod_config(&p.cfg, &err), -E2BIG);
	assert_contains(err.msg, "config.linux.sysctls has 257 items");
}

/* ---- CreateContainer ---- */

struct ctr {
	Runtime__V1__ContainerConfig cfg;
	Runtime__V1__ContainerMetadata md;
	Runtime__V1__ImageSpec img;
};

static void ctr_init(struct ctr *c)
{
	c->cfg = (Runtime__V1__ContainerConfig)RUNTIME__V1__CONTAINER_CONFIG__INIT;
	c->md = (Runtime__V1__ContainerMetadata)RUNTIME__V1__CONTAINER_METADATA__INIT;
	c->img = (Runtime__V1__ImageSpec)RUNTIME__V1__IMAGE_SPEC__INIT;
	c->md.name = "c";
	c->img.image = "hello:1";
	c->cfg.metadata = &c->md;
	c->cfg.image = &c->img;
	c->cfg.log_path = "c/0.log";
}

static void container_config(void **state)
{
	(void)state;
	struct ctr c;
	struct cri_resources res;
	uk_error err = { 0 };
	ctr_init(&c);
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), 0);
	/* stdin alone is fine: attach takes it to the serial port. */
	c.cfg.stdin = true;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), 0);
	c.cfg.stdin = false;
	c.cfg.tty = true;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -EINVAL);
	assert_contains(err.msg, "config.tty");
	c.cfg.tty = false;
	c.cfg.log_path = "/abs";
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -EINVAL);
	c.cfg.log_path = "../up";
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -EINVAL);
	assert_contains(err.msg, "config.log_path");
	c.cfg.log_path = "ok/..x/0.log"; /* not a ".." component */
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), 0);
	c.cfg.stop_signal = 1000;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -EINVAL);
	assert_contains(err.msg, "config.stop_signal: unknown value 1000");
	c.cfg.stop_signal = RUNTIME__V1__SIGNAL__SIGTERM;
	c.img.image = "";
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -EINVAL);
	assert_contains(err.msg, "config.image.image is required");
	c.img.image = "hello:1";
	c.md.name = NULL;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -EINVAL);
	assert_contains(err.msg, "config.metadata.name");
	c.md.name = "c";

	/* mounts: count, one path, total, enum, id mappings */
	Runtime__V1__Mount m = RUNTIME__V1__MOUNT__INIT, *ms[257];
	for (size_t i = 0; i < N(ms); i++)
		ms[i] = &m;
	c.cfg.mounts = ms;
	c.cfg.n_mounts = 256;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), 0);
	c.cfg.n_mounts = 257;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -E2BIG);
	assert_contains(err.msg, "config.mounts has 257 items");
	c.cfg.n_mounts = 1;
	m.host_path = rep('a', CRI_PATH_MAX);
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), 0);
	free(m.host_path);
	m.host_path = rep('a', CRI_PATH_MAX + 1);
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -E2BIG);
	assert_contains(err.msg, "config.mounts[0].host_path");
	free(m.host_path);
	/* 64 x 4096 = 256 KiB exactly, then one byte more */
	m.host_path = rep('a', 4095);
	m.container_path = "/";
	c.cfg.n_mounts = 64;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), 0);
	m.container_path = "/x";
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -E2BIG);
	assert_contains(err.msg, "config.mounts holds more than 262144 bytes");
	free(m.host_path);
	m.host_path = NULL;
	c.cfg.n_mounts = 1;
	m.propagation = 5;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -EINVAL);
	assert_contains(err.msg, "config.mounts[0].propagation");
	m.propagation = 0;
	Runtime__V1__IDMapping idm = RUNTIME__V1__IDMAPPING__INIT, *ids[341];
	for (size_t i = 0; i < N(ids); i++)
		ids[i] = &idm;
	m.gidmappings = ids;
	m.n_gidmappings = 341;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -E2BIG);
	assert_contains(err.msg, "config.mounts[0].gidMappings");
	m.n_gidmappings = 340;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), 0);
	c.cfg.n_mounts = 0;

	/* devices and CDI devices */
	Runtime__V1__Device d = RUNTIME__V1__DEVICE__INIT, *ds[257];
	for (size_t i = 0; i < N(ds); i++)
		ds[i] = &d;
	d.permissions = "rwm";
	c.cfg.devices = ds;
	c.cfg.n_devices = 256;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), 0);
	c.cfg.n_devices = 257;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -E2BIG);
	assert_contains(err.msg, "config.devices");
	c.cfg.n_devices = 0;
	Runtime__V1__CDIDevice cd = RUNTIME__V1__CDIDEVICE__INIT, *cds[257];
	for (size_t i = 0; i < N(cds); i++)
		cds[i] = &cd;
	cd.name = rep('a', 1024);
	c.cfg.cdi_devices = cds;
	c.cfg.n_cdi_devices = 64; /* 64 KiB exactly */
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), 0);
	c.cfg.n_cdi_devices = 65;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -E2BIG);
	assert_contains(err.msg, "config.CDI_devices holds more than 65536");
	free(cd.name);
	cd.name = rep('a', 1025);
	c.cfg.n_cdi_devices = 1;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -E2BIG);
	assert_contains(err.msg, "config.CDI_devices[0].name");
	free(cd.name);
	cd.name = "vendor.com/gpu=0";
	c.cfg.n_cdi_devices = 257;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -E2BIG);
	c.cfg.n_cdi_devices = 0;

	/* command, args, envs with their field names */
	char *args[1025];
	for (size_t i = 0; i < N(args); i++)
		args[i] = "";
	c.cfg.args = args;
	c.cfg.n_args = 1025;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -E2BIG);
	assert_contains(err.msg, "config.args has 1025 items");
	c.cfg.n_args = 0;
	c.cfg.command = args;
	c.cfg.n_command = 1025;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -E2BIG);
	assert_contains(err.msg, "config.command");
	c.cfg.n_command = 0;

	/* the security context's lists */
	Runtime__V1__LinuxContainerConfig lx = RUNTIME__V1__LINUX_CONTAINER_CONFIG__INIT;
	Runtime__V1__LinuxContainerSecurityContext sc = RUNTIME__V1__LINUX_CONTAINER_SECURITY_CONTEXT__INIT;
	Runtime__V1__Capability cap = RUNTIME__V1__CAPABILITY__INIT;
	char *caps[65];
	for (size_t i = 0; i < N(caps); i++)
		caps[i] = "CAP_NET_ADMIN";
	cap.drop_capabilities = caps;
	cap.n_drop_capabilities = 65;
	sc.capabilities = &cap;
	lx.security_context = &sc;
	c.cfg.linux = &lx;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -E2BIG);
	assert_contains(err.msg, "config.linux.security_context.capabilities.drop_capabilities has 65");
	cap.n_drop_capabilities = 64;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), 0);
	sc.masked_paths = args;
	sc.n_masked_paths = 257;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -E2BIG);
	assert_contains(err.msg, "masked_paths");
	sc.n_masked_paths = 0;

	/* resources come out */
	Runtime__V1__LinuxContainerResources r = mkres(128 << 20, 50000, 100000, 0);
	lx.resources = &r;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), 0);
	assert_int_equal(res.memory_mib, 128);
	assert_int_equal(res.vcpus, 1);
	r.memory_limit_in_bytes = -1;
	assert_int_equal(cri_check_container_config(&c.cfg, &res, &err), -EINVAL);
	assert_contains(err.msg, "config.linux.resources.memory_limit_in_bytes -1 is negative");
}

static void image_filters_log_path(void **state)
{
	(void)state;
	uk_error err = { 0 };
	Runtime__V1__ImageSpec img = RUNTIME__V1__IMAGE_SPEC__INIT;
	img.image = rep('a', CRI_PATH_MAX + 1);
	assert_int_equal(cri_check_image_spec(&img, "image", &err), -E2BIG);
	assert_contains(err.msg, "image.image is longer");
	free(img.image);
	img.image = "hello:1";
	assert_int_equal(cri_check_image_spec(&img, "image", &err), 0);
	assert_int_equal(cri_check_image_spec(NULL, "image", &err), 0);

	Runtime__V1__PodSandboxFilter pf = RUNTIME__V1__POD_SANDBOX_FILTER__INIT;
	Runtime__V1__PodSandboxStateValue ps = RUNTIME__V1__POD_SANDBOX_STATE_VALUE__INIT;
	pf.state = &ps;
	assert_int_equal(cri_check_pod_filter(&pf, &err), 0);
	ps.state = 5;
	assert_int_equal(cri_check_pod_filter(&pf, &err), -EINVAL);
	assert_contains(err.msg, "filter.state.state: unknown value 5");
	ps.state = RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY;
	struct list l = { 0 };
	size_t kl[1025], vl[1025];
	for (size_t i = 0; i < 1025; i++)
		kl[i] = 3, vl[i] = 1;
	l = make(CRI_LIM_LABELS, 1025, kl, vl);
	pf.label_selector = (Runtime__V1__PodSandboxFilter__LabelSelectorEntry **)l.e;
	pf.n_label_selector = 1024;
	assert_int_equal(cri_check_pod_filter(&pf, &err), 0);
	pf.n_label_selector = 1025;
	assert_int_equal(cri_check_pod_filter(&pf, &err), -E2BIG);
	assert_contains(err.msg, "filter.label_selector has 1025 items");
	Runtime__V1__ContainerFilter cf = RUNTIME__V1__CONTAINER_FILTER__INIT;
	Runtime__V1__ContainerStateValue cs = RUNTIME__V1__CONTAINER_STATE_VALUE__INIT;
	cf.state = &cs;
	cf.label_selector = (Runtime__V1__ContainerFilter__LabelSelectorEntry **)l.e;
	cf.n_label_selector = 1;
	assert_int_equal(cri_check_container_filter(&cf, &err), 0);
	cs.state = 4;
	assert_int_equal(cri_check_container_filter(&cf, &err), -EINVAL);
	cs.state = RUNTIME__V1__CONTAINER_STATE__CONTAINER_UNKNOWN;
	cf.pod_sandbox_id = rep('a', CRI_NAME_MAX + 1);
	assert_int_equal(cri_check_container_filter(&cf, &err), -E2BIG);
	assert_contains(err.msg, "filter.pod_sandbox_id");
	free(cf.pod_sandbox_id);
	assert_int_equal(cri_check_selector("s", 1025, (void *const *)l.e, &err), -E2BIG);
	list_free(&l);
	assert_int_equal(cri_check_pod_filter(NULL, &err), 0);
	assert_int_equal(cri_check_container_filter(NULL, &err), 0);

	/* log_directory "/" log_path fits PATH_MAX with its NUL, or is refused. */
	char out[PATH_MAX];
	assert_int_equal(cri_log_path_join("/logs", "c/0.log", out, sizeof(out), &err), 0);
	assert_string_equal(out, "/logs/c/0.log");
	char *rel = rep('a', PATH_MAX - 1 - 6); /* "/logs/" + rel = PATH_MAX - 1 */
	for (size_t i = 200; i < PATH_MAX - 7; i += 200)
		rel[i] = '/';
	assert_int_equal(cri_log_path_join("/logs", rel, out, sizeof(out), &err), 0);
	assert_int_equal(strlen(out), PATH_MAX - 1);
	free(rel);
	rel = rep('a', PATH_MAX - 6);
	assert_int_equal(cri_log_path_join("/logs", rel, out, sizeof(out), &err), -ENAMETOOLONG);
	assert_contains(err.msg, "config.log_path");
	assert_string_equal(out, "");
	/* Components: NAME_MAX bytes each at most. */
	rel[NAME_MAX] = '\0';
	assert_int_equal(cri_log_path_join("/logs", rel, out, sizeof(out), &err), 0);
	rel[NAME_MAX] = 'a';
	rel[NAME_MAX + 1] = '\0';
	assert_int_equal(cri_log_path_join("/logs", rel, out, sizeof(out), &err), -ENAMETOOLONG);
	assert_contains(err.msg, "component");
	rel[NAME_MAX] = '/';
	assert_int_equal(cri_log_path_join("/logs", rel, out, sizeof(out), &err), 0);
	free(rel);
}

/* ---- QEMU's CPU models ---- */

/* `qemu-system-x86_64 -cpu help` of QEMU 7.2 (shortened), and the format since 9.1. */
static const char qemu72[] =
	"Available CPUs:\n"
	"x86 486                   (alias configured by machine type)\n"
	"x86 486-v1                \n"
	"x86 Broadwell-noTSX       (alias of Broadwell-v2)\n"
	"x86 EPYC-v4               AMD EPYC Processor\n"
	"x86 qemu64                (alias configured by machine type)\n"
	"x86 base                  base CPU model type with no features enabled\n"
	"x86 host                  processor with all supported host features \n"
	"x86 max                   Enables all features supported by the accelerator in the current host\n"
	"\n"
	"Recognized CPUID flags:\n"
	"  3dnow 3dnowext abm avx avx2 lahf-lm vmx\n"
	"  x2apic xsave\n"
	"\n";
static const char qemu91[] =
	"Available CPUs:\n"
	"  486                   (alias of 486-v1)\n"
	"  Cooperlake-v2         Intel Xeon Processor (Cooperlake) [XSAVES]\n"
	"  max                   Enables all features supported by the accelerator in the current host\n"
	"\n"
	"Recognized CPUID flags:\n"
	"  avx pdpe1gb\n";

static void cpu_models(void **state)
{
	(void)state;
	struct cri_cpu_models *m = NULL;
	uk_error err = { 0 };
	assert_int_equal(cri_cpu_models_parse(qemu72, &m, &err), 0);
	static const char *const good[] = { "max", "host", "qemu64", "486-v1", "Broadwell-noTSX", "EPYC-v4",
					    "max,+avx", "host,-x2apic", "qemu64,avx2=on,vmx=off", "max,lahf_lm",
					    "base,+3dnow,-xsave" };
	static const struct {
		const char *v, *why;
	} bad[] = {
		{ "help", "not a CPU model" },
		{ "?", "not a CPU model" },
		{ "max -device evil", "not a CPU model" },
		{ "no-such-cpu", "not a CPU model" },
		{ "", "not a CPU model" },
		{ "MAX", "not a CPU model" },
		{ "x86", "not a CPU model" },
		{ "Available", "not a CPU model" },
		{ "3dnow", "not a CPU model" }, /* a flag is no model */
		{ "max,", "part 1" },
		{ "max,+", "part 1" },
		{ "max,+nosuch", "part 1" },
		{ "max,+avx,bogus=1", "part 2" },
		{ "max,avx=yes", "part 1" },
		{ "max,+avx -device x", "part 1" },
		{ "max,host", "part 1" },
	};
	for (size_t i = 0; i < N(good); i++)
		if (cri_cpu_check(m, good[i], "annotation", &err) < 0)
			fail_msg("\"%s\": %s", good[i], err.msg);
	for (size_t i = 0; i < N(bad); i++) {
		if (cri_cpu_check(m, bad[i].v, "config.annotations[unikd.io/cpu]", &err) != -EINVAL)
			fail_msg("\"%s\" accepted", bad[i].v);
		assert_contains(err.msg, "config.annotations[unikd.io/cpu]");
		assert_contains(err.msg, bad[i].why);
	}
	/* Control bytes are never echoed. */
	assert_int_equal(cri_cpu_check(m, "x\033[2J", "f", &err), -EINVAL);
	assert_null(strchr(err.msg, '\033'));
	char *big = rep('a', 1025);
	assert_int_equal(cri_cpu_check(m, big, "f", &err), -E2BIG);
	free(big);
	cri_cpu_models_free(m);

	assert_int_equal(cri_cpu_models_parse(qemu91, &m, &err), 0);
	assert_int_equal(cri_cpu_check(m, "Cooperlake-v2,+pdpe1gb", "f", &err), 0);
	assert_int_equal(cri_cpu_check(m, "486", "f", &err), 0);
	assert_int_equal(cri_cpu_check(m, "Intel", "f", &err), -EINVAL);
	assert_int_equal(cri_cpu_check(m, "max,+avx2", "f", &err), -EINVAL);
	cri_cpu_models_free(m);

	/* Not QEMU's list. */
	static const char *const junk[] = { "", "qemu-system-x86_64: -cpu help: error\n", "x86 max\n",
					    "Recognized CPUID flags:\n avx\n", "Available CPUs:\n\nx86 max\n" };
	for (size_t i = 0; i < N(junk); i++) {
		m = (struct cri_cpu_models *)&err; /* must be reset to NULL */
		assert_int_equal(cri_cpu_models_parse(junk[i], &m, &err), -EINVAL);
		assert_null(m);
	}
	cri_cpu_models_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rows_at_their_bounds),
		cmocka_unit_test(qualified_names),
		cmocka_unit_test(map_messages),
		cmocka_unit_test(resources),
		cmocka_unit_test(create_and_update_alike),
		cmocka_unit_test(pod_config),
		cmocka_unit_test(container_config),
		cmocka_unit_test(image_filters_log_path),
		cmocka_unit_test(cpu_models),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
