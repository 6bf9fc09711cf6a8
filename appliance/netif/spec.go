// Package netif brings the appliance's NICs into the shape the config asks
// for: it finds each NIC by MAC or device name, renames it, sets MTU and link
// state, keeps exactly the listed static addresses and routes, and puts VIPs
// on NICs with a gratuitous ARP / unsolicited neighbour advertisement.
//
// Everything goes through a netlink handle bound to one network namespace, so
// tests (and the integrator) can manage a namespace without entering it.
package netif

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Spec is the desired state of one NIC. The integrator maps a config
// [[interface]] section onto it.
type Spec struct {
	// Name is the interface name lbd gives the NIC (e.g. "wan").
	Name string
	// MAC selects the NIC by hardware address; Device selects it by its
	// kernel name. At least one is required; with both, both must match.
	MAC    string
	Device string
	// MTU is set when > 0.
	MTU int
	// DHCP marks a NIC whose address comes from the DHCP client; the
	// Manager still brings it up and applies any static extras listed.
	DHCP bool
	// Addresses are the static addresses (IPv4 and IPv6) with prefix length.
	Addresses []netip.Prefix
	// Gateway and Gateway6 are default gateways; either may hold either
	// family, but at most one gateway per family.
	Gateway  netip.Addr
	Gateway6 netip.Addr
	// Routes are extra routes through this NIC.
	Routes []Route
}

// Route is one extra static route.
type Route struct {
	To  netip.Prefix
	Via netip.Addr
}

// validate checks one spec on its own; cross-spec checks live in Apply.
func (s Spec) validate() error {
	if s.Name == "" {
		return fmt.Errorf("interface without name")
	}
	if len(s.Name) > 15 || strings.ContainsAny(s.Name, "/ \t\n:") {
		return fmt.Errorf("interface %q: not a valid Linux interface name (at most 15 characters, no '/', ':' or spaces)", s.Name)
	}
	if s.MAC == "" && s.Device == "" {
		return fmt.Errorf("interface %q: needs mac or device to find the NIC", s.Name)
	}
	if s.MAC != "" {
		if _, err := net.ParseMAC(s.MAC); err != nil {
			return fmt.Errorf("interface %q: mac %q: %w", s.Name, s.MAC, err)
		}
	}
	if s.MTU < 0 || s.MTU > 65535 {
		return fmt.Errorf("interface %q: mtu %d out of range", s.Name, s.MTU)
	}
	for _, p := range s.Addresses {
		if !p.IsValid() {
			return fmt.Errorf("interface %q: invalid address", s.Name)
		}
	}
	if _, err := s.gateways(); err != nil {
		return err
	}
	for _, r := range s.Routes {
		if !r.To.IsValid() || !r.Via.IsValid() {
			return fmt.Errorf("interface %q: route needs both to and via", s.Name)
		}
		if r.To.Addr().Is4() != r.Via.Is4() {
			return fmt.Errorf("interface %q: route to %s via %s mixes address families", s.Name, r.To, r.Via)
		}
	}
	return nil
}

// gateways returns the default gateways of the spec, at most one per family.
func (s Spec) gateways() ([]netip.Addr, error) {
	var v4, v6 netip.Addr
	for _, g := range []netip.Addr{s.Gateway, s.Gateway6} {
		if !g.IsValid() {
			continue
		}
		g = g.Unmap()
		if g.Is4() {
			if v4.IsValid() {
				return nil, fmt.Errorf("interface %q: two IPv4 gateways (%s, %s)", s.Name, v4, g)
			}
			v4 = g
		} else {
			if v6.IsValid() {
				return nil, fmt.Errorf("interface %q: two IPv6 gateways (%s, %s)", s.Name, v6, g)
			}
			v6 = g
		}
	}
	var out []netip.Addr
	for _, g := range []netip.Addr{v4, v6} {
		if g.IsValid() {
			out = append(out, g)
		}
	}
	return out, nil
}

// desiredRoutes lists the routes the spec asks for: the default route per
// gateway, then the extra routes.
func (s Spec) desiredRoutes() []Route {
	gws, _ := s.gateways()
	var out []Route
	for _, g := range gws {
		def := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if g.Is6() {
			def = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		out = append(out, Route{To: def, Via: g})
	}
	for _, r := range s.Routes {
		out = append(out, Route{To: r.To.Masked(), Via: r.Via.Unmap()})
	}
	return out
}
