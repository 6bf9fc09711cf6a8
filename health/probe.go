package health

import (
	"context"
	"slices"
	"sync"
	"time"
)

// probe is one distinct check (one Key) and its state machine, shared by
// every service whose target has that key.
type probe struct {
	key     string
	target  Target
	checker checker
	cancel  context.CancelFunc // nil for type none (nothing runs)

	mu       sync.Mutex
	services []string
	machine  *Machine
}

func newProbe(key string, t Target, services []string) (*probe, error) {
	c, err := newChecker(t)
	if err != nil {
		return nil, err
	}
	return &probe{key: key, target: t, checker: c, services: services,
		machine: NewMachine(t.Spec, t.Initial)}, nil
}

// loop checks every interval until ctx ends. The first check waits a
// key-derived share of the interval, so targets added together spread out.
func (p *probe) loop(ctx context.Context, emit func(context.Context, Transition)) {
	interval, timeout := p.target.Spec.Interval, p.target.Spec.Timeout
	timer := time.NewTimer(firstDelay(p.key, interval))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Now()
		res := run(ctx, p.checker, timeout)
		if ctx.Err() != nil {
			return // stopped mid-check: the result means nothing
		}
		if tr, changed := p.observe(res); changed {
			emit(ctx, tr)
		}
		// Interval is start to start; a check slower than the interval
		// is followed at once by the next one, never by a burst.
		timer.Reset(max(0, interval-time.Since(start)))
	}
}

func (p *probe) observe(res Result) (Transition, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	from, to, changed := p.machine.Observe(res)
	if !changed {
		return Transition{}, false
	}
	return Transition{
		Key:      p.key,
		Services: slices.Clone(p.services),
		Addr:     p.target.Addr,
		From:     from,
		To:       to,
		Reason:   res.Reason,
		At:       p.machine.ChangedAt(),
		Result:   res,
	}, true
}

func (p *probe) setServices(services []string) {
	p.mu.Lock()
	p.services = services
	p.mu.Unlock()
}

func (p *probe) stop() {
	if p.cancel != nil {
		p.cancel()
	}
}

// status reports the probe once per service using it.
func (p *probe) status() []TargetStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]TargetStatus, 0, len(p.services))
	for _, svc := range p.services {
		out = append(out, p.statusLocked(svc))
	}
	return out
}

func (p *probe) statusFor(service string) TargetStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.statusLocked(service)
}

func (p *probe) statusLocked(service string) TargetStatus {
	passed, failed := p.machine.Counts()
	return TargetStatus{
		Service:        service,
		Addr:           p.target.Addr,
		Key:            p.key,
		Type:           p.target.Spec.Type,
		State:          p.machine.State(),
		Passed:         passed,
		Failed:         failed,
		Last:           p.machine.Last(),
		LastTransition: p.machine.ChangedAt(),
	}
}
