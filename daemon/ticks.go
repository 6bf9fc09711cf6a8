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

// conntrackTick counts live flows per backend (one conntrack dump, here
// rather than in the loop) for the features that need them, and
// records what changed so the loop replans only those services:
//   - per-backend max_connections: a full backend leaves the slots until
//     it has room again, so new flows go to the others instead of being
//     dropped (like IPVS upper thresholds);
//   - lc/wlc: each backend's slot share follows its active flows per
//     weight (see lcShares);
//   - runtime drains: done at zero flows, flushed at their deadline.
func (d *Daemon) conntrackTick() {
	d.mu.Lock()
	cfg := d.pub.cfg
	limits := map[backendKey]int{}
	lcServices := map[string]bool{}
	if cfg != nil {
		for _, s := range cfg.Services {
			if s.Scheduler == "lc" || s.Scheduler == "wlc" {
				lcServices[s.Name] = true
			}
			for _, b := range s.Backends {
				if b.MaxConnections > 0 {
					limits[backendKey{s.Name, b.Addr}] = b.MaxConnections
				}
			}
		}
	}
	old := maps(d.in.full)
	oldShares := maps(d.in.shares)
	draining := 0
	for _, st := range d.in.drains {
		if st.done.IsZero() {
			draining++
		}
	}
	d.mu.Unlock()
	if len(limits) == 0 && len(lcServices) == 0 && draining == 0 {
		if len(old) > 0 || len(oldShares) > 0 {
			d.record(func(in *inputs) {
				for k := range in.full {
					in.dirty[k.Service] = true
				}
				for k := range in.shares {
					in.dirty[k.Service] = true
				}
				in.full, in.shares = map[backendKey]bool{}, map[backendKey]float64{}
			})
		}
		return
	}
	// The dump costs O(conntrack entries): keep lbd's share of a CPU
	// bounded (about 5%) by waiting 20 times the last dump's duration
	// before the next one when that is longer than the one-second tick.
	d.mu.Lock()
	next := d.in.nextDump
	d.mu.Unlock()
	if time.Now().Before(next) {
		return
	}
	// Only now, with something to count, the plans (10,000 at scale).
	plans := d.plannedList()
	start := time.Now()
	active, err := d.ct.ActiveConnections(plans)
	if took := time.Since(start); 20*took > time.Second {
		d.mu.Lock()
		d.in.nextDump = start.Add(20 * took)
		d.mu.Unlock()
		d.log.Debug("conntrack dump is slow; counting less often", "took", took, "next_in", 20*took)
	}
	if err != nil {
		d.log.Warn("conntrack count for max_connections / lc", "err", err)
		return
	}
	endpoint := map[string]string{}
	for _, p := range plans {
		endpoint[p.Name] = p.Endpoint()
	}
	if draining > 0 {
		d.drainTick(active, endpoint)
	}
	changed := map[string]bool{}
	now := map[backendKey]bool{}
	for k, lim := range limits {
		n := active[lb.FlowKey{Endpoint: endpoint[k.Service], Backend: k.Backend}]
		// Hysteresis: full at the limit, free again one below it.
		isFull := n >= lim || (old[k] && n >= lim-1 && lim > 1)
		if isFull {
			now[k] = true
		}
		if isFull != old[k] {
			changed[k.Service] = true
			d.log.Info("backend max_connections", "service", k.Service, "backend", k.Backend.String(), "active", n, "limit", lim, "full", isFull)
		}
	}
	shares := map[backendKey]float64{}
	for _, s := range cfg.Services {
		if !lcServices[s.Name] {
			continue
		}
		var ws []lcBackend
		for _, b := range s.Backends {
			w := b.EffectiveWeight()
			if s.Scheduler == "lc" && w > 0 {
				w = 1
			}
			ws = append(ws, lcBackend{key: backendKey{s.Name, b.Addr}, weight: w,
				active: active[lb.FlowKey{Endpoint: endpoint[s.Name], Backend: b.Addr}]})
		}
		for k, v := range lcShares(ws) {
			shares[k] = v
			if oldShares[k] != v {
				changed[s.Name] = true
			}
		}
	}
	for k := range oldShares {
		if _, ok := shares[k]; !ok {
			changed[k.Service] = true
		}
	}
	if len(changed) == 0 {
		return
	}
	d.record(func(in *inputs) {
		in.full, in.shares = now, shares
		for s := range changed {
			in.dirty[s] = true
		}
	})
}

type lcBackend struct {
	key    backendKey
	weight int
	active int
}

// lcShares turns active flow counts into slot shares for lc/wlc. IPVS
// sends each new connection to the backend with the fewest active
// connections per weight; lbd schedules in the kernel from a slot table,
// so once a second it gives each backend a share of its weight that
// shrinks with its load: with r = active/weight and L = max(r) + 1, the
// share is (L - r) / (L - min(r)), quantised to 1/64 (at least 1/64), so
// the least loaded backends keep their whole weight. Equal load gives every backend
// share 1 (spread by weight); a backend holding many more flows than the
// others gets few of the new ones until they catch up. Between two ticks
// the shares stay fixed, so a burst can overshoot by at most one second of
// new connections times the busy backend's share.
func lcShares(bs []lcBackend) map[backendKey]float64 {
	maxR, minR := 0.0, -1.0
	for _, b := range bs {
		if b.weight > 0 {
			r := float64(b.active) / float64(b.weight)
			maxR = max(maxR, r)
			if minR < 0 || r < minR {
				minR = r
			}
		}
	}
	l := maxR + 1
	out := map[backendKey]float64{}
	for _, b := range bs {
		if b.weight <= 0 {
			continue
		}
		r := float64(b.active) / float64(b.weight)
		q := float64(int((l-r)/(l-minR)*64+0.5)) / 64
		out[b.key] = max(q, 1.0/64)
	}
	return out
}
