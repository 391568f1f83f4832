/* List items packed ahead of time (cri_runtime.c's ListPodSandbox and ListContainers).
 *
 * A response can carry an item already packed as an unknown field numbered as its repeated
 * item field: protobuf-c packs an unknown field as its tag and then its data, so with the
 * item's length (a varint) and bytes as that data, the response is on the wire exactly as
 * if the item had been in the repeated field. Pure: no I/O. */
#ifndef UK_WIRE_ITEMS_H
#define UK_WIRE_ITEMS_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* m's length as a varint, then m packed, in a new buffer (*out, malloc'd, *len bytes).
 * 0, or -ENOMEM with *out NULL. */
int wire_item_encode(const ProtobufCMessage *m, uint8_t **out, size_t *len);

/* The unknown field numbered field whose data is data[0..len) (from wire_item_encode). */
ProtobufCMessageUnknownField wire_item_field(uint32_t field, uint8_t *data, size_t len);

#endif
