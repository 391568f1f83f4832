/* Unit tests for src/unikd/config.c: the INI file, its errors by line, flags over the file,
 * absolute paths, what a reload may apply, and the shipped default file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "../../src/common/util.h"
#include "../../src/unikd/config.h"

/* Two configs and a scratch directory; teardown frees them, even after a failed assertion. */
struct fixture {
	struct unikd_config a, b;
	char dir[64];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f || config_init(&f->a) < 0 || config_init(&f->b) < 0)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/uk-test-config-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	config_done(&f->a);
	config_done(&f->b);
	int r = uk_rm_rf(f->dir, NULL);
	free(f);
	return r;
}

/* config_diff(a, b) names these keys, space-separated. */
static void assert_diff(const struct unikd_config *a, const struct unikd_config *b, const char *want_live,
			const char *want_restart)
{
	char *live = NULL, *restart = NULL;
	assert_int_equal(config_diff(a, b, &live, &restart), 0);
	assert_string_equal(live, want_live);
	assert_string_equal(restart, want_restart);
	free(live);
	free(restart);
}

static void defaults(void **state)
{
	struct unikd_config *c = &((struct fixture *)*state)->a;
	uk_error err = { 0 };
	assert_int_equal(config_finish(c, &err), 0);
	assert_string_equal(c->socket, "/run/unikd/unikd.sock");
	assert_int_equal(c->socket_mode, 0660);
	assert_string_equal(c->state_dir, "/var/lib/unikd");
	assert_string_equal(c->run_dir, "/run/unikd");
	assert_int_equal(c->workers, 16);
	assert_int_equal(c->read_workers, 4);
	assert_int_equal(c->image_workers, 4);
	assert_int_equal(c->max_connections, 256);
	assert_int_equal(c->idle_timeout_s, 120);
	assert_int_equal(c->log_level, UK_LOG_INFO);
	assert_null(c->vmwrapper);
	assert_null(c->qemu);
	assert_int_equal(c->memory_mib, 64);
	assert_int_equal(c->vcpus, 1);
	assert_int_equal(c->overhead_mib, 64);
	assert_string_equal(c->accel, "auto");
	assert_null(c->cgroup_root);
	assert_string_equal(c->network, "bridge");
	assert_string_equal(c->bridge, "unikd0");
	assert_string_equal(c->pod_cidr, "10.77.0.0/16");
	assert_string_equal(c->dnsmasq, "/usr/sbin/dnsmasq");
	assert_non_null(c->insecure);
	assert_null(c->insecure[0]);
	/* The delegate is off; were it on, "unikd" is unikd's and the rest the delegate's. */
	assert_null(c->delegate_endpoint);
	assert_null(config_delegate_socket(c));
	assert_string_equal(c->delegate_handlers[0], "unikd");
	assert_null(c->delegate_handlers[1]);
	assert_string_equal(c->delegate_default, "delegate");
}

static void every_key(void **state)
{
	struct unikd_config *c = &((struct fixture *)*state)->a;
	uk_error err = { 0 };
	const char *text = "; a comment\n"
			   "# another\n"
			   "[daemon]\n"
			   "socket = /srv/u/cri.sock\n"
			   "socket_mode = 0600\n"
			   "state_dir = /srv/u/state\n"
			   "run_dir=/srv/u/run\n"
			   "workers = 4 ; inline comment\n"
			   "read_workers = 2\n"
			   "image_workers = 1\n"
			   "max_connections = 32\n"
			   "connection_idle_timeout = 600\n"
			   "log_level = debug\n"
			   "\n"
			   "[vm]\n"
			   "  vmwrapper = /opt/u/vmwrapper\n" /* indented: not a continuation */
			   "\tqemu = /opt/q/qemu-system-x86_64\n"
			   "memory = 128\n"
			   "vcpus = 2\n"
			   "accel = tcg\n"
			   "memory_overhead = 0\n"
			   "cgroup_root = /sys/fs/cgroup\n"
			   "[network]\n"
			   "mode = none\n"
			   "bridge = br-pods.1\n"
			   "pod_cidr = 10.1.0.0/24\n"
			   "dnsmasq = /opt/d/dnsmasq\n"
			   "[registries]\n"
			   "insecure = reg.local:5000,  10.0.0.5 ,[::1]:5000\n"
			   "[delegate]\n"
			   "endpoint = unix:///run/containerd/containerd.sock\n"
			   "handlers = unikd, kata-uk ,u.2\n"
			   "default = unikd\n";
	assert_int_equal(config_load_string(c, text, "t.conf", &err), 0);
	assert_string_equal(c->socket, "/srv/u/cri.sock");
	assert_int_equal(c->socket_mode, 0600);
	assert_string_equal(c->state_dir, "/srv/u/state");
	assert_string_equal(c->run_dir, "/srv/u/run");
	assert_int_equal(c->workers, 4);
	assert_int_equal(c->read_workers, 2);
	assert_int_equal(c->image_workers, 1);
	assert_int_equal(c->max_connections, 32);
	assert_int_equal(c->idle_timeout_s, 600);
	assert_int_equal(c->log_level, UK_LOG_DEBUG);
	assert_string_equal(c->vmwrapper, "/opt/u/vmwrapper");
	assert_string_equal(c->qemu, "/opt/q/qemu-system-x86_64");
	assert_int_equal(c->memory_mib, 128);
	assert_int_equal(c->vcpus, 2);
	assert_string_equal(c->accel, "tcg");
	assert_int_equal(c->overhead_mib, 0);
	assert_string_equal(c->cgroup_root, "/sys/fs/cgroup");
	assert_string_equal(c->network, "none");
	assert_string_equal(c->bridge, "br-pods.1");
	assert_string_equal(c->pod_cidr, "10.1.0.0/24");
	assert_string_equal(c->dnsmasq, "/opt/d/dnsmasq");
	assert_string_equal(c->insecure[0], "reg.local:5000");
	assert_string_equal(c->insecure[1], "10.0.0.5");
	assert_string_equal(c->insecure[2], "[::1]:5000");
	assert_null(c->insecure[3]);
	assert_string_equal(c->delegate_endpoint, "unix:///run/containerd/containerd.sock");
	assert_string_equal(config_delegate_socket(c), "/run/containerd/containerd.sock");
	assert_string_equal(c->delegate_handlers[0], "unikd");
	assert_string_equal(c->delegate_handlers[1], "kata-uk");
	assert_string_equal(c->delegate_handlers[2], "u.2");
	assert_null(c->delegate_handlers[3]);
	assert_string_equal(c->delegate_default, "unikd");
}

/* Each bad file, and the whole message it gives. */
static void errors_name_the_line(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *text, *msg;
	} cases[] = {
		{ "[vm]\nmemory = abc\n", "t.conf:2: [vm] memory: \"abc\" is not a number of MiB" },
		{ "[vm]\nmemory = 15\n", "t.conf:2: [vm] memory: \"15\" is out of range: 16..1048576 MiB" },
		{ "[vm]\nvcpus = -1\n", "t.conf:2: [vm] vcpus: \"-1\" is not a number of vCPUs" },
		{ "[vm]\nmemory = 64 # MiB\n", "t.conf:2: [vm] memory: \"64 # MiB\" is not a number of MiB" },
		{ "[daemon]\nworkers = 65\n", "t.conf:2: [daemon] workers: \"65\" is out of range: 1..64 workers" },
		{ "[daemon]\nread_workers = 0\n", "t.conf:2: [daemon] read_workers: \"0\" is out of range: 1..64 workers" },
		{ "[daemon]\nimage_workers = 65\n",
		  "t.conf:2: [daemon] image_workers: \"65\" is out of range: 1..64 workers" },
		{ "[daemon]\nmax_connections = 0\n",
		  "t.conf:2: [daemon] max_connections: \"0\" is out of range: 1..65536 connections" },
		{ "[daemon]\nconnection_idle_timeout = 1d\n",
		  "t.conf:2: [daemon] connection_idle_timeout: \"1d\" is not a number of seconds" },
		{ "[daemon]\nconnection_idle_timeout = 86401\n",
		  "t.conf:2: [daemon] connection_idle_timeout: \"86401\" is out of range: 1..86400 seconds" },
		{ "[daemon]\nsocket_mode = 0999\n", "t.conf:2: [daemon] socket_mode: \"0999\" is not an octal mode like 0660" },
		{ "[daemon]\nsocket_mode =\n", "t.conf:2: [daemon] socket_mode: \"\" is not an octal mode like 0660" },
		{ "[daemon]\nlog_level = loud\n",
		  "t.conf:2: [daemon] log_level: \"loud\" is not one of error, warn, info, debug" },
		{ "[vm]\naccel = fast\n", "t.conf:2: [vm] accel: \"fast\" is not one of auto, kvm, tcg" },
		{ "[network]\nmode = host\n", "t.conf:2: [network] mode: \"host\" is not one of bridge, cni, none" },
		{ "[network]\npod_cidr = 10.77.0.0\n",
		  "t.conf:2: [network] pod_cidr: invalid CIDR \"10.77.0.0\": expected a.b.c.d/prefix with decimal "
		  "octets 0..255" },
		{ "[network]\nbridge = a/b\n",
		  "t.conf:2: [network] bridge: \"a/b\" is not an interface name: 1..15 characters of [A-Za-z0-9_.-]" },
		{ "[daemon]\nstate_dir = var/lib/unikd\n",
		  "t.conf:2: [daemon] state_dir: \"var/lib/unikd\" is not an absolute path" },
		{ "[vm]\nqemu =\n", "t.conf:2: [vm] qemu: the path is empty" },
		{ "[registries]\ninsecure = a:1, , b\n",
		  "t.conf:2: [registries] insecure: an empty entry in \"a:1, , b\": give HOST or HOST:PORT, "
		  "comma-separated" },
		{ "[registries]\ninsecure = a,\n",
		  "t.conf:2: [registries] insecure: an empty entry in \"a,\": give HOST or HOST:PORT, comma-separated" },
		{ "[registries]\ninsecure = http://a\n", "t.conf:2: [registries] insecure: \"http://a\" is not HOST or HOST:PORT" },
		{ "[vm]\nmemroy = 64\n",
		  "t.conf:2: [vm] memroy: unknown key (known in [vm]: vmwrapper, qemu, memory, vcpus, accel, "
		  "memory_overhead, cgroup_root)" },
		{ "[daemon]\nmemory = 64\n", "t.conf:2: [daemon] memory: unknown key; memory belongs in [vm]" },
		{ "# top\n\n[vms]\n",
		  "t.conf:3: unknown section [vms] (known: [daemon], [vm], [network], [registries], [delegate], [stream], [pool])" },
		{ "memory = 64\n",
		  "t.conf:1: memory: a key before any section; put it under [daemon], [vm], [network], [registries], "
		  "[delegate], [stream] or [pool]" },
		{ "[pool]\nsize = 65\n", "t.conf:2: [pool] size: \"65\" is out of range: 0..64 VMs per key" },
		{ "[pool]\nidle_timeout = -1\n", "t.conf:2: [pool] idle_timeout: \"-1\" is not a number of seconds" },
		{ "[stream]\naddress = localhost\n", "t.conf:2: [stream] address: \"localhost\" is not an IPv4 or IPv6 address" },
		{ "[stream]\nport = 70000\n", "t.conf:2: [stream] port: \"70000\" is out of range: 0..65535 port" },
		{ "[delegate]\nendpoint = tcp://127.0.0.1:10010\n",
		  "t.conf:2: [delegate] endpoint: \"tcp://127.0.0.1:10010\" is not unix:///ABSOLUTE/PATH or an "
		  "absolute path" },
		{ "[delegate]\nendpoint = run/containerd.sock\n",
		  "t.conf:2: [delegate] endpoint: \"run/containerd.sock\" is not unix:///ABSOLUTE/PATH or an absolute "
		  "path" },
		{ "[delegate]\nendpoint = unix://run/c.sock\n",
		  "t.conf:2: [delegate] endpoint: \"unix://run/c.sock\" is not unix:///ABSOLUTE/PATH or an absolute path" },
		{ "[delegate]\nendpoint = unix:/run/c.sock\n",
		  "t.conf:2: [delegate] endpoint: \"unix:/run/c.sock\" is not unix:///ABSOLUTE/PATH or an absolute path" },
		{ "[delegate]\nhandlers =\n", "t.conf:2: [delegate] handlers: between 1 and 16 names required" },
		{ "[delegate]\nhandlers = unikd,,kata\n",
		  "t.conf:2: [delegate] handlers: name 2 is not 1-63 bytes of [a-z0-9._-]" },
		{ "[delegate]\nhandlers = unikd, Kata\n",
		  "t.conf:2: [delegate] handlers: name 2 is not 1-63 bytes of [a-z0-9._-]" },
		{ "[delegate]\nhandlers = unikd, \"kata\"\n",
		  "t.conf:2: [delegate] handlers: name 2 is not 1-63 bytes of [a-z0-9._-]" },
		{ "[delegate]\nhandlers = a, b, a\n", "t.conf:2: [delegate] handlers: \"a\" is listed twice" },
		{ "[delegate]\nhandlers = a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s\n",
		  "t.conf:2: [delegate] handlers: between 1 and 16 names required" },
		{ "[delegate]\ndefault = containerd\n",
		  "t.conf:2: [delegate] default: \"containerd\" is not one of delegate, unikd" },
		{ "[delegate]\nendpoint = /a.sock\nendpoint = /b.sock\n",
		  "t.conf:3: [delegate] endpoint: set twice (first on line 2)" },
		{ "[delegate]\nsocket = /a.sock\n", "t.conf:2: [delegate] socket: unknown key; socket belongs in [daemon]" },
		{ "[delegate]\nhandler = unikd\n",
		  "t.conf:2: [delegate] handler: unknown key (known in [delegate]: endpoint, handlers, default)" },
		{ "[vm]\nmemory = 64\nvcpus = 1\nmemory = 65\n", "t.conf:4: [vm] memory: set twice (first on line 2)" },
		{ "[vm]\nmemory 64\n", "t.conf:2: expected [section], key = value, or a comment starting with ; or #" },
		{ "[vm\nmemory = 64\n", "t.conf:1: expected [section], key = value, or a comment starting with ; or #" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uk_error err = { 0 };
		struct unikd_config c;
		assert_int_equal(config_init(&c), 0);
		int r = config_load_string(&c, cases[i].text, "t.conf", &err);
		config_done(&c);
		if (r != -EINVAL || strcmp(err.msg, cases[i].msg) != 0)
			fail_msg("case %zu: r=%d\n got  %s\n want %s", i, r, err.msg, cases[i].msg);
	}
	(void)f;
}

/* inih goes on after an error; the message is the first line's, whatever its kind. */
static void first_error_wins(void **state)
{
	struct fixture *f = *state;
	uk_error err = { 0 };
	assert_int_equal(config_load_string(&f->a, "[vm]\nmemory = x\nbroken line\n", "t.conf", &err), -EINVAL);
	assert_string_equal(err.msg, "t.conf:2: [vm] memory: \"x\" is not a number of MiB");
	assert_int_equal(config_load_string(&f->b, "[vm]\nbroken line\nmemory = x\n[nope]\n", "t.conf", &err),
			 -EINVAL);
	assert_string_equal(err.msg, "t.conf:2: expected [section], key = value, or a comment starting with ; or #");
}

static void long_lines(void **state)
{
	struct fixture *f = *state;
	uk_error err = { 0 };
	char text[1024];
	/* 199 characters and the newline: the longest line inih takes whole. */
	snprintf(text, sizeof(text), "[daemon]\nstate_dir = /%0*d\n", 199 - 13, 0);
	assert_int_equal(strlen(strchr(text, '\n') + 1), 200);
	assert_int_equal(config_load_string(&f->a, text, "t.conf", &err), 0);
	assert_int_equal(strlen(f->a.state_dir), 199 - 12);
	/* One more, and the rest of the line is not read as a line of its own. */
	snprintf(text, sizeof(text), "[daemon]\nstate_dir = /%0*d\n[vm]\nmemory = 1\n", 200 - 13, 0);
	assert_int_equal(config_load_string(&f->b, text, "t.conf", &err), -EINVAL);
	assert_string_equal(err.msg, "t.conf:2: the line is longer than 199 characters");
}

static void empty_values_and_files(void **state)
{
	struct fixture *f = *state;
	uk_error err = { 0 };
	assert_int_equal(config_load_string(&f->a, "", "t.conf", &err), 0);
	assert_int_equal(config_load_string(&f->a, "[registries]\ninsecure = a\n", "t.conf", &err), 0);
	assert_string_equal(f->a.insecure[0], "a");
	/* An empty list is a list: none. */
	assert_int_equal(config_load_string(&f->a, "[registries]\ninsecure =\n[vm]\n", "t.conf", &err), 0);
	assert_null(f->a.insecure[0]);
}

static void files_on_disk(void **state)
{
	struct fixture *f = *state;
	uk_error err = { 0 };
	char path[128];
	snprintf(path, sizeof(path), "%s/missing.conf", f->dir);
	assert_int_equal(config_load(&f->a, path, false, &err), 0);
	assert_int_equal(config_load(&f->a, path, true, &err), -ENOENT);
	assert_non_null(strstr(err.msg, path));
	assert_int_equal(config_load(&f->a, f->dir, false, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not a regular file"));
	snprintf(path, sizeof(path), "%s/unikd.conf", f->dir);
	FILE *fp = fopen(path, "we");
	assert_non_null(fp);
	fputs("[vm]\nvcpus = 3\n\n[network]\nbridge = -\nbridge = x\n", fp);
	fclose(fp);
	assert_int_equal(config_load(&f->a, path, true, &err), -EINVAL);
	char want[256];
	snprintf(want, sizeof(want), "%s:6: [network] bridge: set twice (first on line 5)", path);
	assert_string_equal(err.msg, want);
	fp = fopen(path, "we");
	assert_non_null(fp);
	fputs("[vm]\nvcpus = 3\n", fp);
	fclose(fp);
	assert_int_equal(config_load(&f->b, path, true, &err), 1);
	assert_int_equal(f->b.vcpus, 3);
}

static void flags_over_the_file(void **state)
{
	struct fixture *f = *state;
	uk_error err = { 0 };
	assert_int_equal(config_load_string(&f->a,
					    "[vm]\nmemory = 128\nvcpus = 2\n[registries]\ninsecure = a, b\n"
					    "[daemon]\nlog_level = warn\n",
					    "t.conf", &err),
			 0);
	const struct config_flag flags[] = {
		{ "default-memory", "256" }, { "insecure-registry", "c:1" }, { "insecure-registry", "d" },
		{ "log-level", "debug" },     { "network", "none" },
	};
	assert_int_equal(config_apply_flags(&f->a, flags, ARRAY_SIZE(flags), &err), 0);
	assert_int_equal(f->a.memory_mib, 256);
	assert_int_equal(f->a.vcpus, 2); /* the file's, no flag */
	assert_int_equal(f->a.log_level, UK_LOG_DEBUG);
	assert_string_equal(f->a.network, "none");
	/* Given at all, the flags replace the file's list. */
	assert_string_equal(f->a.insecure[0], "c:1");
	assert_string_equal(f->a.insecure[1], "d");
	assert_null(f->a.insecure[2]);

	const struct config_flag bad[] = { { "default-vcpus", "257" } };
	assert_int_equal(config_apply_flags(&f->b, bad, 1, &err), -ERANGE);
	assert_string_equal(err.msg, "--default-vcpus: \"257\" is out of range: 1..256 vCPUs");
	const struct config_flag bad2[] = { { "accel", "xen" } };
	assert_int_equal(config_apply_flags(&f->b, bad2, 1, &err), -EINVAL);
	assert_string_equal(err.msg, "--accel: \"xen\" is not one of auto, kvm, tcg");
	const struct config_flag pools[] = { { "read-workers", "8" },
					      { "image-workers", "2" },
					      { "max-connections", "1000" },
					      { "connection-idle-timeout", "30" } };
	assert_int_equal(config_apply_flags(&f->b, pools, ARRAY_SIZE(pools), &err), 0);
	assert_int_equal(f->b.read_workers, 8);
	assert_int_equal(f->b.image_workers, 2);
	assert_int_equal(f->b.max_connections, 1000);
	assert_int_equal(f->b.idle_timeout_s, 30);
	const struct config_flag bad3[] = { { "nope", "1" } };
	assert_int_equal(config_apply_flags(&f->b, bad3, 1, &err), -EINVAL);
	assert_true(config_is_flag("pod-cidr"));
	assert_false(config_is_flag("config"));
}

/* The [delegate] keys: the longest values taken, flags over the file (a list flag given at
 * all replaces the file's list), an empty endpoint turning the delegate off, and flag
 * messages that name the key. */
static void delegate_keys(void **state)
{
	struct fixture *f = *state;
	uk_error err = { 0 };
	char text[512], name[80], path[200];
	/* 107 bytes: the most a unix socket address holds. */
	snprintf(path, sizeof(path), "/%0106d", 0);
	snprintf(name, sizeof(name), "%063d", 0);
	snprintf(text, sizeof(text), "[delegate]\nendpoint = %s\nhandlers = %s\n", path, name);
	assert_int_equal(config_load_string(&f->a, text, "t.conf", &err), 0);
	assert_string_equal(config_delegate_socket(&f->a), path);
	assert_string_equal(f->a.delegate_handlers[0], name);
	assert_null(f->a.delegate_handlers[1]);
	/* 16 names is the most. */
	assert_int_equal(config_load_string(&f->b, "[delegate]\nhandlers = a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p\n",
					    "t.conf", &err),
			 0);
	assert_string_equal(f->b.delegate_handlers[15], "p");
	assert_null(f->b.delegate_handlers[16]);

	const struct config_flag too_long[] = { { "delegate-endpoint", "" }, { "delegate-endpoint", path } };
	strcat(path, "x");
	assert_int_equal(config_apply_flags(&f->b, too_long, 2, &err), -ENAMETOOLONG);
	assert_string_equal(err.msg, "--delegate-endpoint: [delegate] endpoint: the socket path is longer than 107 bytes");
	strcat(name, "x");
	const struct config_flag long_name[] = { { "delegate-handlers", name } };
	assert_int_equal(config_apply_flags(&f->b, long_name, 1, &err), -EINVAL);
	assert_string_equal(err.msg, "--delegate-handlers: [delegate] handlers: name 1 is not 1-63 bytes of [a-z0-9._-]");
	const struct config_flag scheme[] = { { "delegate-endpoint", "http://localhost/c.sock" } };
	assert_int_equal(config_apply_flags(&f->b, scheme, 1, &err), -EINVAL);
	assert_string_equal(err.msg, "--delegate-endpoint: [delegate] endpoint: \"http://localhost/c.sock\" is not "
				     "unix:///ABSOLUTE/PATH or an absolute path");
	const struct config_flag twice[] = { { "delegate-handlers", "unikd" }, { "delegate-handlers", "unikd" } };
	assert_int_equal(config_apply_flags(&f->b, twice, 2, &err), -EINVAL);
	assert_string_equal(err.msg, "--delegate-handlers: [delegate] handlers: \"unikd\" is listed twice");
	const struct config_flag side[] = { { "delegate-default", "runc" } };
	assert_int_equal(config_apply_flags(&f->b, side, 1, &err), -EINVAL);
	assert_string_equal(err.msg, "--delegate-default: \"runc\" is not one of delegate, unikd");

	/* Flags over the file. */
	config_done(&f->a);
	assert_int_equal(config_init(&f->a), 0);
	assert_int_equal(config_load_string(&f->a,
					    "[delegate]\nendpoint = /run/containerd/containerd.sock\nhandlers = unikd, kata\n"
					    "default = unikd\n",
					    "t.conf", &err),
			 0);
	const struct config_flag flags[] = { { "delegate-handlers", "uk1" },
					     { "delegate-handlers", "uk2,uk3" },
					     { "delegate-endpoint", "unix:///run/k3s/containerd/containerd.sock" } };
	assert_int_equal(config_apply_flags(&f->a, flags, ARRAY_SIZE(flags), &err), 0);
	assert_string_equal(config_delegate_socket(&f->a), "/run/k3s/containerd/containerd.sock");
	assert_string_equal(f->a.delegate_handlers[0], "uk1");
	assert_string_equal(f->a.delegate_handlers[1], "uk2");
	assert_string_equal(f->a.delegate_handlers[2], "uk3");
	assert_null(f->a.delegate_handlers[3]);
	assert_string_equal(f->a.delegate_default, "unikd"); /* the file's, no flag */
	/* An empty endpoint, from a flag or the file, turns the delegate off. */
	const struct config_flag off[] = { { "delegate-endpoint", "" }, { "delegate-default", "delegate" } };
	assert_int_equal(config_apply_flags(&f->a, off, ARRAY_SIZE(off), &err), 0);
	assert_null(f->a.delegate_endpoint);
	assert_null(config_delegate_socket(&f->a));
	assert_string_equal(f->a.delegate_default, "delegate");
	assert_true(config_is_flag("delegate-endpoint"));
	assert_true(config_is_flag("delegate-handlers"));
	assert_true(config_is_flag("delegate-default"));
	/* All three need a restart, and the debug line shows them. */
	config_done(&f->b);
	assert_int_equal(config_init(&f->b), 0);
	assert_diff(&f->b, &f->a, "", "delegate.handlers");
	assert_int_equal(config_load_string(&f->b, "[delegate]\nendpoint = /c.sock\ndefault = unikd\n", "t.conf", &err),
			 0);
	assert_diff(&f->a, &f->b, "", "delegate.endpoint delegate.handlers delegate.default");
	char *d = config_describe(&f->a);
	assert_non_null(d);
	assert_non_null(strstr(d, " delegate.endpoint=\"\" delegate.handlers=uk1,uk2,uk3 delegate.default=delegate"));
	free(d);
}

static void absolute_paths(void **state)
{
	struct fixture *f = *state;
	uk_error err = { 0 };
	char cwd[4096], want[4200];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	/* On the command line a relative path is the working directory's. */
	const struct config_flag flags[] = {
		{ "state-dir", "./s//t/" }, { "run-dir", "r" }, { "vmwrapper", "bin/vmwrapper" }, { "qemu", "/usr/bin/q" },
	};
	assert_int_equal(config_apply_flags(&f->a, flags, ARRAY_SIZE(flags), &err), 0);
	assert_int_equal(config_finish(&f->a, &err), 0);
	snprintf(want, sizeof(want), "%s/s/t", strcmp(cwd, "/") ? cwd : "");
	assert_string_equal(f->a.state_dir, want);
	snprintf(want, sizeof(want), "%s/r", strcmp(cwd, "/") ? cwd : "");
	assert_string_equal(f->a.run_dir, want);
	snprintf(want, sizeof(want), "%s/r/unikd.sock", strcmp(cwd, "/") ? cwd : "");
	assert_string_equal(f->a.socket, want);
	snprintf(want, sizeof(want), "%s/bin/vmwrapper", strcmp(cwd, "/") ? cwd : "");
	assert_string_equal(f->a.vmwrapper, want);
	assert_string_equal(f->a.qemu, "/usr/bin/q");
	assert_null(f->a.cgroup_root);
}

static void reload_diff(void **state)
{
	struct fixture *f = *state;
	uk_error err = { 0 };
	assert_diff(&f->a, &f->b, "", "");
	assert_int_equal(config_load_string(&f->b,
					    "[daemon]\nlog_level = debug\nworkers = 2\nmax_connections = 9\n[vm]\naccel = kvm\n"
					    "memory = 80\n"
					    "[network]\nmode = none\n[registries]\ninsecure = r:5000\n",
					    "t.conf", &err),
			 0);
	assert_diff(&f->a, &f->b, "daemon.log_level vm.memory vm.accel registries.insecure", "daemon.workers daemon.max_connections network.mode");
	char *d = config_describe(&f->b);
	assert_non_null(d);
	assert_non_null(strstr(d, "daemon.log_level=debug "));
	assert_non_null(strstr(d, "vm.qemu=\"\" "));
	assert_non_null(strstr(d, "registries.insecure=r:5000"));
	free(d);
}

/* systemd/unikd.conf lists every key, commented out with its default: uncommented, it
 * changes nothing. Keys whose default is "unset" show the value unset means. */
static void shipped_file_shows_the_defaults(void **state)
{
	struct fixture *f = *state;
	uk_error err = { 0 };
	char *text = NULL, *out;
	/* make runs the tests from the top of the tree. */
	assert_int_equal(uk_read_file("systemd/unikd.conf", 65536, &text, NULL, &err), 0);
	assert_non_null(out = calloc(1, strlen(text) + 1));
	size_t keys = 0;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		if (line[0] == '#' && line[1] != ' ' && line[1] != '\0' && strchr(line, '=')) {
			keys++;
			if (strncmp(line, "#vmwrapper ", 11) == 0 || strncmp(line, "#qemu ", 6) == 0 ||
			    strncmp(line, "#cgroup_root ", 13) == 0 || strncmp(line, "#insecure ", 10) == 0)
				continue;
			line++;
		}
		strcat(out, line);
		strcat(out, "\n");
	}
	free(text);
	int r = config_load_string(&f->b, out, "unikd.conf", &err);
	free(out);
	if (r < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(keys, 33); /* every key of the table */
	assert_int_equal(config_finish(&f->a, &err), 0);
	assert_int_equal(config_finish(&f->b, &err), 0);
	assert_diff(&f->a, &f->b, "", "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(every_key, setup, teardown),
		cmocka_unit_test_setup_teardown(errors_name_the_line, setup, teardown),
		cmocka_unit_test_setup_teardown(first_error_wins, setup, teardown),
		cmocka_unit_test_setup_teardown(long_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(empty_values_and_files, setup, teardown),
		cmocka_unit_test_setup_teardown(files_on_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(flags_over_the_file, setup, teardown),
		cmocka_unit_test_setup_teardown(delegate_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(absolute_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(reload_diff, setup, teardown),
		cmocka_unit_test_setup_teardown(shipped_file_shows_the_defaults, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
