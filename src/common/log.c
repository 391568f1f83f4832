#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "log.h"

static enum uk_log_level cur_level = UK_LOG_INFO;
static const char *ident = "unikd";
static const char *names[] = { "error", "warn", "info", "debug" };

void uk_log_set_level(enum uk_log_level lvl)
{
	cur_level = lvl;
}

void uk_log_set_ident(const char *id)
{
	ident = id;
}

int uk_log_parse_level(const char *s, enum uk_log_level *ret)
{
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (strcmp(s, names[i]) == 0) {
			*ret = (enum uk_log_level)i;
			return 0;
		}
	return -EINVAL;
}

void uk_log(enum uk_log_level lvl, const char *fmt, ...)
{
	if (lvl > cur_level)
		return;
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ level=%s prog=%s ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 ts.tv_nsec / 1000, names[lvl], ident);
	va_list ap;
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line, so concurrent writers do not interleave. */
	(void)!write(STDERR_FILENO, line, (size_t)n);
}
