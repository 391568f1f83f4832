/* List items packed ahead of time: see wire_items.h. */
#include <errno.h>
#include <stdlib.h>

#include "wire_items.h"

int wire_item_encode(const ProtobufCMessage *m, uint8_t **out, size_t *len)
{
	size_t n = protobuf_c_message_get_packed_size(m), vlen = 1;
	for (size_t v = n; v >= 0x80; v >>= 7)
		vlen++;
	uint8_t *d = malloc(vlen + n);
	*out = d;
	*len = d ? vlen + n : 0;
	if (!d)
		return -ENOMEM;
	uint8_t *p = d;
	size_t v = n;
	for (; v >= 0x80; v >>= 7)
		*p++ = (uint8_t)((v & 0x7f) | 0x80);
	*p++ = (uint8_t)v;
	protobuf_c_message_pack(m, p);
	return 0;
}

ProtobufCMessageUnknownField wire_item_field(uint32_t field, uint8_t *data, size_t len)
{
	return (ProtobufCMessageUnknownField){
		.tag = field, .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED, .len = len, .data = data
	};
}
