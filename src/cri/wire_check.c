/* A walk over a message's wire bytes that refuses string fields holding a NUL byte
 * (see wire_check.h). Field types come from the protobuf-c descriptor; unknown fields,
 * bytes and scalars are skipped but must still be well formed. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "wire_check.h"

/* Longer field paths are cut: the message is for people. */
#define PATH_LEN 256
/* Repeated fields of the first COUNTED fields of a message get their index counted as
 * the walk goes; later ones (no CRI message has that many) are counted on demand. */
#define COUNTED 64

enum wire_type { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

struct walk {
	uk_error *err;
	char path[PATH_LEN];
	size_t len;
};

struct wire_field {
	uint32_t number;
	unsigned type;
	const uint8_t *data; /* WT_LEN: the payload */
	size_t n;
};

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret)
{
	uint64_t v = 0;
	for (unsigned shift = 0; shift < 64; shift += 7) {
		if (*p >= end)
			return -1;
		uint8_t b = *(*p)++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*ret = v;
			return 0;
		}
	}
	return -1; /* more than ten bytes */
}

/* A field's tag, read exactly as protobuf-c reads it (at most five bytes, the number kept
 * in 32 bits, a first byte without number bits refused), so both see the same field. */
static int read_tag(const uint8_t **p, const uint8_t *end, uint32_t *number, unsigned *type, const char **why)
{
	const uint8_t *q = *p;
	size_t i = 0;
	if ((q[0] & 0xf8) == 0) {
		*why = "a field number is 0";
		return -1;
	}
	uint32_t n = (q[0] & 0x7f) >> 3;
	*type = q[0] & 7;
	for (unsigned shift = 4; q[i] & 0x80; shift += 7) {
		if (++i >= 5 || q + i >= end) {
			*why = "a field's tag is cut off";
			return -1;
		}
		n |= (uint32_t)(q[i] & 0x7f) << shift;
	}
	*p = q + i + 1;
	*number = n;
	return 0;
}

/* The next field of [*p, end): 1, 0 at the end, -1 (with *why) when malformed. */
static int next_field(const uint8_t **p, const uint8_t *end, struct wire_field *f, const char **why)
{
	uint64_t v;
	if (*p == end)
		return 0;
	if (read_tag(p, end, &f->number, &f->type, why) < 0)
		return -1;
	switch (f->type) {
	case WT_VARINT:
		if (read_varint(p, end, &v) < 0) {
			*why = "a varint is cut off";
			return -1;
		}
		return 1;
	case WT_I64:
	case WT_I32: {
		size_t n = f->type == WT_I64 ? 8 : 4;
		if ((size_t)(end - *p) < n) {
			*why = "a fixed-size value is cut off";
			return -1;
		}
		*p += n;
		return 1;
	}
	case WT_LEN:
		if (read_varint(p, end, &v) < 0 || v > (uint64_t)(end - *p)) {
			*why = "a length runs past the end";
			return -1;
		}
		f->data = *p;
		f->n = (size_t)v;
		*p += v;
		return 1;
	default:
		*why = "groups and wire types 6 and 7 are not supported";
		return -1;
	}
}

static void path_add(struct walk *w, const char *fmt, const char *s, long index)
{
	if (w->len >= sizeof(w->path) - 1)
		return;
	int n = snprintf(w->path + w->len, sizeof(w->path) - w->len, fmt, s, index);
	if (n > 0)
		w->len += (size_t)n < sizeof(w->path) - w->len ? (size_t)n : sizeof(w->path) - w->len - 1;
}

/* Append ".name" (or "name" first), and "[index]" when index >= 0; returns the old length. */
static size_t path_push(struct walk *w, const char *name, long index)
{
	size_t saved = w->len;
	path_add(w, w->len ? ".%s" : "%s", name, 0);
	if (index >= 0)
		path_add(w, "%s[%ld]", "", index);
	return saved;
}

/* Append ["key"], the key quoted with \xNN escapes and cut after WIRE_CHECK_KEY_SHOWN bytes. */
static void path_push_key(struct walk *w, const uint8_t *key, size_t n)
{
	char q[WIRE_CHECK_KEY_SHOWN * 4 + 8], *o = q;
	size_t shown = n < WIRE_CHECK_KEY_SHOWN ? n : WIRE_CHECK_KEY_SHOWN;
	for (size_t i = 0; i < shown; i++) {
		if (key[i] >= 0x20 && key[i] < 0x7f && key[i] != '"' && key[i] != '\\')
			*o++ = (char)key[i];
		else
			o += sprintf(o, "\\x%02x", key[i]);
	}
	if (shown < n)
		o += sprintf(o, "...");
	*o = '\0';
	path_add(w, "[\"%s\"]", q, 0);
}

static void path_pop(struct walk *w, size_t saved)
{
	w->len = saved;
	w->path[saved] = '\0';
}

static int malformed(struct walk *w, const char *why)
{
	return uk_err(w->err, EINVAL, "malformed message: %s%s%s", w->path, w->len ? ": " : "", why);
}

/* Index of the field at `at` among the fields numbered `number` of [p, at). */
static long count_before(const uint8_t *p, const uint8_t *at, uint32_t number)
{
	struct wire_field f;
	const char *why;
	long n = 0;
	while (p < at && next_field(&p, at, &f, &why) > 0)
		n += f.number == number;
	return n;
}

/* protoc-c turns map<string, string> into a repeated XxxEntry message of key = 1, value = 2. */
static bool is_map_entry(const ProtobufCFieldDescriptor *fd)
{
	const ProtobufCMessageDescriptor *d = fd->descriptor;
	size_t n = d ? strlen(d->short_name) : 0;
	return fd->label == PROTOBUF_C_LABEL_REPEATED && n > 5 && strcmp(d->short_name + n - 5, "Entry") == 0 &&
	       d->n_fields == 2 && d->fields[0].id == 1 && strcmp(d->fields[0].name, "key") == 0 &&
	       d->fields[1].id == 2 && strcmp(d->fields[1].name, "value") == 0;
}

/* One map entry: the key first (it may come after the value; the last one counts), then
 * both, so the message can say which entry is wrong. */
static int check_entry(struct walk *w, const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n)
{
	const uint8_t *q = p, *end = p + n, *key = (const uint8_t *)"";
	size_t key_n = 0;
	struct wire_field f;
	const char *why;
	int r;
	while ((r = next_field(&q, end, &f, &why)) > 0) {
		if ((f.number == 1 || f.number == 2) && f.type != WT_LEN)
			return malformed(w, f.number == 1 ? "a map key is not a string" : "a map value is not a string");
		if (f.number == 1) {
			key = f.data;
			key_n = f.n;
		}
	}
	if (r < 0)
		return malformed(w, why);
	path_push_key(w, key, key_n);
	if (memchr(key, 0, key_n))
		return uk_err(w->err, EINVAL, "%s: key holds a NUL byte", w->path);
	for (q = p; next_field(&q, end, &f, &why) > 0;)
		if (f.number == 2 && d->fields[1].type == PROTOBUF_C_TYPE_STRING && memchr(f.data, 0, f.n))
			return uk_err(w->err, EINVAL, "%s: value holds a NUL byte", w->path);
	return 0;
}

static int walk_message(struct walk *w, const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n,
			unsigned depth);

/* One string or message field; index >= 0 for an element of a repeated field. */
static int check_field(struct walk *w, const ProtobufCFieldDescriptor *fd, const struct wire_field *f, long index,
		       unsigned depth)
{
	if (f->type != WT_LEN) {
		size_t saved = path_push(w, fd->name, -1);
		int r = malformed(w, fd->type == PROTOBUF_C_TYPE_STRING ? "a string has the wrong wire type"
									: "a message has the wrong wire type");
		path_pop(w, saved);
		return r;
	}
	bool entry = fd->type == PROTOBUF_C_TYPE_MESSAGE && is_map_entry(fd);
	size_t saved = path_push(w, fd->name, entry ? -1 : index);
	int r = 0;
	if (fd->type == PROTOBUF_C_TYPE_STRING) {
		if (memchr(f->data, 0, f->n))
			r = uk_err(w->err, EINVAL, "%s holds a NUL byte", w->path);
	} else if (entry) {
		r = check_entry(w, fd->descriptor, f->data, f->n);
	} else {
		r = walk_message(w, fd->descriptor, f->data, f->n, depth + 1);
	}
	path_pop(w, saved);
	return r;
}

static int walk_message(struct walk *w, const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n,
			unsigned depth)
{
	const uint8_t *q = p, *end = p + n;
	uint32_t counts[COUNTED] = { 0 };
	struct wire_field f;
	const char *why;
	int r;
	if (depth > WIRE_CHECK_MAX_DEPTH)
		return malformed(w, "messages are nested too deeply");
	for (;;) {
		const uint8_t *at = q;
		if ((r = next_field(&q, end, &f, &why)) <= 0)
			break;
		const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(d, f.number);
		if (!fd || (fd->type != PROTOBUF_C_TYPE_STRING && fd->type != PROTOBUF_C_TYPE_MESSAGE))
			continue;
		long index = -1;
		if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t i = (size_t)(fd - d->fields);
			index = i < COUNTED ? (long)counts[i]++ : count_before(p, at, f.number);
		}
		if ((r = check_field(w, fd, &f, index, depth)) < 0)
			return r;
	}
	return r < 0 ? malformed(w, why) : 0;
}

int wire_check_strings(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, uk_error *err)
{
	struct walk w = { .err = err };
	if (len > WIRE_CHECK_MAX_BYTES)
		return uk_err(err, EINVAL, "the message is longer than %u bytes", WIRE_CHECK_MAX_BYTES);
	if (len && !buf)
		return uk_err(err, EINVAL, "malformed message: no bytes");
	return walk_message(&w, d, buf, len, 0);
}
