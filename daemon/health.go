package daemon

import (
	"time"

	"lbd/config"
	"lbd/health"
)

// healthTargets maps the config's checks onto health targets: one per
// backend of a service with [service.health] (or a backend override).
// Backends without any check are not monitored and count as up.
func healthTargets(cfg *config.Config) []health.Target {
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
			out = append(out, health.Target{Service: s.Name, Addr: b.Addr, Spec: healthSpec(h), Initial: health.StateUp})
		}
	}
	return out
}

func healthSpec(h *config.Health) health.Spec {
	sp := health.Spec{
		Type: health.Type(h.Type), Port: uint16(h.Port),
		Interval: time.Duration(h.Interval), Timeout: time.Duration(h.Timeout), Rise: h.Rise, Fall: h.Fall,
		Path: h.Path, Host: h.Host, ExpectBody: h.ExpectBody, TLSSkipVerify: h.TLSSkipVerify, SNI: h.SNI,
		Expect: h.Expect, Command: h.Command,
	}
	for _, r := range h.ExpectStatus {
		sp.ExpectStatus = append(sp.ExpectStatus, health.StatusRange{Min: r[0], Max: r[1]})
	}
	if h.Payload != "" {
		if p, err := health.ParsePayload(h.Payload); err == nil {
			sp.Payload = p
		}
	}
	return sp.Normalize()
}
