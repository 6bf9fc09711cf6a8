package main

import (
	"os"
	"os/exec"
	"path/filepath"
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

// TestQuickSmoke runs the harness in quick mode (data plane, failover,
// reloads; BENCH_SMOKE_ALL=1 for every section) and checks that it
// produced a report with numbers. It asserts nothing about speed.
func TestQuickSmoke(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: the benchmark harness needs root (network namespaces, nftables)")
	}
	for _, tool := range []string{"wrk", "iperf3", "nginx"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED: %s not installed (make bench-deps)", tool)
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
	sections := "dataplane,failover,reload"
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
	for _, want := range []string{"## Machine", "## Targets", "## 1. Data plane", "new connections/s", "## 4. Failover", "## 5. Reloads"} {
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
