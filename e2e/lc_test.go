package e2e

import (
	"net"
	"testing"
	"time"

	"lbd/internal/lab"
)

// TestWLCAvoidsTheBusyBackend: be1 holds 30 long connections; once be2
// and be3 join, new connections go to them and (almost) not to be1.
func TestWLCAvoidsTheBusyBackend(t *testing.T) {
	e := newEnv(t, 3, 1)
	svc := func(ids ...int) string {
		return svcHeader("web", lab.VIPv4, 7000, `scheduler = "wlc"`) + backends(7000, ids...)
	}
	e.writeConfig(svc(1))
	e.startLBD()
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < 30; i++ {
		c, err := e.lab.DialFrom(e.lab.Client(0), lab.ClientAddr(0), vip4(7000), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if ans, err := lab.AskOn(c, "hold"); err != nil || lab.Name(ans) != "be1" {
			t.Fatalf("long connection %d: %q %v", i, ans, err)
		}
		held = append(held, c)
	}
	e.writeConfig(svc(1, 2, 3))
	e.reload()
	// The conntrack tick runs once a second: wait until be1's share fell.
	waitUntil(t, "be1's slots to shrink", func() bool {
		s := e.status().Services[0]
		return s.Backends[0].ActiveConnections == 30 && s.Backends[0].Slots*20 < s.Backends[1].Slots
	})
	counts := e.spread(0, vip4(7000), 30)
	if counts["be1"] > 1 || counts["be2"]+counts["be3"] < 29 {
		t.Fatalf("new connections %v; want (almost) none on be1, which holds 30", counts)
	}
	for i, c := range held {
		if ans, err := lab.AskOn(c, "still"); err != nil || lab.Name(ans) != "be1" {
			t.Fatalf("long connection %d after the reload: %q %v", i, ans, err)
		}
	}
	// Equal load again (the long ones end): back to an even spread.
	for _, c := range held {
		c.Close()
	}
	held = nil
	waitUntil(t, "equal slots", func() bool {
		s := e.status().Services[0]
		return s.Backends[0].Slots == s.Backends[1].Slots && s.Backends[1].Slots == s.Backends[2].Slots
	})
	counts = e.spread(0, vip4(7000), 66)
	if counts["be1"] != 22 || counts["be2"] != 22 || counts["be3"] != 22 {
		t.Fatalf("equal load: %v, want exactly 22 each over 66 slots", counts)
	}
}
