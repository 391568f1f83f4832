#!/bin/sh
# Install the Debian packages unikd needs to build, run and test; idempotent.
# It asks dpkg first and touches apt only when something is missing.
# With arguments, it installs those packages instead (scripts/install-bench-deps.sh).
set -eu

PACKAGES="
gcc make pkg-config libc6-dev binutils
libjson-c-dev libcmocka-dev
libnl-3-dev libnl-route-3-dev libnftables-dev nftables
libgrpc-dev libprotobuf-c-dev protobuf-c-compiler
libcurl4-openssl-dev libarchive-dev
libinih-dev libsystemd-dev systemd procps
qemu-system-x86 qemu-system-data qemu-utils dnsmasq-base iproute2
python3 python3-pytest python3-grpcio python3-grpc-tools socat
docker-registry apache2-utils
containernetworking-plugins iptables
containerd runc
golang-go golang-github-docker-spdystream-dev
"

if [ "$#" -gt 0 ]; then PACKAGES="$*"; fi

missing=""
for p in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	echo "install-deps: all packages present"
	exit 0
fi

echo "install-deps: installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: need root to install packages (try: sudo $0)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
