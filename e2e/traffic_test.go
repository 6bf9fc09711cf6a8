package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"lbd/appliance/status"
	"lbd/internal/lab"
)

// TestTrafficCounters: per-backend totals (connections, packets and bytes
// each way) through the real kernel. Connections are exact; bytes are
// whole IP packets, so they are at least the payload that crossed. The
// totals hold across `lbd reload`, and flows that end (here: flushed, so
// the kernel sends their DESTROY events at once) stay counted while new
// ones add to them.
func TestTrafficCounters(t *testing.T) {
	e := newEnv(t, 2, 1)
	e.writeConfig(svcHeader("web", lab.VIPv4, 7000, "") + backends(7000, 1, 2))
	e.startLBD()

	const lines, lineLen = 10, 1000
	line := strings.Repeat("x", lineLen-1) // + "\n" = lineLen bytes
	conns := map[string]uint64{}
	// talk makes n connections, each sending lines of lineLen bytes and
	// reading every answer, then closes them.
	talk := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			c, err := e.lab.DialFrom(e.lab.Client(0), lab.ClientAddr(0), vip4(7000), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var name string
			for j := 0; j < lines; j++ {
				ans, err := lab.AskOn(c, line)
				if err != nil {
					c.Close()
					t.Fatalf("connection %d line %d: %v", i, j, err)
				}
				name = lab.Name(ans)
			}
			c.Close()
			conns[name]++
		}
	}
	check := func(when string) {
		t.Helper()
		var svc status.Service
		for _, s := range e.status().Services {
			if s.Name == "web" {
				svc = s
			}
		}
		var sum status.Traffic
		for i, b := range svc.Backends {
			tr := b.Traffic
			t.Logf("%s: %s %+v", when, b.Address, tr)
			want := conns[fmt.Sprintf("be%d", i+1)]
			if tr.Connections != want {
				t.Errorf("%s: %s connections %d, want %d", when, b.Address, tr.Connections, want)
			}
			// Each way: lines of lineLen bytes (answers are longer).
			if min := want * lines * lineLen; tr.BytesIn < min || tr.BytesOut < min {
				t.Errorf("%s: %s bytes in %d out %d, want at least %d each", when, b.Address, tr.BytesIn, tr.BytesOut, min)
			}
			if min := want * lines; tr.PacketsIn < min || tr.PacketsOut < min {
				t.Errorf("%s: %s packets in %d out %d, want at least %d each", when, b.Address, tr.PacketsIn, tr.PacketsOut, min)
			}
			sum = sum.Add(tr)
		}
		if svc.Traffic != sum {
			t.Errorf("%s: service traffic %+v, want the backends' sum %+v", when, svc.Traffic, sum)
		}
	}

	talk(4)
	if conns["be1"] == 0 || conns["be2"] == 0 {
		t.Fatalf("rr should use both backends: %v", conns)
	}
	check("live (TIME_WAIT) flows")
	before := e.status().Services[0].Traffic

	e.reload()
	check("after reload")

	// Flushing ends the flows now: their totals must come from the
	// DESTROY events, and new flows add to them (a broken event path
	// would show max(old, new), not old + new).
	if out, err := e.lbdCmd("flush", "web", "--yes"); err != nil {
		t.Fatalf("flush: %v\n%s", err, out)
	}
	if after := e.status().Services[0].Traffic; after.Connections != before.Connections || after.BytesIn < before.BytesIn {
		t.Errorf("after the flush %+v, before %+v", after, before)
	}
	talk(4)
	check("ended + new flows")

	out, err := e.lbdCmd("status", "--stats")
	if err != nil {
		t.Fatalf("status --stats: %v\n%s", err, out)
	}
	t.Logf("lbd status --stats:\n%s", out)
}
