package e2e

import (
	"net"
	"strings"
	"testing"
	"time"

	"lbd/internal/lab"
)

// TestConnsAndFlush: `lbd conns` lists what conntrack holds for a service
// (like ipvsadm -Lnc) and `lbd flush` deletes it, by backend or all.
func TestConnsAndFlush(t *testing.T) {
	e := newEnv(t, 2, 1)
	e.writeConfig(svcHeader("web", lab.VIPv4, 7000, "") + backends(7000, 1, 2) +
		svcHeader("other", lab.VIPv4, 7001, "") + backends(7000, 1))
	e.startLBD()
	byBackend := map[string][]net.Conn{}
	for i := 0; i < 4; i++ {
		c, err := e.lab.DialFrom(e.lab.Client(0), lab.ClientAddr(0), vip4(7000), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ans, err := lab.AskOn(c, "hold")
		if err != nil {
			t.Fatal(err)
		}
		byBackend[lab.Name(ans)] = append(byBackend[lab.Name(ans)], c)
	}
	be2 := lab.BackendV4(2) + ":7000"
	out, err := e.lbdCmd("conns", "web")
	if err != nil {
		t.Fatalf("conns: %v\n%s", err, out)
	}
	t.Logf("lbd conns web:\n%s", out)
	if !strings.Contains(out, "4 connections") || strings.Count(out, "ESTABLISHED") != 4 || strings.Count(out, lab.ClientAddr(0)+":") != 4 {
		t.Fatalf("conns web should list the 4 established connections from the client:\n%s", out)
	}
	if out, _ := e.lbdCmd("conns", "web", "--backend", be2); !strings.Contains(out, "2 connections") {
		t.Fatalf("conns --backend be2:\n%s", out)
	}
	if out, _ := e.lbdCmd("conns", "other"); !strings.Contains(out, "0 connections") {
		t.Fatalf("conns other:\n%s", out)
	}
	// --rate samples, waits its window and prints per-second rates.
	if out, err := e.lbdCmd("status", "--rate", "--window", "1s"); err != nil || !strings.Contains(out, "rates per second over the last 1.") {
		t.Fatalf("status --rate --window 1s: %v\n%s", err, out)
	}
	out, err = e.lbdCmd("flush", "web", "--backend", be2, "--yes")
	if err != nil || !strings.Contains(out, "flushed 2 connections") {
		t.Fatalf("flush be2: %v\n%s", err, out)
	}
	// The entries are gone at once (no packet has come since to re-create
	// them: conntrack picks up a mid-stream TCP packet as a new flow).
	if out, _ := e.lbdCmd("conns", "web", "--backend", be2); !strings.Contains(out, "0 connections") {
		t.Fatalf("after the flush, conns --backend be2:\n%s", out)
	}
	for _, c := range byBackend["be1"] {
		if ans, err := lab.AskOn(c, "after"); err != nil || lab.Name(ans) != "be1" {
			t.Errorf("a connection to be1 was hit by be2's flush: %q %v", ans, err)
		}
	}
	out, err = e.lbdCmd("flush", "--all", "--yes")
	if err != nil || !strings.Contains(out, "flushed 2 connections") {
		t.Fatalf("flush --all: %v\n%s", err, out)
	}
	if out, err := e.lbdCmd("flush", "nosuch", "--yes"); err == nil || !strings.Contains(out, `no service "nosuch"`) {
		t.Fatalf("flush of an unknown service: %v\n%s", err, out)
	}
}
