/* File shares (spec.h, vm_share.file): 9p exports directories, so each file mount gets a
 * staging directory holding only that name, the host file bind-mounted onto it. */
#ifndef UK_VMW_STAGE_H
#define UK_VMW_STAGE_H

#include "../src/common/error.h"
#include "spec.h"

/* With any file share: vmwrapper enters a private mount namespace (QEMU inherits it) and
 * binds each share's file into STATE_DIR/shares/TAG/FILE (read-only when the share is).
 * The mounts exist only in that namespace, so they go with vmwrapper and QEMU, crash or
 * not; nothing outside ever sees them. Must run before any thread exists. */
int vm_stage_file_shares(const struct vm_spec *s, uk_error *err);

#endif
