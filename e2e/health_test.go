package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lbd/appliance/status"
	"lbd/internal/lab"
)

// waitSlots polls lbd status until backend addr of service svc holds a
// number of slots that ok accepts (the data plane has caught up).
func (e *env) waitSlots(svc, addr string, ok func(int) bool) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range e.status().Services {
			for _, b := range s.Backends {
				if s.Name == svc && b.Address == addr && ok(b.Slots) {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("backend %s of %s never reached the expected slot count", addr, svc)
}

func none(n int) bool { return n == 0 }
func some(n int) bool { return n > 0 }

// waitState polls lbd status until backend addr of service svc is in
// state want. The deadline only bounds a broken test; how long the change
// takes is measured by the benchmarks, not asserted here.
func (e *env) waitState(svc, addr, want string) status.Backend {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last status.Backend
	for time.Now().Before(deadline) {
		for _, s := range e.status().Services {
			if s.Name != svc {
				continue
			}
			for _, b := range s.Backends {
				if b.Address == addr {
					last = b
					// The health state changes first; the slot rewrite
					// follows a moment later. A down backend is only
					// really out once it holds no slot.
					if b.State == want && (want != "down" || b.Slots == 0) {
						return b
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("backend %s of %s never became %s; last %+v", addr, svc, want, last)
	return last
}

func fastHealth(kind, extra string) string {
	return fmt.Sprintf("  [service.health]\n  type = %q\n  interval = \"400ms\"\n  timeout = \"350ms\"\n  rise = 2\n  fall = 2\n%s\n", kind, extra)
}

func TestHealthTCPDownAndUp(t *testing.T) {
	e := newEnv(t, 3, 1)
	e.writeConfig(svcHeader("echo", lab.VIPv4, 7000, "") + fastHealth("tcp", "") + backends(7000, 1, 2, 3))
	e.startLBD()
	be2 := lab.BackendV4(2) + ":7000"
	e.waitState("echo", be2, "up")
	e.lab.StopBackend(2)
	b := e.waitState("echo", be2, "down")
	if !strings.Contains(b.LastCheck, "refused") || b.ChecksFailed < 2 || b.LastTransition.IsZero() {
		t.Errorf("down backend should report a refused check, failures and a transition time: %+v", b)
	}
	counts := e.spread(0, vip4(7000), 30)
	if counts["be2"] != 0 || counts["be1"]+counts["be3"] != 30 {
		t.Fatalf("after be2 went down new connections must avoid it: %v", counts)
	}
	if err := e.lab.StartBackend(e.labsrv, e.dir, 2); err != nil {
		t.Fatal(err)
	}
	e.waitState("echo", be2, "up")
	e.waitSlots("echo", be2, some)
	counts = e.spread(0, vip4(7000), 30)
	if counts["be2"] != 10 {
		t.Fatalf("after be2 came back it should get its share again: %v", counts)
	}
}

func TestHealthHTTPStatusAndBody(t *testing.T) {
	e := newEnv(t, 2, 1)
	e.writeConfig(svcHeader("web", lab.VIPv4, 80, "") + fastHealth("http", "  path = \"/healthz\"") + backends(80, 1, 2) +
		svcHeader("web-body", lab.VIPv4, 81, "") + fastHealth("http", "  path = \"/healthz\"\n  expect_body = \"be1\"") + backends(80, 1, 2))
	e.startLBD()
	// expect_body "be1": be2 answers 200 with "be2 200" and is down.
	e.waitState("web-body", lab.BackendV4(2)+":80", "down")
	e.waitState("web-body", lab.BackendV4(1)+":80", "up")
	// 503 on /healthz with the TCP port open.
	be1 := lab.BackendV4(1) + ":80"
	e.waitState("web", be1, "up")
	if err := os.WriteFile(filepath.Join(e.dir, "be1.health"), []byte("503"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := e.waitState("web", be1, "down")
	if b.LastCheck != "status 503" {
		t.Errorf("reason should be the status: %q", b.LastCheck)
	}
	c, err := e.lab.Dial("lb", "tcp", be1, 2*time.Second)
	if err != nil {
		t.Fatalf("the TCP port of the 503 backend should still be open: %v", err)
	}
	c.Close()
}

func TestHealthUDPAndExec(t *testing.T) {
	e := newEnv(t, 2, 1)
	script := filepath.Join(e.dir, "check.sh")
	flag := filepath.Join(e.dir, "down-")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ ! -e "+flag+"$LBD_BACKEND_ADDR ]\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.writeConfig(svcHeader("dns", lab.VIPv4, 5353, `protocol = "udp"`) + fastHealth("udp", "  payload = \"ping\"") + backends(5353, 1, 2) +
		svcHeader("scripted", lab.VIPv4, 7000, "") + fastHealth("exec", fmt.Sprintf("  command = [%q]", script)) + backends(7000, 1, 2))
	e.startLBD()
	e.waitState("dns", lab.BackendV4(1)+":5353", "up")
	e.lab.StopBackend(1)
	b := e.waitState("dns", lab.BackendV4(1)+":5353", "down")
	t.Logf("udp check of a stopped responder: %q", b.LastCheck)
	// exec: the script flips on a flag file.
	be2 := lab.BackendV4(2) + ":7000"
	e.waitState("scripted", be2, "up")
	if err := os.WriteFile(flag+lab.BackendV4(2), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b = e.waitState("scripted", be2, "down")
	if b.LastCheck != "exit status 1" {
		t.Errorf("exec reason: %q", b.LastCheck)
	}
	_ = os.Remove(flag + lab.BackendV4(2))
	e.waitState("scripted", be2, "up")
}

func TestBackupServers(t *testing.T) {
	e := newEnv(t, 3, 1)
	e.writeConfig(svcHeader("echo", lab.VIPv4, 7000, "") + fastHealth("tcp", "") + backends(7000, 1, 2, 3) + "  backup = true\n")
	e.startLBD()
	if c := e.spread(0, vip4(7000), 10); c["be3"] != 0 {
		t.Fatalf("backup must stay idle while primaries are up: %v", c)
	}
	e.lab.StopBackend(1)
	e.lab.StopBackend(2)
	e.waitState("echo", lab.BackendV4(1)+":7000", "down")
	e.waitState("echo", lab.BackendV4(2)+":7000", "down")
	e.waitSlots("echo", lab.BackendV4(3)+":7000", some)
	if c := e.spread(0, vip4(7000), 10); c["be3"] != 10 {
		t.Fatalf("with all primaries down the backup serves: %v", c)
	}
	if err := e.lab.StartBackend(e.labsrv, e.dir, 1); err != nil {
		t.Fatal(err)
	}
	e.waitState("echo", lab.BackendV4(1)+":7000", "up")
	e.waitSlots("echo", lab.BackendV4(3)+":7000", none)
	if c := e.spread(0, vip4(7000), 10); c["be1"] != 10 {
		t.Fatalf("when a primary returns the backup empties: %v", c)
	}
	// Everything down: a reset, not a hang.
	e.lab.StopBackend(1)
	e.lab.StopBackend(3)
	e.waitState("echo", lab.BackendV4(1)+":7000", "down")
	e.waitState("echo", lab.BackendV4(3)+":7000", "down")
	_, err := e.lab.Dial("client", "tcp", vip4(7000), 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("no backend up: want connection refused (reset), got %v", err)
	}
	st := e.status()
	if st.Services[0].Refused.NoBackend == 0 {
		t.Errorf("no_backend refusals should be counted: %+v", st.Services[0].Refused)
	}
}

func TestDrainKeepsEstablished(t *testing.T) {
	e := newEnv(t, 2, 1)
	cfg := func(w int) string {
		return svcHeader("echo", lab.VIPv4, 7000, "") + backends(7000, 1) + backends(7000, 2) + fmt.Sprintf("  weight = %d\n", w)
	}
	e.writeConfig(cfg(1))
	e.startLBD()
	var conn net.Conn
	for i := 0; i < 4 && conn == nil; i++ {
		c, err := e.lab.Dial("client", "tcp", vip4(7000), 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if ans, _ := lab.AskOn(c, "x"); lab.Name(ans) == "be2" {
			conn = c
		} else {
			c.Close()
		}
	}
	if conn == nil {
		t.Fatal("no connection landed on be2")
	}
	defer conn.Close()
	e.writeConfig(cfg(0))
	e.reload()
	if st := e.status(); st.Services[0].Backends[1].State != "drain" || st.Services[0].Backends[1].ActiveConnections != 1 {
		t.Errorf("drained backend should show state drain with its 1 live connection: %+v", st.Services[0].Backends[1])
	}
	if c := e.spread(0, vip4(7000), 6); c["be2"] != 0 {
		t.Fatalf("drained backend got new connections: %v", c)
	}
	if ans, err := lab.AskOn(conn, "still"); err != nil || lab.Name(ans) != "be2" {
		t.Fatalf("established connection to the drained backend broke: %q %v", ans, err)
	}
}

func TestUDPFlushMovesFlow(t *testing.T) {
	e := newEnv(t, 2, 1)
	e.writeConfig(svcHeader("dns", lab.VIPv4, 5353, `protocol = "udp"`) + fastHealth("udp", "  payload = \"ping\"") + backends(5353, 1, 2))
	e.startLBD()
	e.waitState("dns", lab.BackendV4(1)+":5353", "up")
	c, err := e.lab.Dial("client", "udp", vip4(5353), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ask := func() string {
		_ = c.SetDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Write([]byte("q")); err != nil {
			return ""
		}
		buf := make([]byte, 256)
		n, err := c.Read(buf)
		if err != nil {
			return ""
		}
		return lab.Name(string(buf[:n]))
	}
	first := ask()
	if first == "" {
		t.Fatal("no UDP answer")
	}
	for i := 0; i < 3; i++ {
		if got := ask(); got != first {
			t.Fatalf("one UDP flow should stay on one backend: %s then %s", first, got)
		}
	}
	var idx int
	fmt.Sscanf(first, "be%d", &idx)
	e.lab.StopBackend(idx)
	e.waitState("dns", lab.BackendV4(idx)+":5353", "down")
	// The flow's conntrack entry was flushed: the next datagram on the
	// same socket is scheduled afresh onto the live backend.
	got := ""
	for i := 0; i < 10 && got == ""; i++ {
		got = ask()
	}
	if got == "" || got == first {
		t.Fatalf("after %s died the same UDP flow should move to the other backend, got %q", first, got)
	}
}
