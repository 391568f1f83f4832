/* The delegate's gRPC client: one channel to the delegate's CRI socket, over which unikd
 * forwards calls with their request bytes as they came and hands back the answer's bytes,
 * status and message untouched. Thread-safe: any pool thread may forward at once. */
#ifndef UK_DELEGATE_CLIENT_H
#define UK_DELEGATE_CLIENT_H

#include <grpc/grpc.h>
#include <stdint.h>

#include "../common/error.h"

struct delegate_client;

/* One answer. bytes is NULL when no message came (an error status). */
struct delegate_answer {
	grpc_byte_buffer *bytes;
	int code; /* grpc_status_code */
	char msg[UK_ERROR_MSG_MAX];
};

/* endpoint: unix:///PATH. Answers over max_receive bytes are refused by gRPC
 * (RESOURCE_EXHAUSTED), so that a delegate cannot make us hold more than a client could. */
int delegate_client_new(const char *endpoint, int max_receive, struct delegate_client **ret, uk_error *err);
void delegate_client_free(struct delegate_client *c);
const char *delegate_client_endpoint(const struct delegate_client *c);

/* Call method ("/runtime.v1.RuntimeService/ListContainers") with req (borrowed), answered
 * by deadline (CLOCK_MONOTONIC ns; UINT64_MAX: none). Always fills out; a delegate that
 * cannot be reached gives UNAVAILABLE with a message naming the endpoint. Free out with
 * delegate_answer_done. */
void delegate_call(struct delegate_client *c, const char *method, grpc_byte_buffer *req, uint64_t deadline_ns,
		   struct delegate_answer *out);
void delegate_answer_done(struct delegate_answer *a);

/* The same, with a message packed from plain bytes (the probes and the start-up lists). */
void delegate_call_bytes(struct delegate_client *c, const char *method, const void *req, size_t len,
			 uint64_t deadline_ns, struct delegate_answer *out);

/* The answer's bytes in one piece (malloc'd; *len set). NULL with no message or -ENOMEM. */
uint8_t *delegate_answer_flatten(const struct delegate_answer *a, size_t *len);

#endif
