/* vmwrapper: boots one VM and supervises it, as conmon does for one container.
 *
 * It is QEMU's parent: it owns the console, a private QMP monitor, the two QMP listening
 * sockets, its control socket and the attach socket, reaps QEMU and records how the VM
 * ended in exit.json. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "../src/common/log.h"
#include "../src/common/spawn.h"
#include "../src/common/util.h"
#include "../src/common/vmctl.h"
#include "../src/qmp/qmp.h"
#include "args.h"
#include "attach.h"
#include "crilog.h"
#include "exit_status.h"
#include "guest_exit.h"
#include "logfile.h"
#include "qemu_argv.h"
#include "spec.h"
#include "stage.h"
#include "vmctl_server.h"

#ifndef UNIKD_VERSION
#define UNIKD_VERSION "0.0.0"
#endif

#define STDERR_TAIL_MAX 4096
#define STDERR_TAIL_LINES 10
#define CONSOLE_CHUNK (64 * 1024)
/* Before a reopen, the console bytes already queued go to the old file, up to this much. */
#define REOPEN_DRAIN_MAX (1024 * 1024)

/* What a pool VM's console says before its claim (nothing, normally: the guest is paused),
 * kept for the log up to this much; the rest is counted and dropped. */
#define POOL_HOLD_MAX (16 * 1024)

/* A claim that plugs NICs (README.md, "NICs at the claim") goes through these steps for each
 * NIC, one QMP answer after the other; the vhost step only for a NIC with vhost. */
enum plug_step { PLUG_GETFD_TAP, PLUG_GETFD_VHOST, PLUG_NETDEV, PLUG_DEVICE, PLUG_STEPS };

struct plug {
	bool active;
	struct vmctl_claim claim;
	int log_fd;
	int fds[VMCTL_FDS_MAX]; /* each net's tap, then its vhost-net fd when it has one */
	unsigned n_fds;
	unsigned net, fd_at; /* the NIC being plugged, and where its fds start in fds */
	enum plug_step step;
};

/* Exit codes of vmwrapper itself when the VM never ran. */
#define EXIT_BAD_INPUT 125
#define EXIT_QEMU_FAILED 126

struct wrapper {
	struct vm_spec *spec;
	struct vm_plan plan;
	bool person; /* foreground command for a person, console on stdout */
	char *tmp_state_dir; /* person mode without --state-dir: removed at exit */
	int sync_fd;
	int go_fd; /* unikd's start: the go-ahead (see hold_for_go); -1 otherwise */
	const char *cgroup_procs[VMW_CGROUP_PROCS_MAX];
	size_t n_cgroup_procs;
	int sig_fd;
	int console_fd;
	int out_fd;
	bool out_failed; /* a write to out_fd failed (logged once per fd) */
	enum log_format log_format;
	struct crilog cri; /* LOG_FORMAT_CRI: the pending line, at most 16 KiB */
	struct exit_scan scan; /* the console lines the exit contract reads */
	int stderr_fd;
	qmp *mon; /* the private monitor */
	struct vmctl_server vmctl;
	struct attach_server attach; /* the console for attach.sock's clients, and their input */
	bool con_open, err_open, mon_open; /* the channels from QEMU that have not ended */
	bool in_state_dir; /* the cwd is the state directory, where our sockets go */
	pid_t qemu_pid;
	uint64_t qemu_start_time; /* /proc/PID/stat field 22, from uk_spawn */
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
	bool claimed; /* a pool VM whose claim took effect */
	struct plug plug; /* a claim plugging its NICs, before "cont" */
	bool plug_failed; /* a claim's NIC could not be plugged: the VM is being stopped */
	size_t held_len; /* a pool VM's console bytes before its claim, in held */
	uint64_t held_dropped; /* those beyond POOL_HOLD_MAX */
	char held[POOL_HOLD_MAX];
};

/* A listening unix socket named relative to the cwd (the state directory), which keeps
 * sun_path short however deep the state directory is. */
static int listen_unix(const char *name, uk_error *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", name);
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return uk_err_errno(err, errno, "socket");
	/* A socket file left by an earlier run would make bind fail; none is fine. */
	(void)unlink(name);
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
	/* The greeting came before ready: the version is there (0.0.0 for the log if not). */
	(void)qmp_version(q, &maj, &min, &mic);
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
	uk_tail_append(w->errtail, STDERR_TAIL_MAX, &w->errlen, buf, n);
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

/* Console bytes to the exit contract's scanner, the log and the attached clients. */
static void console_deliver(struct wrapper *w, const char *buf, size_t n)
{
	exit_scan_feed(&w->scan, buf, n);
	if (w->log_format == LOG_FORMAT_CRI)
		console_write_result(w, crilog_feed(&w->cri, buf, n, uk_now_realtime_ns()));
	else if (w->out_fd >= 0)
		console_write_result(w, uk_write_all(w->out_fd, buf, n));
	/* After the log, and never blocking: a slow client is dropped, the log waits for nobody. */
	attach_server_output(&w->attach, buf, n);
}

/* An unclaimed pool VM's console: kept for the log the claim names, within a bound. */
static void console_hold(struct wrapper *w, const char *buf, size_t n)
{
	size_t room = POOL_HOLD_MAX - w->held_len, take = n < room ? n : room;
	memcpy(w->held + w->held_len, buf, take);
	w->held_len += take;
	w->held_dropped += n - take;
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
	if (w->spec->pool && !w->claimed)
		console_hold(w, buf, (size_t)n);
	else
		console_deliver(w, buf, (size_t)n);
	return n;
}

/* The console ended: a line still pending becomes the last record. */
static void flush_console(struct wrapper *w)
{
	exit_scan_end(&w->scan);
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
	if (w->stop_requests == 1 && w->mon && qmp_get_state(w->mon) != QMP_STATE_CLOSED &&
	    qmp_send(w->mon, "quit", NULL, NULL, NULL) >= 0)
		return;
	/* ESRCH: QEMU is gone already, and SIGCHLD tells the loop. */
	(void)kill(w->qemu_pid, w->stop_requests == 1 ? SIGTERM : SIGKILL);
}

/* The console has ended: nothing more comes from it, and no input can go to it. */
static void console_ended(struct wrapper *w)
{
	w->con_open = false;
	attach_server_set_guest(&w->attach, -1);
}

/* A channel from QEMU: go on while it has more, stop watching it at EOF or on an error. */
static void on_console(struct wrapper *w)
{
	ssize_t n = pump_console(w);
	if (n == 0 || (n < 0 && n != -EAGAIN))
		console_ended(w);
}

static void on_stderr(struct wrapper *w)
{
	ssize_t n = pump_stderr(w);
	if (n == 0 || (n < 0 && n != -EAGAIN))
		w->err_open = false;
}

/* The console bytes already queued before a reopen belong to the old file. Bounded, so a
 * guest that floods its console cannot hold the reopen back. */
static void drain_console(struct wrapper *w)
{
	for (size_t done = 0; w->con_open && done < REOPEN_DRAIN_MAX;) {
		ssize_t n = pump_console(w);
		if (n <= 0) {
			if (n != -EAGAIN)
				console_ended(w);
			return;
		}
		done += (size_t)n;
	}
}

/* Kubelet renamed the log file: continue in a new one at the same path. Bytes are
 * written whole to one file or the other, so none is lost or duplicated; in the CRI
 * format every record goes whole to one file, and a line still pending continues in
 * the new one. When the new file cannot be opened, the old one stays in use. */
static int reopen_log(struct wrapper *w, uk_error *err)
{
	if (!w->spec->console_log)
		return uk_err(err, ENOENT, w->spec->pool ? "a pool VM not yet claimed has no log file to reopen"
						     : "the console goes to stdout: there is no log file to reopen");
	drain_console(w);
	int fd = logfile_open(w->spec->console_log, err);
	if (fd < 0)
		return uk_err_ctx_r(err, fd, "reopen the console log");
	if (w->out_fd > STDERR_FILENO)
		safe_close(w->out_fd);
	w->out_fd = fd;
	w->out_failed = false;
	crilog_set_fd(&w->cri, fd);
	return 0;
}

/* A reopen asked for by SIGHUP or the control socket; the edge that logs. */
static int reopen_log_logged(struct wrapper *w, uk_error *err)
{
	int r = reopen_log(w, err);
	if (r < 0)
		log_error("vm=%s msg=\"cannot reopen the console log, it goes on in the old file\" error=\"%s\"",
			  w->spec->id, err->msg);
	else
		log_debug("vm=%s msg=\"console log reopened\" path=%s", w->spec->id, w->spec->console_log);
	return r;
}

/* QEMU's answer to the claim's "cont": the claim's reply. */
static void on_cont(qmp *q, json_object *ret, const struct qmp_error *qerr, void *userdata)
{
	struct wrapper *w = userdata;
	(void)q;
	(void)ret;
	/* A guest that ends at once can take QEMU down before the answer is out: it did run,
	 * and exit.json tells how it ended, as for any claimed VM. */
	if (qerr && qerr->klass && strcmp(qerr->klass, "Disconnected") == 0)
		qerr = NULL;
	if (qerr) {
		char msg[256];
		snprintf(msg, sizeof(msg), "QMP cont: %s: %s", qerr->klass ? qerr->klass : "error",
			 qerr->desc ? qerr->desc : "");
		log_error("vm=%s msg=\"claimed, but the guest cannot run\" error=\"%s\"", w->spec->id, msg);
		vmctl_server_answer(&w->vmctl, -EIO, msg);
		return;
	}
	log_info("vm=%s msg=\"claimed, the guest runs\" path=%s", w->spec->id, w->spec->console_log);
	vmctl_server_answer(&w->vmctl, 0, NULL);
}

/* The claim's state_dir, when given, must be where we are: the directory as unikd renamed it. */
static int claim_check_dir(const char *dir, uk_error *err)
{
	struct stat a, b;
	if (stat(dir, &a) < 0)
		return uk_err_errno(err, errno, "claim: field \"state_dir\": %s", dir);
	if (stat(".", &b) < 0)
		return uk_err_errno(err, errno, "stat the state directory");
	if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		return uk_err(err, EINVAL, "claim: field \"state_dir\": %s is not this VM's state directory", dir);
	return 0;
}

/* The claim has taken: the VM is the container's from now on, as if cold-started for it. */
static void claim_commit(struct wrapper *w, struct vmctl_claim *c, int log_fd)
{
	w->claimed = true;
	free(w->spec->id);
	w->spec->id = TAKE_PTR(c->id);
	free(w->spec->console_log);
	w->spec->console_log = TAKE_PTR(c->console_log);
	if (c->state_dir) {
		free(w->spec->state_dir);
		w->spec->state_dir = TAKE_PTR(c->state_dir);
	}
	w->out_fd = log_fd;
	w->log_format = c->log_format == VMCTL_LOG_RAW ? LOG_FORMAT_RAW : LOG_FORMAT_CRI;
	crilog_init(&w->cri, log_fd);
	w->attach.id = w->spec->id;
	attach_server_set_input(&w->attach, c->input, w->con_open ? w->console_fd : -1);
	if (w->held_dropped)
		log_warn("vm=%s msg=\"the console said more before the claim than is kept\" dropped_bytes=%llu",
			 w->spec->id, (unsigned long long)w->held_dropped);
	console_deliver(w, w->held, w->held_len);
	w->held_len = 0;
}

/* Every NIC has its fds, each tap a character device (/dev/net/tun's): a wrong count or kind is
 * refused before QEMU is asked anything, and the VM stays claimable. */
static int claim_check_nets(const struct wrapper *w, const struct vmctl_claim *c, const int *fds, size_t n_fds,
			    uk_error *err)
{
	unsigned want = w->spec->nics_at_claim, n = vmctl_claim_n_fds(c);
	struct stat st;
	if (!want && c->n_nets)
		return uk_err(err, EINVAL, "claim: field \"net\": this VM has no NIC to plug (its spec has no \"nics_at_claim\")");
	if (!want && n_fds)
		return uk_err(err, EINVAL, "claim: %zu fds came with the claim, this VM takes none", n_fds);
	if (c->n_nets != want)
		return uk_err(err, EINVAL, "claim: field \"net\" has %u entries, this VM waits for %u NICs (\"nics_at_claim\")",
			      c->n_nets, want);
	if (n_fds != n)
		return uk_err(err, EINVAL,
			      "claim: %zu fds came with the claim, field \"net\" needs %u (a tap for each, and a vhost-net fd for "
			      "each with \"vhost\": true)",
			      n_fds, n);
	for (unsigned i = 0, k = 0; i < c->n_nets; k += c->nets[i].vhost ? 2 : 1, i++)
		if (fstat(fds[k], &st) < 0 || !S_ISCHR(st.st_mode))
			return uk_err(err, EINVAL, "claim: field \"net[%u]\": the fd sent for its tap is not a tap device", i);
	return 0;
}

/* Run the claimed guest: "cont", and the VM is the container's; on_cont answers the claim.
 * log_fd is taken over. */
static int claim_go(struct wrapper *w, struct vmctl_claim *c, int log_fd, uk_error *err)
{
	if (qmp_send(w->mon, "cont", NULL, on_cont, w) < 0) {
		safe_close(log_fd);
		return uk_err(err, EIO, "claim: cannot send QMP cont");
	}
	claim_commit(w, c, log_fd);
	return 0;
}

static void plug_clear(struct plug *p)
{
	vmctl_claim_done(&p->claim);
	p->log_fd = safe_close(p->log_fd);
	for (unsigned i = 0; i < p->n_fds; i++)
		p->fds[i] = safe_close(p->fds[i]);
	p->n_fds = 0;
	p->active = false;
}

/* A step failed with some NICs perhaps in: the VM can no longer be claimed as it stands
 * (README.md, "NICs at the claim"). The claim is answered, and the VM stopped as SIGTERM
 * stops it (exit.json: host-quit); unikd starts the container cold. */
static void plug_fail(struct wrapper *w, const char *msg)
{
	log_error("vm=%s msg=\"a NIC could not be plugged at the claim, the VM is stopped\" error=\"%s\"", w->spec->id,
		  msg);
	vmctl_server_answer(&w->vmctl, -EIO, msg);
	plug_clear(&w->plug);
	w->plug_failed = true;
	if (!w->qemu_exited && !w->stop_requests) /* a second request would be SIGKILL */
		request_stop(w);
}

static void on_plug(qmp *q, json_object *ret, const struct qmp_error *qerr, void *userdata);

/* The QMP command of the plug's step, the NIC's fd with a getfd (fdnames uknet<i>, uknet<i>vhost). */
static int plug_send(struct wrapper *w)
{
	struct plug *p = &w->plug;
	const struct vmctl_claim_net *n = &p->claim.nets[p->net];
	char tap[32], vhost[32];
	snprintf(tap, sizeof(tap), "uknet%u", p->net);
	snprintf(vhost, sizeof(vhost), "uknet%uvhost", p->net);
	json_object *args = json_object_new_object();
	int64_t r;
	switch (p->step) {
	case PLUG_GETFD_TAP:
	case PLUG_GETFD_VHOST: {
		bool v = p->step == PLUG_GETFD_VHOST;
		if (!args)
			return -ENOMEM;
		json_object_object_add(args, "fdname", json_object_new_string(v ? vhost : tap));
		r = qmp_send_fd(w->mon, "getfd", args, p->fds[p->fd_at + (v ? 1 : 0)], on_plug, w);
		break;
	}
	case PLUG_NETDEV:
		json_object_put(args);
		if (!(args = qemu_nic_netdev(p->net, tap, n->vhost ? vhost : NULL)))
			return -ENOMEM;
		r = qmp_send(w->mon, "netdev_add", args, on_plug, w);
		break;
	default:
		json_object_put(args);
		/* The device the cold argv gives, so the guest finds it where a cold start puts it. */
		if (!(args = qemu_nic_device(p->net, n->mac, false)))
			return -ENOMEM;
		r = qmp_send(w->mon, "device_add", args, on_plug, w);
		break;
	}
	return r < 0 ? (int)r : 0;
}

static const char *const plug_step_names[PLUG_STEPS] = { "getfd", "getfd", "netdev_add", "device_add" };

/* On to the next step (skipping a vhost getfd without vhost), the next NIC, or "cont". */
static void plug_next(struct wrapper *w)
{
	struct plug *p = &w->plug;
	char msg[256];
	uk_error err = { 0 };
	if (p->step == PLUG_GETFD_VHOST && !p->claim.nets[p->net].vhost)
		p->step = PLUG_NETDEV;
	if (p->step == PLUG_STEPS) {
		p->fd_at += p->claim.nets[p->net].vhost ? 2 : 1;
		p->net++;
		p->step = PLUG_GETFD_TAP;
	}
	if (p->net == p->claim.n_nets) {
		log_debug("vm=%s msg=\"NICs plugged at the claim\" nics=%u", w->spec->id, p->claim.n_nets);
		if (claim_go(w, &p->claim, TAKE_FD(p->log_fd), &err) < 0) {
			plug_fail(w, err.msg);
			return;
		}
		plug_clear(p);
		return;
	}
	int r = plug_send(w);
	if (r < 0) {
		snprintf(msg, sizeof(msg), "claim: field \"net[%u]\": " VMCTL_ERR_PLUG ": cannot send QMP %s: %s", p->net,
			 plug_step_names[p->step], strerror(-r));
		plug_fail(w, msg);
	}
}

/* QEMU's answer to a plug step. */
static void on_plug(qmp *q, json_object *ret, const struct qmp_error *qerr, void *userdata)
{
	struct wrapper *w = userdata;
	struct plug *p = &w->plug;
	(void)q;
	(void)ret;
	if (!p->active)
		return;
	if (qerr) {
		char msg[512];
		snprintf(msg, sizeof(msg), "claim: field \"net[%u]\": " VMCTL_ERR_PLUG ": QMP %s: %s: %s", p->net,
			 plug_step_names[p->step],
			 qerr->klass ? qerr->klass : "error", qerr->desc ? qerr->desc : "");
		plug_fail(w, msg);
		return;
	}
	p->step++;
	plug_next(w);
}

/* The claim's NICs go in before the guest runs. The first command goes now: when it cannot,
 * QEMU has been asked nothing, and the VM stays claimable. */
static int plug_start(struct wrapper *w, struct vmctl_claim *c, int log_fd, int *fds, size_t n_fds, uk_error *err)
{
	struct plug *p = &w->plug;
	*p = (struct plug){ .active = true, .claim = *c, .log_fd = log_fd, .n_fds = (unsigned)n_fds };
	*c = (struct vmctl_claim){ 0 };
	for (size_t i = 0; i < n_fds; i++)
		p->fds[i] = TAKE_FD(fds[i]);
	int r = plug_send(w);
	if (r < 0) {
		/* QEMU was asked nothing: the VM stays claimable, and the fds and the log go. */
		plug_clear(p);
		return uk_err(err, -r, "claim: field \"net[0]\": cannot send QMP getfd: %s", strerror(-r));
	}
	return 0;
}

/* A pool VM's claim (README.md, "Pool VMs"): claim.json read and checked, the log opened,
 * the NICs plugged if the VM waits for some, "cont" sent; the reply waits for QEMU's
 * answers. Until a QMP command is sent, any failure leaves the VM as it was, claimable. */
static int claim(struct wrapper *w, int *fds, size_t n_fds, uk_error *err)
{
	_cleanup_free_ char *json = NULL;
	__attribute__((cleanup(vmctl_claim_done))) struct vmctl_claim c = { 0 };
	int r;
	if (!w->spec->pool)
		return uk_err(err, EINVAL, VMCTL_ERR_NOT_POOL);
	if (w->claimed)
		return uk_err(err, EALREADY, VMCTL_ERR_CLAIMED);
	if (w->plug.active)
		return uk_err(err, EBUSY, "a claim is plugging the NICs");
	if (w->plug_failed)
		return uk_err(err, EALREADY, "a claim failed to plug a NIC: the VM is being stopped");
	if (!w->mon_open || qmp_get_state(w->mon) != QMP_STATE_READY)
		return uk_err(err, EAGAIN, "QEMU's monitor is not ready");
	if ((r = uk_read_file(VMCTL_CLAIM_FILE, VMCTL_CLAIM_MAX, &json, NULL, err)) < 0)
		return uk_err_ctx_r(err, r, "claim");
	if ((r = vmctl_claim_parse(json, &c, err)) < 0 || (c.state_dir && (r = claim_check_dir(c.state_dir, err)) < 0) ||
	    (r = claim_check_nets(w, &c, fds, n_fds, err)) < 0)
		return r;
	_cleanup_close_ int fd = logfile_open(c.console_log, err);
	if (fd < 0)
		return uk_err_ctx_r(err, fd, "claim: field \"console_log\"");
	if (c.n_nets)
		r = plug_start(w, &c, TAKE_FD(fd), fds, n_fds, err);
	else
		r = claim_go(w, &c, TAKE_FD(fd), err);
	return r < 0 ? r : VMCTL_ANSWER_LATER;
}

static int on_vmctl(enum vmctl_command cmd, int *fds, size_t n_fds, uk_error *err, void *userdata)
{
	struct wrapper *w = userdata;
	int r;
	switch (cmd) {
	case VMCTL_REOPEN_LOG:
		/* The server gives fds to the claim only. */
		(void)fds;
		(void)n_fds;
		return reopen_log_logged(w, err);
	case VMCTL_CLAIM:
		if ((r = claim(w, fds, n_fds, err)) < 0)
			log_warn("vm=%s msg=\"claim refused\" error=\"%s\"", w->spec->id, err->msg);
		return r;
	}
	return uk_err(err, EINVAL, VMCTL_ERR_UNKNOWN);
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
			/* Old callers' way, without an answer: the outcome is in the log. */
			if (w->spec->console_log) {
				uk_error err = { 0 };
				(void)reopen_log_logged(w, &err);
			}
			break;
		default:
			break;
		}
	}
}

static int write_state(struct wrapper *w, uk_error *err)
{
	_cleanup_json_ json_object *o = json_object_new_object();
	uint64_t st = 0, qst = 0;
	if (!o)
		return uk_err(err, ENOMEM, "out of memory");
	/* 0 stands for unknown: unikd then cannot tell these processes from a recycled PID
	 * and treats them as gone, which is the safe side. */
	(void)uk_proc_starttime(getpid(), &st);
	qst = w->qemu_start_time;
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
	enum guest_boot kind = GUEST_BOOT_UNKNOWN;
	int r;

	if (s->kernel) {
		_cleanup_free_ struct guest_binary *bin = calloc(1, sizeof(*bin));
		if (!bin)
			return uk_err(err, ENOMEM, "out of memory");
		if ((r = guest_probe_file(s->kernel, bin, err)) < 0)
			return r;
		kind = bin->boot;
	}
	_cleanup_close_ int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if ((r = vm_plan_resolve(s, kind, kvm >= 0, &w->plan, err)) < 0)
		return r;
	log_debug("vm=%s msg=\"plan\" machine=%s accel=%s why=\"%s\" kernel=%s exit=%s", s->id,
		  vm_machine_name(w->plan.machine), vm_accel_name(w->plan.accel), w->plan.why_accel,
		  guest_boot_name(kind), vm_exit_contract_name(s->exit_contract));
	if ((r = uk_mkdir_p(s->state_dir, 0700, err)) < 0)
		return r;
	if (chdir(s->state_dir) < 0)
		return uk_err_errno(err, errno, "chdir %s", s->state_dir);
	w->in_state_dir = true;
	/* An earlier run's record must not pass for this one's; none is fine, and one that
	 * cannot go is replaced atomically at the end anyway. */
	(void)unlink("exit.json");
	if (s->console_log) {
		w->out_fd = logfile_open(s->console_log, err);
		if (w->out_fd < 0)
			return uk_err_ctx_r(err, w->out_fd, w->person ? "--console-log" : "field \"console_log\"");
	} else if (s->pool) {
		/* Nothing is written until the claim names the log. */
		w->out_fd = -1;
		w->log_format = LOG_FORMAT_RAW;
	} else {
		w->out_fd = STDOUT_FILENO;
	}
	crilog_init(&w->cri, w->out_fd);
	exit_scan_init(&w->scan, s->exit_contract);
	log_debug("vm=%s msg=\"console\" path=%s log_format=%s", s->id, s->console_log ? s->console_log : "(stdout)",
		  log_format_name(w->log_format));
	return 0;
}

/* QEMU's ends of its channels: ours to close once QEMU holds them. */
struct qemu_ends {
	int con, mon, qmp_l, dbg_l, err_w;
};

static void qemu_ends_close(struct qemu_ends *e)
{
	e->con = safe_close(e->con);
	e->mon = safe_close(e->mon);
	e->qmp_l = safe_close(e->qmp_l);
	e->dbg_l = safe_close(e->dbg_l);
	e->err_w = safe_close(e->err_w);
}

/* The console, the monitor, QEMU's stderr and the listening sockets, all made before QEMU
 * starts, so a client can connect the moment the sync pipe says ok. */
static int open_channels(struct wrapper *w, struct qemu_ends *e, uk_error *err)
{
	int con[2], mon[2], errp[2], r;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, con) < 0)
		return uk_err_errno(err, errno, "create the console channel");
	w->console_fd = con[0];
	e->con = con[1];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, mon) < 0)
		return uk_err_errno(err, errno, "create the monitor channel");
	e->mon = mon[1];
	if ((r = qmp_new(mon[0], &w->mon)) < 0)
		return uk_err(err, -r, "set up the control monitor");
	qmp_set_event_handler(w->mon, on_event, w);
	qmp_set_ready_handler(w->mon, on_ready, w);
	if (pipe2(errp, O_CLOEXEC) < 0)
		return uk_err_errno(err, errno, "create QEMU's stderr pipe");
	w->stderr_fd = errp[0];
	e->err_w = errp[1];
	if ((e->qmp_l = listen_unix("qmp.sock", err)) < 0 || (e->dbg_l = listen_unix("qmp-debug.sock", err)) < 0)
		return -err->code;
	int ctl = listen_unix(VMCTL_SOCKET, err);
	if (ctl < 0)
		return ctl;
	vmctl_server_init(&w->vmctl, ctl, VMCTL_CLIENT_TIMEOUT_MS, on_vmctl, w);
	int at = listen_unix(ATTACH_SOCKET, err);
	if (at < 0)
		return at;
	attach_server_init(&w->attach, at, w->spec->console_input, w->spec->id);
	return 0;
}

/* QEMU's channels and the NICs' fds, each on the number its argv names. */
#define QEMU_FDS_MAX (4 + 2 * VM_NETS_MAX)
_Static_assert(QEMU_FDS_MAX <= UK_SPAWN_MAX_FDS, "uk_spawn cannot hand QEMU every NIC's fds");

static size_t qemu_fds(const struct wrapper *w, const struct qemu_ends *e, struct uk_spawn_fd fds[QEMU_FDS_MAX])
{
	size_t n = 0;
	fds[n++] = (struct uk_spawn_fd){ e->con, QEMU_FD_CONSOLE };
	fds[n++] = (struct uk_spawn_fd){ e->mon, QEMU_FD_QMP_CTL };
	fds[n++] = (struct uk_spawn_fd){ e->qmp_l, QEMU_FD_QMP };
	fds[n++] = (struct uk_spawn_fd){ e->dbg_l, QEMU_FD_QMP_DEBUG };
	for (unsigned i = 0; i < w->spec->n_nets; i++) {
		fds[n++] = (struct uk_spawn_fd){ w->spec->nets[i].tap_fd, QEMU_FD_NET_BASE + 2 * (int)i };
		if (w->spec->nets[i].vhost_fd >= 0)
			fds[n++] = (struct uk_spawn_fd){ w->spec->nets[i].vhost_fd, QEMU_FD_NET_BASE + 2 * (int)i + 1 };
	}
	return n;
}

/* Start QEMU with its channels, then let go of QEMU's ends: EOF on a channel must mean that
 * QEMU is gone. stdin and stdout on /dev/null, stderr to our pipe, the fixed environment
 * (LC_ALL=C keeps QEMU's messages in the words exit_status.c reads). */
static int start_qemu(struct wrapper *w, char **argv, struct qemu_ends *e, uk_error *err)
{
	struct uk_spawn_fd fds[QEMU_FDS_MAX];
	struct uk_spawn_opts o;
	struct uk_child child = UK_CHILD_INIT;
	int r;

	uk_spawn_opts_init(&o, (const char *const *)argv);
	o.stderr_fd = e->err_w;
	o.fds = fds;
	o.n_fds = qemu_fds(w, e, fds);
	/* Its own process group, so a terminal's ^C reaches vmwrapper, which stops QEMU in order. */
	o.new_pgrp = true;
	/* uk_spawn's vfork (the default): on our memory until its exec, it runs at once, while
	 * we wait, instead of queueing for a CPU behind us as a forked child would. */
	/* QEMU dies with its supervisor: an unsupervised VM would have no log and no exit record. */
	o.pdeathsig = SIGKILL;
	w->started_ns = uk_now_realtime_ns();
	if ((r = uk_spawn(&o, &child, err)) < 0)
		return uk_err_ctx_r(err, r, "start QEMU");
	w->qemu_pid = child.pid;
	w->qemu_start_time = child.start_time;
	/* SIGCHLD and waitpid tell us when it ends. */
	uk_child_done(&child);
	w->t_forked = uk_now_mono_ns();
	qemu_ends_close(e);
	for (unsigned i = 0; i < w->spec->n_nets; i++) {
		w->spec->nets[i].tap_fd = safe_close(w->spec->nets[i].tap_fd);
		w->spec->nets[i].vhost_fd = safe_close(w->spec->nets[i].vhost_fd);
	}
	w->con_open = w->err_open = w->mon_open = true;
	if ((r = uk_set_nonblock(w->console_fd, true)) < 0 || (r = uk_set_nonblock(w->stderr_fd, true)) < 0)
		return uk_err_errno(err, -r, "make QEMU's channels non-blocking");
	attach_server_set_guest(&w->attach, w->console_fd);
	return 0;
}

/* The earlier of two poll timeouts, -1 standing for none. */
static int min_timeout(int a, int b)
{
	return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

static int event_loop(struct wrapper *w, uk_error *err)
{
	while (!w->qemu_exited) {
		short con_ev = (short)(POLLIN | (attach_server_wants_guest(&w->attach) ? POLLOUT : 0));
		struct pollfd p[4 + VMCTL_POLLFDS + ATTACH_POLLFDS] = {
			{ .fd = w->sig_fd, .events = POLLIN },
			{ .fd = w->con_open ? w->console_fd : -1, .events = con_ev },
			{ .fd = w->err_open ? w->stderr_fd : -1, .events = POLLIN },
			{ .fd = w->mon_open ? qmp_fd(w->mon) : -1, .events = w->mon_open ? qmp_poll_events(w->mon) : 0 },
		};
		uint64_t now = uk_now_mono_ns();
		vmctl_server_pollfds(&w->vmctl, now, p + 4);
		attach_server_pollfds(&w->attach, now, p + 4 + VMCTL_POLLFDS);
		int timeout = min_timeout(vmctl_server_timeout_ms(&w->vmctl, now), attach_server_timeout_ms(&w->attach, now));
		if (poll(p, ARRAY_SIZE(p), timeout) < 0) {
			if (errno == EINTR)
				continue;
			return uk_err_errno(err, errno, "poll");
		}
		if (p[0].revents)
			handle_signals(w);
		/* New clients first: a client gets the console from the moment it is accepted. */
		attach_server_process(&w->attach, p + 4 + VMCTL_POLLFDS, uk_now_mono_ns());
		if (p[1].revents & POLLOUT)
			attach_server_write_input(&w->attach);
		if (p[1].revents & ~POLLOUT)
			on_console(w);
		if (p[2].revents)
			on_stderr(w);
		if (p[3].revents && qmp_process(w->mon) < 0)
			w->mon_open = false;
		vmctl_server_process(&w->vmctl, p + 4, uk_now_mono_ns());
	}
	return 0;
}

static int run(struct wrapper *w, uk_error *err)
{
	_cleanup_strv_ char **argv = NULL;
	struct qemu_ends e = { -1, -1, -1, -1, -1 };
	int r;

	if ((r = qemu_build_argv(w->spec, &w->plan, &argv, err)) < 0 || (r = vm_stage_file_shares(w->spec, err)) < 0)
		return r;
	if ((r = open_channels(w, &e, err)) < 0 || (r = start_qemu(w, argv, &e, err)) < 0) {
		qemu_ends_close(&e);
		return r;
	}
	if (write_state(w, err) < 0)
		log_warn("vm=%s msg=\"cannot write vmwrapper.json\" error=\"%s\"", w->spec->id, err->msg);
	if ((r = event_loop(w, err)) < 0)
		return r;
	/* QEMU is gone and its ends are closed: everything left is buffered, so drain it. */
	while (w->con_open && pump_console(w) > 0)
		;
	while (w->err_open && pump_stderr(w) > 0)
		;
	while (w->mon_open && qmp_process(w->mon) == 0)
		;
	return 0;
}

/* How the VM ended: exit.json, the sync pipe if it is still open, and our exit code. */
static int report_end(struct wrapper *w, const uk_error *run_err)
{
	if (!w->qemu_exited) {
		fprintf(stderr, "vmwrapper: %s\n", run_err->msg);
		send_sync(w, false, run_err->msg);
		return EXIT_QEMU_FAILED;
	}
	struct vm_facts f = {
		.started = w->started,
		.shutdown_reason = w->shutdown_reason[0] ? w->shutdown_reason : NULL,
		.panicked = w->panicked,
		.wait_status = w->wait_status,
		.stderr_tail = stderr_tail(w),
		.contract = w->spec->exit_contract,
		.console = &w->scan,
	};
	struct vm_exit e;
	vm_exit_classify(&f, &e);
	uk_error err = { 0 };
	if (write_exit(w, &e, &f, &err) < 0)
		log_error("vm=%s msg=\"cannot record the exit\" error=\"%s\"", w->spec->id, err.msg);
	log_info("vm=%s msg=\"vm ended\" end=%s exit_code=%d reason=%s contract=%s", w->spec->id,
		 vm_end_name(e.end), e.exit_code, e.reason, vm_exit_contract_name(w->spec->exit_contract));
	/* A guest may run and end before our monitor handshake: that is a successful start. */
	if (e.end == VM_END_QEMU_ERROR) {
		const char *tail = stderr_tail(w);
		send_sync(w, false, tail ? tail : "QEMU exited before it was ready");
		return EXIT_QEMU_FAILED;
	}
	send_sync(w, true, NULL);
	return e.exit_code;
}

/* Everything but exit.json goes with the VM. */
static void cleanup(struct wrapper *w)
{
	/* Best effort on the way out: a socket file left behind is replaced by the next run.
	 * Never in a cwd that is not the state directory: those names are not ours there. */
	if (w->in_state_dir) {
		(void)unlink("qmp.sock");
		(void)unlink("qmp-debug.sock");
		(void)unlink(VMCTL_SOCKET);
		(void)unlink(ATTACH_SOCKET);
	}
	vmctl_server_done(&w->vmctl);
	attach_server_done(&w->attach);
	if (w->tmp_state_dir) {
		/* Best effort: what cannot go stays under /tmp, and the error is of no use now. */
		(void)uk_rm_rf(w->tmp_state_dir, NULL);
		free(w->tmp_state_dir);
	}
	qmp_free(w->mon);
	plug_clear(&w->plug);
	safe_close(w->console_fd);
	safe_close(w->stderr_fd);
	if (w->out_fd > STDERR_FILENO)
		safe_close(w->out_fd);
	safe_close(w->sig_fd);
	safe_close(w->sync_fd);
	safe_close(w->go_fd);
	vm_spec_free(w->spec);
}

/* unikd's start (--go-fd): exec'd, then idle until unikd's record names this process. EOF
 * instead of the go-ahead means the start was called off or unikd is gone: nothing may
 * happen then. The VM's cgroups are joined after it, never before, so a called-off start
 * keeps no process in them. Returns 1 when called off. */
static int hold_for_go(struct wrapper *w, uk_error *err)
{
	char b, files[VMW_CGROUP_PROCS_MAX][PATH_MAX];
	ssize_t n;
	do
		n = read(w->go_fd, &b, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		return 1;
	/* The slot keeps /dev/null, never a pipe again: a restarted unikd tells a held
	 * vmwrapper from a released one by that fd (vm_wrapper_held). */
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null < 0 || dup3(null, w->go_fd, O_CLOEXEC) < 0) {
		int e = errno;
		safe_close(null);
		return uk_err_errno(err, e, "replace the go-ahead fd");
	}
	safe_close(null);
	w->t_start = uk_now_mono_ns(); /* the start's time line counts from the go-ahead */
	for (size_t i = 0; i < w->n_cgroup_procs; i++)
		snprintf(files[i], PATH_MAX, "%s", w->cgroup_procs[i]); /* checked shorter by the parser */
	size_t bad = 0;
	int r = uk_enter_cgroup_files((const char(*)[PATH_MAX])files, w->n_cgroup_procs, &bad);
	return r < 0 ? uk_err_errno(err, -r, "join the VM's cgroup (%s)", w->cgroup_procs[bad]) : 0;
}

/* The options; returns 1 when there is nothing to run (--help, --version). */
static int take_args(struct wrapper *w, int argc, char **argv, uk_error *err)
{
	struct vmw_args a = { .sync_fd = -1 };
	int r = vmw_args_parse(argc, argv, &a, err);
	w->sync_fd = a.sync_fd;
	w->go_fd = a.go_fd;
	memcpy(w->cgroup_procs, a.cgroup_procs, sizeof(w->cgroup_procs));
	w->n_cgroup_procs = a.n_cgroup_procs;
	w->tmp_state_dir = TAKE_PTR(a.tmp_state_dir);
	w->spec = TAKE_PTR(a.spec);
	w->person = a.person;
	w->log_format = a.log_format;
	vmw_args_done(&a);
	if (r < 0)
		return r;
	if (a.action == VMW_HELP)
		vmw_usage(stdout);
	else if (a.action == VMW_VERSION)
		printf("vmwrapper %s\n", UNIKD_VERSION);
	if (a.action != VMW_RUN)
		return 1;
	uk_log_set_level(a.verbose ? UK_LOG_DEBUG : w->person ? UK_LOG_WARN : UK_LOG_INFO);
	return 0;
}

/* SIGCHLD, SIGTERM, SIGINT and SIGHUP come through a signalfd. */
static int signals_to_fd(struct wrapper *w, uk_error *err)
{
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		return uk_err_errno(err, errno, "block signals");
	w->sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (w->sig_fd < 0)
		return uk_err_errno(err, errno, "signalfd");
	return 0;
}

int main(int argc, char **argv)
{
	struct wrapper w = { .sync_fd = -1, .go_fd = -1, .sig_fd = -1, .console_fd = -1, .out_fd = -1, .stderr_fd = -1,
			     .plug = { .log_fd = -1 } };
	uk_error err = { 0 };
	int r;

	w.t_start = uk_now_mono_ns();
	uk_log_set_ident("vmwrapper");
	uk_log_set_level(UK_LOG_WARN);
	/* Writes to a gone reader return EPIPE instead; SIG_IGN on SIGPIPE cannot fail. */
	(void)signal(SIGPIPE, SIG_IGN);
	vmctl_server_init(&w.vmctl, -1, VMCTL_CLIENT_TIMEOUT_MS, on_vmctl, &w);
	attach_server_init(&w.attach, -1, false, NULL);

	/* glibc reads the zone file at its first time conversion, gmtime_r's too: do it now,
	 * while unikd's start may hold us, rather than at the guest's first console line. */
	tzset();
	r = take_args(&w, argc, argv, &err);
	if (w.go_fd >= 0 && r <= 0) {
		/* Even a bad spec is reported only on the go-ahead: before it, unikd's record
		 * does not name us yet. */
		uk_error herr = { 0 };
		int h = hold_for_go(&w, &herr);
		if (h == 1) {
			cleanup(&w);
			return 0;
		}
		if (h < 0 && r == 0) {
			r = h;
			err = herr;
		}
	}
	if (r != 0) {
		if (r > 0) {
			cleanup(&w);
			return 0;
		}
		log_error("msg=\"invalid input, nothing started\" error=\"%s\"", err.msg);
		fprintf(stderr, "vmwrapper: %s\n", err.msg);
		send_sync(&w, false, err.msg);
		cleanup(&w);
		return EXIT_BAD_INPUT;
	}
	/* Survive unikd: a session of our own, away from its terminal and signals. Started by
	 * hand as a group leader it cannot have one (EPERM) and stays where it is. */
	if (!w.person)
		(void)setsid();
	if ((r = signals_to_fd(&w, &err)) < 0 || (r = setup(&w, &err)) < 0) {
		fprintf(stderr, "vmwrapper: %s\n", err.msg);
		send_sync(&w, false, err.msg);
		cleanup(&w);
		return EXIT_BAD_INPUT;
	}
	r = run(&w, &err);
	flush_console(&w);
	if (r < 0 && w.qemu_pid > 0 && !w.qemu_exited) {
		/* QEMU must not outlive a vmwrapper that cannot watch it. */
		(void)kill(w.qemu_pid, SIGKILL);
		if (waitpid(w.qemu_pid, &w.wait_status, 0) == w.qemu_pid)
			w.qemu_exited = true;
	}
	int code = report_end(&w, &err);
	/* The console's last bytes to the attached clients, after exit.json: a client that sees
	 * the end of its stream finds the record there. */
	attach_server_finish(&w.attach, ATTACH_DRAIN_MS);
	cleanup(&w);
	return code;
}
