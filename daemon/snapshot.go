package daemon

import (
	"fmt"
	"net/netip"
	"time"

	"lbd/appliance/host"
	"lbd/appliance/status"
	"lbd/appliance/sysctl"
	"lbd/health"
	"lbd/lb"
)

// Snapshot returns the live state: `lbd status`, /status.json, /metrics
// and the console all render this one document.
func (d *Daemon) Snapshot() status.Snapshot {
	d.mu.Lock()
	cfg := d.pub.cfg
	planned := maps(d.pub.planned)
	throttles := maps(d.in.throttles)
	drains := maps(d.in.drains)
	snap := status.Snapshot{
		Version: d.opts.Version, StartedAt: d.started, Now: time.Now(),
		Config: status.Config{Path: d.opts.ConfigPath, LoadedAt: d.pub.loadedAt, Source: d.pub.source,
			LastErrors: append([]string(nil), d.pub.lastErrs...)},
		Reloads: status.ReloadStats{OK: d.pub.reloadsOK, Failed: d.pub.reloadsNG, LastAt: d.pub.lastLoad},
		Sync:    d.pub.sync,
	}
	d.mu.Unlock()
	if len(snap.Config.LastErrors) > 0 {
		snap.Config.LastError = snap.Config.LastErrors[0]
	}
	if !snap.Sync.InSync && !snap.Sync.OutOfSyncSince.IsZero() {
		snap.Warnings = append(snap.Warnings, fmt.Sprintf("kernel out of sync since %s (%d failed applies, retrying): %s",
			snap.Sync.OutOfSyncSince.Format(time.RFC3339), snap.Sync.Failures, snap.Sync.LastError))
	}
	// The configured name even where lbd may not set the kernel's.
	snap.Hostname = host.Name(cfg)
	snap.NICs = d.host.Status()
	snap.HA = d.haStatus()
	if n, m, err := sysctl.ConntrackUsage(); err == nil {
		snap.Conntrack = status.Conntrack{Count: n, Max: m}
		if snap.Conntrack.High() {
			snap.Warnings = append(snap.Warnings, fmt.Sprintf("conntrack table %d of %d entries (over %d%%): raise [conntrack] max", n, m, status.ConntrackWarnPercent))
		}
	}
	if cfg == nil {
		snap.Services = []status.Service{}
		return snap
	}
	snap.BGP = d.bgpStatus(cfg)
	var plans []lb.Service
	for _, p := range planned {
		plans = append(plans, p)
	}
	active, err := d.ct.ActiveConnections(plans)
	if err != nil {
		snap.Warnings = append(snap.Warnings, err.Error())
	}
	traffic, warns := d.traffic.totals(plans)
	snap.Warnings = append(snap.Warnings, warns...)
	counters, err := d.dp.ReadCounters()
	if err != nil {
		snap.Warnings = append(snap.Warnings, err.Error())
	}
	for _, s := range cfg.Services {
		p := planned[s.Name]
		slots := p.SlotCounts()
		c := counters[s.Name]
		ss := status.Service{Name: s.Name, VIP: s.VIPAddr.String(), Port: s.Port, Protocol: s.Protocol,
			Scheduler: s.Scheduler, SNAT: s.SNATEnabled(), Slots: p.Modulus,
			Packets: c.Flows, Bytes: c.FlowBytes, Throttle: throttles[s.Name].String(),
			Refused: status.Refusals{NoBackend: c.NoBackend, MaxConnections: c.Refused[lb.RefusedMaxConn],
				Rate: c.Refused[lb.RefusedRate], PerClientRate: c.Refused[lb.RefusedClientRate],
				PerClientConns: c.Refused[lb.RefusedClientConn], Denied: c.Refused[lb.RefusedDeny],
				ThrottleRefused: c.Refused[lb.RefusedThrottle]},
			Limits: status.Limits{MaxConnections: s.MaxConnections, NewConnectionRate: s.NewConnRate.String(), Burst: s.Burst,
				PerClientRate: s.ClientRate.String(), PerClientConnections: s.PerClientConnections,
				Allow: prefixStrings(s.AllowPrefixes), Deny: prefixStrings(s.DenyPrefixes)},
			Backends: []status.Backend{}}
		for _, b := range s.Backends {
			sb := status.Backend{Address: b.Addr.String(), Weight: b.EffectiveWeight(), Backup: b.Backup, MaxConnections: b.MaxConnections,
				Slots: slots[b.Addr], ActiveConnections: active[lb.FlowKey{Endpoint: p.Endpoint(), Backend: b.Addr}],
				Traffic: traffic[lb.FlowKey{Endpoint: p.Endpoint(), Backend: b.Addr}]}
			ss.Traffic = ss.Traffic.Add(sb.Traffic)
			ts, checked := d.monitor.Lookup(s.Name, b.Addr)
			switch {
			case !checked || ts.State == health.StateUnchecked:
				sb.State = status.StateUnchecked
			case ts.State == health.StateDown:
				sb.State = status.StateDown
			default:
				sb.State = status.StateUp
			}
			dr, drained := drains[backendKey{s.Name, b.Addr}]
			if drained {
				sb.Drain = dr.status()
			}
			if (b.EffectiveWeight() == 0 || drained) && sb.State != status.StateDown {
				sb.State = status.StateDrain
			}
			if checked {
				sb.LastCheck = ts.Last.Reason
				sb.LastCheckLatency = ts.Last.Latency.Seconds()
				sb.LastTransition = ts.LastTransition
				sb.ChecksPassed, sb.ChecksFailed = ts.Passed, ts.Failed
			}
			ss.Backends = append(ss.Backends, sb)
		}
		snap.Services = append(snap.Services, ss)
	}
	return snap
}

func prefixStrings(ps []netip.Prefix) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}
