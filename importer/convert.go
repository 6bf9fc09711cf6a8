package importer

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"lbd/config"
)

// addService binds a virtual_server block to one VIP and port.
func (c *converter) addService(spec *vsSpec, pos Pos, ip, port string) {
	label := strings.TrimSpace("virtual_server " + ip + " " + port)
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Zone() != "" {
		c.warn(pos, "%s: %q is not an IP address (lbd does not resolve names); skipped", label, ip)
		return
	}
	p, err := strconv.Atoi(port)
	if port == "" || p == 0 {
		c.warn(pos, "%s: no port (an all-ports persistent service); lbd balances one port per service: skipped", label)
		return
	}
	if err != nil || p < 0 || p > 65535 {
		c.warn(pos, "%s: bad port %q; skipped", label, port)
		return
	}
	s := &Service{Pos: pos, VIP: a.Unmap(), Port: p, Protocol: spec.protocol, SNAT: spec.snat,
		Persistence: spec.persistence, ipvsSched: spec.sched, flags: spec.flags, schedPos: spec.schedPos, nameHint: spec.name}
	for _, b0 := range spec.backends {
		b := *b0 // a group shares one block between services
		b.Notes = slices.Clone(b.Notes)
		s.Backends = append(s.Backends, &b)
	}
	c.res.Services = append(c.res.Services, s)
}

// finish turns the collected services into valid lbd services: backends
// checked against the VIP, scheduler mapped, weights in range, health
// checks shared where they can be, unique names.
func (c *converter) finish() {
	var kept []*Service
	endpoints := map[string]Pos{}
	names := map[string]bool{}
	for _, s := range c.res.Services {
		label := fmt.Sprintf("%s %s", s.Protocol, endpoint(s.VIP, s.Port))
		key := label
		if prev, ok := endpoints[key]; ok {
			c.warn(s.Pos, "%s is already imported from %s; skipped", label, prev)
			continue
		}
		c.backends(s, label)
		if len(s.Backends) == 0 {
			c.warn(s.Pos, "%s has no usable real server; skipped (lbd needs at least one backend)", label)
			continue
		}
		endpoints[key] = s.Pos
		c.scheduler(s)
		c.scaleWeights(s, label)
		shareHealth(s)
		s.Name = uniqueName(s, names)
		kept = append(kept, s)
	}
	c.res.Services = kept
	c.res.Warnings = dedupe(c.res.Warnings)
}

func endpoint(a netip.Addr, port int) string {
	return netip.AddrPortFrom(a, uint16(port)).String()
}

// backends drops what lbd would refuse: another address family than the
// VIP (only tunnelled IPVS servers may differ), duplicates (a sorry_server
// that is also a real server).
func (c *converter) backends(s *Service, label string) {
	seen := map[netip.AddrPort]bool{}
	var out []*Backend
	for _, b := range s.Backends {
		if b.Port == 0 {
			b.Port = s.Port
		}
		ap := netip.AddrPortFrom(b.Addr, uint16(b.Port))
		switch {
		case b.Addr.Is4() != s.VIP.Is4():
			c.warn(b.Pos, "%s: backend %s is not of the VIP's address family; lbd does not translate between IPv4 and IPv6: skipped", label, ap)
		case seen[ap] && b.sorry:
			c.warn(b.Pos, "%s: sorry_server %s is also a real server; lbd uses it as the real server only", label, ap)
		case seen[ap]:
			c.warn(b.Pos, "%s: real server %s appears twice; the second is skipped", label, ap)
		default:
			seen[ap] = true
			out = append(out, b)
		}
	}
	s.Backends = out
}

// scheduler maps the IPVS scheduler (and its flags) onto lbd's.
func (c *converter) scheduler(s *Service) {
	name, p := s.ipvsSched, s.schedPos
	flag := func(names ...string) bool {
		return slices.ContainsFunc(s.flags, func(f string) bool { return slices.Contains(names, f) })
	}
	leastConn := func(want string) {
		if c.opt.has(want) {
			s.Scheduler = want
			return
		}
		s.Scheduler = "rr"
		c.warn(p, "scheduler %s: this lbd has no least-connection scheduler; using rr (weighted round robin), which ignores how many connections a backend holds", name)
	}
	switch name {
	case "rr":
		s.Scheduler = "rr"
		c.equalWeights(s, "IPVS rr ignores weights")
	case "wrr":
		s.Scheduler = "rr" // lbd's rr is weighted
	case "lc":
		leastConn("lc")
		c.equalWeights(s, "IPVS lc ignores weights")
	case "wlc":
		leastConn("wlc")
	case "sed", "nq", "twos":
		if c.opt.has("wlc") {
			s.Scheduler = "wlc"
			c.warn(p, "scheduler %s: lbd has no %s; using wlc, the nearest (fewest connections per weight)", name, name)
		} else {
			s.Scheduler = "rr"
			c.warn(p, "scheduler %s: lbd has no %s nor a least-connection scheduler; using rr (weighted round robin)", name, name)
		}
	case "sh", "mh":
		// IPVS sh and mh hash the client address, plus its port with the
		// sh-port / mh-port flag (flag-2); lbd's sh hashes the address and
		// its mh the address and port.
		s.Scheduler = "sh"
		if flag(name+"-port", "flag-2") {
			s.Scheduler = "mh"
		}
	case "dh", "lblc", "lblcr":
		s.Scheduler = "sh"
		c.warn(p, "scheduler %s: lbd has no destination-locality scheduler (%s picks by destination address, for cache farms); using sh, which keeps each client on one backend", name, name)
	case "fo", "ovf":
		s.Scheduler = "rr"
		c.failover(s, name)
	default:
		s.Scheduler = "rr"
		c.warn(p, "scheduler %q: unknown; using rr", name)
	}
	for _, f := range s.flags {
		switch f {
		case "ops":
			c.warn(p, "ops: lbd schedules flows, not single UDP packets (no one-packet scheduling)")
		case "sh-port", "mh-port", "flag-2", "sh-fallback", "mh-fallback", "flag-1":
			// port: handled above; fallback: lbd always moves a down
			// backend's clients to the others, which is what it asks for.
		default:
			c.warn(p, "scheduler flag %s: no lbd equivalent; ignored", f)
		}
	}
}

// equalWeights sets every non-zero weight to 1 for the IPVS schedulers
// that ignore weights, so lbd's weighted schedulers behave the same.
func (c *converter) equalWeights(s *Service, why string) {
	changed := false
	for _, b := range s.Backends {
		if b.Weight > 1 {
			b.Weight, changed = 1, true
		}
	}
	if changed {
		s.Notes = append(s.Notes, why+" (0 aside); the weights are 1 here as they were in effect")
	}
}

// failover maps fo/ovf: the highest-weight backends take every new flow,
// the others become backups used only while none of them is up.
func (c *converter) failover(s *Service, name string) {
	top := 0
	for _, b := range s.Backends {
		if !b.Backup {
			top = max(top, b.Weight)
		}
	}
	levels := map[int]bool{}
	nTop := 0
	for _, b := range s.Backends {
		switch {
		case b.Backup || b.Weight == 0:
		case b.Weight < top:
			b.Backup = true
			levels[b.Weight] = true
		default:
			nTop++
		}
	}
	if name == "ovf" {
		c.warn(s.schedPos, "scheduler ovf: written as failover (highest weight first, the rest as backups); lbd does not overflow to the next backend when the first holds `weight` connections")
	} else if len(levels) > 1 || nTop > 1 {
		c.warn(s.schedPos, "scheduler fo: the highest-weight backends are primaries, the others backups; lbd spreads over all backups (and equal primaries) instead of picking the next-highest weight alone")
	}
	s.Notes = append(s.Notes, "IPVS "+name+": highest weight first; lower weights are backups")
}

// scaleWeights brings IPVS weights (up to 2^31-1) into lbd's 0-1000,
// keeping their ratios as closely as integers allow.
func (c *converter) scaleWeights(s *Service, label string) {
	top := 0
	for _, b := range s.Backends {
		top = max(top, b.Weight)
	}
	if top <= config.MaxWeight {
		return
	}
	for _, b := range s.Backends {
		if b.Weight > 0 {
			b.Weight = max(1, int((int64(b.Weight)*config.MaxWeight+int64(top)/2)/int64(top)))
		}
	}
	c.warn(s.Pos, "%s: weights scaled to lbd's 0-%d (largest was %d); small weights may round to 1", label, config.MaxWeight, top)
}

// shareHealth moves a check every checked backend has in common up to
// [service.health]. keepalived never checks a sorry server, so under a
// shared check it gets type "none" (always used).
func shareHealth(s *Service) {
	var common *Health
	for _, b := range s.Backends {
		if b.sorry {
			continue
		}
		if b.Health == nil || (common != nil && !common.equal(b.Health)) {
			return
		}
		common = b.Health
	}
	if common == nil {
		return
	}
	s.Health = common
	for _, b := range s.Backends {
		b.Health = nil
		if b.sorry {
			b.Health = &Health{Type: "none"}
		}
	}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

const nameMax = 48 // config's limit on service names

// uniqueName is keepalived's snmp_name when lbd accepts it, else
// PROTO-VIP-PORT (':' of IPv6 written as '_').
func uniqueName(s *Service, used map[string]bool) string {
	base := s.nameHint
	if !nameRE.MatchString(base) || len(base) > nameMax {
		base = fmt.Sprintf("%s-%s-%d", s.Protocol, strings.ReplaceAll(s.VIP.String(), ":", "_"), s.Port)
	}
	if len(base) > nameMax {
		base = base[:nameMax]
	}
	name := base
	for i := 2; used[name]; i++ {
		suffix := "-" + strconv.Itoa(i)
		name = base[:min(len(base), nameMax-len(suffix))] + suffix
	}
	used[name] = true
	return name
}

// dedupe folds identical warnings (the same check on ten real servers)
// into the first, listing the other lines.
func dedupe(ws []Warning) []Warning {
	var out []Warning
	idx := map[string]int{}
	more := map[int][]string{}
	for _, w := range ws {
		if i, ok := idx[w.Msg]; ok {
			at := strconv.Itoa(w.Pos.Line)
			if w.Pos.File != out[i].Pos.File {
				at = w.Pos.String()
			}
			more[i] = append(more[i], at)
			continue
		}
		idx[w.Msg] = len(out)
		out = append(out, w)
	}
	for i, lines := range more {
		out[i].Msg += fmt.Sprintf(" (also line %s)", strings.Join(lines, ", "))
	}
	// Warnings from the final pass come last; put them back in file
	// order (files in the order they were first read).
	file := map[string]int{}
	for _, w := range out {
		if _, ok := file[w.Pos.File]; !ok {
			file[w.Pos.File] = len(file)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Pos, out[j].Pos
		if a.File != b.File {
			return file[a.File] < file[b.File]
		}
		return a.Line < b.Line
	})
	return out
}
