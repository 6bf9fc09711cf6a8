package daemon

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"lbd/appliance/control"
	"lbd/config"
	"lbd/lb"
)

// diffRequest answers `lbd diff [--config FILE]`: what a reload of FILE
// (default: the daemon's config file) would change against the running
// state, without changing anything.
func (d *Daemon) diffRequest(args []string) control.Response {
	path := d.opts.ConfigPath
	if len(args) == 1 && args[0] != "" {
		path = args[0]
	}
	next, err := config.Load(path)
	if err != nil {
		return control.Response{Message: "the file does not validate; a reload would be refused", Errors: errorLines(err)}
	}
	running := d.configOrNil()
	if running == nil {
		return control.Response{Errors: []string{"no config is running"}}
	}
	d.mu.Lock()
	planned := maps(d.pub.planned)
	d.mu.Unlock()
	newPlans := lb.Plan(serviceSpecs(next), d.availability(next))
	lines := configDiff(running, next, planned, newPlans, firewallFor(running), firewallFor(next))
	if len(lines) == 0 {
		lines = []string{"no change: a reload would leave the data plane as it is"}
	}
	return control.Response{OK: true, Lines: lines}
}

// configDiff lists, one line each, what turning old into new changes:
// services and backends added, removed and changed, and for each service
// that stays the share of slots (so of new flows, and of clients pinned by
// persistence or a hash) that would move to another backend.
func configDiff(old, new *config.Config, oldPlans map[string]lb.Service, newPlans []lb.Service, oldFW, newFW lb.Firewall) []string {
	var out []string
	oldSvc := map[string]*config.Service{}
	for i := range old.Services {
		oldSvc[old.Services[i].Name] = &old.Services[i]
	}
	newSvc := map[string]*config.Service{}
	for i := range new.Services {
		newSvc[new.Services[i].Name] = &new.Services[i]
	}
	for _, s := range old.Services {
		if newSvc[s.Name] == nil {
			out = append(out, fmt.Sprintf("- service %s %s: removed (its established flows live on until they end)", s.Name, endpointOf(&s)))
		}
	}
	for i := range newPlans {
		np := &newPlans[i]
		s := newSvc[np.Name]
		o := oldSvc[np.Name]
		if o == nil {
			out = append(out, fmt.Sprintf("+ service %s %s: added, %s, %d backends", s.Name, endpointOf(s), s.Scheduler, len(s.Backends)))
			continue
		}
		var ch []string
		ch = append(ch, fieldChanges(o, s)...)
		ch = append(ch, backendChanges(o, s)...)
		op := oldPlans[np.Name]
		moved, total := slotsMoved(op.Slots, np.Slots)
		if len(ch) == 0 && moved == 0 {
			continue
		}
		out = append(out, fmt.Sprintf("~ service %s %s:", s.Name, endpointOf(s)))
		for _, c := range ch {
			out = append(out, "    "+c)
		}
		if total > 0 && moved > 0 {
			out = append(out, fmt.Sprintf("    slots: %d of %d move to another backend (%.1f%% of new flows and of pinned clients)",
				moved, total, 100*float64(moved)/float64(total)))
			if sh := shareChanges(op.Slots, np.Slots); sh != "" {
				out = append(out, "    share of new flows: "+sh)
			}
		}
	}
	if !reflect.DeepEqual(oldFW, newFW) {
		out = append(out, fmt.Sprintf("~ firewall: %s -> %s", describeFW(oldFW), describeFW(newFW)))
	}
	return out
}

func endpointOf(s *config.Service) string {
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(s.VIPAddr, uint16(s.Port)), s.Protocol)
}

// fieldChanges compares the per-service keys that change behaviour.
func fieldChanges(o, n *config.Service) []string {
	var out []string
	cmp := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			out = append(out, fmt.Sprintf("%s: %v -> %v", key, show(a), show(b)))
		}
	}
	cmp("vip", o.VIPAddr, n.VIPAddr)
	cmp("port", o.Port, n.Port)
	cmp("protocol", o.Protocol, n.Protocol)
	cmp("scheduler", o.Scheduler, n.Scheduler)
	cmp("snat", o.SNATEnabled(), n.SNATEnabled())
	cmp("persistence", o.Persistence.D(), n.Persistence.D())
	cmp("slots", o.Slots, n.Slots)
	cmp("on_empty", o.OnEmpty, n.OnEmpty)
	cmp("down_action", o.DownAction, n.DownAction)
	cmp("slow_start", o.SlowStart.D(), n.SlowStart.D())
	cmp("interface", o.Interface, n.Interface)
	cmp("health", o.Health, n.Health)
	cmp("max_connections", o.MaxConnections, n.MaxConnections)
	cmp("new_connection_rate", o.NewConnRate.String(), n.NewConnRate.String())
	cmp("burst", o.Burst, n.Burst)
	cmp("per_client_rate", o.ClientRate.String(), n.ClientRate.String())
	cmp("per_client_connections", o.PerClientConnections, n.PerClientConnections)
	cmp("allow", o.AllowPrefixes, n.AllowPrefixes)
	cmp("deny", o.DenyPrefixes, n.DenyPrefixes)
	return out
}

func show(v any) string {
	switch x := v.(type) {
	case *config.Health:
		if x == nil {
			return "none"
		}
		return x.Type + " check"
	case string:
		if x == "" {
			return `""`
		}
	case []netip.Prefix:
		if len(x) == 0 {
			return "none"
		}
	}
	return fmt.Sprint(v)
}

func backendChanges(o, n *config.Service) []string {
	var out []string
	old := map[netip.AddrPort]config.Backend{}
	for _, b := range o.Backends {
		old[b.Addr] = b
	}
	seen := map[netip.AddrPort]bool{}
	for _, b := range n.Backends {
		seen[b.Addr] = true
		ob, ok := old[b.Addr]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("+ backend %s weight %d%s", b.Addr, b.EffectiveWeight(), backupWord(b.Backup)))
		case ob.EffectiveWeight() != b.EffectiveWeight() || ob.Backup != b.Backup || ob.MaxConnections != b.MaxConnections:
			out = append(out, fmt.Sprintf("~ backend %s weight %d%s -> %d%s", b.Addr, ob.EffectiveWeight(), backupWord(ob.Backup), b.EffectiveWeight(), backupWord(b.Backup)))
		case !reflect.DeepEqual(ob.Health, b.Health):
			out = append(out, fmt.Sprintf("~ backend %s: its own health check changes", b.Addr))
		}
	}
	for _, b := range o.Backends {
		if !seen[b.Addr] {
			out = append(out, fmt.Sprintf("- backend %s (its established flows live on)", b.Addr))
		}
	}
	return out
}

func backupWord(b bool) string {
	if b {
		return " (backup)"
	}
	return ""
}

// slotsMoved counts the slots whose backend differs. Tables of different
// sizes compare slot by slot up to the shorter one, and every extra slot
// counts as moved.
func slotsMoved(old, new []netip.AddrPort) (moved, total int) {
	total = max(len(old), len(new))
	for i := 0; i < total; i++ {
		if i >= len(old) || i >= len(new) || old[i] != new[i] {
			moved++
		}
	}
	return moved, total
}

func describeFW(fw lb.Firewall) string {
	if !fw.Enabled {
		return "off"
	}
	var parts []string
	parts = append(parts, "wan "+strings.Join(fw.WAN, ","))
	ports := slices.Clone(fw.ManagementPorts)
	parts = append(parts, fmt.Sprintf("management ports %v", ports))
	if len(fw.AdminNetworks) > 0 {
		parts = append(parts, fmt.Sprintf("admin %v", fw.AdminNetworks))
	}
	if len(fw.AllowForward) > 0 {
		parts = append(parts, fmt.Sprintf("forward %v", fw.AllowForward))
	}
	return "on (" + strings.Join(parts, "; ") + ")"
}

// shareChanges spells each backend's share of the slots before and after,
// for the backends whose share changes.
func shareChanges(old, new []netip.AddrPort) string {
	count := func(s []netip.AddrPort) map[netip.AddrPort]int {
		m := map[netip.AddrPort]int{}
		for _, a := range s {
			m[a]++
		}
		return m
	}
	oc, nc := count(old), count(new)
	var addrs []netip.AddrPort
	for a := range oc {
		addrs = append(addrs, a)
	}
	for a := range nc {
		if _, ok := oc[a]; !ok {
			addrs = append(addrs, a)
		}
	}
	slices.SortFunc(addrs, func(a, b netip.AddrPort) int { return a.Compare(b) })
	pct := func(n, of int) float64 {
		if of == 0 {
			return 0
		}
		return 100 * float64(n) / float64(of)
	}
	var parts []string
	for _, a := range addrs {
		o, n := pct(oc[a], len(old)), pct(nc[a], len(new))
		if fmt.Sprintf("%.1f", o) != fmt.Sprintf("%.1f", n) {
			parts = append(parts, fmt.Sprintf("%s %.1f%% -> %.1f%%", a, o, n))
		}
	}
	return strings.Join(parts, ", ")
}
