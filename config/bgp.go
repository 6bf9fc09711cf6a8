package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// BGP is [bgp]: this appliance is one of a fleet behind an ECMP router and
// announces its VIPs over BGP (BIRD 2 speaks it; lbd writes BIRD's config
// and decides what is announced). Absent = no BGP.
type BGP struct {
	ASN           int64      `toml:"asn"`
	RouterID      string     `toml:"router_id"`
	SourceAddress string     `toml:"source_address"`
	AnnounceDelay *Duration  `toml:"announce_delay"`
	BFDInterval   *Duration  `toml:"bfd_interval"`
	BFDMultiplier int        `toml:"bfd_multiplier"`
	Neighbors     []Neighbor `toml:"neighbor"`

	RouterIDAddr netip.Addr `toml:"-"`
	SourceAddr   netip.Addr `toml:"-"`
}

// Neighbor is one [[bgp.neighbor]]: a router this appliance peers with.
type Neighbor struct {
	Address       string    `toml:"address"`
	ASN           int64     `toml:"asn"`
	BFD           bool      `toml:"bfd"`
	HoldTime      *Duration `toml:"hold_time"`
	Password      string    `toml:"password"`
	SourceAddress string    `toml:"source_address"`

	Addr       netip.Addr `toml:"-"`
	SourceAddr netip.Addr `toml:"-"` // this neighbor's or [bgp]'s of its family; may be invalid
}

// Defaults of [bgp] users may rely on (README).
const (
	DefaultAnnounceDelay = 2 * time.Second
	DefaultHoldTime      = 9 * time.Second
	// BFD: a packet every 100 ms, the session down after 5 missed (BIRD's
	// default multiplier): a dead appliance leaves the router in about
	// 0.5 s, and a busy one does not flap at the first late packet.
	DefaultBFDInterval   = 100 * time.Millisecond
	DefaultBFDMultiplier = 5
	maxPasswordLen       = 80 // TCP_MD5SIG_MAXKEYLEN
)

// Delay is announce_delay with its default.
func (b *BGP) Delay() time.Duration {
	if b.AnnounceDelay == nil {
		return DefaultAnnounceDelay
	}
	return b.AnnounceDelay.D()
}

// BFD is bfd_interval and bfd_multiplier with their defaults.
func (b *BGP) BFD() (interval time.Duration, multiplier int) {
	interval, multiplier = DefaultBFDInterval, DefaultBFDMultiplier
	if b.BFDInterval != nil {
		interval = b.BFDInterval.D()
	}
	if b.BFDMultiplier != 0 {
		multiplier = b.BFDMultiplier
	}
	return interval, multiplier
}

// Hold is hold_time with its default.
func (n *Neighbor) Hold() time.Duration {
	if n.HoldTime == nil {
		return DefaultHoldTime
	}
	return n.HoldTime.D()
}

// Announced reports whether the service's VIP is announced over BGP (it
// may still be withdrawn while it has no usable backend).
func (s *Service) Announced(c *Config) bool {
	return c.BGP != nil && (s.Announce == nil || *s.Announce)
}

// validASN refuses 0, AS_TRANS (23456), 65535 and 4294967295: reserved
// (RFC 7607, RFC 6793, RFC 7300), no router takes them as a peer's AS.
func validASN(a int64) error {
	switch {
	case a < 1 || a > 4294967294:
		return fmt.Errorf("%d out of range; expected an AS number from 1 to 4294967294", a)
	case a == 23456 || a == 65535:
		return fmt.Errorf("%d is reserved; expected a private AS such as 64512-65534 or 4200000000-4294967294", a)
	}
	return nil
}

// birdString refuses what cannot go verbatim inside a double-quoted
// string of BIRD's config, which lbd generates.
func birdString(s string) error {
	if strings.ContainsAny(s, "\"\\\n\r") {
		return fmt.Errorf("must not hold '\"', '\\' or a line break")
	}
	return nil
}

func (v *validator) bgp(c *Config) {
	b := c.BGP
	if b == nil {
		for i := range c.Services {
			if c.Services[i].Announce != nil {
				v.errorf(fmt.Sprintf("service[%d].announce", i), "only used with [bgp]; add a [bgp] section or remove the key")
			}
		}
		return
	}
	if !v.written("bgp.asn") {
		v.errorf("bgp", "missing key \"asn\"; expected this appliance's AS number such as 65010")
	} else if err := validASN(b.ASN); err != nil && !v.failed("bgp.asn") {
		v.errorf("bgp.asn", "%v", err)
	}
	if b.RouterID != "" {
		a, err := netip.ParseAddr(b.RouterID)
		if err != nil || !a.Is4() {
			v.errorf("bgp.router_id", "bad router_id %q; expected an IPv4 address such as \"198.51.100.1\" (BGP router IDs are 32 bits, also on IPv6-only sessions)", b.RouterID)
		}
		b.RouterIDAddr = a
	} else if a, ok := firstIPv4(c); ok {
		b.RouterIDAddr = a
	} else {
		v.errorf("bgp", "missing key \"router_id\"; it defaults to the first IPv4 address of the first [[interface]], and there is none")
	}
	if b.SourceAddress != "" {
		a, err := netip.ParseAddr(b.SourceAddress)
		if err != nil || a.Zone() != "" {
			v.errorf("bgp.source_address", "bad address %q; expected an IPv4 or IPv6 address", b.SourceAddress)
		}
		b.SourceAddr = a.Unmap()
	}
	if b.AnnounceDelay != nil && b.AnnounceDelay.D() > time.Hour {
		v.errorf("bgp.announce_delay", "%s is too long; expected at most 1h", b.AnnounceDelay.D())
	}
	if d := b.BFDInterval; d != nil && (d.D() < 10*time.Millisecond || d.D() > 10*time.Second || d.D()%time.Millisecond != 0) {
		v.errorf("bgp.bfd_interval", "%s out of range; expected whole milliseconds from 10ms to 10s", d.D())
	}
	if m := b.BFDMultiplier; m < 0 || m > 255 {
		v.errorf("bgp.bfd_multiplier", "%d out of range; expected 1 to 255", m)
	}
	if len(b.Neighbors) == 0 {
		v.errorf("bgp", "no [[bgp.neighbor]]; expected at least one router to peer with")
	}
	seen := map[netip.Addr]string{}
	fam := map[bool]bool{} // is6 -> some neighbor has it
	for i := range b.Neighbors {
		p := fmt.Sprintf("bgp.neighbor[%d]", i)
		n := &b.Neighbors[i]
		v.neighbor(n, p, b)
		if n.Addr.IsValid() {
			if prev, ok := seen[n.Addr]; ok {
				v.errorf(p+".address", "duplicate neighbor %s (first at %s)", n.Addr, prev)
			}
			seen[n.Addr] = p
			fam[n.Addr.Is6()] = true
		}
	}
	for i := range c.Services {
		s := &c.Services[i]
		p := fmt.Sprintf("service[%d]", i)
		if !s.SNATEnabled() {
			v.errorf(p+".snat", "snat = false cannot be used with [bgp]: in a fleet each appliance must masquerade toward the backends with its own address so that replies come back to the appliance that holds the flow; without it the backends answer through their gateway, which is one appliance (or none) for the whole fleet")
		}
		if s.Announced(c) && s.Interface != "" {
			v.errorf(p+".interface", "an announced VIP is not put on an interface: every appliance of the fleet would answer ARP/NDP for it; the router reaches it through the BGP next hops (drop the key, or set announce = false)")
		}
		if s.Announced(c) && s.VIPAddr.IsValid() && len(seen) > 0 && !fam[s.VIPAddr.Is6()] {
			v.errorf(p+".vip", "VIP %s is %s but no [[bgp.neighbor]] is; lbd announces each family over sessions of that family (add a neighbor or set announce = false)", s.VIPAddr, family(s.VIPAddr))
		}
	}
}

func (v *validator) neighbor(n *Neighbor, p string, b *BGP) {
	if n.Address == "" {
		v.errorf(p, "missing key \"address\"; expected the router's IPv4 or IPv6 address")
	} else if a, err := netip.ParseAddr(n.Address); err != nil || a.Zone() != "" {
		v.errorf(p+".address", "bad address %q; expected an IPv4 or IPv6 address (no zone)", n.Address)
	} else {
		n.Addr = a.Unmap()
	}
	if !v.written(p + ".asn") {
		v.errorf(p, "missing key \"asn\"; expected the router's AS number")
	} else if err := validASN(n.ASN); err != nil && !v.failed(p+".asn") {
		v.errorf(p+".asn", "%v", err)
	}
	if h := n.HoldTime; h != nil {
		d := h.D()
		switch {
		case d%time.Second != 0:
			v.errorf(p+".hold_time", "%s is not whole seconds; BGP carries the hold time in seconds", d)
		case d != 0 && (d < 3*time.Second || d > 65535*time.Second):
			v.errorf(p+".hold_time", "%s out of range; expected 0 (no keepalives) or 3s to 65535s (RFC 4271)", d)
		}
	}
	if len(n.Password) > maxPasswordLen {
		v.errorf(p+".password", "%d characters is too long; TCP MD5 keys hold at most %d", len(n.Password), maxPasswordLen)
	} else if err := birdString(n.Password); err != nil {
		v.errorf(p+".password", "%v", err)
	}
	if n.SourceAddress != "" {
		a, err := netip.ParseAddr(n.SourceAddress)
		if err != nil || a.Zone() != "" {
			v.errorf(p+".source_address", "bad address %q; expected an IPv4 or IPv6 address", n.SourceAddress)
			return
		}
		n.SourceAddr = a.Unmap()
		if n.Addr.IsValid() && n.Addr.Is6() != n.SourceAddr.Is6() {
			v.errorf(p+".source_address", "%s is %s but the neighbor %s is %s; a session has one family", n.SourceAddr, family(n.SourceAddr), n.Addr, family(n.Addr))
		}
	} else if b.SourceAddr.IsValid() && n.Addr.IsValid() && b.SourceAddr.Is6() == n.Addr.Is6() {
		// [bgp].source_address is the default for neighbors of its family.
		n.SourceAddr = b.SourceAddr
	}
}

// firstIPv4 is router_id's default: the first IPv4 address of the first
// [[interface]].
func firstIPv4(c *Config) (netip.Addr, bool) {
	if len(c.Interfaces) == 0 {
		return netip.Addr{}, false
	}
	for _, a := range c.Interfaces[0].Addresses {
		if p, err := netip.ParsePrefix(a); err == nil && p.Addr().Is4() {
			return p.Addr(), true
		}
	}
	return netip.Addr{}, false
}

// failed reports whether decoding already refused the key (a wrong type),
// so validation does not add a second error about its zero value.
func (v *validator) failed(path string) bool {
	for _, e := range v.errs {
		if e.Path == path {
			return true
		}
	}
	return false
}
