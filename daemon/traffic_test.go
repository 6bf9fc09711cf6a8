package daemon

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"lbd/appliance/status"
	"lbd/lb"
)

// fakeTraffic is a TrafficSource driven by the test: end() plays a DESTROY
// event, live is what the next dump returns, and duringDump runs inside
// Live (a flow ending while the dump runs).
type fakeTraffic struct {
	mu         sync.Mutex
	ended      func(lb.FlowTraffic)
	live       []lb.FlowTraffic
	duringDump func()
	lost       uint64
}

func (f *fakeTraffic) Start(_ context.Context, ended func(lb.FlowTraffic)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ended = ended
	return nil
}

func (f *fakeTraffic) Live([]lb.Service) ([]lb.FlowTraffic, error) {
	f.mu.Lock()
	live, during := append([]lb.FlowTraffic(nil), f.live...), f.duringDump
	f.mu.Unlock()
	if during != nil {
		during()
	}
	return live, nil
}

func (f *fakeTraffic) Lost() uint64 { f.mu.Lock(); defer f.mu.Unlock(); return f.lost }
func (f *fakeTraffic) Drain()       {}

func (f *fakeTraffic) end(ft lb.FlowTraffic) {
	f.mu.Lock()
	cb := f.ended
	f.mu.Unlock()
	cb(ft)
}

func (f *fakeTraffic) set(live []lb.FlowTraffic, during func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.live, f.duringDump = live, during
}

func flow(ep string, be netip.AddrPort, clientPort uint16, pin, bin, pout, bout uint64) lb.FlowTraffic {
	return lb.FlowTraffic{Key: lb.FlowKey{Endpoint: ep, Backend: be},
		Tuple:     lb.FlowTuple{Proto: 6, Client: netip.AddrPortFrom(netip.MustParseAddr("203.0.113.9"), clientPort), VIP: netip.MustParseAddrPort("198.51.100.1:80")},
		PacketsIn: pin, BytesIn: bin, PacketsOut: pout, BytesOut: bout}
}

func backendTraffic(t *testing.T, snap status.Snapshot, svc string, be netip.AddrPort) (status.Traffic, status.Traffic) {
	t.Helper()
	for _, s := range snap.Services {
		if s.Name != svc {
			continue
		}
		for _, b := range s.Backends {
			if b.Address == be.String() {
				return b.Traffic, s.Traffic
			}
		}
	}
	t.Fatalf("no backend %s in %s", be, svc)
	return status.Traffic{}, status.Traffic{}
}

// TestTrafficTotals: ended flows plus live ones per backend, summed per
// service; a flow ending while the dump runs counts once; a flow whose
// end event is late does not make the totals go back; the totals survive
// a reload that keeps the service and go with a service that goes.
func TestTrafficTotals(t *testing.T) {
	ft := &fakeTraffic{}
	f := &fakes{dp: newFakeDataplane(), ct: &fakeConntrack{}, mon: &fakeMonitor{}}
	dir := t.TempDir()
	td := &testDaemon{fakes: f, cfg: filepath.Join(dir, "lb.toml"), done: make(chan error, 1)}
	td.write(t, svcTOML("web", "198.51.100.1", "", be1, be2))
	opts := f.options(td.cfg, filepath.Join(dir, "s.sock"), t.TempDir())
	opts.Traffic = ft
	td.d = New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	td.cancel = cancel
	go func() { td.done <- td.d.Run(ctx) }()
	t.Cleanup(td.stop)
	waitFor(t, "config applied", func() bool { return td.d.configOrNil() != nil })
	waitFor(t, "traffic started", func() bool { ft.mu.Lock(); defer ft.mu.Unlock(); return ft.ended != nil })

	const ep = "198.51.100.1/tcp/80"
	ft.end(flow(ep, be1, 1000, 10, 1000, 8, 5000))
	ft.end(flow(ep, be1, 1001, 1, 60, 1, 40))
	ft.end(flow("192.0.2.99/tcp/80", be1, 1002, 1, 60, 1, 40)) // not a service: ignored
	live := flow(ep, be2, 2000, 3, 300, 2, 200)
	ft.set([]lb.FlowTraffic{live}, nil)

	b1, svc := backendTraffic(t, td.d.Snapshot(), "web", be1)
	if want := (status.Traffic{Connections: 2, PacketsIn: 11, BytesIn: 1060, PacketsOut: 9, BytesOut: 5040}); b1 != want {
		t.Errorf("be1 %+v, want %+v", b1, want)
	}
	b2, _ := backendTraffic(t, td.d.Snapshot(), "web", be2)
	if want := (status.Traffic{Connections: 1, PacketsIn: 3, BytesIn: 300, PacketsOut: 2, BytesOut: 200}); b2 != want {
		t.Errorf("be2 %+v, want %+v", b2, want)
	}
	if want := (status.Traffic{Connections: 3, PacketsIn: 14, BytesIn: 1360, PacketsOut: 11, BytesOut: 5240}); svc != want {
		t.Errorf("service %+v, want %+v", svc, want)
	}

	// The live flow ends while a dump that still sees it runs: once.
	grown := flow(ep, be2, 2000, 4, 400, 3, 300)
	ft.set([]lb.FlowTraffic{grown}, func() { ft.end(grown) })
	b2, _ = backendTraffic(t, td.d.Snapshot(), "web", be2)
	if want := (status.Traffic{Connections: 1, PacketsIn: 4, BytesIn: 400, PacketsOut: 3, BytesOut: 300}); b2 != want {
		t.Errorf("be2 after its flow ended during a dump %+v, want %+v", b2, want)
	}

	// A flow that the last dump saw has gone, its event not in yet: the
	// totals hold, and count it once when the event comes.
	late := flow(ep, be1, 1003, 5, 500, 5, 500)
	ft.set([]lb.FlowTraffic{late}, nil)
	before, _ := backendTraffic(t, td.d.Snapshot(), "web", be1)
	ft.set(nil, nil)
	if b, _ := backendTraffic(t, td.d.Snapshot(), "web", be1); b != before {
		t.Errorf("be1 went from %+v to %+v while an end event was late", before, b)
	}
	ft.end(late)
	if b, _ := backendTraffic(t, td.d.Snapshot(), "web", be1); b != before {
		t.Errorf("be1 %+v after the late event, want %+v", b, before)
	}

	// Reload keeping the service keeps the totals.
	td.write(t, svcTOML("web", "198.51.100.1", "", be1, be2)+svcTOML("api", "198.51.100.2", "", be3))
	if _, err := td.d.Reload(); err != nil {
		t.Fatal(err)
	}
	if b, _ := backendTraffic(t, td.d.Snapshot(), "web", be1); b != before {
		t.Errorf("be1 %+v after reload, want %+v", b, before)
	}
	// A service that goes takes its totals with it; back, it starts at 0.
	td.write(t, svcTOML("api", "198.51.100.2", "", be3))
	if _, err := td.d.Reload(); err != nil {
		t.Fatal(err)
	}
	td.d.Snapshot()
	td.write(t, svcTOML("web", "198.51.100.1", "", be1, be2))
	if _, err := td.d.Reload(); err != nil {
		t.Fatal(err)
	}
	if b, _ := backendTraffic(t, td.d.Snapshot(), "web", be1); b != (status.Traffic{}) {
		t.Errorf("be1 of a re-added service %+v, want zero", b)
	}

	ft.mu.Lock()
	ft.lost = 2
	ft.mu.Unlock()
	found := false
	for _, w := range td.d.Snapshot().Warnings {
		found = found || strings.Contains(w, "missed ended flows 2 times")
	}
	if !found {
		t.Errorf("no warning about lost events in %q", td.d.Snapshot().Warnings)
	}
}
