#!/bin/sh
# tests/helpers/private-mounts.sh RUN VARLIB CMD [ARG...]
# Run under `unshare --mount --propagation private`: bind RUN over /run and VARLIB over
# /var/lib, then exec CMD. Containerd 1.6 writes /run/containerd/s and /var/lib/cni
# whatever its config says; these mounts keep them in the test's scratch directory and,
# the namespace being private, invisible to the host.
set -eu
[ "$#" -ge 3 ] || { echo "usage: $0 RUN VARLIB CMD [ARG...]" >&2; exit 2; }
run=$1 varlib=$2
shift 2
mount --bind "$run" /run
mount --bind "$varlib" /var/lib
exec "$@"
