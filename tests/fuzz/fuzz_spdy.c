/* libFuzzer target for the streaming server's parsers of outside input: the SPDY engine
 * (frames, header blocks, the stream table, every limit) and the HTTP upgrade head.
 * `make fuzz` builds it with clang's -fsanitize=fuzzer,address,undefined and runs it over
 * tests/fuzz/corpus/spdy.
 *
 * The first byte chooses the mode:
 *   bit 0     the HTTP head parser and the responses built from what it parsed;
 *   bit 1     small limits (frames, blocks, streams and output), so that each is reached;
 *   bit 5     records instead of wire bytes: [type][len:2][bytes], where a SYN_STREAM or
 *             HEADERS record's bytes are an uncompressed name/value block that is
 *             compressed here as a client would, so header parsing is reached without the
 *             fuzzer having to find valid zlib; other records are copied as they are;
 *   bit 6     the syn_stream callback frees the session on stream 5;
 *   bit 7     the output is drained after each chunk (else it fills up);
 *   bits 2-4  the chunk size the input is fed in (1, 2, 3, 7, 16, 61, 256 or all). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "stream/http.h"
#include "stream/spdy.h"

struct ctx {
	struct spdy_session *s;
	bool free_on_5;
};

static int on_syn(void *ud, uint32_t id, const struct spdy_headers *h, bool fin)
{
	struct ctx *c = ud;
	(void)fin;
	if (c->free_on_5 && id == 5) {
		spdy_session_free(c->s);
		c->s = NULL;
		return 0;
	}
	if (id % 3 == 0)
		return spdy_send_rst(c->s, id, SPDY_REFUSED_STREAM, NULL) == -ENOBUFS ? -ENOBUFS : 0;
	/* Echo the first header back, as a reply must carry what it was given. */
	struct spdy_header echo[1];
	size_t n = 0;
	if (h->n > 0 && h->v[0].value_len > 0) {
		echo[0] = h->v[0];
		n = 1;
	}
	(void)spdy_send_syn_reply(c->s, id, echo, n, id % 7 == 0, NULL); /* any error is fine here */
	(void)spdy_header_get(h, "streamtype");
	return 0;
}

static int on_data(void *ud, uint32_t id, const uint8_t *p, size_t n, bool fin)
{
	struct ctx *c = ud;
	(void)spdy_send_data(c->s, id, p, n, fin, NULL); /* -ENOENT, -ENOBUFS: both fine here */
	return 0;
}

static void on_rst(void *ud, uint32_t id, uint32_t status)
{
	(void)ud, (void)id, (void)status;
}

static void on_goaway(void *ud, uint32_t last, uint32_t status)
{
	struct ctx *c = ud;
	(void)last, (void)status;
	(void)spdy_send_goaway(c->s, SPDY_GOAWAY_OK, NULL); /* -EPIPE after an error: fine */
}

static void fuzz_http(const uint8_t *p, size_t n)
{
	struct http_request req;
	uk_error err;
	if (http_parse_request((const char *)p, n, &req, &err) < 0)
		return;
	static const char *const ours[] = { "v4.channel.k8s.io", "portforward.k8s.io" };
	char buf[1024];
	const char *proto = http_pick_protocol(&req, ours, 2);
	if (req.n_protocols > 0)
		(void)http_response_switch(buf, sizeof(buf), req.protocols[0]); /* -EINVAL is fine */
	(void)http_response_switch(buf, sizeof(buf), proto);
	(void)http_response_no_protocol(buf, sizeof(buf), ours, 2);
	(void)http_response_error(buf, sizeof(buf), 404, req.path);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v;
}

/* Turns records into wire bytes, compressing name/value blocks; the caller frees *ret. */
static size_t records_to_wire(const uint8_t *p, size_t n, uint8_t **ret)
{
	size_t cap = 16 * n + 4096, len = 0;
	uint8_t *w = malloc(cap), dict[SPDY_DICTIONARY_LEN];
	z_stream z = { 0 };
	spdy_dictionary(dict);
	if (!w || deflateInit(&z, Z_BEST_COMPRESSION) != Z_OK ||
	    deflateSetDictionary(&z, dict, SPDY_DICTIONARY_LEN) != Z_OK)
		abort();
	while (n >= 3) {
		uint8_t type = p[0];
		size_t rl = (size_t)p[1] << 8 | p[2];
		rl = rl < n - 3 ? rl : n - 3;
		const uint8_t *r = p + 3;
		p += 3 + rl;
		n -= 3 + rl;
		if (type != SPDY_SYN_STREAM && type != SPDY_HEADERS) {
			memcpy(w + len, r, rl);
			len += rl;
			continue;
		}
		/* A stream id from the record's first byte, then the block. */
		uint32_t id = rl > 0 ? r[0] : 1;
		size_t fixed = type == SPDY_SYN_STREAM ? 10 : 4, hdr = len;
		len += 8 + fixed;
		z.next_in = (Bytef *)(rl > 0 ? r + 1 : r);
		z.avail_in = (uInt)(rl > 0 ? rl - 1 : 0);
		z.next_out = w + len;
		z.avail_out = (uInt)(cap - len);
		int zr = deflate(&z, Z_SYNC_FLUSH);
		/* Z_BUF_ERROR: an empty block right after a flush, nothing to add. */
		if ((zr != Z_OK && !(zr == Z_BUF_ERROR && z.avail_in == 0)) || z.avail_out == 0)
			abort(); /* cap is ample for any record */
		size_t zlen = cap - len - z.avail_out;
		len += zlen;
		put32(w + hdr, 0x80030000u | type);
		put32(w + hdr + 4, (uint32_t)(fixed + zlen));
		put32(w + hdr + 8, id);
		if (type == SPDY_SYN_STREAM) {
			put32(w + hdr + 12, 0);
			w[hdr + 16] = w[hdr + 17] = 0;
		}
	}
	deflateEnd(&z);
	*ret = w;
	return len;
}

static void fuzz_spdy(uint8_t mode, const uint8_t *p, size_t n)
{
	static const size_t chunks[] = { 1, 2, 3, 7, 16, 61, 256, SIZE_MAX };
	struct spdy_limits l = SPDY_DEFAULT_LIMITS;
	if (mode & 0x02)
		l = (struct spdy_limits){ .max_frame = 4096, .max_header_block = 1024, .max_headers = 8,
					  .max_streams = 4, .max_output = 8192 };
	const struct spdy_callbacks cb = { on_syn, on_data, on_rst, on_goaway };
	struct ctx c = { .free_on_5 = mode & 0x40 };
	if (spdy_session_new(&l, &cb, &c, &c.s, NULL) < 0)
		abort();
	size_t chunk = chunks[(mode >> 2) & 7];
	while (n > 0 && c.s) {
		size_t k = n < chunk ? n : chunk;
		int r = spdy_session_input(c.s, p, k, NULL);
		p += k;
		n -= k;
		if (!c.s || r < 0)
			break;
		if (mode & 0x80) {
			const uint8_t *o;
			size_t on = spdy_session_output(c.s, &o);
			if (on > 0 && (o[0] | o[on - 1]) == 0xff)
				(void)spdy_session_streams(c.s); /* read the output, as a socket would */
			spdy_session_consumed(c.s, on);
		}
	}
	if (c.s)
		(void)spdy_session_going_away(c.s);
	spdy_session_free(c.s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	if (mode & 0x01) {
		fuzz_http(data + 1, size - 1);
		return 0;
	}
	if (mode & 0x20) {
		uint8_t *w;
		size_t n = records_to_wire(data + 1, size - 1, &w);
		fuzz_spdy(mode, w, n);
		free(w);
		return 0;
	}
	fuzz_spdy(mode, data + 1, size - 1);
	return 0;
}
