/* A guest's kernel command line from plain C data: environment words, then the command (or
 * the image's default command line), then the arguments. Pure: no I/O, no allocation, no
 * protobuf; the caller's field names go into the errors. See README.md.
 *
 * The line builder and the quoting below are what every framework's contract (guest.h)
 * writes its command line with. */
#ifndef UK_GUEST_CMDLINE_H
#define UK_GUEST_CMDLINE_H

#include <stdbool.h>
#include <stddef.h>

#include "../common/error.h"

/* The buffer a command line is built in, NUL included: at most 4095 bytes of words. */
#define GUEST_CMDLINE_MAX 4096
/* A Linux guest's, NUL included: x86's COMMAND_LINE_SIZE. */
#define GUEST_LINUX_CMDLINE_MAX 2048

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

/* How a guest's parser splits its command line into words, and so how a word holding white
 * space or quotes is written (README.md has the rules and their sources). */
enum guest_quoting {
	GUEST_QUOTING_NONE,     /* split at white space, no quotes: such a word is refused */
	GUEST_QUOTING_LINUX,    /* the kernel's next_arg: "…" groups; a '"' cannot be carried */
	GUEST_QUOTING_UNIKRAFT, /* ukargparse: "…" and '…' group, '\' escapes outside '…' */
	GUEST_QUOTING_MIRAGE,   /* mirage-bootvar: "…" groups, '\' escapes the next byte */
};

/* A command line being built into a caller's buffer: words separated by one space. */
struct guest_line {
	char *buf;
	size_t len, cap;    /* cap: the buffer's size, NUL included */
	const char *prefix; /* put before field names in errors */
};

void guest_line_init(struct guest_line *l, char *buf, size_t cap, const char *field_prefix);
/* Append n bytes of text as they are (the caller made them safe), after one space; nothing
 * if n is 0. -E2BIG (no message) when they do not fit; the line is then unchanged. */
int guest_line_raw(struct guest_line *l, const char *text, size_t n);
/* Append word written for q (quoted only where needed; force: always quoted, for list
 * items). An empty word adds nothing. -EINVAL naming "<prefix>field[idx]" if q cannot carry
 * it, -E2BIG naming it if the line overflows. */
int guest_line_word(struct guest_line *l, enum guest_quoting q, bool force, const char *word, const char *field,
		    size_t idx, uk_error *err);
int guest_line_words(struct guest_line *l, enum guest_quoting q, const char *const *words, size_t n,
		     const char *field, uk_error *err);
/* Append "KEY=value" for envs[idx], written for q. The key must be non-empty and hold no
 * '=' (-EINVAL naming "<prefix>envs[idx].key"). */
int guest_line_env(struct guest_line *l, enum guest_quoting q, bool force, const struct guest_env *e, size_t idx,
		   uk_error *err);
/* The -E2BIG error for "<prefix>field[idx]" overflowing the line. */
int guest_line_too_long(const struct guest_line *l, const char *field, size_t idx, uk_error *err);

/* A part of a string: len bytes at offset at. */
struct guest_span {
	size_t at, len;
};
/* Split the image's default command line at its first "--" word, as q's parser (LINUX or
 * UNIKRAFT) reads it (a "--" inside quotes is no separator): *before holds the words before
 * it, *after the words after it, both without edge white space. Without a "--" word,
 * *has_dashes is false, *before holds all the words and *after is empty. */
void guest_split_dashes(const char *line, enum guest_quoting q, struct guest_span *before,
			struct guest_span *after, bool *has_dashes);
/* The next word q's parser reads in text[*pos, n), as it is written (quotes kept), into
 * *word; *pos moves past it. False at the end. */
bool guest_next_word(const char *text, size_t n, size_t *pos, enum guest_quoting q, struct guest_span *word);
/* How many words q's parser reads in the n bytes of text. */
size_t guest_count_words(const char *text, size_t n, enum guest_quoting q);

/* Append printf text to the NUL-terminated text in buf (size bytes); what does not fit is
 * cut and ends in "...", so a reader sees it was cut. For diagnostics (why, found_by). */
void guest_textf(char *buf, size_t size, const char *fmt, ...) _printf_(3, 4);

#endif
