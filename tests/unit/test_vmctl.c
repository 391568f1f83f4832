/* Unit tests for vmwrapper's control protocol: the framing and parsing (src/common/vmctl.c),
 * and the client against vmwrapper's own server (vmwrapper/vmctl_server.c) or a fake one,
 * over real unix sockets, each server in a child process of its own. */
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "../../src/common/util.h"
#include "../../src/common/vmctl.h"
#include "../../vmwrapper/vmctl_server.h"

/* ---- framing and parsing ---- */

static int take(const char *bytes, size_t len, size_t max, char *line, size_t *line_len)
{
	char buf[VMCTL_REPLY_MAX];
	memcpy(buf, bytes, len);
	int r = vmctl_line_take(buf, len, max, line_len);
	if (r == 1)
		memcpy(line, buf, *line_len + 1);
	return r;
}

static void line_framing(void **state)
{
	(void)state;
	char line[VMCTL_REPLY_MAX];
	size_t n = 0;
	assert_int_equal(take("reopen-log\n", 11, VMCTL_LINE_MAX, line, &n), 1);
	assert_int_equal(n, 10);
	assert_string_equal(line, "reopen-log");
	/* Not complete yet, whatever is there so far. */
	assert_int_equal(take("", 0, VMCTL_LINE_MAX, line, &n), 0);
	assert_int_equal(take("reopen", 6, VMCTL_LINE_MAX, line, &n), 0);
	/* Bytes after the first line are not looked at. */
	assert_int_equal(take("a\nb\x01\n", 5, VMCTL_LINE_MAX, line, &n), 1);
	assert_string_equal(line, "a");
	/* An empty line is a line. */
	assert_int_equal(take("\n", 1, VMCTL_LINE_MAX, line, &n), 1);
	assert_int_equal(n, 0);
	/* Bytes that are not ASCII pass (a path may be UTF-8). */
	assert_int_equal(take("\xc3\xa9\xff\n", 4, VMCTL_LINE_MAX, line, &n), 1);
	assert_string_equal(line, "\xc3\xa9\xff");
}

static void line_limits(void **state)
{
	(void)state;
	char buf[VMCTL_LINE_MAX + 1], line[VMCTL_REPLY_MAX];
	size_t n = 0;
	/* max bytes with the "\n" last fit; max bytes without one do not. */
	memset(buf, 'a', sizeof(buf));
	buf[VMCTL_LINE_MAX - 1] = '\n';
	assert_int_equal(take(buf, VMCTL_LINE_MAX, VMCTL_LINE_MAX, line, &n), 1);
	assert_int_equal(n, VMCTL_LINE_MAX - 1);
	memset(buf, 'a', sizeof(buf));
	assert_int_equal(take(buf, VMCTL_LINE_MAX, VMCTL_LINE_MAX, line, &n), -EMSGSIZE);
	assert_int_equal(take(buf, VMCTL_LINE_MAX - 1, VMCTL_LINE_MAX, line, &n), 0);
	/* A "\n" beyond max is not seen. */
	buf[VMCTL_LINE_MAX] = '\n';
	assert_int_equal(take(buf, VMCTL_LINE_MAX + 1, VMCTL_LINE_MAX, line, &n), -EMSGSIZE);
	/* Control characters, also before the line is complete; "\r" and NUL included. */
	assert_int_equal(take("reopen-log\r\n", 12, VMCTL_LINE_MAX, line, &n), -EBADMSG);
	assert_int_equal(take("reo\0pen\n", 8, VMCTL_LINE_MAX, line, &n), -EBADMSG);
	assert_int_equal(take("a\tb", 3, VMCTL_LINE_MAX, line, &n), -EBADMSG);
	assert_int_equal(take("a\x7f", 2, VMCTL_LINE_MAX, line, &n), -EBADMSG);
}

static void commands(void **state)
{
	(void)state;
	enum vmctl_command c = (enum vmctl_command)-1;
	assert_int_equal(vmctl_parse_command("reopen-log", &c), 0);
	assert_int_equal(c, VMCTL_REOPEN_LOG);
	assert_int_equal(vmctl_parse_command("claim", &c), 0);
	assert_int_equal(c, VMCTL_CLAIM);
	const char *bad[] = { "", "reopen-log ", " reopen-log", "REOPEN-LOG", "reopen", "reopen-logs", "ok",
			      "claim ", "claim /x/claim.json", "Claim", "claims" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (vmctl_parse_command(bad[i], &c) != -EINVAL)
			fail_msg("\"%s\" accepted", bad[i]);
}

static void reply_format(void **state)
{
	(void)state;
	char out[VMCTL_REPLY_MAX];
	assert_int_equal(vmctl_format_reply(out, 0, "ignored"), 3);
	assert_string_equal(out, "ok\n");
	assert_int_equal(vmctl_format_reply(out, -EIO, "create /l/0.log: No such file or directory"), 49);
	assert_string_equal(out, "error create /l/0.log: No such file or directory\n");
	/* Always one line: control characters become spaces. */
	vmctl_format_reply(out, -EIO, "a\nb\rc\x01" "d\x7f");
	assert_string_equal(out, "error a b c d \n");
	/* An error always says something. */
	vmctl_format_reply(out, -EIO, NULL);
	assert_string_equal(out, "error unknown error\n");
	vmctl_format_reply(out, -EIO, "");
	assert_string_equal(out, "error unknown error\n");
}

static void reply_cut(void **state)
{
	(void)state;
	char out[VMCTL_REPLY_MAX], msg[2 * VMCTL_REPLY_MAX];
	/* The longest message that fits is whole; one byte more is cut and marked. */
	size_t fits = VMCTL_REPLY_MAX - strlen("error ") - 2;
	memset(msg, 'm', sizeof(msg));
	msg[fits] = '\0';
	assert_int_equal(vmctl_format_reply(out, -EIO, msg), VMCTL_REPLY_MAX - 1);
	assert_null(strstr(out, "..."));
	msg[fits] = 'm';
	msg[fits + 1] = '\0';
	size_t n = vmctl_format_reply(out, -EIO, msg);
	assert_int_equal(n, VMCTL_REPLY_MAX - 1);
	assert_int_equal(strlen(out), n);
	assert_memory_equal(out + n - 4, "...\n", 4);
	/* A cut never splits a UTF-8 character: "é" is two bytes. */
	for (size_t i = 0; i + 1 < sizeof(msg); i += 2)
		memcpy(msg + i, "\xc3\xa9", 2);
	msg[sizeof(msg) - 1] = '\0';
	n = vmctl_format_reply(out, -EIO, msg);
	assert_true(n <= VMCTL_REPLY_MAX - 1);
	const char *body = out + strlen("error ");
	size_t body_len = n - strlen("error ") - 4;
	assert_int_equal(body_len % 2, 0);
	assert_memory_equal(body + body_len - 2, "\xc3\xa9", 2);
}

static void reply_parse(void **state)
{
	(void)state;
	const char *msg = NULL;
	assert_int_equal(vmctl_parse_reply("ok", &msg), 0);
	assert_int_equal(vmctl_parse_reply("error it broke", &msg), -EIO);
	assert_string_equal(msg, "it broke");
	const char *bad[] = { "", "ok ", "okay", "error", "error ", "Error x", "errorx" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (vmctl_parse_reply(bad[i], &msg) != -EPROTO)
			fail_msg("\"%s\" taken for a reply", bad[i]);
	/* What the server formats, the client reads back. */
	char out[VMCTL_REPLY_MAX];
	size_t n = vmctl_format_reply(out, -ENOENT, "x\ny"), len = 0;
	assert_int_equal(vmctl_line_take(out, n, VMCTL_REPLY_MAX, &len), 1);
	assert_int_equal(vmctl_parse_reply(out, &msg), -EIO);
	assert_string_equal(msg, "x y");
}

/* ---- the claim document ---- */

static void claim_good(void **state)
{
	(void)state;
	struct vmctl_claim c = { 0 };
	uk_error err = { 0 };
	assert_int_equal(vmctl_claim_parse("{\"id\":\"ctr1\",\"console_log\":\"/l/0.log\"}", &c, &err), 0);
	assert_string_equal(c.id, "ctr1");
	assert_string_equal(c.console_log, "/l/0.log");
	assert_int_equal(c.log_format, VMCTL_LOG_CRI);
	assert_false(c.input);
	assert_null(c.state_dir);
	vmctl_claim_done(&c);
	assert_int_equal(vmctl_claim_parse("{\"id\":\"c\",\"console_log\":\"/l\",\"log_format\":\"raw\",\"stdin\":true,"
					   "\"state_dir\":\"/run/unikd/vms/c\"}",
					   &c, &err),
			 0);
	assert_int_equal(c.log_format, VMCTL_LOG_RAW);
	assert_true(c.input);
	assert_string_equal(c.state_dir, "/run/unikd/vms/c");
	vmctl_claim_done(&c);
	/* A null state_dir is none; a repeated member counts once (the last). */
	assert_int_equal(vmctl_claim_parse("{\"id\":\"a\",\"id\":\"b\",\"console_log\":\"/l\",\"state_dir\":null}", &c,
					   &err),
			 0);
	assert_string_equal(c.id, "b");
	assert_null(c.state_dir);
	vmctl_claim_done(&c);
	vmctl_claim_done(&c); /* twice is harmless */
}

static void claim_errors(void **state)
{
	(void)state;
	static char long_path[PATH_MAX + 64], long_doc[VMCTL_CLAIM_MAX + 64];
	memset(long_path, 'a', sizeof(long_path));
	static const char head[] = "{\"id\":\"c\",\"console_log\":\"/";
	memcpy(long_path, head, sizeof(head) - 1);
	strcpy(long_path + sizeof(long_path) - 3, "\"}");
	memset(long_doc, ' ', sizeof(long_doc));
	strcpy(long_doc + sizeof(long_doc) - 3, "{}");
	struct {
		const char *json, *needle;
	} cases[] = {
		{ "", "not JSON" },
		{ "{", "not JSON" },
		{ "[]", "must be a JSON object" },
		{ "{}", "\"id\"" },
		{ "{\"console_log\":\"/l\"}", "\"id\"" },
		{ "{\"id\":\"../x\",\"console_log\":\"/l\"}", "\"id\"" },
		{ "{\"id\":\"..\",\"console_log\":\"/l\"}", "\"id\"" },
		{ "{\"id\":\"a/b\",\"console_log\":\"/l\"}", "\"id\"" },
		{ "{\"id\":7,\"console_log\":\"/l\"}", "\"id\" must be a string" },
		{ "{\"id\":\"a\\u0000b\",\"console_log\":\"/l\"}", "NUL" },
		{ "{\"id\":\"c\"}", "\"console_log\" is required" },
		{ "{\"id\":\"c\",\"console_log\":null}", "\"console_log\" must be a string" },
		{ "{\"id\":\"c\",\"console_log\":\"l.log\"}", "\"console_log\" must be an absolute path" },
		{ "{\"id\":\"c\",\"console_log\":\"/l\\n.log\"}", "\"console_log\" holds a control character" },
		{ long_path, "\"console_log\" is longer than" },
		{ "{\"id\":\"c\",\"console_log\":\"/l\",\"state_dir\":\"vms/c\"}", "\"state_dir\" must be an absolute" },
		{ "{\"id\":\"c\",\"console_log\":\"/l\",\"stdin\":1}", "\"stdin\" must be true or false" },
		{ "{\"id\":\"c\",\"console_log\":\"/l\",\"log_format\":\"json\"}", "\"log_format\"" },
		{ "{\"id\":\"c\",\"console_log\":\"/l\",\"log_format\":3}", "\"log_format\"" },
		{ "{\"id\":\"c\",\"console_log\":\"/l\",\"memory_mib\":64}", "\"memory_mib\" is not known" },
		{ long_doc, "longer than" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct vmctl_claim c = { 0 };
		uk_error err = { 0 };
		int r = vmctl_claim_parse(cases[i].json, &c, &err);
		if (r >= 0 || !strstr(err.msg, cases[i].needle) || c.id || c.console_log)
			fail_msg("case %zu: %d \"%s\"", i, r, err.msg);
	}
}

static void claim_nets_good(void **state)
{
	(void)state;
	struct vmctl_claim c = { 0 };
	uk_error err = { 0 };
	assert_int_equal(vmctl_claim_parse("{\"id\":\"c\",\"console_log\":\"/l\",\"net\":[{\"mac\":\"02:11:22:33:44:55\"},"
					   "{\"mac\":\"0A:BB:cc:Dd:00:ff\",\"vhost\":true},{\"vhost\":false,\"mac\":\"02:00:00:00:00:01\"}]}",
					   &c, &err),
			 0);
	assert_int_equal(c.n_nets, 3);
	assert_string_equal(c.nets[0].mac, "02:11:22:33:44:55");
	assert_false(c.nets[0].vhost);
	assert_string_equal(c.nets[1].mac, "0A:BB:cc:Dd:00:ff");
	assert_true(c.nets[1].vhost);
	assert_false(c.nets[2].vhost);
	assert_int_equal(vmctl_claim_n_fds(&c), 4);
	vmctl_claim_done(&c);
	assert_int_equal(c.n_nets, 0);
	/* An empty list is no NIC; without "net", none either. */
	assert_int_equal(vmctl_claim_parse("{\"id\":\"c\",\"console_log\":\"/l\",\"net\":[]}", &c, &err), 0);
	assert_int_equal(c.n_nets, 0);
	vmctl_claim_done(&c);
	assert_int_equal(vmctl_claim_parse("{\"id\":\"c\",\"console_log\":\"/l\"}", &c, &err), 0);
	assert_int_equal(c.n_nets, 0);
	assert_int_equal(vmctl_claim_n_fds(&c), 0);
	vmctl_claim_done(&c);
	/* The most there may be. */
	char doc[1024] = "{\"id\":\"c\",\"console_log\":\"/l\",\"net\":[";
	for (int i = 0; i < VMCTL_CLAIM_NETS_MAX; i++)
		snprintf(doc + strlen(doc), sizeof(doc) - strlen(doc), "%s{\"mac\":\"02:00:00:00:00:0%d\",\"vhost\":true}",
			 i ? "," : "", i);
	strcat(doc, "]}");
	assert_int_equal(vmctl_claim_parse(doc, &c, &err), 0);
	assert_int_equal(c.n_nets, VMCTL_CLAIM_NETS_MAX);
	assert_int_equal(vmctl_claim_n_fds(&c), VMCTL_FDS_MAX);
	vmctl_claim_done(&c);
}

static void claim_nets_errors(void **state)
{
	(void)state;
	char too_many[1024] = "{\"id\":\"c\",\"console_log\":\"/l\",\"net\":[";
	for (int i = 0; i <= VMCTL_CLAIM_NETS_MAX; i++)
		snprintf(too_many + strlen(too_many), sizeof(too_many) - strlen(too_many), "%s{\"mac\":\"02:00:00:00:00:0%d\"}",
			 i ? "," : "", i);
	strcat(too_many, "]}");
#define NET(x) "{\"id\":\"c\",\"console_log\":\"/l\",\"net\":" x "}"
	struct {
		const char *json, *needle;
	} cases[] = {
		{ NET("{}"), "\"net\" must be an array" },
		{ NET("[7]"), "\"net[0]\" must be an object" },
		{ NET("[{}]"), "\"net[0].mac\" is required" },
		{ NET("[{\"vhost\":true}]"), "\"net[0].mac\" is required" },
		{ NET("[{\"mac\":\"02:00:00:00:00:01\"},{\"vhost\":false}]"), "\"net[1].mac\" is required" },
		{ NET("[{\"mac\":7}]"), "\"net[0].mac\" must be a string" },
		{ NET("[{\"mac\":\"02:00:00:00:00\"}]"), "\"net[0].mac\" must look like" },
		{ NET("[{\"mac\":\"02:00:00:00:00:0g\"}]"), "\"net[0].mac\" must look like" },
		{ NET("[{\"mac\":\"02-00-00-00-00-01\"}]"), "\"net[0].mac\" must look like" },
		{ NET("[{\"mac\":\"02:00:00:00:00:011\"}]"), "\"net[0].mac\" must look like" },
		{ NET("[{\"mac\":\"01:00:5e:00:00:01\"}]"), "\"net[0].mac\" is 01:00:5e:00:00:01, a multicast" },
		{ NET("[{\"mac\":\"ff:ff:ff:ff:ff:ff\"}]"), "multicast" },
		{ NET("[{\"mac\":\"03:00:00:00:00:01\"}]"), "multicast" },
		{ NET("[{\"mac\":\"02:00:00:00:00:01\",\"vhost\":1}]"), "\"net[0].vhost\" must be true or false" },
		{ NET("[{\"mac\":\"02:00:00:00:00:01\",\"vhost\":\"true\"}]"), "\"net[0].vhost\" must be true or false" },
		{ NET("[{\"mac\":\"02:00:00:00:00:01\",\"tap_fd\":3}]"), "\"net[0].tap_fd\" is not known" },
		{ too_many, "\"net\" has 7 entries, at most 6" },
	};
#undef NET
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct vmctl_claim c = { 0 };
		uk_error err = { 0 };
		int r = vmctl_claim_parse(cases[i].json, &c, &err);
		if (r >= 0 || !strstr(err.msg, cases[i].needle) || c.id || c.n_nets)
			fail_msg("case %zu: %d \"%s\"", i, r, err.msg);
	}
}

/* ---- the client and the server over real sockets ---- */

struct fixture {
	char dir[64];
	char sock[128];
	int listen_fd;
	pid_t server;
};

static int fixture_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/uk-test-vmctl-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->sock, sizeof(f->sock), "%s/%s", f->dir, VMCTL_SOCKET);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(f->sock) >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, f->sock, strlen(f->sock) + 1);
	f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (f->listen_fd < 0 || bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(f->listen_fd, 16) < 0)
		return -1;
	*state = f;
	return 0;
}

/* cmocka runs this even when an assertion failed: no server outlives its test. */
static int fixture_teardown(void **state)
{
	struct fixture *f = *state;
	if (f->server > 0) {
		kill(f->server, SIGKILL);
		waitpid(f->server, NULL, 0);
	}
	safe_close(f->listen_fd);
	int r = uk_rm_rf(f->dir, NULL);
	free(f);
	return r;
}

static struct vmctl_server *later_server;

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own */
}

/* Mode 3: the fds' side. A reopen-log answers with the server's open fd count; a claim
 * describes the fds it got (their count, whether each is O_CLOEXEC, their inodes) and keeps
 * the first of exactly two, leaving the rest to the server. */
static int fd_handler(enum vmctl_command cmd, int *fds, size_t n_fds, uk_error *err)
{
	char msg[512];
	size_t n = 0;
	if (cmd == VMCTL_REOPEN_LOG)
		return uk_err(err, EIO, "open fds %d", count_fds());
	n += (size_t)snprintf(msg + n, sizeof(msg) - n, "got %zu:", n_fds);
	for (size_t i = 0; i < n_fds; i++) {
		struct stat st;
		bool cloexec = fcntl(fds[i], F_GETFD) & FD_CLOEXEC;
		if (fstat(fds[i], &st) < 0)
			return uk_err(err, EIO, "fd %zu: not open", i);
		n += (size_t)snprintf(msg + n, sizeof(msg) - n, " %s%llu", cloexec ? "" : "inheritable-",
				      (unsigned long long)st.st_ino);
	}
	if (n_fds == 2)
		(void)TAKE_FD(fds[0]); /* kept open here for good: the test counts it */
	return uk_err(err, EIO, "%s", msg);
}

/* The server's handler: userdata 0 succeeds, 1 fails with a two-line message; with 2, a
 * claim answers later and a reopen-log then answers the waiting claims with an error; 3 is
 * fd_handler. */
static int handler(enum vmctl_command cmd, int *fds, size_t n_fds, uk_error *err, void *userdata)
{
	if (userdata == (void *)3)
		return fd_handler(cmd, fds, n_fds, err);
	/* Only a claim gets fds, and these tests send none with it. */
	if (n_fds)
		return uk_err(err, EINVAL, "unexpected fds");
	if (userdata == (void *)2) {
		if (cmd == VMCTL_CLAIM)
			return VMCTL_ANSWER_LATER;
		vmctl_server_answer(later_server, -EIO, "claimed later");
		return 0;
	}
	if (cmd != VMCTL_REOPEN_LOG)
		return uk_err(err, EINVAL, "wrong command");
	if (!userdata)
		return 0;
	return uk_err(err, EACCES, "reopen the console log: create /l/0.log: Permission denied\nsecond line");
}

/* vmwrapper's server in a child, looping until it is killed. */
static void start_server_mode(struct fixture *f, int timeout_ms, void *mode)
{
	f->server = fork();
	assert_true(f->server >= 0);
	if (f->server > 0)
		return;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	struct vmctl_server s;
	vmctl_server_init(&s, f->listen_fd, timeout_ms, handler, mode);
	later_server = &s;
	for (;;) {
		struct pollfd p[VMCTL_POLLFDS];
		uint64_t now = uk_now_mono_ns();
		vmctl_server_pollfds(&s, now, p);
		if (poll(p, VMCTL_POLLFDS, vmctl_server_timeout_ms(&s, now)) < 0 && errno != EINTR)
			_exit(1);
		vmctl_server_process(&s, p, uk_now_mono_ns());
	}
}

static void start_server(struct fixture *f, int timeout_ms, bool fail)
{
	start_server_mode(f, timeout_ms, fail ? (void *)1 : NULL);
}

/* A fake server in a child: accepts one client, reads its line, writes reply, closes. */
static void start_fake(struct fixture *f, const char *reply, size_t len)
{
	f->server = fork();
	assert_true(f->server >= 0);
	if (f->server > 0)
		return;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	int c = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	char buf[VMCTL_LINE_MAX];
	if (c < 0 || read(c, buf, sizeof(buf)) <= 0)
		_exit(1);
	if (len && uk_write_all(c, reply, len) < 0)
		_exit(1);
	close(c);
	pause();
	_exit(0);
}

/* A raw client: connect, send bytes, return the fd (reads time out after 10 s). */
static int raw_client(struct fixture *f, const char *bytes, size_t len)
{
	int fd = uk_unix_connect(f->sock, NULL);
	assert_true(fd >= 0);
	struct timeval tv = { .tv_sec = 10 };
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	if (len)
		assert_int_equal(uk_write_all(fd, bytes, len), 0);
	return fd;
}

/* Everything the server sends until it closes. */
static void read_all(int fd, char *buf, size_t size)
{
	size_t len = 0;
	ssize_t n;
	while (len + 1 < size && (n = read(fd, buf + len, size - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
}

static void request_ok(void **state)
{
	struct fixture *f = *state;
	start_server(f, 5000, false);
	char reply[VMCTL_REPLY_MAX];
	uk_error err = { 0 };
	assert_int_equal(vmctl_request(f->dir, VMCTL_CMD_REOPEN_LOG, 5000, reply, sizeof(reply), &err), 0);
	assert_string_equal(reply, "ok");
	/* Again: the server serves one request per connection, any number of connections. */
	assert_int_equal(vmctl_request(f->dir, VMCTL_CMD_REOPEN_LOG, 5000, NULL, 0, &err), 0);
}

static void request_error(void **state)
{
	struct fixture *f = *state;
	start_server(f, 5000, true);
	char reply[VMCTL_REPLY_MAX];
	uk_error err = { 0 };
	assert_int_equal(vmctl_request(f->dir, VMCTL_CMD_REOPEN_LOG, 5000, reply, sizeof(reply), &err), -EIO);
	assert_string_equal(err.msg, "reopen the console log: create /l/0.log: Permission denied second line");
	assert_string_equal(reply, "error reopen the console log: create /l/0.log: Permission denied second line");
	/* An unknown command is the server's answer too. */
	assert_int_equal(vmctl_request(f->dir, "frobnicate", 5000, NULL, 0, &err), -EIO);
	assert_string_equal(err.msg, VMCTL_ERR_UNKNOWN);
	/* A reply that does not fit the caller's buffer is an error, not a cut. */
	assert_int_equal(vmctl_request(f->dir, VMCTL_CMD_REOPEN_LOG, 5000, reply, 8, &err), -EMSGSIZE);
}

static void request_bad_command(void **state)
{
	struct fixture *f = *state;
	char big[VMCTL_LINE_MAX + 1];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	uk_error err = { 0 };
	/* Refused before anything is sent: no server runs, and none is needed. */
	assert_int_equal(vmctl_request(f->dir, "", 100, NULL, 0, &err), -EINVAL);
	assert_int_equal(vmctl_request(f->dir, "reopen-log\nquit", 100, NULL, 0, &err), -EINVAL);
	assert_int_equal(vmctl_request(f->dir, big, 100, NULL, 0, &err), -EINVAL);
	big[VMCTL_LINE_MAX - 1] = '\0'; /* with its "\n", exactly VMCTL_LINE_MAX: sent */
	start_server(f, 5000, false);
	assert_int_equal(vmctl_request(f->dir, big, 5000, NULL, 0, &err), -EIO);
	assert_string_equal(err.msg, VMCTL_ERR_UNKNOWN);
}

static void server_limits(void **state)
{
	struct fixture *f = *state;
	char buf[VMCTL_REPLY_MAX], big[VMCTL_LINE_MAX + 10];
	start_server(f, 5000, false);
	/* A line longer than the limit. */
	memset(big, 'a', sizeof(big));
	int fd = raw_client(f, big, sizeof(big));
	read_all(fd, buf, sizeof(buf));
	assert_string_equal(buf, "error " VMCTL_ERR_TOO_LONG "\n");
	safe_close(fd);
	/* A control character. */
	fd = raw_client(f, "reopen-log\r\n", 12);
	read_all(fd, buf, sizeof(buf));
	assert_string_equal(buf, "error " VMCTL_ERR_BAD_LINE "\n");
	safe_close(fd);
	/* A line in pieces is one line. */
	fd = raw_client(f, "reopen", 6);
	assert_int_equal(uk_write_all(fd, "-log\n", 5), 0);
	read_all(fd, buf, sizeof(buf));
	assert_string_equal(buf, "ok\n");
	safe_close(fd);
}

static void server_too_many_clients(void **state)
{
	struct fixture *f = *state;
	char buf[VMCTL_REPLY_MAX];
	int held[VMCTL_CLIENTS_MAX];
	start_server(f, 5000, false);
	/* The server accepts in order: these take every slot. */
	for (size_t i = 0; i < VMCTL_CLIENTS_MAX; i++)
		held[i] = raw_client(f, "reo", 3);
	/* It sends nothing: its send could meet the socket already closed. */
	int fd = raw_client(f, "", 0);
	read_all(fd, buf, sizeof(buf));
	assert_string_equal(buf, "error " VMCTL_ERR_BUSY "\n");
	safe_close(fd);
	/* The held ones are still served, and their slots free up. */
	for (size_t i = 0; i < VMCTL_CLIENTS_MAX; i++) {
		assert_int_equal(uk_write_all(held[i], "pen-log\n", 8), 0);
		read_all(held[i], buf, sizeof(buf));
		assert_string_equal(buf, "ok\n");
		safe_close(held[i]);
	}
	uk_error err = { 0 };
	assert_int_equal(vmctl_request(f->dir, VMCTL_CMD_REOPEN_LOG, 5000, NULL, 0, &err), 0);
}

static void server_timeout(void **state)
{
	struct fixture *f = *state;
	char buf[VMCTL_REPLY_MAX];
	start_server(f, 200, false);
	int idle = raw_client(f, "reopen-l", 8);
	/* Other clients are served meanwhile. */
	uk_error err = { 0 };
	assert_int_equal(vmctl_request(f->dir, VMCTL_CMD_REOPEN_LOG, 5000, NULL, 0, &err), 0);
	read_all(idle, buf, sizeof(buf));
	assert_string_equal(buf, "error " VMCTL_ERR_TIMEOUT "\n");
	safe_close(idle);
}

static void server_answers_later(void **state)
{
	struct fixture *f = *state;
	char buf[VMCTL_REPLY_MAX];
	uk_error err = { 0 };
	start_server_mode(f, 5000, (void *)2);
	int waiting = raw_client(f, "claim\n", 6);
	/* Others are served while it waits, and one of them brings its answer. */
	assert_int_equal(vmctl_request(f->dir, VMCTL_CMD_REOPEN_LOG, 5000, NULL, 0, &err), 0);
	read_all(waiting, buf, sizeof(buf));
	assert_string_equal(buf, "error claimed later\n");
	safe_close(waiting);
}

static void server_answer_never_comes(void **state)
{
	struct fixture *f = *state;
	uk_error err = { 0 };
	start_server_mode(f, 200, (void *)2);
	/* The deadline answers it. */
	assert_int_equal(vmctl_request(f->dir, VMCTL_CMD_CLAIM, 5000, NULL, 0, &err), -EIO);
	assert_string_equal(err.msg, VMCTL_ERR_NO_OUTCOME);
}

static void claim_write_reads_back(void **state)
{
	struct fixture *f = *state;
	uk_error err = { 0 };
	struct vmctl_claim c = { .id = "ctr", .console_log = "/l/0.log", .log_format = VMCTL_LOG_RAW, .input = true,
				 .state_dir = f->dir },
			   back = { 0 };
	assert_int_equal(vmctl_claim_write(f->dir, &c, &err), 0);
	char path[128];
	_cleanup_free_ char *json = NULL;
	snprintf(path, sizeof(path), "%s/%s", f->dir, VMCTL_CLAIM_FILE);
	assert_int_equal(uk_read_file(path, VMCTL_CLAIM_MAX, &json, NULL, &err), 0);
	assert_int_equal(vmctl_claim_parse(json, &back, &err), 0);
	assert_string_equal(back.id, "ctr");
	assert_string_equal(back.console_log, "/l/0.log");
	assert_string_equal(back.state_dir, f->dir);
	assert_int_equal(back.log_format, VMCTL_LOG_RAW);
	assert_true(back.input);
	vmctl_claim_done(&back);
	/* Without nets the file is as it always was: no "net" (json-c writes "/" as "\/"). */
	char dir_esc[128] = "", want[512];
	for (const char *p = f->dir; *p; p++)
		snprintf(dir_esc + strlen(dir_esc), sizeof(dir_esc) - strlen(dir_esc), *p == '/' ? "\\/" : "%c", *p);
	snprintf(want, sizeof(want),
		 "{\"id\":\"ctr\",\"console_log\":\"\\/l\\/0.log\",\"log_format\":\"raw\",\"stdin\":true,\"state_dir\":\"%s\"}",
		 dir_esc);
	assert_string_equal(json, want);
	/* Nets go out and come back. */
	c.nets[0] = (struct vmctl_claim_net){ .mac = "02:11:22:33:44:55" };
	c.nets[1] = (struct vmctl_claim_net){ .mac = "0a:00:00:00:00:02", .vhost = true };
	c.n_nets = 2;
	assert_int_equal(vmctl_claim_write(f->dir, &c, &err), 0);
	free(json);
	json = NULL;
	assert_int_equal(uk_read_file(path, VMCTL_CLAIM_MAX, &json, NULL, &err), 0);
	assert_int_equal(vmctl_claim_parse(json, &back, &err), 0);
	assert_int_equal(back.n_nets, 2);
	assert_string_equal(back.nets[0].mac, "02:11:22:33:44:55");
	assert_false(back.nets[0].vhost);
	assert_string_equal(back.nets[1].mac, "0a:00:00:00:00:02");
	assert_true(back.nets[1].vhost);
	vmctl_claim_done(&back);
	/* A bad MAC is not written. */
	c.nets[1].mac = "01:00:00:00:00:02";
	assert_int_equal(vmctl_claim_write(f->dir, &c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "\"net[1].mac\""));
	c.n_nets = 0;
	/* What would not parse is not written. */
	c.id = "../x";
	assert_int_equal(vmctl_claim_write(f->dir, &c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "\"id\""));
}

/* Bytes and fds in one sendmsg on an open connection. */
static void send_fds(int fd, const char *bytes, size_t len, const int *fds, size_t n_fds)
{
	assert_int_equal(uk_send_fds(fd, bytes, len, fds, n_fds, MSG_NOSIGNAL), (ssize_t)len);
}

/* A raw client that sends its bytes and fds in one sendmsg. */
static int raw_client_fds(struct fixture *f, const char *bytes, size_t len, const int *fds, size_t n_fds)
{
	int fd = raw_client(f, "", 0);
	send_fds(fd, bytes, len, fds, n_fds);
	return fd;
}

/* The server's open fd count, as fd_handler tells it. */
static int server_fds(struct fixture *f)
{
	uk_error err = { 0 };
	int n = -1;
	assert_int_equal(vmctl_request(f->dir, VMCTL_CMD_REOPEN_LOG, 5000, NULL, 0, &err), -EIO);
	assert_int_equal(sscanf(err.msg, "open fds %d", &n), 1);
	return n;
}

static unsigned long long ino_of(int fd)
{
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	return (unsigned long long)st.st_ino;
}

static void fds_with_claim(void **state)
{
	struct fixture *f = *state;
	uk_error err = { 0 };
	char want[256], buf[VMCTL_REPLY_MAX];
	int p1[2], p2[2];
	assert_int_equal(pipe2(p1, O_CLOEXEC), 0);
	assert_int_equal(pipe2(p2, O_CLOEXEC), 0);
	start_server_mode(f, 5000, (void *)3);
	int base = server_fds(f);

	/* They arrive, in order, O_CLOEXEC; the handler keeps none, and the server closes them. */
	int three[3] = { p1[0], p2[1], p1[1] };
	assert_int_equal(vmctl_request_fds(f->dir, VMCTL_CMD_CLAIM, three, 3, 5000, NULL, 0, &err), -EIO);
	snprintf(want, sizeof(want), "got 3: %llu %llu %llu", ino_of(p1[0]), ino_of(p2[1]), ino_of(p1[1]));
	assert_string_equal(err.msg, want);
	assert_int_equal(server_fds(f), base);
	/* One the handler keeps stays open; the other goes. */
	assert_int_equal(vmctl_request_fds(f->dir, VMCTL_CMD_CLAIM, three, 2, 5000, NULL, 0, &err), -EIO);
	assert_int_equal(server_fds(f), base + 1);
	base++;
	/* The most there may be. */
	int many[VMCTL_FDS_MAX + 1];
	for (size_t i = 0; i < ARRAY_SIZE(many); i++)
		many[i] = p2[0];
	assert_int_equal(vmctl_request_fds(f->dir, VMCTL_CMD_CLAIM, many, VMCTL_FDS_MAX, 5000, NULL, 0, &err), -EIO);
	assert_non_null(strstr(err.msg, "got 12:"));
	assert_int_equal(server_fds(f), base);
	/* One more: the client refuses it, and a client that sends it anyway is answered so,
	 * its fds closed, the handler never called. */
	assert_int_equal(vmctl_request_fds(f->dir, VMCTL_CMD_CLAIM, many, VMCTL_FDS_MAX + 1, 5000, NULL, 0, &err), -E2BIG);
	int fd = raw_client_fds(f, "claim\n", 6, many, VMCTL_FDS_MAX + 1);
	read_all(fd, buf, sizeof(buf));
	assert_string_equal(buf, "error " VMCTL_ERR_TOO_MANY_FDS "\n");
	safe_close(fd);
	assert_int_equal(server_fds(f), base);
	/* Too many over two sends of one line on one connection, too. */
	fd = raw_client_fds(f, "cla", 3, many, VMCTL_FDS_MAX);
	send_fds(fd, "im\n", 3, many, 1);
	read_all(fd, buf, sizeof(buf));
	assert_string_equal(buf, "error " VMCTL_ERR_TOO_MANY_FDS "\n");
	safe_close(fd);
	assert_int_equal(server_fds(f), base);
	/* A client gone before its line is whole: its fds are closed with the connection (the
	 * server's close, seen as EOF here, comes after them). */
	fd = raw_client_fds(f, "cla", 3, many, VMCTL_FDS_MAX - 1);
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	read_all(fd, buf, sizeof(buf));
	safe_close(fd);
	assert_int_equal(server_fds(f), base);
	/* fds with a command that takes none: refused, closed. */
	assert_int_equal(vmctl_request_fds(f->dir, VMCTL_CMD_REOPEN_LOG, three, 1, 5000, NULL, 0, &err), -EIO);
	assert_string_equal(err.msg, VMCTL_ERR_FDS);
	assert_int_equal(vmctl_request_fds(f->dir, "frobnicate", three, 1, 5000, NULL, 0, &err), -EIO);
	assert_string_equal(err.msg, VMCTL_ERR_UNKNOWN);
	assert_int_equal(server_fds(f), base);
	/* The client's own fds stay open. */
	assert_true(fcntl(p1[0], F_GETFD) >= 0 && fcntl(p2[1], F_GETFD) >= 0);
	int bad = -1;
	assert_int_equal(vmctl_request_fds(f->dir, VMCTL_CMD_CLAIM, &bad, 1, 5000, NULL, 0, &err), -EBADF);
	close(p1[0]);
	close(p1[1]);
	close(p2[0]);
	close(p2[1]);
}

static void client_timeout(void **state)
{
	struct fixture *f = *state;
	uk_error err = { 0 };
	/* Nobody accepts: the connection waits in the backlog, the answer never comes. */
	assert_int_equal(vmctl_request(f->dir, VMCTL_CMD_REOPEN_LOG, 200, NULL, 0, &err), -ETIMEDOUT);
	assert_non_null(strstr(err.msg, "no answer"));
}

static void client_bad_replies(void **state)
{
	struct fixture *f = *state;
	uk_error err = { 0 };
	char big[VMCTL_REPLY_MAX + 1];
	memset(big, 'x', sizeof(big));
	struct {
		const char *reply;
		size_t len;
		int r;
		const char *needle;
	} cases[] = {
		{ "", 0, -ECONNRESET, "without an answer" },
		{ "o", 1, -ECONNRESET, "without an answer" },
		{ "hello\n", 6, -EPROTO, "not a reply: \"hello\"" },
		{ "ok\r\n", 4, -EPROTO, "control character" },
		{ big, sizeof(big), -EPROTO, "longer than" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		start_fake(f, cases[i].reply, cases[i].len);
		memset(&err, 0, sizeof(err));
		int r = vmctl_request(f->dir, VMCTL_CMD_REOPEN_LOG, 5000, NULL, 0, &err);
		if (r != cases[i].r || !strstr(err.msg, cases[i].needle))
			fail_msg("case %zu: %d \"%s\"", i, r, err.msg);
		kill(f->server, SIGKILL);
		waitpid(f->server, NULL, 0);
		f->server = 0;
	}
}

static void client_no_server(void **state)
{
	struct fixture *f = *state;
	uk_error err = { 0 };
	char dir[128];
	snprintf(dir, sizeof(dir), "%s/none", f->dir);
	assert_int_equal(vmctl_request(dir, VMCTL_CMD_REOPEN_LOG, 200, NULL, 0, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "none/" VMCTL_SOCKET));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(line_framing),
		cmocka_unit_test(line_limits),
		cmocka_unit_test(commands),
		cmocka_unit_test(reply_format),
		cmocka_unit_test(reply_cut),
		cmocka_unit_test(reply_parse),
		cmocka_unit_test(claim_good),
		cmocka_unit_test(claim_errors),
		cmocka_unit_test(claim_nets_good),
		cmocka_unit_test(claim_nets_errors),
		T(fds_with_claim),
		T(server_answers_later),
		T(server_answer_never_comes),
		T(claim_write_reads_back),
		T(request_ok),
		T(request_error),
		T(request_bad_command),
		T(server_limits),
		T(server_too_many_clients),
		T(server_timeout),
		T(client_timeout),
		T(client_bad_replies),
		T(client_no_server),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
