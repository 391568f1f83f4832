/* Unit tests for src/cri/wire_check.c: NUL bytes in string fields are found wherever they
 * are (nested, repeated, map keys and values) and named; malformed, truncated and mutated
 * bytes are errors, never crashes; what protobuf-c accepts is never called malformed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api.pb-c.h"
#include "../../src/cri/wire_check.h"

/* A packed message whose strings may hold the marker "<0>": its '<' becomes the NUL byte,
 * which protobuf-c's own packer (strlen) cannot write. */
struct packed {
	uint8_t *buf;
	size_t len;
};

static struct packed pack(const ProtobufCMessage *m)
{
	struct packed p = { .len = protobuf_c_message_get_packed_size(m) };
	p.buf = malloc(p.len ? p.len : 1);
	assert_non_null(p.buf);
	assert_int_equal(protobuf_c_message_pack(m, p.buf), p.len);
	return p;
}

static void put_nul(struct packed *p)
{
	uint8_t *at = memmem(p->buf, p->len, "<0>", 3);
	assert_non_null(at);
	*at = 0;
}

/* The check's verdict on m with its marker turned into a NUL; the message in msg. */
static int check_with_nul(const ProtobufCMessage *m, char *msg, size_t n)
{
	struct packed p = pack(m);
	uk_error err = { 0 };
	put_nul(&p);
	int r = wire_check_strings(m->descriptor, p.buf, p.len, &err);
	snprintf(msg, n, "%s", r < 0 ? err.msg : "");
	free(p.buf);
	return r;
}

static void expect_refused(const ProtobufCMessage *m, const char *want)
{
	char msg[UK_ERROR_MSG_MAX];
	assert_int_equal(check_with_nul(m, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(msg, want);
}

static void expect_clean(const ProtobufCMessage *m)
{
	struct packed p = pack(m);
	uk_error err = { 0 };
	int r = wire_check_strings(m->descriptor, p.buf, p.len, &err);
	free(p.buf);
	if (r != 0)
		fail_msg("refused: %s", err.msg);
}

static void ids(void **state)
{
	(void)state;
	Runtime__V1__ContainerStatusRequest cs = RUNTIME__V1__CONTAINER_STATUS_REQUEST__INIT;
	cs.container_id = "abcdef";
	expect_clean(&cs.base);
	cs.container_id = "abcdef<0>junk";
	expect_refused(&cs.base, "container_id holds a NUL byte");

	/* Why the check exists: unpacked, the id would be cut to the real container's. */
	struct packed p = pack(&cs.base);
	put_nul(&p);
	Runtime__V1__ContainerStatusRequest *u =
		(void *)protobuf_c_message_unpack(&runtime__v1__container_status_request__descriptor, NULL, p.len, p.buf);
	assert_non_null(u);
	assert_string_equal(u->container_id, "abcdef");
	protobuf_c_message_free_unpacked(&u->base, NULL);
	free(p.buf);

	Runtime__V1__RemovePodSandboxRequest rp = RUNTIME__V1__REMOVE_POD_SANDBOX_REQUEST__INIT;
	rp.pod_sandbox_id = "0123<0>x";
	expect_refused(&rp.base, "pod_sandbox_id holds a NUL byte");
	/* A NUL as the very first or last byte. */
	rp.pod_sandbox_id = "<0>";
	expect_refused(&rp.base, "pod_sandbox_id holds a NUL byte");
}

/* One string field of a message set to a bad value, the message expected, then put back. */
struct mutation {
	char **field;
	char *bad;
	const char *want;
};

static void expect_each(const ProtobufCMessage *m, const struct mutation *mu, size_t n)
{
	expect_clean(m);
	for (size_t i = 0; i < n; i++) {
		char *good = *mu[i].field;
		*mu[i].field = mu[i].bad;
		expect_refused(m, mu[i].want);
		*mu[i].field = good;
	}
}

/* A CRI message built from designated fields; unnamed strings stay NULL, which protobuf-c
 * packs as unset, like the empty string. */
#define MSG(type, desc, ...)                                                                       \
	((Runtime__V1__##type){ .base = PROTOBUF_C_MESSAGE_INIT(&runtime__v1__##desc##__descriptor), __VA_ARGS__ })

static void pod_fields(void **state)
{
	(void)state;
	Runtime__V1__PodSandboxMetadata md = MSG(PodSandboxMetadata, pod_sandbox_metadata, .name = "web", .uid = "u1",
						 .namespace_ = "default");
	Runtime__V1__PodSandboxConfig__LabelsEntry
		l0 = MSG(PodSandboxConfig__LabelsEntry, pod_sandbox_config__labels_entry, .key = "app", .value = "web"),
		l1 = MSG(PodSandboxConfig__LabelsEntry, pod_sandbox_config__labels_entry, .key = "k", .value = "v");
	Runtime__V1__PodSandboxConfig__AnnotationsEntry a0 =
		MSG(PodSandboxConfig__AnnotationsEntry, pod_sandbox_config__annotations_entry, .key = "note",
		    .value = "hello");
	Runtime__V1__PodSandboxConfig__LabelsEntry *labels[] = { &l0, &l1 };
	Runtime__V1__PodSandboxConfig__AnnotationsEntry *ann[] = { &a0 };
	Runtime__V1__PodSandboxConfig cfg = MSG(PodSandboxConfig, pod_sandbox_config, .metadata = &md,
						.hostname = "web-0", .log_directory = "/var/log/pods/x", .n_labels = 2,
						.labels = labels, .n_annotations = 1, .annotations = ann);
	Runtime__V1__RunPodSandboxRequest req =
		MSG(RunPodSandboxRequest, run_pod_sandbox_request, .config = &cfg, .runtime_handler = "unikd");
	const struct mutation mu[] = {
		{ &md.name, "we<0>b", "config.metadata.name holds a NUL byte" },
		{ &cfg.hostname, "web<0>evil", "config.hostname holds a NUL byte" },
		{ &l1.value, "v<0>", "config.labels[\"k\"]: value holds a NUL byte" },
		{ &l1.key, "a<0>b", "config.labels[\"a\\x000>b\"]: key holds a NUL byte" },
		{ &a0.value, "x<0>", "config.annotations[\"note\"]: value holds a NUL byte" },
		{ &req.runtime_handler, "un<0>ikd", "runtime_handler holds a NUL byte" },
	};
	expect_each(&req.base, mu, ARRAY_SIZE(mu));
	/* A long key is cut, and quotes and backslashes are escaped. */
	a0.key = "\"quoted\\key\" that is much longer than the part shown";
	a0.value = "<0>";
	expect_refused(&req.base, "config.annotations[\"\\x22quoted\\x5ckey\\x22 that is much longer...\"]: value "
				  "holds a NUL byte");
}

static void container_fields(void **state)
{
	(void)state;
	Runtime__V1__ContainerMetadata md = MSG(ContainerMetadata, container_metadata, .name = "c");
	Runtime__V1__ImageSpec img = MSG(ImageSpec, image_spec, .image = "hello:1");
	Runtime__V1__KeyValue e0 = MSG(KeyValue, key_value, .key = "A", .value = "1"),
			      e1 = MSG(KeyValue, key_value, .key = "B", .value = "2");
	Runtime__V1__KeyValue *envs[] = { &e0, &e1 };
	Runtime__V1__Mount m0 = MSG(Mount, mount, .container_path = "/a", .host_path = "/h/a"),
			   m1 = MSG(Mount, mount, .container_path = "/b", .host_path = "/h/b");
	Runtime__V1__Mount *mounts[] = { &m0, &m1 };
	char *args[] = { "print:a", "print:b", "exit:0" };
	Runtime__V1__ContainerConfig cfg = MSG(ContainerConfig, container_config, .metadata = &md, .image = &img,
					       .n_args = 3, .args = args, .n_envs = 2, .envs = envs, .n_mounts = 2,
					       .mounts = mounts, .log_path = "c/0.log");
	Runtime__V1__PodSandboxMetadata pmd = MSG(PodSandboxMetadata, pod_sandbox_metadata, .name = "pod");
	Runtime__V1__PodSandboxConfig pcfg = MSG(PodSandboxConfig, pod_sandbox_config, .metadata = &pmd);
	Runtime__V1__CreateContainerRequest req = MSG(CreateContainerRequest, create_container_request,
						      .pod_sandbox_id = "p", .config = &cfg, .sandbox_config = &pcfg);
	const struct mutation mu[] = {
		{ &args[2], "exit<0>:0", "config.args[2] holds a NUL byte" },
		{ &e1.value, "<0>2", "config.envs[1].value holds a NUL byte" },
		{ &m1.host_path, "/h<0>/b", "config.mounts[1].host_path holds a NUL byte" },
		{ &img.image, "hello<0>:1", "config.image.image holds a NUL byte" },
		{ &pmd.name, "p<0>od", "sandbox_config.metadata.name holds a NUL byte" },
	};
	expect_each(&req.base, mu, ARRAY_SIZE(mu));

	Runtime__V1__ImageSpec ref = MSG(ImageSpec, image_spec, .image = "127.0.0.1:5000/x<0>:1");
	Runtime__V1__PullImageRequest pull = MSG(PullImageRequest, pull_image_request, .image = &ref);
	expect_refused(&pull.base, "image.image holds a NUL byte");
}

/* Hand-written bytes: a map entry whose value comes before its key; an unknown field and
 * a bytes field may hold NUL bytes. */
static void raw_bytes(void **state)
{
	(void)state;
	uk_error err = { 0 };
	/* PodSandboxConfig: labels (6) = { value (2) = "v\0", key (1) = "k" } */
	static const uint8_t entry[] = { 0x32, 0x07, 0x12, 0x02, 'v', 0x00, 0x0a, 0x01, 'k' };
	assert_int_equal(wire_check_strings(&runtime__v1__pod_sandbox_config__descriptor, entry, sizeof(entry), &err),
			 -EINVAL);
	assert_string_equal(err.msg, "labels[\"k\"]: value holds a NUL byte");
	/* The same entry twice with different keys: the last key is the entry's. */
	static const uint8_t two_keys[] = { 0x32, 0x0a, 0x0a, 0x01, 'a', 0x12, 0x02, 'v', 0x00, 0x0a, 0x01, 'b' };
	assert_int_equal(wire_check_strings(&runtime__v1__pod_sandbox_config__descriptor, two_keys,
					    sizeof(two_keys), &err),
			 -EINVAL);
	assert_string_equal(err.msg, "labels[\"b\"]: value holds a NUL byte");
	/* An unknown field 99 (tag 0x9a 0x06) holding a NUL: skipped, as protobuf-c skips it. */
	static const uint8_t unknown[] = { 0x9a, 0x06, 0x02, 0x00, 0x00, 0x0a, 0x01, 'x' };
	assert_int_equal(wire_check_strings(&runtime__v1__container_status_request__descriptor, unknown,
					    sizeof(unknown), &err),
			 0);
	/* bytes fields are bytes. */
	static const uint8_t bytes_field[] = { 0x0a, 0x03, 'a', 0x00, 'b' };
	assert_int_equal(wire_check_strings(&runtime__v1__exec_sync_response__descriptor, bytes_field,
					    sizeof(bytes_field), &err),
			 0);
	/* An empty message. */
	assert_int_equal(wire_check_strings(&runtime__v1__version_request__descriptor, NULL, 0, &err), 0);
}

static void malformed(void **state)
{
	(void)state;
	static const struct {
		const char *what;
		uint8_t bytes[16];
		size_t n;
		const char *msg;
	} cases[] = {
		{ "cut length", { 0x0a, 0x05, 'a', 'b' }, 4, "malformed message: a length runs past the end" },
		{ "cut tag", { 0x80 }, 1, "malformed message: a field's tag is cut off" },
		{ "field 0", { 0x02, 0x00 }, 2, "malformed message: a field number is 0" },
		{ "tag of six bytes", { 0x82, 0x80, 0x80, 0x80, 0x80, 0x00 }, 6, "malformed message: a field's tag is cut off" },
		{ "group", { 0x0b, 0x0c }, 2, "malformed message: groups and wire types 6 and 7 are not supported" },
		{ "type 7", { 0x0f }, 1, "malformed message: groups and wire types 6 and 7 are not supported" },
		{ "cut fixed64", { 0x11, 1, 2, 3 }, 4, "malformed message: a fixed-size value is cut off" },
		{ "long varint", { 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 }, 12,
		  "malformed message: a varint is cut off" },
		{ "string as varint", { 0x08, 0x01 }, 2, "malformed message: container_id: a string has the wrong wire type" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uk_error err = { 0 };
		int r = wire_check_strings(&runtime__v1__container_status_request__descriptor, cases[i].bytes,
					   cases[i].n, &err);
		if (r != -EINVAL || strcmp(err.msg, cases[i].msg) != 0)
			fail_msg("%s: r=%d\n got  %s\n want %s", cases[i].what, r, err.msg, cases[i].msg);
	}
	/* Nested: the path says where. */
	static const uint8_t nested[] = { 0x0a, 0x05, 0x0a, 0x03, 0x0a, 0x05, 'x' };
	uk_error err = { 0 };
	assert_int_equal(wire_check_strings(&runtime__v1__run_pod_sandbox_request__descriptor, nested,
					    sizeof(nested), &err),
			 -EINVAL);
	assert_string_equal(err.msg, "malformed message: config.metadata: a length runs past the end");
}

/* A message type that contains itself, to reach the depth limit (CRI's types cannot). */
static const ProtobufCMessageDescriptor node_desc;
static const ProtobufCFieldDescriptor node_fields[] = {
	{ "child", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_MESSAGE, 0, 0, &node_desc, NULL, 0, 0, NULL, NULL },
	{ "name", 2, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, 0, 0, NULL, NULL, 0, 0, NULL, NULL },
};
static const unsigned node_by_name[] = { 0, 1 };
static const ProtobufCIntRange node_ranges[] = { { 1, 0 }, { 0, 2 } };
static const ProtobufCMessageDescriptor node_desc = {
	PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC, "t.Node", "Node", "T__Node", "t", 0, 2, node_fields, node_by_name, 1,
	node_ranges, NULL, NULL, NULL, NULL,
};

/* levels nested "child" messages, the innermost holding name = "a\0". */
static size_t nest(uint8_t *buf, size_t cap, unsigned levels)
{
	uint8_t inner[] = { 0x12, 0x02, 'a', 0x00 };
	size_t n = sizeof(inner);
	size_t at = cap - n;
	memcpy(buf + at, inner, n);
	for (unsigned i = 0; i < levels; i++) {
		assert_true(n < 128 && at >= 2);
		buf[--at] = (uint8_t)n;
		buf[--at] = 0x0a;
		n += 2;
	}
	memmove(buf, buf + at, n);
	return n;
}

static void depth(void **state)
{
	(void)state;
	uint8_t buf[256];
	uk_error err = { 0 };
	size_t n = nest(buf, sizeof(buf), WIRE_CHECK_MAX_DEPTH);
	assert_int_equal(wire_check_strings(&node_desc, buf, n, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "child.child.child."));
	assert_non_null(strstr(err.msg, ".name holds a NUL byte"));
	n = nest(buf, sizeof(buf), WIRE_CHECK_MAX_DEPTH + 1);
	assert_int_equal(wire_check_strings(&node_desc, buf, n, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "messages are nested too deeply"));
}

/* A full CreateContainerRequest, packed: the corpus for truncation and mutation. */
static struct packed corpus(void)
{
	Runtime__V1__ContainerMetadata md = MSG(ContainerMetadata, container_metadata, .name = "c", .attempt = 3);
	Runtime__V1__ImageSpec img = MSG(ImageSpec, image_spec, .image = "hello:1");
	Runtime__V1__KeyValue e0 = MSG(KeyValue, key_value, .key = "A", .value = "1");
	Runtime__V1__KeyValue *envs[] = { &e0 };
	Runtime__V1__ContainerConfig__LabelsEntry l0 =
		MSG(ContainerConfig__LabelsEntry, container_config__labels_entry, .key = "app", .value = "web");
	Runtime__V1__ContainerConfig__LabelsEntry *labels[] = { &l0 };
	Runtime__V1__LinuxContainerResources res = MSG(LinuxContainerResources, linux_container_resources,
						       .memory_limit_in_bytes = 1 << 26, .cpu_quota = -5);
	Runtime__V1__LinuxContainerConfig lx = MSG(LinuxContainerConfig, linux_container_config, .resources = &res);
	char *args[] = { "print:hello", "idle" };
	Runtime__V1__ContainerConfig cfg = MSG(ContainerConfig, container_config, .metadata = &md, .image = &img,
					       .n_args = 2, .args = args, .n_envs = 1, .envs = envs, .n_labels = 1,
					       .labels = labels, .linux = &lx, .log_path = "c/3.log");
	Runtime__V1__CreateContainerRequest req = MSG(CreateContainerRequest, create_container_request,
						      .pod_sandbox_id = "0123456789abcdef", .config = &cfg);
	return pack(&req.base);
}

/* protobuf-c allocates each string as its wire length + 1: an allocator that remembers
 * the sizes tells which strings protobuf-c cut at a NUL byte. */
#define TRACKED 4096
static struct {
	void *p;
	size_t n;
} allocs[TRACKED];

static void *track_alloc(void *ud, size_t n)
{
	(void)ud;
	void *p = malloc(n);
	for (size_t i = 0; p && i < TRACKED; i++)
		if (!allocs[i].p) {
			allocs[i].p = p;
			allocs[i].n = n;
			break;
		}
	return p;
}

static void track_free(void *ud, void *p)
{
	(void)ud;
	for (size_t i = 0; p && i < TRACKED; i++)
		if (allocs[i].p == p)
			allocs[i].p = NULL;
	free(p);
}

static ProtobufCAllocator tracker = { track_alloc, track_free, NULL };

static size_t alloc_size(const void *p)
{
	for (size_t i = 0; i < TRACKED; i++)
		if (allocs[i].p == p)
			return allocs[i].n;
	return 0;
}

/* Whether protobuf-c cut a string of m (or of a message in it) short. */
static bool cut_string(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && *(const uint32_t *)(base + f->quantifier_offset) != f->id)
			continue;
		size_t n = 1;
		void *const *items = (void *const *)(base + f->offset);
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			n = *(const size_t *)(base + f->quantifier_offset);
			items = *(void *const *const *)(base + f->offset);
		}
		for (size_t k = 0; k < n; k++) {
			if (!items[k] || items[k] == f->default_value)
				continue;
			if (f->type == PROTOBUF_C_TYPE_MESSAGE && cut_string(items[k]))
				return true;
			size_t sz = f->type == PROTOBUF_C_TYPE_STRING ? alloc_size(items[k]) : 0;
			if (sz && strlen(items[k]) + 1 != sz)
				return true;
		}
	}
	return false;
}

/* The check and protobuf-c agree: whatever protobuf-c unpacks, the check never calls
 * malformed, and it never passes a message whose strings protobuf-c cuts. */
static void agrees_with_protobuf_c(const uint8_t *buf, size_t n, unsigned *cuts)
{
	const ProtobufCMessageDescriptor *d = &runtime__v1__create_container_request__descriptor;
	uk_error err = { 0 };
	int r = wire_check_strings(d, buf, n, &err);
	assert_true(r == 0 || r == -EINVAL);
	ProtobufCMessage *m = protobuf_c_message_unpack(d, &tracker, n, buf);
	if (!m)
		return;
	if (r < 0 && !strstr(err.msg, "holds a NUL byte"))
		fail_msg("protobuf-c unpacks what the check calls %s", err.msg);
	bool cut = cut_string(m);
	*cuts += cut;
	if (cut && r == 0)
		fail_msg("protobuf-c cut a string the check passed");
	protobuf_c_message_free_unpacked(m, &tracker);
}

static void truncations(void **state)
{
	(void)state;
	struct packed p = corpus();
	unsigned cuts = 0;
	for (size_t n = 0; n <= p.len; n++) {
		/* A copy of exactly n bytes, so ASan sees any read past them. */
		uint8_t *cut = malloc(n ? n : 1);
		assert_non_null(cut);
		memcpy(cut, p.buf, n);
		agrees_with_protobuf_c(cut, n, &cuts);
		free(cut);
	}
	uk_error err = { 0 };
	assert_int_equal(wire_check_strings(&runtime__v1__create_container_request__descriptor, p.buf, p.len - 1,
					    &err),
			 -EINVAL);
	free(p.buf);
}

static void mutations(void **state)
{
	(void)state;
	struct packed p = corpus();
	uint8_t *m = malloc(p.len);
	assert_non_null(m);
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	unsigned cuts = 0;
	/* Random bytes, and in every other round NUL bytes, at random places. */
	for (int i = 0; i < 20000; i++) {
		memcpy(m, p.buf, p.len);
		for (int k = 0; k < 1 + i % 4; k++) {
			seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
			m[(seed >> 33) % p.len] = i % 2 ? 0 : (uint8_t)(seed >> 17);
		}
		agrees_with_protobuf_c(m, p.len, &cuts);
	}
	/* The oracle saw many strings protobuf-c would have cut: the check was tested. */
	assert_true(cuts > 1000);
	free(m);
	free(p.buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ids),		cmocka_unit_test(pod_fields), cmocka_unit_test(container_fields),
		cmocka_unit_test(raw_bytes),	cmocka_unit_test(malformed),  cmocka_unit_test(depth),
		cmocka_unit_test(truncations), cmocka_unit_test(mutations),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
