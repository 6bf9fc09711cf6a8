package bgp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Routes keeps table Table holding exactly the announced VIPs, as
// blackhole routes (they route nothing: no ip rule points at the table).
type Routes struct {
	h *netlink.Handle
}

// NewRoutes works in the calling process's network namespace.
func NewRoutes() (*Routes, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return &Routes{h: h}, nil
}

// Close releases the netlink socket.
func (r *Routes) Close() { r.h.Close() }

// List returns the VIPs the table holds now.
func (r *Routes) List() (map[netip.Addr]bool, error) {
	out := map[netip.Addr]bool{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := r.h.RouteListFiltered(fam, &netlink.Route{Table: Table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("list routes of table %d: %w", Table, err)
		}
		for _, rt := range rs {
			if rt.Dst == nil {
				continue
			}
			if a, ok := netip.AddrFromSlice(rt.Dst.IP); ok {
				out[a.Unmap()] = true
			}
		}
	}
	return out, nil
}

func route(a netip.Addr) *netlink.Route {
	bits := a.BitLen()
	return &netlink.Route{Table: Table, Type: unix.RTN_BLACKHOLE, Protocol: routeProto,
		Dst: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
}

// Add announces a VIP (idempotent).
func (r *Routes) Add(a netip.Addr) error {
	if err := r.h.RouteReplace(route(a)); err != nil {
		return fmt.Errorf("announce %s (table %d): %w", a, Table, err)
	}
	return nil
}

// Del withdraws a VIP (idempotent).
func (r *Routes) Del(a netip.Addr) error {
	if err := r.h.RouteDel(route(a)); err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("withdraw %s (table %d): %w", a, Table, err)
	}
	return nil
}

// Set makes the table hold exactly want; it returns what it changed.
func (r *Routes) Set(want map[netip.Addr]bool) (added, removed []netip.Addr, err error) {
	have, err := r.List()
	if err != nil {
		return nil, nil, err
	}
	var errs []error
	for a := range want {
		if !have[a] {
			if e := r.Add(a); e != nil {
				errs = append(errs, e)
				continue
			}
			added = append(added, a)
		}
	}
	for a := range have {
		if !want[a] {
			if e := r.Del(a); e != nil {
				errs = append(errs, e)
				continue
			}
			removed = append(removed, a)
		}
	}
	return added, removed, errors.Join(errs...)
}
