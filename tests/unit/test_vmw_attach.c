/* Unit tests for vmwrapper's attach socket server (vmwrapper/attach.c) over real unix sockets:
 * the test drives the server's poll loop itself, a socketpair standing in for QEMU's console.
 * Also the spec's "stdin" field. */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "../../src/common/util.h"
#include "../../vmwrapper/attach.h"
#include "../../vmwrapper/spec.h"

struct fixture {
	char dir[64];
	char path[100];
	int guest[2]; /* [0] the console's fd (the server writes input there), [1] QEMU's end */
	struct attach_server s;
};

static int fixture_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-vmw-attach.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/" ATTACH_SOCKET, f->dir);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 64), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, f->guest), 0);
	attach_server_init(&f->s, l, false, "test");
	*state = f;
	return 0;
}

static int fixture_teardown(void **state)
{
	struct fixture *f = *state;
	attach_server_done(&f->s);
	safe_close(f->guest[0]);
	safe_close(f->guest[1]);
	unlink(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* One round of the loop main.c runs: poll (timeout_ms), then let the server act. */
static void pump(struct fixture *f, int timeout_ms)
{
	struct pollfd p[ATTACH_POLLFDS + 1];
	attach_server_pollfds(&f->s, uk_now_mono_ns(), p);
	p[ATTACH_POLLFDS] = (struct pollfd){ .fd = attach_server_wants_guest(&f->s) ? f->guest[0] : -1,
					     .events = POLLOUT };
	assert_true(poll(p, ATTACH_POLLFDS + 1, timeout_ms) >= 0);
	attach_server_process(&f->s, p, uk_now_mono_ns());
	if (p[ATTACH_POLLFDS].revents & POLLOUT)
		attach_server_write_input(&f->s);
}

static int client(struct fixture *f)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	pump(f, 0);
	return fd;
}

static size_t clients_open(const struct fixture *f)
{
	size_t n = 0;
	for (size_t i = 0; i < ATTACH_CLIENTS_MAX; i++)
		n += f->s.clients[i].fd >= 0;
	return n;
}

/* What fd has now, without waiting: the count, 0 at EOF, -1 when nothing is there. */
static ssize_t take(int fd, char *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t k = recv(fd, buf + got, len - got, MSG_DONTWAIT);
		if (k == 0)
			return (ssize_t)got;
		if (k < 0)
			return got ? (ssize_t)got : -1;
		got += (size_t)k;
	}
	return (ssize_t)got;
}

static void expect(int fd, const char *want)
{
	char buf[256] = { 0 };
	assert_int_equal(take(fd, buf, sizeof(buf) - 1), (ssize_t)strlen(want));
	assert_string_equal(buf, want);
}

static void output(struct fixture *f, const char *s)
{
	attach_server_output(&f->s, s, strlen(s));
}

/* A client gets the console from its accept on, in order; two clients get the same. */
static void from_accept_on(void **state)
{
	struct fixture *f = *state;
	char buf[16];
	output(f, "before\n");
	int a = client(f);
	assert_int_equal(take(a, buf, sizeof(buf)), -1);
	output(f, "after\n");
	int b = client(f);
	output(f, "both\r\n");
	expect(a, "after\nboth\r\n");
	expect(b, "both\r\n");
	/* A client that shut its sending side still gets the console. */
	assert_int_equal(shutdown(b, SHUT_WR), 0);
	pump(f, 0);
	output(f, "still");
	expect(b, "still");
	/* One that has gone frees its slot. */
	safe_close(a);
	pump(f, 0);
	assert_int_equal(clients_open(f), 1);
	safe_close(b);
	pump(f, 0);
	assert_int_equal(clients_open(f), 0);
}

static char pattern(uint64_t i)
{
	return (char)(i % 251);
}

/* 4 MiB of console: a client that reads gets every byte, in order; one that does not is
 * dropped once it is ATTACH_LAG_MAX behind, after a prefix of the stream. */
static void slow_client_dropped(void **state)
{
	struct fixture *f = *state;
	enum { CHUNK = 64 * 1024, TOTAL = 4 * 1024 * 1024 };
	static char chunk[CHUNK], got[CHUNK * 8];
	int fast = client(f), slow = client(f);
	uint64_t sent = 0, fast_got = 0;
	while (sent < TOTAL) {
		for (size_t i = 0; i < CHUNK; i++)
			chunk[i] = pattern(sent + i);
		attach_server_output(&f->s, chunk, CHUNK);
		sent += CHUNK;
		for (int round = 0; round < 4; round++) {
			ssize_t k = take(fast, got, sizeof(got));
			for (ssize_t i = 0; i < k; i++)
				assert_int_equal(got[i], pattern(fast_got + (uint64_t)i));
			fast_got += k > 0 ? (uint64_t)k : 0;
			pump(f, 0);
		}
	}
	while (fast_got < sent) {
		pump(f, 1000);
		ssize_t k = take(fast, got, sizeof(got));
		assert_true(k > 0);
		for (ssize_t i = 0; i < k; i++)
			assert_int_equal(got[i], pattern(fast_got + (uint64_t)i));
		fast_got += (uint64_t)k;
	}
	assert_int_equal(clients_open(f), 1);
	/* The slow one reads what it was sent, then EOF. */
	uint64_t slow_got = 0;
	for (;;) {
		ssize_t k = take(slow, got, sizeof(got));
		assert_true(k >= 0);
		if (k == 0)
			break;
		for (ssize_t i = 0; i < k; i++)
			assert_int_equal(got[i], pattern(slow_got + (uint64_t)i));
		slow_got += (uint64_t)k;
	}
	assert_true(slow_got < sent);
	safe_close(fast);
	safe_close(slow);
}

/* The 17th client is closed at once; a freed slot takes the next one. */
static void too_many_clients(void **state)
{
	struct fixture *f = *state;
	int c[ATTACH_CLIENTS_MAX + 1];
	char buf[8];
	for (size_t i = 0; i <= ATTACH_CLIENTS_MAX; i++)
		c[i] = client(f);
	assert_int_equal(clients_open(f), ATTACH_CLIENTS_MAX);
	assert_int_equal(take(c[ATTACH_CLIENTS_MAX], buf, sizeof(buf)), 0);
	output(f, "x");
	for (size_t i = 0; i < ATTACH_CLIENTS_MAX; i++)
		expect(c[i], "x");
	safe_close(c[0]);
	pump(f, 0);
	safe_close(c[ATTACH_CLIENTS_MAX]);
	c[0] = client(f);
	assert_int_equal(clients_open(f), ATTACH_CLIENTS_MAX);
	output(f, "y");
	expect(c[0], "y");
	for (size_t i = 0; i < ATTACH_CLIENTS_MAX; i++)
		safe_close(c[i]);
}

static void input_in_order(void **state)
{
	struct fixture *f = *state;
	attach_server_init(&f->s, TAKE_FD(f->s.listen_fd), true, "test");
	attach_server_set_guest(&f->s, f->guest[0]);
	int a = client(f), b = client(f);
	assert_int_equal(write(a, "one\n", 4), 4);
	pump(f, 1000);
	assert_int_equal(write(b, "two\n", 4), 4);
	pump(f, 1000);
	assert_int_equal(write(a, "three\n", 6), 6);
	pump(f, 1000);
	expect(f->guest[1], "one\ntwo\nthree\n");
	/* The console has ended: input is read and dropped. */
	attach_server_set_guest(&f->s, -1);
	assert_int_equal(write(a, "lost\n", 5), 5);
	pump(f, 1000);
	char buf[8];
	assert_int_equal(take(f->guest[1], buf, sizeof(buf)), -1);
	assert_int_equal(clients_open(f), 2);
	safe_close(a);
	safe_close(b);
}

/* Without stdin, input is read and thrown away; the client stays. */
static void input_off(void **state)
{
	struct fixture *f = *state;
	attach_server_set_guest(&f->s, f->guest[0]);
	int a = client(f);
	assert_int_equal(write(a, "nope\n", 5), 5);
	pump(f, 1000);
	char buf[8];
	assert_int_equal(take(f->guest[1], buf, sizeof(buf)), -1);
	assert_false(attach_server_wants_guest(&f->s));
	output(f, "out");
	expect(a, "out");
	safe_close(a);
}

/* A guest that does not read holds the clients back: the server stops reading them with at
 * most ATTACH_INPUT_MAX bytes of its own, and once the guest reads, every byte arrives in order. */
static void input_back_pressure(void **state)
{
	struct fixture *f = *state;
	enum { TOTAL = 2 * 1024 * 1024 };
	static char buf[64 * 1024];
	attach_server_init(&f->s, TAKE_FD(f->s.listen_fd), true, "test");
	attach_server_set_guest(&f->s, f->guest[0]);
	int a = client(f);
	size_t written = 0, read_back = 0;
	/* Write until the guest's socket is full and so is the server's buffer. */
	for (int round = 0; round < 100000 && f->s.in_len < ATTACH_INPUT_MAX && written < TOTAL; round++) {
		size_t n = sizeof(buf) < TOTAL - written ? sizeof(buf) : TOTAL - written;
		for (size_t i = 0; i < n; i++)
			buf[i] = pattern(written + i);
		ssize_t k = send(a, buf, n, MSG_DONTWAIT);
		written += k > 0 ? (size_t)k : 0;
		pump(f, 0);
	}
	assert_true(written < TOTAL);
	assert_true(attach_server_wants_guest(&f->s));
	assert_int_equal(f->s.in_len, ATTACH_INPUT_MAX);
	struct pollfd p[ATTACH_POLLFDS];
	attach_server_pollfds(&f->s, uk_now_mono_ns(), p);
	assert_int_equal(p[1].fd, f->s.clients[0].fd);
	assert_false(p[1].events & POLLIN);
	/* The guest reads now; the client sends the rest as it can. */
	while (read_back < TOTAL) {
		ssize_t k = take(f->guest[1], buf, sizeof(buf));
		for (ssize_t i = 0; i < k; i++)
			assert_int_equal(buf[i], pattern(read_back + (size_t)i));
		read_back += k > 0 ? (size_t)k : 0;
		if (written < TOTAL) {
			size_t n = sizeof(buf) < TOTAL - written ? sizeof(buf) : TOTAL - written;
			char out[sizeof(buf)];
			for (size_t i = 0; i < n; i++)
				out[i] = pattern(written + i);
			ssize_t w = send(a, out, n, MSG_DONTWAIT);
			written += w > 0 ? (size_t)w : 0;
		}
		pump(f, k > 0 ? 0 : 1000);
	}
	assert_int_equal(read_back, TOTAL);
	safe_close(a);
}

enum { FINISH_TOTAL = 600 * 1024 };

/* At the end, a client that reads gets everything and then EOF: finish waits for it (the
 * bound is far off, and not reached). */
static void finish_drains_then_closes(void **state)
{
	struct fixture *f = *state;
	enum { TOTAL = FINISH_TOTAL };
	static char data[TOTAL];
	int reader = client(f);
	int res[2];
	assert_int_equal(pipe(res), 0);
	for (size_t i = 0; i < TOTAL; i++)
		data[i] = pattern(i);
	attach_server_output(&f->s, data, TOTAL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Reads to EOF, blocking, and says how much came, and whether it came in order. */
		uint64_t got = 0;
		bool ok = true;
		char buf[8192];
		/* Our copies of the server's ends would keep EOF away. */
		attach_server_done(&f->s);
		assert_int_equal(uk_set_nonblock(reader, false), 0);
		for (ssize_t k; (k = read(reader, buf, sizeof(buf))) > 0; got += (uint64_t)k)
			for (ssize_t i = 0; i < k; i++)
				ok = ok && buf[i] == pattern(got + (uint64_t)i);
		got = ok ? got : 0;
		_exit(write(res[1], &got, sizeof(got)) == sizeof(got) ? 0 : 1);
	}
	safe_close(res[1]);
	attach_server_finish(&f->s, 60000);
	assert_int_equal(clients_open(f), 0);
	uint64_t got = 0;
	assert_int_equal(read(res[0], &got, sizeof(got)), sizeof(got));
	assert_int_equal(got, TOTAL);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	safe_close(res[0]);
	safe_close(reader);
}

/* One that does not read is closed when the time is up: it gets a part, then EOF. */
static void finish_is_bounded(void **state)
{
	struct fixture *f = *state;
	static char data[FINISH_TOTAL];
	int idle = client(f);
	attach_server_output(&f->s, data, sizeof(data));
	attach_server_finish(&f->s, 100);
	assert_int_equal(clients_open(f), 0);
	assert_int_equal(uk_set_nonblock(idle, false), 0);
	uint64_t idle_got = 0;
	char buf[8192];
	for (ssize_t k; (k = read(idle, buf, sizeof(buf))) > 0;)
		idle_got += (uint64_t)k;
	assert_true(idle_got < sizeof(data));
	safe_close(idle);
}

static int parse(const char *extra, struct vm_spec **s, uk_error *err)
{
	char json[256];
	snprintf(json, sizeof(json), "{\"version\":1,\"id\":\"vm1\",\"kernel\":\"/bin/sh\",\"state_dir\":\"/tmp/x\"%s}",
		 extra);
	memset(err, 0, sizeof(*err));
	return vm_spec_parse(json, s, err);
}

static void spec_stdin(void **state)
{
	(void)state;
	struct vm_spec *s = NULL;
	uk_error err;
	assert_int_equal(parse("", &s, &err), 0);
	assert_false(s->console_input);
	vm_spec_free(TAKE_PTR(s));
	assert_int_equal(parse(",\"stdin\":true", &s, &err), 0);
	assert_true(s->console_input);
	vm_spec_free(TAKE_PTR(s));
	assert_int_equal(parse(",\"stdin\":false", &s, &err), 0);
	assert_false(s->console_input);
	vm_spec_free(TAKE_PTR(s));
	assert_int_equal(parse(",\"stdin\":1", &s, &err), -EINVAL);
	assert_string_equal(err.msg, "field \"stdin\" must be true or false");
	assert_int_equal(parse(",\"stdin\":\"true\"", &s, &err), -EINVAL);
	assert_null(s);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(from_accept_on),
		T(slow_client_dropped),
		T(too_many_clients),
		T(input_in_order),
		T(input_off),
		T(input_back_pressure),
		T(finish_drains_then_closes),
		T(finish_is_bounded),
		cmocka_unit_test(spec_stdin),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
