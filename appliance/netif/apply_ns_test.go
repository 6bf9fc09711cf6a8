package netif_test

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"lbd/appliance/netif"
	"lbd/appliance/netif/netiftest"

	"github.com/vishvananda/netlink"
)

const lbMAC = "02:00:00:00:07:01"

// lab is one lb namespace joined to a peer namespace by a veth pair; the lb
// end ("eth7", lbMAC) is left unconfigured for the Manager to take over.
type lab struct {
	lb, peer *netiftest.Netns
}

func newLab(t *testing.T, tag string) *lab {
	t.Helper()
	netiftest.RequireRoot(t)
	l := &lab{lb: netiftest.NewNetns(t, tag+"lb"), peer: netiftest.NewNetns(t, tag+"pe")}
	netiftest.Veth(t, l.lb, "eth7", lbMAC, l.peer, "p0")
	l.peer.Run(t, "ip", "addr", "add", "198.51.100.1/24", "dev", "p0")
	l.peer.Run(t, "ip", "addr", "add", "2001:db8:7::1/64", "dev", "p0", "nodad")
	l.peer.Run(t, "ip", "link", "set", "p0", "up")
	return l
}

func (l *lab) manager(t *testing.T, state string) *netif.Manager {
	t.Helper()
	m, err := netif.New(netif.Options{NetnsPath: l.lb.Path, StatePath: state})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func addrsOf(t *testing.T, ns *netiftest.Netns, name string) []netip.Prefix {
	t.Helper()
	link, err := ns.NL.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	as, err := ns.NL.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Prefix
	for _, a := range as {
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out
}

func hasLinkLocal(ps []netip.Prefix) bool {
	return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Addr().IsLinkLocalUnicast() })
}

func wanSpec() netif.Spec {
	return netif.Spec{
		Name: "wan", MAC: lbMAC, MTU: 1400,
		Addresses: []netip.Prefix{netip.MustParsePrefix("198.51.100.2/24"), netip.MustParsePrefix("2001:db8:7::2/64")},
		Gateway:   netip.MustParseAddr("198.51.100.1"),
		Gateway6:  netip.MustParseAddr("2001:db8:7::1"),
		Routes:    []netif.Route{{To: netip.MustParsePrefix("192.0.2.0/24"), Via: netip.MustParseAddr("198.51.100.1")}},
	}
}

func changesString(cs []netif.Change) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.String())
	}
	return strings.Join(s, "\n")
}

// TestApplyStatic: NIC matched by MAC and renamed, MTU, up, static v4+v6
// addresses, default gateways and an extra route; traffic flows; re-apply
// (also from a fresh Manager, as after an lbd restart) changes nothing.
func TestApplyStatic(t *testing.T) {
	l := newLab(t, "ap")
	// An address somebody else put there: lbd must never remove it.
	l.lb.Run(t, "ip", "addr", "add", "203.0.113.99/24", "dev", "eth7")
	state := filepath.Join(t.TempDir(), "netif.json")
	m := l.manager(t, state)

	changes, err := m.Apply([]netif.Spec{wanSpec()})
	if err != nil {
		t.Fatalf("Apply: %v\nchanges so far:\n%s", err, changesString(changes))
	}
	t.Logf("first apply:\n%s", changesString(changes))
	if len(changes) == 0 {
		t.Fatal("first Apply reported no changes")
	}

	link, err := l.lb.NL.LinkByName("wan")
	if err != nil {
		t.Fatalf("NIC not renamed to wan: %v", err)
	}
	if _, err := l.lb.NL.LinkByName("eth7"); err == nil {
		t.Error("eth7 still exists after rename")
	}
	if link.Attrs().MTU != 1400 {
		t.Errorf("mtu %d, want 1400", link.Attrs().MTU)
	}
	addrs := addrsOf(t, l.lb, "wan")
	for _, want := range []string{"198.51.100.2/24", "2001:db8:7::2/64", "203.0.113.99/24"} {
		if !slices.Contains(addrs, netip.MustParsePrefix(want)) {
			t.Errorf("address %s missing; have %v", want, addrs)
		}
	}
	routes := l.lb.Run(t, "ip", "-4", "route", "show", "proto", "176")
	for _, want := range []string{"default via 198.51.100.1 dev wan", "192.0.2.0/24 via 198.51.100.1 dev wan"} {
		if !strings.Contains(routes, want) {
			t.Errorf("route %q missing in:\n%s", want, routes)
		}
	}
	if r6 := l.lb.Run(t, "ip", "-6", "route", "show", "proto", "176"); !strings.Contains(r6, "default via 2001:db8:7::1 dev wan") {
		t.Errorf("IPv6 default route missing in:\n%s", r6)
	}
	netiftest.Reachable(t, l.lb, l.peer, netip.MustParseAddr("198.51.100.1"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.WaitAddressesReady(ctx); err != nil {
		t.Fatal(err)
	}
	netiftest.Reachable(t, l.lb, l.peer, netip.MustParseAddr("2001:db8:7::1"))
	// The gateways carry traffic beyond the link: the peer answers for an
	// address outside every connected subnet of lb.
	l.peer.Run(t, "ip", "addr", "add", "192.0.2.200/32", "dev", "lo")
	l.peer.Run(t, "ip", "addr", "add", "2001:db8:ff::1/128", "dev", "lo")
	netiftest.Reachable(t, l.lb, l.peer, netip.MustParseAddr("192.0.2.200"))
	netiftest.Reachable(t, l.lb, l.peer, netip.MustParseAddr("2001:db8:ff::1"))

	if changes, err := m.Apply([]netif.Spec{wanSpec()}); err != nil || len(changes) != 0 {
		t.Errorf("re-apply: err %v, changes (want none):\n%s", err, changesString(changes))
	}
	m2 := l.manager(t, state)
	if changes, err := m2.Apply([]netif.Spec{wanSpec()}); err != nil || len(changes) != 0 {
		t.Errorf("apply from a new Manager: err %v, changes (want none):\n%s", err, changesString(changes))
	}
	if st := m.Status(); len(st) != 1 || st[0].Device != "eth7" {
		t.Errorf("status device = %+v, want the pre-rename name eth7", st)
	}
	st := m2.Status()
	if len(st) != 1 || st[0].Name != "wan" || st[0].MAC != lbMAC || !st[0].AdminUp || !st[0].LinkUp ||
		!slices.Contains(st[0].Addresses, netip.MustParsePrefix("198.51.100.2/24")) {
		t.Errorf("status = %+v", st)
	}
}

// TestApplyChangesOnlyTheDifference: a reload that changes an address and
// drops a gateway and a route touches exactly those; foreign and link-local
// addresses stay; an empty config removes what lbd added and nothing else.
func TestApplyChangesOnlyTheDifference(t *testing.T) {
	l := newLab(t, "df")
	l.lb.Run(t, "ip", "addr", "add", "203.0.113.99/24", "dev", "eth7")
	// A route lbd did not add (protocol static) must survive too.
	m := l.manager(t, filepath.Join(t.TempDir(), "netif.json"))
	if _, err := m.Apply([]netif.Spec{wanSpec()}); err != nil {
		t.Fatal(err)
	}
	l.lb.Run(t, "ip", "route", "add", "203.0.113.128/25", "via", "203.0.113.1", "proto", "static")

	spec := wanSpec()
	spec.Addresses[0] = netip.MustParsePrefix("198.51.100.3/24")
	spec.Gateway6 = netip.Addr{}
	spec.Routes = nil
	changes, err := m.Apply([]netif.Spec{spec})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	got := changesString(changes)
	want := strings.Join([]string{
		"wan: add-address 198.51.100.3/24",
		"wan: del-address 198.51.100.2/24",
		"wan: del-route ::/0 via 2001:db8:7::1",
		"wan: del-route 192.0.2.0/24 via 198.51.100.1",
	}, "\n")
	if !sameLines(got, want) {
		t.Errorf("changes:\n%s\nwant (any order):\n%s", got, want)
	}
	addrs := addrsOf(t, l.lb, "wan")
	if !slices.Contains(addrs, netip.MustParsePrefix("198.51.100.3/24")) || slices.Contains(addrs, netip.MustParsePrefix("198.51.100.2/24")) {
		t.Errorf("address not replaced: %v", addrs)
	}
	if !slices.Contains(addrs, netip.MustParsePrefix("203.0.113.99/24")) || !hasLinkLocal(addrs) {
		t.Errorf("foreign or link-local address lost: %v", addrs)
	}
	// The default route survived the replacement of the address it uses.
	if r := l.lb.Run(t, "ip", "-4", "route", "show", "default"); !strings.Contains(r, "via 198.51.100.1") {
		t.Errorf("default route lost: %s", r)
	}
	netiftest.Reachable(t, l.lb, l.peer, netip.MustParseAddr("198.51.100.1"))

	changes, err = m.Apply(nil)
	if err != nil {
		t.Fatalf("Apply(nil): %v", err)
	}
	t.Logf("empty config:\n%s", changesString(changes))
	addrs = addrsOf(t, l.lb, "wan")
	if slices.Contains(addrs, netip.MustParsePrefix("198.51.100.3/24")) || slices.Contains(addrs, netip.MustParsePrefix("2001:db8:7::2/64")) {
		t.Errorf("lbd's addresses not removed: %v", addrs)
	}
	if !slices.Contains(addrs, netip.MustParsePrefix("203.0.113.99/24")) {
		t.Errorf("foreign address removed: %v", addrs)
	}
	if r := l.lb.Run(t, "ip", "route", "show", "proto", "176"); strings.TrimSpace(r) != "" {
		t.Errorf("lbd routes left: %s", r)
	}
	if r := l.lb.Run(t, "ip", "route", "show", "proto", "static"); !strings.Contains(r, "203.0.113.128/25") {
		t.Errorf("foreign route removed: %q", r)
	}
}

func sameLines(a, b string) bool {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// TestApplyMatchErrors: a spec whose NIC is missing or ambiguous fails with
// its name, before anything is changed; matching by device name renames.
func TestApplyMatchErrors(t *testing.T) {
	l := newLab(t, "me")
	netiftest.Veth(t, l.lb, "eth8", "", l.peer, "p1")
	netiftest.Veth(t, l.lb, "eth9", lbMAC, l.peer, "p2") // same MAC as eth7
	m := l.manager(t, "")

	_, err := m.Apply([]netif.Spec{{Name: "lan", Device: "eth8"}, {Name: "wan", MAC: lbMAC}})
	if err == nil || !strings.Contains(err.Error(), `interface "wan"`) || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("ambiguous MAC: err = %v", err)
	}
	if _, err := l.lb.NL.LinkByName("eth8"); err != nil {
		t.Errorf("a failed match changed a NIC: %v", err)
	}
	_, err = m.Apply([]netif.Spec{{Name: "dmz", MAC: "02:00:00:00:07:99"}})
	if err == nil || !strings.Contains(err.Error(), `interface "dmz": no NIC with mac 02:00:00:00:07:99`) {
		t.Errorf("missing MAC: err = %v", err)
	}
	changes, err := m.Apply([]netif.Spec{{Name: "lan", Device: "eth8"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.lb.NL.LinkByName("lan"); err != nil {
		t.Errorf("eth8 not renamed to lan (changes %v): %v", changes, err)
	}
	if changes, err := m.Apply([]netif.Spec{{Name: "lan", Device: "eth8"}}); err != nil || len(changes) != 0 {
		t.Errorf("re-apply by device name after rename: err %v changes %v", err, changes)
	}
}

// TestFirstApplyWaitsForLateNIC: at boot a NIC's driver may load after lbd
// starts. The first Apply waits (FirstApplyWait) for a listed NIC that
// appears meanwhile and applies it; a later Apply with a missing NIC fails
// at once, as a config error. The NIC is added only once Apply is seen
// waiting (its log line), so the wait is what makes the first Apply pass.
func TestFirstApplyWaitsForLateNIC(t *testing.T) {
	l := newLab(t, "lw")
	logs := &netiftest.LogBuffer{}
	m, err := netif.New(netif.Options{NetnsPath: l.lb.Path, FirstApplyWait: time.Minute,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	const lateMAC = "02:00:00:00:07:42"
	go func() {
		for !strings.Contains(logs.String(), "waiting for a NIC to appear") {
			time.Sleep(20 * time.Millisecond)
		}
		netiftest.Veth(t, l.lb, "eth6", lateMAC, l.peer, "p6")
	}()
	if _, err := m.Apply([]netif.Spec{{Name: "late", MAC: lateMAC}}); err != nil {
		t.Fatalf("first Apply did not wait for the late NIC: %v", err)
	}
	if _, err := l.lb.NL.LinkByName("late"); err != nil {
		t.Errorf("late NIC not renamed: %v", err)
	}
	_, err = m.Apply([]netif.Spec{{Name: "late", MAC: lateMAC}, {Name: "dmz", MAC: "02:00:00:00:07:99"}})
	if err == nil || !strings.Contains(err.Error(), `interface "dmz": no NIC with mac 02:00:00:00:07:99`) {
		t.Errorf("second Apply with a missing NIC: err = %v, want the missing NIC at once", err)
	}
}
