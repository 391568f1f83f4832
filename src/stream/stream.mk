# The streaming server's pure parts (src/stream/README.md): their unit tests link only the
# SPDY engine, the HTTP upgrade and src/common, with zlib; the generic $(OUT)/tests/% rule
# would link other folders and miss zlib.
STREAM_PURE_SRC := src/stream/spdy.c src/stream/http.c
STREAM_UNIT_TESTS := $(OUT)/tests/test_spdy $(OUT)/tests/test_stream_http
$(STREAM_UNIT_TESTS): $(OUT)/tests/%: $(OBJ)/tests/unit/%.o $(call objs,$(STREAM_PURE_SRC) $(COMMON_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(TEST_LIBS) $(ZLIB_LIBS)

# make fuzz [FUZZ_RUNS=n]: the libFuzzer target for the SPDY frame and header parser and the
# HTTP upgrade parser, for FUZZ_RUNS executions over the committed corpus (new finds go to
# build/fuzz/corpus and crashes to build/fuzz/, never into the tree). Not part of `make test`.
FUZZ_CC ?= clang-14
FUZZ_RUNS ?= 1000000
FUZZ_CFLAGS := -g -O1 -std=gnu11 -D_GNU_SOURCE -Isrc -Wall -Wextra -Werror \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	$(shell pkg-config --cflags json-c zlib 2>/dev/null)
FUZZ_SRC := tests/fuzz/fuzz_spdy.c $(STREAM_PURE_SRC) src/common/error.c

.PHONY: fuzz
build/fuzz/fuzz_spdy: $(FUZZ_SRC) src/stream/spdy.h src/stream/http.h src/common/error.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SRC) -o $@ $(ZLIB_LIBS)

fuzz: build/fuzz/fuzz_spdy
	@mkdir -p build/fuzz/corpus
	build/fuzz/fuzz_spdy -runs=$(FUZZ_RUNS) -max_len=65536 -print_final_stats=1 \
		-artifact_prefix=build/fuzz/ \
		build/fuzz/corpus tests/fuzz/corpus/spdy
