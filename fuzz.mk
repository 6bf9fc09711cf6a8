# Fuzzing: `make fuzz FUZZTIME=10m` runs each Go fuzz target for FUZZTIME,
# one after another. Plain `go test` (and so `make test`) already replays
# every committed corpus in <pkg>/testdata/fuzz as ordinary tests; a
# crasher found here is written there and becomes a regression seed.
# FuzzApplyConfig needs root (it applies configs to a kernel in a network
# namespace of its own) and skips loudly without it.
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

.PHONY: fuzz
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=./$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) -parallel $(FUZZPARALLEL); \
	done
