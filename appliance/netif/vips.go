package netif

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
)

// SetVIPs makes the VIPs on the NICs equal to vips (interface name -> VIP
// addresses): each VIP is added as a /32 or /128 (IPv6 without DAD, usable
// at once), VIPs lbd added earlier and no longer listed are removed, and
// each newly added VIP is announced with gratuitous ARP or an unsolicited
// neighbour advertisement so that neighbours move traffic to this NIC.
//
// All interface names are checked before anything changes. A failed
// announcement is returned as an error after the addresses are in place.
func (m *Manager) SetVIPs(vips map[string][]netip.Addr) ([]Change, error) {
	m.mu.Lock()
	defer m.mu.Unlock()

	names := make([]string, 0, len(vips))
	for n := range vips {
		names = append(names, n)
	}
	sort.Strings(names)
	links := map[string]netlink.Link{}
	for _, n := range names {
		l, err := m.h.LinkByName(n)
		if err != nil {
			return nil, fmt.Errorf("vip interface %q: %w", n, err)
		}
		for _, a := range vips[n] {
			if !a.IsValid() {
				return nil, fmt.Errorf("vip interface %q: invalid address", n)
			}
		}
		links[n] = l
	}

	var changes []Change
	defer func() {
		if err := m.own.save(m.opts.StatePath); err != nil {
			m.log.Warn("netif state not saved", "err", err)
		}
	}()
	var news []announcement
	listed := map[int]bool{}
	for _, n := range names {
		l := links[n]
		listed[l.Attrs().Index] = true
		before := len(changes)
		if err := m.convergeAddrs(&changes, l, n, vipPrefixes(vips[n]), true); err != nil {
			return changes, fmt.Errorf("vips on %q: %w", n, err)
		}
		for _, c := range changes[before:] {
			if c.Action != "add-vip" {
				continue
			}
			p := netip.MustParsePrefix(c.Detail)
			news = append(news, announcement{index: l.Attrs().Index, mac: l.Attrs().HardwareAddr, addr: p.Addr()})
		}
	}
	// VIPs on NICs that are no longer listed at all.
	for i, rec := range m.own.Links {
		if listed[i] || len(rec.VIPs) == 0 {
			continue
		}
		l, err := m.h.LinkByIndex(i)
		if err != nil {
			rec.VIPs = nil // NIC gone, addresses with it
			continue
		}
		if err := m.convergeAddrs(&changes, l, l.Attrs().Name, nil, true); err != nil {
			return changes, fmt.Errorf("vips on %q: %w", l.Attrs().Name, err)
		}
	}
	for _, c := range changes {
		if c.Action == "del-vip" {
			m.repeats.stopAll()
			break
		}
	}
	if len(news) > 0 {
		if err := m.announce(news); err != nil {
			return changes, fmt.Errorf("announce vips: %w", err)
		}
	}
	return changes, nil
}

func vipPrefixes(addrs []netip.Addr) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}
