/* The server side of the control socket (src/common/vmctl.h has the protocol).
 *
 * Like the QMP client, it leaves the poll loop to its caller: vmctl_server_pollfds() gives
 * the fds to watch, vmctl_server_timeout_ms() how long the loop may wait, and
 * vmctl_server_process() does what the fds and the clock allow, without blocking. A command
 * runs the handler inside vmctl_server_process(), and its result is the reply. */
#ifndef VMW_VMCTL_SERVER_H
#define VMW_VMCTL_SERVER_H

#include <poll.h>
#include <stdint.h>

#include "../src/common/error.h"
#include "../src/common/vmctl.h"

/* Runs one command; returns 0 or -errno with err set (its message is the reply), or
 * VMCTL_ANSWER_LATER when the outcome comes later: the client then waits, unread, for
 * vmctl_server_answer(), or its deadline (renewed then) answers it with an error.
 * fds[0..n_fds) came with the line (only for a command that takes fds, VMCTL_CLAIM; O_CLOEXEC):
 * the handler keeps one by putting -1 in its place, the server closes the rest afterwards. */
typedef int (*vmctl_handler_fn)(enum vmctl_command cmd, int *fds, size_t n_fds, uk_error *err, void *userdata);
#define VMCTL_ANSWER_LATER 1
#define VMCTL_ERR_NO_OUTCOME "timed out waiting for the outcome"

struct vmctl_client {
	int fd; /* -1: a free slot */
	uint64_t deadline_ns; /* CLOCK_MONOTONIC: the line (or a pending answer) is due by then */
	bool pending; /* its command answers later (VMCTL_ANSWER_LATER) */
	bool too_many_fds; /* it sent more than VMCTL_FDS_MAX (or they were cut): answered so */
	int fds[VMCTL_FDS_MAX]; /* received with its bytes (SCM_RIGHTS), until the command runs */
	size_t n_fds;
	size_t len;
	char buf[VMCTL_LINE_MAX];
};

struct vmctl_server {
	int listen_fd;
	uint64_t timeout_ns;
	/* After EMFILE or ENFILE, accept waits until then: the listener stays readable, and
	 * polling it meanwhile would spin. */
	uint64_t accept_paused_until_ns;
	vmctl_handler_fn handler;
	void *userdata;
	struct vmctl_client clients[VMCTL_CLIENTS_MAX];
};

/* The pollfds vmctl_server_pollfds() fills: the listener, then one per client slot. */
#define VMCTL_POLLFDS (1 + VMCTL_CLIENTS_MAX)

/* Takes over listen_fd (a listening socket, made non-blocking here; -1 for none yet: init
 * again with one later); timeout_ms bounds each client. */
void vmctl_server_init(struct vmctl_server *s, int listen_fd, int timeout_ms, vmctl_handler_fn fn, void *userdata);
/* Closes the listener and every client. */
void vmctl_server_done(struct vmctl_server *s);

void vmctl_server_pollfds(const struct vmctl_server *s, uint64_t now_ns, struct pollfd p[VMCTL_POLLFDS]);
/* Milliseconds until the next deadline (rounded up), -1 when there is none. */
int vmctl_server_timeout_ms(const struct vmctl_server *s, uint64_t now_ns);
/* p: what poll() made of vmctl_server_pollfds()'s array. */
void vmctl_server_process(struct vmctl_server *s, const struct pollfd p[VMCTL_POLLFDS], uint64_t now_ns);
/* Answer every client whose command answered VMCTL_ANSWER_LATER: r and msg as a handler's. */
void vmctl_server_answer(struct vmctl_server *s, int r, const char *msg);

#endif
