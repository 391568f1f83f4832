#include <stdarg.h>
#include <string.h>

#include "error.h"

static int verr(uk_error *err, int code, int with_errno, const char *fmt, va_list ap)
{
	if (code <= 0)
		code = EIO;
	if (!err)
		return -code;
	err->code = code;
	int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	if (with_errno && n >= 0 && (size_t)n < sizeof(err->msg))
		snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(code));
	return -code;
}

int uk_err(uk_error *err, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = verr(err, code, 0, fmt, ap);
	va_end(ap);
	return r;
}

int uk_err_errno(uk_error *err, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = verr(err, code, 1, fmt, ap);
	va_end(ap);
	return r;
}

static void vctx(uk_error *err, const char *fmt, va_list ap)
{
	char prefix[UK_ERROR_MSG_MAX];
	char old[UK_ERROR_MSG_MAX];
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	memcpy(old, err->msg, sizeof(old));
	/* Truncation is acceptable: the message is for people. */
	if (snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old) < 0)
		err->msg[0] = '\0';
}

int uk_err_ctx_r(uk_error *err, int r, const char *fmt, ...)
{
	if (r >= 0)
		r = -EIO; /* a failure without a code */
	if (!err)
		return r;
	va_list ap;
	va_start(ap, fmt);
	vctx(err, fmt, ap);
	va_end(ap);
	if (err->code <= 0)
		err->code = -r;
	return r;
}
