#!/bin/bash
# tests/guests/netguest/build.sh OUTDIR [FLAVOUR] - build the netguest test guest.
#
# FLAVOUR "cloud" (the default) takes Debian's cloud kernel; "amd64" takes the
# generic kernel (linux-image-amd64) and adds the 9p and virtio-blk modules
# the volume tests need.  Downloads the kernel and busybox-static with apt-get
# download (nothing is installed), and writes:
#   OUTDIR/vmlinuz         the kernel
#   OUTDIR/initrd.cpio.gz  busybox, /init, the virtio/button modules
#   OUTDIR/cmdline         the default kernel command line
#   OUTDIR/stamp           package versions and the hash of the build inputs
# If OUTDIR/stamp already matches the versions apt would download now (its
# candidate versions; no download) and the inputs, it prints
# "netguest: cached" and does nothing.  See README.md.
set -euo pipefail

usage() { echo "usage: $0 OUTDIR [cloud|amd64]" >&2; exit 2; }
if [ $# -lt 1 ] || [ $# -gt 2 ] || [ -z "$1" ]; then usage; fi
out=$1
flavour=${2:-cloud}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BUSYBOX_PKG="busybox-static"
# Modules /init loads (with their dependencies, unless built in).
MODULES=(virtio_mmio virtio_pci virtio_net button evdev)
case "$flavour" in
cloud)
	META_PKG="linux-image-cloud-amd64"
	KERNEL_SUFFIX="cloud-amd64"
	;;
amd64)
	# The cloud kernel has no 9p; the generic one has it as modules.
	META_PKG="linux-image-amd64"
	KERNEL_SUFFIX="amd64"
	MODULES+=(9p 9pnet_virtio virtio_blk)
	;;
*) usage ;;
esac
# Files whose content changes the result, hashed into the stamp.
INPUTS=(build.sh init udhcpc.script checks.sh cgi acpi-power)
CMDLINE="console=ttyS0 quiet panic=-1 cryptomgr.notests"

log() { echo "netguest: $*" >&2; }
die() { echo "netguest: error: $*" >&2; exit 1; }

for t in apt-get apt-cache dpkg-deb objcopy gzip sha256sum; do
	command -v "$t" >/dev/null || die "$t not found"
done

updated=0
apt_update() {
	[ "$updated" -eq 0 ] || return 1
	updated=1
	log "running apt-get update"
	apt-get update -q >&2 || die "apt-get update failed"
}

# Candidate versions (what apt would download now) of packages $@, one line
# "name version" each, from one apt-cache call (the look-up is the slow part).
candidates() {
	apt-cache policy "$@" 2>/dev/null | awk '
		/^[^ ].*:$/ { pkg = substr($0, 1, length($0) - 1); next }
		$1 == "Candidate:" && pkg != "" && $2 != "(none)" { print pkg, $2; pkg = "" }'
}
pick() { sed -n "s/^$1 //p" <<<"$2" | head -n 1; }

meta_ver='' kernel_pkg='' kernel_ver='' busybox_ver=''
resolve_versions() {
	local c dep
	c=$(candidates "$META_PKG" "$BUSYBOX_PKG")
	meta_ver=$(pick "$META_PKG" "$c")
	busybox_ver=$(pick "$BUSYBOX_PKG" "$c")
	kernel_pkg='' kernel_ver=''
	[ -n "$meta_ver" ] && [ -n "$busybox_ver" ] || return 1
	# The metapackage depends on the versioned image, e.g.
	# "linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)" or
	# "linux-image-6.1.0-57-amd64 (= 6.1.192-3)".
	dep=$(apt-cache show "$META_PKG=$meta_ver" 2>/dev/null |
		sed -n 's/^Depends: //p' | head -n 1 | tr ',|' '\n' |
		grep -E "^ *linux-image-[0-9][^ ]*-[0-9]+-$KERNEL_SUFFIX( |\$)" | head -n 1)
	kernel_pkg=$(awk '{ print $1 }' <<<"$dep")
	[ -n "$kernel_pkg" ] || return 1
	kernel_ver=$(sed -n 's/.*(= *\([^ )]*\)).*/\1/p' <<<"$dep")
	[ -n "$kernel_ver" ] || kernel_ver=$(pick "$kernel_pkg" "$(candidates "$kernel_pkg")")
	[ -n "$kernel_ver" ]
}

inputs_hash() {
	(cd "$here" && sha256sum "${INPUTS[@]}") | sha256sum | cut -d ' ' -f 1
}

stamp_text() {
	printf 'flavour=%s\n' "$flavour"
	printf '%s=%s\n' "$META_PKG" "$meta_ver" "$kernel_pkg" "$kernel_ver" \
		"$BUSYBOX_PKG" "$busybox_ver"
	printf 'inputs=%s\n' "$(inputs_hash)"
}

have_outputs() {
	[ -s "$out/vmlinuz" ] && [ -s "$out/initrd.cpio.gz" ] && [ -s "$out/cmdline" ] &&
		[ -f "$out/stamp" ]
}

if ! resolve_versions; then
	apt_update
	resolve_versions || die "apt knows no candidate for $META_PKG / its kernel / $BUSYBOX_PKG"
fi
want=$(stamp_text)
if have_outputs && [ "$(cat "$out/stamp")" = "$want" ]; then
	echo "netguest: cached"
	exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/netguest-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# --- download and unpack ---------------------------------------------------
apt_opts=(-q)
# As root apt downloads as user _apt, who cannot write to our private temp dir.
[ "$(id -u)" -ne 0 ] || apt_opts+=(-o APT::Sandbox::User=root)
download() {
	(cd "$tmp/deb" && apt-get "${apt_opts[@]}" download \
		"$kernel_pkg=$kernel_ver" "$BUSYBOX_PKG=$busybox_ver") >&2
}
mkdir -p "$tmp/deb"
if ! download; then
	# Missing or stale package lists (an old version gone from the archive).
	apt_update || die "apt-get download failed"
	resolve_versions || die "apt knows no candidate for $META_PKG / its kernel / $BUSYBOX_PKG"
	want=$(stamp_text)
	rm -f "$tmp"/deb/*
	download || die "apt-get download failed"
fi
kdeb=$(ls "$tmp"/deb/"$kernel_pkg"_*.deb)
bdeb=$(ls "$tmp"/deb/"$BUSYBOX_PKG"_*.deb)
log "unpacking $(basename "$kdeb") $(basename "$bdeb")"
dpkg-deb -x "$kdeb" "$tmp/kernel"
dpkg-deb -x "$bdeb" "$tmp/busybox"

busybox=$tmp/busybox/bin/busybox
[ -x "$busybox" ] || die "no bin/busybox in $bdeb"
vmlinuz=$(find "$tmp/kernel/boot" -name 'vmlinuz-*' 2>/dev/null | head -n 1)
[ -n "$vmlinuz" ] || die "no boot/vmlinuz-* in $kdeb"
kabi=${vmlinuz##*/vmlinuz-}
moddir=
for d in "$tmp/kernel/lib/modules/$kabi" "$tmp/kernel/usr/lib/modules/$kabi"; do
	[ -d "$d" ] && moddir=$d
done
[ -n "$moddir" ] || die "no modules directory for $kabi in $kdeb"

# --- root file system --------------------------------------------------------
root=$tmp/root
mkdir -p "$root"/{bin,dev,proc,sys,run,tmp,etc/acpi/PWRF,lib/netguest,lib/modules/netguest,www/cgi-bin,var/log}
ln -s bin "$root/sbin"
mkdir -p "$root/usr"
ln -s ../bin "$root/usr/bin"
ln -s ../bin "$root/usr/sbin"
install -m 0755 "$busybox" "$root/bin/busybox"
for a in $("$busybox" --list); do
	[ "$a" = busybox ] || ln -s busybox "$root/bin/$a"
done
install -m 0755 "$here/init" "$root/init"
install -m 0755 "$here/udhcpc.script" "$root/etc/udhcpc.script"
install -m 0644 "$here/checks.sh" "$root/lib/netguest/checks.sh"
install -m 0755 "$here/acpi-power" "$root/etc/acpi/PWRF/00000080"
for c in fetch ping resolve; do
	install -m 0755 "$here/cgi" "$root/www/cgi-bin/$c"
done
echo netguest >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$root/etc/hosts"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
: >"$root/etc/resolv.conf"

# --- modules, in dependency order ----------------------------------------------
# Debian's package carries no modules.dep (depmod runs at install time), so the
# dependencies come from each module's .modinfo "depends=" field.
declare -A modpath=() done_mod=()
while IFS= read -r f; do
	n=${f##*/}
	n=${n%%.ko*}
	modpath[${n//-/_}]=$f
done < <(find "$moddir/kernel" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')
builtin=" "
if [ -f "$moddir/modules.builtin" ]; then
	while IFS= read -r f; do
		n=${f##*/}
		n=${n%%.ko*}
		builtin+="${n//-/_} "
	done <"$moddir/modules.builtin"
fi
order=()
add_module() {
	local name=$1 src dst dep deps
	[ -z "${done_mod[$name]:-}" ] || return 0
	done_mod[$name]=1
	if [[ "$builtin" == *" $name "* ]]; then
		log "module $name is built in"
		return 0
	fi
	src=${modpath[$name]:-}
	[ -n "$src" ] || die "module $name not found in $kdeb"
	dst=$root/lib/modules/netguest/$name.ko
	case "$src" in
	*.ko.xz) xz -dc "$src" >"$dst" ;;
	*.ko.zst) zstd -qdc "$src" >"$dst" ;;
	*.ko.gz) gzip -dc "$src" >"$dst" ;;
	*) cp "$src" "$dst" ;;
	esac
	objcopy -O binary --only-section=.modinfo "$dst" "$tmp/modinfo"
	deps=$(tr '\0' '\n' <"$tmp/modinfo" | sed -n 's/^depends=//p' | tr ',' ' ')
	for dep in $deps; do
		add_module "${dep//-/_}"
	done
	order+=("$name")
}
for m in "${MODULES[@]}"; do
	add_module "$m"
done
printf '%s\n' "${order[@]}" >"$root/lib/modules/netguest/order"
log "modules: ${order[*]}"

# --- pack -------------------------------------------------------------------------
# Fixed owners, inode numbers and times make the archive reproducible.
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . | LC_ALL=C sort |
	"$busybox" cpio -o -H newc -R 0:0 --ignore-devno --renumber-inodes 2>/dev/null) |
	gzip -n -9 >"$tmp/initrd.cpio.gz"

mkdir -p "$out"
rm -f "$out/stamp"
install -m 0644 "$vmlinuz" "$out/vmlinuz"
install -m 0644 "$tmp/initrd.cpio.gz" "$out/initrd.cpio.gz"
echo "$CMDLINE" >"$out/cmdline"
echo "$want" >"$out/stamp.new"
mv "$out/stamp.new" "$out/stamp"
log "built $out ($kernel_pkg $kernel_ver, $BUSYBOX_PKG $busybox_ver)"
