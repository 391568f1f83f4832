/* Error reporting: fallible functions return -errno and may fill a uk_error
 * with a message; callers prepend their own context. Only edges log it. */
#ifndef UK_ERROR_H
#define UK_ERROR_H

#include "macros.h"

#define UK_ERROR_MSG_MAX 1024

typedef struct uk_error {
	int code; /* positive errno */
	char msg[UK_ERROR_MSG_MAX];
} uk_error;

/* Set the error (if err is non-NULL) and return -code. */
int uk_err(uk_error *err, int code, const char *fmt, ...) _printf_(3, 4);
/* Like uk_err, with ": strerror(code)" appended. */
int uk_err_errno(uk_error *err, int code, const char *fmt, ...) _printf_(3, 4);
/* Prepend "context: " to an already set message; returns -err->code. With a NULL err it
 * cannot know the code and returns -EIO: where err may be NULL, use uk_err_ctx_r. */
int uk_err_ctx(uk_error *err, const char *fmt, ...) _printf_(2, 3);
/* The same for the failure r (-errno) a callee returned, which it returns unchanged: the
 * code survives with a NULL err. The usual form: `return uk_err_ctx_r(err, r, "ctx");`. */
int uk_err_ctx_r(uk_error *err, int r, const char *fmt, ...) _printf_(3, 4);

#endif
