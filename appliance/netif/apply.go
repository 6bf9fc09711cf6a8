package netif

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Apply brings the NICs to the state the specs describe and returns the
// changes it made. Applying the same specs again makes no change. All specs
// are matched to NICs before anything is touched; on a later error the
// changes made so far are returned with it.
//
// NICs that an earlier Apply managed but that are no longer listed lose the
// addresses and routes lbd gave them; their name, MTU and link state stay.
func (m *Manager) Apply(specs []Spec) ([]Change, error) {
	m.mu.Lock()
	defer m.mu.Unlock()

	prev := map[string]int{}
	devices := map[int]string{}
	for _, a := range m.applied {
		prev[a.spec.Name] = a.index
		devices[a.index] = a.device
	}
	var deadline time.Time
	if !m.waited {
		m.waited = true
		deadline = time.Now().Add(m.opts.FirstApplyWait)
	}
	var nics []nicInfo
	for logged := false; ; {
		links, err := m.h.LinkList()
		if err != nil {
			return nil, fmt.Errorf("list links: %w", err)
		}
		nics, err = matchAll(nicInfos(links), specs, prev)
		if err == nil {
			break
		}
		if !errors.As(err, new(missingNIC)) || time.Now().After(deadline) {
			return nil, err
		}
		if !logged {
			m.log.Info("waiting for a NIC to appear", "err", err, "for", time.Until(deadline).Round(time.Second))
			logged = true
		}
		time.Sleep(100 * time.Millisecond)
	}

	var changes []Change
	var applied []appliedNIC
	keep := map[int]bool{}
	for i, s := range specs {
		keep[nics[i].Index] = true
		dev := devices[nics[i].Index]
		if dev == "" {
			dev = nics[i].Name
		}
		applied = append(applied, appliedNIC{spec: s, index: nics[i].Index, device: dev})
	}
	defer func() {
		if err := m.own.save(m.opts.StatePath); err != nil {
			m.log.Warn("netif state not saved", "err", err)
		}
	}()
	for i, s := range specs {
		if err := m.applyOne(&changes, s, nics[i].Index); err != nil {
			return changes, fmt.Errorf("interface %q: %w", s.Name, err)
		}
	}
	if err := m.releaseDropped(&changes, keep); err != nil {
		return changes, err
	}
	m.applied = applied
	return changes, nil
}

// applyOne converges one NIC: name, MTU, link up, addresses, routes, in
// that order (routes need the link up and the gateway's subnet present).
func (m *Manager) applyOne(changes *[]Change, s Spec, index int) error {
	link, err := m.h.LinkByIndex(index)
	if err != nil {
		return fmt.Errorf("get link %d: %w", index, err)
	}
	attrs := link.Attrs()
	up := attrs.Flags&net.FlagUp != 0

	if attrs.Name != s.Name {
		// The kernel renames only links that are down.
		if up {
			if err := m.h.LinkSetDown(link); err != nil {
				return fmt.Errorf("set %s down to rename: %w", attrs.Name, err)
			}
			m.record(changes, Change{attrs.Name, "down", "to rename"})
			up = false
		}
		if err := m.h.LinkSetName(link, s.Name); err != nil {
			return fmt.Errorf("rename %s to %s: %w", attrs.Name, s.Name, err)
		}
		m.record(changes, Change{s.Name, "rename", attrs.Name + " -> " + s.Name})
		attrs.Name = s.Name
	}
	if s.MTU > 0 && attrs.MTU != s.MTU {
		if err := m.h.LinkSetMTU(link, s.MTU); err != nil {
			return fmt.Errorf("set mtu %d: %w", s.MTU, err)
		}
		m.record(changes, Change{s.Name, "mtu", fmt.Sprintf("%d -> %d", attrs.MTU, s.MTU)})
	}
	if !up {
		if err := m.h.LinkSetUp(link); err != nil {
			return fmt.Errorf("set up: %w", err)
		}
		m.record(changes, Change{s.Name, "up", ""})
	}
	if err := m.ensurePromoteSecondaries(changes, s.Name); err != nil {
		return err
	}
	if err := m.convergeAddrs(changes, link, s.Name, s.Addresses, false); err != nil {
		return err
	}
	return m.convergeRoutes(changes, link, s.Name, s.desiredRoutes())
}

// releaseDropped removes lbd's static addresses and routes from NICs that are
// no longer listed. VIPs are SetVIPs' business and stay.
func (m *Manager) releaseDropped(changes *[]Change, keep map[int]bool) error {
	indexes := map[int]bool{}
	for _, a := range m.applied {
		indexes[a.index] = true
	}
	for i, l := range m.own.Links {
		if len(l.Static) > 0 {
			indexes[i] = true
		}
	}
	for i := range indexes {
		if keep[i] {
			continue
		}
		link, err := m.h.LinkByIndex(i)
		if err != nil {
			// The NIC is gone and took its addresses and routes with it.
			delete(m.own.Links, i)
			continue
		}
		name := link.Attrs().Name
		if err := m.convergeAddrs(changes, link, name, nil, false); err != nil {
			return fmt.Errorf("interface %q (no longer configured): %w", name, err)
		}
		if err := m.convergeRoutes(changes, link, name, nil); err != nil {
			return fmt.Errorf("interface %q (no longer configured): %w", name, err)
		}
	}
	return nil
}

// linkPrefixes lists the addresses on a link as prefixes.
func (m *Manager) linkPrefixes(link netlink.Link) ([]netip.Prefix, error) {
	addrs, err := m.h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	out := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

func ipNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

// convergeAddrs makes the owned addresses of one kind (static or VIP) on a
// link equal to desired. New IPv6 VIPs skip DAD so they answer at once.
func (m *Manager) convergeAddrs(changes *[]Change, link netlink.Link, name string, desired []netip.Prefix, vip bool) error {
	current, err := m.linkPrefixes(link)
	if err != nil {
		return err
	}
	rec := m.own.link(link.Attrs().Index)
	ownedList := &rec.Static
	action := "address"
	if vip {
		ownedList = &rec.VIPs
		action = "vip"
	}
	p := planAddrs(desired, current, *ownedList)
	for _, f := range p.forget {
		*ownedList = delPrefix(*ownedList, f)
	}
	del := func(a netip.Prefix) error {
		err := m.h.AddrDel(link, &netlink.Addr{IPNet: ipNet(a)})
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("delete %s %s: %w", action, a, err)
		}
		*ownedList = delPrefix(*ownedList, a)
		if err == nil {
			m.record(changes, Change{name, "del-" + action, a.String()})
		}
		return nil
	}
	for _, a := range p.delFirst {
		if err := del(a); err != nil {
			return err
		}
	}
	for _, a := range p.add {
		addr := &netlink.Addr{IPNet: ipNet(a)}
		if vip && a.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := m.h.AddrAdd(link, addr); err != nil {
			if errors.Is(err, unix.EEXIST) {
				continue // appeared meanwhile; not ours
			}
			return fmt.Errorf("add %s %s: %w", action, a, err)
		}
		*ownedList = addPrefix(*ownedList, a)
		m.record(changes, Change{name, "add-" + action, a.String()})
	}
	for _, a := range p.del {
		if err := del(a); err != nil {
			return err
		}
	}
	return nil
}
