package lb

import (
	"fmt"
	"math"
	"net/netip"
	"testing"
)

func weighted(ws ...int) []Weighted {
	out := make([]Weighted, len(ws))
	for i, w := range ws {
		out[i] = Weighted{Key: fmt.Sprintf("192.0.2.%d:80", 10+i), Weight: w}
	}
	return out
}

func shares(idx []int, n int) []int {
	c := make([]int, n)
	for _, i := range idx {
		c[i]++
	}
	return c
}

func TestModulusExactForRoundRobin(t *testing.T) {
	for _, ws := range [][]int{{1, 1, 1}, {3, 1}, {1, 2, 3, 4}, {5}, {7, 7, 7, 7, 7, 7, 7, 7}} {
		bs := weighted(ws...)
		m := Modulus("rr", bs, len(bs))
		c := shares(FillRoundRobin(bs, m), len(bs))
		sum := 0
		for _, w := range ws {
			sum += w
		}
		for i, w := range ws {
			if c[i]*sum != w*m {
				t.Errorf("weights %v: M=%d gives %v, not exactly proportional", ws, m, c)
			}
		}
		if m < 32 {
			t.Errorf("weights %v: M=%d below the 32-slot floor", ws, m)
		}
	}
}

func TestRoundRobinInterleaves(t *testing.T) {
	idx := FillRoundRobin(weighted(1, 1, 1), 33)
	for i := 1; i < len(idx); i++ {
		if idx[i] == idx[i-1] {
			t.Fatalf("equal weights should never repeat a backend in consecutive slots: %v", idx)
		}
	}
}

func TestMaglevWeightsAndBalance(t *testing.T) {
	bs := weighted(3, 1, 2)
	m := Modulus("sh", bs, 3)
	c := shares(FillMaglev(bs, m), 3)
	for i, w := range []float64{3, 1, 2} {
		want := float64(m) * w / 6
		if math.Abs(float64(c[i])-want) > 0.05*want+1 {
			t.Errorf("slot share %v of M=%d not proportional to 3:1:2", c, m)
		}
	}
}

func TestMaglevIndependentOfOrder(t *testing.T) {
	a := weighted(1, 1, 1, 1)
	b := []Weighted{a[2], a[0], a[3], a[1]}
	m := 257
	ia, ib := FillMaglev(a, m), FillMaglev(b, m)
	for s := range ia {
		if a[ia[s]].Key != b[ib[s]].Key {
			t.Fatalf("slot %d differs with config order: %s vs %s", s, a[ia[s]].Key, b[ib[s]].Key)
		}
	}
}

// Disruption bound: removing one of N backends from the config moves few
// slots of the others (Maglev), and a health failure moves none of them.
func TestMaglevDisruption(t *testing.T) {
	for _, n := range []int{3, 5, 8} {
		full := weighted(make([]int, n)...)
		for i := range full {
			full[i].Weight = 1
		}
		m := Modulus("sh", full, n)
		before := FillMaglev(full, m)
		rest := full[:n-1]
		after := FillMaglev(rest, m)
		moved := 0
		for s := range before {
			if before[s] != n-1 && full[before[s]].Key != rest[after[s]].Key {
				moved++
			}
		}
		if frac := float64(moved) / float64(m); frac > 0.10 {
			t.Errorf("n=%d: removing one backend moved %.1f%% of the other backends' slots", n, frac*100)
		}
		// Health: the same backend down through the planner moves nothing else.
		live := append([]Weighted(nil), full...)
		live[n-1].Weight = 0
		for i := range live[:n-1] {
			live[i].Weight *= rampScale
		}
		h := fillConsistent(full, live, m)
		for s := range before {
			if before[s] != n-1 && h[s] != before[s] {
				t.Fatalf("n=%d: a health failure moved slot %d of a healthy backend", n, s)
			}
			if h[s] == n-1 {
				t.Fatalf("n=%d: the failed backend still owns slot %d", n, s)
			}
		}
	}
}

func svcWith(sched string, backends ...BackendSpec) *ServiceSpec {
	return &ServiceSpec{Name: "s", VIP: netip.MustParseAddr("203.0.113.10"), Port: 80, Proto: protoTCP,
		Scheduler: sched, OnEmpty: "reject", Backends: backends}
}

func be(i int, backup bool) BackendSpec {
	return BackendSpec{Addr: netip.MustParseAddrPort(fmt.Sprintf("192.0.2.%d:80", 10+i)), Weight: 1, Backup: backup}
}

func TestPlanBackupAndEmpty(t *testing.T) {
	s := svcWith("rr", be(1, false), be(2, false), be(3, true))
	down := map[int]bool{}
	avail := func(_ string, a netip.AddrPort) Availability {
		for i := range down {
			if a == be(i, false).Addr && down[i] {
				return Availability{Up: false}
			}
		}
		return Availability{Up: true}
	}
	p := PlanService(s, avail)
	if c := p.SlotCounts(); c[be(3, true).Addr] != 0 || c[be(1, false).Addr] != c[be(2, false).Addr] {
		t.Fatalf("backup must hold no slot while primaries are up: %v", c)
	}
	down[1], down[2] = true, true
	p = PlanService(s, avail)
	if c := p.SlotCounts(); c[be(3, true).Addr] != p.Modulus {
		t.Fatalf("backup should hold every slot with all primaries down: %v", c)
	}
	down[3] = true
	p = PlanService(s, avail)
	if p.Slots != nil {
		t.Fatalf("no usable backend: slots should be empty, got %d", len(p.Slots))
	}
}

func TestPlanSlowStartRamps(t *testing.T) {
	s := svcWith("rr", be(1, false), be(2, false))
	ramp := 0.25
	avail := func(_ string, a netip.AddrPort) Availability {
		if a == be(2, false).Addr {
			return Availability{Up: true, Ramp: ramp}
		}
		return Availability{Up: true}
	}
	prev := 0
	for _, r := range []float64{0.1, 0.25, 0.5, 0.75, 1} {
		ramp = r
		p := PlanService(s, avail)
		n := p.SlotCounts()[be(2, false).Addr]
		want := float64(p.Modulus) * r / (1 + r)
		if math.Abs(float64(n)-want) > 1.5 || n < prev {
			t.Fatalf("ramp %.2f: slow-starting backend has %d slots, want about %.1f and growing", r, n, want)
		}
		prev = n
	}
}

// TestHashSeedKnownValues pins the jhash seed of sh/mh services. The seed
// decides which backend every client hashes to, so it must be the same in
// every lbd version and on every appliance of a pair: a changed seed would
// move every client of every hashing service at upgrade or failover. The
// values were computed outside Go (FNV-1a 64 by hand in Python over the
// 8 little-endian bytes of 0x73656564 followed by the endpoint, low 32
// bits), so this is not the function compared with itself.
func TestHashSeedKnownValues(t *testing.T) {
	for _, c := range []struct {
		vip   string
		proto uint8
		port  uint16
		want  uint32
	}{
		{"203.0.113.10", protoTCP, 80, 0xf2cb1cae},
		{"203.0.113.10", protoUDP, 80, 0x4ed524f6},
		{"203.0.113.10", protoTCP, 81, 0xf2cb1e61},
		{"203.0.113.11", protoTCP, 80, 0x77bdc947},
		{"2001:db8:3::10", protoUDP, 53, 0xc9f350e2},
	} {
		// Through PlanService, so the endpoint's spelling is pinned too.
		spec := ServiceSpec{Name: "s", VIP: netip.MustParseAddr(c.vip), Proto: c.proto, Port: c.port, Scheduler: "sh",
			Backends: []BackendSpec{{Addr: netip.MustParseAddrPort("192.0.2.11:80"), Weight: 1}}}
		svc := PlanService(&spec, nil)
		if svc.Seed != c.want {
			t.Errorf("%s: seed %#08x, want %#08x", svc.Endpoint(), svc.Seed, c.want)
		}
	}
}
