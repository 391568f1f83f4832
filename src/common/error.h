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
/* Prepend "context: " to the message of the failure r (-errno) a callee returned, and
 * return r unchanged: the code survives, with or without an err. The usual form:
 * `return uk_err_ctx_r(err, r, "ctx");`. */
int uk_err_ctx_r(uk_error *err, int r, const char *fmt, ...) _printf_(3, 4);

#endif
