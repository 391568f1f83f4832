/* unikd: the node runtime. It serves the CRI on a unix socket and runs each container as
 * a VM under vmwrapper. On SIGTERM/SIGINT it stops taking calls, lets the ones in flight
 * finish and exits; VMs keep running, since their vmwrapper, not unikd, supervises them. */
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "../common/log.h"
#include "../common/util.h"
#include "../cri/cri.h"
#include "runtime.h"

#ifndef UNIKD_VERSION
#define UNIKD_VERSION "0.0.0"
#endif

#define DEFAULT_STATE_DIR "/var/lib/unikd"
#define DEFAULT_RUN_DIR "/run/unikd"
#define DEFAULT_WORKERS 16
#define MAX_MESSAGE (16 * 1024 * 1024)

struct options {
	const char *state_dir, *run_dir, *socket, *vmwrapper, *qemu, *accel;
	const char *network, *bridge, *pod_cidr, *dnsmasq, *cgroup_root;
	unsigned memory_mib, vcpus, workers, socket_mode, overhead_mib;
	const char **insecure; /* NULL-terminated --insecure-registry values, or NULL */
	size_t n_insecure;
};

static void usage(FILE *f)
{
	fputs("Usage: unikd [options]\n"
	      "       unikd image import NAME[:TAG] (--kernel FILE [--initrd FILE] | --disk FILE\n"
	      "                          [--disk-format raw|qcow2]) [--cmdline CMDLINE]\n"
	      "       unikd image list\n"
	      "       unikd image rm REF\n"
	      "\n"
	      "The unikd node runtime: serves the Kubernetes CRI and runs each pod as a QEMU VM.\n"
	      "\n"
	      "Options:\n"
	      "  --state-dir DIR        persistent state and images (default " DEFAULT_STATE_DIR ")\n"
	      "  --run-dir DIR          runtime files and VM sockets (default " DEFAULT_RUN_DIR ")\n"
	      "  --socket PATH          CRI socket (default RUN_DIR/unikd.sock)\n"
	      "  --socket-mode MODE     octal mode of the socket (default 0660)\n"
	      "  --vmwrapper PATH       vmwrapper binary (default: next to unikd)\n"
	      "  --qemu PATH            QEMU binary (default /usr/bin/qemu-system-x86_64)\n"
	      "  --default-memory MIB   guest memory when the container sets no limit (default 64)\n"
	      "  --default-vcpus N      vCPUs when the container sets no CPU quota (default 1)\n"
	      "  --memory-overhead MIB  cgroup memory limit = guest memory + this, for QEMU\n"
	      "                         itself (default 64)\n"
	      "  --cgroup-root DIR      where the cgroup hierarchies are mounted (default\n"
	      "                         /sys/fs/cgroup); without usable cgroups VMs run unlimited\n"
	      "  --accel A              auto (default), kvm or tcg; pods override with the\n"
	      "                         annotation unikd.io/accel\n"
	      "  --workers N            concurrent CRI calls (default 16)\n"
	      "  --network MODE         bridge (default): pods get addresses on the bridge;\n"
	      "                         none: pods have no network\n"
	      "  --bridge NAME          the pods' bridge (default " NET_DEFAULT_BRIDGE ")\n"
	      "  --pod-cidr CIDR        pod addresses until kubelet sends one (default " NET_DEFAULT_CIDR ")\n"
	      "  --dnsmasq PATH         dnsmasq binary (default /usr/sbin/dnsmasq)\n"
	      "  --insecure-registry HOST[:PORT]\n"
	      "                         pull from this registry over plain HTTP (repeatable;\n"
	      "                         loopback registries always may)\n"
	      "  --log-level L          error, warn, info (default) or debug\n"
	      "  -h, --help             this text\n"
	      "      --version          print the version\n",
	      f);
}

static int parse_uint(const char *opt, const char *v, uint64_t min, uint64_t max, unsigned *ret)
{
	uint64_t n;
	if (uk_parse_u64(v, min, max, &n) < 0) {
		fprintf(stderr, "unikd: --%s: \"%s\" must be a number within %llu..%llu\n", opt, v,
			(unsigned long long)min, (unsigned long long)max);
		return -EINVAL;
	}
	*ret = (unsigned)n;
	return 0;
}

/* Run a command and keep the first line it prints; for QEMU's version. */
static char *first_line_of(char *const argv[])
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return NULL;
	pid_t pid = fork();
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
		dup2(devnull, 0);
		dup2(p[1], 1);
		dup2(devnull, 2);
		char *envp[] = { NULL };
		execve(argv[0], argv, envp);
		_exit(127);
	}
	close(p[1]);
	char buf[256];
	ssize_t n = pid > 0 ? read(p[0], buf, sizeof(buf) - 1) : -1;
	close(p[0]);
	int st = 0;
	if (pid > 0)
		waitpid(pid, &st, 0);
	if (n <= 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return NULL;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return strdup(buf);
}

static int image_command(int argc, char **argv, const struct options *o)
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
		{ "cmdline", required_argument, NULL, 'c' }, { 0 },
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

static int run_daemon(struct options *o)
{
	uk_error err = { 0 };
	char sockbuf[PATH_MAX + 16], lockpath[PATH_MAX + 16], self[PATH_MAX], wrapper[PATH_MAX + 16];
	int r;

	if (!o->socket) {
		snprintf(sockbuf, sizeof(sockbuf), "%s/unikd.sock", o->run_dir);
		o->socket = sockbuf;
	}
	if (!o->vmwrapper) {
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n < 0) {
			log_error("msg=\"cannot find our own binary\" error=\"%s\"", strerror(errno));
			return 1;
		}
		self[n] = '\0';
		*strrchr(self, '/') = '\0';
		snprintf(wrapper, sizeof(wrapper), "%s/vmwrapper", self);
		o->vmwrapper = wrapper;
	}
	if (access(o->vmwrapper, X_OK) < 0) {
		log_error("msg=\"vmwrapper is not executable\" path=%s error=\"%s\"", o->vmwrapper, strerror(errno));
		return 1;
	}

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	_cleanup_close_ int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0) {
		log_error("msg=\"signalfd failed\" error=\"%s\"", strerror(errno));
		return 1;
	}
	if (uk_mkdir_p(o->state_dir, 0700, &err) < 0 || uk_mkdir_p(o->run_dir, 0755, &err) < 0) {
		log_error("msg=\"cannot create directories\" error=\"%s\"", err.msg);
		return 1;
	}
	char sockdir[PATH_MAX];
	snprintf(sockdir, sizeof(sockdir), "%s", o->socket);
	if (strrchr(sockdir, '/') && strrchr(sockdir, '/') != sockdir) {
		*strrchr(sockdir, '/') = '\0';
		uk_mkdir_p(sockdir, 0755, NULL);
	}
	/* One unikd per run directory: the lock is what makes replacing the socket safe. */
	snprintf(lockpath, sizeof(lockpath), "%s/unikd.lock", o->run_dir);
	_cleanup_close_ int lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
		log_error("msg=\"another unikd is running with this run directory\" lock=%s", lockpath);
		return 1;
	}

	struct rt_config rc = {
		.state_dir = o->state_dir, .run_dir = o->run_dir, .vmwrapper = o->vmwrapper, .qemu = o->qemu,
		.default_memory_mib = o->memory_mib, .default_vcpus = o->vcpus, .default_accel = o->accel,
		.memory_overhead_mib = o->overhead_mib, .cgroup_root = o->cgroup_root,
		.net = { .enabled = strcmp(o->network, "bridge") == 0, .bridge = o->bridge, .cidr = o->pod_cidr,
			 .dnsmasq = o->dnsmasq, .state_dir = o->state_dir, .run_dir = o->run_dir },
	};
	struct runtime *rt = NULL;
	if ((r = runtime_open(&rc, &rt, &err)) < 0) {
		log_error("msg=\"cannot open the state\" error=\"%s\"", err.msg);
		return 1;
	}
	char *qv_argv[] = { (char *)(o->qemu ? o->qemu : "/usr/bin/qemu-system-x86_64"), "--version", NULL };
	struct cri_context ctx = { .rt = rt, .qemu_version = first_line_of(qv_argv),
				   .insecure_registries = o->insecure };
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	ctx.kvm_available = kvm >= 0;
	safe_close(kvm);
	ctx.config_info = json_object_new_object();
	json_object_object_add(ctx.config_info, "stateDir", json_object_new_string(o->state_dir));
	json_object_object_add(ctx.config_info, "runDir", json_object_new_string(o->run_dir));
	json_object_object_add(ctx.config_info, "socket", json_object_new_string(o->socket));
	json_object_object_add(ctx.config_info, "vmwrapper", json_object_new_string(o->vmwrapper));
	json_object_object_add(ctx.config_info, "defaultMemoryMiB", json_object_new_int(o->memory_mib));
	json_object_object_add(ctx.config_info, "defaultVcpus", json_object_new_int(o->vcpus));
	json_object_object_add(ctx.config_info, "accel", json_object_new_string(o->accel));
	json_object_object_add(ctx.config_info, "workers", json_object_new_int(o->workers));

	struct grpc_server_config gc = {
		.socket_path = o->socket, .socket_mode = o->socket_mode, .workers = o->workers,
		.max_message_bytes = MAX_MESSAGE, .methods = cri_methods, .n_methods = cri_n_methods,
		.userdata = &ctx,
	};
	uk_grpc_server *srv = NULL;
	if ((r = uk_grpc_server_start(&gc, &srv, &err)) < 0) {
		log_error("msg=\"cannot start the CRI server\" error=\"%s\"", err.msg);
		runtime_free(rt);
		json_object_put(ctx.config_info);
		free(ctx.qemu_version);
		return 1;
	}
	log_info("msg=\"ready\" version=%s socket=%s state_dir=%s run_dir=%s qemu=\"%s\" kvm=%s", UNIKD_VERSION,
		 o->socket, o->state_dir, o->run_dir, ctx.qemu_version ? ctx.qemu_version : "missing",
		 ctx.kvm_available ? "yes" : "no");

	/* The event loop: signals, and dnsmasq's pidfd so a dead dnsmasq is restarted at once. */
	struct signalfd_siginfo si = { 0 };
	for (;;) {
		/* A fresh pidfd each pass: a restart elsewhere replaces the process it watches. */
		_cleanup_close_ int dfd = rt_net_dnsmasq_pidfd(rt->net);
		struct pollfd p[2] = { { .fd = sfd, .events = POLLIN }, { .fd = dfd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("msg=\"poll failed\" error=\"%s\"", strerror(errno));
			break;
		}
		if (p[1].revents)
			rt_net_dnsmasq_restart(rt->net);
		if (!p[0].revents)
			continue;
		ssize_t n = read(sfd, &si, sizeof(si));
		if (n < 0 && errno == EINTR)
			continue;
		if (n != sizeof(si)) {
			log_error("msg=\"reading signals failed\" error=\"%s\"", strerror(errno));
			break;
		}
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			break;
	}
	log_info("msg=\"stopping\" signal=%s; calls in flight finish, VMs keep running",
		 si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
	uk_grpc_server_stop(srv);
	runtime_free(rt);
	json_object_put(ctx.config_info);
	free(ctx.qemu_version);
	log_info("msg=\"stopped\"");
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 's' },   { "run-dir", required_argument, NULL, 'r' },
		{ "socket", required_argument, NULL, 'S' },      { "socket-mode", required_argument, NULL, 'M' },
		{ "vmwrapper", required_argument, NULL, 'w' },   { "qemu", required_argument, NULL, 'q' },
		{ "default-memory", required_argument, NULL, 'm' }, { "default-vcpus", required_argument, NULL, 'c' },
		{ "accel", required_argument, NULL, 'a' },       { "workers", required_argument, NULL, 'W' },
		{ "log-level", required_argument, NULL, 'l' },   { "help", no_argument, NULL, 'h' },
		{ "network", required_argument, NULL, 'n' },     { "bridge", required_argument, NULL, 'b' },
		{ "pod-cidr", required_argument, NULL, 'p' },    { "dnsmasq", required_argument, NULL, 'd' },
		{ "memory-overhead", required_argument, NULL, 'o' }, { "cgroup-root", required_argument, NULL, 'g' },
		{ "version", no_argument, NULL, 'V' },           { "insecure-registry", required_argument, NULL, 'I' },
		{ 0 },
	};
	struct options o = { .state_dir = DEFAULT_STATE_DIR, .run_dir = DEFAULT_RUN_DIR, .accel = "auto",
			     .network = "bridge", .bridge = NET_DEFAULT_BRIDGE, .pod_cidr = NET_DEFAULT_CIDR,
			     .dnsmasq = "/usr/sbin/dnsmasq", .overhead_mib = 64,
			     .memory_mib = 64, .vcpus = 1, .workers = DEFAULT_WORKERS, .socket_mode = 0660 };
	enum uk_log_level lvl;
	int c;

	uk_log_set_ident("unikd");
	opterr = 0;
	/* "+": stop at the first non-option, so "image import --kernel" reaches its own parser. */
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 's': o.state_dir = optarg; break;
		case 'r': o.run_dir = optarg; break;
		case 'S': o.socket = optarg; break;
		case 'w': o.vmwrapper = optarg; break;
		case 'b': o.bridge = optarg; break;
		case 'g': o.cgroup_root = optarg; break;
		case 'p': o.pod_cidr = optarg; break;
		case 'd': o.dnsmasq = optarg; break;
		case 'n':
			if (strcmp(optarg, "bridge") && strcmp(optarg, "none")) {
				fprintf(stderr, "unikd: --network: unknown mode \"%s\" (bridge or none)\n", optarg);
				return 2;
			}
			o.network = optarg;
			break;
		case 'q': o.qemu = optarg; break;
		case 'I': {
			if (!*optarg || strchr(optarg, '/')) {
				fprintf(stderr, "unikd: --insecure-registry: \"%s\" must be HOST or HOST:PORT\n", optarg);
				return 2;
			}
			const char **nv = realloc(o.insecure, (o.n_insecure + 2) * sizeof(*nv));
			if (!nv) {
				fprintf(stderr, "unikd: out of memory\n");
				return 2;
			}
			o.insecure = nv;
			o.insecure[o.n_insecure++] = optarg;
			o.insecure[o.n_insecure] = NULL;
			break;
		}
		case 'M': {
			char *end;
			unsigned long m = strtoul(optarg, &end, 8);
			if (*end || m > 0777) {
				fprintf(stderr, "unikd: --socket-mode: \"%s\" is not an octal mode\n", optarg);
				return 2;
			}
			o.socket_mode = (unsigned)m;
			break;
		}
		case 'm': if (parse_uint("default-memory", optarg, 16, 1024 * 1024, &o.memory_mib) < 0) return 2; break;
		case 'c': if (parse_uint("default-vcpus", optarg, 1, 256, &o.vcpus) < 0) return 2; break;
		case 'W': if (parse_uint("workers", optarg, 1, 64, &o.workers) < 0) return 2; break;
		case 'o': if (parse_uint("memory-overhead", optarg, 0, 65536, &o.overhead_mib) < 0) return 2; break;
		case 'a':
			if (strcmp(optarg, "auto") && strcmp(optarg, "kvm") && strcmp(optarg, "tcg")) {
				fprintf(stderr, "unikd: --accel: unknown value \"%s\" (auto, kvm or tcg)\n", optarg);
				return 2;
			}
			o.accel = optarg;
			break;
		case 'l':
			if (uk_log_parse_level(optarg, &lvl) < 0) {
				fprintf(stderr, "unikd: --log-level: unknown level \"%s\"\n", optarg);
				return 2;
			}
			uk_log_set_level(lvl);
			break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("unikd %s\n", UNIKD_VERSION); return 0;
		default:
			fprintf(stderr, "unikd: unknown or incomplete option \"%s\" (see --help)\n", argv[optind - 1]);
			return 2;
		}
	}
	int rc;
	if (optind < argc && strcmp(argv[optind], "image") == 0) {
		rc = image_command(argc - optind - 1, argv + optind + 1, &o);
	} else if (optind < argc) {
		fprintf(stderr, "unikd: unexpected argument \"%s\" (see --help)\n", argv[optind]);
		rc = 2;
	} else {
		rc = run_daemon(&o);
	}
	free(o.insecure);
	return rc;
}
