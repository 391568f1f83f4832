/* A guest's kernel command line from plain C data: environment words, then the command (or
 * the image's default command line), then the arguments. Pure: no I/O, no allocation, no
 * protobuf; the caller's field names go into the errors. See README.md. */
#ifndef UK_GUEST_CMDLINE_H
#define UK_GUEST_CMDLINE_H

#include <stddef.h>

#include "../common/error.h"

/* The buffer a command line is built in, NUL included: at most 4095 bytes of words. */
#define GUEST_CMDLINE_MAX 4096

struct guest_env {
	const char *key;   /* non-empty, no '=' */
	const char *value; /* NULL: "" */
};

struct guest_cmdline_in {
	const struct guest_env *envs;
	size_t n_envs;
	const char *const *command; /* n_command > 0 replaces image_cmdline */
	size_t n_command;
	const char *const *args;
	size_t n_args;
	const char *image_cmdline; /* the image's default, taken as it is; NULL or "": none */
	/* Put before "envs[i]", "command[i]" and "args[i]" in errors ("config." for the CRI);
	 * NULL: nothing. */
	const char *field_prefix;
};

/* Build "KEY=value ... command... args..." into buf (len bytes, NUL-terminated), words
 * separated by one space. Empty words are left out. A word holding white space is -EINVAL
 * naming it ("config.args[1]"): a kernel command line is split at spaces. An env key that is
 * empty or holds '=' is -EINVAL. A line that does not fit len is -E2BIG naming the list that
 * overflowed it. On error buf holds "". */
int guest_cmdline_build(const struct guest_cmdline_in *in, char *buf, size_t len, uk_error *err);

#endif
