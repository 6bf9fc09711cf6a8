package health

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
)

// Monitor runs the checks of a set of targets, each distinct check in its
// own goroutine so a check stuck until its timeout never delays another.
type Monitor struct {
	onChange func(Transition)
	log      *slog.Logger

	// emitMu makes onChange calls sequential, so the integrator never
	// sees two transitions at once. Set and Snapshot never take it: a
	// callback that waits on the integrator cannot deadlock them.
	emitMu sync.Mutex

	mu     sync.Mutex
	probes map[string]*probe // by Target.Key
	index  map[pair]*probe   // (service, backend) -> its check, for Lookup
	closed bool
	wg     sync.WaitGroup
}

// NewMonitor returns an empty Monitor. onChange (may be nil) receives every
// state change, one call at a time, from the checking goroutines; it should
// return quickly (hand the change to the data plane and go). logger may be
// nil for no logging.
func NewMonitor(onChange func(Transition), logger *slog.Logger) *Monitor {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if onChange == nil {
		onChange = func(Transition) {}
	}
	return &Monitor{onChange: onChange, log: logger, probes: map[string]*probe{}, index: map[pair]*probe{}}
}

// pair names one (service, backend) entry of the data plane.
type pair struct {
	service string
	addr    netip.AddrPort
}

// Set replaces the monitored targets. Targets whose Key already runs keep
// their state, counters and schedule (only the list of services using them
// is updated); checks no longer wanted stop; new ones start, their first
// check spread over one interval. Targets with equal keys (a backend shared
// by services with an identical check) are checked once.
//
// An invalid target makes Set return an error listing every problem and
// change nothing. A transition of a removed target may still be delivered
// while Set runs; the integrator should ignore transitions for
// (service, backend) pairs it no longer has.
func (m *Monitor) Set(targets []Target) error {
	groups, order, err := group(targets)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("health monitor: Set after Close")
	}
	for key, p := range m.probes {
		if _, keep := groups[key]; !keep {
			p.stop()
			delete(m.probes, key)
		}
	}
	for _, key := range order {
		g := groups[key]
		if p, ok := m.probes[key]; ok {
			p.setServices(g.services)
			continue
		}
		p, err := newProbe(key, g.target, g.services)
		if err != nil {
			// Cannot happen for a validated spec; keep the monitor
			// consistent anyway by skipping this one.
			m.log.Error("health check not started", "backend", g.target.Addr.String(), "error", err)
			continue
		}
		m.probes[key] = p
		if g.target.Spec.Type != TypeNone {
			ctx, cancel := context.WithCancel(context.Background())
			p.cancel = cancel
			m.wg.Go(func() { p.loop(ctx, m.emit) })
		}
	}
	m.reindex()
	return nil
}

// reindex rebuilds the Lookup index; for a pair with several checks the
// smallest key wins, so the answer does not depend on map order.
func (m *Monitor) reindex() {
	clear(m.index)
	for key, p := range m.probes {
		p.mu.Lock()
		for _, svc := range p.services {
			k := pair{svc, p.target.Addr}
			if old, ok := m.index[k]; !ok || key < old.key {
				m.index[k] = p
			}
		}
		p.mu.Unlock()
	}
}

type targetGroup struct {
	target   Target // the first target with this key, spec normalized
	services []string
}

// group validates targets and merges those sharing a key. order keeps the
// keys in input order so checks start deterministically.
func group(targets []Target) (map[string]*targetGroup, []string, error) {
	groups := map[string]*targetGroup{}
	var order []string
	var errs []error
	for _, t := range targets {
		t.Spec = t.Spec.Normalize()
		if !t.Addr.IsValid() {
			errs = append(errs, fmt.Errorf("service %s: backend address missing", t.Service))
			continue
		}
		if err := t.Spec.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("service %s backend %s: health: %w", t.Service, t.Addr, err))
			continue
		}
		key := t.Key()
		g, ok := groups[key]
		if !ok {
			g = &targetGroup{target: t}
			groups[key] = g
			order = append(order, key)
		}
		if !slices.Contains(g.services, t.Service) {
			g.services = append(g.services, t.Service)
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	for _, g := range groups {
		slices.Sort(g.services)
	}
	return groups, order, nil
}

// emit delivers one transition: logged once per service (operators grep by
// service), then handed to onChange. A probe stopped meanwhile stays silent.
func (m *Monitor) emit(ctx context.Context, tr Transition) {
	m.emitMu.Lock()
	defer m.emitMu.Unlock()
	if ctx.Err() != nil {
		return
	}
	level := slog.LevelInfo
	if tr.To == StateDown {
		level = slog.LevelWarn
	}
	for _, svc := range tr.Services {
		m.log.Log(ctx, level, "backend "+string(tr.To),
			"service", svc, "backend", tr.Addr.String(), "reason", tr.Reason,
			"from", string(tr.From), "to", string(tr.To), "latency", tr.Result.Latency)
	}
	m.onChange(tr)
}

// Snapshot returns the state of every (service, backend) pair, sorted by
// service, then backend address.
func (m *Monitor) Snapshot() []TargetStatus {
	m.mu.Lock()
	var out []TargetStatus
	for _, p := range m.probes {
		out = append(out, p.status()...)
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b TargetStatus) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), a.Addr.Compare(b.Addr), cmp.Compare(a.Key, b.Key))
	})
	return out
}

// Lookup returns the state of one (service, backend) pair, in constant
// time, so the integrator can ask for every backend of a large config.
// Should one pair have several checks (two backend entries with different
// health sections), the one with the smallest key is returned.
func (m *Monitor) Lookup(service string, addr netip.AddrPort) (TargetStatus, bool) {
	m.mu.Lock()
	p, ok := m.index[pair{service, addr}]
	m.mu.Unlock()
	if !ok {
		return TargetStatus{}, false
	}
	return p.statusFor(service), true
}

// Close stops every check, aborting those in flight (exec checks are
// killed), and waits for them. No transition is delivered after Close
// returns. It must not be called from onChange.
func (m *Monitor) Close() {
	m.mu.Lock()
	m.closed = true
	for key, p := range m.probes {
		p.stop()
		delete(m.probes, key)
	}
	clear(m.index)
	m.mu.Unlock()
	m.wg.Wait()
}
