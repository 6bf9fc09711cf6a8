package importer

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// keepalived's defaults (keepalived/check/check_data.c, check_api.c and the
// keepalived.conf(5) man page).
const (
	kaDelayLoop      = 60 * time.Second // delay_loop
	kaConnectTimeout = 5 * time.Second  // connect_timeout
	kaPersistence    = 6 * time.Minute  // persistence_timeout without a value
	kaScheduler      = "wlc"            // IPVS_DEF_SCHED
)

// Keepalived converts the LVS part of a keepalived.conf. name is used in
// warnings and errors, data is the file's text; relative includes are
// resolved against dir. Syntax errors (unbalanced braces, unterminated
// quotes, unreadable includes) are errors; everything else that does not
// map is a warning in the Result.
func Keepalived(name string, data []byte, dir string, opt Options) (*Result, error) {
	c := &converter{opt: opt, res: &Result{Source: name, Kind: "keepalived"}}
	lx := newLexer(c.warn)
	lx.configID = opt.ConfigID
	if err := lx.file(name, data, dir, 0); err != nil {
		return nil, err
	}
	nodes, err := parse(lx.toks)
	if err != nil {
		return nil, err
	}
	groups := map[string]*node{}
	for _, n := range nodes {
		if n.key == "virtual_server_group" && n.block {
			groups[n.arg(0)] = n
		}
	}
	for _, n := range nodes {
		switch n.key {
		case "virtual_server":
			c.virtualServer(n, groups)
		case "virtual_server_group":
			// expanded where a virtual_server uses it
		case "global_defs":
			c.globalDefs(n)
		default:
			c.warn(n.pos, "%s: not imported: %s", strings.TrimSpace(n.key+" "+strings.Join(n.args, " ")), topLevelReason(n.key))
		}
	}
	c.finish()
	return c.res, nil
}

// KeepalivedFile reads path and converts it; includes are relative to it.
func KeepalivedFile(path string, opt Options) (*Result, error) {
	lx := newLexer(nil)
	data, err := lx.readFn(path)
	if err != nil {
		return nil, err
	}
	return Keepalived(path, data, filepath.Dir(path), opt)
}

func topLevelReason(key string) string {
	switch key {
	case "vrrp_instance", "vrrp_sync_group":
		return "lbd has no VRRP; route the VIPs to the appliance, or name an [[interface]] in the service (`interface = ...`) so lbd adds the VIP itself. No second appliance takes over"
	case "vrrp_script", "vrrp_track_process", "track_file", "garp_group":
		return "lbd has no VRRP, so nothing to track"
	case "static_ipaddress":
		return "put addresses in [[interface]] addresses"
	case "static_routes":
		return "put routes in [[interface.route]]"
	case "SSL":
		return "lbd's https check presents no client certificate"
	}
	return "not part of the load-balancer configuration lbd imports"
}

// globalDefs keeps the one LVS setting lbd has (lvs_timeouts -> conntrack
// timeouts) and names the rest as ignored, in one warning.
func (c *converter) globalDefs(n *node) {
	var ignored []string
	for _, k := range n.children {
		switch k.key {
		case "lvs_timeouts":
			c.lvsTimeouts(k)
		case "lvs_sync_daemon":
			c.warn(k.pos, "lvs_sync_daemon: not imported: lbd does not sync connection state between appliances")
		default:
			ignored = append(ignored, k.key)
		}
	}
	if len(ignored) > 0 {
		c.warn(n.pos, "global_defs: %s not imported (no lbd equivalent: notification, router ids, VRRP settings)", strings.Join(ignored, ", "))
	}
}

// lvsTimeouts reads `lvs_timeouts tcp N tcpfin N udp N` (seconds).
func (c *converter) lvsTimeouts(n *node) {
	for i := 0; i+1 < len(n.args); i += 2 {
		d, ok := c.timer(n, n.args[i+1])
		if !ok {
			continue
		}
		switch n.args[i] {
		case "tcp":
			c.res.Conntrack.TCPEstablished = d
		case "tcpfin":
			c.res.Conntrack.TCPFinWait = d
		case "udp":
			c.res.Conntrack.UDP = d
		default:
			c.warn(n.pos, "lvs_timeouts %s: unknown timeout, ignored", n.args[i])
		}
	}
	c.warn(n.pos, "lvs_timeouts: written as [conntrack] timeouts, which apply to every tracked flow of the appliance, not only load-balanced ones")
}

// timer reads a keepalived <TIMER>: seconds, fractions allowed.
func (c *converter) timer(n *node, s string) (time.Duration, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1e7 {
		c.warn(n.pos, "%s %s: not a time in seconds; ignored", n.key, s)
		return 0, false
	}
	return time.Duration(f*1e6+0.5) * time.Microsecond, true
}

func (c *converter) integer(n *node, s string, max int) (int, bool) {
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 || v > max {
		c.warn(n.pos, "%s %s: expected a number from 0 to %d; ignored", n.key, s, max)
		return 0, false
	}
	return v, true
}

// checkTimers are the settings a virtual server passes down to its real
// servers and a real server to its checkers; nil = inherit.
type checkTimers struct {
	delayLoop, connectTimeout, delayBeforeRetry *time.Duration
	retry                                       *int
	virtualhost                                 *string
	alpha                                       bool
	inhibit                                     bool
}

// timerKey handles a keyword shared by the three levels; false when n is
// not one of them.
func (c *converter) timerKey(n *node, t *checkTimers) bool {
	switch n.key {
	case "delay_loop", "connect_timeout", "delay_before_retry":
		if d, ok := c.timer(n, n.arg(0)); ok {
			switch n.key {
			case "delay_loop":
				t.delayLoop = &d
			case "connect_timeout":
				t.connectTimeout = &d
			default:
				t.delayBeforeRetry = &d
			}
		}
	case "retry", "nb_get_retry":
		if v, ok := c.integer(n, n.arg(0), 1<<20); ok {
			t.retry = &v
		}
	case "virtualhost":
		h := n.arg(0)
		t.virtualhost = &h
	case "alpha":
		t.alpha = n.arg(0) == "" || isTrue(n.arg(0))
		if t.alpha {
			c.warn(n.pos, "alpha: lbd starts backends up and takes them down after `fall` failed checks (keepalived's alpha starts them down)")
		}
	case "inhibit_on_failure":
		t.inhibit = n.arg(0) == "" || isTrue(n.arg(0))
	case "warmup":
		// lbd already spreads the first checks over the interval.
	default:
		return false
	}
	return true
}

func isTrue(s string) bool {
	switch strings.ToLower(s) {
	case "on", "true", "yes", "1":
		return true
	}
	return false
}

func (t checkTimers) inherit(parent checkTimers) checkTimers {
	if t.delayLoop == nil {
		t.delayLoop = parent.delayLoop
	}
	if t.connectTimeout == nil {
		t.connectTimeout = parent.connectTimeout
	}
	if t.delayBeforeRetry == nil {
		t.delayBeforeRetry = parent.delayBeforeRetry
	}
	if t.retry == nil {
		t.retry = parent.retry
	}
	if t.virtualhost == nil {
		t.virtualhost = parent.virtualhost
	}
	t.alpha = t.alpha || parent.alpha
	t.inhibit = t.inhibit || parent.inhibit
	return t
}

// vsSpec is a virtual_server block before it is bound to an address (a
// virtual_server_group makes several services of one block).
type vsSpec struct {
	n           *node
	sched       string
	schedPos    Pos
	flags       []string
	protocol    string
	snat        bool
	persistence time.Duration
	timers      checkTimers
	weight      int
	backends    []*Backend
	name        string
	ok          bool
}

func (c *converter) virtualServer(n *node, groups map[string]*node) {
	label := "virtual_server " + strings.Join(n.args, " ")
	if !n.block {
		c.warn(n.pos, "%s: no { } block; skipped", label)
		return
	}
	switch n.arg(0) {
	case "fwmark":
		c.warn(n.pos, "%s: not imported: lbd matches VIP, protocol and port, not firewall marks; write one [[service]] per VIP:port the mark selected", label)
		return
	}
	spec := c.vsBlock(n)
	if !spec.ok {
		return
	}
	if n.arg(0) == "group" {
		g := groups[n.arg(1)]
		if g == nil {
			c.warn(n.pos, "%s: no virtual_server_group %q; skipped", label, n.arg(1))
			return
		}
		for _, e := range g.children {
			c.groupEntry(spec, e)
		}
		return
	}
	c.addService(spec, n.pos, n.arg(0), n.arg(1))
}

// groupEntry adds the services of one virtual_server_group line: an
// address (or a range a.b.c.d-e / a::1-9) and a port.
func (c *converter) groupEntry(spec *vsSpec, e *node) {
	if e.key == "fwmark" {
		c.warn(e.pos, "virtual_server_group fwmark %s: not imported: lbd does not match firewall marks", e.arg(0))
		return
	}
	addrs, err := expandRange(e.key)
	if err != nil {
		c.warn(e.pos, "virtual_server_group entry %q: %v; skipped", e.key, err)
		return
	}
	for _, a := range addrs {
		c.addService(spec, e.pos, a.String(), e.arg(0))
	}
}

// maxRange bounds a group range: lbd has one service per address, so a
// /16 would be 65,536 services nobody meant.
const maxRange = 256

func expandRange(s string) ([]netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		p = p.Masked()
		if p.Addr().BitLen()-p.Bits() > 8 {
			return nil, fmt.Errorf("more than %d addresses", maxRange)
		}
		var out []netip.Addr
		for a := p.Addr(); p.Contains(a); a = a.Next() {
			out = append(out, a)
		}
		return out, nil
	}
	first, last, isRange := strings.Cut(s, "-")
	a, err := netip.ParseAddr(first)
	if err != nil {
		return nil, fmt.Errorf("not an IP address")
	}
	if !isRange {
		return []netip.Addr{a}, nil
	}
	// The end is either a whole address or the last group of the first.
	end, err := netip.ParseAddr(last)
	if err != nil {
		sep := "."
		if a.Is6() {
			sep = ":"
		}
		i := strings.LastIndex(first, sep)
		end, err = netip.ParseAddr(first[:i+1] + last)
		if err != nil {
			return nil, fmt.Errorf("bad range end %q", last)
		}
	}
	var out []netip.Addr
	for x := a; x.Compare(end) <= 0; x = x.Next() {
		if len(out) == maxRange {
			return nil, fmt.Errorf("more than %d addresses", maxRange)
		}
		out = append(out, x)
		if !x.Next().IsValid() {
			break
		}
	}
	return out, nil
}

func (c *converter) vsBlock(n *node) *vsSpec {
	s := &vsSpec{n: n, sched: "", protocol: "", snat: false, weight: 1, ok: true}
	label := "virtual_server " + strings.Join(n.args, " ")
	var rsNodes []*node
	var sorry *node
	for _, k := range n.children {
		if c.timerKey(k, &s.timers) {
			continue
		}
		switch k.key {
		case "lb_algo", "lvs_sched":
			s.sched, s.schedPos = k.arg(0), k.pos
		case "flag-1", "flag-2", "flag-3", "sh-port", "sh-fallback", "mh-port", "mh-fallback", "ops", "hashed":
			s.flags = append(s.flags, k.key)
		case "lb_kind", "lvs_method":
			s.snat = c.method(k, label)
		case "protocol":
			switch strings.ToUpper(k.arg(0)) {
			case "TCP":
				s.protocol = "tcp"
			case "UDP":
				s.protocol = "udp"
			default:
				c.warn(k.pos, "%s: protocol %s: lbd balances TCP and UDP only; skipped", label, k.arg(0))
				s.ok = false
				return s
			}
		case "persistence_timeout":
			s.persistence = kaPersistence
			if k.arg(0) != "" {
				if d, ok := c.timer(k, k.arg(0)); ok {
					s.persistence = d.Truncate(time.Second)
				}
			}
		case "persistence_granularity":
			c.warn(k.pos, "persistence_granularity %s: lbd keeps persistence per client address (/32, /128), not per network", k.arg(0))
		case "persistence_engine":
			c.warn(k.pos, "persistence_engine %s: lbd has no persistence engines; persistence is per client address", k.arg(0))
		case "weight":
			if v, ok := c.integer(k, k.arg(0), 1<<31-1); ok {
				s.weight = v
			}
		case "real_server":
			rsNodes = append(rsNodes, k)
		case "sorry_server":
			sorry = k
		case "quorum", "hysteresis", "quorum_up", "quorum_down":
			c.warn(k.pos, "%s: lbd has no quorum; a service serves while any backend is up, then its backup backends (sorry_server)", k.key)
		case "omega":
			c.warn(k.pos, "omega: lbd runs no quorum or notify scripts at shutdown")
		case "ha_suspend":
			c.warn(k.pos, "ha_suspend: lbd checks backends whether or not the VIP is on this machine")
		case "smtp_alert":
			c.warn(k.pos, "smtp_alert: lbd sends no mail; watch /metrics (lbd_backend_state) instead")
		case "snmp_name":
			s.name = k.arg(0)
		case "ip_family", "sorry_server_inhibit":
			// ip_family only matters to fwmark services; a sorry server
			// is a backup backend, whose failure lbd handles like any.
		case "sorry_server_lvs_method":
			c.method(k, label+" sorry_server")
		default:
			c.warn(k.pos, "%s: unknown keyword %q ignored", label, k.key)
		}
	}
	if s.protocol == "" {
		// keepalived warns and uses UDP (the kernel's default for 0).
		c.warn(n.pos, "%s: no protocol; keepalived defaults to UDP, so does this import", label)
		s.protocol = "udp"
	}
	if s.sched == "" {
		c.warn(n.pos, "%s: no lb_algo; keepalived defaults to %s", label, kaScheduler)
		s.sched, s.schedPos = kaScheduler, n.pos
	}
	for _, r := range rsNodes {
		if b := c.realServer(s, r); b != nil {
			s.backends = append(s.backends, b)
		}
	}
	if sorry != nil {
		b := &Backend{Pos: sorry.pos, Weight: 1, Backup: true, sorry: true, Notes: []string{"keepalived sorry_server: used only while no other backend is up"}}
		if c.address(sorry, b) {
			s.backends = append(s.backends, b)
		}
	}
	return s
}

// method maps lb_kind/lvs_method; it returns the snat setting.
func (c *converter) method(k *node, label string) bool {
	switch strings.ToUpper(k.arg(0)) {
	case "NAT":
		return false
	case "DR", "TUN":
		c.warn(k.pos, "%s: %s %s: lbd is NAT only; written as full NAT (snat = true), so the backends need no VIP on loopback and see the appliance's address instead of the client's", label, k.key, k.arg(0))
		return true
	}
	c.warn(k.pos, "%s: %s %q: unknown forwarding method; using NAT", label, k.key, k.arg(0))
	return false
}

// address reads `real_server|sorry_server IP [PORT]` into b.
func (c *converter) address(n *node, b *Backend) bool {
	a, err := netip.ParseAddr(n.arg(0))
	if err != nil || a.Zone() != "" {
		c.warn(n.pos, "%s %s: not an IP address (lbd does not resolve names); skipped", n.key, n.arg(0))
		return false
	}
	b.Addr = a.Unmap()
	if n.arg(1) != "" {
		p, err := strconv.Atoi(n.arg(1))
		if err != nil || p < 1 || p > 65535 {
			c.warn(n.pos, "%s %s %s: bad port; skipped", n.key, n.arg(0), n.arg(1))
			return false
		}
		b.Port = p
	}
	return true
}

func (c *converter) realServer(s *vsSpec, n *node) *Backend {
	b := &Backend{Pos: n.pos, Weight: s.weight}
	if !c.address(n, b) {
		return nil
	}
	label := "real_server " + strings.Join(n.args, " ")
	var t checkTimers
	var checkers []*node
	for _, k := range n.children {
		if c.timerKey(k, &t) {
			continue
		}
		switch k.key {
		case "weight":
			if v, ok := c.integer(k, k.arg(0), 1<<31-1); ok {
				b.Weight = v
			}
		case "lvs_method":
			if c.method(k, label) {
				s.snat = true
			}
		case "uthreshold":
			if v, ok := c.integer(k, k.arg(0), 1<<32-1); ok {
				b.MaxConnections = v
			}
		case "lthreshold":
			c.warn(k.pos, "%s: lthreshold: lbd gives a full backend new flows again as soon as it is below max_connections", label)
		case "notify_up", "notify_down":
			c.warn(k.pos, "%s: %s: lbd runs no notify scripts; watch /metrics (lbd_backend_state) or the journal", label, k.key)
		case "smtp_alert":
			c.warn(k.pos, "%s: smtp_alert: lbd sends no mail; watch /metrics (lbd_backend_state) instead", label)
		case "snmp_name":
			c.warn(k.pos, "%s: snmp_name: lbd has no SNMP; /metrics names backends by address", label)
		case "HTTP_GET", "SSL_GET", "TCP_CHECK", "MISC_CHECK", "SMTP_CHECK", "DNS_CHECK", "UDP_CHECK", "PING_CHECK", "FILE_CHECK", "BFD_CHECK":
			checkers = append(checkers, k)
		default:
			c.warn(k.pos, "%s: unknown keyword %q ignored", label, k.key)
		}
	}
	t = t.inherit(s.timers)
	if t.inhibit {
		b.Notes = append(b.Notes, "inhibit_on_failure: a down backend gets no new flows and keeps its established ones (down_action)")
	}
	var chosen *Health
	for _, k := range checkers {
		h := c.checker(k, t)
		switch {
		case h == nil:
		case chosen == nil:
			chosen = h
		default:
			c.warn(k.pos, "%s: %s: lbd runs one check per backend; keeping the first (keepalived needs all to pass)", label, k.key)
		}
	}
	b.Health = chosen
	return b
}
