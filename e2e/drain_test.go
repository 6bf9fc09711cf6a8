package e2e

import (
	"net"
	"strings"
	"testing"
	"time"

	"lbd/internal/lab"
)

// TestRuntimeDrain: `lbd drain` stops new flows to a backend at once,
// waits for its flows, flushes them at the timeout; `lbd undrain` lifts it.
func TestRuntimeDrain(t *testing.T) {
	e := newEnv(t, 2, 1)
	e.writeConfig(svcHeader("web", lab.VIPv4, 7000, "") + backends(7000, 1, 2))
	e.startLBD()
	hold := func(n int) (on2 []net.Conn) {
		for i := 0; i < n; i++ {
			c, err := e.lab.DialFrom(e.lab.Client(0), lab.ClientAddr(0), vip4(7000), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			ans, err := lab.AskOn(c, "hold")
			if err != nil {
				t.Fatal(err)
			}
			if lab.Name(ans) == "be2" {
				on2 = append(on2, c)
			} else {
				c.Close()
			}
		}
		return on2
	}
	held := hold(4) // rr: exactly two land on be2
	if len(held) != 2 {
		t.Fatalf("%d of 4 connections on be2, want 2", len(held))
	}
	be2 := lab.BackendV4(2) + ":7000"

	// With a timeout: the two flows are flushed at the deadline.
	out, err := e.lbdCmd("drain", "web", lab.BackendV4(2), "--timeout", "3s")
	t.Logf("lbd drain:\n%s", out)
	if err != nil {
		t.Fatalf("lbd drain: %v", err)
	}
	if !strings.Contains(out, "2 flows left") || !strings.Contains(out, "flushed 2 flows; drained") {
		t.Fatalf("drain output does not show the flows left and the flush:\n%s", out)
	}
	if got := e.spread(0, vip4(7000), 10); got["be1"] != 10 {
		t.Fatalf("new connections during the drain: %v, want all on be1", got)
	}
	for i, c := range held {
		if _, err := lab.AskOn(c, "after flush"); err == nil {
			t.Errorf("held connection %d to be2 still answers after the flush", i)
		}
		c.Close()
	}
	st := e.status()
	if b := st.Services[0].Backends[1]; b.State != "drain" || b.Drain == nil || b.Drain.Flushed != 2 {
		t.Fatalf("status of be2: %+v", b)
	}
	// It survives a reload that keeps the backend.
	e.reload()
	if got := e.spread(0, vip4(7000), 6); got["be1"] != 6 {
		t.Fatalf("after reload: %v, want the drain kept", got)
	}

	// Undrain, then drain without timeout: done once the flows end.
	if out, err := e.lbdCmd("undrain", "web", be2); err != nil {
		t.Fatalf("undrain: %v %s", err, out)
	}
	if got := e.spread(0, vip4(7000), 10); got["be2"] != 5 {
		t.Fatalf("after undrain: %v, want 5/5", got)
	}
	held = hold(4)
	if out, err := e.lbdCmd("drain", "web", be2, "--no-wait"); err != nil || !strings.Contains(out, "draining") {
		t.Fatalf("drain --no-wait: %v %s", err, out)
	}
	for _, c := range held {
		c.Close()
	}
	waitUntil(t, "the drain to finish at zero flows", func() bool {
		b := e.status().Services[0].Backends[1]
		return b.Drain != nil && !b.Drain.Done.IsZero() && b.Drain.Flushed == 0
	})
	if out, err := e.lbdCmd("drain", "web", "192.0.2.77"); err == nil || !strings.Contains(out, "has no backend") {
		t.Fatalf("draining an unknown backend: %v %s", err, out)
	}
}
