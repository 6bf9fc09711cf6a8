package console

import (
	"strings"
	"unicode/utf8"

	"lbd/appliance/status"
)

// maxAddrWidth caps the backend address column so a long IPv6 address
// does not push the state words off an 80-column screen.
const maxAddrWidth = 28

// stateStyle colours a backend state word; the word itself always shows.
var stateStyle = map[string]style{
	status.StateUp:        good,
	status.StateDown:      bad,
	status.StateDrain:     warn,
	status.StateUnchecked: dim,
}

func services(f *frame, s status.Snapshot) {
	if len(s.Services) == 0 {
		f.add(kindOther, sp(bold, "Services"), sp(dim, "  none configured"))
		return
	}
	addrW := 0
	for _, svc := range s.Services {
		for _, b := range svc.Backends {
			addrW = max(addrW, utf8.RuneCountInString(backendName(b)))
		}
	}
	addrW = min(addrW, maxAddrWidth)
	f.add(kindOther, sp(bold, "%-*s", addrW+3, "Services"), sp(dim, "%-9s %-3s %6s %7s  last check", "state", "wt", "conns", "check"))
	for _, svc := range s.Services {
		serviceLine(f, svc)
		for _, b := range svc.Backends {
			backendLine(f, b, addrW)
		}
		if r := refusals(svc.Refused); r != "" {
			f.add(kindOther, sp(warn, "   refused: %s", r))
		}
	}
}

func serviceLine(f *frame, svc status.Service) {
	up := 0
	for _, b := range svc.Backends {
		if b.State == status.StateUp {
			up++
		}
	}
	upStyle := good
	if up == 0 {
		upStyle = bad
	}
	nat := "snat"
	if !svc.SNAT {
		nat = "no-snat"
	}
	spans := []span{
		sp(bold, " %s", svc.Name),
		sp(plain, "  %s/%s  %s %s  ", hostPort(svc.VIP, svc.Port), svc.Protocol, svc.Scheduler, nat),
		sp(upStyle, "%d/%d up", up, len(svc.Backends)),
		sp(dim, "  %s pkts %s", count(svc.Packets), bytes(svc.Bytes)),
	}
	if svc.Throttle != "" {
		spans = append(spans, sp(warn, "  throttle %s", svc.Throttle))
	}
	f.add(kindService, spans...)
}

func backendName(b status.Backend) string {
	if b.Backup {
		return b.Address + " backup"
	}
	return b.Address
}

func backendLine(f *frame, b status.Backend, addrW int) {
	name := backendName(b)
	if utf8.RuneCountInString(name) > addrW {
		name = string([]rune(name)[:addrW-1]) + "…"
	}
	st, ok := stateStyle[b.State]
	if !ok {
		st = warn // a state this page does not know yet: show it, flagged
	}
	spans := []span{
		sp(plain, "   %-*s ", addrW, name),
		sp(st, "%-9s", orDash(b.State)),
		sp(plain, " %-3d %6d %7s", b.Weight, b.ActiveConnections, latency(b.LastCheckLatency)),
	}
	if b.LastCheck != "" {
		spans = append(spans, sp(dim, "  %s", b.LastCheck))
	}
	f.add(kindBackend, spans...)
}

// refusals lists the non-zero refusal counters by their JSON names.
func refusals(r status.Refusals) string {
	var parts []string
	for _, c := range []struct {
		name string
		n    uint64
	}{
		{"no_backend", r.NoBackend}, {"max_connections", r.MaxConnections}, {"rate", r.Rate},
		{"per_client_rate", r.PerClientRate}, {"per_client_connections", r.PerClientConns},
		{"denied", r.Denied}, {"throttle", r.ThrottleRefused},
	} {
		if c.n > 0 {
			parts = append(parts, c.name+" "+count(c.n))
		}
	}
	return strings.Join(parts, " · ")
}
