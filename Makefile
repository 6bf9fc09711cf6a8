# lbd build. `make demo` and `make test` install what they need themselves.
GO      ?= go
OUT     ?= out
LBD     := $(OUT)/lbd
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: all build test test-fast demo deps clean vet

all: build

build: $(LBD)

$(LBD): $(shell find . -name '*.go' -not -path './out/*') go.mod go.sum
	@mkdir -p $(OUT)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(LBD) ./cmd/lbd

# Debian packages the tests use as real peers (nft for inspecting the ruleset
# in tests only; lbd itself never runs it).
TEST_DEBS := nftables conntrack iproute2 dnsmasq-base socat procps kmod chromium tmux nano \
	prometheus keepalived conntrackd bird2 debootstrap dpkg-dev curl groff-base util-linux

# gotestsum runs go test and closes with its own summary: every skipped
# test with its reason, every failure with its output, then the line
# "DONE N tests, N skipped, N failures in Ts" that CI parses. Plain go test
# without -v hides skips; with -v the few lines that matter drown.
GOTESTSUM_VERSION := v1.13.0
GOTESTSUM := $(abspath $(OUT))/tools/gotestsum-$(GOTESTSUM_VERSION)
GOTEST := LBD_BIN=$(abspath $(LBD)) $(GOTESTSUM) --format pkgname --format-icons text -- -count=1 -timeout 30m ./...

$(GOTESTSUM):
	@mkdir -p $(dir $@)
	GOBIN=$(abspath $(OUT))/tools $(GO) install gotest.tools/gotestsum@$(GOTESTSUM_VERSION)
	mv $(abspath $(OUT))/tools/gotestsum $@

deps: $(GOTESTSUM)
	@./scripts/apt-ensure $(TEST_DEBS)
	$(GO) mod download

vet:
	$(GO) vet ./...
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run 'go mod tidy'"; $(GO) mod tidy -diff; exit 1; }
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# The image boot test (QEMU under TCG, four boots) runs last, time-boxed:
# the whole build + boot test may take at most IMAGE_TEST_BOX seconds.
IMAGE_TEST_BOX ?= 1800

test: deps bench-deps build vet
	$(GOTEST)
	timeout $(IMAGE_TEST_BOX) $(MAKE) --no-print-directory image-test

# test-fast: everything but the image boot test.
test-fast: deps bench-deps build vet
	$(GOTEST)

demo: deps build
	./scripts/demo $(abspath $(LBD))

clean:
	rm -rf $(OUT)

-include image/image.mk
-include bench/bench.mk
-include fuzz.mk
-include packaging/deb.mk
