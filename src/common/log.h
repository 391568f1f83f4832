/* Logging for the edges (main, event loop, RPC handlers): one structured line per event on stderr. */
#ifndef UK_LOG_H
#define UK_LOG_H

#include <stdbool.h>

#include "macros.h"

enum uk_log_level { UK_LOG_ERROR, UK_LOG_WARN, UK_LOG_INFO, UK_LOG_DEBUG };

/* Safe from any thread: a reload changes the level while workers log. */
void uk_log_set_level(enum uk_log_level lvl);
enum uk_log_level uk_log_get_level(void);
void uk_log_set_ident(const char *ident);
int uk_log_parse_level(const char *s, enum uk_log_level *ret);
const char *uk_log_level_name(enum uk_log_level lvl);
/* When stderr is journald's stream (JOURNAL_STREAM names its device and inode), lines
 * start with the syslog priority "<N>" and carry no ts= (journald stamps them). Call once
 * at start-up, before other threads log; returns whether it is. */
bool uk_log_detect_journal(void);
void uk_log(enum uk_log_level lvl, const char *fmt, ...) _printf_(2, 3);

#define log_error(...) uk_log(UK_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) uk_log(UK_LOG_WARN, __VA_ARGS__)
#define log_info(...) uk_log(UK_LOG_INFO, __VA_ARGS__)
#define log_debug(...) uk_log(UK_LOG_DEBUG, __VA_ARGS__)

#endif
