#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/log.h"
#include "../common/util.h"
#include "grpc_server.h"

#define MAX_WORKERS 64

struct worker {
	struct uk_grpc_server *srv;
	grpc_completion_queue *cq;
	pthread_t thread;
	bool started;
};

struct uk_grpc_server {
	struct grpc_server_config cfg;
	grpc_server *server;
	grpc_completion_queue *shutdown_cq;
	struct worker workers[MAX_WORKERS];
	unsigned n_workers;
};

int errno_to_grpc_status(int r)
{
	switch (-r) {
	case 0: return GRPC_STATUS_OK;
	case ENOENT: case ESRCH: return GRPC_STATUS_NOT_FOUND;
	case EINVAL: case E2BIG: case ERANGE: case ENAMETOOLONG: return GRPC_STATUS_INVALID_ARGUMENT;
	case EEXIST: case EADDRINUSE: return GRPC_STATUS_ALREADY_EXISTS;
	case EBUSY: case ENOTEMPTY: case EALREADY: return GRPC_STATUS_FAILED_PRECONDITION;
	case ENOSPC: case EDQUOT: case ENOMEM: case EMFILE: case ENFILE: case EADDRNOTAVAIL:
		return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case ENOSYS: case EOPNOTSUPP: return GRPC_STATUS_UNIMPLEMENTED;
	case ETIMEDOUT: return GRPC_STATUS_DEADLINE_EXCEEDED;
	case EPERM: case EACCES: return GRPC_STATUS_PERMISSION_DENIED;
	case EAGAIN: case ECONNREFUSED: return GRPC_STATUS_UNAVAILABLE;
	case ECANCELED: return GRPC_STATUS_CANCELLED;
	default: return GRPC_STATUS_UNKNOWN;
	}
}

/* Run one batch and wait for it on the worker's own queue. */
static bool run_batch(struct worker *w, grpc_call *call, const grpc_op *ops, size_t n, void *tag)
{
	if (grpc_call_start_batch(call, ops, n, tag, NULL) != GRPC_CALL_OK)
		return false;
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			return false;
		if (ev.type == GRPC_OP_COMPLETE && ev.tag == tag)
			return ev.success;
	}
}

static const struct grpc_method *find_method(struct uk_grpc_server *s, grpc_slice method)
{
	size_t len = GRPC_SLICE_LENGTH(method);
	const char *p = (const char *)GRPC_SLICE_START_PTR(method);
	for (size_t i = 0; i < s->cfg.n_methods; i++)
		if (strlen(s->cfg.methods[i].path) == len && memcmp(s->cfg.methods[i].path, p, len) == 0)
			return &s->cfg.methods[i];
	return NULL;
}

static void serve_call(struct worker *w, grpc_call *call, grpc_call_details *details)
{
	struct uk_grpc_server *s = w->srv;
	grpc_byte_buffer *in = NULL, *out = NULL;
	ProtobufCMessage *req = NULL, *resp = NULL;
	arena *a = arena_new();
	uk_error err = { 0 };
	int code = GRPC_STATUS_OK;
	const char *msg = NULL;
	char path[256];
	int cancelled = 0;
	uint64_t t0 = uk_now_mono_ns();

	size_t plen = GRPC_SLICE_LENGTH(details->method);
	snprintf(path, sizeof(path), "%.*s", (int)(plen < 255 ? plen : 255),
		 (const char *)GRPC_SLICE_START_PTR(details->method));

	grpc_op recv = { .op = GRPC_OP_RECV_MESSAGE };
	recv.data.recv_message.recv_message = &in;
	if (!run_batch(w, call, &recv, 1, &recv))
		goto done;

	const struct grpc_method *m = find_method(s, details->method);
	if (!m) {
		code = GRPC_STATUS_UNIMPLEMENTED;
		msg = arena_printf(a, "unknown method %s", path);
	} else if (!m->fn) {
		code = GRPC_STATUS_UNIMPLEMENTED;
		msg = arena_printf(a, "%s: %s", path, m->unimplemented_msg ? m->unimplemented_msg : "not implemented");
	} else if (!in) {
		code = GRPC_STATUS_INVALID_ARGUMENT;
		msg = "request message missing";
	} else {
		grpc_byte_buffer_reader rd;
		if (!grpc_byte_buffer_reader_init(&rd, in)) {
			code = GRPC_STATUS_INTERNAL;
			msg = "cannot read the request";
		} else {
			grpc_slice sl = grpc_byte_buffer_reader_readall(&rd);
			grpc_byte_buffer_reader_destroy(&rd);
			req = protobuf_c_message_unpack(m->input, NULL, GRPC_SLICE_LENGTH(sl), GRPC_SLICE_START_PTR(sl));
			grpc_slice_unref(sl);
			if (!req) {
				code = GRPC_STATUS_INVALID_ARGUMENT;
				msg = "malformed request message";
			} else {
				int r = m->fn(s->cfg.userdata, a, req, &resp, &err);
				if (r < 0) {
					code = errno_to_grpc_status(r);
					msg = err.msg[0] ? err.msg : strerror(-r);
				} else if (!resp) {
					code = GRPC_STATUS_INTERNAL;
					msg = "handler returned no response";
				}
			}
		}
	}

	if (code == GRPC_STATUS_OK) {
		size_t n = protobuf_c_message_get_packed_size(resp);
		uint8_t *buf = arena_alloc(a, n);
		protobuf_c_message_pack(resp, buf);
		grpc_slice sl = grpc_slice_from_copied_buffer((const char *)buf, n);
		out = grpc_raw_byte_buffer_create(&sl, 1);
		grpc_slice_unref(sl);
	}
	grpc_slice details_slice = grpc_slice_from_copied_string(msg ? msg : "");
	grpc_op ops[4] = { { .op = GRPC_OP_SEND_INITIAL_METADATA } };
	size_t nops = 1;
	if (out) {
		ops[nops].op = GRPC_OP_SEND_MESSAGE;
		ops[nops++].data.send_message.send_message = out;
	}
	ops[nops].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[nops].data.send_status_from_server.status = (grpc_status_code)code;
	ops[nops++].data.send_status_from_server.status_details = &details_slice;
	ops[nops].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[nops++].data.recv_close_on_server.cancelled = &cancelled;
	run_batch(w, call, ops, nops, ops);
	grpc_slice_unref(details_slice);
	if (code == GRPC_STATUS_OK)
		log_debug("rpc=%s code=0 ms=%.3f", path, (double)(uk_now_mono_ns() - t0) / 1e6);
	else
		log_info("rpc=%s code=%d ms=%.3f error=\"%s\"", path, code, (double)(uk_now_mono_ns() - t0) / 1e6,
			 msg);
done:
	if (req)
		protobuf_c_message_free_unpacked(req, NULL);
	grpc_byte_buffer_destroy(in);
	grpc_byte_buffer_destroy(out);
	arena_free(a);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	for (;;) {
		grpc_call *call = NULL;
		grpc_call_details details;
		grpc_metadata_array md;
		grpc_call_details_init(&details);
		grpc_metadata_array_init(&md);
		int tag;
		if (grpc_server_request_call(w->srv->server, &call, &details, &md, w->cq, w->cq, &tag) != GRPC_CALL_OK) {
			grpc_call_details_destroy(&details);
			grpc_metadata_array_destroy(&md);
			break;
		}
		grpc_event ev = grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		bool ok = ev.type == GRPC_OP_COMPLETE && ev.success;
		if (ok)
			serve_call(w, call, &details);
		if (call)
			grpc_call_unref(call);
		grpc_call_details_destroy(&details);
		grpc_metadata_array_destroy(&md);
		if (!ok)
			break; /* the server is shutting down */
	}
	return NULL;
}

int uk_grpc_server_start(const struct grpc_server_config *cfg, uk_grpc_server **ret, uk_error *err)
{
	if (cfg->workers < 1 || cfg->workers > MAX_WORKERS)
		return uk_err(err, EINVAL, "workers must be within 1..%d", MAX_WORKERS);
	struct uk_grpc_server *s = calloc(1, sizeof(*s));
	if (!s)
		return uk_err(err, ENOMEM, "out of memory");
	s->cfg = *cfg;
	grpc_init();

	grpc_arg args[] = {
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, .value.integer = cfg->max_message_bytes },
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, .value.integer = cfg->max_message_bytes },
	};
	grpc_channel_args chargs = { .num_args = ARRAY_SIZE(args), .args = args };
	s->server = grpc_server_create(&chargs, NULL);
	s->shutdown_cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_server_register_completion_queue(s->server, s->shutdown_cq, NULL);
	s->n_workers = cfg->workers;
	for (unsigned i = 0; i < s->n_workers; i++) {
		s->workers[i].srv = s;
		s->workers[i].cq = grpc_completion_queue_create_for_next(NULL);
		grpc_server_register_completion_queue(s->server, s->workers[i].cq, NULL);
	}

	char addr[4200];
	snprintf(addr, sizeof(addr), "unix:%s", cfg->socket_path);
	unlink(cfg->socket_path); /* the caller holds the single-instance lock */
	grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
	int port = grpc_server_add_http2_port(s->server, addr, creds);
	grpc_server_credentials_release(creds);
	if (!port) {
		int r = uk_err(err, EADDRINUSE, "cannot listen on %s", cfg->socket_path);
		for (unsigned i = 0; i < s->n_workers; i++) {
			grpc_completion_queue_shutdown(s->workers[i].cq);
			grpc_completion_queue_destroy(s->workers[i].cq);
		}
		grpc_server_destroy(s->server);
		grpc_completion_queue_shutdown(s->shutdown_cq);
		grpc_completion_queue_destroy(s->shutdown_cq);
		free(s);
		grpc_shutdown();
		return r;
	}
	grpc_server_start(s->server);
	if (chmod(cfg->socket_path, cfg->socket_mode) < 0)
		log_warn("msg=\"cannot chmod the socket\" path=%s error=\"%s\"", cfg->socket_path, strerror(errno));
	for (unsigned i = 0; i < s->n_workers; i++) {
		if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0) {
			uk_grpc_server_stop(s);
			return uk_err(err, EAGAIN, "cannot start worker threads");
		}
		s->workers[i].started = true;
	}
	*ret = s;
	return 0;
}

void uk_grpc_server_stop(uk_grpc_server *s)
{
	if (!s)
		return;
	int tag;
	grpc_server_shutdown_and_notify(s->server, s->shutdown_cq, &tag);
	/* Calls in flight finish; pending requests for new calls fail and workers return. */
	grpc_completion_queue_pluck(s->shutdown_cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	for (unsigned i = 0; i < s->n_workers; i++)
		if (s->workers[i].started)
			pthread_join(s->workers[i].thread, NULL);
	for (unsigned i = 0; i < s->n_workers; i++) {
		grpc_completion_queue_shutdown(s->workers[i].cq);
		while (grpc_completion_queue_next(s->workers[i].cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
		       GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(s->workers[i].cq);
	}
	grpc_server_destroy(s->server);
	grpc_completion_queue_shutdown(s->shutdown_cq);
	grpc_completion_queue_destroy(s->shutdown_cq);
	unlink(s->cfg.socket_path);
	free(s);
	grpc_shutdown();
}
