package daemon

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"lbd/appliance/status"
	"lbd/config"
	"lbd/health"
	"lbd/lb"
)

// fakeDataplane stands for table lbd: it keeps what the last successful
// apply asked for, counts transactions, can refuse applies, and can hold
// an apply until the test lets it go (to make bursts deterministic).
type fakeDataplane struct {
	mu       sync.Mutex
	applies  int
	services map[string]lb.Service
	fw       lb.Firewall
	failNext int                      // refuse this many applies
	refuse   func([]lb.Service) error // refuse applies it returns an error for
	gate     chan struct{}            // when set, each apply waits for a receive
	entered  chan struct{}            // signalled when an apply starts (if set)
	forgot   []string                 // "service backend" of ForgetPersistence calls
	order    []string                 // "apply" / "forget ..." in call order
	// owners is what SlotOwners reports: the slots a previous lbd left.
	owners map[string]map[netip.AddrPort]int
}

func (f *fakeDataplane) SlotOwners() (map[string]map[netip.AddrPort]int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.owners, nil
}

func newFakeDataplane() *fakeDataplane { return &fakeDataplane{services: map[string]lb.Service{}} }

func (f *fakeDataplane) ApplyState(services []lb.Service, fw lb.Firewall) (lb.ApplyStats, error) {
	if f.entered != nil {
		f.entered <- struct{}{}
	}
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.order = append(f.order, "apply")
	if f.failNext > 0 {
		f.failNext--
		return lb.ApplyStats{}, errors.New("netlink: transaction refused (fake)")
	}
	if f.refuse != nil {
		if err := f.refuse(services); err != nil {
			return lb.ApplyStats{}, err
		}
	}
	f.applies++
	f.services = map[string]lb.Service{}
	for _, s := range services {
		f.services[s.Name] = s
	}
	f.fw = fw
	return lb.ApplyStats{}, nil
}

func (f *fakeDataplane) ForgetPersistence(s *lb.Service, gone []netip.AddrPort) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, g := range gone {
		f.forgot = append(f.forgot, s.Name+" "+g.String())
		f.order = append(f.order, "forget "+s.Name+" "+g.String())
	}
	return nil
}

func (f *fakeDataplane) ReadCounters() (map[string]lb.Counters, error) { return nil, nil }

// state returns a copy of what the kernel would hold.
func (f *fakeDataplane) state() (map[string]lb.Service, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps(f.services), f.applies
}

// fakeConntrack records flushes.
type fakeConntrack struct {
	mu       sync.Mutex
	flushed  []string
	active   map[lb.FlowKey]int
	dumps    int           // ActiveConnections calls
	dumpTime time.Duration // how long one takes
}

func (c *fakeConntrack) ActiveConnections([]lb.Service) (map[lb.FlowKey]int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dumps++
	time.Sleep(c.dumpTime)
	return maps(c.active), nil
}

func (c *fakeConntrack) FlushBackend(s *lb.Service, b netip.AddrPort) (uint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushed = append(c.flushed, s.Name+" "+b.String())
	return 1, nil
}

func (c *fakeConntrack) FlushFlows(keys []lb.FlowKey) (uint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		c.flushed = append(c.flushed, k.Endpoint+" "+k.Backend.String())
	}
	return uint(len(keys)), nil
}

func (c *fakeConntrack) ListFlows(s []lb.Service) ([]lb.Flow, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []lb.Flow
	for k, n := range c.active {
		for i := 0; i < n; i++ {
			out = append(out, lb.Flow{Endpoint: k.Endpoint, Proto: "tcp", State: "ESTABLISHED", Backend: k.Backend,
				Client: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.7"), uint16(40000+i))})
		}
	}
	return out, nil
}

// fakeMonitor holds health states the test sets and delivers transitions
// through the daemon's callback, as the real monitor does.
type fakeMonitor struct {
	mu       sync.Mutex
	onChange func(health.Transition)
	targets  []health.Target
	state    map[backendKey]health.State
	sets     int
}

func (m *fakeMonitor) Set(targets []health.Target) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sets++
	m.targets = append([]health.Target(nil), targets...)
	if m.state == nil {
		m.state = map[backendKey]health.State{}
	}
	want := map[backendKey]bool{}
	for _, t := range targets {
		k := backendKey{t.Service, t.Addr}
		want[k] = true
		if _, ok := m.state[k]; !ok {
			m.state[k] = t.Initial
		}
	}
	for k := range m.state {
		if !want[k] {
			delete(m.state, k)
		}
	}
	return nil
}

func (m *fakeMonitor) Lookup(service string, addr netip.AddrPort) (health.TargetStatus, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.state[backendKey{service, addr}]
	if !ok {
		return health.TargetStatus{}, false
	}
	return health.TargetStatus{Service: service, Addr: addr, State: st}, true
}

func (m *fakeMonitor) Close() {}

// flip changes a backend's state and tells the daemon, like a check would.
func (m *fakeMonitor) flip(service string, addr netip.AddrPort, to health.State) {
	m.mu.Lock()
	k := backendKey{service, addr}
	from := m.state[k]
	m.state[k] = to
	cb := m.onChange
	m.mu.Unlock()
	cb(health.Transition{Services: []string{service}, Addr: addr, From: from, To: to})
}

func (m *fakeMonitor) initial(service string, addr netip.AddrPort) health.State {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range m.targets {
		if t.Service == service && t.Addr == addr {
			return t.Initial
		}
	}
	return ""
}

type fakeHost struct{}

func (fakeHost) Apply(*config.Config) error { return nil }
func (fakeHost) Status() []status.NIC       { return nil }
func (fakeHost) Close()                     {}

// fakeSystem locks nothing and leaves the host's sysctls alone.
type fakeSystem struct{}

func (fakeSystem) Lock() (func(), error)   { return func() {}, nil }
func (fakeSystem) EnableForwarding() error { return nil }

// fakes bundles one daemon's fakes.
type fakes struct {
	dp  *fakeDataplane
	ct  *fakeConntrack
	mon *fakeMonitor
}

func (f *fakes) options(configPath, socket, stateDir string) Options {
	return Options{
		ConfigPath: configPath, SocketPath: socket, StateDir: stateDir,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Dataplane: f.dp, Conntrack: f.ct, System: fakeSystem{},
		NewMonitor: func(cb func(health.Transition), _ *slog.Logger) HealthMonitor {
			f.mon.mu.Lock()
			f.mon.onChange = cb
			f.mon.mu.Unlock()
			return f.mon
		},
		NewHost:  func(string, *slog.Logger) Host { return fakeHost{} },
		RetryMin: 1e6, RetryMax: 5e6, // 1ms .. 5ms
	}
}
