# ukstream, the Go SPDY test client (tests/stream/README.md). GOPATH mode on Debian's
# /usr/share/gocode (golang-github-docker-spdystream-dev): no module download, no network.
# The binary is rebuilt only when a .go file changes; Go's own cache lives in build/gocache.
UKSTREAM := build/ukstream
UKSTREAM_SRCS := $(filter-out %_test.go,$(wildcard tests/stream/client/*.go))
UKSTREAM_GOENV := GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$(CURDIR)/build/gocache \
	GOFLAGS= GOENV=off GOPROXY=off CGO_ENABLED=0

$(UKSTREAM): $(UKSTREAM_SRCS)
	@mkdir -p $(dir $@)
	$(UKSTREAM_GOENV) go build -o $@ ./tests/stream/client

.PHONY: stream-client stream-client-check
stream-client: $(UKSTREAM)

# The client against a throwaway spdystream server in Go (selfcheck_test.go); not unikd.
stream-client-check: $(UKSTREAM)
	$(UKSTREAM_GOENV) go test -count=1 ./tests/stream/client

# The integration tests run the client: build it first (a second rule without a recipe only
# adds prerequisites to the Makefile's test-integration).
test-integration: $(UKSTREAM)
