/* The SPDY/3.1 session engine, server side; see spdy.h for the API and README.md for the
 * design and the limits. */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "spdy.h"

/* Room past max_output for the frames the engine itself must be able to queue (PING
 * echoes, RST_STREAM, GOAWAY) while the caller's data has filled the output: a peer that
 * floods them without reading runs into it and the session fails with -ENOBUFS. */
#define SPDY_CONTROL_RESERVE 4096
/* DATA frames carry 24 bits of length. */
#define SPDY_MAX_LENGTH 0xffffffu

/* The zlib dictionary of SPDY/3 (section 2.6.10.1): these names, each after its length as
 * 4 bytes big-endian, then the status codes, the dates and the media types below as one
 * run of bytes. */
static const char *const dict_words[] = {
	"options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
	"accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
	"cache-control", "connection", "content-base", "content-encoding", "content-language",
	"content-length", "content-location", "content-md5", "content-range", "content-type",
	"date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
	"if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
	"max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range",
	"referer", "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade",
	"user-agent", "vary", "via", "warning", "www-authenticate", "method", "get", "status",
	"200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
};
static const char dict_tail[] =
	"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
	"203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 "
	"Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 "
	"Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, "
	"Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
	"application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
	"gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

struct stream {
	uint32_t id;
	bool in_open;  /* the client may still send */
	bool out_open; /* we may still send */
	bool replied;  /* our SYN_REPLY went out */
};

struct spdy_session {
	struct spdy_limits lim;
	struct spdy_callbacks cb;
	void *ud;

	z_stream zin, zout;
	bool zin_ready, zout_ready;
	uint8_t dict[SPDY_DICTIONARY_LEN];

	uint8_t *in; /* a partial frame: grows to the frame's size, at most max_frame + 8 */
	size_t in_len, in_cap;
	uint8_t *block; /* a decompressed header block, max_header_block + 1 (to see a bomb) */
	char *arena;    /* its names and values, NUL-terminated */
	struct spdy_header *hv;

	uint8_t *out;
	size_t out_start, out_len, out_cap;

	struct stream *streams; /* max_streams, unordered */
	unsigned n_streams;
	uint32_t last_client_id; /* the highest SYN_STREAM id seen */

	bool goaway_sent, goaway_recv;
	bool failed; /* a session error: input is over, a GOAWAY is queued */

	unsigned busy;
	bool free_requested;
};

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return be32toh(v);
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

void spdy_frame_parse(const uint8_t h[SPDY_FRAME_HEADER], struct spdy_frame *f)
{
	uint32_t w0 = get32(h), w1 = get32(h + 4);
	*f = (struct spdy_frame){ .control = (w0 & 0x80000000u) != 0, .flags = (uint8_t)(w1 >> 24),
				  .length = w1 & SPDY_MAX_LENGTH };
	if (f->control) {
		f->version = (uint16_t)((w0 >> 16) & 0x7fff);
		f->type = (uint16_t)(w0 & 0xffff);
	} else {
		f->stream_id = w0 & 0x7fffffffu;
	}
}

const char *spdy_header_get(const struct spdy_headers *h, const char *name)
{
	for (size_t i = 0; h && i < h->n; i++)
		if (strcmp(h->v[i].name, name) == 0)
			return h->v[i].value;
	return NULL;
}

void spdy_dictionary(uint8_t d[SPDY_DICTIONARY_LEN])
{
	size_t n = 0;
	for (size_t i = 0; i < ARRAY_SIZE(dict_words); i++) {
		size_t l = strlen(dict_words[i]);
		put32(d + n, (uint32_t)l);
		memcpy(d + n + 4, dict_words[i], l);
		n += 4 + l;
	}
	/* The table and the tail above add up to SPDY_DICTIONARY_LEN; test_spdy checks the
	 * bytes against the spec's checksum. */
	size_t tail = sizeof(dict_tail) - 1;
	memcpy(d + n, dict_tail, tail < SPDY_DICTIONARY_LEN - n ? tail : SPDY_DICTIONARY_LEN - n);
}

static void really_free(struct spdy_session *s)
{
	if (s->zin_ready)
		(void)inflateEnd(&s->zin); /* only reports a stream it never knew */
	if (s->zout_ready)
		(void)deflateEnd(&s->zout); /* -EDATAERROR for pending output, dropped with it */
	free(s->in);
	free(s->block);
	free(s->arena);
	free(s->hv);
	free(s->out);
	free(s->streams);
	free(s);
}

static int leave(struct spdy_session *s, int r)
{
	if (--s->busy == 0 && s->free_requested)
		really_free(s);
	return r;
}

void spdy_session_free(struct spdy_session *s)
{
	if (!s || s->free_requested)
		return;
	s->free_requested = true;
	if (s->busy == 0)
		really_free(s);
}

static int check_limits(const struct spdy_limits *l, uk_error *err)
{
	/* A SYN_STREAM's fixed part and the smallest header block must fit in a frame. */
	if (l->max_frame < 64 || l->max_frame > SPDY_MAX_LENGTH)
		return uk_err(err, EINVAL, "spdy limits: max_frame %zu is not in [64, %u]", l->max_frame,
			      SPDY_MAX_LENGTH);
	if (l->max_header_block < 64 || l->max_header_block > SPDY_MAX_LENGTH)
		return uk_err(err, EINVAL, "spdy limits: max_header_block %zu is not in [64, %u]",
			      l->max_header_block, SPDY_MAX_LENGTH);
	if (l->max_headers < 1 || l->max_headers > 4096)
		return uk_err(err, EINVAL, "spdy limits: max_headers %u is not in [1, 4096]", l->max_headers);
	if (l->max_streams < 1 || l->max_streams > 65536)
		return uk_err(err, EINVAL, "spdy limits: max_streams %u is not in [1, 65536]", l->max_streams);
	if (l->max_output < l->max_frame + SPDY_FRAME_HEADER)
		return uk_err(err, EINVAL, "spdy limits: max_output %zu is under max_frame + 8", l->max_output);
	return 0;
}

int spdy_session_new(const struct spdy_limits *lim, const struct spdy_callbacks *cb, void *ud,
		     struct spdy_session **ret, uk_error *err)
{
	struct spdy_limits l = lim ? *lim : SPDY_DEFAULT_LIMITS;
	int r = check_limits(&l, err);
	if (r < 0)
		return r;
	struct spdy_session *s = calloc(1, sizeof(*s));
	if (!s)
		return uk_err(err, ENOMEM, "spdy session");
	s->lim = l;
	if (cb)
		s->cb = *cb;
	s->ud = ud;
	spdy_dictionary(s->dict);
	s->in_cap = 4096;
	s->in = malloc(s->in_cap);
	s->block = malloc(l.max_header_block + 1);
	s->arena = malloc(l.max_header_block);
	s->hv = calloc(l.max_headers, sizeof(*s->hv));
	s->streams = calloc(l.max_streams, sizeof(*s->streams));
	if (!s->in || !s->block || !s->arena || !s->hv || !s->streams) {
		really_free(s);
		return uk_err(err, ENOMEM, "spdy session buffers");
	}
	s->zin_ready = inflateInit(&s->zin) == Z_OK;
	/* Level 9 as spdystream. Our blocks are a few bytes (kubelet's replies carry no
	 * headers), so a 2 KiB window (which still holds the whole dictionary) and the least
	 * memory make the compressor cost 10 KiB a session instead of 256; any inflater reads
	 * a smaller window. */
	s->zout_ready = s->zin_ready &&
			deflateInit2(&s->zout, Z_BEST_COMPRESSION, Z_DEFLATED, 11, 1, Z_DEFAULT_STRATEGY) == Z_OK;
	if (!s->zout_ready ||
	    deflateSetDictionary(&s->zout, s->dict, SPDY_DICTIONARY_LEN) != Z_OK) {
		really_free(s);
		return uk_err(err, ENOMEM, "spdy session: zlib initialization");
	}
	*ret = s;
	return 0;
}

/* ---- output ---- */

/* Room for n more bytes, within cap (max_output, plus the reserve for the engine's own
 * control frames). */
static int out_reserve(struct spdy_session *s, size_t n, size_t cap, uk_error *err)
{
	size_t queued = s->out_len - s->out_start;
	if (n > cap || queued > cap - n)
		return uk_err(err, ENOBUFS, "spdy output: %zu bytes queued and %zu more pass the limit of %zu (max_output)",
			      queued, n, s->lim.max_output);
	if (s->out_start > 0 && s->out_len + n > s->out_cap) {
		memmove(s->out, s->out + s->out_start, queued);
		s->out_len = queued;
		s->out_start = 0;
	}
	if (s->out_len + n > s->out_cap) {
		size_t c = s->out_cap ? s->out_cap : 4096;
		while (c < s->out_len + n)
			c *= 2;
		uint8_t *p = realloc(s->out, c);
		if (!p)
			return uk_err(err, ENOMEM, "spdy output buffer");
		s->out = p;
		s->out_cap = c;
	}
	return 0;
}

static void put_control_header(uint8_t *p, uint16_t type, uint8_t flags, uint32_t length)
{
	put32(p, 0x80000000u | (uint32_t)SPDY_VERSION << 16 | type);
	put32(p + 4, (uint32_t)flags << 24 | length);
}

/* A control frame with two 32-bit words (RST_STREAM, GOAWAY) or one (PING). */
static int queue_control(struct spdy_session *s, uint16_t type, uint32_t a, uint32_t b, size_t words, uk_error *err)
{
	size_t len = SPDY_FRAME_HEADER + 4 * words;
	int r = out_reserve(s, len, s->lim.max_output + SPDY_CONTROL_RESERVE, err);
	if (r < 0)
		return r;
	uint8_t *p = s->out + s->out_len;
	put_control_header(p, type, 0, (uint32_t)(4 * words));
	put32(p + 8, a);
	if (words > 1)
		put32(p + 12, b);
	s->out_len += len;
	return 0;
}

size_t spdy_session_output(const struct spdy_session *s, const uint8_t **p)
{
	*p = s->out ? s->out + s->out_start : NULL;
	return s->out_len - s->out_start;
}

void spdy_session_consumed(struct spdy_session *s, size_t n)
{
	size_t queued = s->out_len - s->out_start;
	s->out_start += n < queued ? n : queued;
	if (s->out_start < s->out_len)
		return;
	s->out_start = s->out_len = 0;
	/* A burst should not pin its buffer for the life of the connection. */
	if (s->out_cap > 65536) {
		free(s->out);
		s->out = NULL;
		s->out_cap = 0;
	}
}

unsigned spdy_session_streams(const struct spdy_session *s)
{
	return s->n_streams;
}

bool spdy_session_going_away(const struct spdy_session *s)
{
	return s->goaway_sent || s->goaway_recv;
}

/* ---- streams ---- */

static struct stream *stream_find(struct spdy_session *s, uint32_t id)
{
	for (unsigned i = 0; i < s->n_streams; i++)
		if (s->streams[i].id == id)
			return &s->streams[i];
	return NULL;
}

static void stream_forget(struct spdy_session *s, struct stream *st)
{
	*st = s->streams[--s->n_streams];
}

/* Forgets the stream once it is closed both ways. */
static void stream_maybe_forget(struct spdy_session *s, struct stream *st)
{
	if (!st->in_open && !st->out_open)
		stream_forget(s, st);
}

/* ---- sending ---- */

static int send_check(struct spdy_session *s, uint32_t id, struct stream **ret, uk_error *err)
{
	if (s->failed || s->free_requested)
		return uk_err(err, EPIPE, "spdy stream %u: the session has ended", id);
	struct stream *st = stream_find(s, id);
	if (!st || !st->out_open)
		return uk_err(err, ENOENT, "spdy stream %u is not open for sending", id);
	*ret = st;
	return 0;
}

/* The uncompressed name/value block: count, then each length-prefixed name and value. */
static int nv_encode(const struct spdy_header *h, size_t n, size_t max, uint8_t **ret, size_t *ret_len,
		     uk_error *err)
{
	size_t len = 4;
	for (size_t i = 0; i < n; i++) {
		size_t nl = strlen(h[i].name), vl = h[i].value_len ? h[i].value_len : strlen(h[i].value);
		if (nl == 0 || strspn(h[i].name, "abcdefghijklmnopqrstuvwxyz0123456789-_.:") != nl)
			return uk_err(err, EINVAL, "spdy header name '%s' is not a lowercase token", h[i].name);
		if (nl > max || vl > max || len > max - 8 - nl - vl)
			return uk_err(err, E2BIG, "spdy header block passes %zu bytes (max_header_block)", max);
		len += 8 + nl + vl;
	}
	uint8_t *b = malloc(len), *p = b;
	if (!b)
		return uk_err(err, ENOMEM, "spdy header block");
	put32(p, (uint32_t)n);
	p += 4;
	for (size_t i = 0; i < n; i++) {
		size_t nl = strlen(h[i].name), vl = h[i].value_len ? h[i].value_len : strlen(h[i].value);
		put32(p, (uint32_t)nl);
		memcpy(p + 4, h[i].name, nl);
		p += 4 + nl;
		put32(p, (uint32_t)vl);
		memcpy(p + 4, h[i].value, vl);
		p += 4 + vl;
	}
	*ret = b;
	*ret_len = len;
	return 0;
}

/* Compresses raw into the output after a frame header of prefix bytes; the caller fills
 * the header. The room is reserved first, so that the compressor, which the peer's
 * decompressor mirrors, never runs on a block that is then not sent. */
static int queue_compressed(struct spdy_session *s, size_t prefix, const uint8_t *raw, size_t raw_len,
			    uint8_t **frame, size_t *payload, uk_error *err)
{
	/* Z_SYNC_FLUSH adds an empty stored block (5 bytes) and up to a byte of bits to
	 * deflateBound's figure. */
	size_t bound = deflateBound(&s->zout, (uLong)raw_len) + 16;
	int r = out_reserve(s, prefix + bound, s->lim.max_output, err);
	if (r < 0)
		return r;
	uint8_t *start = s->out + s->out_len;
	s->zout.next_in = (Bytef *)raw;
	s->zout.avail_in = (uInt)raw_len;
	s->zout.next_out = start + prefix;
	s->zout.avail_out = (uInt)bound;
	int z = deflate(&s->zout, Z_SYNC_FLUSH);
	if (z != Z_OK || s->zout.avail_in != 0 || s->zout.avail_out == 0) {
		/* The peer's decompressor can no longer follow ours. */
		s->failed = true;
		return uk_err(err, EIO, "spdy header compression failed (zlib %d)", z);
	}
	*frame = start;
	*payload = prefix - SPDY_FRAME_HEADER + (bound - s->zout.avail_out);
	s->out_len += SPDY_FRAME_HEADER + *payload;
	return 0;
}

int spdy_send_syn_reply(struct spdy_session *s, uint32_t id, const struct spdy_header *h, size_t n, bool fin,
			uk_error *err)
{
	struct stream *st;
	int r = send_check(s, id, &st, err);
	if (r < 0)
		return r;
	if (st->replied)
		return uk_err(err, EINVAL, "spdy stream %u: SYN_REPLY already sent", id);
	_cleanup_free_ uint8_t *raw = NULL;
	size_t raw_len = 0, payload = 0;
	r = nv_encode(h, n, s->lim.max_header_block, &raw, &raw_len, err);
	if (r < 0)
		return r;
	uint8_t *f = NULL;
	r = queue_compressed(s, SPDY_FRAME_HEADER + 4, raw, raw_len, &f, &payload, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "spdy stream %u: SYN_REPLY", id);
	put_control_header(f, SPDY_SYN_REPLY, fin ? SPDY_FLAG_FIN : 0, (uint32_t)payload);
	put32(f + 8, id);
	st->replied = true;
	if (fin) {
		st->out_open = false;
		stream_maybe_forget(s, st);
	}
	return 0;
}

int spdy_send_data(struct spdy_session *s, uint32_t id, const void *p, size_t n, bool fin, uk_error *err)
{
	struct stream *st;
	int r = send_check(s, id, &st, err);
	if (r < 0)
		return r;
	if (!st->replied)
		return uk_err(err, EINVAL, "spdy stream %u: DATA before SYN_REPLY", id);
	/* Split at max_frame, the size our peer is as likely to accept as we are; all or
	 * nothing goes out. */
	size_t frames = n == 0 ? 1 : (n + s->lim.max_frame - 1) / s->lim.max_frame;
	if (frames > s->lim.max_output / SPDY_FRAME_HEADER)
		return uk_err(err, ENOBUFS, "spdy stream %u: %zu bytes pass max_output", id, n);
	r = out_reserve(s, n + frames * SPDY_FRAME_HEADER, s->lim.max_output, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "spdy stream %u: DATA", id);
	const uint8_t *src = p;
	for (size_t i = 0; i < frames; i++) {
		size_t chunk = n < s->lim.max_frame ? n : s->lim.max_frame;
		uint8_t *o = s->out + s->out_len;
		put32(o, id & 0x7fffffffu);
		put32(o + 4, (uint32_t)(fin && i == frames - 1 ? SPDY_FLAG_FIN : 0) << 24 | (uint32_t)chunk);
		if (chunk)
			memcpy(o + SPDY_FRAME_HEADER, src, chunk);
		s->out_len += SPDY_FRAME_HEADER + chunk;
		src += chunk;
		n -= chunk;
	}
	if (fin) {
		st->out_open = false;
		stream_maybe_forget(s, st);
	}
	return 0;
}

int spdy_send_rst(struct spdy_session *s, uint32_t id, uint32_t status, uk_error *err)
{
	if (s->failed || s->free_requested)
		return uk_err(err, EPIPE, "spdy stream %u: the session has ended", id);
	struct stream *st = stream_find(s, id);
	if (!st)
		return uk_err(err, ENOENT, "spdy stream %u is not open", id);
	if (status == 0)
		return uk_err(err, EINVAL, "spdy stream %u: RST_STREAM status 0", id);
	int r = queue_control(s, SPDY_RST_STREAM, id, status, 2, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "spdy stream %u: RST_STREAM", id);
	stream_forget(s, st);
	return 0;
}

int spdy_send_goaway(struct spdy_session *s, uint32_t status, uk_error *err)
{
	if (s->failed || s->free_requested)
		return uk_err(err, EPIPE, "spdy GOAWAY: the session has ended");
	if (s->goaway_sent)
		return 0;
	int r = queue_control(s, SPDY_GOAWAY, s->last_client_id, status, 2, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "spdy GOAWAY");
	s->goaway_sent = true;
	return 0;
}

/* ---- input ---- */

/* A session error: a GOAWAY PROTOCOL_ERROR goes out (when it fits), input is over. */
static int session_error(struct spdy_session *s, uk_error *err, const char *fmt, ...) _printf_(3, 4);
static int session_error(struct spdy_session *s, uk_error *err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap); /* truncation is fine: a message for people */
	va_end(ap);
	if (!s->goaway_sent &&
	    queue_control(s, SPDY_GOAWAY, s->last_client_id, SPDY_GOAWAY_PROTOCOL_ERROR, 2, NULL) == 0)
		s->goaway_sent = true;
	s->failed = true;
	return uk_err(err, EPROTO, "spdy protocol error: %s", msg);
}

/* Inflates one header block into s->block; never writes past max_header_block. */
static int inflate_block(struct spdy_session *s, const uint8_t *p, size_t n, const char *what, size_t *ret,
			 uk_error *err)
{
	size_t cap = s->lim.max_header_block;
	s->zin.next_in = (Bytef *)p;
	s->zin.avail_in = (uInt)n;
	s->zin.next_out = s->block;
	s->zin.avail_out = (uInt)cap + 1; /* one byte more shows a block over the limit */
	while (s->zin.avail_in > 0 && s->zin.avail_out > 0) {
		int z = inflate(&s->zin, Z_SYNC_FLUSH);
		if (z == Z_NEED_DICT) {
			if (inflateSetDictionary(&s->zin, s->dict, SPDY_DICTIONARY_LEN) != Z_OK)
				return session_error(s, err, "%s header block: not SPDY/3's dictionary", what);
			continue;
		}
		if (z == Z_STREAM_END)
			return session_error(s, err, "%s header block ends the zlib stream", what);
		if (z != Z_OK && z != Z_BUF_ERROR)
			return session_error(s, err, "%s header block: zlib: %s", what,
					     s->zin.msg ? s->zin.msg : "corrupt data");
		if (z == Z_BUF_ERROR)
			break;
	}
	size_t out = cap + 1 - s->zin.avail_out;
	if (out > cap)
		return session_error(s, err, "%s header block inflates past %zu bytes (max_header_block)", what, cap);
	if (s->zin.avail_in > 0)
		return session_error(s, err, "%s header block: %u compressed bytes left over", what, s->zin.avail_in);
	*ret = out;
	return 0;
}

/* Splits a decompressed block into s->hv; names and values go to s->arena NUL-terminated
 * (the arena needs no more room than the block: each pair gives up 8 length bytes and
 * takes 2 NULs). */
static int nv_parse(struct spdy_session *s, size_t len, const char *what, struct spdy_headers *h, uk_error *err)
{
	const uint8_t *p = s->block, *end = s->block + len;
	char *a = s->arena;
	if (len < 4)
		return session_error(s, err, "%s header block of %zu bytes has no count", what, len);
	uint32_t count = get32(p);
	p += 4;
	if (count > s->lim.max_headers)
		return session_error(s, err, "%s header block has %u headers, over %u (max_headers)", what, count,
				     s->lim.max_headers);
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *field[2];
		uint32_t flen[2];
		for (int k = 0; k < 2; k++) {
			if (end - p < 4 || (flen[k] = get32(p)) > (size_t)(end - p - 4))
				return session_error(s, err, "%s header %u: %s length passes the block", what, i,
						     k ? "value" : "name");
			field[k] = p + 4;
			p += 4 + flen[k];
		}
		if (flen[0] == 0)
			return session_error(s, err, "%s header %u: empty name", what, i);
		for (uint32_t j = 0; j < flen[0]; j++)
			if ((field[0][j] >= 'A' && field[0][j] <= 'Z') || field[0][j] == 0)
				return session_error(s, err, "%s header %u: name '%.*s' is not lowercase", what, i,
						     (int)flen[0], (const char *)field[0]);
		s->hv[i].name = a;
		memcpy(a, field[0], flen[0]);
		a[flen[0]] = '\0';
		a += flen[0] + 1;
		for (uint32_t j = 0; j < i; j++)
			if (strcmp(s->hv[j].name, s->hv[i].name) == 0)
				return session_error(s, err, "%s header '%s' appears twice", what, s->hv[i].name);
		s->hv[i].value = a;
		s->hv[i].value_len = flen[1];
		memcpy(a, field[1], flen[1]);
		a[flen[1]] = '\0';
		a += flen[1] + 1;
	}
	if (p != end)
		return session_error(s, err, "%s header block: %zu bytes after the last header", what,
				     (size_t)(end - p));
	*h = (struct spdy_headers){ .v = s->hv, .n = count };
	return 0;
}

static int read_headers(struct spdy_session *s, const uint8_t *p, size_t n, const char *what, struct spdy_headers *h,
			uk_error *err)
{
	size_t len;
	int r = inflate_block(s, p, n, what, &len, err);
	if (r < 0)
		return r;
	return nv_parse(s, len, what, h, err);
}

/* The engine resets a stream by itself; a known stream is gone and the caller hears of it
 * through the rst callback, as if the client had reset it. */
static int engine_rst(struct spdy_session *s, uint32_t id, uint32_t status, uk_error *err)
{
	int r = queue_control(s, SPDY_RST_STREAM, id, status, 2, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "spdy stream %u: RST_STREAM", id);
	struct stream *st = stream_find(s, id);
	if (st) {
		stream_forget(s, st);
		if (s->cb.rst)
			s->cb.rst(s->ud, id, status);
	}
	return 0;
}

static int on_syn_stream(struct spdy_session *s, const struct spdy_frame *f, const uint8_t *p, uk_error *err)
{
	if (f->length < 10)
		return session_error(s, err, "SYN_STREAM of %u bytes is shorter than 10", f->length);
	uint32_t id = get32(p) & 0x7fffffffu;
	struct spdy_headers h;
	/* Inflate before any check: the decompressor must see every block. */
	int r = read_headers(s, p + 10, f->length - 10, "SYN_STREAM", &h, err);
	if (r < 0)
		return r;
	if (id == 0 || id % 2 == 0)
		return session_error(s, err, "SYN_STREAM stream id %u is not odd", id);
	if (id <= s->last_client_id)
		return session_error(s, err, "SYN_STREAM stream id %u does not increase (last %u)", id,
				     s->last_client_id);
	s->last_client_id = id;
	if (s->goaway_sent)
		return engine_rst(s, id, SPDY_REFUSED_STREAM, err);
	/* spdystream never opens one; nothing here could answer it. */
	if (f->flags & SPDY_FLAG_UNIDIRECTIONAL)
		return engine_rst(s, id, SPDY_REFUSED_STREAM, err);
	if (s->n_streams >= s->lim.max_streams)
		return engine_rst(s, id, SPDY_REFUSED_STREAM, err);
	bool fin = f->flags & SPDY_FLAG_FIN;
	s->streams[s->n_streams++] = (struct stream){ .id = id, .in_open = !fin, .out_open = true };
	if (!s->cb.syn_stream)
		return 0;
	return s->cb.syn_stream(s->ud, id, &h, fin);
}

/* The client's end of a stream: data, or a HEADERS frame with FIN. */
static int stream_input(struct spdy_session *s, uint32_t id, const uint8_t *p, size_t n, bool fin, uk_error *err)
{
	struct stream *st = stream_find(s, id);
	if (!st) {
		/* A stream we reset or forgot may still have frames in flight: drop them. An id
		 * never opened (or even: ours, and we open none) gets INVALID_STREAM. */
		if (id % 2 == 1 && id <= s->last_client_id)
			return 0;
		return engine_rst(s, id, SPDY_INVALID_STREAM, err);
	}
	if (!st->in_open)
		return engine_rst(s, id, SPDY_STREAM_ALREADY_CLOSED, err);
	if (fin) {
		st->in_open = false;
		stream_maybe_forget(s, st);
	}
	if (!s->cb.data)
		return 0;
	return s->cb.data(s->ud, id, p, n, fin);
}

static int on_rst(struct spdy_session *s, const struct spdy_frame *f, const uint8_t *p, uk_error *err)
{
	if (f->length != 8)
		return session_error(s, err, "RST_STREAM of %u bytes, not 8", f->length);
	uint32_t id = get32(p) & 0x7fffffffu, status = get32(p + 4);
	struct stream *st = stream_find(s, id);
	if (!st)
		return 0; /* already closed on our side: nothing to tell */
	stream_forget(s, st);
	if (s->cb.rst)
		s->cb.rst(s->ud, id, status);
	return 0;
}

static int on_ping(struct spdy_session *s, const struct spdy_frame *f, const uint8_t *p, uk_error *err)
{
	if (f->length != 4)
		return session_error(s, err, "PING of %u bytes, not 4", f->length);
	uint32_t id = get32(p);
	/* Even ids would answer our pings, and we send none. */
	if (id % 2 == 0)
		return 0;
	int r = queue_control(s, SPDY_PING, id, 0, 1, err);
	return r < 0 ? uk_err_ctx_r(err, r, "spdy PING reply") : 0;
}

static int on_goaway(struct spdy_session *s, const struct spdy_frame *f, const uint8_t *p, uk_error *err)
{
	/* SPDY/3.1's GOAWAY is 8 bytes; SPDY/3's was 4, and a status is then OK. */
	if (f->length != 8 && f->length != 4)
		return session_error(s, err, "GOAWAY of %u bytes, not 8", f->length);
	uint32_t last = get32(p) & 0x7fffffffu, status = f->length == 8 ? get32(p + 4) : 0;
	bool first = !s->goaway_recv;
	s->goaway_recv = true;
	if (first && s->cb.goaway)
		s->cb.goaway(s->ud, last, status);
	return 0;
}

static int on_control(struct spdy_session *s, const struct spdy_frame *f, const uint8_t *p, uk_error *err)
{
	if (f->version != SPDY_VERSION)
		return session_error(s, err, "control frame version %u, not %u", f->version, SPDY_VERSION);
	switch (f->type) {
	case SPDY_SYN_STREAM:
		return on_syn_stream(s, f, p, err);
	case SPDY_SYN_REPLY:
		return session_error(s, err, "SYN_REPLY from the client, which answers no stream of ours");
	case SPDY_RST_STREAM:
		return on_rst(s, f, p, err);
	case SPDY_PING:
		return on_ping(s, f, p, err);
	case SPDY_GOAWAY:
		return on_goaway(s, f, p, err);
	case SPDY_HEADERS: {
		if (f->length < 4)
			return session_error(s, err, "HEADERS of %u bytes is shorter than 4", f->length);
		struct spdy_headers h;
		/* Nothing here needs late headers, but the decompressor must see the block. */
		int r = read_headers(s, p + 4, f->length - 4, "HEADERS", &h, err);
		if (r < 0 || !(f->flags & SPDY_FLAG_FIN))
			return r;
		return stream_input(s, get32(p) & 0x7fffffffu, NULL, 0, true, err);
	}
	case SPDY_WINDOW_UPDATE:
		if (f->length != 8)
			return session_error(s, err, "WINDOW_UPDATE of %u bytes, not 8", f->length);
		return 0; /* no flow control: spdystream has none */
	default:
		return 0; /* SETTINGS and unknown types are ignored, as the protocol asks */
	}
}

/* One whole frame: the 8-byte header, then f->length bytes. */
static int handle_frame(struct spdy_session *s, const uint8_t *frame, uk_error *err)
{
	struct spdy_frame f;
	spdy_frame_parse(frame, &f);
	const uint8_t *p = frame + SPDY_FRAME_HEADER;
	if (f.control)
		return on_control(s, &f, p, err);
	if (f.stream_id == 0)
		return session_error(s, err, "DATA frame on stream 0");
	return stream_input(s, f.stream_id, p, f.length, f.flags & SPDY_FLAG_FIN, err);
}

static int check_header(struct spdy_session *s, const uint8_t *h, uint32_t *len, uk_error *err)
{
	struct spdy_frame f;
	spdy_frame_parse(h, &f);
	if (f.length > s->lim.max_frame)
		return session_error(s, err, "%s frame of %u bytes is over %zu (max_frame)",
				     f.control ? "control" : "DATA", f.length, s->lim.max_frame);
	*len = SPDY_FRAME_HEADER + f.length;
	return 0;
}

/* Room in s->in for a frame of need bytes (at most max_frame + 8, checked before). */
static int in_reserve(struct spdy_session *s, size_t need, uk_error *err)
{
	if (need <= s->in_cap)
		return 0;
	uint8_t *p = realloc(s->in, need);
	if (!p)
		return uk_err(err, ENOMEM, "spdy input buffer of %zu bytes", need);
	s->in = p;
	s->in_cap = need;
	return 0;
}

static int input(struct spdy_session *s, const uint8_t *p, size_t n, uk_error *err)
{
	while (n > 0 && !s->free_requested) {
		uint32_t need = 0;
		int r;
		/* Whole frames in the caller's buffer need no copy. */
		if (s->in_len == 0 && n >= SPDY_FRAME_HEADER) {
			if ((r = check_header(s, p, &need, err)) < 0)
				return r;
			if (n >= need) {
				if ((r = handle_frame(s, p, err)) < 0)
					return r;
				p += need;
				n -= need;
				continue;
			}
		}
		size_t take = s->in_len < SPDY_FRAME_HEADER ? SPDY_FRAME_HEADER - s->in_len : 0;
		if (take == 0) {
			if ((r = check_header(s, s->in, &need, err)) < 0 || (r = in_reserve(s, need, err)) < 0)
				return r;
			take = need - s->in_len;
		}
		take = take < n ? take : n;
		memcpy(s->in + s->in_len, p, take);
		s->in_len += take;
		p += take;
		n -= take;
		if (s->in_len < SPDY_FRAME_HEADER)
			return 0;
		if ((r = check_header(s, s->in, &need, err)) < 0)
			return r;
		if (s->in_len < need)
			continue;
		s->in_len = 0;
		if ((r = handle_frame(s, s->in, err)) < 0)
			return r;
	}
	return 0;
}

int spdy_session_input(struct spdy_session *s, const uint8_t *p, size_t n, uk_error *err)
{
	if (s->free_requested)
		return uk_err(err, ECANCELED, "spdy session: freed");
	if (s->failed)
		return uk_err(err, EPROTO, "spdy session: input after a protocol error");
	if (s->busy)
		return uk_err(err, EDEADLK, "spdy session: input from inside a callback");
	s->busy++;
	return leave(s, input(s, p, n, err));
}
