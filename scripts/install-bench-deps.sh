#!/bin/sh
# Install what `make bench` needs beyond scripts/install-deps.sh; idempotent.
#
#   scripts/install-bench-deps.sh                  nothing extra: install-deps.sh has it all
#   scripts/install-bench-deps.sh --with-libvirt   also libvirt, for the libvirt column
#
# libvirt's packages would start libvirtd (and its default network, virbr0) on the host
# if nothing stopped them: the benchmark starts its own libvirtd by hand, in a mount and
# network namespace of its own. So the install runs under a policy-rc.d that forbids
# starting services, created for the install only when the machine has none.
set -eu

with_libvirt=0
for a in "$@"; do
	case "$a" in
	--with-libvirt) with_libvirt=1 ;;
	-h | --help)
		sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "install-bench-deps: unknown option $a" >&2
		exit 2
		;;
	esac
done

[ "$with_libvirt" = 1 ] || exit 0

PACKAGES="libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu"

policy=/usr/sbin/policy-rc.d
made_policy=0
if [ "$(id -u)" -eq 0 ] && [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# install-bench-deps.sh: no service starts during the install\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	made_policy=1
fi
cleanup() {
	if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi
}
trap cleanup EXIT INT TERM

# The dpkg check and the apt install are install-deps.sh's, given our package list.
# shellcheck disable=SC2086
"$(dirname "$0")/install-deps.sh" $PACKAGES
