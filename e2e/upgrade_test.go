package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"lbd/internal/lab"
)

// prevRelease is the commit an upgrade starts from: the last commit before
// the counter sets (flows4/6 and empty4/6 replaced the flows_/empty_
// counter objects and each service chain's refusal rule moved to the shared
// DNAT chains; override with LBD_UPGRADE_FROM=<rev>, e.g. 75a82ea, the
// release before the single sync loop and health.json). Move it forward
// when the kernel layout or a state file changes again.
const prevRelease = "8f53b3a"

var (
	prevOnce sync.Once
	prevBin  string
	prevErr  error
)

// previousRelease builds lbd from prevRelease's source (git archive, so the
// work tree is never touched) once per test binary.
func previousRelease(t *testing.T) string {
	t.Helper()
	prevOnce.Do(func() {
		rev := prevRelease
		if v := os.Getenv("LBD_UPGRADE_FROM"); v != "" {
			rev = v
		}
		top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
		if err != nil {
			prevErr = err
			return
		}
		dir, err := os.MkdirTemp("", "lbd-prev")
		if err != nil {
			prevErr = err
			return
		}
		src := filepath.Join(dir, "src")
		os.Mkdir(src, 0o755)
		arch := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", strings.TrimSpace(string(top)), rev, src)
		if out, err := arch.CombinedOutput(); err != nil {
			prevErr = &prevBuildErr{"git archive " + rev, err, out}
			return
		}
		prevBin = filepath.Join(dir, "lbd-"+rev)
		build := exec.Command("go", "build", "-o", prevBin, "./cmd/lbd")
		build.Dir = src
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			prevErr = &prevBuildErr{"build " + rev, err, out}
		}
	})
	if prevErr != nil {
		t.Fatalf("previous release (the upgrade's starting point): %v", prevErr)
	}
	return prevBin
}

type prevBuildErr struct {
	what string
	err  error
	out  []byte
}

func (e *prevBuildErr) Error() string { return e.what + ": " + e.err.Error() + "\n" + string(e.out) }

// TestUpgradeFromPreviousRelease: the previous release runs with a dead
// backend, an established connection and a client pinned by persistence;
// it is stopped the way systemd stops it and this lbd starts on the table
// it left, under load. No new connection fails, the established one
// carries on, the dead backend (from health.json, or from the kernel's
// slots when the old release wrote none) gets no flow, sh keeps its
// clients, the persistence entry survives, and the old layout's objects
// are gone.
func TestUpgradeFromPreviousRelease(t *testing.T) {
	old := previousRelease(t)
	e := newEnv(t, 3, 2)
	e.writeConfig(svcHeader("echo", lab.VIPv4, 7000, "snat = false") + fastHealth("tcp", "") + backends(7000, 1, 2, 3) +
		svcHeader("hash", lab.VIPv4, 7001, `scheduler = "sh"`) + backends(7000, 1, 3) +
		svcHeader("sticky", lab.VIPv4, 7002, `persistence = "10m"`) + backends(7000, 1, 3))
	e.bin = old
	e.startLBD()
	be := func(i int) string { return lab.BackendV4(i) + ":7000" }
	for i := 1; i <= 3; i++ {
		e.waitSlots("echo", be(i), some)
	}
	witness := newSYNWitness(t, e, 2)
	e.lab.StopBackend(2)
	e.waitState("echo", be(2), "down")
	e.waitSlots("echo", be(2), none)
	hashBefore, err := e.askOnce(0, vip4(7001))
	if err != nil {
		t.Fatal(err)
	}
	// Client 1 takes sticky's slot 0, client 0 is pinned to the other
	// backend. The new lbd rewrites the rule, so its round robin starts at
	// slot 0 again: only the persistence entry keeps client 0 where it is.
	slot0, err := e.askOnce(1, vip4(7002))
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := e.askOnce(0, vip4(7002))
	if err != nil {
		t.Fatal(err)
	}
	if pinned == slot0 {
		t.Fatalf("sticky: clients 0 and 1 both went to %q; round robin should have split them", pinned)
	}

	held, err := e.lab.DialFrom(e.lab.Client(0), lab.ClientAddr(0), vip4(7000), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	first, err := lab.AskOn(held, "before")
	if err != nil {
		t.Fatal(err)
	}

	l := e.startLoad(0, vip4(7000), 10*time.Millisecond)
	waitUntil(t, "the load to get going", func() bool { ok, _, _, _ := l.result(); return ok >= 20 })
	e.stopLBD(false) // SIGTERM: the old release leaves its table in place
	e.bin = ""
	e.startLBD()
	time.Sleep(restartSoak)
	l.stop()

	ok, failed, by, failures := l.result()
	t.Logf("upgrade from %s: %s", filepath.Base(old), l)
	if failed != 0 {
		t.Errorf("%d of %d new connections failed across the upgrade (want 0):\n  %s", failed, ok+failed, strings.Join(failures, "\n  "))
	}
	if n := witness.count(); n != 0 {
		t.Errorf("the dead backend be2 received %d client SYNs after the upgrade (want 0)", n)
	}
	if by["be1"] == 0 || by["be3"] == 0 {
		t.Errorf("live backends should share the load: %v", by)
	}
	again, err := lab.AskOn(held, "after")
	if err != nil || lab.Name(again) != lab.Name(first) {
		t.Errorf("the established connection did not survive the upgrade: before %q, after %q (%v)", first, again, err)
	}
	if got, err := e.askOnce(0, vip4(7001)); err != nil || got != hashBefore {
		t.Errorf("sh moved the client across the upgrade: %q -> %q (%v)", hashBefore, got, err)
	}
	for i := 0; i < 3; i++ {
		if got, err := e.askOnce(0, vip4(7002)); err != nil || got != pinned {
			t.Errorf("persistence lost across the upgrade: client 0 went to %q, was pinned to %q (%v)", got, pinned, err)
		}
	}
	s := e.status()
	if len(s.Services) != 3 {
		t.Errorf("status after the upgrade: %d services", len(s.Services))
	}
	for _, svc := range s.Services {
		if svc.Name == "sticky" && svc.Packets < 3 {
			t.Errorf("sticky counted %d new flows after the upgrade, want at least the 3 asked", svc.Packets)
		}
	}
	// Read through netlink, not nft: nft cannot print a persistence rule.
	ks, err := readKernel(e.lab.NSFile("lb"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ks.Objects {
		if strings.HasPrefix(o, "flows_") || strings.HasPrefix(o, "empty_") {
			t.Errorf("the previous layout's counter object %s is still in the table", o)
		}
	}
	for _, want := range []string{"flows4", "flows6", "empty4", "empty6"} {
		if !slices.Contains(ks.Sets, want) {
			t.Errorf("counter set %s missing after the upgrade; the table has %v", want, ks.Sets)
		}
	}
}
