/* SPDY/3.1 as spdystream 0.2.0 (the library kubelet and crictl use) speaks it: the framing,
 * the zlib-compressed header blocks (one zlib stream per direction, SPDY's dictionary), and
 * the streams of one session, server side. A protocol engine in the style of src/qmp/qmp.c:
 * the caller owns the socket and the poll loop, feeds the bytes it read to
 * spdy_session_input, and writes what spdy_session_output holds. No I/O, no threads, no
 * globals, no logging. Every buffer has a limit; overflow is an error, never growth.
 *
 * What the engine does by itself: answers PING, ignores SETTINGS and WINDOW_UPDATE (spdystream
 * never sends WINDOW_UPDATE; no flow control), keeps the set of open streams with their
 * half-close state, refuses what the protocol forbids (a SYN_STREAM with an even or
 * non-increasing id, DATA on a stream that is not open, a frame over the limit) with
 * RST_STREAM or, for session errors, GOAWAY and -EPROTO. */
#ifndef UK_STREAM_SPDY_H
#define UK_STREAM_SPDY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"

/* RST_STREAM status codes (SPDY/3.1 section 2.6.3). */
enum spdy_rst {
	SPDY_PROTOCOL_ERROR = 1,
	SPDY_INVALID_STREAM = 2,
	SPDY_REFUSED_STREAM = 3,
	SPDY_CANCEL = 5,
	SPDY_INTERNAL_ERROR = 6,
	SPDY_STREAM_IN_USE = 8,
	SPDY_STREAM_ALREADY_CLOSED = 9,
	SPDY_FRAME_TOO_LARGE = 11,
};

/* GOAWAY status codes. */
enum spdy_goaway { SPDY_GOAWAY_OK = 0, SPDY_GOAWAY_PROTOCOL_ERROR = 1, SPDY_GOAWAY_INTERNAL_ERROR = 2 };

/* Each is documented, with its default and why, in src/stream/README.md. */
struct spdy_limits {
	size_t max_frame;        /* a frame's payload (after the 8-byte header), control or data;
				  * over it the session fails (spdystream sends one DATA frame per
				  * Write call, and kubelet's copies write 32 KiB at a time) */
	size_t max_header_block; /* a header block, decompressed */
	unsigned max_headers;    /* name/value pairs in one block */
	unsigned max_streams;    /* streams open at once; more get RST_STREAM REFUSED_STREAM */
	size_t max_output;       /* bytes queued for the socket; past it, sends fail -ENOBUFS. The
				  * engine's own PING echoes, RST_STREAMs and GOAWAY may use 4 KiB
				  * more, so they still go out when the caller's data filled it */
};

/* Defaults, documented in src/stream/README.md. */
#define SPDY_DEFAULT_LIMITS                                                                        \
	((struct spdy_limits){ .max_frame = 256 * 1024,                                            \
			       .max_header_block = 64 * 1024,                                      \
			       .max_headers = 64,                                                  \
			       .max_streams = 64,                                                  \
			       .max_output = 4 * 1024 * 1024 })

/* A header block: names lowercase (SPDY/3 requires it; an uppercase name is a protocol error),
 * values as they came (NUL-separated multiple values stay in one value). Valid during the
 * callback only. Received: name and value are NUL-terminated, value_len is exact (a value
 * may hold NULs). Sent: value_len 0 means strlen(value); names must be lowercase tokens. */
struct spdy_header {
	const char *name, *value;
	size_t value_len;
};
struct spdy_headers {
	const struct spdy_header *v;
	size_t n;
};
/* The first value of name, NULL when absent. */
const char *spdy_header_get(const struct spdy_headers *h, const char *name);

/* Callbacks, run only from inside spdy_session_input (never from a send). They may call the
 * send functions and spdy_session_free (the engine notices, in the style of qmp.c's
 * busy/free_requested guard: the rest of the input is dropped, spdy_session_input returns 0
 * and the session is gone). They may not call spdy_session_input (-EDEADLK). A negative
 * return from a callback ends the input with that error. Any callback may be NULL. */
struct spdy_callbacks {
	/* A new stream from the client (odd id). fin: the client sends nothing more on it. The
	 * receiver answers with spdy_send_syn_reply (now or later) or spdy_send_rst. */
	int (*syn_stream)(void *ud, uint32_t id, const struct spdy_headers *h, bool fin);
	/* Bytes on an open stream, one DATA frame at a time; fin: the client half-closed it (n
	 * may be 0; a HEADERS frame with FIN comes here too, with n 0). */
	int (*data)(void *ud, uint32_t id, const uint8_t *p, size_t n, bool fin);
	/* A stream is closed both ways and forgotten: the client reset it, or the engine did
	 * (STREAM_ALREADY_CLOSED: the client sent DATA after its FIN). Not called for streams
	 * the caller reset with spdy_send_rst. */
	void (*rst)(void *ud, uint32_t id, uint32_t status);
	/* The client said GOAWAY: no new streams come. */
	void (*goaway)(void *ud, uint32_t last_good_id, uint32_t status);
};

struct spdy_session;

int spdy_session_new(const struct spdy_limits *lim, const struct spdy_callbacks *cb, void *ud,
		     struct spdy_session **ret, uk_error *err);
/* Frees now, or at the end of the callback it is called from. NULL is fine. */
void spdy_session_free(struct spdy_session *s);

/* Bytes read from the socket, split anywhere. 0, or -EPROTO (a session error: a GOAWAY is
 * queued; write the output, then close; later input gets -EPROTO again), -ENOBUFS (the peer
 * sends PINGs or streams to refuse faster than it reads our answers, past max_output and
 * the reserve: close), -ENOMEM, or a callback's error. A SYN_STREAM past max_streams, after
 * our GOAWAY or unidirectional gets RST_STREAM REFUSED_STREAM and no callback; DATA on a
 * stream never opened gets RST_STREAM INVALID_STREAM; DATA on one we reset or forgot is
 * dropped. */
int spdy_session_input(struct spdy_session *s, const uint8_t *p, size_t n, uk_error *err);

/* Queue frames. id must be a stream the client opened and the session still has open
 * for sending (-ENOENT otherwise); fin half-closes our side; a stream closed both ways is
 * forgotten (the client's FIN and ours, in either order; or a RST either way), and its id
 * then gets -ENOENT. -ENOBUFS when the output would pass max_output (the caller should stop
 * reading what it copies into the session until the output drains); nothing is queued then.
 * -EPIPE after a session error or a free. SYN_REPLY comes first and once (-EINVAL for DATA
 * before it or a second one); spdy_send_data splits at max_frame, all or nothing;
 * spdy_send_rst needs the stream known (either half open); spdy_send_goaway sends once
 * (later calls return 0) with the last stream id the client opened, and afterwards new
 * streams are refused while open ones go on. */
int spdy_send_syn_reply(struct spdy_session *s, uint32_t id, const struct spdy_header *h, size_t n, bool fin,
			uk_error *err);
int spdy_send_data(struct spdy_session *s, uint32_t id, const void *p, size_t n, bool fin, uk_error *err);
int spdy_send_rst(struct spdy_session *s, uint32_t id, uint32_t status, uk_error *err);
int spdy_send_goaway(struct spdy_session *s, uint32_t status, uk_error *err);

/* The queued output: *p and the length; consume what was written. */
size_t spdy_session_output(const struct spdy_session *s, const uint8_t **p);
void spdy_session_consumed(struct spdy_session *s, size_t n);
/* Streams open (either way), and whether a GOAWAY was sent or received. */
unsigned spdy_session_streams(const struct spdy_session *s);
bool spdy_session_going_away(const struct spdy_session *s);

/* ---- framing, pure, for tests and the fuzzer ---- */

/* One frame's header: the 8 bytes. */
struct spdy_frame {
	bool control;
	uint16_t version, type; /* control frames */
	uint32_t stream_id;     /* data frames */
	uint8_t flags;
	uint32_t length;
};
#define SPDY_FRAME_HEADER 8
#define SPDY_VERSION 3
enum spdy_type {
	SPDY_SYN_STREAM = 1, SPDY_SYN_REPLY = 2, SPDY_RST_STREAM = 3, SPDY_SETTINGS = 4, SPDY_PING = 6,
	SPDY_GOAWAY = 7, SPDY_HEADERS = 8, SPDY_WINDOW_UPDATE = 9,
};
#define SPDY_FLAG_FIN 0x01
#define SPDY_FLAG_UNIDIRECTIONAL 0x02
void spdy_frame_parse(const uint8_t h[SPDY_FRAME_HEADER], struct spdy_frame *f);

/* SPDY/3's zlib dictionary (section 2.6.10.1), for tests that compress or inflate header
 * blocks as a client would. */
#define SPDY_DICTIONARY_LEN 1423
void spdy_dictionary(uint8_t d[SPDY_DICTIONARY_LEN]);

#endif
