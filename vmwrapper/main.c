/* vmwrapper: boots one VM and supervises it, as conmon does for one container.
 *
 * It is QEMU's parent: it owns the console, a private QMP monitor and the two QMP
 * listening sockets, reaps QEMU and records how the VM ended in exit.json. */
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "../src/common/log.h"
#include "../src/common/util.h"
#include "../src/qmp/qmp.h"
#include "crilog.h"
#include "exit_status.h"
#include "kernel_probe.h"
#include "qemu_argv.h"
#include "spec.h"

#ifndef UNIKD_VERSION
#define UNIKD_VERSION "0.0.0"
#endif

#define SPEC_MAX (64 * 1024)
#define STDERR_TAIL_MAX 4096
#define STDERR_TAIL_LINES 10
#define CONSOLE_CHUNK (64 * 1024)

/* How the console reaches its file: as the guest wrote it, or as CRI log records. */
enum log_format { LOG_FORMAT_RAW, LOG_FORMAT_CRI };
static const char *const log_format_names[] = { "raw", "cri" };

/* Exit codes of vmwrapper itself when the VM never ran. */
#define EXIT_BAD_INPUT 125
#define EXIT_QEMU_FAILED 126

struct wrapper {
	struct vm_spec *spec;
	struct vm_plan plan;
	bool person; /* foreground command for a person, console on stdout */
	char *tmp_state_dir; /* person mode without --state-dir: removed at exit */
	int sync_fd;
	int sig_fd;
	int console_fd;
	int out_fd;
	bool out_failed; /* a write to out_fd failed (logged once per fd) */
	enum log_format log_format;
	struct crilog cri; /* LOG_FORMAT_CRI: the pending line, at most 16 KiB */
	int stderr_fd;
	qmp *ctl;
	pid_t qemu_pid;
	bool qemu_exited;
	int wait_status;
	bool started;
	bool panicked;
	char shutdown_reason[64];
	char errtail[STDERR_TAIL_MAX + 1];
	size_t errlen;
	int stop_requests;
	uint64_t t_start, t_forked, t_ready, t_first_output; /* CLOCK_MONOTONIC ns */
	uint64_t started_ns;
};

static void usage(FILE *f)
{
	fputs("Usage: vmwrapper --kernel FILE [--append CMDLINE] [--initrd FILE] [options]\n"
	      "       vmwrapper --disk FILE [--disk-format raw|qcow2] [options]\n"
	      "       vmwrapper --kernel FILE --disk FILE [options]  (a kernel and a data disk)\n"
	      "       vmwrapper --spec FILE.json [--sync-fd N]   (how unikd runs it)\n"
	      "\n"
	      "Boots one VM in QEMU with its serial console on stdout and exits with the\n"
	      "guest's exit code (isa-debug-exit value), 0 on poweroff.\n"
	      "\n"
	      "Options:\n"
	      "  --kernel FILE        PVH ELF, bzImage or multiboot kernel\n"
	      "  --initrd FILE        initial ramdisk\n"
	      "  --append CMDLINE     kernel command line\n"
	      "  --disk FILE          boot from a disk image instead of a kernel; with --kernel,\n"
	      "                       a data disk (virtio-blk); its writes go to a throwaway snapshot\n"
	      "  --disk-format FMT    raw (default) or qcow2\n"
	      "  --memory MIB         guest memory in MiB (default 64)\n"
	      "  --cpus N             vCPUs (default 1)\n"
	      "  --machine M          auto (default), microvm, pc or q35\n"
	      "  --accel A            auto (default: kvm if /dev/kvm opens), kvm or tcg\n"
	      "  --cpu MODEL          QEMU CPU model (default: QEMU's)\n"
	      "  --qemu PATH          QEMU binary (default " QEMU_DEFAULT_BINARY ")\n"
	      "  --state-dir DIR      where the QMP sockets and exit.json go (default: a temp dir)\n"
	      "  --console-log FILE   append the console to FILE instead of stdout\n"
	      "  --log-format F       raw (default): the console's bytes as they come;\n"
	      "                       cri: kubelet's CRI log records (TIME stdout F|P LINE)\n"
	      "  --id ID              VM name (default vm)\n"
	      "  -v, --verbose        log decisions to stderr\n"
	      "  -h, --help           this text\n"
	      "      --version        print the version\n"
	      "\n"
	      "Exit status: the guest's code; 0 on poweroff; 1 on panic or reset; 128+N if QEMU\n"
	      "died of signal N; 137 if stopped; 125 for bad input; 126 if QEMU failed.\n",
	      f);
}

static int parse_enum(const char *opt, const char *val, const char *const *names, size_t n, int *ret,
		      uk_error *err)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(val, names[i]) == 0) {
			*ret = (int)i;
			return 0;
		}
	return uk_err(err, EINVAL, "--%s: unknown value \"%s\"", opt, val);
}

static int set_str(char **dst, const char *val)
{
	free(*dst);
	*dst = strdup(val);
	return *dst ? 0 : -ENOMEM;
}

/* Person mode accepts relative paths; the spec holds absolute ones. */
static int set_path(char **dst, const char *opt, const char *val, uk_error *err)
{
	char buf[PATH_MAX];
	if (!realpath(val, buf))
		return uk_err_errno(err, errno, "--%s: %s", opt, val);
	return set_str(dst, buf) < 0 ? uk_err(err, ENOMEM, "out of memory") : 0;
}

/* The spec's "log_format" (vm_spec_parse leaves fields it does not know alone): "cri" or
 * "raw", by default "cri" when the console goes to a log file (unikd's case, kubelet reads
 * it) and "raw" when it goes to stdout. */
static int spec_log_format(const char *json, const struct vm_spec *s, enum log_format *ret, uk_error *err)
{
	_cleanup_json_ json_object *o = json_tokener_parse(json);
	json_object *v;
	*ret = s->console_log ? LOG_FORMAT_CRI : LOG_FORMAT_RAW;
	if (!o || !json_object_object_get_ex(o, "log_format", &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return uk_err(err, EINVAL, "field \"log_format\" must be a string");
	const char *name = json_object_get_string(v);
	for (size_t i = 0; i < ARRAY_SIZE(log_format_names); i++)
		if (strcmp(name, log_format_names[i]) == 0) {
			*ret = (enum log_format)i;
			return 0;
		}
	return uk_err(err, EINVAL, "field \"log_format\" has unknown value \"%s\" (cri or raw)", name);
}

enum {
	OPT_KERNEL = 256, OPT_INITRD, OPT_APPEND, OPT_DISK, OPT_DISK_FORMAT, OPT_MEMORY, OPT_CPUS,
	OPT_MACHINE, OPT_ACCEL, OPT_CPU, OPT_QEMU, OPT_STATE_DIR, OPT_CONSOLE_LOG, OPT_LOG_FORMAT, OPT_ID,
	OPT_SPEC, OPT_SYNC_FD, OPT_VERSION,
};

static int parse_args(int argc, char **argv, struct wrapper *w, uk_error *err)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, OPT_KERNEL },
		{ "initrd", required_argument, NULL, OPT_INITRD },
		{ "append", required_argument, NULL, OPT_APPEND },
		{ "disk", required_argument, NULL, OPT_DISK },
		{ "disk-format", required_argument, NULL, OPT_DISK_FORMAT },
		{ "memory", required_argument, NULL, OPT_MEMORY },
		{ "cpus", required_argument, NULL, OPT_CPUS },
		{ "machine", required_argument, NULL, OPT_MACHINE },
		{ "accel", required_argument, NULL, OPT_ACCEL },
		{ "cpu", required_argument, NULL, OPT_CPU },
		{ "qemu", required_argument, NULL, OPT_QEMU },
		{ "state-dir", required_argument, NULL, OPT_STATE_DIR },
		{ "console-log", required_argument, NULL, OPT_CONSOLE_LOG },
		{ "log-format", required_argument, NULL, OPT_LOG_FORMAT },
		{ "id", required_argument, NULL, OPT_ID },
		{ "spec", required_argument, NULL, OPT_SPEC },
		{ "sync-fd", required_argument, NULL, OPT_SYNC_FD },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ 0 },
	};
	static const char *const machines[] = { "auto", "microvm", "pc", "q35" };
	static const char *const accels[] = { "auto", "kvm", "tcg" };
	static const char *const formats[] = { "raw", "qcow2" };
	_cleanup_vm_spec_ struct vm_spec *s = vm_spec_new();
	const char *spec_file = NULL;
	bool person_opts = false;
	uint64_t n;
	int c, r = 0, e;

	if (!s)
		return uk_err(err, ENOMEM, "out of memory");
	opterr = 0;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		person_opts |= c >= OPT_KERNEL && c <= OPT_ID;
		switch (c) {
		case OPT_KERNEL: r = set_path(&s->kernel, "kernel", optarg, err); break;
		case OPT_INITRD: r = set_path(&s->initrd, "initrd", optarg, err); break;
		case OPT_DISK: r = set_path(&s->disk, "disk", optarg, err); break;
		case OPT_APPEND: r = set_str(&s->cmdline, optarg); break;
		case OPT_CPU: r = set_str(&s->cpu_model, optarg); break;
		case OPT_ID: r = set_str(&s->id, optarg); break;
		case OPT_QEMU: r = set_path(&s->qemu_binary, "qemu", optarg, err); break;
		case OPT_CONSOLE_LOG: r = set_str(&s->console_log, optarg); break;
		case OPT_STATE_DIR: r = set_str(&s->state_dir, optarg); break;
		case OPT_LOG_FORMAT:
			r = parse_enum("log-format", optarg, log_format_names, ARRAY_SIZE(log_format_names), &e, err);
			w->log_format = (enum log_format)e;
			break;
		case OPT_DISK_FORMAT:
			r = parse_enum("disk-format", optarg, formats, ARRAY_SIZE(formats), &e, err);
			s->disk_format = (enum vm_disk_format)e;
			break;
		case OPT_MACHINE:
			r = parse_enum("machine", optarg, machines, ARRAY_SIZE(machines), &e, err);
			s->machine = (enum vm_machine)e;
			break;
		case OPT_ACCEL:
			r = parse_enum("accel", optarg, accels, ARRAY_SIZE(accels), &e, err);
			s->accel = (enum vm_accel)e;
			break;
		case OPT_MEMORY:
			if (uk_parse_u64(optarg, VM_MEMORY_MIN_MIB, VM_MEMORY_MAX_MIB, &n) < 0)
				return uk_err(err, EINVAL, "--memory: \"%s\" is not a size in MiB within %d..%d",
					      optarg, VM_MEMORY_MIN_MIB, VM_MEMORY_MAX_MIB);
			s->memory_mib = (unsigned)n;
			break;
		case OPT_CPUS:
			if (uk_parse_u64(optarg, 1, VM_VCPUS_MAX, &n) < 0)
				return uk_err(err, EINVAL, "--cpus: \"%s\" is not a count within 1..%d", optarg,
					      VM_VCPUS_MAX);
			s->vcpus = (unsigned)n;
			break;
		case OPT_SPEC: spec_file = optarg; break;
		case OPT_SYNC_FD:
			if (uk_parse_u64(optarg, 3, INT_MAX, &n) < 0)
				return uk_err(err, EINVAL, "--sync-fd: \"%s\" is not an fd >= 3", optarg);
			w->sync_fd = (int)n;
			break;
		case 'v': uk_log_set_level(UK_LOG_DEBUG); break;
		case 'h': usage(stdout); exit(0);
		case OPT_VERSION: printf("vmwrapper %s\n", UNIKD_VERSION); exit(0);
		default:
			return uk_err(err, EINVAL, "unknown or incomplete option \"%s\" (see --help)",
				      argv[optind - 1]);
		}
		if (r < 0)
			return r == -ENOMEM ? uk_err(err, ENOMEM, "out of memory") : r;
	}
	if (optind < argc)
		return uk_err(err, EINVAL, "unexpected argument \"%s\" (see --help)", argv[optind]);

	if (spec_file) {
		if (person_opts)
			return uk_err(err, EINVAL, "--spec cannot be combined with VM options");
		_cleanup_free_ char *json = NULL;
		vm_spec_free(TAKE_PTR(s));
		if ((r = uk_read_file(spec_file, SPEC_MAX, &json, NULL, err)) < 0 ||
		    (r = vm_spec_parse(json, &s, err)) < 0 ||
		    (r = spec_log_format(json, s, &w->log_format, err)) < 0)
			return uk_err_ctx(err, "spec %s", spec_file);
		w->spec = TAKE_PTR(s);
		return 0;
	}
	if (w->sync_fd >= 0)
		return uk_err(err, EINVAL, "--sync-fd needs --spec");
	if (!s->kernel && !s->disk)
		return uk_err(err, EINVAL, "give --kernel or --disk (see --help)");
	w->person = true;
	if (!s->id && set_str(&s->id, "vm") < 0)
		return uk_err(err, ENOMEM, "out of memory");
	if (!s->state_dir) {
		const char *base = getenv("XDG_RUNTIME_DIR");
		char tmpl[PATH_MAX];
		snprintf(tmpl, sizeof(tmpl), "%s/vmwrapper.XXXXXX", base && *base ? base : "/tmp");
		if (!mkdtemp(tmpl))
			return uk_err_errno(err, errno, "create a state directory under %s", tmpl);
		if (set_str(&s->state_dir, tmpl) < 0 || !(w->tmp_state_dir = strdup(tmpl)))
			return uk_err(err, ENOMEM, "out of memory");
	} else {
		char buf[PATH_MAX];
		if (uk_mkdir_p(s->state_dir, 0700, err) < 0 || !realpath(s->state_dir, buf))
			return uk_err_errno(err, errno, "--state-dir %s", s->state_dir);
		set_str(&s->state_dir, buf);
	}
	if (s->console_log && s->console_log[0] != '/') {
		char buf[PATH_MAX];
		if (!getcwd(buf, sizeof(buf)) || strlen(buf) + strlen(s->console_log) + 2 > sizeof(buf))
			return uk_err(err, ENAMETOOLONG, "--console-log: path too long");
		strcat(buf, "/");
		strcat(buf, s->console_log);
		set_str(&s->console_log, buf);
	}
	if ((r = vm_spec_validate(s, err)) < 0)
		return r;
	w->spec = TAKE_PTR(s);
	return 0;
}

/* A listening unix socket named relative to the cwd (the state directory), which keeps
 * sun_path short however deep the state directory is. */
static int listen_unix(const char *name, uk_error *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", name);
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return uk_err_errno(err, errno, "socket");
	unlink(name);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return uk_err_errno(err, errno, "bind %s", name);
	if (chmod(name, 0600) < 0 || listen(fd, 8) < 0)
		return uk_err_errno(err, errno, "listen %s", name);
	return TAKE_FD(fd);
}

static void send_sync(struct wrapper *w, bool ok, const char *error)
{
	if (w->sync_fd < 0)
		return;
	_cleanup_json_ json_object *o = json_object_new_object();
	if (o) {
		json_object_object_add(o, "ok", json_object_new_boolean(ok));
		json_object_object_add(o, "pid", json_object_new_int(getpid()));
		if (w->qemu_pid > 0)
			json_object_object_add(o, "qemu_pid", json_object_new_int(w->qemu_pid));
		if (error)
			json_object_object_add(o, "error", json_object_new_string(error));
		const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		(void)uk_write_all(w->sync_fd, s, strlen(s));
		(void)uk_write_all(w->sync_fd, "\n", 1);
	}
	w->sync_fd = safe_close(w->sync_fd);
}

static void on_ready(qmp *q, void *userdata)
{
	struct wrapper *w = userdata;
	int maj = 0, min = 0, mic = 0;
	w->started = true;
	w->t_ready = uk_now_mono_ns();
	qmp_version(q, &maj, &min, &mic);
	log_debug("vm=%s msg=\"qemu ready\" qemu_version=%d.%d.%d ms_since_start=%.3f", w->spec->id, maj,
		  min, mic, (double)(w->t_ready - w->t_start) / 1e6);
	send_sync(w, true, NULL);
}

static void on_event(qmp *q, const char *event, json_object *data, uint64_t ts, void *userdata)
{
	struct wrapper *w = userdata;
	(void)q;
	(void)ts;
	if (!event)
		return;
	log_debug("vm=%s msg=\"qmp event\" event=%s", w->spec->id, event);
	if (strcmp(event, "GUEST_PANICKED") == 0) {
		w->panicked = true;
	} else if (strcmp(event, "SHUTDOWN") == 0) {
		json_object *r;
		if (data && json_object_object_get_ex(data, "reason", &r))
			snprintf(w->shutdown_reason, sizeof(w->shutdown_reason), "%s", json_object_get_string(r));
	}
}

static void stderr_append(struct wrapper *w, const char *buf, size_t n)
{
	if (n >= STDERR_TAIL_MAX) {
		buf += n - STDERR_TAIL_MAX;
		n = STDERR_TAIL_MAX;
	}
	if (w->errlen + n > STDERR_TAIL_MAX) {
		size_t drop = w->errlen + n - STDERR_TAIL_MAX;
		memmove(w->errtail, w->errtail + drop, w->errlen - drop);
		w->errlen -= drop;
	}
	memcpy(w->errtail + w->errlen, buf, n);
	w->errlen += n;
	w->errtail[w->errlen] = '\0';
}

/* The last few lines, trimmed, for messages. */
static const char *stderr_tail(struct wrapper *w)
{
	while (w->errlen > 0 && (w->errtail[w->errlen - 1] == '\n' || w->errtail[w->errlen - 1] == ' '))
		w->errtail[--w->errlen] = '\0';
	size_t lines = 0;
	for (size_t i = w->errlen; i > 0; i--)
		if (w->errtail[i - 1] == '\n' && ++lines == STDERR_TAIL_LINES)
			return w->errtail + i;
	return w->errlen ? w->errtail : NULL;
}

/* A failed write loses that output but must not stop the VM (a closed stdout, a full
 * disk): later writes are still tried, and the failure is logged once per file. */
static void console_write_result(struct wrapper *w, int r)
{
	if (r >= 0 || w->out_failed)
		return;
	w->out_failed = true;
	log_warn("vm=%s msg=\"cannot write the console, its output is lost while this lasts\" path=%s "
		 "error=\"%s\"", w->spec->id, w->spec->console_log ? w->spec->console_log : "(stdout)",
		 strerror(-r));
}

/* Returns bytes read, 0 at EOF, -EAGAIN when drained. The next chunk is read only once
 * this one is written: a slow file slows the guest (QEMU's serial waits while the
 * socket is full), and nothing queues up here. */
static ssize_t pump_console(struct wrapper *w)
{
	char buf[CONSOLE_CHUNK];
	ssize_t n = read(w->console_fd, buf, sizeof(buf));
	if (n < 0)
		return errno == EINTR ? -EAGAIN : -errno;
	if (n == 0)
		return 0;
	if (!w->t_first_output)
		w->t_first_output = uk_now_mono_ns();
	if (w->log_format == LOG_FORMAT_CRI)
		console_write_result(w, crilog_feed(&w->cri, buf, (size_t)n, uk_now_realtime_ns()));
	else if (w->out_fd >= 0)
		console_write_result(w, uk_write_all(w->out_fd, buf, (size_t)n));
	return n;
}

/* The console ended: a line still pending becomes the last record. */
static void flush_console(struct wrapper *w)
{
	if (w->log_format == LOG_FORMAT_CRI)
		console_write_result(w, crilog_flush(&w->cri, uk_now_realtime_ns()));
}

static ssize_t pump_stderr(struct wrapper *w)
{
	char buf[4096];
	ssize_t n = read(w->stderr_fd, buf, sizeof(buf));
	if (n < 0)
		return errno == EINTR ? -EAGAIN : -errno;
	if (n > 0) {
		stderr_append(w, buf, (size_t)n);
		if (w->person)
			(void)uk_write_all(STDERR_FILENO, buf, (size_t)n);
	}
	return n;
}

static void request_stop(struct wrapper *w)
{
	w->stop_requests++;
	if (w->stop_requests == 1 && w->ctl && qmp_get_state(w->ctl) != QMP_STATE_CLOSED &&
	    qmp_send(w->ctl, "quit", NULL, NULL, NULL) >= 0)
		return;
	kill(w->qemu_pid, w->stop_requests == 1 ? SIGTERM : SIGKILL);
}

/* Kubelet renamed the log file: continue in a new one at the same path. Bytes are
 * written whole to one file or the other, so none is lost or duplicated; in the CRI
 * format every record goes whole to one file, and a line still pending continues in
 * the new one. */
static void reopen_log(struct wrapper *w)
{
	if (!w->spec->console_log)
		return;
	int fd = open(w->spec->console_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
	if (fd < 0) {
		log_error("vm=%s msg=\"cannot reopen the console log\" path=%s error=\"%s\"", w->spec->id,
			  w->spec->console_log, strerror(errno));
		return;
	}
	if (w->out_fd > STDERR_FILENO)
		close(w->out_fd);
	w->out_fd = fd;
	w->out_failed = false;
	crilog_set_fd(&w->cri, fd);
}

static void handle_signals(struct wrapper *w)
{
	struct signalfd_siginfo si;
	while (read(w->sig_fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			if (!w->qemu_exited && waitpid(w->qemu_pid, &w->wait_status, WNOHANG) == w->qemu_pid)
				w->qemu_exited = true;
			break;
		case SIGTERM:
		case SIGINT:
			request_stop(w);
			break;
		case SIGHUP:
			reopen_log(w);
			break;
		default:
			break;
		}
	}
}

/* Start QEMU with the sockets on the fd numbers its argv names. */
static int spawn_qemu(struct wrapper *w, char **argv, int fds[][2], size_t nfds, int err_w,
		      uk_error *err)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return uk_err_errno(err, errno, "fork");
	if (pid > 0) {
		w->qemu_pid = pid;
		return 0;
	}

	/* Child: only async-signal-safe calls from here. */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	/* QEMU dies with its supervisor: an unsupervised VM would have no log and no exit record. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
	setpgid(0, 0);
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(err_w, 2) < 0)
		_exit(127);
	/* Lift every fd out of the target range first, so dup2 cannot clobber a source. */
	for (size_t i = 0; i < nfds; i++) {
		int hi = fcntl(fds[i][0], F_DUPFD_CLOEXEC, 100);
		if (hi < 0)
			_exit(127);
		fds[i][0] = hi;
	}
	for (size_t i = 0; i < nfds; i++)
		if (dup2(fds[i][0], fds[i][1]) < 0)
			_exit(127);
	int first_free = QEMU_FD_NET_BASE + 2 * (int)w->spec->n_nets;
	close_range((unsigned)first_free, ~0U, 0);
	char *envp[] = { "PATH=/usr/bin:/bin", NULL };
	execve(argv[0], argv, envp);
	static const char msg[] = "vmwrapper: cannot execute QEMU\n";
	(void)!write(2, msg, sizeof(msg) - 1);
	_exit(127);
}

static int write_state(struct wrapper *w, uk_error *err)
{
	_cleanup_json_ json_object *o = json_object_new_object();
	uint64_t st = 0, qst = 0;
	if (!o)
		return uk_err(err, ENOMEM, "out of memory");
	uk_proc_starttime(getpid(), &st);
	uk_proc_starttime(w->qemu_pid, &qst);
	json_object_object_add(o, "pid", json_object_new_int(getpid()));
	json_object_object_add(o, "start_time", json_object_new_uint64(st));
	json_object_object_add(o, "qemu_pid", json_object_new_int(w->qemu_pid));
	json_object_object_add(o, "qemu_start_time", json_object_new_uint64(qst));
	json_object_object_add(o, "machine", json_object_new_string(vm_machine_name(w->plan.machine)));
	json_object_object_add(o, "accel", json_object_new_string(vm_accel_name(w->plan.accel)));
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
	return uk_write_file_atomic("vmwrapper.json", s, strlen(s), 0600, err);
}

/* vmwrapper's own peak resident memory in KiB (QEMU's is not in it), -1 if unknown. It is
 * VmHWM: getrusage's ru_maxrss also keeps the peak of whoever forked us, from before our
 * execve. */
static long long peak_rss_kb(void)
{
	_cleanup_free_ char *status = NULL;
	if (uk_read_file("/proc/self/status", 64 * 1024, &status, NULL, NULL) < 0)
		return -1;
	const char *p = strstr(status, "\nVmHWM:");
	return p ? strtoll(p + strlen("\nVmHWM:"), NULL, 10) : -1;
}

static int write_exit(struct wrapper *w, const struct vm_exit *e, const struct vm_facts *f, uk_error *err)
{
	_cleanup_json_ json_object *o = vm_exit_to_json(e, f, w->started_ns, uk_now_realtime_ns());
	if (!o)
		return uk_err(err, ENOMEM, "out of memory");
	json_object *t = json_object_new_object();
	json_object_object_add(t, "qemu_ready_ms",
			       json_object_new_double(w->t_ready ? (double)(w->t_ready - w->t_start) / 1e6 : -1));
	json_object_object_add(t, "first_output_ms",
			       json_object_new_double(w->t_first_output ? (double)(w->t_first_output - w->t_start) / 1e6 : -1));
	json_object_object_add(t, "fork_ms", json_object_new_double((double)(w->t_forked - w->t_start) / 1e6));
	json_object_object_add(o, "timing", t);
	json_object *res = json_object_new_object();
	long long rss = peak_rss_kb();
	if (rss >= 0)
		json_object_object_add(res, "max_rss_kb", json_object_new_int64(rss));
	json_object_object_add(o, "resources", res);
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
	return uk_write_file_atomic("exit.json", s, strlen(s), 0600, err);
}

static int setup(struct wrapper *w, uk_error *err)
{
	struct vm_spec *s = w->spec;
	enum kernel_kind kind = KERNEL_UNKNOWN;
	int r;

	if (s->kernel && (r = kernel_probe_file(s->kernel, &kind, err)) < 0)
		return r;
	_cleanup_close_ int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if ((r = vm_plan_resolve(s, kind, kvm >= 0, &w->plan, err)) < 0)
		return r;
	log_debug("vm=%s msg=\"plan\" machine=%s accel=%s why=\"%s\" kernel=%s", s->id,
		  vm_machine_name(w->plan.machine), vm_accel_name(w->plan.accel), w->plan.why_accel,
		  kernel_kind_name(kind));
	if ((r = uk_mkdir_p(s->state_dir, 0700, err)) < 0)
		return r;
	if (chdir(s->state_dir) < 0)
		return uk_err_errno(err, errno, "chdir %s", s->state_dir);
	unlink("exit.json");
	if (s->console_log) {
		w->out_fd = open(s->console_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
		if (w->out_fd < 0)
			return uk_err_errno(err, errno, "open console log %s", s->console_log);
	} else {
		w->out_fd = STDOUT_FILENO;
	}
	crilog_init(&w->cri, w->out_fd);
	log_debug("vm=%s msg=\"console\" path=%s log_format=%s", s->id, s->console_log ? s->console_log : "(stdout)",
		  log_format_names[w->log_format]);
	return 0;
}

static int run(struct wrapper *w, uk_error *err)
{
	_cleanup_strv_ char **argv = NULL;
	_cleanup_close_ int con_q = -1, ctl_q = -1, qmp_l = -1, dbg_l = -1, err_w = -1;
	int con[2], ctl[2], errp[2], r;

	if ((r = qemu_build_argv(w->spec, &w->plan, &argv, err)) < 0)
		return r;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, con) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl) < 0 || pipe2(errp, O_CLOEXEC) < 0)
		return uk_err_errno(err, errno, "create the console and monitor channels");
	w->console_fd = con[0];
	con_q = con[1];
	ctl_q = ctl[1];
	w->stderr_fd = errp[0];
	err_w = errp[1];
	if ((r = qmp_new(ctl[0], &w->ctl)) < 0)
		return uk_err(err, -r, "set up the control monitor");
	qmp_set_event_handler(w->ctl, on_event, w);
	qmp_set_ready_handler(w->ctl, on_ready, w);
	if ((qmp_l = listen_unix("qmp.sock", err)) < 0 || (dbg_l = listen_unix("qmp-debug.sock", err)) < 0)
		return qmp_l < 0 ? qmp_l : dbg_l;

	int fds[4 + 2 * VM_NETS_MAX][2] = {
		{ con_q, QEMU_FD_CONSOLE },
		{ ctl_q, QEMU_FD_QMP_CTL },
		{ qmp_l, QEMU_FD_QMP },
		{ dbg_l, QEMU_FD_QMP_DEBUG },
	};
	size_t nfds = 4;
	for (unsigned i = 0; i < w->spec->n_nets; i++) {
		fds[nfds][0] = w->spec->nets[i].tap_fd;
		fds[nfds++][1] = QEMU_FD_NET_BASE + 2 * (int)i;
		if (w->spec->nets[i].vhost_fd >= 0) {
			fds[nfds][0] = w->spec->nets[i].vhost_fd;
			fds[nfds++][1] = QEMU_FD_NET_BASE + 2 * (int)i + 1;
		}
	}
	w->started_ns = uk_now_realtime_ns();
	if ((r = spawn_qemu(w, argv, fds, nfds, err_w, err)) < 0)
		return r;
	w->t_forked = uk_now_mono_ns();
	/* QEMU holds its ends now; ours must close so EOF means QEMU is gone. */
	con_q = safe_close(con_q);
	ctl_q = safe_close(ctl_q);
	qmp_l = safe_close(qmp_l);
	dbg_l = safe_close(dbg_l);
	err_w = safe_close(err_w);
	for (unsigned i = 0; i < w->spec->n_nets; i++) {
		w->spec->nets[i].tap_fd = safe_close(w->spec->nets[i].tap_fd);
		w->spec->nets[i].vhost_fd = safe_close(w->spec->nets[i].vhost_fd);
	}
	uk_set_nonblock(w->console_fd, true);
	uk_set_nonblock(w->stderr_fd, true);
	if ((r = write_state(w, err)) < 0)
		log_warn("vm=%s msg=\"cannot write vmwrapper.json\" error=\"%s\"", w->spec->id, err->msg);

	bool con_open = true, err_open = true, ctl_open = true;
	while (!w->qemu_exited) {
		struct pollfd p[4] = {
			{ .fd = w->sig_fd, .events = POLLIN },
			{ .fd = con_open ? w->console_fd : -1, .events = POLLIN },
			{ .fd = err_open ? w->stderr_fd : -1, .events = POLLIN },
			{ .fd = ctl_open ? qmp_fd(w->ctl) : -1, .events = ctl_open ? qmp_poll_events(w->ctl) : 0 },
		};
		if (poll(p, 4, -1) < 0) {
			if (errno == EINTR)
				continue;
			return uk_err_errno(err, errno, "poll");
		}
		if (p[0].revents)
			handle_signals(w);
		if (p[1].revents && pump_console(w) == 0)
			con_open = false;
		if (p[2].revents && pump_stderr(w) == 0)
			err_open = false;
		if (p[3].revents && qmp_process(w->ctl) < 0)
			ctl_open = false;
	}
	/* QEMU is gone and its ends are closed: everything left is buffered, so drain it. */
	while (con_open && pump_console(w) > 0)
		;
	while (err_open && pump_stderr(w) > 0)
		;
	while (ctl_open && qmp_process(w->ctl) == 0)
		;
	return 0;
}

int main(int argc, char **argv)
{
	struct wrapper w = { .sync_fd = -1, .sig_fd = -1, .console_fd = -1, .out_fd = -1, .stderr_fd = -1 };
	uk_error err = { 0 };
	int r;

	w.t_start = uk_now_mono_ns();
	uk_log_set_ident("vmwrapper");
	uk_log_set_level(UK_LOG_WARN);
	signal(SIGPIPE, SIG_IGN);

	if (parse_args(argc, argv, &w, &err) < 0) {
		log_error("msg=\"invalid input, nothing started\" error=\"%s\"", err.msg);
		fprintf(stderr, "vmwrapper: %s\n", err.msg);
		if (w.sync_fd >= 0)
			send_sync(&w, false, err.msg);
		return EXIT_BAD_INPUT;
	}
	if (!w.person) {
		uk_log_set_level(UK_LOG_INFO);
		/* Survive unikd: a session of our own, away from its terminal and signals. */
		setsid();
	}
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	w.sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

	if ((r = setup(&w, &err)) < 0) {
		fprintf(stderr, "vmwrapper: %s\n", err.msg);
		send_sync(&w, false, err.msg);
		if (w.tmp_state_dir)
			uk_rm_rf(w.tmp_state_dir, NULL);
		vm_spec_free(w.spec);
		return EXIT_BAD_INPUT;
	}
	r = run(&w, &err);
	flush_console(&w);
	if (r < 0 && w.qemu_pid > 0 && !w.qemu_exited) {
		kill(w.qemu_pid, SIGKILL);
		waitpid(w.qemu_pid, &w.wait_status, 0);
		w.qemu_exited = true;
	}

	int code = EXIT_QEMU_FAILED;
	if (w.qemu_exited) {
		struct vm_facts f = {
			.started = w.started,
			.shutdown_reason = w.shutdown_reason[0] ? w.shutdown_reason : NULL,
			.panicked = w.panicked,
			.wait_status = w.wait_status,
			.stderr_tail = stderr_tail(&w),
		};
		struct vm_exit e;
		vm_exit_classify(&f, &e);
		uk_error werr = { 0 };
		if (write_exit(&w, &e, &f, &werr) < 0)
			log_error("vm=%s msg=\"cannot record the exit\" error=\"%s\"", w.spec->id, werr.msg);
		log_info("vm=%s msg=\"vm ended\" end=%s exit_code=%d reason=%s", w.spec->id, vm_end_name(e.end),
			 e.exit_code, e.reason);
		/* A guest may run and end before our monitor handshake: that is a successful start. */
		if (e.end == VM_END_QEMU_ERROR) {
			const char *tail = stderr_tail(&w);
			send_sync(&w, false, tail ? tail : "QEMU exited before it was ready");
		} else {
			send_sync(&w, true, NULL);
		}
		code = e.end == VM_END_QEMU_ERROR ? EXIT_QEMU_FAILED : e.exit_code;
	} else {
		fprintf(stderr, "vmwrapper: %s\n", err.msg);
		send_sync(&w, false, err.msg);
	}
	unlink("qmp.sock");
	unlink("qmp-debug.sock");
	if (w.tmp_state_dir) {
		uk_rm_rf(w.tmp_state_dir, NULL);
		free(w.tmp_state_dir);
	}
	qmp_free(w.ctl);
	safe_close(w.console_fd);
	safe_close(w.stderr_fd);
	if (w.out_fd > STDERR_FILENO)
		close(w.out_fd);
	safe_close(w.sig_fd);
	vm_spec_free(w.spec);
	return code;
}
