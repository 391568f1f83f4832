/* Small helpers shared by unikd and vmwrapper. */
#ifndef UK_UTIL_H
#define UK_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

#define UK_ID_MAX 128

/* IDs and names that become path components: [A-Za-z0-9][A-Za-z0-9_.-]*, no "..". */
bool uk_id_valid(const char *id);

uint64_t uk_now_realtime_ns(void);
uint64_t uk_now_mono_ns(void);

int uk_set_nonblock(int fd, bool on);
int uk_set_cloexec(int fd, bool on);

/* Write all bytes, retrying on EINTR and short writes (blocking fds). */
int uk_write_all(int fd, const void *buf, size_t len);

/* Read a whole file of at most max bytes, NUL-terminated. */
int uk_read_file(const char *path, size_t max, char **ret, size_t *ret_len, uk_error *err);

/* Temp file, fsync, rename, fsync of the directory: the file is either old or new. */
int uk_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
			 uk_error *err);
/* The same without the directory's fsync: after a power loss the file is old or new, never
 * torn or empty, and either may be the one found. For state a power loss makes moot anyway. */
int uk_write_file_atomic_unsynced_dir(const char *path, const void *data, size_t len, mode_t mode,
				      uk_error *err);

/* mkdir -p, each component with mode. */
int uk_mkdir_p(const char *path, mode_t mode, uk_error *err);

/* Remove a directory tree; missing is fine. */
int uk_rm_rf(const char *path, uk_error *err);

/* Parse a non-negative decimal integer in [min, max] that fills the whole string. */
int uk_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret);

/* A string from a format, malloc'd; NULL when out of memory. */
char *uk_strf(const char *fmt, ...) _printf_(1, 2);

/* What unikd reads of /proc/PID/stat (proc(5) field numbers). */
struct uk_proc_stat {
	char state;         /* 3: R, S, D, Z, X... */
	pid_t ppid;         /* 4 */
	pid_t pgrp;         /* 5 */
	pid_t session;      /* 6 */
	uint64_t minflt;    /* 10 */
	uint64_t majflt;    /* 12 */
	uint64_t utime;     /* 14, clock ticks */
	uint64_t stime;     /* 15, clock ticks */
	uint64_t starttime; /* 22, clock ticks since boot */
	uint64_t rss;       /* 24, pages */
};
/* Parse the text of /proc/PID/stat. The command name (field 2) may hold anything, spaces,
 * parentheses and newlines included: the fields are counted after its last ')'. -EINVAL
 * for anything else than that line. Pure. */
int uk_proc_stat_parse(const char *text, struct uk_proc_stat *ret);
/* Read and parse /proc/PID/stat; -ESRCH when there is no such process. */
int uk_proc_stat(pid_t pid, struct uk_proc_stat *ret);

/* The start time of a process in clock ticks since boot (field 22 of /proc/PID/stat),
 * so a recycled PID can be told apart from ours. */
int uk_proc_starttime(pid_t pid, uint64_t *ret);
/* A process that has ended but is not reaped yet (state Z or X) is not alive: an orphan
 * waits for PID 1, which may take its time. */
bool uk_proc_alive(pid_t pid, uint64_t starttime);

/* Connect a stream socket to a unix socket path of any length: paths too long for
 * sun_path go through /proc/self/fd/<dir fd>/<name>. Returns the fd (O_CLOEXEC). */
int uk_unix_connect(const char *path, uk_error *err);
/* One sendmsg of buf[0..len) on a socket with fds[0..n_fds) as SCM_RIGHTS (none when n_fds
 * is 0): the peer gets the fds with the first of those bytes. flags as send()'s. At most
 * UK_SEND_FDS_MAX fds (more: -1, EINVAL). Returns what sendmsg returns. */
#define UK_SEND_FDS_MAX 16
ssize_t uk_send_fds(int sock, const void *buf, size_t len, const int *fds, size_t n_fds, int flags);
/* A MAC address, six pairs of hex digits (either case) joined by ':', into out in lower
 * case. false for anything else. */
bool uk_mac_parse(const char *s, char out[18]);

/* A pidfd (O_CLOEXEC) for any process, child or not; -errno. */
int uk_pidfd_open(pid_t pid);
/* Wait for the process behind pidfd to end (a zombie counts); true if it did within
 * timeout_ms. A negative pidfd counts as ended. */
bool uk_pidfd_wait(int pidfd, int timeout_ms);

/* A pidfd for the process pid only if it started at starttime (so a recycled PID is never
 * signalled or waited for by mistake): the check is made after the pidfd is open, so the
 * pidfd cannot refer to another process. It may be a zombie not reaped yet (waiting on the
 * pidfd then returns at once, or when its last thread is gone). -ESRCH if it is not ours. */
int uk_pidfd_open_checked(pid_t pid, uint64_t starttime);
/* Send sig through a pidfd (never to a recycled PID); -errno. */
int uk_pidfd_signal(int pidfd, int sig);

/* fsync the directory that holds path, so a rename, link or unlink in it is durable. */
int uk_fsync_parent(const char *path, uk_error *err);
/* unlink path and fsync its directory; a missing file is fine. */
int uk_unlink_durable(const char *path, uk_error *err);

/* The kernel's boot id (/proc/sys/kernel/random/boot_id, 36 characters): it changes on
 * every boot, so state recorded under another boot id describes processes that are gone. */
#define UK_BOOT_ID_LEN 36
int uk_boot_id(char out[UK_BOOT_ID_LEN + 1], uk_error *err);

/* Add key: string to a JSON object when the value is not NULL. */
void uk_json_add_str(json_object *o, const char *key, const char *value);

/* 64 lowercase hex characters from the kernel's random source, NUL-terminated. */
int uk_random_hex_id(char out[65]);

#endif
