# Benchmarks (issue 6): `make bench` measures lbd against direct routing,
# HAProxy and nftlb in namespace labs and writes BENCHMARKS.md (about 25
# minutes, the 100,000-service cold start included). `make bench-quick` (or
# BENCH_QUICK=1) is the smoke mode, about 5 minutes on a loaded machine (the
# issue-13 rows at 1,000 services), and writes out/BENCHMARKS-quick.md
# instead. Needs root.
BENCH_DEBS := wrk haproxy nftlb iperf3 nginx nftables iproute2 procps bird2 conntrack
BENCH_BIN  := $(OUT)/bench
BENCH_OUT  := $(if $(filter 1,$(BENCH_QUICK)),$(OUT)/BENCHMARKS-quick.md,BENCHMARKS.md)
BENCH_ARGS := $(if $(filter 1,$(BENCH_QUICK)),-quick -json $(OUT)/BENCHMARKS-quick.json,-json bench/BENCHMARKS.json)

.PHONY: bench bench-quick bench-deps

bench-deps:
	@./scripts/apt-ensure $(BENCH_DEBS)

$(BENCH_BIN): $(shell find bench internal -name '*.go' -not -name '*_test.go') go.mod go.sum
	@mkdir -p $(OUT)
	CGO_ENABLED=0 $(GO) build -trimpath -o $@ ./bench

bench: bench-deps build $(BENCH_BIN)
	$(BENCH_BIN) $(BENCH_ARGS) -lbd $(LBD) -repo . -out $(BENCH_OUT)

bench-quick:
	@$(MAKE) --no-print-directory bench BENCH_QUICK=1
