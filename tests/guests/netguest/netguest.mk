# tests/guests/netguest/netguest.mk - build the netguest test guest.
#
# Included from the top-level Makefile; paths are relative to the repository
# root.  `make netguest` runs build.sh, which downloads Debian's cloud kernel
# and busybox-static (apt-get download) and packs the guest into
# $(NETGUEST_DIR): vmlinuz, initrd.cpio.gz, cmdline, stamp.  build.sh is
# cached on the package versions and its inputs, so the target is phony and
# cheap to run again.  Not part of GUESTS: it needs the Debian archive.

NETGUEST_DIR := build/guests/netguest

.PHONY: netguest clean-guest-netguest
netguest:
	tests/guests/netguest/build.sh $(NETGUEST_DIR)

clean-guest-netguest:
	rm -rf $(NETGUEST_DIR)
