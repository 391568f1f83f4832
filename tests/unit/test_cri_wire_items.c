/* Unit tests for src/cri/wire_items.c: a response whose items are packed ahead of time, as
 * unknown fields, is byte for byte the response with the items in their repeated field, for
 * items whose length takes one, two and three varint bytes, and reads back as those items. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api.pb-c.h"
#include "../../src/cri/wire_items.h"

#define N_ITEMS 5

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(m);
	uint8_t *b = malloc(*len ? *len : 1);
	assert_non_null(b);
	assert_int_equal(protobuf_c_message_pack(m, b), *len);
	return b;
}

static void packed_items_are_the_repeated_field(void **state)
{
	(void)state;
	/* Items of about 60 bytes, 300 (two varint bytes) and 40000 (three), by their runtime
	 * handler's length. */
	static const size_t fill[N_ITEMS] = { 0, 10, 250, 40000, 0 };
	Runtime__V1__PodSandbox items[N_ITEMS];
	Runtime__V1__PodSandboxMetadata md[N_ITEMS];
	Runtime__V1__PodSandbox *ptrs[N_ITEMS];
	char ids[N_ITEMS][16], *handlers[N_ITEMS];
	for (int i = 0; i < N_ITEMS; i++) {
		runtime__v1__pod_sandbox__init(&items[i]);
		runtime__v1__pod_sandbox_metadata__init(&md[i]);
		snprintf(ids[i], sizeof(ids[i]), "pod-%d", i);
		md[i].name = ids[i];
		md[i].uid = "uid";
		md[i].namespace_ = "default";
		md[i].attempt = (uint32_t)i;
		handlers[i] = malloc(fill[i] + 1);
		assert_non_null(handlers[i]);
		memset(handlers[i], 'h', fill[i]);
		handlers[i][fill[i]] = '\0';
		items[i].id = ids[i];
		items[i].metadata = &md[i];
		items[i].state = i % 2 ? RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY
				       : RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY;
		items[i].created_at = 1700000000000000000LL + i;
		items[i].runtime_handler = handlers[i];
		ptrs[i] = &items[i];
	}
	Runtime__V1__ListPodSandboxResponse plain = RUNTIME__V1__LIST_POD_SANDBOX_RESPONSE__INIT;
	plain.items = ptrs;
	plain.n_items = N_ITEMS;
	size_t plain_len;
	uint8_t *plain_bytes = pack(&plain.base, &plain_len);

	Runtime__V1__ListPodSandboxResponse pre = RUNTIME__V1__LIST_POD_SANDBOX_RESPONSE__INIT;
	ProtobufCMessageUnknownField fields[N_ITEMS];
	uint8_t *enc[N_ITEMS];
	for (int i = 0; i < N_ITEMS; i++) {
		size_t n = 0;
		assert_int_equal(wire_item_encode(&items[i].base, &enc[i], &n), 0);
		assert_non_null(enc[i]);
		assert_int_equal(n, 1 + (fill[i] >= 250) + (fill[i] >= 40000) +
					    protobuf_c_message_get_packed_size(&items[i].base));
		fields[i] = wire_item_field(1, enc[i], n);
	}
	pre.base.unknown_fields = fields;
	pre.base.n_unknown_fields = N_ITEMS;
	size_t pre_len;
	uint8_t *pre_bytes = pack(&pre.base, &pre_len);
	assert_int_equal(pre_len, plain_len);
	assert_memory_equal(pre_bytes, plain_bytes, plain_len);

	Runtime__V1__ListPodSandboxResponse *back = runtime__v1__list_pod_sandbox_response__unpack(NULL, pre_len,
												pre_bytes);
	assert_non_null(back);
	assert_int_equal(back->n_items, N_ITEMS);
	assert_int_equal(back->base.n_unknown_fields, 0);
	for (int i = 0; i < N_ITEMS; i++) {
		assert_string_equal(back->items[i]->id, ids[i]);
		assert_int_equal(back->items[i]->metadata->attempt, (uint32_t)i);
		assert_int_equal(back->items[i]->state, items[i].state);
		assert_int_equal(strlen(back->items[i]->runtime_handler), fill[i]);
	}
	runtime__v1__list_pod_sandbox_response__free_unpacked(back, NULL);
	for (int i = 0; i < N_ITEMS; i++) {
		free(enc[i]);
		free(handlers[i]);
	}
	free(plain_bytes);
	free(pre_bytes);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(packed_items_are_the_repeated_field),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
