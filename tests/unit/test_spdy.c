/* Unit tests for the SPDY/3.1 engine: frames recorded from spdystream 0.2.0 (the library
 * kubelet and crictl use; tests/unit/data/spdy/README.md says how they were made), fed whole
 * and split at every byte, and mutated; frames built here byte by byte for each rule and
 * limit; and the engine's own frames checked byte by byte, header blocks inflated with a
 * client's zlib stream. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "../../src/stream/spdy.h"

#ifndef SPDY_DATA_DIR
#define SPDY_DATA_DIR "tests/unit/data/spdy"
#endif

/* ---- a client: frames in, the engine's frames out ---- */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void buf_u32(struct buf *b, uint32_t v)
{
	uint8_t x[4] = { v >> 24, v >> 16, v >> 8, v };
	buf_add(b, x, 4);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

struct client {
	z_stream def, inf;
	uint8_t dict[SPDY_DICTIONARY_LEN];
	struct buf wire; /* what the client sends */
};

static void client_init(struct client *c)
{
	memset(c, 0, sizeof(*c));
	spdy_dictionary(c->dict);
	assert_int_equal(deflateInit(&c->def, Z_BEST_COMPRESSION), Z_OK);
	assert_int_equal(deflateSetDictionary(&c->def, c->dict, SPDY_DICTIONARY_LEN), Z_OK);
	assert_int_equal(inflateInit(&c->inf), Z_OK);
}

static void client_fini(struct client *c)
{
	deflateEnd(&c->def);
	inflateEnd(&c->inf);
	free(c->wire.p);
}

static void compress_block(struct client *c, const struct buf *raw, struct buf *out)
{
	uint8_t tmp[1 << 16];
	c->def.next_in = raw->p;
	c->def.avail_in = (uInt)raw->len;
	do {
		c->def.next_out = tmp;
		c->def.avail_out = sizeof(tmp);
		assert_int_equal(deflate(&c->def, Z_SYNC_FLUSH), Z_OK);
		buf_add(out, tmp, sizeof(tmp) - c->def.avail_out);
	} while (c->def.avail_out == 0);
}

/* An NV block from "name", "value" pairs, NULL-terminated. */
static void nv_block(struct buf *raw, const char *const *kv)
{
	size_t n = 0;
	while (kv[2 * n])
		n++;
	buf_u32(raw, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		buf_u32(raw, (uint32_t)strlen(kv[2 * i]));
		buf_add(raw, kv[2 * i], strlen(kv[2 * i]));
		buf_u32(raw, (uint32_t)strlen(kv[2 * i + 1]));
		buf_add(raw, kv[2 * i + 1], strlen(kv[2 * i + 1]));
	}
}

static void control(struct buf *w, uint16_t type, uint8_t flags, uint32_t len)
{
	buf_u32(w, 0x80000000u | 3u << 16 | type);
	buf_u32(w, (uint32_t)flags << 24 | len);
}

/* SYN_STREAM, or HEADERS when assoc is UINT32_MAX, with a raw (uncompressed) NV block. */
static void syn_raw(struct client *c, uint16_t type, uint32_t id, uint8_t flags, const struct buf *raw)
{
	struct buf z = { 0 };
	compress_block(c, raw, &z);
	size_t fixed = type == SPDY_SYN_STREAM ? 10 : 4;
	control(&c->wire, type, flags, (uint32_t)(fixed + z.len));
	buf_u32(&c->wire, id);
	if (type == SPDY_SYN_STREAM) {
		buf_u32(&c->wire, 0);
		uint8_t prio[2] = { 0, 0 };
		buf_add(&c->wire, prio, 2);
	}
	buf_add(&c->wire, z.p, z.len);
	free(z.p);
}

static void syn(struct client *c, uint32_t id, uint8_t flags, const char *const *kv)
{
	struct buf raw = { 0 };
	nv_block(&raw, kv);
	syn_raw(c, SPDY_SYN_STREAM, id, flags, &raw);
	free(raw.p);
}

static void data(struct client *c, uint32_t id, uint8_t flags, const void *p, size_t n)
{
	buf_u32(&c->wire, id);
	buf_u32(&c->wire, (uint32_t)flags << 24 | (uint32_t)n);
	buf_add(&c->wire, p, n);
}

static void words(struct client *c, uint16_t type, uint32_t a, uint32_t b, int n)
{
	control(&c->wire, type, 0, (uint32_t)(4 * n));
	buf_u32(&c->wire, a);
	if (n > 1)
		buf_u32(&c->wire, b);
}

/* ---- the receiving side: every callback as one line ---- */

struct rec {
	struct buf log;
	struct spdy_session *s;
	bool reply;           /* answer each SYN_STREAM with an empty SYN_REPLY */
	bool free_in_syn;     /* spdy_session_free from inside syn_stream */
	int data_ret;         /* what data returns */
	unsigned syns, datas; /* counts */
};

static void logf_(struct rec *r, const char *fmt, ...) _printf_(2, 3);
static void logf_(struct rec *r, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	buf_add(&r->log, line, (size_t)n);
}

static const char *hget(const struct spdy_headers *h, const char *name)
{
	const char *v = spdy_header_get(h, name);
	return v ? v : "-";
}

static int on_syn(void *ud, uint32_t id, const struct spdy_headers *h, bool fin)
{
	struct rec *r = ud;
	r->syns++;
	logf_(r, "syn %u %s/%s/%s n=%zu fin=%d\n", id, hget(h, "streamtype"), hget(h, "port"), hget(h, "requestid"),
	      h->n, fin);
	if (r->free_in_syn) {
		spdy_session_free(r->s);
		r->s = NULL;
		return 0;
	}
	if (r->reply)
		assert_int_equal(spdy_send_syn_reply(r->s, id, NULL, 0, false, NULL), 0);
	return 0;
}

static int on_data(void *ud, uint32_t id, const uint8_t *p, size_t n, bool fin)
{
	struct rec *r = ud;
	r->datas++;
	logf_(r, "data %u %zu %08lx fin=%d\n", id, n, n ? crc32(0, p, (uInt)n) : 0ul, fin);
	return r->data_ret;
}

static void on_rst(void *ud, uint32_t id, uint32_t status)
{
	logf_(ud, "rst %u %u\n", id, status);
}

static void on_goaway(void *ud, uint32_t last, uint32_t status)
{
	logf_(ud, "goaway %u %u\n", last, status);
}

static const struct spdy_callbacks cbs = { on_syn, on_data, on_rst, on_goaway };

static struct spdy_session *session(struct rec *r, const struct spdy_limits *l)
{
	uk_error err = { 0 };
	assert_int_equal(spdy_session_new(l, &cbs, r, &r->s, &err), 0);
	return r->s;
}

/* A session fed all the client sent, which must be accepted. */
static struct spdy_session *run(struct rec *r, const struct spdy_limits *l, const struct client *c)
{
	struct spdy_session *s = session(r, l);
	uk_error err = { 0 };
	if (spdy_session_input(s, c->wire.p, c->wire.len, &err) != 0)
		fail_msg("input refused: %s", err.msg);
	return s;
}

static const char *log_str(struct rec *r)
{
	buf_add(&r->log, "", 1);
	r->log.len--;
	return (const char *)r->log.p;
}

static void rec_fini(struct rec *r)
{
	spdy_session_free(r->s);
	free(r->log.p);
}

static void read_file(const char *name, struct buf *b)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", SPDY_DATA_DIR, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s (run from the repository's root)", path);
	uint8_t tmp[4096];
	size_t n;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_add(b, tmp, n);
	fclose(f);
}

/* Runs the input as one call, or cut at the given offsets; returns the last result. */
static int feed(struct spdy_session *s, const uint8_t *p, size_t n, size_t cut, uk_error *err)
{
	if (cut == 0 || cut >= n)
		return spdy_session_input(s, p, n, err);
	int r = spdy_session_input(s, p, cut, err);
	if (r < 0)
		return r;
	return spdy_session_input(s, p + cut, n - cut, err);
}

/* The next frame of the engine's output. */
static void out_frame(struct spdy_session *s, struct spdy_frame *f, const uint8_t **payload)
{
	const uint8_t *o;
	size_t n = spdy_session_output(s, &o);
	assert_true(n >= SPDY_FRAME_HEADER);
	spdy_frame_parse(o, f);
	assert_true(n >= SPDY_FRAME_HEADER + f->length);
	*payload = o + SPDY_FRAME_HEADER;
}

static void consume_frame(struct spdy_session *s)
{
	struct spdy_frame f;
	const uint8_t *p;
	out_frame(s, &f, &p);
	spdy_session_consumed(s, SPDY_FRAME_HEADER + f.length);
}

static void expect_output(struct spdy_session *s, const uint8_t *want, size_t n)
{
	const uint8_t *o;
	size_t have = spdy_session_output(s, &o);
	assert_int_equal(have, n);
	assert_memory_equal(o, want, n);
	spdy_session_consumed(s, n);
}

static void expect_rst(struct spdy_session *s, uint32_t id, uint32_t status)
{
	const uint8_t want[] = { 0x80, 3, 0, 3, 0, 0, 0, 8, id >> 24, id >> 16, id >> 8, id,
				 status >> 24, status >> 16, status >> 8, status };
	const uint8_t *o;
	assert_true(spdy_session_output(s, &o) >= sizeof(want));
	assert_memory_equal(o, want, sizeof(want));
	spdy_session_consumed(s, sizeof(want));
}

static void expect_goaway(struct spdy_session *s, uint32_t last, uint32_t status)
{
	const uint8_t want[] = { 0x80, 3, 0, 7, 0, 0, 0, 8, last >> 24, last >> 16, last >> 8, last,
				 status >> 24, status >> 16, status >> 8, status };
	expect_output(s, want, sizeof(want));
}

/* ---- the dictionary and the frame header ---- */

static void test_dictionary(void **state)
{
	(void)state;
	uint8_t d[SPDY_DICTIONARY_LEN];
	spdy_dictionary(d);
	/* The checksum zlib puts in a stream that uses the spec's dictionary. */
	assert_int_equal(adler32(1, d, SPDY_DICTIONARY_LEN), 0xe3c6a7c2);
	assert_memory_equal(d, "\0\0\0\x07options\0\0\0\x04head", 15);
	assert_memory_equal(d + SPDY_DICTIONARY_LEN - 4, "q=0.", 4);
}

static void test_frame_parse(void **state)
{
	(void)state;
	struct spdy_frame f;
	spdy_frame_parse((const uint8_t[]){ 0x80, 0x03, 0x00, 0x01, 0x01, 0x00, 0x01, 0x02 }, &f);
	assert_true(f.control);
	assert_int_equal(f.version, 3);
	assert_int_equal(f.type, SPDY_SYN_STREAM);
	assert_int_equal(f.flags, SPDY_FLAG_FIN);
	assert_int_equal(f.length, 258);
	spdy_frame_parse((const uint8_t[]){ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, &f);
	assert_true(f.control);
	assert_int_equal(f.version, 0x7fff);
	assert_int_equal(f.type, 0xffff);
	assert_int_equal(f.flags, 0xff);
	assert_int_equal(f.length, 0xffffff);
	spdy_frame_parse((const uint8_t[]){ 0x7f, 0xff, 0xff, 0xfd, 0x00, 0x00, 0x00, 0x00 }, &f);
	assert_false(f.control);
	assert_int_equal(f.stream_id, 0x7ffffffd);
	assert_int_equal(f.length, 0);
}

static void test_limits_checked(void **state)
{
	(void)state;
	struct spdy_session *s = NULL;
	uk_error err = { 0 };
	struct spdy_limits l = SPDY_DEFAULT_LIMITS;
	l.max_output = l.max_frame;
	assert_int_equal(spdy_session_new(&l, &cbs, NULL, &s, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "max_output"));
	l = SPDY_DEFAULT_LIMITS;
	l.max_streams = 0;
	assert_int_equal(spdy_session_new(&l, &cbs, NULL, &s, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "max_streams"));
	l = SPDY_DEFAULT_LIMITS;
	l.max_frame = 1u << 24;
	assert_int_equal(spdy_session_new(&l, &cbs, NULL, &s, &err), -EINVAL);
	assert_null(s);
	assert_int_equal(spdy_session_new(NULL, NULL, NULL, &s, &err), 0); /* defaults, no callbacks */
	spdy_session_free(s);
	spdy_session_free(NULL);
}

/* ---- recorded sessions ---- */


/* Feeds a recorded session whole, then cut at every offset; the callbacks must see the same
 * thing each time and the engine must answer the same bytes. */
static void replay(const char *file, const char *want, unsigned want_syns)
{
	struct buf in = { 0 };
	read_file(file, &in);
	char *whole_log = NULL;
	struct buf whole_out = { 0 };
	for (size_t cut = 0; cut < in.len; cut++) {
		struct rec r = { .reply = true };
		struct spdy_session *s = session(&r, NULL);
		uk_error err = { 0 };
		int ret = feed(s, in.p, in.len, cut, &err);
		if (ret < 0)
			fail_msg("%s cut at %zu: %s", file, cut, err.msg);
		assert_int_equal(r.syns, want_syns);
		const uint8_t *o;
		size_t on = spdy_session_output(s, &o);
		if (!whole_log) {
			whole_log = strdup(log_str(&r));
			buf_add(&whole_out, o, on);
			assert_string_equal(whole_log, want);
			/* The client said GOAWAY at the end of each recording. */
			assert_true(spdy_session_going_away(s));
		} else {
			assert_string_equal(log_str(&r), whole_log);
			assert_int_equal(on, whole_out.len);
			assert_memory_equal(o, whole_out.p, on);
		}
		rec_fini(&r);
	}
	free(whole_log);
	free(whole_out.p);
	free(in.p);
}

static void test_recorded_portforward(void **state)
{
	(void)state;
	/* kubectl port-forward's pair: the error stream, which the client closes at once, and
	 * the data stream: a request, 40000 bytes more, the client's FIN; then GOAWAY. */
	replay("portforward.bin",
	       "syn 1 error/8080/0 n=3 fin=0\n"
	       "data 1 0 00000000 fin=1\n"
	       "syn 3 data/8080/0 n=3 fin=0\n"
	       "data 3 29 e46023a2 fin=0\n"
	       "data 3 40000 e6a94479 fin=0\n"
	       "data 3 0 00000000 fin=1\n"
	       "goaway 0 0\n",
	       2);
}

static void test_recorded_attach(void **state)
{
	(void)state;
	replay("attach.bin", "syn 1 error/-/- n=1 fin=0\n"
			     "data 1 0 00000000 fin=1\n"
			     "syn 3 stdin/-/- n=1 fin=0\n"
			     "syn 5 stdout/-/- n=1 fin=0\n"
			     "data 5 0 00000000 fin=1\n"
			     "syn 7 resize/-/- n=1 fin=0\n"
			     "data 3 6 363a3020 fin=0\n" /* "hello\n" */
			     "data 3 17 88a9f039 fin=0\n"
			     "data 3 0 00000000 fin=1\n"
			     "goaway 0 0\n",
	       4);
}

static void test_recorded_pings(void **state)
{
	(void)state;
	struct buf in = { 0 };
	read_file("pings.bin", &in);
	struct rec r = { 0 };
	struct spdy_session *s = session(&r, NULL);
	assert_int_equal(spdy_session_input(s, in.p, in.len, NULL), 0);
	/* Five pings, odd ids 1..9, echoed as they came. */
	for (uint32_t id = 1; id <= 9; id += 2) {
		const uint8_t want[] = { 0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, id };
		const uint8_t *o;
		assert_true(spdy_session_output(s, &o) >= sizeof(want));
		assert_memory_equal(o, want, sizeof(want));
		spdy_session_consumed(s, sizeof(want));
	}
	const uint8_t *o;
	assert_int_equal(spdy_session_output(s, &o), 0);
	assert_string_equal(log_str(&r), "goaway 0 0\n");
	rec_fini(&r);
	free(in.p);
}

static void test_recorded_reset(void **state)
{
	(void)state;
	replay("reset.bin", "syn 1 data/80/7 n=4 fin=0\n"
			    "data 1 7 aa07d0f4 fin=0\n"
			    "rst 1 5\n"
			    "syn 3 error/80/8 n=3 fin=1\n"
			    "goaway 0 0\n",
	       2);
	struct buf in = { 0 };
	read_file("reset.bin", &in);
	struct rec r = { .reply = true };
	struct spdy_session *s = session(&r, NULL);
	assert_int_equal(spdy_session_input(s, in.p, in.len, NULL), 0);
	/* Reset() sent CANCEL (5): stream 1 is gone; 3 came half-closed and waits for our side
	 * only. */
	assert_int_equal(spdy_session_streams(s), 1);
	assert_int_equal(spdy_send_data(s, 1, "x", 1, false, NULL), -ENOENT);
	assert_int_equal(spdy_send_data(s, 3, NULL, 0, true, NULL), 0);
	assert_int_equal(spdy_session_streams(s), 0);
	rec_fini(&r);
	free(in.p);
}

/* Every recorded byte flipped, one at a time, and every truncation: no crash, no leak, no
 * read past a buffer (ASan), and a truncation is never an error. */
static void test_recorded_mutations(void **state)
{
	(void)state;
	const char *files[] = { "attach.bin", "reset.bin", "pings.bin" };
	for (size_t fi = 0; fi < 3; fi++) {
		struct buf in = { 0 };
		read_file(files[fi], &in);
		for (size_t i = 0; i < in.len; i++) {
			for (int k = 0; k < 3; k++) {
				static const uint8_t masks[] = { 0x01, 0x80, 0xff };
				struct rec r = { .reply = true };
				struct spdy_session *s = session(&r, NULL);
				in.p[i] ^= masks[k];
				uk_error err = { 0 };
				int ret = spdy_session_input(s, in.p, in.len, &err);
				in.p[i] ^= masks[k];
				assert_true(ret == 0 || ret == -EPROTO);
				if (ret == -EPROTO)
					assert_non_null(strstr(err.msg, "spdy protocol error"));
				rec_fini(&r);
			}
			struct rec r = { .reply = true };
			struct spdy_session *s = session(&r, NULL);
			assert_int_equal(spdy_session_input(s, in.p, i, NULL), 0);
			rec_fini(&r);
		}
		free(in.p);
	}
}

/* ---- frames built here ---- */

static const char *const pf_error[] = { "streamtype", "error", "port", "80", "requestid", "1", NULL };
static const char *const pf_data[] = { "streamtype", "data", "port", "80", "requestid", "1", NULL };

static void test_syn_reply_and_data_bytes(void **state)
{
	(void)state;
	struct client c;
	client_init(&c);
	syn(&c, 1, 0, pf_error);
	syn(&c, 3, 0, pf_data);
	struct rec r = { 0 };
	struct spdy_session *s = run(&r, NULL, &c);
	assert_string_equal(log_str(&r), "syn 1 error/80/1 n=3 fin=0\nsyn 3 data/80/1 n=3 fin=0\n");
	assert_int_equal(spdy_session_streams(s), 2);

	/* Two replies; the second only inflates if the zlib stream carried on from the first. */
	for (uint32_t id = 1; id <= 3; id += 2) {
		const struct spdy_header h[] = { { "status", "200", 0 }, { "multi", "a\0b", 3 } };
		assert_int_equal(spdy_send_syn_reply(s, id, h, 2, false, NULL), 0);
		struct spdy_frame f;
		const uint8_t *p;
		out_frame(s, &f, &p);
		assert_true(f.control);
		assert_int_equal(f.version, 3);
		assert_int_equal(f.type, SPDY_SYN_REPLY);
		assert_int_equal(f.flags, 0);
		assert_int_equal(rd32(p), id);
		uint8_t raw[256];
		c.inf.next_in = (Bytef *)p + 4;
		c.inf.avail_in = f.length - 4;
		c.inf.next_out = raw;
		c.inf.avail_out = sizeof(raw);
		int z = inflate(&c.inf, Z_SYNC_FLUSH);
		if (z == Z_NEED_DICT) {
			assert_int_equal(inflateSetDictionary(&c.inf, c.dict, SPDY_DICTIONARY_LEN), Z_OK);
			z = inflate(&c.inf, Z_SYNC_FLUSH);
		}
		assert_int_equal(z, Z_OK);
		assert_int_equal(c.inf.avail_in, 0);
		static const uint8_t want[] = "\0\0\0\x02"
					      "\0\0\0\x06status\0\0\0\x03"
					      "200"
					      "\0\0\0\x05multi\0\0\0\x03"
					      "a\0b";
		assert_int_equal(sizeof(raw) - c.inf.avail_out, sizeof(want) - 1);
		assert_memory_equal(raw, want, sizeof(want) - 1);
		spdy_session_consumed(s, SPDY_FRAME_HEADER + f.length);
	}
	assert_int_equal(spdy_send_syn_reply(s, 1, NULL, 0, false, NULL), -EINVAL); /* twice */

	assert_int_equal(spdy_send_data(s, 3, "hello", 5, false, NULL), 0);
	assert_int_equal(spdy_send_data(s, 3, NULL, 0, true, NULL), 0);
	static const uint8_t want[] = { 0, 0, 0, 3, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o', 0, 0, 0, 3, 1, 0, 0, 0 };
	expect_output(s, want, sizeof(want));
	assert_int_equal(spdy_send_data(s, 3, "x", 1, false, NULL), -ENOENT); /* our side is closed */
	assert_int_equal(spdy_session_streams(s), 2);                        /* the client's is not */

	/* The client half-closes 3: it is closed both ways and forgotten. */
	client_fini(&c);
	client_init(&c);
	data(&c, 3, SPDY_FLAG_FIN, "bye", 3);
	assert_int_equal(spdy_session_input(s, c.wire.p, c.wire.len, NULL), 0);
	assert_int_equal(spdy_session_streams(s), 1);

	assert_int_equal(spdy_send_rst(s, 1, SPDY_CANCEL, NULL), 0);
	expect_rst(s, 1, SPDY_CANCEL);
	assert_int_equal(spdy_session_streams(s), 0);
	assert_int_equal(spdy_send_rst(s, 1, SPDY_CANCEL, NULL), -ENOENT);
	assert_int_equal(spdy_send_goaway(s, SPDY_GOAWAY_OK, NULL), 0);
	expect_goaway(s, 3, SPDY_GOAWAY_OK);
	assert_int_equal(spdy_send_goaway(s, SPDY_GOAWAY_OK, NULL), 0); /* once */
	const uint8_t *o;
	assert_int_equal(spdy_session_output(s, &o), 0);
	assert_true(spdy_session_going_away(s));
	rec_fini(&r);
	client_fini(&c);
}

static void test_send_errors(void **state)
{
	(void)state;
	struct client c;
	client_init(&c);
	syn(&c, 1, 0, pf_data);
	struct spdy_limits l = SPDY_DEFAULT_LIMITS;
	l.max_frame = 1024;
	l.max_output = 4096;
	struct rec r = { 0 };
	struct spdy_session *s = run(&r, &l, &c);
	uk_error err = { 0 };
	assert_int_equal(spdy_send_data(s, 1, "x", 1, false, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "before SYN_REPLY"));
	assert_int_equal(spdy_send_syn_reply(s, 2, NULL, 0, false, &err), -ENOENT);
	const struct spdy_header upper[] = { { "Status", "200", 0 } };
	assert_int_equal(spdy_send_syn_reply(s, 1, upper, 1, false, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "'Status'"));
	const uint8_t *o;
	assert_int_equal(spdy_session_output(s, &o), 0); /* nothing went out, zlib untouched */
	assert_int_equal(spdy_send_syn_reply(s, 1, NULL, 0, false, NULL), 0);
	consume_frame(s);

	/* Data is split at max_frame, all or nothing within max_output. */
	static uint8_t big[4096];
	memset(big, 'z', sizeof(big));
	assert_int_equal(spdy_send_data(s, 1, big, 2500, false, NULL), 0);
	size_t lens[] = { 1024, 1024, 452 };
	for (int i = 0; i < 3; i++) {
		struct spdy_frame f;
		const uint8_t *p;
		out_frame(s, &f, &p);
		assert_false(f.control);
		assert_int_equal(f.stream_id, 1);
		assert_int_equal(f.length, lens[i]);
		assert_int_equal(f.flags, 0);
		spdy_session_consumed(s, SPDY_FRAME_HEADER + f.length);
	}
	assert_int_equal(spdy_send_data(s, 1, big, 3000, false, NULL), 0);
	assert_int_equal(spdy_send_data(s, 1, big, 1100, false, &err), -ENOBUFS);
	assert_non_null(strstr(err.msg, "max_output"));
	assert_int_equal(spdy_session_output(s, &o), 3000 + 3 * SPDY_FRAME_HEADER);
	spdy_session_consumed(s, 1000);
	assert_int_equal(spdy_send_data(s, 1, big, 900, false, NULL), 0); /* room again */
	spdy_session_consumed(s, SIZE_MAX);
	assert_int_equal(spdy_session_output(s, &o), 0);
	rec_fini(&r);
	client_fini(&c);
}

/* The client's half-close first, then ours: forgotten when both are closed. */
static void test_half_close(void **state)
{
	(void)state;
	struct client c;
	client_init(&c);
	syn(&c, 1, SPDY_FLAG_FIN, pf_error);
	syn(&c, 3, 0, pf_data);
	data(&c, 3, 0, "abc", 3);
	data(&c, 3, SPDY_FLAG_FIN, NULL, 0);
	data(&c, 3, 0, "late", 4); /* after the client's FIN: STREAM_ALREADY_CLOSED */
	struct rec r = { .reply = true };
	struct spdy_session *s = run(&r, NULL, &c);
	assert_string_equal(log_str(&r), "syn 1 error/80/1 n=3 fin=1\n"
					 "syn 3 data/80/1 n=3 fin=0\n"
					 "data 3 3 352441c2 fin=0\n"
					 "data 3 0 00000000 fin=1\n"
					 "rst 3 9\n");
	consume_frame(s); /* SYN_REPLY 1 */
	consume_frame(s); /* SYN_REPLY 3 */
	expect_rst(s, 3, SPDY_STREAM_ALREADY_CLOSED);
	assert_int_equal(spdy_session_streams(s), 1);
	assert_int_equal(spdy_send_syn_reply(s, 1, NULL, 0, true, NULL), -EINVAL); /* replied already */
	assert_int_equal(spdy_send_data(s, 1, "err", 3, true, NULL), 0);
	assert_int_equal(spdy_session_streams(s), 0);
	rec_fini(&r);
	client_fini(&c);
}

static void test_stream_rules(void **state)
{
	(void)state;
	struct client c;
	client_init(&c);
	syn(&c, 1, 0, pf_data);
	data(&c, 7, 0, "x", 1);               /* never opened: INVALID_STREAM */
	data(&c, 2, 0, "x", 1);               /* even: ours, and we open none */
	words(&c, SPDY_RST_STREAM, 9, 1, 2);  /* unknown: nothing to do */
	words(&c, SPDY_SETTINGS, 0, 0, 1);    /* ignored */
	words(&c, SPDY_WINDOW_UPDATE, 1, 1000, 2);
	words(&c, 10, 0, 0, 1);               /* CREDENTIAL, unknown here: ignored */
	words(&c, SPDY_PING, 2, 0, 1);        /* even: an answer to a ping we never sent */
	syn(&c, 3, SPDY_FLAG_UNIDIRECTIONAL, pf_data);
	words(&c, SPDY_RST_STREAM, 1, SPDY_CANCEL, 2);
	data(&c, 1, 0, "after reset", 11);    /* in flight when the client reset it: dropped */
	struct rec r = { 0 };
	struct spdy_session *s = run(&r, NULL, &c);
	assert_string_equal(log_str(&r), "syn 1 data/80/1 n=3 fin=0\nrst 1 5\n");
	expect_rst(s, 7, SPDY_INVALID_STREAM);
	expect_rst(s, 2, SPDY_INVALID_STREAM);
	expect_rst(s, 3, SPDY_REFUSED_STREAM);
	const uint8_t *o;
	assert_int_equal(spdy_session_output(s, &o), 0);
	assert_int_equal(spdy_session_streams(s), 0);
	rec_fini(&r);
	client_fini(&c);
}

/* HEADERS is inflated (the zlib stream stays in step) and ignored, but its FIN counts. */
static void test_headers_frame(void **state)
{
	(void)state;
	struct client c;
	client_init(&c);
	syn(&c, 1, 0, pf_data);
	struct buf raw = { 0 };
	nv_block(&raw, (const char *const[]){ "late", "header", NULL });
	syn_raw(&c, SPDY_HEADERS, 1, SPDY_FLAG_FIN, &raw);
	free(raw.p);
	syn(&c, 3, 0, pf_error);
	struct rec r = { 0 };
	run(&r, NULL, &c);
	assert_string_equal(log_str(&r), "syn 1 data/80/1 n=3 fin=0\ndata 1 0 00000000 fin=1\nsyn 3 error/80/1 n=3 fin=0\n");
	rec_fini(&r);
	client_fini(&c);
}

/* Input that must end the session: -EPROTO, a message naming what, and a GOAWAY
 * PROTOCOL_ERROR carrying the last stream id seen. */
static void expect_session_error(const struct buf *wire, const struct spdy_limits *l, const char *msg,
				 uint32_t last)
{
	struct rec r = { .reply = true };
	struct spdy_session *s = session(&r, l);
	uk_error err = { 0 };
	assert_int_equal(spdy_session_input(s, wire->p, wire->len, &err), -EPROTO);
	if (!strstr(err.msg, msg))
		fail_msg("'%s' does not say '%s'", err.msg, msg);
	const uint8_t *o;
	size_t n = spdy_session_output(s, &o);
	assert_true(n >= 16);
	spdy_session_consumed(s, n - 16);
	expect_goaway(s, last, SPDY_GOAWAY_PROTOCOL_ERROR);
	/* Over: more input is refused, sends too. */
	assert_int_equal(spdy_session_input(s, (const uint8_t *)"", 0, NULL), -EPROTO);
	assert_int_equal(spdy_send_goaway(s, 0, NULL), -EPIPE);
	rec_fini(&r);
}

static void test_session_errors(void **state)
{
	(void)state;
	struct client c;
	struct buf raw = { 0 };

	client_init(&c);
	words(&c, SPDY_PING, 1, 0, 1);
	c.wire.p[1] = 2; /* version 2 */
	expect_session_error(&c.wire, NULL, "version 2", 0);
	client_fini(&c);

	client_init(&c);
	syn(&c, 2, 0, pf_data);
	expect_session_error(&c.wire, NULL, "stream id 2 is not odd", 0);
	client_fini(&c);

	client_init(&c);
	syn(&c, 5, 0, pf_data);
	syn(&c, 3, 0, pf_data);
	expect_session_error(&c.wire, NULL, "stream id 3 does not increase", 5);
	client_fini(&c);

	client_init(&c);
	syn(&c, 1, 0, (const char *const[]){ "streamType", "data", NULL });
	expect_session_error(&c.wire, NULL, "name 'streamType' is not lowercase", 0);
	client_fini(&c);

	client_init(&c);
	syn(&c, 1, 0, (const char *const[]){ "port", "1", "port", "2", NULL });
	expect_session_error(&c.wire, NULL, "'port' appears twice", 0);
	client_fini(&c);

	client_init(&c);
	syn(&c, 1, 0, (const char *const[]){ "", "x", NULL });
	expect_session_error(&c.wire, NULL, "empty name", 0);
	client_fini(&c);

	/* NV counts and lengths that overflow. */
	client_init(&c);
	raw.len = 0;
	buf_u32(&raw, 0xffffffffu);
	syn_raw(&c, SPDY_SYN_STREAM, 1, 0, &raw);
	expect_session_error(&c.wire, NULL, "4294967295 headers, over 64 (max_headers)", 0);
	client_fini(&c);

	client_init(&c);
	raw.len = 0;
	buf_u32(&raw, 1);
	buf_u32(&raw, 0xfffffff0u);
	buf_add(&raw, "abcd", 4);
	syn_raw(&c, SPDY_SYN_STREAM, 1, 0, &raw);
	expect_session_error(&c.wire, NULL, "header 0: name length passes the block", 0);
	client_fini(&c);

	client_init(&c);
	raw.len = 0;
	buf_u32(&raw, 1);
	buf_u32(&raw, 1);
	buf_add(&raw, "a", 1);
	buf_u32(&raw, 0xffffffffu);
	syn_raw(&c, SPDY_SYN_STREAM, 1, 0, &raw);
	expect_session_error(&c.wire, NULL, "header 0: value length passes the block", 0);
	client_fini(&c);

	client_init(&c);
	raw.len = 0;
	nv_block(&raw, pf_data);
	buf_add(&raw, "junk", 4);
	syn_raw(&c, SPDY_SYN_STREAM, 1, 0, &raw);
	expect_session_error(&c.wire, NULL, "4 bytes after the last header", 0);
	client_fini(&c);

	client_init(&c);
	raw.len = 0;
	buf_add(&raw, "\0\0", 2);
	syn_raw(&c, SPDY_SYN_STREAM, 1, 0, &raw);
	expect_session_error(&c.wire, NULL, "has no count", 0);
	client_fini(&c);
	free(raw.p);

	/* A header block compressed without the dictionary: not in step with ours. */
	client_init(&c);
	control(&c.wire, SPDY_SYN_STREAM, 0, 10 + 6);
	buf_u32(&c.wire, 1);
	buf_u32(&c.wire, 0);
	buf_add(&c.wire, "\0\0garbag", 8);
	expect_session_error(&c.wire, NULL, "SYN_STREAM header block: zlib", 0);
	client_fini(&c);

	client_init(&c);
	control(&c.wire, SPDY_SYN_STREAM, 0, 9);
	buf_add(&c.wire, "123456789", 9);
	expect_session_error(&c.wire, NULL, "shorter than 10", 0);
	client_fini(&c);

	client_init(&c);
	data(&c, 0, 0, "x", 1);
	expect_session_error(&c.wire, NULL, "DATA frame on stream 0", 0);
	client_fini(&c);

	client_init(&c);
	words(&c, SPDY_PING, 1, 0, 2);
	expect_session_error(&c.wire, NULL, "PING of 8 bytes", 0);
	client_fini(&c);

	client_init(&c);
	words(&c, SPDY_RST_STREAM, 1, 0, 1);
	expect_session_error(&c.wire, NULL, "RST_STREAM of 4 bytes", 0);
	client_fini(&c);

	client_init(&c);
	words(&c, SPDY_WINDOW_UPDATE, 1, 0, 1);
	expect_session_error(&c.wire, NULL, "WINDOW_UPDATE of 4 bytes", 0);
	client_fini(&c);

	client_init(&c);
	control(&c.wire, SPDY_GOAWAY, 0, 12);
	buf_add(&c.wire, "123456789012", 12);
	expect_session_error(&c.wire, NULL, "GOAWAY of 12 bytes", 0);
	client_fini(&c);

	client_init(&c);
	control(&c.wire, SPDY_HEADERS, 0, 2);
	buf_add(&c.wire, "12", 2);
	expect_session_error(&c.wire, NULL, "HEADERS of 2 bytes", 0);
	client_fini(&c);

	client_init(&c);
	control(&c.wire, SPDY_SYN_REPLY, 0, 4);
	buf_u32(&c.wire, 1);
	expect_session_error(&c.wire, NULL, "SYN_REPLY from the client", 0);
	client_fini(&c);
}

/* A frame over max_frame fails on its 8-byte header, before its payload is waited for. */
static void test_oversized_frames(void **state)
{
	(void)state;
	struct spdy_limits l = SPDY_DEFAULT_LIMITS;
	l.max_frame = 1000;
	struct buf w = { 0 };
	buf_u32(&w, 1);
	buf_u32(&w, 1001);
	expect_session_error(&w, &l, "DATA frame of 1001 bytes is over 1000 (max_frame)", 0);
	w.len = 0;
	control(&w, SPDY_SYN_STREAM, 0, 0xffffff);
	expect_session_error(&w, &l, "control frame of 16777215 bytes is over 1000 (max_frame)", 0);

	/* max_frame itself is fine, split anywhere. */
	struct client c;
	client_init(&c);
	syn(&c, 1, 0, pf_data);
	static uint8_t payload[1000];
	memset(payload, 7, sizeof(payload));
	data(&c, 1, SPDY_FLAG_FIN, payload, sizeof(payload));
	for (size_t cut = 1; cut < c.wire.len; cut += 97) {
		struct rec r = { 0 };
		struct spdy_session *s = session(&r, &l);
		assert_int_equal(feed(s, c.wire.p, c.wire.len, cut, NULL), 0);
		assert_int_equal(r.datas, 1);
		rec_fini(&r);
	}
	client_fini(&c);
	free(w.p);
}

/* A zlib bomb: a small frame whose block inflates past max_header_block. The engine never
 * writes more than the limit (ASan would see it) and names the limit. */
static void test_inflate_bomb(void **state)
{
	(void)state;
	struct spdy_limits l = SPDY_DEFAULT_LIMITS;
	l.max_header_block = 1024;
	for (size_t vlen = 1024 - 4 - 8 - 1 - 2; vlen <= 1024 - 4 - 8 - 1 + 2; vlen++) {
		struct client c;
		client_init(&c);
		struct buf raw = { 0 };
		buf_u32(&raw, 1);
		buf_u32(&raw, 1);
		buf_add(&raw, "a", 1);
		buf_u32(&raw, (uint32_t)vlen);
		for (size_t i = 0; i < vlen; i++)
			buf_add(&raw, "b", 1);
		syn_raw(&c, SPDY_SYN_STREAM, 1, 0, &raw);
		if (raw.len <= 1024) {
			struct rec r = { 0 };
			session(&r, &l);
			assert_int_equal(spdy_session_input(r.s, c.wire.p, c.wire.len, NULL), 0);
			assert_int_equal(r.syns, 1);
			rec_fini(&r);
		} else {
			expect_session_error(&c.wire, &l, "inflates past 1024 bytes (max_header_block)", 0);
		}
		free(raw.p);
		client_fini(&c);
	}
	/* 16 MiB of zeros in a frame of a few kilobytes. */
	struct client c;
	client_init(&c);
	struct buf raw = { 0 };
	buf_u32(&raw, 1);
	buf_u32(&raw, 1);
	buf_add(&raw, "a", 1);
	buf_u32(&raw, 16u << 20);
	uint8_t *zeros = calloc(1, 16u << 20);
	assert_non_null(zeros);
	buf_add(&raw, zeros, 16u << 20);
	free(zeros);
	syn_raw(&c, SPDY_SYN_STREAM, 1, 0, &raw);
	assert_true(c.wire.len < 64 * 1024);
	expect_session_error(&c.wire, NULL, "inflates past 65536 bytes (max_header_block)", 0);
	free(raw.p);
	client_fini(&c);
}

/* More streams than max_streams: the rest are refused, the session goes on. */
static void test_stream_flood(void **state)
{
	(void)state;
	struct spdy_limits l = SPDY_DEFAULT_LIMITS;
	l.max_streams = 4;
	struct client c;
	client_init(&c);
	for (uint32_t id = 1; id <= 2 * 100 - 1; id += 2)
		syn(&c, id, 0, pf_data);
	struct rec r = { .reply = true };
	struct spdy_session *s = run(&r, &l, &c);
	assert_int_equal(r.syns, 4);
	assert_int_equal(spdy_session_streams(s), 4);
	for (int i = 0; i < 4; i++)
		consume_frame(s);
	for (uint32_t id = 9; id <= 199; id += 2)
		expect_rst(s, id, SPDY_REFUSED_STREAM);
	/* Closing one makes room for the next. */
	assert_int_equal(spdy_send_rst(s, 3, SPDY_CANCEL, NULL), 0);
	expect_rst(s, 3, SPDY_CANCEL);
	assert_int_equal(spdy_session_streams(s), 3);
	rec_fini(&r);
	client_fini(&c);

	/* In one session, the next stream after a close is accepted. */
	client_init(&c);
	for (uint32_t id = 1; id <= 9; id += 2)
		syn(&c, id, SPDY_FLAG_FIN, pf_data);
	r = (struct rec){ 0 };
	s = session(&r, &l);
	assert_int_equal(spdy_session_input(s, c.wire.p, c.wire.len, NULL), 0);
	assert_int_equal(r.syns, 4);
	expect_rst(s, 9, SPDY_REFUSED_STREAM);
	size_t mark = c.wire.len;
	syn(&c, 11, 0, pf_data);
	assert_int_equal(spdy_send_syn_reply(s, 1, NULL, 0, true, NULL), 0); /* 1 is done */
	assert_int_equal(spdy_session_input(s, c.wire.p + mark, c.wire.len - mark, NULL), 0);
	assert_int_equal(r.syns, 5);
	assert_int_equal(spdy_session_streams(s), 4);
	rec_fini(&r);
	client_fini(&c);
}

/* PINGs from a client that never reads: answered until max_output and its reserve, then
 * -ENOBUFS names the limit. */
static void test_ping_flood(void **state)
{
	(void)state;
	struct spdy_limits l = SPDY_DEFAULT_LIMITS;
	l.max_frame = 1024;
	l.max_output = 2048;
	struct client c;
	client_init(&c);
	for (uint32_t i = 0; i < 1000; i++)
		words(&c, SPDY_PING, 2 * i + 1, 0, 1);
	struct rec r = { 0 };
	struct spdy_session *s = session(&r, &l);
	uk_error err = { 0 };
	assert_int_equal(spdy_session_input(s, c.wire.p, c.wire.len, &err), -ENOBUFS);
	assert_non_null(strstr(err.msg, "max_output"));
	const uint8_t *o;
	size_t n = spdy_session_output(s, &o);
	assert_true(n <= 2048 + 4096);
	assert_int_equal(n % 12, 0);
	assert_true(n > 2048);
	rec_fini(&r);

	/* A reader that keeps up gets every answer. */
	r = (struct rec){ 0 };
	s = session(&r, &l);
	for (size_t off = 0; off < c.wire.len; off += 120) {
		assert_int_equal(spdy_session_input(s, c.wire.p + off, 120, NULL), 0);
		assert_int_equal(spdy_session_output(s, &o), 120);
		spdy_session_consumed(s, 120);
	}
	rec_fini(&r);
	client_fini(&c);
}

static void test_goaway_refuses(void **state)
{
	(void)state;
	struct client c;
	client_init(&c);
	syn(&c, 1, 0, pf_data);
	struct rec r = { 0 };
	struct spdy_session *s = run(&r, NULL, &c);
	assert_int_equal(spdy_send_goaway(s, SPDY_GOAWAY_OK, NULL), 0);
	expect_goaway(s, 1, SPDY_GOAWAY_OK);
	size_t mark = c.wire.len;
	syn(&c, 3, 0, pf_data);
	words(&c, SPDY_GOAWAY, 0, 0, 1); /* SPDY/3's 4-byte form */
	assert_int_equal(spdy_session_input(s, c.wire.p + mark, c.wire.len - mark, NULL), 0);
	expect_rst(s, 3, SPDY_REFUSED_STREAM);
	assert_string_equal(log_str(&r), "syn 1 data/80/1 n=3 fin=0\ngoaway 0 0\n");
	/* Streams opened before still carry data. */
	assert_int_equal(spdy_send_syn_reply(s, 1, NULL, 0, false, NULL), 0);
	rec_fini(&r);
	client_fini(&c);
}

/* spdy_session_free from a callback: the rest of the input is dropped, nothing is touched
 * after the free (ASan), and sends from inside say the session ended. */
static void test_free_in_callback(void **state)
{
	(void)state;
	struct client c;
	client_init(&c);
	syn(&c, 1, 0, pf_data);
	syn(&c, 3, 0, pf_data);
	struct rec r = { .free_in_syn = true };
	run(&r, NULL, &c);
	assert_null(r.s);
	assert_int_equal(r.syns, 1);
	free(r.log.p);
	client_fini(&c);
}

static int data_reply_fail(void *ud, uint32_t id, const uint8_t *p, size_t n, bool fin)
{
	struct rec *r = ud;
	(void)p, (void)n, (void)fin;
	/* Sending from a callback works; input from one does not. */
	assert_int_equal(spdy_send_syn_reply(r->s, id, NULL, 0, false, NULL), 0);
	assert_int_equal(spdy_session_input(r->s, (const uint8_t *)"x", 1, NULL), -EDEADLK);
	return -EPIPE;
}

static void test_callback_error(void **state)
{
	(void)state;
	struct client c;
	client_init(&c);
	syn(&c, 1, 0, pf_data);
	data(&c, 1, 0, "x", 1);
	data(&c, 1, 0, "y", 1);
	const struct spdy_callbacks cb = { .data = data_reply_fail };
	struct rec r = { 0 };
	assert_int_equal(spdy_session_new(NULL, &cb, &r, &r.s, NULL), 0);
	assert_int_equal(spdy_session_input(r.s, c.wire.p, c.wire.len, NULL), -EPIPE);
	consume_frame(r.s);
	rec_fini(&r);
	client_fini(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dictionary),
		cmocka_unit_test(test_frame_parse),
		cmocka_unit_test(test_limits_checked),
		cmocka_unit_test(test_recorded_portforward),
		cmocka_unit_test(test_recorded_attach),
		cmocka_unit_test(test_recorded_pings),
		cmocka_unit_test(test_recorded_reset),
		cmocka_unit_test(test_recorded_mutations),
		cmocka_unit_test(test_syn_reply_and_data_bytes),
		cmocka_unit_test(test_send_errors),
		cmocka_unit_test(test_half_close),
		cmocka_unit_test(test_stream_rules),
		cmocka_unit_test(test_headers_frame),
		cmocka_unit_test(test_session_errors),
		cmocka_unit_test(test_oversized_frames),
		cmocka_unit_test(test_inflate_bomb),
		cmocka_unit_test(test_stream_flood),
		cmocka_unit_test(test_ping_flood),
		cmocka_unit_test(test_goaway_refuses),
		cmocka_unit_test(test_free_in_callback),
		cmocka_unit_test(test_callback_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
