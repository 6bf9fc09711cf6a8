package dhcp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"lbd/appliance/netif"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routeProtocol marks the default route from a lease ("proto dhcp"), so
// netif, which owns the routes marked with its own protocol, leaves it alone.
const routeProtocol = netlink.RouteProtocol(unix.RTPROT_DHCP)

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// bind puts a lease on the NIC. A new address is added before the old one
// goes (promote_secondaries keeps the new one when both share a subnet), so
// the NIC is never without an address; other addresses on the NIC are not
// touched. Then the default route, DNS, lease file, callback.
func (c *Client) bind(nl *nclient4.Lease, l Lease) error {
	link, err := c.h.LinkByName(c.cfg.Interface)
	if err != nil {
		return fmt.Errorf("link %s: %w", c.cfg.Interface, err)
	}
	c.mu.Lock()
	old := c.onNIC
	c.mu.Unlock()

	if old == nil || old.Address != l.Address {
		if _, err := netif.SetSysctl(c.ns, "/proc/sys/net/ipv4/conf/"+c.cfg.Interface+"/promote_secondaries", "1"); err != nil {
			c.log.Warn("promote_secondaries not set", "err", err)
		}
		if err := c.h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(l.Address)}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add %s: %w", l.Address, err)
		}
		c.log.Info("dhcp address added", "address", l.Address.String())
	}
	if old != nil && old.Address != l.Address {
		c.delAddr(link, old.Address)
		c.count(func(s *Stats) { s.Changed++ })
	}
	if old != nil && old.Router.IsValid() && old.Router != l.Router {
		c.delRoute(link, old.Router)
	}
	if l.Router.IsValid() && !c.cfg.NoDefaultRoute {
		if err := c.ensureRoute(link, l.Router); err != nil {
			return err
		}
	}
	if c.cfg.ResolvConf != "" {
		if err := writeResolvConf(c.cfg.ResolvConf, l.DNS); err != nil {
			c.log.Warn("resolv.conf not written", "err", err)
		}
	}
	if err := saveLease(c.cfg.LeaseFile, c.cfg.Interface, l); err != nil {
		c.log.Warn("lease not saved", "err", err)
	}
	c.mu.Lock()
	c.lease, c.nl, c.onNIC = &l, nl, &l
	c.requested = l.Address.Addr()
	c.mu.Unlock()
	c.log.Info("dhcp lease bound", "lease", l.String())
	if c.cfg.OnChange != nil {
		c.cfg.OnChange(l, true)
	}
	return nil
}

// forget drops the bound lease (NAK) but leaves its address on the NIC
// until the next lease replaces it.
func (c *Client) forget(why string) {
	c.mu.Lock()
	l := c.lease
	c.lease, c.nl = nil, nil
	c.mu.Unlock()
	if l != nil {
		c.log.Info("dhcp lease lost", "lease", l.String(), "why", why)
	}
}

// unbind removes the address and route of the lease on the NIC.
func (c *Client) unbind(why string) {
	c.mu.Lock()
	l := c.onNIC
	c.lease, c.nl, c.onNIC = nil, nil, nil
	c.mu.Unlock()
	if l == nil {
		return
	}
	link, err := c.h.LinkByName(c.cfg.Interface)
	if err == nil {
		if l.Router.IsValid() && !c.cfg.NoDefaultRoute {
			c.delRoute(link, l.Router)
		}
		c.delAddr(link, l.Address)
	}
	c.log.Info("dhcp lease removed", "lease", l.String(), "why", why)
	if c.cfg.OnChange != nil {
		c.cfg.OnChange(*l, false)
	}
}

func (c *Client) delAddr(link netlink.Link, p netip.Prefix) {
	err := c.h.AddrDel(link, &netlink.Addr{IPNet: ipNet(p)})
	if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		c.log.Warn("dhcp address not removed", "address", p.String(), "err", err)
	}
}

func (c *Client) metric(link netlink.Link) int {
	if c.cfg.RouteMetric > 0 {
		return c.cfg.RouteMetric
	}
	return 1024 + link.Attrs().Index
}

func (c *Client) defaultRoute(link netlink.Link, gw netip.Addr) *netlink.Route {
	return &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Gw:        gw.AsSlice(),
		Protocol:  routeProtocol,
		Priority:  c.metric(link),
		Table:     unix.RT_TABLE_MAIN,
	}
}

// ensureRoute adds the default route via gw unless it is already there, so
// a renewal makes no netlink change.
func (c *Client) ensureRoute(link netlink.Link, gw netip.Addr) error {
	want := c.defaultRoute(link, gw)
	have, err := c.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: want.LinkIndex, Protocol: routeProtocol},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range have {
		ones := 0
		if r.Dst != nil {
			ones, _ = r.Dst.Mask.Size()
		}
		if ones == 0 && r.Gw.Equal(want.Gw) && r.Priority == want.Priority {
			return nil
		}
	}
	if err := c.h.RouteReplace(want); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	c.log.Info("dhcp default route set", "router", gw.String())
	return nil
}

func (c *Client) delRoute(link netlink.Link, gw netip.Addr) {
	err := c.h.RouteDel(c.defaultRoute(link, gw))
	if err != nil && !errors.Is(err, unix.ESRCH) {
		c.log.Warn("dhcp default route not removed", "router", gw.String(), "err", err)
	}
}
