/* vmwrapper's control protocol: framing, parsing and the client; see vmctl.h. */
#include <poll.h>
#include <stdbool.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>

#include "util.h"
#include "vmctl.h"

static bool is_control(char c)
{
	return (unsigned char)c < 0x20 || c == 0x7f;
}

int vmctl_line_take(char *buf, size_t len, size_t max, size_t *line_len)
{
	for (size_t i = 0; i < len && i < max; i++) {
		if (buf[i] == '\n') {
			buf[i] = '\0';
			*line_len = i;
			return 1;
		}
		if (is_control(buf[i]))
			return -EBADMSG;
	}
	return len >= max ? -EMSGSIZE : 0;
}

int vmctl_parse_command(const char *line, enum vmctl_command *ret)
{
	static const struct {
		const char *name;
		enum vmctl_command cmd;
	} commands[] = {
		{ VMCTL_CMD_REOPEN_LOG, VMCTL_REOPEN_LOG },
		{ VMCTL_CMD_CLAIM, VMCTL_CLAIM },
	};
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (strcmp(line, commands[i].name) == 0) {
			*ret = commands[i].cmd;
			return 0;
		}
	return -EINVAL;
}

size_t vmctl_format_reply(char out[VMCTL_REPLY_MAX], int r, const char *msg)
{
	static const char prefix[] = VMCTL_REPLY_ERROR " ", cut[] = "...";
	size_t n = 0;
	if (r >= 0) {
		memcpy(out, VMCTL_REPLY_OK, sizeof(VMCTL_REPLY_OK) - 1);
		n = sizeof(VMCTL_REPLY_OK) - 1;
		out[n++] = '\n';
		out[n] = '\0';
		return n;
	}
	if (!msg || !*msg)
		msg = "unknown error";
	memcpy(out, prefix, sizeof(prefix) - 1);
	n = sizeof(prefix) - 1;
	/* Room for the message: the "\n" and the NUL come after it. */
	size_t room = VMCTL_REPLY_MAX - n - 2, len = strlen(msg);
	bool too_long = len > room;
	if (too_long) {
		len = room - (sizeof(cut) - 1);
		/* Cut between characters, not inside a UTF-8 sequence. */
		while (len > 0 && ((unsigned char)msg[len] & 0xc0) == 0x80)
			len--;
	}
	for (size_t i = 0; i < len; i++)
		out[n++] = is_control(msg[i]) ? ' ' : msg[i];
	if (too_long) {
		memcpy(out + n, cut, sizeof(cut) - 1);
		n += sizeof(cut) - 1;
	}
	out[n++] = '\n';
	out[n] = '\0';
	return n;
}

int vmctl_parse_reply(const char *line, const char **msg)
{
	static const char prefix[] = VMCTL_REPLY_ERROR " ";
	if (strcmp(line, VMCTL_REPLY_OK) == 0)
		return 0;
	if (strncmp(line, prefix, sizeof(prefix) - 1) == 0 && line[sizeof(prefix) - 1]) {
		*msg = line + sizeof(prefix) - 1;
		return -EIO;
	}
	return -EPROTO;
}

/* Read one reply line into buf (VMCTL_REPLY_MAX bytes) before deadline (CLOCK_MONOTONIC). */
static int read_reply(int fd, char *buf, uint64_t deadline, const char *command, int timeout_ms, uk_error *err)
{
	size_t len = 0, line_len = 0;
	for (;;) {
		int r = vmctl_line_take(buf, len, VMCTL_REPLY_MAX, &line_len);
		if (r > 0)
			return 0;
		if (r == -EMSGSIZE)
			return uk_err(err, EPROTO, "%s: the reply is longer than %d bytes", command, VMCTL_REPLY_MAX);
		if (r < 0)
			return uk_err(err, EPROTO, "%s: the reply holds a control character", command);
		uint64_t now = uk_now_mono_ns();
		if (now >= deadline)
			return uk_err(err, ETIMEDOUT, "%s: no answer from vmwrapper within %d ms", command, timeout_ms);
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int n = poll(&p, 1, (int)((deadline - now + 999999) / 1000000));
		if (n < 0 && errno != EINTR)
			return uk_err_errno(err, errno, "%s: poll", command);
		if (n <= 0)
			continue;
		ssize_t k = read(fd, buf + len, VMCTL_REPLY_MAX - len);
		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k < 0)
			return uk_err_errno(err, errno, "%s: read the reply", command);
		if (k == 0)
			return uk_err(err, ECONNRESET, "%s: vmwrapper closed the connection without an answer", command);
		len += (size_t)k;
	}
}

int vmctl_request(const char *vm_dir, const char *command, int timeout_ms, char *reply, size_t reply_len,
		  uk_error *err)
{
	return vmctl_request_fds(vm_dir, command, NULL, 0, timeout_ms, reply, reply_len, err);
}

int vmctl_request_fds(const char *vm_dir, const char *command, const int *fds, size_t n_fds, int timeout_ms,
		      char *reply, size_t reply_len, uk_error *err)
{
	char line[VMCTL_LINE_MAX], buf[VMCTL_REPLY_MAX];
	size_t n = strlen(command), line_len;
	if (n == 0 || n + 1 > sizeof(line))
		return uk_err(err, EINVAL, "command: must be 1..%d bytes", VMCTL_LINE_MAX - 1);
	memcpy(line, command, n);
	line[n] = '\n';
	if (vmctl_line_take(line, n + 1, sizeof(line), &line_len) != 1 || line_len != n)
		return uk_err(err, EINVAL, "command: must be one line without control characters");
	line[n] = '\n';
	if (n_fds > VMCTL_FDS_MAX)
		return uk_err(err, E2BIG, "%s: %zu fds, at most %d", command, n_fds, VMCTL_FDS_MAX);
	for (size_t i = 0; i < n_fds; i++)
		if (fds[i] < 0)
			return uk_err(err, EBADF, "%s: fd %zu is %d", command, i, fds[i]);

	uint64_t deadline = uk_now_mono_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000ull;
	_cleanup_free_ char *path = NULL;
	if (asprintf(&path, "%s/%s", vm_dir, VMCTL_SOCKET) < 0)
		return uk_err(err, ENOMEM, "out of memory");
	_cleanup_close_ int fd = uk_unix_connect(path, err);
	if (fd < 0)
		return fd;
	/* A new socket's buffer takes the whole line: the send never waits. */
	ssize_t w = uk_send_fds(fd, line, n + 1, fds, n_fds, MSG_NOSIGNAL | MSG_DONTWAIT); /* fds with the line */
	if (w < 0)
		return uk_err_errno(err, errno, "%s: send to %s", command, path);
	if ((size_t)w != n + 1)
		return uk_err(err, EIO, "%s: send to %s: short write", command, path);
	int r = read_reply(fd, buf, deadline, command, timeout_ms, err);
	if (r < 0)
		return r;

	const char *msg = NULL;
	r = vmctl_parse_reply(buf, &msg);
	if (r == -EPROTO)
		return uk_err(err, EPROTO, "%s: not a reply: \"%s\"", command, buf);
	if (reply) {
		if (strlen(buf) >= reply_len)
			return uk_err(err, EMSGSIZE, "%s: the reply does not fit %zu bytes", command, reply_len);
		strcpy(reply, buf);
	}
	if (r < 0)
		return uk_err(err, EIO, "%s", msg);
	return 0;
}

void vmctl_claim_done(struct vmctl_claim *c)
{
	free(c->id);
	free(c->console_log);
	free(c->state_dir);
	for (unsigned i = 0; i < c->n_nets && i < VMCTL_CLAIM_NETS_MAX; i++)
		free(c->nets[i].mac);
	*c = (struct vmctl_claim){ 0 };
}

unsigned vmctl_claim_n_fds(const struct vmctl_claim *c)
{
	unsigned n = 0;
	for (unsigned i = 0; i < c->n_nets && i < VMCTL_CLAIM_NETS_MAX; i++)
		n += c->nets[i].vhost ? 2 : 1;
	return n;
}

/* A MAC whose first octet's group bit is clear: a NIC's own address, never a multicast or
 * broadcast one. */
static int check_mac(unsigned i, const char *mac, uk_error *err)
{
	char low[18];
	if (!uk_mac_parse(mac, low))
		return uk_err(err, EINVAL, "claim: field \"net[%u].mac\" must look like 02:00:00:00:00:01", i);
	if (strchr("13579bdf", low[1]))
		return uk_err(err, EINVAL, "claim: field \"net[%u].mac\" is %s, a multicast address: it must be unicast",
			      i, mac);
	return 0;
}

/* An absolute path without control characters, shorter than PATH_MAX. */
static int check_path(const char *field, const char *path, uk_error *err)
{
	if (path[0] != '/')
		return uk_err(err, EINVAL, "claim: field \"%s\" must be an absolute path", field);
	if (strlen(path) >= PATH_MAX)
		return uk_err(err, ENAMETOOLONG, "claim: field \"%s\" is longer than %d bytes", field, PATH_MAX - 1);
	for (const char *p = path; *p; p++)
		if (is_control(*p))
			return uk_err(err, EINVAL, "claim: field \"%s\" holds a control character", field);
	return 0;
}

static int check_claim(const struct vmctl_claim *c, uk_error *err)
{
	int r;
	if (!c->id || !uk_id_valid(c->id))
		return uk_err(err, EINVAL, "claim: field \"id\" must match [A-Za-z0-9][A-Za-z0-9_.-]* without \"..\" "
			      "(at most %d bytes)", UK_ID_MAX - 1);
	if (!c->console_log)
		return uk_err(err, EINVAL, "claim: field \"console_log\" is required");
	if ((r = check_path("console_log", c->console_log, err)) < 0)
		return r;
	if (c->state_dir && (r = check_path("state_dir", c->state_dir, err)) < 0)
		return r;
	if (c->log_format != VMCTL_LOG_CRI && c->log_format != VMCTL_LOG_RAW)
		return uk_err(err, EINVAL, "claim: field \"log_format\" must be \"cri\" or \"raw\"");
	if (c->n_nets > VMCTL_CLAIM_NETS_MAX)
		return uk_err(err, E2BIG, "claim: field \"net\" has %u entries, at most %d", c->n_nets,
			      VMCTL_CLAIM_NETS_MAX);
	for (unsigned i = 0; i < c->n_nets; i++) {
		if (!c->nets[i].mac)
			return uk_err(err, EINVAL, "claim: field \"net[%u].mac\" is required", i);
		if ((r = check_mac(i, c->nets[i].mac, err)) < 0)
			return r;
	}
	return 0;
}

/* A string member: a copy in *ret, refusing a NUL inside (JSON's "\u0000"). */
static int claim_string(const char *key, json_object *v, char **ret, uk_error *err)
{
	if (!json_object_is_type(v, json_type_string))
		return uk_err(err, EINVAL, "claim: field \"%s\" must be a string", key);
	if (strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))
		return uk_err(err, EINVAL, "claim: field \"%s\" must not hold a NUL character", key);
	free(*ret);
	if (!(*ret = strdup(json_object_get_string(v))))
		return uk_err(err, ENOMEM, "out of memory");
	return 0;
}

/* One entry of "net": {"mac": "…", "vhost": false}; the MAC is checked by check_claim. */
static int claim_net(struct vmctl_claim_net *n, unsigned i, json_object *e, uk_error *err)
{
	char field[32];
	int r;
	if (!json_object_is_type(e, json_type_object))
		return uk_err(err, EINVAL, "claim: field \"net[%u]\" must be an object", i);
	json_object_object_foreach(e, key, v)
	{
		snprintf(field, sizeof(field), "net[%u].%s", i, strcmp(key, "mac") == 0 ? "mac" : "vhost");
		if (strcmp(key, "mac") == 0) {
			if ((r = claim_string(field, v, &n->mac, err)) < 0)
				return r;
		} else if (strcmp(key, "vhost") == 0) {
			if (!json_object_is_type(v, json_type_boolean))
				return uk_err(err, EINVAL, "claim: field \"%s\" must be true or false", field);
			n->vhost = json_object_get_boolean(v);
		} else {
			return uk_err(err, EINVAL, "claim: field \"net[%u].%.64s\" is not known", i, key);
		}
	}
	return 0;
}

static int claim_nets(struct vmctl_claim *c, json_object *v, uk_error *err)
{
	if (!json_object_is_type(v, json_type_array))
		return uk_err(err, EINVAL, "claim: field \"net\" must be an array");
	size_t n = json_object_array_length(v);
	if (n > VMCTL_CLAIM_NETS_MAX)
		return uk_err(err, E2BIG, "claim: field \"net\" has %zu entries, at most %d", n, VMCTL_CLAIM_NETS_MAX);
	/* A repeated "net" counts once, the last, as the other members do. */
	for (unsigned i = 0; i < c->n_nets; i++)
		free(c->nets[i].mac);
	memset(c->nets, 0, sizeof(c->nets));
	c->n_nets = (unsigned)n;
	for (unsigned i = 0; i < c->n_nets; i++) {
		int r = claim_net(&c->nets[i], i, json_object_array_get_idx(v, i), err);
		if (r < 0)
			return r;
	}
	return 0;
}

static int claim_member(struct vmctl_claim *c, const char *key, json_object *v, uk_error *err)
{
	if (strcmp(key, "net") == 0)
		return claim_nets(c, v, err);
	if (strcmp(key, "id") == 0)
		return claim_string(key, v, &c->id, err);
	if (strcmp(key, "console_log") == 0)
		return claim_string(key, v, &c->console_log, err);
	if (strcmp(key, "state_dir") == 0)
		return json_object_is_type(v, json_type_null) ? 0 : claim_string(key, v, &c->state_dir, err);
	if (strcmp(key, "stdin") == 0) {
		if (!json_object_is_type(v, json_type_boolean))
			return uk_err(err, EINVAL, "claim: field \"stdin\" must be true or false");
		c->input = json_object_get_boolean(v);
		return 0;
	}
	if (strcmp(key, "log_format") == 0) {
		const char *f = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
		if (strcmp(f, "cri") != 0 && strcmp(f, "raw") != 0)
			return uk_err(err, EINVAL, "claim: field \"log_format\" must be \"cri\" or \"raw\"");
		c->log_format = strcmp(f, "raw") == 0 ? VMCTL_LOG_RAW : VMCTL_LOG_CRI;
		return 0;
	}
	return uk_err(err, EINVAL, "claim: field \"%s\" is not known", key);
}

int vmctl_claim_parse(const char *json, struct vmctl_claim *ret, uk_error *err)
{
	struct vmctl_claim c = { 0 };
	enum json_tokener_error jerr;
	int r = 0;
	if (strlen(json) > VMCTL_CLAIM_MAX)
		return uk_err(err, E2BIG, "claim: longer than %d bytes", VMCTL_CLAIM_MAX);
	_cleanup_json_ json_object *o = json_tokener_parse_verbose(json, &jerr);
	if (!o)
		return uk_err(err, EINVAL, "claim: not JSON: %s", json_tokener_error_desc(jerr));
	if (!json_object_is_type(o, json_type_object))
		return uk_err(err, EINVAL, "claim: must be a JSON object");
	json_object_object_foreach(o, key, v)
	{
		if ((r = claim_member(&c, key, v, err)) < 0)
			break;
	}
	if (r >= 0)
		r = check_claim(&c, err);
	if (r < 0) {
		vmctl_claim_done(&c);
		return r;
	}
	*ret = c;
	return 0;
}

int vmctl_claim_write(const char *vm_dir, const struct vmctl_claim *c, uk_error *err)
{
	int r = check_claim(c, err);
	if (r < 0)
		return r;
	_cleanup_json_ json_object *o = json_object_new_object();
	_cleanup_free_ char *path = NULL;
	if (!o || asprintf(&path, "%s/%s", vm_dir, VMCTL_CLAIM_FILE) < 0)
		return uk_err(err, ENOMEM, "out of memory");
	json_object_object_add(o, "id", json_object_new_string(c->id));
	json_object_object_add(o, "console_log", json_object_new_string(c->console_log));
	json_object_object_add(o, "log_format", json_object_new_string(c->log_format == VMCTL_LOG_RAW ? "raw" : "cri"));
	json_object_object_add(o, "stdin", json_object_new_boolean(c->input));
	if (c->state_dir)
		json_object_object_add(o, "state_dir", json_object_new_string(c->state_dir));
	/* Without nets, no "net": a claim as before, byte for byte. */
	if (c->n_nets > 0) {
		json_object *nets = json_object_new_array();
		json_object_object_add(o, "net", nets);
		for (unsigned i = 0; nets && i < c->n_nets; i++) {
			json_object *n = json_object_new_object();
			json_object_array_add(nets, n);
			json_object_object_add(n, "mac", json_object_new_string(c->nets[i].mac));
			json_object_object_add(n, "vhost", json_object_new_boolean(c->nets[i].vhost));
		}
	}
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	return uk_write_file_atomic(path, s, strlen(s), 0600, err);
}
