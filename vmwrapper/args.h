/* vmwrapper's command line: a person's options, or unikd's --spec file and sync pipe. */
#ifndef VMW_ARGS_H
#define VMW_ARGS_H

#include <stdbool.h>
#include <stdio.h>

#include "../src/common/error.h"
#include "spec.h"

#define VMW_CGROUP_PROCS_MAX 8

/* How the console reaches its file: as the guest wrote it, or as CRI log records. */
enum log_format { LOG_FORMAT_RAW, LOG_FORMAT_CRI };
const char *log_format_name(enum log_format f);

enum vmw_action { VMW_RUN, VMW_HELP, VMW_VERSION };

struct vmw_args {
	enum vmw_action action;
	struct vm_spec *spec;
	enum log_format log_format;
	int sync_fd;         /* -1: none; set as soon as it is parsed, so errors can use it */
	/* unikd's start: wait for one byte on go_fd (-1: none) before doing anything, then join
	 * the cgroup.procs files (pointers into argv). EOF instead of the byte: exit 0. */
	int go_fd;
	const char *cgroup_procs[VMW_CGROUP_PROCS_MAX];
	size_t n_cgroup_procs;
	bool person;         /* foreground command for a person, console on stdout */
	bool verbose;
	char *tmp_state_dir; /* person mode without --state-dir: made here, removed at exit */
};

/* Parse argv into *a (which starts zeroed, sync_fd and go_fd -1). For a person, relative paths become
 * absolute, the state directory is made (a temporary one without --state-dir) and the spec
 * is validated. On error *a may hold a sync_fd and a tmp_state_dir; vmw_args_done frees what
 * it holds but removes nothing. */
int vmw_args_parse(int argc, char **argv, struct vmw_args *a, uk_error *err);
void vmw_args_done(struct vmw_args *a);
void vmw_usage(FILE *f);

#endif
