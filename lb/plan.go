package lb

import (
	"fmt"
	"net/netip"
	"time"
)

// Availability is what the health side says about one backend of one
// service when the plan is computed.
type Availability struct {
	Up bool
	// Ramp is the slow-start share in (0, 1]; 0 is taken as 1.
	Ramp float64
	// Full is true while the backend is at its max_connections.
	Full bool
	// Share scales the backend's weight for the least-connection
	// schedulers (lc, wlc): in (0, 1], lower for a backend that holds more
	// active flows per weight than the others; 0 is taken as 1.
	Share float64
}

// AvailabilityFunc reports a backend's availability; nil means all up.
type AvailabilityFunc func(service string, backend netip.AddrPort) Availability

// Service is the desired kernel state of one service. Everything the
// netlink side writes for a service is derived from this value, so two equal
// values mean "nothing to do".
type Service struct {
	Name        string
	VIP         netip.Addr
	Proto       uint8 // unix.IPPROTO_TCP or IPPROTO_UDP
	Port        uint16
	Scheduler   string
	Modulus     int
	Seed        uint32
	SNAT        bool
	Persistence time.Duration
	OnEmpty     string // reject | drop
	Protect     Protection
	// Slots holds the backend of each slot; nil when no backend is usable.
	Slots []netip.AddrPort
}

// Protection holds the per-service limits that become rules.
type Protection struct {
	MaxConnections       int
	Rate                 Rate
	Burst                int
	ClientRate           Rate
	PerClientConnections int
	Allow, Deny          []netip.Prefix
	// Throttle is a runtime emergency rate, in force until lifted or reload.
	Throttle Rate
}

// Rate is N events per Per (a second, a minute or an hour: the units the
// kernel's limit expression knows). The zero Rate is "no limit".
type Rate struct {
	N   uint64
	Per time.Duration
}

// IsSet reports whether the rate limits anything.
func (r Rate) IsSet() bool { return r.N > 0 }

// String spells the rate as the config does ("500/s"); "" when unset.
func (r Rate) String() string {
	if !r.IsSet() {
		return ""
	}
	unit := "s"
	switch r.Per {
	case time.Minute:
		unit = "m"
	case time.Hour:
		unit = "h"
	}
	return fmt.Sprintf("%d/%s", r.N, unit)
}

// ServiceSpec is what the planner needs to know about one configured
// service: the daemon maps the config onto it, so lb never reads the config.
type ServiceSpec struct {
	Name        string
	VIP         netip.Addr
	Proto       uint8 // unix.IPPROTO_TCP or IPPROTO_UDP
	Port        uint16
	Scheduler   string // rr | random | sh | mh
	Slots       int    // slot-table size; 0 = automatic
	SNAT        bool
	Persistence time.Duration
	OnEmpty     string // reject | drop
	Protect     Protection
	Backends    []BackendSpec
}

// BackendSpec is one configured backend of a service.
type BackendSpec struct {
	Addr   netip.AddrPort
	Weight int // 0 = drain
	Backup bool
}

// Is6 reports whether this is an IPv6 service.
func (s *Service) Is6() bool { return s.VIP.Is6() }

// Endpoint names the service's VIP, protocol and port, e.g. 198.51.100.10/tcp/80.
func (s *Service) Endpoint() string {
	return fmt.Sprintf("%s/%s/%d", s.VIP, protoName(s.Proto), s.Port)
}

func protoName(p uint8) string {
	if p == protoUDP {
		return "udp"
	}
	return "tcp"
}

const (
	protoTCP = 6
	protoUDP = 17
)

// rampScale turns fractional slow-start shares into integer weights.
const rampScale = 64

// Plan computes the desired state of every service.
func Plan(specs []ServiceSpec, avail AvailabilityFunc) []Service {
	out := make([]Service, 0, len(specs))
	for i := range specs {
		out = append(out, PlanService(&specs[i], avail))
	}
	return out
}

// PlanService computes one service's desired state.
func PlanService(s *ServiceSpec, avail AvailabilityFunc) Service {
	if avail == nil {
		avail = func(string, netip.AddrPort) Availability { return Availability{Up: true} }
	}
	out := Service{
		Name: s.Name, VIP: s.VIP, Proto: s.Proto, Port: s.Port,
		Scheduler: s.Scheduler, SNAT: s.SNAT, Persistence: s.Persistence,
		OnEmpty: s.OnEmpty, Protect: s.Protect,
	}
	if out.Proto == 0 {
		out.Proto = protoTCP
	}
	out.Seed = HashSeed(out.Endpoint())

	var primaries, backups []Weighted
	var primAddr, backAddr []netip.AddrPort
	for _, b := range s.Backends {
		w := Weighted{Key: b.Addr.String(), Weight: b.Weight}
		if b.Backup {
			backups, backAddr = append(backups, w), append(backAddr, b.Addr)
		} else {
			primaries, primAddr = append(primaries, w), append(primAddr, b.Addr)
		}
	}
	out.Modulus = s.Slots
	if out.Modulus == 0 {
		out.Modulus = Modulus(s.Scheduler, primaries, len(s.Backends))
	}

	live := func(ws []Weighted, addrs []netip.AddrPort) ([]Weighted, bool) {
		res := make([]Weighted, len(ws))
		any := false
		for i, w := range ws {
			a := avail(s.Name, addrs[i])
			res[i] = Weighted{Key: w.Key}
			if !a.Up || a.Full || w.Weight <= 0 {
				continue
			}
			ramp := a.Ramp
			if ramp <= 0 || ramp > 1 {
				ramp = 1
			}
			share := a.Share
			if share <= 0 || share > 1 {
				share = 1
			}
			res[i].Weight = max(1, int(float64(w.Weight*rampScale)*ramp*share))
			any = true
		}
		return res, any
	}
	set, addrs, base := primaries, primAddr, primaries
	lw, ok := live(primaries, primAddr)
	if !ok {
		set, addrs, base = backups, backAddr, backups
		lw, ok = live(backups, backAddr)
	}
	if !ok {
		return out
	}
	_ = set
	var idx []int
	if s.Scheduler == "sh" || s.Scheduler == "mh" {
		idx = fillConsistent(base, lw, out.Modulus)
	} else {
		idx = FillRoundRobin(lw, out.Modulus)
	}
	out.Slots = make([]netip.AddrPort, len(idx))
	for i, j := range idx {
		out.Slots[i] = addrs[j]
	}
	return out
}

// fillConsistent keeps the Maglev table of the configured set (base) for
// every slot whose owner is usable at full share, and gives the other slots
// to the owners a Maglev table of the usable set picks. So a backend going
// down moves only its own clients, and coming back restores the table
// exactly; a slow-starting backend keeps a growing, fixed subset of its
// slots.
func fillConsistent(base, live []Weighted, m int) []int {
	cfgW := make([]Weighted, len(base))
	for i, b := range base {
		cfgW[i] = Weighted{Key: b.Key, Weight: b.Weight * rampScale}
	}
	full := FillMaglev(cfgW, m)
	alt := FillMaglev(live, m)
	out := make([]int, m)
	for s, owner := range full {
		out[s] = alt[s]
		if owner < 0 || live[owner].Weight <= 0 {
			continue
		}
		share := float64(live[owner].Weight) / float64(cfgW[owner].Weight)
		if share >= 1 || slotFraction(s) < share {
			out[s] = owner
		}
	}
	return out
}

// slotFraction spreads slot numbers over [0,1) in a fixed pseudo-random way.
func slotFraction(s int) float64 {
	return float64(uint32(s)*2654435761%1000) / 1000
}

// SlotCounts returns how many slots each backend holds.
func (s *Service) SlotCounts() map[netip.AddrPort]int {
	c := map[netip.AddrPort]int{}
	for _, a := range s.Slots {
		c[a]++
	}
	return c
}
