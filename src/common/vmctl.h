/* vmwrapper's control socket: requests that must be answered once they are done, which a
 * signal cannot do (docs/architecture.md, "vmwrapper's control socket").
 *
 * vmwrapper listens on VMCTL_SOCKET in the VM's state directory, bound before QEMU starts.
 * A client connects, sends one request line and reads one reply line; vmwrapper then
 * closes the connection:
 *
 *     -> reopen-log\n
 *     <- ok\n                              the new log file is in use
 *     <- error <message>\n                 it is not; <message> says why
 *
 *     -> claim\n                            a pool VM: take VMCTL_CLAIM_FILE, go
 *     <- ok\n                              the log is open and the guest runs
 *     <- error <message>\n
 *
 * A claim's details do not fit a line: the caller first writes VMCTL_CLAIM_FILE into the
 * VM's state directory (vmctl_claim_write()), then sends "claim". A claim whose file has
 * "net" entries sends their fds along with the line (SCM_RIGHTS, vmctl_request_fds()), in
 * order: for each net, its tap, then its vhost-net fd when "vhost" is true. Only "claim"
 * takes fds: any other known command that brings some is answered VMCTL_ERR_FDS (an unknown
 * one VMCTL_ERR_UNKNOWN), and the server closes every fd it received and did not use.
 *
 * Everything is bounded: a request line of at most VMCTL_LINE_MAX bytes with its "\n", a
 * reply of at most VMCTL_REPLY_MAX, VMCTL_CLIENTS_MAX clients at once (the next ones are
 * closed at once) and VMCTL_CLIENT_TIMEOUT_MS for a client to send its line.
 *
 * The framing and the parsing are pure functions over byte buffers (tests/unit/test_vmctl.c);
 * vmctl_request() is the client that unikd uses. */
#ifndef UK_VMCTL_H
#define UK_VMCTL_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define VMCTL_SOCKET "ctl.sock"
#define VMCTL_LINE_MAX 256   /* a request line, its "\n" included */
#define VMCTL_REPLY_MAX 1024 /* a reply line, its "\n" included */
#define VMCTL_CLIENTS_MAX 4
#define VMCTL_CLIENT_TIMEOUT_MS 5000
/* fds a connection may bring (SCM_RIGHTS): a tap and a vhost-net fd for each of the claim's
 * nets. More is refused (VMCTL_ERR_TOO_MANY_FDS), and all of them closed. */
#define VMCTL_FDS_MAX 12

/* The commands. */
#define VMCTL_CMD_REOPEN_LOG "reopen-log"
#define VMCTL_CMD_CLAIM "claim"

/* The replies: "ok", or "error" and a space and a message of one line. */
#define VMCTL_REPLY_OK "ok"
#define VMCTL_REPLY_ERROR "error"

/* The messages of the protocol's own errors. */
#define VMCTL_ERR_UNKNOWN "unknown command"
#define VMCTL_ERR_TOO_LONG "line too long"
#define VMCTL_ERR_BAD_LINE "control character in the line"
#define VMCTL_ERR_TIMEOUT "timed out waiting for the line"
#define VMCTL_ERR_BUSY "too many clients"
#define VMCTL_ERR_CLAIMED "already claimed"
#define VMCTL_ERR_NOT_POOL "not a pool VM"
/* In a claim's error when a NIC's plug failed half-way (the VM is then stopped). */
#define VMCTL_ERR_PLUG "the NIC could not be plugged"
#define VMCTL_ERR_FDS "this command takes no fds"
#define VMCTL_ERR_TOO_MANY_FDS "too many fds"

enum vmctl_command { VMCTL_REOPEN_LOG, VMCTL_CLAIM };

/* The claim of a pool VM (vmwrapper/README.md, "Pool VMs"): a JSON object in the file
 * VMCTL_CLAIM_FILE of the VM's state directory, at most VMCTL_CLAIM_MAX bytes:
 *
 *     {"id": "<container id>", "console_log": "/abs/path", "log_format": "cri",
 *      "stdin": false, "state_dir": "/abs/path"}
 *
 * id and console_log are required; log_format ("cri" or "raw") defaults to "cri", stdin to
 * false; state_dir, when given, must be the VM's state directory as it is now (after a
 * rename), which vmwrapper checks. Any other member is refused.
 *
 * A pool VM started without its NICs ("nics_at_claim" in its spec) gets them at the claim:
 *
 *     "net": [{"mac": "02:11:22:33:44:55", "vhost": false}, …]
 *
 * at most VMCTL_CLAIM_NETS_MAX entries, in the guest's order; mac is required, a unicast
 * MAC as six pairs of hex digits (either case) joined by ":"; vhost (default false) says
 * that a vhost-net fd follows the tap's. No other member. The fds come with the "claim"
 * line, not in the file. */
#define VMCTL_CLAIM_FILE "claim.json"
#define VMCTL_CLAIM_MAX (16 * 1024)
#define VMCTL_CLAIM_NETS_MAX 6 /* = VM_NETS_MAX; vmctl.h must not include vmwrapper headers */

enum vmctl_log_format { VMCTL_LOG_CRI, VMCTL_LOG_RAW };

struct vmctl_claim_net {
	char *mac;
	bool vhost; /* a vhost-net fd follows the tap's */
};

struct vmctl_claim {
	char *id;
	char *console_log;
	enum vmctl_log_format log_format;
	bool input; /* "stdin": attach.sock's clients write to the guest */
	char *state_dir; /* NULL: not checked */
	struct vmctl_claim_net nets[VMCTL_CLAIM_NETS_MAX];
	unsigned n_nets; /* 0: no "net" (the file has none) */
};

/* The fds a claim's nets bring: one each, and one more for each with vhost. */
unsigned vmctl_claim_n_fds(const struct vmctl_claim *c);

void vmctl_claim_done(struct vmctl_claim *c);
/* Parse and check a claim document; every error names the field. */
int vmctl_claim_parse(const char *json, struct vmctl_claim *ret, uk_error *err);
/* Check c and write it atomically as vm_dir/VMCTL_CLAIM_FILE (for unikd, before "claim"). */
int vmctl_claim_write(const char *vm_dir, const struct vmctl_claim *c, uk_error *err);

/* The first line in buf[0..len), a buffer that holds at most max bytes. Returns 1 when it
 * is complete: its "\n" becomes a NUL and *line_len is its length without it. Returns 0
 * when more bytes are needed (no "\n" yet and len < max), -EMSGSIZE when max bytes hold no
 * "\n", -EBADMSG when the line holds a control character (NUL and "\r" included): a line
 * is printable, so it can never smuggle a second one. */
int vmctl_line_take(char *buf, size_t len, size_t max, size_t *line_len);

/* The command a request line names; -EINVAL for anything else. */
int vmctl_parse_command(const char *line, enum vmctl_command *ret);

/* The reply line for a result: "ok\n" when r >= 0, else "error <msg>\n". msg's control
 * characters become spaces, and a message too long for VMCTL_REPLY_MAX is cut and ends
 * with "...". Returns the length (without a NUL; out is NUL-terminated as well). */
size_t vmctl_format_reply(char out[VMCTL_REPLY_MAX], int r, const char *msg);

/* A reply line without its "\n": 0 for "ok"; -EIO for "error <message>", *msg pointing at
 * the message; -EPROTO for anything else. */
int vmctl_parse_reply(const char *line, const char **msg);

/* Send one command to the vmwrapper whose state directory is vm_dir and wait up to
 * timeout_ms for its answer. The reply line (without "\n") goes to reply when it is not
 * NULL. Returns 0 for "ok"; -EIO for "error …", with the message in err; -ETIMEDOUT,
 * -ECONNRESET (closed without an answer), -EPROTO (not a reply) or the connect's error. */
int vmctl_request(const char *vm_dir, const char *command, int timeout_ms, char *reply, size_t reply_len,
		  uk_error *err);
/* As vmctl_request, with fds (at most VMCTL_FDS_MAX) sent along with the command line (SCM_RIGHTS).
 * The caller keeps its fds (the receiver gets copies). */
int vmctl_request_fds(const char *vm_dir, const char *command, const int *fds, size_t n_fds, int timeout_ms,
		      char *reply, size_t reply_len, uk_error *err);

#endif
