package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestMain lets the test binary stand in for `bench probe`, which the
// harness runs by re-executing itself inside the client namespace.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		os.Exit(probeMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// TestQuickSmoke runs the harness in quick mode (data plane, health flips
// on the running daemon, conntrack poll, failover, reloads;
// BENCH_SMOKE_ALL=1 for every section) and checks that it
// produced a report with numbers. It asserts nothing about speed.
func TestQuickSmoke(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: the benchmark harness needs root (network namespaces, nftables)")
	}
	for _, tool := range []string{"wrk", "iperf3", "nginx"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: make test installs it (bench-deps); a missing tool is a failure, not a skip", tool)
		}
	}
	dir := t.TempDir()
	lbd := os.Getenv("LBD_BIN")
	if lbd == "" {
		lbd = filepath.Join(dir, "lbd")
		if out, err := exec.Command("go", "build", "-o", lbd, "lbd/cmd/lbd").CombinedOutput(); err != nil {
			t.Fatalf("build lbd: %v\n%s", err, out)
		}
	}
	// flip and conntrack run issue 13's rows at quick-mode scale (1,000
	// services, 10,000 flows) in about 30 s, so their code paths stay
	// exercised by make test; the 100,000-service cold start is full-mode only.
	sections := "dataplane,flip,conntrack,failover,reload"
	if os.Getenv("BENCH_SMOKE_ALL") == "1" {
		sections = allSections
	}
	out := filepath.Join(dir, "BENCHMARKS.md")
	if rc := benchMain([]string{"-quick", "-dur", "1s", "-lbd", lbd, "-repo", "..", "-out", out, "-sections", sections}); rc != 0 {
		t.Fatalf("bench exited %d", rc)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	report := string(b)
	for _, want := range []string{"## Machine", "## Targets", "## 1. Data plane", "new connections/s", "Schedulers that ran", "## 3b. Health flips", "## 3c. Conntrack poll", "## 4. Failover", "## 5. Reloads"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "## Problems during this run") {
		t.Errorf("the harness reported problems:\n%s", report)
	}
	if _, err := os.Stat(strings.TrimSuffix(out, ".md") + ".json"); err != nil {
		t.Errorf("no JSON results: %v", err)
	}
}

// TestOtherEndpointsUnique checks the generated services' VIP:port pairs up
// to the 100,000-service cold start: all distinct and all in the
// documentation ranges (the full-mode row is too slow for make test).
func TestOtherEndpointsUnique(t *testing.T) {
	seen := map[string]int{}
	for i := 0; i < 100000; i++ {
		vip, port := otherEndpoint(i)
		if !strings.HasPrefix(vip, "203.0.113.") && !strings.HasPrefix(vip, "198.51.100.") {
			t.Fatalf("service %d: VIP %s outside the documentation ranges", i, vip)
		}
		last, err := strconv.Atoi(vip[strings.LastIndexByte(vip, '.')+1:])
		if err != nil || last < 1 || last > 254 || port < 1 || port > 65535 {
			t.Fatalf("service %d: %s:%d", i, vip, port)
		}
		k := fmt.Sprintf("%s:%d", vip, port)
		if j, dup := seen[k]; dup {
			t.Fatalf("services %d and %d share %s", j, i, k)
		}
		seen[k] = i
	}
	// The lab's own addresses must stay free: client 198.51.100.2, VIP
	// 203.0.113.10, the flip services' 198.51.100.250.
	for k := range seen {
		for _, taken := range []string{"198.51.100.2:", "203.0.113.10:", flipVIP + ":"} {
			if strings.HasPrefix(k, taken) {
				t.Errorf("generated endpoint %s collides with the lab's %s", k, taken)
			}
		}
	}
}

// TestPairSmoke runs the pair failover section once (quick mode): two lbd
// nodes with keepalived and conntrackd, one hard takeover. It checks the
// report has the section and that the run kept every long-lived
// connection (behaviour, not speed).
func TestPairSmoke(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: the benchmark harness needs root (network namespaces, nftables)")
	}
	dir := t.TempDir()
	lbd := os.Getenv("LBD_BIN")
	if lbd == "" {
		lbd = filepath.Join(dir, "lbd")
		if out, err := exec.Command("go", "build", "-o", lbd, "lbd/cmd/lbd").CombinedOutput(); err != nil {
			t.Fatalf("build lbd: %v\n%s", err, out)
		}
	}
	out := filepath.Join(dir, "BENCHMARKS.md")
	if rc := benchMain([]string{"-quick", "-lbd", lbd, "-repo", "..", "-out", out, "-sections", "pair"}); rc != 0 {
		t.Fatalf("bench exited %d", rc)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	report := string(b)
	for _, want := range []string{"## Pair failover", "| 1 | lb1 |", fmt.Sprintf("| %d/%d |", pairLong, pairLong)} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "## Problems during this run") {
		t.Errorf("the harness reported problems:\n%s", report)
	}
}
