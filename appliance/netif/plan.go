package netif

import (
	"net/netip"
	"slices"
)

// addrPlan is what to do with a NIC's addresses: pure, so it is tested
// without a kernel.
type addrPlan struct {
	// delFirst are owned addresses that must go before an add because the
	// kernel would refuse the add (the same IP with another prefix length).
	delFirst []netip.Prefix
	add      []netip.Prefix
	del      []netip.Prefix
	// forget are owned addresses already gone from the NIC.
	forget []netip.Prefix
}

// planAddrs compares the desired addresses with those on the NIC. Only
// owned addresses are ever deleted; desired addresses already present are
// left alone (and stay un-owned if lbd did not add them).
func planAddrs(desired, current, owned []netip.Prefix) addrPlan {
	var p addrPlan
	for _, d := range desired {
		if !slices.Contains(current, d) && !slices.Contains(p.add, d) {
			p.add = append(p.add, d)
		}
	}
	for _, o := range owned {
		if slices.Contains(desired, o) {
			continue
		}
		if !slices.Contains(current, o) {
			p.forget = append(p.forget, o)
			continue
		}
		if slices.ContainsFunc(p.add, func(a netip.Prefix) bool { return a.Addr() == o.Addr() }) {
			p.delFirst = append(p.delFirst, o)
		} else {
			p.del = append(p.del, o)
		}
	}
	return p
}

// planRoutes compares desired routes with lbd's routes on the NIC.
func planRoutes(desired, current []Route) (add, del []Route) {
	for _, d := range desired {
		if !slices.Contains(current, d) && !slices.Contains(add, d) {
			add = append(add, d)
		}
	}
	for _, c := range current {
		if !slices.Contains(desired, c) {
			del = append(del, c)
		}
	}
	return add, del
}
