package config

import (
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Limits users may rely on.
const (
	MaxWeight = 1000
	MaxSlots  = 65521 // largest prime below 2^16
	nameMax   = 48
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Schedulers lbd knows.
var Schedulers = []string{"rr", "random", "sh", "mh", "lc", "wlc"}

type validator struct {
	tree *value
	errs Errors
}

func reflectValue(c *Config) reflect.Value { return reflect.ValueOf(c).Elem() }

// at finds where a key path (service[1].backend[0].weight) was written by
// walking the tree, falling back to its closest parent (a missing key is
// reported at the table that lacks it). Only errors call it, so the walk
// costs nothing on a valid config.
func (v *validator) at(path string) Pos {
	pos, _ := v.find(path)
	return pos
}

// written says whether the file sets the key path itself.
func (v *validator) written(path string) bool {
	_, exact := v.find(path)
	return exact
}

// find walks the tree along path: the position of the deepest node found,
// and whether that node is the path's own.
func (v *validator) find(path string) (found Pos, exact bool) {
	cur := v.tree
	for path != "" && cur != nil {
		var seg string
		seg, path, _ = strings.Cut(path, ".")
		key, rest, _ := strings.Cut(seg, "[")
		if key != "" {
			if cur.kind != kindTable {
				return found, false
			}
			if cur = cur.tbl.get(key); cur == nil {
				return found, false
			}
			found = cur.pos
		}
		// Zero or more indexes: "backend[0]", "command[]" (the array itself).
		for rest != "" && cur != nil {
			idx, after, _ := strings.Cut(rest, "]")
			rest = strings.TrimPrefix(after, "[")
			if idx == "" {
				continue
			}
			i, err := strconv.Atoi(idx)
			if err != nil || cur.kind != kindArray || i < 0 || i >= len(cur.arr) {
				return found, false
			}
			cur = cur.arr[i]
			found = cur.pos
		}
	}
	return found, cur != nil
}

func (v *validator) errorf(path, format string, args ...any) {
	v.errs = append(v.errs, &Error{Pos: v.at(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func sortErrors(es Errors) {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i].Pos, es[j].Pos
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

func oneOf(s string, allowed []string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}

func (v *validator) config(c *Config) {
	v.appliance(&c.Appliance)
	v.conntrack(&c.Conntrack)
	if r := c.Kernel.RPFilter; r != nil && (*r < 0 || *r > 2) {
		v.errorf("kernel.rp_filter", "%d out of range; expected 0 (off), 1 (strict) or 2 (loose)", *r)
	}
	if r := c.Kernel.TCPSyncookies; r != nil && (*r < 0 || *r > 2) {
		v.errorf("kernel.tcp_syncookies", "%d out of range; expected 0, 1 or 2", *r)
	}
	ifaces := map[string]bool{}
	for i := range c.Interfaces {
		p := fmt.Sprintf("interface[%d]", i)
		v.iface(&c.Interfaces[i], p)
		name := c.Interfaces[i].Name
		if name != "" && ifaces[name] {
			v.errorf(p+".name", "duplicate interface name %q", name)
		}
		ifaces[name] = true
	}
	v.firewall(&c.Firewall, ifaces)
	names := map[string]string{}
	type endpoint struct {
		vip   netip.Addr
		proto string
		port  int
	}
	endpoints := map[endpoint]int{}
	for i := range c.Services {
		p := "service[" + strconv.Itoa(i) + "]"
		s := &c.Services[i]
		v.service(s, p, ifaces, len(c.Interfaces) > 0)
		if s.Name != "" {
			if prev, ok := names[s.Name]; ok {
				v.errorf(p+".name", "duplicate service name %q (first used at %s)", s.Name, prev)
			} else {
				names[s.Name] = p
			}
		}
		if s.VIPAddr.IsValid() && s.Port > 0 {
			key := endpoint{s.VIPAddr, s.Protocol, s.Port}
			if prev, ok := endpoints[key]; ok {
				v.errorf(p+".vip", "%s %s port %d is already used by service[%d] (%q)", s.VIPAddr, s.Protocol, s.Port, prev, c.Services[prev].Name)
			} else {
				endpoints[key] = i
			}
		}
	}
	v.ha(c)
	v.bgp(c)
}

func (v *validator) appliance(a *Appliance) {
	if a.StatusListen != "" {
		if _, err := netip.ParseAddrPort(a.StatusListen); err != nil {
			v.errorf("appliance.status_listen", "bad address %q; expected ip:port such as \"192.0.2.1:9100\" or \"[2001:db8::1]:9100\"", a.StatusListen)
		}
	}
	// state_dir stays empty when unset: the daemon resolves the state
	// directory once, with LBD_STATE_DIR first (daemon.resolveStateDir).
	if a.Hostname != "" && !nameRE.MatchString(a.Hostname) {
		v.errorf("appliance.hostname", "bad hostname %q; expected letters, digits, '-', '.'", a.Hostname)
	}
}

func (v *validator) conntrack(c *Conntrack) {
	if c.Max < 0 || c.Max > 1<<26 {
		v.errorf("conntrack.max", "%d out of range; expected 0 (kernel default) to %d", c.Max, 1<<26)
	}
	for _, d := range []struct {
		key string
		val Duration
	}{{"tcp_established_timeout", c.TCPEstablishedTimeout}, {"tcp_time_wait_timeout", c.TCPTimeWaitTimeout},
		{"tcp_close_wait_timeout", c.TCPCloseWaitTimeout}, {"tcp_fin_wait_timeout", c.TCPFinWaitTimeout},
		{"udp_timeout", c.UDPTimeout}, {"udp_stream_timeout", c.UDPStreamTimeout}} {
		switch {
		case d.val != 0 && d.val.D() < time.Second:
			v.errorf("conntrack."+d.key, "%s is too short; expected at least 1s", d.val.D())
		case d.val.D() > maxSysctlSeconds*time.Second:
			v.errorf("conntrack."+d.key, "%s is too long for the kernel (an int of jiffies); expected at most %s", d.val.D(), maxSysctlSeconds*time.Second)
		}
	}
}

func (v *validator) firewall(f *Firewall, ifaces map[string]bool) {
	for i, n := range f.WAN {
		if !ifaces[n] {
			v.errorf(fmt.Sprintf("firewall.wan[%d]", i), "no [[interface]] named %q", n)
		}
	}
	f.AdminPrefixes = v.prefixes(f.AdminNetworks, "firewall.admin_networks")
	f.ForwardPrefixes = v.prefixes(f.AllowForward, "firewall.allow_forward")
}

func (v *validator) prefixes(list []string, path string) []netip.Prefix {
	var out []netip.Prefix
	for i, s := range list {
		p, err := parsePrefix(s)
		if err != nil {
			v.errorf(fmt.Sprintf("%s[%d]", path, i), "bad network %q; expected an address or CIDR such as \"203.0.113.0/24\" or \"2001:db8::/32\"", s)
			continue
		}
		out = append(out, p)
	}
	return out
}

func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, err
	}
	return p.Masked(), nil
}

func (v *validator) iface(n *Interface, p string) {
	if n.Name == "" {
		v.errorf(p, "missing key \"name\"; expected a NIC name such as \"wan\"")
	} else if len(n.Name) > 15 || !nameRE.MatchString(n.Name) {
		v.errorf(p+".name", "bad interface name %q; expected at most 15 letters, digits, '-', '_', '.'", n.Name)
	}
	switch {
	case n.MAC == "" && n.Device == "":
		v.errorf(p, "interface %q needs \"mac\" or \"device\" to find the NIC", n.Name)
	case n.MAC != "" && n.Device != "":
		v.errorf(p+".device", "give either \"mac\" or \"device\", not both")
	case n.MAC != "":
		if _, err := net.ParseMAC(n.MAC); err != nil {
			v.errorf(p+".mac", "bad MAC address %q; expected six hex bytes such as \"52:54:00:00:00:01\"", n.MAC)
		}
	}
	if n.MTU != 0 && (n.MTU < 68 || n.MTU > 65535) {
		v.errorf(p+".mtu", "%d out of range; expected 68 to 65535", n.MTU)
	}
	for i, a := range n.Addresses {
		pf, err := netip.ParsePrefix(a)
		if err != nil {
			v.errorf(fmt.Sprintf("%s.addresses[%d]", p, i), "bad address %q; expected address/prefix such as \"192.0.2.1/24\"", a)
			continue
		}
		n.Prefixes = append(n.Prefixes, pf)
	}
	if n.Gateway != "" {
		g, err := netip.ParseAddr(n.Gateway)
		if err != nil {
			v.errorf(p+".gateway", "bad gateway %q; expected an IP address", n.Gateway)
		}
		n.GatewayAddr = g
	}
	if n.Gateway6 != "" {
		g, err := netip.ParseAddr(n.Gateway6)
		if err != nil || !g.Is6() {
			v.errorf(p+".gateway6", "bad gateway6 %q; expected an IPv6 address", n.Gateway6)
		}
		n.Gateway6Addr = g
	}
	for i := range n.Routes {
		r := &n.Routes[i]
		rp := fmt.Sprintf("%s.route[%d]", p, i)
		to, err := parsePrefix(r.To)
		if err != nil {
			v.errorf(rp+".to", "bad destination %q; expected a CIDR such as \"203.0.113.0/24\"", r.To)
		}
		via, err2 := netip.ParseAddr(r.Via)
		if err2 != nil {
			v.errorf(rp+".via", "bad next hop %q; expected an IP address", r.Via)
		}
		if err == nil && err2 == nil && to.Addr().Is4() != via.Is4() {
			v.errorf(rp+".via", "next hop %s is not of the family of %s", via, to)
		}
		r.ToPrefix, r.ViaAddr = to, via
	}
}

func (v *validator) service(s *Service, p string, ifaces map[string]bool, haveIfaces bool) {
	if s.Name == "" {
		v.errorf(p, "missing key \"name\"; every service needs a unique name")
	} else if len(s.Name) > nameMax || !nameRE.MatchString(s.Name) {
		v.errorf(p+".name", "bad name %q; expected up to %d letters, digits, '-', '_', '.'", s.Name, nameMax)
	}
	if s.VIP == "" {
		v.errorf(p, "missing key \"vip\"; expected the virtual IP clients connect to")
	} else if a, err := parseVIP(s.VIP); err != nil {
		v.errorf(p+".vip", "%v", err)
	} else {
		s.VIPAddr = a
	}
	if s.Port == 0 {
		v.errorf(p, "missing key \"port\"; expected the service port 1-65535")
	} else if s.Port < 1 || s.Port > 65535 {
		v.errorf(p+".port", "%d out of range; expected 1 to 65535", s.Port)
	}
	if s.Protocol == "" {
		s.Protocol = "tcp"
	} else if s.Protocol != "tcp" && s.Protocol != "udp" {
		v.errorf(p+".protocol", "unknown protocol %q; expected \"tcp\" or \"udp\"", s.Protocol)
	}
	if s.Scheduler == "" {
		s.Scheduler = "rr"
	} else if !oneOf(s.Scheduler, Schedulers) {
		v.errorf(p+".scheduler", "unknown scheduler %q; expected one of rr, random, sh, mh", s.Scheduler)
	}
	if s.Interface != "" && !ifaces[s.Interface] {
		if haveIfaces {
			v.errorf(p+".interface", "no [[interface]] named %q", s.Interface)
		} else {
			v.errorf(p+".interface", "no [[interface]] named %q (declare the NIC to let lbd add the VIP to it)", s.Interface)
		}
	}
	if s.Slots != 0 {
		switch {
		case s.Slots < 1 || s.Slots > MaxSlots:
			v.errorf(p+".slots", "%d out of range; expected 1 to %d", s.Slots, MaxSlots)
		case (s.Scheduler == "sh" || s.Scheduler == "mh") && !big.NewInt(int64(s.Slots)).ProbablyPrime(0):
			v.errorf(p+".slots", "%d is not prime; the consistent-hash schedulers need a prime slot count such as 251 or 1021", s.Slots)
		}
	}
	if d := s.Persistence.D(); d > 0 && d < minSetTimeout {
		v.errorf(p+".persistence", "%s is too short; expected 0 (off) or at least %s (the kernel keeps set timeouts in milliseconds)", d, minSetTimeout)
	}
	if s.OnEmpty == "" {
		s.OnEmpty = "reject"
	} else if s.OnEmpty != "reject" && s.OnEmpty != "drop" {
		v.errorf(p+".on_empty", "unknown value %q; expected \"reject\" or \"drop\"", s.OnEmpty)
	}
	switch s.DownAction {
	case "":
		s.DownAction = "keep"
		if s.Protocol == "udp" {
			s.DownAction = "flush"
		}
	case "keep", "flush":
	default:
		v.errorf(p+".down_action", "unknown value %q; expected \"keep\" or \"flush\"", s.DownAction)
	}
	if s.Health != nil {
		v.health(s.Health, p+".health")
	}
	v.protection(s, p)
	if len(s.Backends) == 0 {
		v.errorf(p, "service %q has no [[service.backend]]; expected at least one", s.Name)
	}
	addrs := map[netip.AddrPort]bool{}
	for i := range s.Backends {
		b := &s.Backends[i]
		v.backend(b, p, i, s)
		if b.Addr.IsValid() {
			if addrs[b.Addr] {
				v.errorf(backendPath(p, i)+".address", "duplicate backend %s", b.Addr)
			}
			addrs[b.Addr] = true
		}
	}
}

// backendPath is the path of a service's backend i, built only for an
// error or a health table (80,000 backends in a 10,000-service file).
func backendPath(service string, i int) string {
	return service + ".backend[" + strconv.Itoa(i) + "]"
}

func (v *validator) backend(b *Backend, sp string, i int, s *Service) {
	var p string
	path := func() string {
		if p == "" {
			p = backendPath(sp, i)
		}
		return p
	}
	if b.Address == "" {
		v.errorf(path(), "missing key \"address\"; expected host:port or host")
	} else if ap, err := parseBackendAddr(b.Address, s.Port); err != nil {
		v.errorf(path()+".address", "%v", err)
	} else {
		b.Addr = ap
		if s.VIPAddr.IsValid() && ap.Addr().Is4() != s.VIPAddr.Is4() {
			fam := "IPv4"
			if s.VIPAddr.Is6() {
				fam = "IPv6"
			}
			v.errorf(path()+".address", "backend %s is not %s like the VIP %s; lbd does not translate between families", ap.Addr(), fam, s.VIPAddr)
		}
	}
	if w := b.EffectiveWeight(); w < 0 || w > MaxWeight {
		v.errorf(path()+".weight", "%d out of range; expected 0 (drain) to %d", w, MaxWeight)
	}
	if n := b.MaxConnections; n < 0 || n > maxU32 {
		v.limit(path(), "max_connections", n)
	}
	if b.Health != nil {
		v.health(b.Health, path()+".health")
	}
}

// parseVIP reads a service address: IPv4 or IPv6, no zone; an IPv4-mapped
// IPv6 address is taken as the IPv4 address it maps.
func parseVIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("bad VIP %q; expected an IPv4 or IPv6 address", s)
	}
	return a.Unmap(), nil
}

// parseBackendAddr accepts "a.b.c.d", "a.b.c.d:port", "[v6]:port" and a bare v6.
func parseBackendAddr(s string, defPort int) (netip.AddrPort, error) {
	// A zone (fe80::1%eth0) would be dropped on the way to the kernel's
	// DNAT, which takes a bare address, so it is refused like a host name.
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		if ap.Port() == 0 {
			return ap, fmt.Errorf("port 0 in %q; expected 1 to 65535", s)
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil && a.Zone() == "" {
		return netip.AddrPortFrom(a.Unmap(), uint16(defPort)), nil
	}
	if host, port, err := net.SplitHostPort(s); err == nil {
		if _, err := netip.ParseAddr(host); err == nil {
			return netip.AddrPort{}, fmt.Errorf("bad port %q in %q; expected 1 to 65535", port, s)
		}
	}
	return netip.AddrPort{}, fmt.Errorf("bad address %q; expected IP or IP:port such as \"192.0.2.11:8080\" or \"[2001:db8::11]:8080\" (host names are not resolved)", s)
}

// Rate is a packets-per-interval limit such as "500/s".
type Rate struct {
	N    uint64
	Unit string // second, minute, hour
}

// IsSet reports whether a rate was configured.
func (r Rate) IsSet() bool { return r.N > 0 }

func (r Rate) String() string {
	if !r.IsSet() {
		return ""
	}
	return fmt.Sprintf("%d/%s", r.N, r.Unit[:1])
}

// ParseRate reads "500/s", "30/m", "1000/h" (also "500/second").
func ParseRate(s string) (Rate, error) {
	n, unit, ok := strings.Cut(strings.ReplaceAll(s, " ", ""), "/")
	num, err := strconv.ParseUint(n, 10, 32)
	if !ok || err != nil || num == 0 {
		return Rate{}, fmt.Errorf("bad rate %q; expected a count per unit such as \"500/s\", \"30/m\" or \"1000/h\"", s)
	}
	switch unit {
	case "s", "sec", "second":
		unit = "second"
	case "m", "min", "minute":
		unit = "minute"
	case "h", "hour":
		unit = "hour"
	default:
		return Rate{}, fmt.Errorf("bad rate unit %q in %q; expected s, m or h", unit, s)
	}
	return Rate{N: num, Unit: unit}, nil
}

func (v *validator) protection(s *Service, p string) {
	v.limit(p, "max_connections", s.MaxConnections)
	if s.NewConnectionRate != "" {
		s.NewConnRate = v.rate(p+".new_connection_rate", s.NewConnectionRate)
	}
	if s.PerClientRate != "" {
		s.ClientRate = v.rate(p+".per_client_rate", s.PerClientRate)
	}
	switch {
	case s.Burst < 0 || s.Burst > maxU32:
		v.errorf(p+".burst", "%d out of range; expected 0 (kernel default) to %d", s.Burst, maxU32)
	case s.Burst > 0 && s.NewConnectionRate == "" && s.PerClientRate == "":
		v.errorf(p+".burst", "only used with new_connection_rate or per_client_rate")
	default:
		v.checkLimit(p, "new_connection_rate", s.NewConnRate, s.Burst, false)
		v.checkLimit(p, "per_client_rate", s.ClientRate, s.Burst, true)
	}
	v.limit(p, "per_client_connections", s.PerClientConnections)
	if len(s.Allow) > 0 {
		s.AllowPrefixes = v.prefixes(s.Allow, p+".allow")
	}
	if len(s.Deny) > 0 {
		s.DenyPrefixes = v.prefixes(s.Deny, p+".deny")
	}
}

// limit checks a connection-count limit, key of the table at path: 0 means
// none. The kernel's "ct count" takes 32 bits. (The key's path is only
// built for an error: a file of 10,000 services checks 90,000 limits.)
func (v *validator) limit(path, key string, n int) {
	if n < 0 || n > maxU32 {
		v.errorf(path+"."+key, "%d out of range; expected 0 (no limit) to %d", n, maxU32)
	}
}

// rate parses an optional rate key; "" is no limit.
func (v *validator) rate(path, text string) Rate {
	if text == "" {
		return Rate{}
	}
	r, err := ParseRate(text)
	if err != nil {
		v.errorf(path, "%v", err)
	}
	return r
}
