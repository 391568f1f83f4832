#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"

/* Atomic: workers log while the main thread may change the level on a reload. */
static int cur_level = UK_LOG_INFO;
static bool journal;
static const char *ident = "unikd";
static const char *names[] = { "error", "warn", "info", "debug" };
/* syslog priorities (LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG), which journald reads from "<N>". */
static const char prio[] = { '3', '4', '6', '7' };

void uk_log_set_level(enum uk_log_level lvl)
{
	__atomic_store_n(&cur_level, (int)lvl, __ATOMIC_RELAXED);
}

enum uk_log_level uk_log_get_level(void)
{
	return (enum uk_log_level)__atomic_load_n(&cur_level, __ATOMIC_RELAXED);
}

void uk_log_set_ident(const char *id)
{
	ident = id;
}

int uk_log_parse_level(const char *s, enum uk_log_level *ret)
{
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (s && strcmp(s, names[i]) == 0) {
			*ret = (enum uk_log_level)i;
			return 0;
		}
	return -EINVAL;
}

const char *uk_log_level_name(enum uk_log_level lvl)
{
	return (unsigned)lvl < ARRAY_SIZE(names) ? names[lvl] : "?";
}

bool uk_log_detect_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char tail;
	/* systemd sets "DEV:INO" of the stream it gave us; stderr may since have been redirected. */
	journal = e && sscanf(e, "%llu:%llu%c", &dev, &ino, &tail) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
		  (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
	return journal;
}

void uk_log(enum uk_log_level lvl, const char *fmt, ...)
{
	if ((int)lvl > __atomic_load_n(&cur_level, __ATOMIC_RELAXED))
		return;
	char line[2048];
	int n;
	if (journal) {
		n = snprintf(line, sizeof(line), "<%c>level=%s prog=%s ", prio[lvl], names[lvl], ident);
	} else {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ level=%s prog=%s ",
			     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			     ts.tv_nsec / 1000, names[lvl], ident);
	}
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
