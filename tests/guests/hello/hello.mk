# tests/guests/hello/hello.mk - build the unikd test guest (PVH ELF).
#
# Included from the top-level Makefile; all paths are relative to the
# repository root.  Defines $(HELLO_ELF), adds it to GUESTS, and provides
# a clean-guest-hello target.  Uses its own HELLO_* variables so host
# CFLAGS/LDFLAGS (sanitizers, -fPIE, ...) never leak into the guest.

HELLO_DIR   := tests/guests/hello
HELLO_BUILD := build/guests/hello
HELLO_ELF   := $(HELLO_DIR)/hello.elf

HELLO_CC ?= gcc
HELLO_LD ?= ld

HELLO_CFLAGS := -m32 -std=gnu11 -O2 -g \
	-ffreestanding -fno-builtin -nostdlib -fno-pic -fno-pie \
	-fno-stack-protector -fno-asynchronous-unwind-tables \
	-fcf-protection=none \
	-mno-sse -mno-mmx -mno-80387 -mgeneral-regs-only \
	-Wall -Wextra -Werror
HELLO_LDFLAGS := -m elf_i386 -nostdlib --build-id=none -T $(HELLO_DIR)/hello.ld

HELLO_OBJS := $(HELLO_BUILD)/start.o $(HELLO_BUILD)/hello.o

GUESTS += $(HELLO_ELF)

$(HELLO_ELF): $(HELLO_OBJS) $(HELLO_DIR)/hello.ld
	$(HELLO_LD) $(HELLO_LDFLAGS) -o $@ $(HELLO_OBJS)

$(HELLO_BUILD)/start.o: $(HELLO_DIR)/start.S $(HELLO_DIR)/hello.mk
	@mkdir -p $(HELLO_BUILD)
	$(HELLO_CC) $(HELLO_CFLAGS) -c -o $@ $<

$(HELLO_BUILD)/hello.o: $(HELLO_DIR)/hello.c $(HELLO_DIR)/hello.mk
	@mkdir -p $(HELLO_BUILD)
	$(HELLO_CC) $(HELLO_CFLAGS) -c -o $@ $<

.PHONY: clean-guest-hello
clean-guest-hello:
	rm -f $(HELLO_ELF) $(HELLO_OBJS)
	-rmdir $(HELLO_BUILD) 2>/dev/null
