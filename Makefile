# unikd build. `make` builds bin/unikd, bin/vmwrapper and the test guests;
# `make test` installs what is missing, builds, and runs every test; `make run` starts unikd;
# `make install` (DESTDIR, PREFIX) puts the binaries, the unit, a default config and the docs in place.
VERSION := 0.1.0
.DEFAULT_GOAL := all
CC ?= gcc
PYTHON ?= /usr/bin/python3
PKGS := json-c libarchive

# SAN=1 builds the same programs with ASan/UBSan into build/san.
ifeq ($(SAN),1)
OUT := build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
OPT := -O1
else
OUT := build/release
SANFLAGS :=
OPT := -O2 -D_FORTIFY_SOURCE=2
endif
BIN := $(if $(filter 1,$(SAN)),$(OUT)/bin,bin)
OBJ := $(OUT)/obj

CFLAGS ?= $(OPT) -g
CFLAGS += -Isrc -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -fstack-protector-strong \
	-DUNIKD_VERSION=\"$(VERSION)\" $(SANFLAGS) -MMD -MP
CFLAGS += $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS += $(SANFLAGS)
LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
TEST_LIBS := $(LIBS) $(shell pkg-config --libs cmocka 2>/dev/null)
# The gRPC C core without TLS: the CRI socket is a local unix socket.
GRPC_LIBS := $(shell pkg-config --libs grpc_unsecure 2>/dev/null)
NET_PKGS := libnl-3.0 libnl-route-3.0 libnftables
CFLAGS += $(shell pkg-config --cflags $(NET_PKGS) 2>/dev/null)
NET_LIBS := $(shell pkg-config --libs $(NET_PKGS) 2>/dev/null)
# The config file's parser (inih) and sd_notify (libsystemd), for unikd.
DAEMON_PKGS := inih libsystemd
CFLAGS += $(shell pkg-config --cflags $(DAEMON_PKGS) 2>/dev/null)
INIH_LIBS := $(shell pkg-config --libs inih 2>/dev/null)
SYSTEMD_LIBS := $(shell pkg-config --libs libsystemd 2>/dev/null)

include src/cri/cri.mk
CFLAGS += $(CRI_CFLAGS)

COMMON_SRC := $(wildcard src/common/*.c)
QMP_SRC := $(wildcard src/qmp/*.c)
VMW_LIB_SRC := $(filter-out vmwrapper/main.c,$(wildcard vmwrapper/*.c))
UNIKD_SRC := $(wildcard src/unikd/*.c)
POOL_SRC := $(wildcard src/pool/*.c)
# The registry client links libcurl; only what uses it links it (unikd, through the pull
# pipeline in pull.c, and registry-pull). Unit tests link the store without both.
REGISTRY_SRC := src/store/registry.c
PULL_SRC := src/store/pull.c
STORE_SRC := $(filter-out $(REGISTRY_SRC) $(PULL_SRC),$(wildcard src/store/*.c))
REGISTRY_OBJS = $(call objs,$(REGISTRY_SRC) src/store/reference.c src/store/sha256.c $(COMMON_SRC))
CURL_LIBS := $(shell pkg-config --libs libcurl 2>/dev/null)
NET_SRC := $(wildcard src/net/*.c)
CG_SRC := $(wildcard src/cgroup/*.c)
CRI_SRC := $(wildcard src/cri/*.c)
# The per-framework guest contracts and the kernel command line (src/guest/README.md).
GUEST_SRC := $(wildcard src/guest/*.c)
# The pure CRI pieces that unit tests link without the gRPC server (wire checks, limits).
CRI_PURE_SRC := $(wildcard src/cri/wire_*.c src/cri/limits*.c src/cri/volumes.c)
# The containerd delegate (src/delegate/README.md): the pure routing, which unit tests link
# alone, and the forwarding client and CRI router.
DELEGATE_PURE_SRC := src/delegate/route.c
DELEGATE_SRC := $(wildcard src/delegate/*.c)

# The CRI streaming server (src/stream/README.md); zlib compresses SPDY's header blocks.
STREAM_SRC := $(wildcard src/stream/*.c)
ZLIB_LIBS := $(shell pkg-config --libs zlib 2>/dev/null)

objs = $(patsubst %.c,$(OBJ)/%.o,$(1))

GUESTS :=
-include tests/guests/hello/hello.mk
# The Linux network guest comes from Debian packages; built (and cached) for the tests only.
-include tests/guests/netguest/netguest.mk

UNIT_TESTS := $(patsubst tests/unit/%.c,$(OUT)/tests/%,$(wildcard tests/unit/test_*.c))

.PHONY: all programs guests unit-tests test test-unit test-integration run bench deps install clean
all: programs guests

programs: $(BIN)/unikd $(BIN)/vmwrapper $(BIN)/qmp-exec $(BIN)/registry-pull
guests: $(GUESTS)

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# Everything that includes the generated CRI header waits for it.
$(call objs,$(CRI_SRC) $(UNIKD_SRC) $(DELEGATE_SRC) $(STREAM_SRC)): | $(CRI_GEN_H)
$(OBJ)/$(CRI_GEN_C:.c=.o): $(CRI_GEN_C)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CRI_GEN_CFLAGS) -Wno-unused-parameter -c $< -o $@

$(BIN)/vmwrapper: $(call objs,vmwrapper/main.c $(VMW_LIB_SRC) $(GUEST_SRC) $(QMP_SRC) $(COMMON_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LIBS)

# A small QMP command runner on the project's client, for tests and for people.
$(BIN)/qmp-exec: $(call objs,tests/helpers/qmp_exec.c $(QMP_SRC) $(COMMON_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LIBS)

# A registry pull on the project's client (src/store/registry.c), for tests and for people.
$(BIN)/registry-pull: $(call objs,tests/helpers/registry_pull.c) $(REGISTRY_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LIBS) $(CURL_LIBS)

$(BIN)/unikd: $(call objs,$(UNIKD_SRC) $(POOL_SRC) $(CRI_SRC) $(DELEGATE_SRC) $(STREAM_SRC) $(CRI_GEN_C) $(GUEST_SRC) $(STORE_SRC) $(REGISTRY_SRC) $(PULL_SRC) $(NET_SRC) $(CG_SRC) $(QMP_SRC) $(COMMON_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LIBS) $(NET_LIBS) $(CRI_LIBS) $(GRPC_LIBS) $(CURL_LIBS) $(INIH_LIBS) \
		$(SYSTEMD_LIBS) $(ZLIB_LIBS) -lpthread

# Each unit test links the pure-logic objects it may need; the linker keeps what it uses.
$(OUT)/tests/%: $(OBJ)/tests/unit/%.o $(call objs,$(VMW_LIB_SRC) $(GUEST_SRC) $(STORE_SRC) $(NET_SRC) $(CG_SRC) $(QMP_SRC) $(COMMON_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(TEST_LIBS) $(NET_LIBS)

# The registry client's test also needs libcurl.
$(OUT)/tests/test_registry: $(OBJ)/tests/unit/test_registry.o $(REGISTRY_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(TEST_LIBS) $(CURL_LIBS)

# Unit tests of the pure CRI pieces link the generated message code and protobuf-c.
CRI_UNIT_TESTS := $(patsubst tests/unit/%.c,$(OUT)/tests/%,$(wildcard tests/unit/test_cri_*.c))
$(call objs,$(CRI_PURE_SRC) $(wildcard tests/unit/test_cri_*.c)): | $(CRI_GEN_H)
$(CRI_UNIT_TESTS): $(OUT)/tests/test_cri_%: $(OBJ)/tests/unit/test_cri_%.o $(call objs,$(CRI_PURE_SRC) $(CRI_GEN_C) $(COMMON_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(TEST_LIBS) $(CRI_LIBS)

# The delegate's routing test links the generated message code, as the test_cri_* tests do.
$(OBJ)/tests/unit/test_delegate_route.o: | $(CRI_GEN_H)
$(OUT)/tests/test_delegate_route: $(OBJ)/tests/unit/test_delegate_route.o $(call objs,$(DELEGATE_PURE_SRC) $(CRI_GEN_C) $(COMMON_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(TEST_LIBS) $(CRI_LIBS)

# The config test links the daemon's config.c, and inih.
$(OUT)/tests/test_config: $(OBJ)/tests/unit/test_config.o $(call objs,src/unikd/config.c src/delegate/route.c src/net/cidr.c $(COMMON_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(TEST_LIBS) $(INIH_LIBS)

# The warm pool's pure decisions (src/pool/README.md), with the store's SHA-256 for key ids.
$(OUT)/tests/test_pool: $(OBJ)/tests/unit/test_pool.o $(call objs,$(POOL_SRC) src/store/sha256.c $(COMMON_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(TEST_LIBS)

# The streaming server's tokens, alone.
$(OUT)/tests/test_stream_tokens: $(OBJ)/tests/unit/test_stream_tokens.o $(call objs,src/stream/tokens.c $(COMMON_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(TEST_LIBS)

# The streaming server's unit tests and `make fuzz` (src/stream/stream.mk); the Go SPDY test
# client (tests/stream/client.mk).
-include src/stream/stream.mk
-include tests/stream/client.mk

unit-tests: $(UNIT_TESTS)

deps:
	@scripts/install-deps.sh

# Unit tests run twice, plain and under ASan/UBSan; integration tests drive the sanitized binaries.
test: deps
	$(PYTHON) scripts/check-function-length.py
	$(MAKE) all unit-tests
	$(MAKE) SAN=1 programs unit-tests
	$(MAKE) test-unit
	$(MAKE) SAN=1 test-unit
	$(MAKE) netguest
	$(MAKE) test-integration

test-unit: unit-tests
	@set -e; for t in $(UNIT_TESTS); do echo "== $$t"; $$t; done

test-integration:
	UNIKD_BIN_DIR=$(CURDIR)/build/san/bin UNIKD_GUEST_DIR=$(CURDIR)/tests/guests \
		$(PYTHON) -m pytest -v -p no:cacheprovider --durations=30 tests/integration

run: deps all
	bin/unikd

# make install [DESTDIR=staging] [PREFIX=/usr/local]: vmwrapper goes beside unikd, where unikd
# looks for it; the unit to PREFIX/lib/systemd/system, which systemd searches for /usr and
# /usr/local alike; the config to /etc, never over an existing one.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR ?= $(PREFIX)/share/doc/unikd
SUBST := sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g'

install: programs
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/unikd $(DESTDIR)$(DOCDIR)/examples
	install -m 0755 $(BIN)/unikd $(BIN)/vmwrapper $(BIN)/qmp-exec $(DESTDIR)$(BINDIR)/
	$(SUBST) systemd/unikd.service > $(DESTDIR)$(UNITDIR)/unikd.service.tmp
	chmod 0644 $(DESTDIR)$(UNITDIR)/unikd.service.tmp
	mv $(DESTDIR)$(UNITDIR)/unikd.service.tmp $(DESTDIR)$(UNITDIR)/unikd.service
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/unikd/unikd.conf ]; then \
		echo "install: keeping the existing $(DESTDIR)$(SYSCONFDIR)/unikd/unikd.conf"; \
	else \
		$(SUBST) systemd/unikd.conf > $(DESTDIR)$(SYSCONFDIR)/unikd/unikd.conf.tmp && \
		chmod 0644 $(DESTDIR)$(SYSCONFDIR)/unikd/unikd.conf.tmp && \
		mv $(DESTDIR)$(SYSCONFDIR)/unikd/unikd.conf.tmp $(DESTDIR)$(SYSCONFDIR)/unikd/unikd.conf && \
		echo "install: $(DESTDIR)$(SYSCONFDIR)/unikd/unikd.conf"; \
	fi
	install -m 0644 docs/*.md $(DESTDIR)$(DOCDIR)/
	install -m 0644 docs/examples/* $(DESTDIR)$(DOCDIR)/examples/

# make bench [BENCH_ARGS="--with-libvirt --runs 30 --density 500 …"]: bench/cri_bench.py prints
# one table and writes bench/results/<date>.json (docs/performance.md). Every side of every
# comparison runs under KVM where /dev/kvm opens, else under TCG, and the table and the JSON say
# which (--accel to choose). The netguest (section 2) is built if it can be; without it that
# section is skipped with a note.
# bench/idle.py then measures idle QEMUs per framework with and without the i8254 PIT
# (IDLE_ARGS="--count 200"; docs/performance.md, "Idle cost per framework").
BENCH_ARGS ?=
IDLE_ARGS ?=
bench: all
	-$(MAKE) netguest
	$(PYTHON) bench/cri_bench.py $(BENCH_ARGS)
	$(PYTHON) bench/idle.py $(IDLE_ARGS)

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
