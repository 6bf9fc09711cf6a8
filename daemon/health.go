package daemon

import (
	"lbd/config"
	"lbd/health"
)

// healthTargets maps the config's checks onto health targets: one per
// backend of a service with [service.health] (or a backend override).
// Backends without any check are not monitored and count as up. A checked
// backend starts up, unless down names it (the previous lbd had it down):
// then it must pass `rise` checks before it gets flows again.
func healthTargets(cfg *config.Config, down map[backendKey]bool) []health.Target {
	var out []health.Target
	for _, s := range cfg.Services {
		for _, b := range s.Backends {
			h := s.Health
			if b.Health != nil {
				h = b.Health
			}
			if h == nil {
				continue
			}
			initial := health.StateUp
			if down[backendKey{s.Name, b.Addr}] {
				initial = health.StateDown
			}
			out = append(out, health.Target{Service: s.Name, Addr: b.Addr, Spec: h.Spec(), Initial: initial})
		}
	}
	return out
}
