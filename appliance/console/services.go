package console

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
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

func services(f *frame, s status.Snapshot, h *history) {
	if len(s.Services) == 0 {
		f.add(kindOther, sp(bold, "Services"), sp(dim, "  none configured"))
		return
	}
	addrW, connW := 0, 6
	for _, svc := range s.Services {
		for _, b := range svc.Backends {
			addrW = max(addrW, utf8.RuneCountInString(backendName(b)))
			connW = max(connW, len(conns(b)))
		}
	}
	addrW = min(addrW, maxAddrWidth)
	head := fmt.Sprintf("%-9s %-3s %*s %7s  ", "state", "wt", connW, "conns", "check")
	if h.ready() {
		head += fmt.Sprintf("%-*s ", graphCells, fmt.Sprintf("health %.0fm", (graphCells*graphStep).Minutes()))
	}
	f.add(kindOther, sp(bold, "%-*s", addrW+3, "Services"), sp(dim, "%slast check", head))
	for _, svc := range s.Services {
		serviceLine(f, svc)
		if h.ready() {
			graphLine(f, svc, h)
		}
		if l := limitList(svc.Limits); len(l) > 0 {
			f.add(kindOther, sp(plain, "   limits: %s", strings.Join(l, " · ")))
		}
		if r := refusals(svc.Refused); r != "" {
			f.add(kindOther, sp(warn, "   refused: %s", r))
		}
		for _, b := range svc.Backends {
			backendLine(f, svc, b, s.Now, addrW, connW, h)
		}
	}
}

func serviceLine(f *frame, svc status.Service) {
	// Unchecked backends serve (no check means trusted), so they count:
	// a service whose only backend has no check is "1/1 up", not a red 0/1.
	up := svc.ServingCount()
	upStyle := good
	if up == 0 {
		upStyle = bad
	}
	nat := "snat"
	if !svc.SNAT {
		nat = "no-snat"
	}
	// Packets counts only the first packet of each new flow (the NAT rule
	// sees nothing else), so it is shown as what it is: new flows. Their
	// bytes (mostly SYN sizes) tell an operator nothing and are left to
	// the page and the JSON.
	spans := []span{
		sp(bold, " %s", svc.Name),
		sp(plain, "  %s/%s  %s %s  ", hostPort(svc.VIP, svc.Port), svc.Protocol, svc.Scheduler, nat),
		sp(upStyle, "%d/%d up", up, len(svc.Backends)),
		sp(dim, "  %s new flows", count(svc.Packets)),
	}
	if svc.Throttle != "" {
		spans = append(spans, sp(warn, "  THROTTLED %s", svc.Throttle))
	}
	f.add(kindService, spans...)
}

// graphLine draws the service's new connections per second and active
// connections over the last minutes, each with its current value.
func graphLine(f *frame, svc status.Service, h *history) {
	act := 0
	for _, b := range svc.Backends {
		act += b.ActiveConnections
	}
	f.add(kindOther,
		sp(dim, "   new/s "), sp(plain, "%s", h.spark(h.rate(svc.Name))), sp(bold, " %-6s", rateText(h.lastRate(svc.Name))),
		sp(dim, "  active "), sp(plain, "%s", h.spark(h.active(svc.Name))), sp(bold, " %-6s", count(uint64(act))),
		// The real traffic (conntrack accounting, both ways), unlike
		// "new flows", which counts first packets only.
		sp(dim, "  traffic "), sp(bold, "%s", bytesRate(h.lastBytesRate(svc.Name))))
}

// bytesRate formats bytes per second.
func bytesRate(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return scaled(v, "B") + "/s"
}

// rateText formats connections per second: one decimal below 10.
func rateText(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v < 10:
		return fmt.Sprintf("%.1f", v)
	}
	return scaled(v, "")
}

// limitList words a service's configured limits as the status page does,
// counting networks rather than listing them: a deny list can be long, and
// the page and `lbd status --json` have them in full.
func limitList(l status.Limits) []string {
	return l.Phrases(func(ns []string) string { return nets(len(ns)) })
}

func nets(n int) string {
	if n == 1 {
		return "1 net"
	}
	return strconv.Itoa(n) + " nets"
}

// conns is a backend's active connections, against its max_connections
// when it has one.
func conns(b status.Backend) string {
	if b.MaxConnections > 0 {
		return fmt.Sprintf("%d/%d", b.ActiveConnections, b.MaxConnections)
	}
	return strconv.Itoa(b.ActiveConnections)
}

func backendName(b status.Backend) string {
	if b.Backup {
		return b.Address + " backup"
	}
	return b.Address
}

func backendLine(f *frame, svc status.Service, b status.Backend, now time.Time, addrW, connW int, h *history) {
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
		sp(plain, " %-3d %*s %7s  ", b.Weight, connW, conns(b), latency(b.LastCheckLatency)),
	}
	if h.ready() {
		spans = append(spans, h.strip(h.health(svc.Name, b.Address))...)
		spans = append(spans, sp(plain, " "))
	}
	if d := drainText(b.Drain, now); d != "" {
		// Before the check result: a drain is what the operator waits on.
		spans = append(spans, sp(warn, "%s  ", d))
	}
	if b.LastCheck != "" {
		spans = append(spans, sp(dim, "%s", b.LastCheck))
	}
	f.add(kindBackend, spans...)
}

// drainText says where a runtime drain (`lbd drain`) stands, shorter than
// the status page says it: what is left of an 80-column line after the
// columns is about 23 cells, and the flush time matters more than since
// when the drain runs.
func drainText(d *status.Drain, now time.Time) string {
	switch {
	case d == nil:
		return ""
	case !d.Done.IsZero() && d.Flushed > 0:
		return fmt.Sprintf("drained, flushed %d", d.Flushed)
	case !d.Done.IsZero():
		return "drained, no flows left"
	case !d.Deadline.IsZero():
		return "drained, flush in " + human(d.Deadline.Sub(now))
	}
	return "drained for " + human(now.Sub(d.Since))
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
