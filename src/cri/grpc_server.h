/* A unary gRPC server on the gRPC C core: a bounded pool of workers, each serving one
 * call at a time from its own completion queue, so a slow call only holds its worker. */
#ifndef UK_GRPC_SERVER_H
#define UK_GRPC_SERVER_H

#include <protobuf-c/protobuf-c.h>

#include "../common/error.h"
#include "arena.h"

/* A handler fills *resp (allocated in the call's arena) or returns -errno with err set;
 * the errno becomes the gRPC status (see errno_to_grpc_status). */
typedef int (*grpc_handler_fn)(void *userdata, arena *a, const ProtobufCMessage *req,
			       ProtobufCMessage **resp, uk_error *err);

struct grpc_method {
	const char *path; /* "/runtime.v1.RuntimeService/Version" */
	const ProtobufCMessageDescriptor *input;
	grpc_handler_fn fn; /* NULL: UNIMPLEMENTED */
	const char *unimplemented_msg;
};

struct grpc_server_config {
	const char *socket_path;
	unsigned socket_mode; /* e.g. 0660 */
	unsigned workers;
	int max_message_bytes;
	const struct grpc_method *methods;
	size_t n_methods;
	void *userdata;
};

typedef struct uk_grpc_server uk_grpc_server;

int uk_grpc_server_start(const struct grpc_server_config *cfg, uk_grpc_server **ret, uk_error *err);
/* Stop accepting calls, let the ones in flight finish, join the workers, free. */
void uk_grpc_server_stop(uk_grpc_server *s);

int errno_to_grpc_status(int neg_errno);

#endif
