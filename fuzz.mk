# Fuzzing: `make fuzz FUZZTIME=10m` runs each Go fuzz target for FUZZTIME,
# one after another. Plain `go test` (and so `make test`) already replays
# every committed corpus in <pkg>/testdata/fuzz as ordinary tests; a
# crasher found here is written there and becomes a regression seed.
# The daemon targets need root (they apply configs to a kernel in a
# network namespace of their own) and skip loudly without it.
FUZZTIME     ?= 30s
# Workers per target; 1 leaves the other core to whoever shares the machine.
FUZZPARALLEL ?= 1
# Time spent shrinking each new interesting input. Go's default (60s) stalls
# FuzzParse for minutes on the multi-kilobyte config seeds.
FUZZMINIMIZETIME ?= 5s
FUZZ_TARGETS := \
	config:FuzzParse \
	config:FuzzParseRate \
	config:FuzzParseDuration \
	config:FuzzParseAddress \
	health:FuzzParsePayload \
	health:FuzzParseExpectStatus \
	daemon:FuzzApplyConfig \
	daemon:FuzzApplyValues

# -timeout 0: go test's default 10m timeout would cut a long run short
# (FUZZTIME bounds each run anyway).
.PHONY: fuzz
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=./$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -timeout 0 \
			-fuzzminimizetime $(FUZZMINIMIZETIME) -parallel $(FUZZPARALLEL); \
	done
