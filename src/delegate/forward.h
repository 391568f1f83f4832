/* The delegate at the CRI edge: the router the gRPC server runs before every handler
 * (grpc_server.h, grpc_router_fn). It keeps unikd's own objects in unikd, forwards the
 * delegate's objects' calls with their bytes as they came, merges both sides' lists, and
 * records which ids are the delegate's, crash-safely, under <state_dir>/delegate/. */
#ifndef UK_DELEGATE_FORWARD_H
#define UK_DELEGATE_FORWARD_H

#include "client.h"
#include "route.h"
#include "../cri/cri.h"

struct delegate;

/* The ids the delegate owns are files in this folder of the state directory. */
#define DELEGATE_RECORDS_DIR "delegate"
/* How long start-up and Status wait for the delegate's answer. */
#define DELEGATE_PROBE_MS 2000

/* Load the delegate's records and, if it answers now, check them against its lists (one
 * that is down is checked later, when it answers a Status probe). handlers/default as in
 * route.h; endpoint unix:///PATH. */
int delegate_open(const struct delegate_config *cfg, const char *endpoint, const char *state_dir, int max_receive,
		  struct delegate **ret, uk_error *err);
void delegate_free(struct delegate *d);

/* The grpc_router_fn; userdata is the cri_context, whose `delegate` is set. */
int delegate_route_call(void *userdata, const struct grpc_method *m, arena *a, const ProtobufCMessage *req,
			ProtobufCMessage **resp, uk_error *err);

#endif
