/* Opening the console log file, which lives in a directory vmwrapper does not own (kubelet's
 * pod log directory, where a container with a hostPath mount may have left anything). */
#ifndef VMW_LOGFILE_H
#define VMW_LOGFILE_H

#include "../src/common/error.h"

/* Open path for appending (O_CLOEXEC), creating it (mode 0640) when it is missing. Only a
 * regular file is opened: a symbolic link at the last component is refused (-ELOOP), and
 * so is a FIFO, a socket, a directory or a device (-EINVAL), which are never opened at all,
 * so a FIFO cannot block and a device sees no open. The error names the path. */
int logfile_open(const char *path, uk_error *err);

#endif
