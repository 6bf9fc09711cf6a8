package netif

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteProtocol marks the routes lbd installs (the rtm_protocol field, shown
// as "proto 176" by `ip route`). Routes with any other protocol are never
// touched, and the mark survives an lbd restart without any state file.
const RouteProtocol netlink.RouteProtocol = 176

// lbdRoutes lists the main-table routes lbd installed on a link.
func (m *Manager) lbdRoutes(link netlink.Link) ([]Route, error) {
	filter := &netlink.Route{LinkIndex: link.Attrs().Index, Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN}
	rs, err := m.h.RouteListFiltered(netlink.FAMILY_ALL, filter,
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	var out []Route
	for _, r := range rs {
		if rt, ok := routeOf(r); ok {
			out = append(out, rt)
		}
	}
	return out, nil
}

// routeOf turns a kernel route into a Route; the kernel reports a default
// route with no destination.
func routeOf(r netlink.Route) (Route, bool) {
	gw, ok := netip.AddrFromSlice(r.Gw)
	if !ok {
		return Route{}, false
	}
	gw = gw.Unmap()
	var to netip.Prefix
	if r.Dst != nil {
		to, ok = prefixOf(r.Dst)
		if !ok {
			return Route{}, false
		}
	} else if r.Family == unix.AF_INET6 || gw.Is6() {
		to = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	} else {
		to = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return Route{To: to.Masked(), Via: gw}, true
}

func (m *Manager) kernelRoute(link netlink.Link, r Route) *netlink.Route {
	return &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       ipNet(r.To),
		Gw:        net.IP(r.Via.AsSlice()),
		Protocol:  RouteProtocol,
		Table:     unix.RT_TABLE_MAIN,
	}
}

// convergeRoutes makes lbd's routes on a link equal to desired. Stale routes
// go first, so a changed gateway does not collide with the old default route.
func (m *Manager) convergeRoutes(changes *[]Change, link netlink.Link, name string, desired []Route) error {
	current, err := m.lbdRoutes(link)
	if err != nil {
		return err
	}
	add, del := planRoutes(desired, current)
	for _, r := range del {
		if err := m.h.RouteDel(m.kernelRoute(link, r)); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("delete route %s via %s: %w", r.To, r.Via, err)
		}
		m.record(changes, Change{name, "del-route", r.To.String() + " via " + r.Via.String()})
	}
	for _, r := range add {
		if err := m.h.RouteAdd(m.kernelRoute(link, r)); err != nil {
			return fmt.Errorf("add route %s via %s: %w", r.To, r.Via, err)
		}
		m.record(changes, Change{name, "add-route", r.To.String() + " via " + r.Via.String()})
	}
	return nil
}
