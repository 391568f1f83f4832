/* vmwrapper's command line; see args.h. */
#include <getopt.h>
#include <limits.h>
#include <string.h>

#include "../src/common/util.h"
#include "args.h"
#include "qemu_argv.h"

#define SPEC_MAX (64 * 1024)

static const char *const log_format_names[] = { "raw", "cri" };

const char *log_format_name(enum log_format f)
{
	return log_format_names[f];
}

void vmw_usage(FILE *f)
{
	fputs("Usage: vmwrapper --kernel FILE [--append CMDLINE] [--initrd FILE] [options]\n"
	      "       vmwrapper --disk FILE [--disk-format raw|qcow2] [options]\n"
	      "       vmwrapper --kernel FILE --disk FILE [options]  (a kernel and a data disk)\n"
	      "       vmwrapper --spec FILE.json [--sync-fd N] [--go-fd N [--cgroup-procs FILE]...]\n"
	      "                                                  (how unikd runs it)\n"
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
	      "  --firmware F         auto (default: qboot for a kernel on pc/q35), qboot or seabios\n"
	      "  --accel A            auto (default: kvm if /dev/kvm opens), kvm or tcg\n"
	      "  --cpu MODEL          QEMU CPU model (default: QEMU's)\n"
	      "  --qemu PATH          QEMU binary (default " QEMU_DEFAULT_BINARY ")\n"
	      "  --state-dir DIR      where the QMP and control sockets and exit.json go\n"
	      "                       (default: a temp dir)\n"
	      "  --console-log FILE   append the console to FILE instead of stdout (a regular\n"
	      "                       file; a symbolic link is refused); SIGHUP or the control\n"
	      "                       socket's reopen-log reopens it\n"
	      "  --log-format F       raw (default): the console's bytes as they come;\n"
	      "                       cri: kubelet's CRI log records (TIME stdout F|P LINE)\n"
	      "  --exit CONTRACT      how the end reads: default (the isa-debug-exit value),\n"
	      "                       unikraft (41 is 0, 42 a crash) or solo5 (its console's\n"
	      "                       solo5_exit(N) line is N, an ABORT line a crash)\n"
	      "  --id ID              VM name (default vm)\n"
	      "  -v, --verbose        log decisions to stderr\n"
	      "  -h, --help           this text\n"
	      "      --version        print the version\n"
	      "\n"
	      "Exit status: the guest's code; 0 on poweroff; 1 on panic or reset; 134 on a crash\n"
	      "the exit contract reads; 128+N if QEMU died of signal N; 137 if stopped; 125 for\n"
	      "bad input; 126 if QEMU failed.\n",
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

static int set_str(char **dst, const char *val, uk_error *err)
{
	free(*dst);
	*dst = strdup(val);
	return *dst ? 0 : uk_err(err, ENOMEM, "out of memory");
}

/* Person mode accepts relative paths; the spec holds absolute ones. */
static int set_path(char **dst, const char *opt, const char *val, uk_error *err)
{
	char buf[PATH_MAX];
	if (!realpath(val, buf))
		return uk_err_errno(err, errno, "--%s: %s", opt, val);
	return set_str(dst, buf, err);
}

/* A path that need not exist yet, made absolute against the cwd. */
static int make_absolute(char **path, const char *opt, uk_error *err)
{
	if (!*path || (*path)[0] == '/')
		return 0;
	char cwd[PATH_MAX];
	_cleanup_free_ char *abs = NULL;
	if (!getcwd(cwd, sizeof(cwd)))
		return uk_err_errno(err, errno, "--%s: the current directory", opt);
	if (asprintf(&abs, "%s/%s", cwd, *path) < 0)
		return uk_err(err, ENOMEM, "out of memory");
	if (strlen(abs) >= PATH_MAX)
		return uk_err(err, ENAMETOOLONG, "--%s: the path is longer than %d bytes", opt, PATH_MAX - 1);
	free(*path);
	*path = TAKE_PTR(abs);
	return 0;
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
	OPT_MACHINE, OPT_ACCEL, OPT_CPU, OPT_QEMU, OPT_STATE_DIR, OPT_CONSOLE_LOG, OPT_LOG_FORMAT, OPT_FIRMWARE,
	OPT_EXIT, OPT_ID, /* the VM options end here: --spec takes none of them */
	OPT_SPEC, OPT_SYNC_FD, OPT_GO_FD, OPT_CGROUP_PROCS, OPT_VERSION,
};

static const struct option options[] = {
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
	{ "firmware", required_argument, NULL, OPT_FIRMWARE },
	{ "exit", required_argument, NULL, OPT_EXIT },
	{ "id", required_argument, NULL, OPT_ID },
	{ "spec", required_argument, NULL, OPT_SPEC },
	{ "sync-fd", required_argument, NULL, OPT_SYNC_FD },
	{ "go-fd", required_argument, NULL, OPT_GO_FD },
	{ "cgroup-procs", required_argument, NULL, OPT_CGROUP_PROCS },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ 0 },
};

/* The options that take one of a few names. */
static int parse_choice(int c, const char *arg, struct vmw_args *a, struct vm_spec *s, uk_error *err)
{
	static const char *const machines[] = { "auto", "microvm", "pc", "q35" };
	static const char *const accels[] = { "auto", "kvm", "tcg" };
	static const char *const formats[] = { "raw", "qcow2" };
	int e = 0, r;
	switch (c) {
	case OPT_LOG_FORMAT:
		r = parse_enum("log-format", arg, log_format_names, ARRAY_SIZE(log_format_names), &e, err);
		a->log_format = (enum log_format)e;
		return r;
	case OPT_DISK_FORMAT:
		r = parse_enum("disk-format", arg, formats, ARRAY_SIZE(formats), &e, err);
		s->disk_format = (enum vm_disk_format)e;
		return r;
	case OPT_MACHINE:
		r = parse_enum("machine", arg, machines, ARRAY_SIZE(machines), &e, err);
		s->machine = (enum vm_machine)e;
		return r;
	case OPT_FIRMWARE:
		r = parse_enum("firmware", arg, vm_firmware_names, ARRAY_SIZE(vm_firmware_names), &e, err);
		s->firmware = (enum vm_firmware)e;
		return r;
	case OPT_EXIT:
		r = parse_enum("exit", arg, vm_exit_contract_names, ARRAY_SIZE(vm_exit_contract_names), &e, err);
		s->exit_contract = (enum vm_exit_contract)e;
		return r;
	default: /* OPT_ACCEL */
		r = parse_enum("accel", arg, accels, ARRAY_SIZE(accels), &e, err);
		s->accel = (enum vm_accel)e;
		return r;
	}
}

/* The options that take a number. */
static int parse_number(int c, const char *arg, struct vmw_args *a, struct vm_spec *s, uk_error *err)
{
	uint64_t n;
	switch (c) {
	case OPT_MEMORY:
		if (uk_parse_u64(arg, VM_MEMORY_MIN_MIB, VM_MEMORY_MAX_MIB, &n) < 0)
			return uk_err(err, EINVAL, "--memory: \"%s\" is not a size in MiB within %d..%d", arg,
				      VM_MEMORY_MIN_MIB, VM_MEMORY_MAX_MIB);
		s->memory_mib = (unsigned)n;
		return 0;
	case OPT_CPUS:
		if (uk_parse_u64(arg, 1, VM_VCPUS_MAX, &n) < 0)
			return uk_err(err, EINVAL, "--cpus: \"%s\" is not a count within 1..%d", arg, VM_VCPUS_MAX);
		s->vcpus = (unsigned)n;
		return 0;
	case OPT_GO_FD:
		if (uk_parse_u64(arg, 3, INT_MAX, &n) < 0)
			return uk_err(err, EINVAL, "--go-fd: \"%s\" is not an fd >= 3", arg);
		a->go_fd = (int)n;
		return 0;
	default: /* OPT_SYNC_FD */
		if (uk_parse_u64(arg, 3, INT_MAX, &n) < 0)
			return uk_err(err, EINVAL, "--sync-fd: \"%s\" is not an fd >= 3", arg);
		a->sync_fd = (int)n;
		return 0;
	}
}

/* --cgroup-procs: an absolute path, at most VMW_CGROUP_PROCS_MAX of them. */
static int add_cgroup_procs(struct vmw_args *a, const char *arg, uk_error *err)
{
	if (arg[0] != '/' || strnlen(arg, PATH_MAX) == PATH_MAX)
		return uk_err(err, EINVAL, "--cgroup-procs: \"%s\" is not an absolute path", arg);
	if (a->n_cgroup_procs == VMW_CGROUP_PROCS_MAX)
		return uk_err(err, EINVAL, "--cgroup-procs: more than %d", VMW_CGROUP_PROCS_MAX);
	a->cgroup_procs[a->n_cgroup_procs++] = arg;
	return 0;
}

/* One option; name is how it was written, for the message about an unknown one. */
static int parse_option(int c, const char *arg, const char *name, struct vmw_args *a, struct vm_spec *s,
			const char **spec_file, uk_error *err)
{
	switch (c) {
	case OPT_KERNEL: return set_path(&s->kernel, "kernel", arg, err);
	case OPT_INITRD: return set_path(&s->initrd, "initrd", arg, err);
	case OPT_DISK: return set_path(&s->disk, "disk", arg, err);
	case OPT_QEMU: return set_path(&s->qemu_binary, "qemu", arg, err);
	case OPT_APPEND: return set_str(&s->cmdline, arg, err);
	case OPT_CPU: return set_str(&s->cpu_model, arg, err);
	case OPT_ID: return set_str(&s->id, arg, err);
	case OPT_CONSOLE_LOG: return set_str(&s->console_log, arg, err);
	case OPT_STATE_DIR: return set_str(&s->state_dir, arg, err);
	case OPT_LOG_FORMAT:
	case OPT_DISK_FORMAT:
	case OPT_MACHINE:
	case OPT_FIRMWARE:
	case OPT_EXIT:
	case OPT_ACCEL: return parse_choice(c, arg, a, s, err);
	case OPT_MEMORY:
	case OPT_CPUS:
	case OPT_SYNC_FD:
	case OPT_GO_FD: return parse_number(c, arg, a, s, err);
	case OPT_CGROUP_PROCS: return add_cgroup_procs(a, arg, err);
	case OPT_SPEC: *spec_file = arg; return 0;
	case 'v': a->verbose = true; return 0;
	case 'h': a->action = VMW_HELP; return 0;
	case OPT_VERSION: a->action = VMW_VERSION; return 0;
	default: return uk_err(err, EINVAL, "unknown or incomplete option \"%s\" (see --help)", name);
	}
}

/* unikd's way: everything comes from the spec file. */
static int finish_spec(struct vmw_args *a, const char *spec_file, uk_error *err)
{
	_cleanup_free_ char *json = NULL;
	_cleanup_vm_spec_ struct vm_spec *s = NULL;
	int r;
	if ((r = uk_read_file(spec_file, SPEC_MAX, &json, NULL, err)) < 0 || (r = vm_spec_parse(json, &s, err)) < 0 ||
	    (r = spec_log_format(json, s, &a->log_format, err)) < 0)
		return uk_err_ctx_r(err, r, "spec %s", spec_file);
	a->spec = TAKE_PTR(s);
	return 0;
}

/* A person's state directory: the one given, made if missing, or a temporary one. */
static int person_state_dir(struct vmw_args *a, struct vm_spec *s, uk_error *err)
{
	char buf[PATH_MAX];
	if (s->state_dir) {
		int r = uk_mkdir_p(s->state_dir, 0700, err);
		if (r < 0)
			return uk_err_ctx_r(err, r, "--state-dir");
		if (!realpath(s->state_dir, buf))
			return uk_err_errno(err, errno, "--state-dir %s", s->state_dir);
		return set_str(&s->state_dir, buf, err);
	}
	const char *base = getenv("XDG_RUNTIME_DIR");
	if (snprintf(buf, sizeof(buf), "%s/vmwrapper.XXXXXX", base && *base ? base : "/tmp") >= (int)sizeof(buf))
		return uk_err(err, ENAMETOOLONG, "XDG_RUNTIME_DIR is too long for a state directory");
	if (!mkdtemp(buf))
		return uk_err_errno(err, errno, "create a state directory under %s", buf);
	if (!(a->tmp_state_dir = strdup(buf)))
		return uk_err(err, ENOMEM, "out of memory");
	return set_str(&s->state_dir, buf, err);
}

/* A person's way: the options make the spec. */
static int finish_person(struct vmw_args *a, struct vm_spec *s, uk_error *err)
{
	int r;
	if (a->sync_fd >= 0)
		return uk_err(err, EINVAL, "--sync-fd needs --spec");
	if (a->go_fd >= 0 || a->n_cgroup_procs)
		return uk_err(err, EINVAL, "--go-fd and --cgroup-procs need --spec");
	if (!s->kernel && !s->disk)
		return uk_err(err, EINVAL, "give --kernel or --disk (see --help)");
	a->person = true;
	if ((!s->id && (r = set_str(&s->id, "vm", err)) < 0) || (r = person_state_dir(a, s, err)) < 0 ||
	    (r = make_absolute(&s->console_log, "console-log", err)) < 0 || (r = vm_spec_validate(s, err)) < 0)
		return r;
	return 0;
}

int vmw_args_parse(int argc, char **argv, struct vmw_args *a, uk_error *err)
{
	_cleanup_vm_spec_ struct vm_spec *s = vm_spec_new();
	const char *spec_file = NULL;
	bool person_opts = false;
	int c, r;

	a->go_fd = -1;
	a->n_cgroup_procs = 0;
	if (!s)
		return uk_err(err, ENOMEM, "out of memory");
	opterr = 0;
	optind = 0; /* glibc: start afresh, also on a second call */
	while ((c = getopt_long(argc, argv, "vh", options, NULL)) != -1) {
		person_opts |= c >= OPT_KERNEL && c <= OPT_ID;
		if ((r = parse_option(c, optarg, argv[optind - 1], a, s, &spec_file, err)) < 0)
			return r;
		if (a->action != VMW_RUN)
			return 0;
	}
	if (optind < argc)
		return uk_err(err, EINVAL, "unexpected argument \"%s\" (see --help)", argv[optind]);
	if (a->n_cgroup_procs && a->go_fd < 0)
		return uk_err(err, EINVAL, "--cgroup-procs needs --go-fd (the cgroups are joined on the go-ahead)");
	if (spec_file) {
		if (person_opts)
			return uk_err(err, EINVAL, "--spec cannot be combined with VM options");
		return finish_spec(a, spec_file, err);
	}
	if ((r = finish_person(a, s, err)) < 0)
		return r;
	a->spec = TAKE_PTR(s);
	return 0;
}

void vmw_args_done(struct vmw_args *a)
{
	vm_spec_free(a->spec);
	a->spec = NULL;
	free(a->tmp_state_dir);
	a->tmp_state_dir = NULL;
}
