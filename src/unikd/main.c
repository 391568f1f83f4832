/* unikd: the node runtime. It serves the CRI on a unix socket and runs each container as
 * a VM under vmwrapper. Settings come from the config file and flags (config.c). It tells
 * systemd when it serves (sd_notify), re-reads the file on SIGHUP, and on SIGTERM/SIGINT
 * stops taking calls, lets the ones in flight finish and exits; VMs keep running, since
 * their vmwrapper, not unikd, supervises them. */
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "../common/log.h"
#include "../common/spawn.h"
#include "../common/util.h"
#include "../cri/cri.h"
#include "../delegate/forward.h"
#include "../stream/server.h"
#include "config.h"
#include "pool_vms.h"
#include "runtime.h"

#ifndef UNIKD_VERSION
#define UNIKD_VERSION "0.0.0"
#endif

#define MAX_MESSAGE (16 * 1024 * 1024)

/* The config as the daemon runs it, and what a reload needs to build the next one. */
struct daemon {
	struct unikd_config cfg;
	const char *config_path;
	bool config_given; /* --config: the file must exist */
	bool config_read;  /* a file was read */
	const struct config_flag *flags;
	size_t n_flags;
	char vmwrapper[PATH_MAX + 16];
	/* Insecure-registry lists replaced by reloads: a pull in flight may still read one. */
	char ***retired;
	size_t n_retired;
};

static void usage(FILE *f)
{
	fputs("Usage: unikd [options]\n"
	      "       unikd image import NAME[:TAG] (--kernel FILE [--initrd FILE] | --disk FILE\n"
	      "                          [--disk-format raw|qcow2]) [--cmdline CMDLINE]\n"
	      "                          [--unikernel-type TYPE [--unikernel-version V]]\n"
	      "       unikd image list\n"
	      "       unikd image rm REF\n"
	      "\n"
	      "The unikd node runtime: serves the Kubernetes CRI and runs each pod as a QEMU VM.\n"
	      "\n"
	      "Settings come from the built-in defaults, then the config file, then the flags.\n"
	      "The file is INI: [section] lines, then key = value lines; comments start with ; or #.\n"
	      "Each flag below names its key in brackets. The installed file (systemd/unikd.conf in\n"
	      "the source) lists every key with its default; docs/operations.md describes it.\n"
	      "SIGHUP re-reads the file (log level, accelerator, insecure registries; the others\n"
	      "need a restart).\n"
	      "\n"
	      "Options:\n"
	      "  --config FILE          the config file (default " CONFIG_DEFAULT_PATH ";\n"
	      "                         without --config a missing file is fine)\n"
	      "  --state-dir DIR        [daemon] state_dir: persistent state and images\n"
	      "                         (default " CONFIG_DEFAULT_STATE_DIR ")\n"
	      "  --run-dir DIR          [daemon] run_dir: runtime files and VM sockets\n"
	      "                         (default " CONFIG_DEFAULT_RUN_DIR ")\n"
	      "  --socket PATH          [daemon] socket: the CRI socket (default RUN_DIR/unikd.sock)\n"
	      "  --socket-mode MODE     [daemon] socket_mode: octal mode of the socket (default 0660)\n"
	      "  --workers N            [daemon] workers: threads for lifecycle calls (run, create,\n"
	      "                         start, stop, remove, update), 1..64 (default 16)\n"
	      "  --read-workers N       [daemon] read_workers: threads for Version, Status, List*,\n"
	      "                         *Status and *Stats calls, 1..64 (default 4)\n"
	      "  --image-workers N      [daemon] image_workers: threads for PullImage and RemoveImage,\n"
	      "                         1..64 (default 4)\n"
	      "  --max-connections N    [daemon] max_connections: CRI connections open at once; more\n"
	      "                         are closed as they come, 1..65536 (default 256)\n"
	      "  --connection-idle-timeout S\n"
	      "                         [daemon] connection_idle_timeout: a CRI connection without\n"
	      "                         calls for S seconds is closed, 1..86400 (default 120)\n"
	      "  --log-level L          [daemon] log_level: error, warn, info (default) or debug\n"
	      "  --vmwrapper PATH       [vm] vmwrapper: the vmwrapper binary (default: next to unikd)\n"
	      "  --qemu PATH            [vm] qemu: the QEMU binary (default " CONFIG_DEFAULT_QEMU ")\n"
	      "  --default-memory MIB   [vm] memory: guest memory when the container sets no limit\n"
	      "                         (default 64)\n"
	      "  --default-vcpus N      [vm] vcpus: vCPUs when the container sets no CPU quota\n"
	      "                         (default 1)\n"
	      "  --accel A              [vm] accel: auto (default), kvm or tcg; pods override it\n"
	      "                         with the annotation unikd.io/accel\n"
	      "  --memory-overhead MIB  [vm] memory_overhead: cgroup memory limit = guest memory +\n"
	      "                         this, for QEMU itself (default 64)\n"
	      "  --cgroup-root DIR      [vm] cgroup_root: where the cgroup hierarchies are mounted\n"
	      "                         (default /sys/fs/cgroup); without usable cgroups VMs run\n"
	      "                         unlimited\n"
	      "  --network MODE         [network] mode: bridge (default): pods get addresses on the\n"
	      "                         bridge; cni: from the node's CNI plugins; none: no network\n"
	      "  --bridge NAME          [network] bridge: the pods' bridge (default " NET_DEFAULT_BRIDGE ")\n"
	      "  --pod-cidr CIDR        [network] pod_cidr: pod addresses until kubelet sends a CIDR\n"
	      "                         (default " NET_DEFAULT_CIDR ")\n"
	      "  --dnsmasq PATH         [network] dnsmasq: the dnsmasq binary\n"
	      "                         (default " CONFIG_DEFAULT_DNSMASQ ")\n"
	      "  --cni-conf-dir DIR     [network] cni_conf_dir: CNI configs (default " CONFIG_DEFAULT_CNI_CONF_DIR ")\n"
	      "  --cni-bin-dirs DIRS    [network] cni_bin_dirs: CNI plugin directories, ':'-separated\n"
	      "                         (default " CONFIG_DEFAULT_CNI_BIN_DIRS ")\n"
	      "  --cni-timeout S        [network] cni_timeout: seconds one plugin run may take (default 60)\n"
	      "  --insecure-registry HOST[:PORT]\n"
	      "                         [registries] insecure (comma-separated in the file): pull\n"
	      "                         from this registry over plain HTTP (repeatable; given at\n"
	      "                         all, the flags replace the file's list; loopback\n"
	      "                         registries always may)\n"
	      "  --delegate-endpoint unix:///PATH\n"
	      "                         [delegate] endpoint: the CRI socket of the runtime that runs\n"
	      "                         the pods unikd does not (containerd), as unix:///PATH or\n"
	      "                         /PATH; it must be a socket at start-up (default: empty,\n"
	      "                         the delegate is off and unikd runs every pod)\n"
	      "  --delegate-handlers NAME\n"
	      "                         [delegate] handlers (comma-separated in the file): a runtime\n"
	      "                         handler unikd runs itself (repeatable, up to 16; given at\n"
	      "                         all, the flags replace the file's list; default unikd)\n"
	      "  --delegate-default SIDE\n"
	      "                         [delegate] default: who runs a pod without a runtime\n"
	      "                         handler: delegate (default) or unikd\n"
	      "  --stream-address IP    [stream] address: where the streaming server (kubectl attach,\n"
	      "                         port-forward) listens; kubelet connects to it (default\n"
	      "                         127.0.0.1)\n"
	      "  --stream-port N        [stream] port (default 0: any free port)\n"
	      "  --stream-url-timeout SECONDS\n"
	      "                         [stream] url_timeout: how long an Attach or PortForward URL\n"
	      "                         waits to be used, once (default 60)\n"
	      "  --stream-idle-timeout SECONDS\n"
	      "                         [stream] idle_timeout: a streaming session with no traffic\n"
	      "                         this long is closed (default 14400, kubelet's own)\n"
	      "  --pool-size N          [pool] size: VMs kept started ahead of need per kind of VM\n"
	      "                         (default 0: no warm pool; see docs/performance.md)\n"
	      "  --pool-total N         [pool] total: pool VMs of every kind together (default 16)\n"
	      "  --pool-memory MIB      [pool] memory: their memory together (default 1024)\n"
	      "  --pool-idle-timeout SECONDS\n"
	      "                         [pool] idle_timeout: a kind no pod wanted this long loses\n"
	      "                         its VMs (default 600; 0: never)\n"
	      "  --pool-starting N      [pool] starting: pool VMs starting at once (default 1)\n"
	      "  -h, --help             this text\n"
	      "      --version          the version, and the QEMU that unikd finds\n"
	      "\n"
	      "Exit status: 0 after SIGTERM/SIGINT, 1 when unikd cannot start, 2 for a bad flag or\n"
	      "config file, or a [delegate] endpoint that is not a unix socket.\n",
	      f);
}

#define VERSION_TIMEOUT_MS 10000
#define VERSION_OUT_MAX 4096
#define LOG_BOUND_INTERVAL_S 60

/* Run a command and keep the first line it prints; for QEMU's version. NULL if it cannot
 * be run or fails. */
static char *first_line_of(const char *const argv[])
{
	struct uk_spawn_opts o;
	_cleanup_(uk_run_result_done) struct uk_run_result res = { 0 };
	uk_spawn_opts_init(&o, argv);
	if (uk_run(&o, NULL, 0, VERSION_OUT_MAX, VERSION_TIMEOUT_MS, &res, NULL) < 0 || !WIFEXITED(res.status) ||
	    WEXITSTATUS(res.status) != 0 || !res.out)
		return NULL;
	res.out[strcspn(res.out, "\n")] = '\0';
	return *res.out ? strdup(res.out) : NULL;
}

static int image_command(int argc, char **argv, const struct unikd_config *o)
{
	char dir[PATH_MAX];
	uk_error err = { 0 };
	_cleanup_image_store_ struct image_store *store = NULL;
	snprintf(dir, sizeof(dir), "%s/images", o->state_dir);
	if (argc < 1) {
		fprintf(stderr, "unikd image: give import, list or rm (see --help)\n");
		return 2;
	}
	if (image_store_open(dir, &store, &err) < 0) {
		fprintf(stderr, "unikd image: %s\n", err.msg);
		return 1;
	}
	if (strcmp(argv[0], "list") == 0) {
		_cleanup_image_info_list_ struct image_info **list = NULL;
		size_t n = 0;
		if (image_store_list(store, &list, &n, &err) < 0) {
			fprintf(stderr, "unikd image list: %s\n", err.msg);
			return 1;
		}
		printf("%-72s %-12s %s\n", "ID", "SIZE", "TAGS");
		for (size_t i = 0; i < n; i++) {
			printf("%-72s %-12llu", list[i]->id, (unsigned long long)list[i]->size);
			for (char **t = list[i]->repo_tags; t && *t; t++)
				printf(" %s", *t);
			printf("\n");
		}
		return 0;
	}
	if (strcmp(argv[0], "rm") == 0) {
		if (argc != 2) {
			fprintf(stderr, "unikd image rm: give one image reference or id\n");
			return 2;
		}
		if (image_store_remove(store, argv[1], &err) < 0) {
			fprintf(stderr, "unikd image rm: %s\n", err.msg);
			return 1;
		}
		return 0;
	}
	if (strcmp(argv[0], "import") != 0) {
		fprintf(stderr, "unikd image: unknown command \"%s\"\n", argv[0]);
		return 2;
	}
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, 'k' }, { "initrd", required_argument, NULL, 'i' },
		{ "disk", required_argument, NULL, 'd' },   { "disk-format", required_argument, NULL, 'f' },
		{ "cmdline", required_argument, NULL, 'c' }, { "unikernel-type", required_argument, NULL, 't' },
		{ "unikernel-version", required_argument, NULL, 'v' }, { 0 },
	};
	struct image_import in = { 0 };
	char kbuf[PATH_MAX], ibuf[PATH_MAX], dbuf[PATH_MAX];
	const char *name = NULL;
	int c;
	optind = 0; /* glibc: 0 re-initialises getopt for the sub-command's argv */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		/* Store absolute paths: the daemon may run with another cwd. */
		switch (c) {
		case 'k': in.kernel = realpath(optarg, kbuf) ? kbuf : optarg; break;
		case 'i': in.initrd = realpath(optarg, ibuf) ? ibuf : optarg; break;
		case 'd': in.disk = realpath(optarg, dbuf) ? dbuf : optarg; break;
		case 'f': in.disk_format = optarg; break;
		case 'c': in.cmdline = optarg; break;
		case 't': in.unikernel_type = optarg; break;
		case 'v': in.unikernel_version = optarg; break;
		default: fprintf(stderr, "unikd image import: unknown option \"%s\"\n", argv[optind - 1]); return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "unikd image import: give exactly one NAME[:TAG]\n");
		return 2;
	}
	name = argv[optind];
	_cleanup_image_info_ struct image_info *info = NULL;
	if (image_store_import(store, name, &in, &info, &err) < 0) {
		fprintf(stderr, "unikd image import: %s\n", err.msg);
		return 1;
	}
	printf("%s\n", info->id);
	return 0;
}

static const char *qemu_of(const struct unikd_config *c)
{
	return c->qemu ? c->qemu : CONFIG_DEFAULT_QEMU;
}

/* Start-up failed: the log says why, and so does `systemctl status`. */
static int start_failed(const char *what, const char *error)
{
	log_error("msg=\"%s\" error=\"%s\"", what, error);
	sd_notifyf(0, "STATUS=failed: %s: %s", what, error);
	return 1;
}

/* READY=1 (or whatever prefix says) with a STATUS line of what unikd holds. */
static void notify_serving(struct runtime *rt, const char *socket, const char *prefix)
{
	size_t pods, running = 0;
	rt_lock(rt);
	pods = rt->n_sb;
	for (size_t i = 0; i < rt->n_ct; i++)
		running += rt->ct[i]->state == CTR_RUNNING;
	rt_unlock(rt);
	sd_notifyf(0, "%sSTATUS=serving on %s: %zu pods, %zu containers running", prefix, socket, pods, running);
}

static void swap_ptr(void *a, void *b)
{
	void *t = *(void **)a;
	*(void **)a = *(void **)b;
	*(void **)b = t;
}

/* SIGHUP: read the file again and apply what can change under running pods. The log level
 * is atomic; the accelerator is read under the runtime's lock; the insecure-registry list
 * is published atomically and the old one kept until exit, as a pull may hold it. The rest
 * keep their running values until a restart. A bad file changes nothing. */
static void reload(struct daemon *d, struct runtime *rt, struct cri_context *ctx)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	sd_notifyf(0, "RELOADING=1\nSTATUS=reloading %s\nMONOTONIC_USEC=%llu", d->config_path,
		   (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000);
	struct unikd_config next = { 0 };
	uk_error err = { 0 };
	_cleanup_free_ char *live = NULL, *restart = NULL;
	int r;
	if (config_init(&next) < 0) {
		log_error("msg=\"reload failed; the running config stays\" error=\"out of memory\"");
		goto done;
	}
	/* The flags given at start-up still win over the file. */
	if ((r = config_load(&next, d->config_path, d->config_given, &err)) < 0 ||
	    config_apply_flags(&next, d->flags, d->n_flags, &err) < 0 || config_finish(&next, &err) < 0) {
		log_error("msg=\"reload failed; the running config stays\" error=\"%s\"", err.msg);
		goto done;
	}
	if (config_diff(&d->cfg, &next, &live, &restart) < 0) {
		log_error("msg=\"reload failed; the running config stays\" error=\"out of memory\"");
		goto done;
	}
	if (next.log_level != d->cfg.log_level) {
		d->cfg.log_level = next.log_level;
		uk_log_set_level(next.log_level);
	}
	if (strcmp(next.accel, d->cfg.accel) != 0) {
		rt_lock(rt);
		swap_ptr(&d->cfg.accel, &next.accel);
		rt->cfg.default_accel = d->cfg.accel;
		rt_unlock(rt);
	}
	/* Read by CreateContainer without the runtime's lock: whole words, stored atomically. */
	if (next.memory_mib != d->cfg.memory_mib) {
		d->cfg.memory_mib = next.memory_mib;
		__atomic_store_n(&rt->cfg.default_memory_mib, next.memory_mib, __ATOMIC_RELAXED);
	}
	if (next.vcpus != d->cfg.vcpus) {
		d->cfg.vcpus = next.vcpus;
		__atomic_store_n(&rt->cfg.default_vcpus, next.vcpus, __ATOMIC_RELAXED);
	}
	if (strstr(live, "registries.insecure")) {
		char ***nr = realloc(d->retired, (d->n_retired + 1) * sizeof(*nr));
		if (nr) {
			d->retired = nr;
			d->retired[d->n_retired++] = d->cfg.insecure;
		} /* else the old list leaks: freeing it under a pull would be worse */
		d->cfg.insecure = TAKE_PTR(next.insecure);
		__atomic_store_n(&ctx->insecure_registries, (const char *const *)d->cfg.insecure, __ATOMIC_RELEASE);
	}
	if (*restart)
		log_warn("msg=\"these settings change only with a restart; the running values stay\" keys=\"%s\"",
			 restart);
	d->config_read = r > 0;
	log_info("msg=\"reloaded\" config=%s found=%s applied=\"%s\"", d->config_path, r > 0 ? "yes" : "no", live);
done:
	config_done(&next);
	notify_serving(rt, d->cfg.socket, "READY=1\n");
}

/* The CRI server: a pool of threads per class of call, the connection limits. */
static int start_cri_server(const struct unikd_config *o, struct cri_context *ctx, uk_grpc_server **srv,
			    uk_error *err)
{
	struct grpc_server_config gc = {
		.socket_path = o->socket, .socket_mode = o->socket_mode,
		.threads = { [GRPC_CLASS_READ] = o->read_workers, [GRPC_CLASS_LIFECYCLE] = o->workers,
			     [GRPC_CLASS_IMAGE] = o->image_workers },
		.max_connections = o->max_connections, .idle_timeout_s = o->idle_timeout_s,
		.max_message_bytes = MAX_MESSAGE, .methods = cri_methods, .n_methods = cri_n_methods,
		.userdata = ctx, .router = ctx->delegate ? delegate_route_call : NULL,
	};
	return uk_grpc_server_start(&gc, srv, err);
}

/* vmwrapper: the configured one, or the one beside our own binary. */
static int find_vmwrapper(struct daemon *d)
{
	const struct unikd_config *o = &d->cfg;
	if (!o->vmwrapper) {
		char self[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n < 0)
			return start_failed("cannot find our own binary", strerror(errno));
		self[n] = '\0';
		*strrchr(self, '/') = '\0';
		snprintf(d->vmwrapper, sizeof(d->vmwrapper), "%s/vmwrapper", self);
	} else {
		snprintf(d->vmwrapper, sizeof(d->vmwrapper), "%s", o->vmwrapper);
	}
	if (access(d->vmwrapper, X_OK) < 0) {
		log_error("msg=\"vmwrapper is not executable\" path=%s error=\"%s\"", d->vmwrapper, strerror(errno));
		sd_notifyf(0, "STATUS=failed: vmwrapper %s is not executable", d->vmwrapper);
		return 1;
	}
	return 0;
}

/* With a [delegate] endpoint, it must be a unix socket already: containerd starts first.
 * A mistyped path is a config error (exit 2), found before anything is touched. Without
 * one, nothing to check. */
static int check_delegate(const struct unikd_config *o)
{
	const char *path = config_delegate_socket(o);
	struct stat st;
	if (!path)
		return 0;
	int r = stat(path, &st) < 0 ? -errno : S_ISSOCK(st.st_mode) ? 0 : -ENOTSOCK;
	if (r == 0)
		return 0;
	const char *why = r == -ENOTSOCK ? "not a socket" : strerror(-r);
	log_error("msg=\"[delegate] endpoint is not a unix socket\" path=%s error=\"%s\"", path, why);
	sd_notifyf(0, "STATUS=failed: [delegate] endpoint %s: %s", path, why);
	return 2;
}

/* Signals through a signalfd, the directories, and the single-instance lock. Returns 0 or
 * main's exit status. */
static int prepare_process(const struct unikd_config *o, int *sfd, int *lockfd)
{
	uk_error err = { 0 };
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	(void)sigprocmask(SIG_BLOCK, &mask, NULL); /* cannot fail with a valid how */
	(void)signal(SIGPIPE, SIG_IGN);
	*sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (*sfd < 0)
		return start_failed("signalfd failed", strerror(errno));
	if (uk_mkdir_p(o->state_dir, 0700, &err) < 0 || uk_mkdir_p(o->run_dir, 0755, &err) < 0)
		return start_failed("cannot create directories", err.msg);
	char sockdir[PATH_MAX];
	snprintf(sockdir, sizeof(sockdir), "%s", o->socket);
	if (strrchr(sockdir, '/') && strrchr(sockdir, '/') != sockdir) {
		*strrchr(sockdir, '/') = '\0';
		if (uk_mkdir_p(sockdir, 0755, &err) < 0)
			return start_failed("cannot create the socket's directory", err.msg);
	}
	/* One unikd per run directory: the lock is what makes replacing the socket safe. */
	char lockpath[PATH_MAX + 16];
	snprintf(lockpath, sizeof(lockpath), "%s/unikd.lock", o->run_dir);
	*lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (*lockfd < 0 || flock(*lockfd, LOCK_EX | LOCK_NB) < 0) {
		log_error("msg=\"another unikd is running with this run directory\" lock=%s", lockpath);
		sd_notifyf(0, "STATUS=failed: another unikd holds %s", lockpath);
		return 1;
	}
	return 0;
}

/* What the CRI handlers share: the runtime, QEMU's version, KVM, and for Status verbose the
 * settings unikd started with. */
static void make_context(const struct daemon *d, struct runtime *rt, struct cri_context *ctx)
{
	const struct unikd_config *o = &d->cfg;
	const char *qv_argv[] = { qemu_of(o), "--version", NULL };
	*ctx = (struct cri_context){ .rt = rt, .qemu_version = first_line_of(qv_argv),
				     .insecure_registries = (const char *const *)o->insecure };
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	ctx->kvm_available = kvm >= 0;
	safe_close(kvm);
	json_object *ci = ctx->config_info = json_object_new_object();
	json_object_object_add(ci, "configFile", d->config_read ? json_object_new_string(d->config_path) : NULL);
	json_object_object_add(ci, "stateDir", json_object_new_string(o->state_dir));
	json_object_object_add(ci, "runDir", json_object_new_string(o->run_dir));
	json_object_object_add(ci, "socket", json_object_new_string(o->socket));
	json_object_object_add(ci, "vmwrapper", json_object_new_string(d->vmwrapper));
	json_object_object_add(ci, "defaultMemoryMiB", json_object_new_int((int)o->memory_mib));
	json_object_object_add(ci, "defaultVcpus", json_object_new_int((int)o->vcpus));
	json_object_object_add(ci, "accel", json_object_new_string(o->accel));
	json_object_object_add(ci, "workers", json_object_new_int((int)o->workers));
	json_object_object_add(ci, "readWorkers", json_object_new_int((int)o->read_workers));
	json_object_object_add(ci, "imageWorkers", json_object_new_int((int)o->image_workers));
	json_object_object_add(ci, "maxConnections", json_object_new_int((int)o->max_connections));
	json_object_object_add(ci, "connectionIdleTimeout", json_object_new_int((int)o->idle_timeout_s));
	const char *delegate = config_delegate_socket(o);
	json_object_object_add(ci, "delegateSocket", delegate ? json_object_new_string(delegate) : NULL);
}

/* With a [delegate] endpoint: its client, records and router (src/delegate/forward.h). */
static int open_delegate(const struct unikd_config *o, struct cri_context *ctx, uk_error *err)
{
	const char *path = config_delegate_socket(o);
	if (!path)
		return 0;
	size_t n = 0;
	while (o->delegate_handlers[n])
		n++;
	struct delegate_config dc = { .handlers = (const char *const *)o->delegate_handlers, .n_handlers = n,
				      .default_unikd = strcmp(o->delegate_default, "unikd") == 0, .enabled = true };
	char endpoint[PATH_MAX + 8];
	snprintf(endpoint, sizeof(endpoint), "unix://%s", path);
	int r = delegate_open(&dc, endpoint, o->state_dir, MAX_MESSAGE, &ctx->delegate, err);
	if (r < 0)
		return r;
	ctx->handlers = (const char *const *)o->delegate_handlers;
	log_info("msg=\"delegate\" endpoint=%s handlers=%zu default=%s", endpoint, n, o->delegate_default);
	return 0;
}

static void context_done(struct cri_context *ctx)
{
	stream_server_stop(ctx->stream);
	delegate_free(ctx->delegate);
	json_object_put(ctx->config_info);
	free(ctx->qemu_version);
}

/* The event loop: signals; dnsmasq's pidfd, so a dead dnsmasq is restarted at once; a timer
 * that keeps dnsmasq's log bounded; the CNI config directory (cni mode). Returns the signal
 * that ended it (0: an error). */
static int event_loop(struct daemon *d, struct runtime *rt, struct cri_context *ctx, int sfd)
{
	_cleanup_close_ int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	struct itimerspec every = { .it_interval = { LOG_BOUND_INTERVAL_S, 0 }, .it_value = { LOG_BOUND_INTERVAL_S, 0 } };
	if (tfd < 0 || timerfd_settime(tfd, 0, &every, NULL) < 0)
		log_warn("msg=\"no timer for dnsmasq's log: it is bounded at pod changes only\" error=\"%s\"",
			 strerror(errno));
	for (;;) {
		/* A fresh pidfd each pass: a restart elsewhere replaces the process it watches. */
		_cleanup_close_ int dfd = rt_net_dnsmasq_pidfd(rt->net);
		struct pollfd p[4] = { { .fd = sfd, .events = POLLIN }, { .fd = dfd, .events = POLLIN },
				       { .fd = tfd, .events = POLLIN },
				       { .fd = rt_cni_watch_fd(rt->net->cni), .events = POLLIN } };
		if (poll(p, 4, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("msg=\"poll failed\" error=\"%s\"", strerror(errno));
			return 0;
		}
		if (p[1].revents)
			rt_net_dnsmasq_restart(rt->net);
		if (p[3].revents)
			rt_cni_reload(rt->net->cni); /* the CNI config directory changed */
		if (p[2].revents) {
			uint64_t ticks;
			uk_error e = { 0 };
			(void)!read(tfd, &ticks, sizeof(ticks)); /* only to rearm; the count does not matter */
			if (rt_net_bound_logs(rt->net, &e) < 0)
				log_warn("msg=\"cannot bound dnsmasq's log\" error=\"%s\"", e.msg);
		}
		if (!p[0].revents)
			continue;
		struct signalfd_siginfo si = { 0 };
		ssize_t n = read(sfd, &si, sizeof(si));
		if (n < 0 && errno == EINTR)
			continue;
		if (n != sizeof(si)) {
			log_error("msg=\"reading signals failed\" error=\"%s\"", strerror(errno));
			return 0;
		}
		if (si.ssi_signo == SIGHUP)
			reload(d, rt, ctx);
		else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			return (int)si.ssi_signo;
	}
}

/* The warm pool, when [pool] size is set: not having one is not fatal (starts are cold). */
static void open_pool(const struct unikd_config *o, struct runtime *rt)
{
	struct pool_config pc = { .per_key = o->pool_size, .total = o->pool_total,
				  .budget_mib = o->pool_memory_mib, .starting_max = o->pool_starting,
				  .idle_ms = (uint64_t)o->pool_idle_timeout_s * 1000 };
	uk_error err = { 0 };
	rt_lock(rt);
	int r = rt_pool_open(rt, &pc, &err);
	rt_unlock(rt);
	if (r < 0)
		log_error("msg=\"no warm pool: every start is cold\" error=\"%s\"", err.msg);
	else if (rt->pool)
		log_info("msg=\"warm pool on\" size=%u total=%u memory_mib=%u idle_timeout_s=%u", o->pool_size,
			 o->pool_total, o->pool_memory_mib, o->pool_idle_timeout_s);
}

static int run_daemon(struct daemon *d)
{
	struct unikd_config *o = &d->cfg;
	uk_error err = { 0 };
	_cleanup_close_ int sfd = -1, lockfd = -1;
	int r;
	if ((r = check_delegate(o)) != 0 || (r = find_vmwrapper(d)) != 0)
		return r;
	_cleanup_free_ char *described = config_describe(o);
	log_debug("msg=\"config\" file=%s found=%s %s", d->config_path, d->config_read ? "yes" : "no",
		  described ? described : "");
	if ((r = prepare_process(o, &sfd, &lockfd)) != 0)
		return r;
	struct rt_config rc = {
		.state_dir = o->state_dir, .run_dir = o->run_dir, .vmwrapper = d->vmwrapper, .qemu = o->qemu,
		.default_memory_mib = o->memory_mib, .default_vcpus = o->vcpus, .default_accel = o->accel,
		.memory_overhead_mib = o->overhead_mib, .cgroup_root = o->cgroup_root,
		.net = { .enabled = strcmp(o->network, "bridge") == 0, .cni = strcmp(o->network, "cni") == 0,
			 .cni_conf_dir = o->cni_conf_dir, .cni_bin_dirs = o->cni_bin_dirs,
			 .cni_timeout_s = o->cni_timeout_s, .bridge = o->bridge, .cidr = o->pod_cidr,
			 .dnsmasq = o->dnsmasq, .state_dir = o->state_dir, .run_dir = o->run_dir },
	};
	struct runtime *rt = NULL;
	if ((r = runtime_open(&rc, &rt, &err)) < 0)
		return start_failed("cannot open the state", err.msg);
	open_pool(o, rt);
	struct cri_context ctx;
	make_context(d, rt, &ctx);
	uk_grpc_server *srv = NULL;
	struct stream_config sc = { .address = o->stream_address, .port = o->stream_port,
				    .max_connections = STREAM_DEFAULT_MAX_CONNECTIONS,
				    .idle_timeout_s = o->stream_idle_timeout_s,
				    .url_timeout_s = o->stream_url_timeout_s };
	const char *what = "cannot start the streaming server";
	if ((r = stream_server_start(&sc, &ctx.stream, &err)) < 0 ||
	    (what = "cannot start the delegate", r = open_delegate(o, &ctx, &err)) < 0 ||
	    (what = "cannot start the CRI server", r = start_cri_server(o, &ctx, &srv, &err)) < 0) {
		(void)start_failed(what, err.msg); /* logged and notified */
		rt_pool_free(rt);
		runtime_free(rt);
		context_done(&ctx);
		return 1;
	}
	log_info("msg=\"ready\" version=%s socket=%s state_dir=%s run_dir=%s qemu=\"%s\" kvm=%s stream=%s",
		 UNIKD_VERSION, o->socket, o->state_dir, o->run_dir, ctx.qemu_version ? ctx.qemu_version : "missing",
		 ctx.kvm_available ? "yes" : "no", stream_server_base(ctx.stream));
	/* The socket is listening: a call made now is served. */
	notify_serving(rt, o->socket, "READY=1\n");
	int sig = event_loop(d, rt, &ctx, sfd);
	sd_notify(0, "STOPPING=1\nSTATUS=stopping: calls in flight finish, VMs keep running");
	log_info("msg=\"stopping\" signal=%s; calls in flight finish, VMs keep running",
		 sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "none (an error)");
	uk_grpc_server_stop(srv);
	rt_pool_free(rt); /* its VMs run on, for the next start to adopt */
	runtime_free(rt);
	context_done(&ctx);
	log_info("msg=\"stopped\"");
	return 0;
}

static void print_version(const struct unikd_config *c)
{
	const char *argv[] = { qemu_of(c), "--version", NULL };
	_cleanup_free_ char *qv = first_line_of(argv);
	printf("unikd %s\n", UNIKD_VERSION);
	if (qv)
		printf("qemu: %s (%s)\n", qv, qemu_of(c));
	else
		printf("qemu: not found or not runnable (%s)\n", qemu_of(c));
}

/* A flag that sets a config key. */
#define SETTING 'C'

/* A bad command line or config file, before logging starts; journald still sees an error. */
static bool journal;
static void _printf_(1, 2) fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%sunikd: ", journal ? "<3>" : "");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, SETTING },   { "run-dir", required_argument, NULL, SETTING },
		{ "socket", required_argument, NULL, SETTING },      { "socket-mode", required_argument, NULL, SETTING },
		{ "vmwrapper", required_argument, NULL, SETTING },   { "qemu", required_argument, NULL, SETTING },
		{ "default-memory", required_argument, NULL, SETTING }, { "default-vcpus", required_argument, NULL, SETTING },
		{ "accel", required_argument, NULL, SETTING },       { "workers", required_argument, NULL, SETTING },
		{ "log-level", required_argument, NULL, SETTING },   { "network", required_argument, NULL, SETTING },
		{ "bridge", required_argument, NULL, SETTING },      { "pod-cidr", required_argument, NULL, SETTING },
		{ "dnsmasq", required_argument, NULL, SETTING },     { "cni-conf-dir", required_argument, NULL, SETTING },
		{ "cni-bin-dirs", required_argument, NULL, SETTING },
		{ "cni-timeout", required_argument, NULL, SETTING },     { "memory-overhead", required_argument, NULL, SETTING },
		{ "cgroup-root", required_argument, NULL, SETTING }, { "insecure-registry", required_argument, NULL, SETTING },
		{ "read-workers", required_argument, NULL, SETTING }, { "image-workers", required_argument, NULL, SETTING },
		{ "max-connections", required_argument, NULL, SETTING },
		{ "connection-idle-timeout", required_argument, NULL, SETTING },
		{ "delegate-endpoint", required_argument, NULL, SETTING },
		{ "delegate-handlers", required_argument, NULL, SETTING },
		{ "delegate-default", required_argument, NULL, SETTING },
		{ "stream-address", required_argument, NULL, SETTING },
		{ "stream-port", required_argument, NULL, SETTING },
		{ "stream-url-timeout", required_argument, NULL, SETTING },
		{ "stream-idle-timeout", required_argument, NULL, SETTING },
		{ "pool-size", required_argument, NULL, SETTING },
		{ "pool-total", required_argument, NULL, SETTING },
		{ "pool-memory", required_argument, NULL, SETTING },
		{ "pool-idle-timeout", required_argument, NULL, SETTING },
		{ "pool-starting", required_argument, NULL, SETTING },
		{ "config", required_argument, NULL, 'f' },          { "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },               { 0 },
	};
	_cleanup_free_ struct config_flag *flags = calloc((size_t)argc + 1, sizeof(*flags));
	struct daemon d = { .config_path = CONFIG_DEFAULT_PATH };
	_cleanup_(config_done) struct unikd_config scratch = { 0 };
	uk_error err = { 0 };
	bool version = false;
	int c, idx, r = 0;

	uk_log_set_ident("unikd");
	journal = uk_log_detect_journal();
	if (!flags) {
		fatal("out of memory");
		return 1;
	}
	opterr = 0;
	/* "+": stop at the first non-option, so "image import --kernel" reaches its own parser. */
	while ((c = getopt_long(argc, argv, "+h", opts, &idx)) != -1) {
		switch (c) {
		case SETTING: flags[d.n_flags++] = (struct config_flag){ opts[idx].name, optarg }; break;
		case 'f': d.config_path = optarg; d.config_given = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': version = true; break;
		default:
			fatal("unknown or incomplete option \"%s\" (see --help)", argv[optind - 1]);
			return 2;
		}
	}
	d.flags = flags;
	/* Bad flags first: they are what the person just typed. */
	if (config_init(&scratch) < 0 || config_init(&d.cfg) < 0) {
		fatal("out of memory");
		config_done(&d.cfg);
		return 1;
	}
	if (config_apply_flags(&scratch, flags, d.n_flags, &err) < 0 ||
	    (r = config_load(&d.cfg, d.config_path, d.config_given, &err)) < 0 ||
	    config_apply_flags(&d.cfg, flags, d.n_flags, &err) < 0) {
		fatal("%s", err.msg);
		config_done(&d.cfg);
		return 2;
	}
	d.config_read = r > 0;
	if (config_finish(&d.cfg, &err) < 0) {
		fatal("%s", err.msg);
		config_done(&d.cfg);
		return 1;
	}
	uk_log_set_level(d.cfg.log_level);

	int rc;
	if (version) {
		print_version(&d.cfg);
		rc = 0;
	} else if (optind < argc && strcmp(argv[optind], "image") == 0) {
		rc = image_command(argc - optind - 1, argv + optind + 1, &d.cfg);
	} else if (optind < argc) {
		fatal("unexpected argument \"%s\" (see --help)", argv[optind]);
		rc = 2;
	} else {
		rc = run_daemon(&d);
	}
	for (size_t i = 0; i < d.n_retired; i++)
		strv_free(d.retired[i]);
	free(d.retired);
	config_done(&d.cfg);
	return rc;
}
