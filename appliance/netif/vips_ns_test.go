package netif_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"lbd/appliance/netif"
	"lbd/appliance/netif/netiftest"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var (
	vip4 = netip.MustParseAddr("198.51.100.10")
	vip6 = netip.MustParseAddr("2001:db8:7::10")
)

func isGARP(mac net.HardwareAddr, vip netip.Addr) func([]byte) bool {
	ip := vip.As4()
	return func(f []byte) bool {
		if len(f) < 42 || binary.BigEndian.Uint16(f[12:]) != unix.ETH_P_ARP {
			return false
		}
		a := f[14:]
		return bytes.Equal(a[8:14], mac) && bytes.Equal(a[14:18], ip[:]) && bytes.Equal(a[24:28], ip[:])
	}
}

func isUnsolicitedNA(mac net.HardwareAddr, vip netip.Addr) func([]byte) bool {
	ip := vip.As16()
	return func(f []byte) bool {
		if len(f) < 86 || binary.BigEndian.Uint16(f[12:]) != unix.ETH_P_IPV6 || f[14+6] != unix.IPPROTO_ICMPV6 {
			return false
		}
		icmp := f[54:]
		return icmp[0] == 136 && bytes.Equal(icmp[8:24], ip[:]) && bytes.Equal(icmp[26:32], mac)
	}
}

// neighMAC returns the link-layer address the peer holds for ip on p0.
func neighMAC(t *testing.T, ns *netiftest.Netns, ip netip.Addr) string {
	t.Helper()
	link, err := ns.NL.LinkByName("p0")
	if err != nil {
		t.Fatal(err)
	}
	fam := netlink.FAMILY_V4
	if ip.Is6() {
		fam = netlink.FAMILY_V6
	}
	ns2, err := ns.NL.NeighList(link.Attrs().Index, fam)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns2 {
		if a, _ := netip.AddrFromSlice(n.IP); a.Unmap() == ip {
			return n.HardwareAddr.String()
		}
	}
	return ""
}

// TestVIPs: VIPs are added as host addresses (IPv6 usable at once), a peer
// sees the gratuitous ARP and the unsolicited NA and moves its neighbour
// entries to the appliance, the VIPs answer; re-setting changes nothing;
// dropping them removes only the VIPs.
func TestVIPs(t *testing.T) {
	l := newLab(t, "vp")
	m := l.manager(t, filepath.Join(t.TempDir(), "netif.json"))
	spec := netif.Spec{Name: "wan", MAC: lbMAC, Addresses: []netip.Prefix{netip.MustParsePrefix("198.51.100.2/24"), netip.MustParsePrefix("2001:db8:7::2/64")}}
	if _, err := m.Apply([]netif.Spec{spec}); err != nil {
		t.Fatal(err)
	}
	// The peer believes the VIPs live at another MAC (a failed-over peer
	// appliance): only the announcements can correct that.
	const oldMAC = "02:00:00:00:00:99"
	l.peer.Run(t, "ip", "neigh", "replace", vip4.String(), "lladdr", oldMAC, "dev", "p0", "nud", "stale")
	l.peer.Run(t, "ip", "neigh", "replace", vip6.String(), "lladdr", oldMAC, "dev", "p0", "nud", "stale")
	capture := netiftest.NewCapture(t, l.peer, "p0")

	mac := netiftest.MAC(lbMAC)
	changes, err := m.SetVIPs(map[string][]netip.Addr{"wan": {vip4, vip6}})
	if err != nil {
		t.Fatalf("SetVIPs: %v", err)
	}
	if got := changesString(changes); !sameLines(got, "wan: add-vip 198.51.100.10/32\nwan: add-vip 2001:db8:7::10/128") {
		t.Errorf("changes:\n%s", got)
	}
	// SetVIPs returns after the first round; the repeats follow in the
	// background.
	m.WaitAnnouncements()
	frames := capture.Collect(time.Second)
	if n := netiftest.CountFrames(frames, isGARP(mac, vip4)); n != 3 {
		t.Errorf("peer saw %d gratuitous ARPs for the IPv4 VIP, want 3 (AnnounceCount)", n)
	}
	if n := netiftest.CountFrames(frames, isUnsolicitedNA(mac, vip6)); n != 3 {
		t.Errorf("peer saw %d unsolicited neighbour advertisements for the IPv6 VIP, want 3", n)
	}
	if got := neighMAC(t, l.peer, vip4); got != lbMAC {
		t.Errorf("peer's ARP entry for %s is %q, want %s", vip4, got, lbMAC)
	}
	if got := neighMAC(t, l.peer, vip6); got != lbMAC {
		t.Errorf("peer's neighbour entry for %s is %q, want %s", vip6, got, lbMAC)
	}

	// The IPv6 VIP skipped DAD, so it is usable right away.
	link, _ := l.lb.NL.LinkByName("wan")
	as, _ := l.lb.NL.AddrList(link, netlink.FAMILY_V6)
	for _, a := range as {
		if a.IP.Equal(net.IP(vip6.AsSlice())) && a.Flags&unix.IFA_F_TENTATIVE != 0 {
			t.Errorf("IPv6 VIP is tentative (flags %#x)", a.Flags)
		}
	}
	// Replies need the subnet route of the static IPv6 address, which is
	// under DAD for a moment.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.WaitAddressesReady(ctx); err != nil {
		t.Fatal(err)
	}
	netiftest.Reachable(t, l.peer, l.lb, vip4)
	netiftest.Reachable(t, l.peer, l.lb, vip6)

	if changes, err := m.SetVIPs(map[string][]netip.Addr{"wan": {vip4, vip6}}); err != nil || len(changes) != 0 {
		t.Errorf("re-set: err %v changes %v", err, changes)
	}
	// No announcement for VIPs that were already there.
	if n := netiftest.CountFrames(capture.Collect(time.Second), isGARP(mac, vip4)); n != 0 {
		t.Errorf("re-set announced again (%d frames)", n)
	}

	changes, err = m.SetVIPs(map[string][]netip.Addr{"wan": {vip6}})
	if err != nil || !sameLines(changesString(changes), "wan: del-vip 198.51.100.10/32") {
		t.Errorf("drop one VIP: err %v changes %v", err, changes)
	}
	if _, err := m.SetVIPs(nil); err != nil {
		t.Fatal(err)
	}
	addrs := addrsOf(t, l.lb, "wan")
	if slices.Contains(addrs, netip.PrefixFrom(vip6, 128)) || slices.Contains(addrs, netip.PrefixFrom(vip4, 32)) {
		t.Errorf("VIPs left after SetVIPs(nil): %v", addrs)
	}
	if !slices.Contains(addrs, netip.MustParsePrefix("198.51.100.2/24")) {
		t.Errorf("static address lost with the VIPs: %v", addrs)
	}
	// Re-applying the interface spec leaves the VIP bookkeeping alone and
	// changes nothing.
	if changes, err := m.Apply([]netif.Spec{spec}); err != nil || len(changes) != 0 {
		t.Errorf("re-apply after VIPs: err %v changes %v", err, changes)
	}
}

// TestVIPsUnknownInterface fails before changing anything.
func TestVIPsUnknownInterface(t *testing.T) {
	l := newLab(t, "vu")
	m := l.manager(t, "")
	_, err := m.SetVIPs(map[string][]netip.Addr{"eth7": {vip4}, "nope": {vip6}})
	if err == nil {
		t.Fatal("SetVIPs on a missing interface succeeded")
	}
	if addrs := addrsOf(t, l.lb, "eth7"); slices.Contains(addrs, netip.PrefixFrom(vip4, 32)) {
		t.Errorf("VIP added although another interface was unknown: %v", addrs)
	}
}

// TestVIPRepeatsStopWhenRemoved: SetVIPs returns after the first round of
// announcements, and removing a VIP stops the repeats still pending, so no
// frame claims an address the appliance gave up (the interval here is an
// hour: a repeat that were not stopped would hang WaitAnnouncements).
func TestVIPRepeatsStopWhenRemoved(t *testing.T) {
	l := newLab(t, "vr")
	m, err := netif.New(netif.Options{NetnsPath: l.lb.Path, AnnounceCount: 3, AnnounceInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	spec := netif.Spec{Name: "wan", MAC: lbMAC, Addresses: []netip.Prefix{netip.MustParsePrefix("198.51.100.2/24")}}
	if _, err := m.Apply([]netif.Spec{spec}); err != nil {
		t.Fatal(err)
	}
	capture := netiftest.NewCapture(t, l.peer, "p0")
	if _, err := m.SetVIPs(map[string][]netip.Addr{"wan": {vip4}}); err != nil {
		t.Fatalf("SetVIPs: %v", err)
	}
	if _, err := m.SetVIPs(map[string][]netip.Addr{"wan": nil}); err != nil {
		t.Fatalf("SetVIPs (remove): %v", err)
	}
	m.WaitAnnouncements()
	if n := netiftest.CountFrames(capture.Collect(time.Second), isGARP(netiftest.MAC(lbMAC), vip4)); n != 1 {
		t.Errorf("peer saw %d gratuitous ARPs for the removed VIP, want 1 (the first round only)", n)
	}
}
