package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lbd/internal/lab"
)

// TestSecondLBDLeavesTheKernelAlone: a second `lbd run` in the same network
// namespace, with another socket and another config, must exit before it
// touches table lbd. The old bug: it cold-applied every backend as up
// (putting a dead one back into the slots) and only then noticed the
// socket was taken.
func TestSecondLBDLeavesTheKernelAlone(t *testing.T) {
	e := newEnv(t, 2, 1)
	e.writeConfig(svcHeader("echo", lab.VIPv4, 7000, "") + fastHealth("tcp", "") + backends(7000, 1, 2))
	e.startLBD()
	be2 := lab.BackendV4(2) + ":7000"
	e.waitSlots("echo", be2, some)
	e.lab.StopBackend(2)
	e.waitState("echo", be2, "down")
	e.waitSlots("echo", be2, none)
	before := e.nft("list", "table", "inet", "lbd")

	// Another config that would change the kernel if applied: a new
	// service and no health checks.
	other := filepath.Join(e.dir, "other.toml")
	if err := os.WriteFile(other, []byte(svcHeader("intruder", lab.VIPv4, 7001, "")+backends(7000, 1, 2)), 0o644); err != nil {
		t.Fatal(err)
	}
	bin, _ := binaries(t)
	cmd := e.lab.Command("lb", bin, "run", "--config", other, "--socket", filepath.Join(e.dir, "second.sock"))
	cmd.Env = append(os.Environ(), "LBD_STATE_DIR="+filepath.Join(e.dir, "state2"), "NOTIFY_SOCKET=")
	// Bound a second lbd that does not leave (the old bug): it would run
	// beside the first one forever.
	stay := time.AfterFunc(30*time.Second, func() {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	})
	out, err := cmd.CombinedOutput()
	if !stay.Stop() {
		t.Errorf("the second lbd was still running after 30 s; killed")
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !strings.Contains(string(out), "another lbd is running") {
		t.Fatalf("second lbd: err %v, output:\n%s\nwant a non-zero exit saying another lbd is running", err, out)
	}
	if after := e.nft("list", "table", "inet", "lbd"); after != before {
		t.Fatalf("the second lbd changed table lbd.\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "state2")); err == nil {
		t.Errorf("the second lbd wrote a state directory before it left")
	}
	// The first one still runs and still has be2 out.
	e.waitSlots("echo", be2, none)
	for i := 0; i < 10; i++ {
		if got, err := e.askOnce(0, vip4(7000)); err != nil || got != e.lab.Backend(1) {
			t.Fatalf("request %d answered by %q (%v), want be1 (be2 is dead)", i, got, err)
		}
	}
}
