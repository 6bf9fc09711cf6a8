package e2e

import (
	"bufio"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"lbd/internal/lab"
)

// TestHarnessStopSendsSIGTERM checks the harness itself: its "SIGTERM"
// stop used to send SIGINT, which lbd happens to treat alike, so the
// tests never exercised what systemd sends. The helper process tells the
// two apart by its exit status.
func TestHarnessStopSendsSIGTERM(t *testing.T) {
	cmd := exec.Command("sh", "-c", `trap 'exit 0' TERM; trap 'exit 3' INT; echo ready; while :; do sleep 0.1; done`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	// The traps are set once the line is printed.
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	err = terminate(cmd, time.Minute)
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 3 {
		t.Fatal("the harness's stop sent SIGINT, not SIGTERM")
	}
	if err != nil {
		t.Fatalf("terminate: %v", err)
	}
}

// TestSIGTERMLeavesDataPlane: SIGTERM ends lbd with status 0 and leaves
// table lbd in the kernel, so established and new connections keep being
// served while no lbd runs.
func TestSIGTERMLeavesDataPlane(t *testing.T) {
	e := newEnv(t, 2, 1)
	e.writeConfig(svcHeader("echo", lab.VIPv4, 7000, "") + backends(7000, 1, 2))
	e.startLBD()
	conn, err := e.lab.Dial("client", "tcp", vip4(7000), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	before, err := lab.AskOn(conn, "before")
	if err != nil {
		t.Fatal(err)
	}
	cmd := e.lbd
	e.lbd = nil
	if err := terminate(cmd, time.Minute); err != nil {
		t.Fatalf("lbd should exit 0 on SIGTERM: %v", err)
	}
	if st := cmd.ProcessState; st == nil || !st.Exited() || st.ExitCode() != 0 {
		t.Fatalf("lbd exit after SIGTERM: %v", st)
	}
	if out := e.nft("list", "table", "inet", "lbd"); !strings.Contains(out, "svc_echo") {
		t.Fatalf("table lbd should stay after SIGTERM with the service chain:\n%s", out)
	}
	after, err := lab.AskOn(conn, "after")
	if err != nil || lab.Name(after) != lab.Name(before) {
		t.Fatalf("established connection after SIGTERM: %q %v (was on %s)", after, err, lab.Name(before))
	}
	// New connections: still scheduled by the kernel, round robin intact.
	counts := e.spread(0, vip4(7000), 4)
	if counts["be1"] != 2 || counts["be2"] != 2 {
		t.Fatalf("new connections after SIGTERM should still be spread 2/2: %v", counts)
	}
}

// TestSIGHUPReloads: SIGHUP re-reads the file like `lbd reload`; a broken
// file is refused and the running config stays.
func TestSIGHUPReloads(t *testing.T) {
	e := newEnv(t, 2, 1)
	e.writeConfig(svcHeader("echo", lab.VIPv4, 7000, "") + backends(7000, 1))
	e.startLBD()
	if c := e.spread(0, vip4(7000), 2); c["be1"] != 2 {
		t.Fatalf("before reload: %v", c)
	}
	good := svcHeader("echo", lab.VIPv4, 7000, "") + backends(7000, 1, 2) +
		svcHeader("echo2", lab.VIPv4, 7001, "") + backends(7000, 2)
	e.writeConfig(good)
	if err := e.lbd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "SIGHUP reload applied", func() bool {
		st := e.status()
		return st.Reloads.OK == 1 && len(st.Services) == 2
	})
	if c := e.spread(0, vip4(7000), 4); c["be1"] != 2 || c["be2"] != 2 {
		t.Fatalf("after SIGHUP the added backend should get its share: %v", c)
	}
	if c := e.spread(0, vip4(7001), 2); c["be2"] != 2 {
		t.Fatalf("after SIGHUP the added service should serve: %v", c)
	}

	e.writeConfig(good + "\n[[service]]\nname = \"bad\"\nvip = \"not-an-ip\"\nport = 7002\n")
	if err := e.lbd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "SIGHUP reload refused", func() bool { return e.status().Reloads.Failed == 1 })
	st := e.status()
	if !strings.Contains(st.Config.LastError, "lb.toml:") || len(st.Services) != 2 {
		t.Fatalf("a refused SIGHUP reload should show the error and keep the 2 services: %q %d", st.Config.LastError, len(st.Services))
	}
	if c := e.spread(0, vip4(7000), 4); c["be1"] != 2 || c["be2"] != 2 {
		t.Fatalf("after a refused SIGHUP the running config should serve: %v", c)
	}
	if e.lbd.ProcessState != nil {
		t.Fatal("lbd exited on SIGHUP")
	}
}
