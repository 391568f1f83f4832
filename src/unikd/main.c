/* unikd: the node runtime. Until the CRI lands it starts, reports readiness and stops on
 * SIGTERM/SIGINT; it never stops VMs on exit, since vmwrapper supervises them. */
#include <getopt.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>

#include "../common/log.h"
#include "../common/util.h"

#ifndef UNIKD_VERSION
#define UNIKD_VERSION "0.0.0"
#endif

#define DEFAULT_STATE_DIR "/var/lib/unikd"
#define DEFAULT_RUN_DIR "/run/unikd"

struct config {
	const char *state_dir;
	const char *run_dir;
	const char *socket;
};

static void usage(FILE *f)
{
	fputs("Usage: unikd [options]\n"
	      "\n"
	      "The unikd node runtime: runs Kubernetes pods as QEMU unikernel VMs.\n"
	      "\n"
	      "Options:\n"
	      "  --state-dir DIR   persistent state (default " DEFAULT_STATE_DIR ")\n"
	      "  --run-dir DIR     runtime files (default " DEFAULT_RUN_DIR ")\n"
	      "  --socket PATH     CRI socket (default " DEFAULT_RUN_DIR "/unikd.sock)\n"
	      "  --log-level L     error, warn, info (default) or debug\n"
	      "  -h, --help        this text\n"
	      "      --version     print the version\n",
	      f);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 's' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "socket", required_argument, NULL, 'S' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct config cfg = { .state_dir = DEFAULT_STATE_DIR, .run_dir = DEFAULT_RUN_DIR };
	char sockbuf[4096];
	enum uk_log_level lvl;
	uk_error err = { 0 };
	int c;

	uk_log_set_ident("unikd");
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's': cfg.state_dir = optarg; break;
		case 'r': cfg.run_dir = optarg; break;
		case 'S': cfg.socket = optarg; break;
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
	if (optind < argc) {
		fprintf(stderr, "unikd: unexpected argument \"%s\"\n", argv[optind]);
		return 2;
	}
	if (!cfg.socket) {
		snprintf(sockbuf, sizeof(sockbuf), "%s/unikd.sock", cfg.run_dir);
		cfg.socket = sockbuf;
	}

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	_cleanup_close_ int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0) {
		log_error("msg=\"signalfd failed\" error=\"%s\"", strerror(errno));
		return 1;
	}
	if (uk_mkdir_p(cfg.state_dir, 0700, &err) < 0 || uk_mkdir_p(cfg.run_dir, 0755, &err) < 0) {
		log_error("msg=\"cannot create directories\" error=\"%s\"", err.msg);
		return 1;
	}
	log_info("msg=\"ready\" version=%s state_dir=%s run_dir=%s socket=%s", UNIKD_VERSION, cfg.state_dir,
		 cfg.run_dir, cfg.socket);

	struct signalfd_siginfo si;
	for (;;) {
		ssize_t n = read(sfd, &si, sizeof(si));
		if (n < 0 && errno == EINTR)
			continue;
		if (n != sizeof(si)) {
			log_error("msg=\"reading signals failed\" error=\"%s\"", strerror(errno));
			return 1;
		}
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			break;
	}
	log_info("msg=\"stopping\" signal=%s; VMs keep running under vmwrapper",
		 si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
	return 0;
}
