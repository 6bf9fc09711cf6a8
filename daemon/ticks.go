package daemon

import (
	"time"

	"lbd/lb"
)

// Ticks run once a second on Run's goroutine. They only look and record:
// the sync loop does the applying.

// slowStartTick marks dirty the services whose backends are ramping up, so
// the loop gives them a larger share of slots each second.
func (d *Daemon) slowStartTick() {
	d.mu.Lock()
	cfg := d.pub.cfg
	var ramping []string
	if cfg != nil {
		now := time.Now()
		for _, s := range cfg.Services {
			if s.SlowStart == 0 {
				continue
			}
			for _, b := range s.Backends {
				if t, ok := d.in.upSince[backendKey{s.Name, b.Addr}]; ok && now.Sub(t) < s.SlowStart.D()+time.Second {
					ramping = append(ramping, s.Name)
					break
				}
			}
		}
	}
	d.mu.Unlock()
	if len(ramping) > 0 {
		d.record(func(in *inputs) {
			for _, s := range ramping {
				in.dirty[s] = true
			}
		})
	}
}

// maxConnTick enforces per-backend max_connections: it counts each such
// backend's live flows (one conntrack dump, here rather than in the loop)
// and records which are full, so the loop takes them out of the slots
// until they have room again and new flows go to the others instead of
// being dropped (like IPVS upper thresholds).
func (d *Daemon) maxConnTick() {
	d.mu.Lock()
	cfg := d.pub.cfg
	limits := map[backendKey]int{}
	var plans []lb.Service
	if cfg != nil {
		for _, s := range cfg.Services {
			for _, b := range s.Backends {
				if b.MaxConnections > 0 {
					limits[backendKey{s.Name, b.Addr}] = b.MaxConnections
				}
			}
		}
		for _, p := range d.pub.planned {
			plans = append(plans, p)
		}
	}
	old := maps(d.in.full)
	d.mu.Unlock()
	if len(limits) == 0 {
		if len(old) > 0 {
			d.record(func(in *inputs) {
				for k := range in.full {
					in.dirty[k.Service] = true
				}
				in.full = map[backendKey]bool{}
			})
		}
		return
	}
	active, err := d.ct.ActiveConnections(plans)
	if err != nil {
		d.log.Warn("max_connections: conntrack", "err", err)
		return
	}
	endpoint := map[string]string{}
	for _, p := range plans {
		endpoint[p.Name] = p.Endpoint()
	}
	now := map[backendKey]bool{}
	var changed []string
	for k, lim := range limits {
		n := active[lb.FlowKey{Endpoint: endpoint[k.Service], Backend: k.Backend}]
		// Hysteresis: full at the limit, free again one below it.
		isFull := n >= lim || (old[k] && n >= lim-1 && lim > 1)
		if isFull {
			now[k] = true
		}
		if isFull != old[k] {
			changed = append(changed, k.Service)
			d.log.Info("backend max_connections", "service", k.Service, "backend", k.Backend.String(), "active", n, "limit", lim, "full", isFull)
		}
	}
	if len(changed) == 0 {
		return
	}
	d.record(func(in *inputs) {
		in.full = now
		for _, s := range changed {
			in.dirty[s] = true
		}
	})
}
