# CRI protobuf code generation, included by the top-level Makefile (paths from the repo root).
# protoc-c turns src/cri/proto/api.proto into build/gen/cri/api.pb-c.{c,h}; generated code
# never goes into the source tree.
# Including this fragment must not change the including Makefile's default goal.
_cri_default_goal := $(.DEFAULT_GOAL)

CRI_PROTO := src/cri/proto/api.proto
CRI_GEN_DIR := build/gen/cri
CRI_GEN_C := $(CRI_GEN_DIR)/api.pb-c.c
CRI_GEN_H := $(CRI_GEN_DIR)/api.pb-c.h
# -Ulinux: under -std=gnu11 GCC predefines the macro `linux` (= 1), which would break the
# many CRI fields named `linux` (e.g. PodSandboxConfig.linux). Every translation unit that
# includes api.pb-c.h needs it; __linux__ stays defined, so nothing else changes.
CRI_CFLAGS := -I$(CRI_GEN_DIR) -Ulinux $(shell pkg-config --cflags libprotobuf-c 2>/dev/null)
CRI_LIBS := $(shell pkg-config --libs libprotobuf-c 2>/dev/null)
# Extra flags for compiling $(CRI_GEN_C) itself, on top of the project CFLAGS and
# $(CRI_CFLAGS). protoc-c 1.4.1 output is otherwise clean under -std=gnu11 -Wall -Wextra -Werror.
CRI_GEN_CFLAGS := -Ulinux
PROTOC_C ?= protoc-c

# One protoc-c run writes both files: a grouped target (GNU make >= 4.3) so that make,
# parallel or not, runs the generator once and knows it makes both.
$(CRI_GEN_C) $(CRI_GEN_H) &: $(CRI_PROTO)
	@mkdir -p $(CRI_GEN_DIR)
	$(PROTOC_C) --c_out=$(CRI_GEN_DIR) --proto_path=src/cri/proto api.proto

.PHONY: cri-gen
cri-gen: $(CRI_GEN_C) $(CRI_GEN_H)

.DEFAULT_GOAL := $(_cri_default_goal)
