/* Checks on a request's wire bytes, made before protobuf-c unpacks them.
 *
 * protobuf-c hands string fields over as C strings: a NUL byte inside one would cut it
 * silently, so "<id>\0junk" would act on the container <id>. The walk below finds every
 * string field (nested messages, repeated fields and map keys and values included) from
 * the message's descriptor and refuses one that holds a NUL byte, naming the field.
 * It is pure: no allocation, no I/O, linear in the bytes, nesting bounded. */
#ifndef UK_WIRE_CHECK_H
#define UK_WIRE_CHECK_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"

/* Messages nested deeper than this are refused (CRI requests nest 5 levels). */
#define WIRE_CHECK_MAX_DEPTH 32
/* Longer inputs are refused; the gRPC server's own limit is lower. */
#define WIRE_CHECK_MAX_BYTES (64u * 1024 * 1024)
/* Map keys are quoted in messages up to this many bytes, then cut with "...". */
#define WIRE_CHECK_KEY_SHOWN 32

/* 0 when no string field of the message d in buf[0..len) holds a NUL byte. -EINVAL with
 * err set otherwise: "config.metadata.name holds a NUL byte",
 * "config.labels[\"k\"]: value holds a NUL byte", "config.args[2] holds a NUL byte"; or
 * when the bytes are not a well-formed message of type d ("malformed message: ..."). */
int wire_check_strings(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, uk_error *err);

#endif
