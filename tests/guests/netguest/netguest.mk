# tests/guests/netguest/netguest.mk - build the netguest test guest.
#
# Included from the top-level Makefile; paths are relative to the repository
# root.  `make netguest` runs build.sh, which downloads Debian's cloud kernel
# and busybox-static (apt-get download) and packs the guest into
# $(NETGUEST_DIR): vmlinuz, initrd.cpio.gz, cmdline, stamp.  `make netguest-amd64` builds
# the flavour with Debian's generic kernel, 9p and virtio-blk (the volume tests) into
# $(NETGUEST_AMD64_DIR).  build.sh is
# cached on the package versions and its inputs, so the target is phony and
# cheap to run again.  Not part of GUESTS: it needs the Debian archive.

NETGUEST_DIR := build/guests/netguest
NETGUEST_AMD64_DIR := build/guests/netguest-amd64

.PHONY: netguest netguest-amd64 clean-guest-netguest
netguest:
	tests/guests/netguest/build.sh $(NETGUEST_DIR)

netguest-amd64:
	tests/guests/netguest/build.sh $(NETGUEST_AMD64_DIR) amd64

clean-guest-netguest:
	rm -rf $(NETGUEST_DIR) $(NETGUEST_AMD64_DIR)
