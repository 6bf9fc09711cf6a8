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
TEST_DEBS := nftables conntrack iproute2 dnsmasq-base socat procps

deps:
	@./scripts/apt-ensure $(TEST_DEBS)
	$(GO) mod download

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# The image boot test (QEMU under TCG, four boots) runs last, time-boxed:
# the whole build + boot test may take at most IMAGE_TEST_BOX seconds.
IMAGE_TEST_BOX ?= 1800

test: deps bench-deps build vet
	LBD_BIN=$(abspath $(LBD)) $(GO) test -count=1 -timeout 30m ./...
	timeout $(IMAGE_TEST_BOX) $(MAKE) --no-print-directory image-test

# test-fast: everything but the image boot test.
test-fast: deps bench-deps build vet
	LBD_BIN=$(abspath $(LBD)) $(GO) test -count=1 -timeout 30m ./...

demo: deps build
	./scripts/demo $(abspath $(LBD))

clean:
	rm -rf $(OUT)

-include image/image.mk
-include bench/bench.mk
