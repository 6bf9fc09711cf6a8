package config

import (
	"fmt"
	"net/netip"
	"time"
)

// HA is the [ha] section: a pair of appliances sharing the VIPs through
// keepalived (VRRP only) with their flow state synced by conntrackd (FTFW).
// Absent means a single appliance.
type HA struct {
	Mode           string   `toml:"mode"`            // "vrrp"
	Interface      string   `toml:"interface"`       // NIC carrying the VIPs and the adverts
	RouterID       int      `toml:"router_id"`       // VRRP virtual router id, 1-255
	Priority       int      `toml:"priority"`        // 1-254, higher wins
	Peer           string   `toml:"peer"`            // the other node, unicast VRRP
	AdvertInterval Duration `toml:"advert_interval"` // VRRPv3, whole centiseconds
	Preempt        bool     `toml:"preempt"`         // a recovered node takes the VIPs back
	LANInterface   string   `toml:"lan_interface"`   // backend side
	LANAddress     string   `toml:"lan_address"`     // floating backend-side address/prefix
	LANAddress6    string   `toml:"lan_address6"`    // optional IPv6 one beside an IPv4 lan_address
	SyncInterface  string   `toml:"sync_interface"`  // conntrackd's link; default lan_interface
	SyncPeer       string   `toml:"sync_peer"`       // the peer's address on that link

	PeerAddr     netip.Addr   `toml:"-"`
	LANPrefix    netip.Prefix `toml:"-"` // lan_address as written (address + prefix length)
	LANPrefix6   netip.Prefix `toml:"-"` // lan_address6, when set
	SyncPeerAddr netip.Addr   `toml:"-"`
}

// HA limits. VRRPv3 carries the advert interval in 12 bits of centiseconds.
const (
	DefaultAdvertInterval = time.Second
	MinAdvertInterval     = 10 * time.Millisecond
	MaxAdvertInterval     = 4095 * 10 * time.Millisecond
)

// HAEnabled reports whether the config runs as one node of a pair.
func (c *Config) HAEnabled() bool { return c.HA != nil }

// ifaceByName finds a declared [[interface]].
func ifaceByName(c *Config, name string) *Interface {
	for i := range c.Interfaces {
		if c.Interfaces[i].Name == name {
			return &c.Interfaces[i]
		}
	}
	return nil
}

// ha validates [ha] against the rest of the file. Interface names may be
// [[interface]] names or, without [[interface]] sections (lbd then touches
// no NIC: labs and hand-built hosts), kernel names; subnets are checked
// only where the file declares the addresses.
func (v *validator) ha(c *Config) {
	h := c.HA
	if h == nil {
		return
	}
	const p = "ha"
	switch h.Mode {
	case "":
		v.errorf(p, "missing key \"mode\"; expected \"vrrp\"")
	case "vrrp":
	case "bgp":
		v.errorf(p+".mode", "mode \"bgp\" (a fleet announcing VIPs by BGP) is not supported by this lbd; expected \"vrrp\"")
	default:
		v.errorf(p+".mode", "unknown mode %q; expected \"vrrp\"", h.Mode)
	}
	v.haIface(c, p+".interface", "interface", h.Interface, "the NIC carrying the VIPs and the VRRP adverts, such as \"wan\"")
	switch {
	case h.RouterID == 0 && !v.written(p+".router_id"):
		v.errorf(p, "missing key \"router_id\"; expected the VRRP virtual router id 1-255, the same on both nodes")
	case h.RouterID < 1 || h.RouterID > 255:
		v.errorf(p+".router_id", "%d out of range; expected 1 to 255", h.RouterID)
	}
	switch {
	case h.Priority == 0 && !v.written(p+".priority"):
		v.errorf(p, "missing key \"priority\"; expected 1-254 (higher wins; give the peer another value)")
	case h.Priority < 1 || h.Priority > 254:
		v.errorf(p+".priority", "%d out of range; expected 1 to 254 (255 is reserved by VRRP for an address owner)", h.Priority)
	}
	if h.Peer == "" {
		v.errorf(p, "missing key \"peer\"; expected the other node's address on %q", h.Interface)
	} else if a, err := netip.ParseAddr(h.Peer); err != nil || a.Zone() != "" {
		v.errorf(p+".peer", "bad address %q; expected the other node's IPv4 or IPv6 address", h.Peer)
	} else {
		h.PeerAddr = a.Unmap()
		ifc := ifaceByName(c, h.Interface)
		switch {
		case ifc == nil || len(ifc.Prefixes) == 0:
		case !hasFamily(ifc.Prefixes, h.PeerAddr):
			v.errorf(p+".peer", "%s is %s but interface %q has no %s address (%s); the peer must be of the family of this node's address there", h.PeerAddr, family(h.PeerAddr), h.Interface, family(h.PeerAddr), prefixList(ifc.Prefixes))
		case !onSubnet(ifc.Prefixes, h.PeerAddr):
			v.errorf(p+".peer", "%s is not on a subnet of interface %q (%s); VRRP adverts go to a neighbour on the same link", h.PeerAddr, h.Interface, prefixList(ifc.Prefixes))
		}
	}
	switch ai := h.AdvertInterval.D(); {
	case !v.written(p + ".advert_interval"):
		h.AdvertInterval = Duration(DefaultAdvertInterval)
	case ai < MinAdvertInterval || ai > MaxAdvertInterval:
		v.errorf(p+".advert_interval", "%s out of range; expected %s to %s (VRRPv3 centiseconds)", ai, MinAdvertInterval, MaxAdvertInterval)
	case ai%(10*time.Millisecond) != 0:
		v.errorf(p+".advert_interval", "%s is not a whole number of centiseconds; VRRPv3 adverts use 10ms steps, such as \"200ms\"", ai)
	}
	v.haIface(c, p+".lan_interface", "lan_interface", h.LANInterface, "the backend-side NIC, such as \"lan\"")
	if h.LANAddress == "" {
		v.errorf(p, "missing key \"lan_address\"; expected the floating backend-side address with its prefix, such as \"192.0.2.1/24\"")
	} else if pf, err := netip.ParsePrefix(h.LANAddress); err != nil {
		v.errorf(p+".lan_address", "bad address %q; expected address/prefix such as \"192.0.2.1/24\"", h.LANAddress)
	} else {
		h.LANPrefix = pf
		if ifc := ifaceByName(c, h.LANInterface); ifc != nil && len(ifc.Prefixes) > 0 {
			switch {
			case !onSubnet(ifc.Prefixes, pf.Addr()):
				v.errorf(p+".lan_address", "%s is not on a subnet of lan_interface %q (%s); the backends must reach it on their link", pf.Addr(), h.LANInterface, prefixList(ifc.Prefixes))
			case ownsAddr(ifc.Prefixes, pf.Addr()):
				v.errorf(p+".lan_address", "%s is a static address of interface %q; the floating address must be one neither node owns", pf.Addr(), h.LANInterface)
			}
		}
		if h.PeerAddr.IsValid() && h.PeerAddr == pf.Addr() {
			v.errorf(p+".lan_address", "%s is also the VRRP peer", pf.Addr())
		}
	}
	if h.LANAddress6 != "" {
		pf, err := netip.ParsePrefix(h.LANAddress6)
		switch {
		case err != nil || !pf.Addr().Is6() || pf.Addr().Is4In6():
			v.errorf(p+".lan_address6", "bad address %q; expected an IPv6 address/prefix such as \"2001:db8:2::1/64\"", h.LANAddress6)
		case h.LANPrefix.IsValid() && !h.LANPrefix.Addr().Is4():
			v.errorf(p+".lan_address6", "lan_address is IPv6 already; lan_address6 is the IPv6 address beside an IPv4 lan_address")
		default:
			h.LANPrefix6 = pf
			if ifc := ifaceByName(c, h.LANInterface); ifc != nil && hasFamily(ifc.Prefixes, pf.Addr()) {
				switch {
				case !onSubnet(ifc.Prefixes, pf.Addr()):
					v.errorf(p+".lan_address6", "%s is not on a subnet of lan_interface %q (%s)", pf.Addr(), h.LANInterface, prefixList(ifc.Prefixes))
				case ownsAddr(ifc.Prefixes, pf.Addr()):
					v.errorf(p+".lan_address6", "%s is a static address of interface %q; the floating address must be one neither node owns", pf.Addr(), h.LANInterface)
				}
			}
		}
	}
	if h.SyncInterface == "" {
		h.SyncInterface = h.LANInterface
	} else {
		v.haIface(c, p+".sync_interface", "sync_interface", h.SyncInterface, "the link conntrackd uses")
	}
	if h.SyncPeer == "" {
		v.errorf(p, "missing key \"sync_peer\"; expected the peer's address on sync_interface %q", h.SyncInterface)
	} else if a, err := netip.ParseAddr(h.SyncPeer); err != nil || a.Zone() != "" {
		v.errorf(p+".sync_peer", "bad address %q; expected the peer's IPv4 or IPv6 address on sync_interface", h.SyncPeer)
	} else {
		h.SyncPeerAddr = a.Unmap()
		if ifc := ifaceByName(c, h.SyncInterface); ifc != nil && len(ifc.Prefixes) > 0 && !onSubnet(ifc.Prefixes, h.SyncPeerAddr) {
			v.errorf(p+".sync_peer", "%s is not on a subnet of sync_interface %q (%s)", h.SyncPeerAddr, h.SyncInterface, prefixList(ifc.Prefixes))
		}
		if h.LANPrefix.IsValid() && h.SyncPeerAddr == h.LANPrefix.Addr() {
			v.errorf(p+".sync_peer", "%s is the floating lan_address; expected the peer's own address", h.SyncPeerAddr)
		}
	}
	// keepalived owns the VIPs of a pair: they go on ha.interface only.
	for i := range c.Services {
		s := &c.Services[i]
		if s.Interface != "" && h.Interface != "" && s.Interface != h.Interface {
			v.errorf(fmt.Sprintf("service[%d].interface", i), "%q differs from ha.interface %q; in a pair keepalived holds every VIP on ha.interface (leave interface unset or the same)", s.Interface, h.Interface)
		}
		if s.VIPAddr.IsValid() && h.PeerAddr.IsValid() && s.VIPAddr == h.PeerAddr {
			v.errorf(fmt.Sprintf("service[%d].vip", i), "%s is the VRRP peer's address", s.VIPAddr)
		}
	}
}

// haIface checks an interface key of [ha]: required, a valid NIC name, and
// an [[interface]] name when the file declares interfaces.
func (v *validator) haIface(c *Config, path, key, name, what string) {
	switch {
	case name == "":
		v.errorf("ha", "missing key %q; expected %s", key, what)
	case len(name) > 15 || !nameRE.MatchString(name):
		v.errorf(path, "bad interface name %q; expected at most 15 letters, digits, '-', '_', '.'", name)
	case len(c.Interfaces) > 0 && ifaceByName(c, name) == nil:
		v.errorf(path, "no [[interface]] named %q", name)
	}
}

func hasFamily(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Addr().Is4() == a.Is4() {
			return true
		}
	}
	return false
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func onSubnet(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Masked().Contains(a) {
			return true
		}
	}
	return false
}

func ownsAddr(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Addr() == a {
			return true
		}
	}
	return false
}

func prefixList(ps []netip.Prefix) string {
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += ", "
		}
		s += p.String()
	}
	return s
}
