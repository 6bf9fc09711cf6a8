package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lbd/internal/lab"
)

// prevRelease is the commit an upgrade starts from: the last commit of the
// release before the single sync loop and health.json (override with
// LBD_UPGRADE_FROM=<rev>). Move it forward when a release ships.
const prevRelease = "75a82ea"

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
// backend and an established connection; it is stopped the way systemd
// stops it and this lbd starts on the table it left. No new connection
// fails, the established one carries on, and the dead backend (the old
// release wrote no health.json, so this lbd learns it from the kernel's
// slots) gets no flow.
func TestUpgradeFromPreviousRelease(t *testing.T) {
	old := previousRelease(t)
	e := newEnv(t, 3, 1)
	e.writeConfig(svcHeader("echo", lab.VIPv4, 7000, "snat = false") + fastHealth("tcp", "") + backends(7000, 1, 2, 3) +
		svcHeader("hash", lab.VIPv4, 7001, `scheduler = "sh"`) + backends(7000, 1, 3))
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
	if s := e.status(); len(s.Services) != 2 {
		t.Errorf("status after the upgrade: %d services", len(s.Services))
	}
}
