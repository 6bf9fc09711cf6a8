package daemon

import (
	"net/netip"
	"testing"
	"time"

	"lbd/lb"
)

func TestLCSharesFollowActiveFlowsPerWeight(t *testing.T) {
	k := func(i int) backendKey {
		return backendKey{"s", netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(i))}
	}
	// Equal load per weight: every backend keeps its whole weight.
	got := lcShares([]lcBackend{{k(1), 1, 10}, {k(2), 2, 20}, {k(3), 1, 10}})
	for i := 1; i <= 3; i++ {
		if got[k(i)] != 1 {
			t.Errorf("equal load per weight: share of %d = %v, want 1", i, got[k(i)])
		}
	}
	// One busy backend: L = 31, shares 1/31 -> 2/64 for it, 1 for the idle.
	got = lcShares([]lcBackend{{k(1), 1, 30}, {k(2), 1, 0}, {k(3), 0, 0}})
	if got[k(1)] != 2.0/64 || got[k(2)] != 1 {
		t.Errorf("busy vs idle: %v", got)
	}
	if _, ok := got[k(3)]; ok {
		t.Errorf("a weight-0 (draining) backend gets no share: %v", got)
	}
}

// Through the daemon: the conntrack tick turns counts into slots.
func TestWLCMovesNewFlowsAwayFromTheBusyBackend(t *testing.T) {
	td := startDaemon(t, svcTOML("a", "198.51.100.10", `scheduler = "wlc"`, be1, be2, be3), "")
	got, _ := td.dp.state()
	if s := slotsOf(got["a"]); s[be1] != s[be2] || s[be2] != s[be3] {
		t.Fatalf("no load yet: slots %v, want equal", s)
	}
	svc := got["a"]
	ep := svc.Endpoint()
	td.ct.mu.Lock()
	td.ct.active = map[lb.FlowKey]int{{Endpoint: ep, Backend: be1}: 100}
	td.ct.mu.Unlock()
	td.d.conntrackTick()
	waitFor(t, "shares applied", func() bool {
		got, _ := td.dp.state()
		s := slotsOf(got["a"])
		// 66 slots: be1 gets 1, the idle two split the rest 33/32.
		return s[be1]*20 < s[be2] && s[be2]+s[be3] == 66-s[be1] && s[be2]-s[be3] <= 1 && s[be3]-s[be2] <= 1
	})
	// Load evens out: back to equal slots.
	td.ct.mu.Lock()
	td.ct.active = map[lb.FlowKey]int{{Endpoint: ep, Backend: be1}: 40, {Endpoint: ep, Backend: be2}: 40, {Endpoint: ep, Backend: be3}: 40}
	td.ct.mu.Unlock()
	td.d.conntrackTick()
	waitFor(t, "equal again", func() bool {
		got, _ := td.dp.state()
		s := slotsOf(got["a"])
		return s[be1] == s[be2] && s[be2] == s[be3]
	})
}

// A slow conntrack dump (a huge table) is repeated less often: lbd keeps
// its share of a CPU bounded instead of dumping every second.
func TestSlowConntrackDumpIsRepeatedLessOften(t *testing.T) {
	td := startDaemon(t, svcTOML("a", "198.51.100.10", `scheduler = "wlc"`, be1, be2), "")
	td.ct.mu.Lock()
	td.ct.dumpTime, td.ct.dumps = 60*time.Millisecond, 0 // 20 x 60 ms = 1.2 s
	td.ct.mu.Unlock()
	// Run's own one-second tick may run too; whoever dumped first, the
	// next call inside 20 x 60 ms must not dump again.
	td.d.conntrackTick()
	td.ct.mu.Lock()
	n := td.ct.dumps
	td.ct.mu.Unlock()
	td.d.conntrackTick()
	td.ct.mu.Lock()
	defer td.ct.mu.Unlock()
	if n < 1 || td.ct.dumps != n {
		t.Fatalf("dumps %d then %d; want the second call within 1.2 s of a 60 ms dump skipped", n, td.ct.dumps)
	}
}
