package dhcp_test

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"lbd/appliance/dhcp"
	"lbd/appliance/netif/netiftest"

	"github.com/vishvananda/netlink"
)

const clientMAC = "02:00:00:00:0d:01"

var vip = netip.MustParsePrefix("198.51.100.10/32")

// dhcpLab: namespace "cl" with eth0 (the client's NIC, up, no address) and
// namespace "sv" with p0 198.51.100.1/24 where dnsmasq runs.
type dhcpLab struct {
	cl, sv *netiftest.Netns
	dir    string
}

func newDHCPLab(t *testing.T, tag string) *dhcpLab {
	t.Helper()
	netiftest.RequireRoot(t)
	l := &dhcpLab{cl: netiftest.NewNetns(t, tag+"cl"), sv: netiftest.NewNetns(t, tag+"sv"), dir: t.TempDir()}
	netiftest.Veth(t, l.cl, "eth0", clientMAC, l.sv, "p0")
	l.sv.Run(t, "ip", "addr", "add", "198.51.100.1/24", "dev", "p0")
	l.sv.Run(t, "ip", "link", "set", "p0", "up")
	l.cl.Run(t, "ip", "link", "set", "eth0", "up")
	return l
}

// events records OnChange calls.
type events struct {
	mu   sync.Mutex
	list []string
}

func (e *events) on(l dhcp.Lease, bound bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if bound {
		e.list = append(e.list, "bound "+l.Address.String())
	} else {
		e.list = append(e.list, "lost "+l.Address.String())
	}
}

func (e *events) get() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.list)
}

func (l *dhcpLab) client(t *testing.T, ev *events) *dhcp.Client {
	t.Helper()
	c, err := dhcp.New(dhcp.Config{
		Interface:  "eth0",
		NetnsPath:  l.cl.Path,
		LeaseFile:  filepath.Join(l.dir, "eth0.lease"),
		ResolvConf: filepath.Join(l.dir, "resolv.conf"),
		OnChange:   ev.on,
		Timeout:    time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	return c
}

func (l *dhcpLab) addrs(t *testing.T) []netip.Prefix {
	t.Helper()
	link, err := l.cl.NL.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	as, err := l.cl.NL.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Prefix
	for _, a := range as {
		ip, _ := netip.AddrFromSlice(a.IP.To4())
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip, ones))
	}
	return out
}

func waitLease(t *testing.T, c *dhcp.Client, what string, ok func(dhcp.Lease) bool) dhcp.Lease {
	t.Helper()
	var got dhcp.Lease
	waitFor(t, 60*time.Second, what, func() bool {
		l, bound := c.Lease()
		got = l
		return bound && ok(l)
	})
	return got
}

// TestAcquireRenewRelease: a lease from dnsmasq puts address, default route
// and DNS in place; renewals at T1 go to the server and keep the address
// (and a VIP beside it); Stop releases the lease and removes only what DHCP
// added.
func TestAcquireRenewRelease(t *testing.T) {
	l := newDHCPLab(t, "dr")
	srv := startDnsmasq(t, l.sv, l.dir, "--dhcp-range=198.51.100.50,198.51.100.59,255.255.255.0,2m")
	ev := &events{}
	c := l.client(t, ev)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			c.Stop()
		}
	})

	lease := waitLease(t, c, "a lease", func(dhcp.Lease) bool { return true })
	t.Logf("lease: %s", lease)
	if lease.Address.Bits() != 24 || lease.Address.Addr().Compare(netip.MustParseAddr("198.51.100.50")) < 0 ||
		lease.Address.Addr().Compare(netip.MustParseAddr("198.51.100.59")) > 0 {
		t.Errorf("lease address %s not from the range /24", lease.Address)
	}
	if lease.Router != netip.MustParseAddr("198.51.100.1") || lease.Server != netip.MustParseAddr("198.51.100.1") {
		t.Errorf("router %s server %s, want 198.51.100.1", lease.Router, lease.Server)
	}
	if !slices.Equal(lease.DNS, []netip.Addr{netip.MustParseAddr("198.51.100.53")}) {
		t.Errorf("dns %v", lease.DNS)
	}
	if !lease.Expiry.After(lease.Rebind) || !lease.Rebind.After(lease.Renew) {
		t.Errorf("times out of order: renew %s rebind %s expiry %s", lease.Renew, lease.Rebind, lease.Expiry)
	}
	if !slices.Contains(l.addrs(t), lease.Address) {
		t.Errorf("leased address not on eth0: %v", l.addrs(t))
	}
	if r := l.cl.Run(t, "ip", "route", "show", "default"); !strings.Contains(r, "via 198.51.100.1 dev eth0 proto dhcp") {
		t.Errorf("default route: %q", r)
	}
	if b := l.cl.Run(t, "cat", filepath.Join(l.dir, "resolv.conf")); !strings.Contains(b, "nameserver 198.51.100.53") {
		t.Errorf("resolv.conf: %q", b)
	}
	netiftest.Reachable(t, l.cl, l.sv, netip.MustParseAddr("198.51.100.1"))

	// A VIP beside the lease, as netif puts it there.
	l.cl.Run(t, "ip", "addr", "add", vip.String(), "dev", "eth0")

	waitFor(t, 60*time.Second, "two renewals", func() bool { return c.Stats().Renewed >= 2 })
	st := c.Stats()
	if st.Acquired != 1 || st.Changed != 0 || st.Naks != 0 {
		t.Errorf("stats after renewals: %+v", st)
	}
	// dnsmasq saw the renewals as requests for the same address.
	if n := srv.count("DHCPREQUEST(p0) " + lease.Address.Addr().String()); n < 3 {
		t.Errorf("dnsmasq logged %d DHCPREQUESTs for %s, want 1 + renewals", n, lease.Address.Addr())
	}
	now, _ := c.Lease()
	if now.Address != lease.Address || !now.Expiry.After(lease.Expiry) {
		t.Errorf("after renewal: %s (was %s)", now, lease)
	}
	addrs := l.addrs(t)
	if !slices.Contains(addrs, lease.Address) || !slices.Contains(addrs, vip) {
		t.Errorf("addresses after renewal: %v", addrs)
	}

	stopped = true
	if err := c.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	waitFor(t, 10*time.Second, "dnsmasq to log the release", func() bool { return srv.count("DHCPRELEASE(p0)") > 0 })
	addrs = l.addrs(t)
	if slices.Contains(addrs, lease.Address) || !slices.Contains(addrs, vip) {
		t.Errorf("after Stop: %v, want the lease gone and the VIP kept", addrs)
	}
	if r := l.cl.Run(t, "ip", "route", "show", "proto", "dhcp"); strings.TrimSpace(r) != "" {
		t.Errorf("dhcp route left after Stop: %q", r)
	}
	if got := ev.get(); len(got) < 3 || got[0] != "bound "+lease.Address.String() || got[len(got)-1] != "lost "+lease.Address.String() {
		t.Errorf("OnChange events: %v", got)
	}
}

// TestAddressChange: the server restarts with a reservation for another
// address; the client's next renewal is refused, it acquires the new
// address, adds it, then removes the old one, and the VIP on the NIC stays.
func TestAddressChange(t *testing.T) {
	l := newDHCPLab(t, "dc")
	srv := startDnsmasq(t, l.sv, l.dir, "--dhcp-range=198.51.100.50,198.51.100.59,255.255.255.0,2m")
	ev := &events{}
	c := l.client(t, ev)
	t.Cleanup(func() { c.Stop() })

	first := waitLease(t, c, "a lease", func(dhcp.Lease) bool { return true })
	l.cl.Run(t, "ip", "addr", "add", vip.String(), "dev", "eth0")

	srv.stop()
	want := netip.MustParsePrefix("198.51.100.77/24")
	startDnsmasq(t, l.sv, l.dir, "--dhcp-range=198.51.100.50,198.51.100.99,255.255.255.0,2m",
		"--dhcp-host="+clientMAC+","+want.Addr().String())
	c.RenewNow()

	got := waitLease(t, c, "the reserved address", func(l dhcp.Lease) bool { return l.Address == want })
	addrs := l.addrs(t)
	if !slices.Contains(addrs, want) || slices.Contains(addrs, first.Address) {
		t.Errorf("addresses %v: want %s and not %s", addrs, want, first.Address)
	}
	if !slices.Contains(addrs, vip) {
		t.Errorf("VIP lost in the address change: %v", addrs)
	}
	if r := l.cl.Run(t, "ip", "route", "show", "default"); !strings.Contains(r, "via 198.51.100.1 dev eth0 proto dhcp") {
		t.Errorf("default route after change: %q", r)
	}
	st := c.Stats()
	if st.Changed != 1 {
		t.Errorf("stats %+v: want exactly one address change", st)
	}
	t.Logf("new lease %s, stats %+v, events %v", got, st, ev.get())
	netiftest.Reachable(t, l.cl, l.sv, netip.MustParseAddr("198.51.100.1"))
}

// TestRebind: when the server cannot be reached by unicast, renewals fail
// and at T2 the client rebinds by broadcast and keeps its address.
func TestRebind(t *testing.T) {
	l := newDHCPLab(t, "rb")
	srv := startDnsmasq(t, l.sv, l.dir, "--dhcp-range=198.51.100.50,198.51.100.59,255.255.255.0,2m",
		"--dhcp-option=option:T1,2s", "--dhcp-option=option:T2,5s")
	c := l.client(t, &events{})
	t.Cleanup(func() { c.Stop() })
	first := waitLease(t, c, "a lease", func(dhcp.Lease) bool { return true })

	// Unicast to the server now goes to a next hop that never answers
	// ARP; the raw broadcast of a rebind does not consult routes.
	l.cl.Run(t, "ip", "route", "add", "198.51.100.1/32", "via", "198.51.100.99", "dev", "eth0")
	renewedBefore := c.Stats().Renewed
	waitFor(t, 60*time.Second, "a rebind", func() bool { return c.Stats().Rebound >= 1 })
	st := c.Stats()
	now, _ := c.Lease()
	if now.Address != first.Address || st.Changed != 0 || st.Renewed != renewedBefore {
		t.Errorf("after rebind: lease %s (was %s), stats %+v", now, first, st)
	}
	if !now.Expiry.After(first.Expiry) {
		t.Errorf("rebind did not extend the lease: %s -> %s", first.Expiry, now.Expiry)
	}
	if n := srv.count("DHCPACK(p0) " + first.Address.Addr().String()); n < 2 {
		t.Errorf("dnsmasq ACKed %d times, want the first lease and the rebind", n)
	}
}

// TestRestartAsksForPreviousAddress: a new client (after a restart) reads
// the lease file and asks for the address it had, and gets it even though
// the server would give its MAC another one.
func TestRestartAsksForPreviousAddress(t *testing.T) {
	l := newDHCPLab(t, "rs")
	startDnsmasq(t, l.sv, l.dir, "--dhcp-range=198.51.100.50,198.51.100.59,255.255.255.0,2m")
	c := l.client(t, &events{})
	old := waitLease(t, c, "a lease", func(dhcp.Lease) bool { return true })
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}

	// Find a MAC that the server, asked nothing, gives another address.
	var fresh dhcp.Lease
	for i := 2; ; i++ {
		if i > 20 {
			t.Fatal("no MAC found that dnsmasq maps to another address")
		}
		l.cl.Run(t, "ip", "link", "set", "eth0", "address", fmt.Sprintf("02:00:00:00:0d:%02x", i))
		probe, err := dhcp.New(dhcp.Config{Interface: "eth0", NetnsPath: l.cl.Path, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		probe.Start()
		fresh = waitLease(t, probe, "a probe lease", func(dhcp.Lease) bool { return true })
		probe.Stop()
		if fresh.Address != old.Address {
			break
		}
	}

	// The restarted client has the lease file of the first one.
	c2 := l.client(t, &events{})
	t.Cleanup(func() { c2.Stop() })
	got := waitLease(t, c2, "a lease", func(dhcp.Lease) bool { return true })
	if got.Address != old.Address {
		t.Errorf("restarted client got %s, want its previous %s (the server's own pick was %s)", got.Address, old.Address, fresh.Address)
	}
}
