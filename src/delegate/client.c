/* The delegate's gRPC client on the C core (client.h). One channel, shared by every pool
 * thread; one completion queue per call, so a call waits only for its own answer. */
#include "client.h"

#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/macros.h"
#include "../common/util.h"

/* Reconnect soon after the delegate comes back: gRPC's default backoff grows to 120 s, and
 * every delegated call would fail that long after a containerd restart. */
#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 1000

struct delegate_client {
	char *endpoint;
	grpc_channel *ch;
};

int delegate_client_new(const char *endpoint, int max_receive, struct delegate_client **ret, uk_error *err)
{
	_cleanup_free_ struct delegate_client *c = calloc(1, sizeof(*c));
	if (!c || !(c->endpoint = strdup(endpoint))) {
		if (c)
			free(c->endpoint);
		return uk_err(err, ENOMEM, "delegate %s: out of memory", endpoint);
	}
	grpc_init(); /* balanced in delegate_client_free; the server holds its own */
	grpc_arg args[] = {
		{ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, .value.integer = max_receive },
		{ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
		  .value.integer = RECONNECT_MIN_MS },
		{ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, .value.integer = RECONNECT_MIN_MS },
		{ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, .value.integer = RECONNECT_MAX_MS },
	};
	grpc_channel_args ca = { .num_args = ARRAY_SIZE(args), .args = args };
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	c->ch = creds ? grpc_channel_create(endpoint, creds, &ca) : NULL;
	grpc_channel_credentials_release(creds);
	if (!c->ch) {
		grpc_shutdown();
		free(c->endpoint);
		return uk_err(err, EIO, "delegate %s: cannot make a gRPC channel", endpoint);
	}
	*ret = TAKE_PTR(c);
	return 0;
}

void delegate_client_free(struct delegate_client *c)
{
	if (!c)
		return;
	grpc_channel_destroy(c->ch);
	grpc_shutdown();
	free(c->endpoint);
	free(c);
}

const char *delegate_client_endpoint(const struct delegate_client *c)
{
	return c->endpoint;
}

void delegate_answer_done(struct delegate_answer *a)
{
	grpc_byte_buffer_destroy(a->bytes);
	a->bytes = NULL;
}

static gpr_timespec deadline_of(uint64_t ns)
{
	if (ns == UINT64_MAX)
		return gpr_inf_future(GPR_CLOCK_MONOTONIC);
	uint64_t now = uk_now_mono_ns();
	uint64_t left = ns > now ? ns - now : 0;
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_nanos((int64_t)left, GPR_TIMESPAN));
}

/* Shut a call's queue down, empty it and destroy it (gRPC requires all three). */
static void drop_queue(grpc_completion_queue *cq)
{
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
}

/* Wait for the call's one batch: the call's deadline bounds the wait. */
static bool wait_batch(grpc_completion_queue *cq, void *tag)
{
	grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
	return ev.type == GRPC_OP_COMPLETE && ev.tag == tag && ev.success;
}

void delegate_call(struct delegate_client *c, const char *method, grpc_byte_buffer *req, uint64_t deadline_ns,
		   struct delegate_answer *out)
{
	*out = (struct delegate_answer){ .code = GRPC_STATUS_UNKNOWN };
	grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
	grpc_slice path = grpc_slice_from_static_string(method);
	grpc_call *call = cq ? grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, path, NULL,
							deadline_of(deadline_ns), NULL)
			     : NULL;
	if (!call) {
		if (cq)
			drop_queue(cq);
		out->code = GRPC_STATUS_UNAVAILABLE;
		snprintf(out->msg, sizeof(out->msg), "delegate %s: cannot start a call", c->endpoint);
		return;
	}
	grpc_metadata_array initial, trailing;
	grpc_metadata_array_init(&initial);
	grpc_metadata_array_init(&trailing);
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	grpc_op ops[6] = { { .op = GRPC_OP_SEND_INITIAL_METADATA } };
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = req;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &out->bytes;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
	ops[5].data.recv_status_on_client.status = &status;
	ops[5].data.recv_status_on_client.status_details = &details;
	bool ok = grpc_call_start_batch(call, ops, ARRAY_SIZE(ops), out, NULL) == GRPC_CALL_OK && wait_batch(cq, out);
	drop_queue(cq);
	if (!ok) {
		out->code = GRPC_STATUS_UNAVAILABLE;
		snprintf(out->msg, sizeof(out->msg), "delegate %s: the call failed", c->endpoint);
	} else {
		out->code = (int)status;
		size_t n = GRPC_SLICE_LENGTH(details);
		if (status == GRPC_STATUS_UNAVAILABLE) /* gRPC's word for "could not reach it" */
			snprintf(out->msg, sizeof(out->msg), "delegate %s unavailable: %.*s", c->endpoint, (int)n,
				 (const char *)GRPC_SLICE_START_PTR(details));
		else
			snprintf(out->msg, sizeof(out->msg), "%.*s", (int)n, (const char *)GRPC_SLICE_START_PTR(details));
	}
	if (out->code != GRPC_STATUS_OK)
		delegate_answer_done(out);
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&initial);
	grpc_metadata_array_destroy(&trailing);
	grpc_call_unref(call);
}

void delegate_call_bytes(struct delegate_client *c, const char *method, const void *req, size_t len,
			 uint64_t deadline_ns, struct delegate_answer *out)
{
	grpc_slice sl = grpc_slice_from_copied_buffer(req, len);
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
	grpc_slice_unref(sl);
	delegate_call(c, method, bb, deadline_ns, out);
	grpc_byte_buffer_destroy(bb);
}

uint8_t *delegate_answer_flatten(const struct delegate_answer *a, size_t *len)
{
	grpc_byte_buffer_reader rd;
	if (!a->bytes || !grpc_byte_buffer_reader_init(&rd, a->bytes))
		return NULL;
	grpc_slice sl = grpc_byte_buffer_reader_readall(&rd);
	grpc_byte_buffer_reader_destroy(&rd);
	*len = GRPC_SLICE_LENGTH(sl);
	uint8_t *p = malloc(*len ? *len : 1);
	if (p)
		memcpy(p, GRPC_SLICE_START_PTR(sl), *len);
	grpc_slice_unref(sl);
	return p;
}
