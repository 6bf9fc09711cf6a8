package host

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"lbd/appliance/netif/netiftest"
	"lbd/config"
)

// The namespace tests run in a child process started in a fresh network
// namespace (CLONE_NEWNET), not on a goroutine that switched namespace:
// Host starts goroutines of its own (DHCP clients, VIP announcements) that
// may run on any thread, and only a whole process in the namespace keeps
// all of them away from the machine's NICs. The namespace dies with the
// child, so it is cleaned up on every path, also when the child crashes.
const (
	childEnv    = "LBD_HOST_TEST_CHILD"
	parentNSEnv = "LBD_HOST_TEST_PARENT_NETNS"
)

// inNetns runs body in a child test process inside a new network namespace.
func inNetns(t *testing.T, body func(t *testing.T)) {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		self, err := os.Readlink("/proc/self/ns/net")
		if err != nil || self == os.Getenv(parentNSEnv) {
			t.Fatalf("child is not in a namespace of its own (%s, %v): refusing to touch NICs", self, err)
		}
		body(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: needs root to create a network namespace; run the tests as root")
	}
	parent, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name(), parentNSEnv+"="+parent)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("in its own network namespace: %v\n%s", err, out)
	}
	if testing.Verbose() {
		t.Logf("child:\n%s", out)
	}
}

// logBuffer collects Host's log lines; Host logs one line per change, so
// the log tells what an Apply did.
type logBuffer = netiftest.LogBuffer

func newHost(t *testing.T) (*Host, *logBuffer, string) {
	t.Helper()
	dir := t.TempDir()
	logs := &logBuffer{}
	h := New(dir, slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), nil)))
	t.Cleanup(h.Close)
	return h, logs, dir
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// conntrackPin is a [conntrack] section that asks for the table size the
// kernel already has: nf_conntrack_max is global, and a test must not
// change it for the whole machine even on kernels that let a child
// namespace write it.
func conntrackPin(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_max")
	if err != nil {
		t.Fatalf("nf_conntrack is not loaded (%v): Host.Apply sets conntrack sysctls and needs it; load it (modprobe nf_conntrack) and run again", err)
	}
	return "\n[conntrack]\nmax = " + strings.TrimSpace(string(b)) + "\n"
}

func parseFile(t *testing.T, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(text))
	if err != nil {
		t.Fatalf("config does not validate:\n%v\n%s", err, text)
	}
	return cfg
}

// linkDump describes every link of the namespace with its addresses and
// routes, to compare the namespace before and after an Apply.
func linkDump(t *testing.T) string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range links {
		a := l.Attrs()
		lines = append(lines, fmt.Sprintf("link %d %s %s mtu %d flags %v", a.Index, a.Name, a.HardwareAddr, a.MTU, a.Flags))
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		for _, ad := range addrs {
			lines = append(lines, fmt.Sprintf("addr %s %s", a.Name, ad.IPNet))
		}
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: syscall.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		lines = append(lines, fmt.Sprintf("route %s", r))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func addrsOf(t *testing.T, name string) []netip.Prefix {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out
}

// addNIC adds a veth pair: name (with mac) stands for a NIC of the
// appliance, peer for the wire. Veth rather than dummy: the dummy module
// is not on every test kernel.
func addNIC(t *testing.T, name, mac, peer string) {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: hw}, PeerName: peer}); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	p, err := netlink.LinkByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(p); err != nil {
		t.Fatal(err)
	}
}

func readSysctl(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/")))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// README: "Without [[interface]] sections lbd touches no NIC." Host must
// leave every link, address and route as it found them, write no NIC
// state, and still apply its sysctls (to this namespace).
func TestApplyWithoutInterfacesTouchesNothing(t *testing.T) {
	inNetns(t, func(t *testing.T) {
		// The kernel changes a new link on its own for a while (carrier,
		// IPv6 link-local addresses and routes); the snapshot below must
		// only see changes made by Apply. No IPv6 on these links (this
		// namespace's default only), and wait for carrier.
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1"), 0); err != nil {
			t.Fatal(err)
		}
		// Something that a careless Apply could rename, take down or
		// strip: a NIC with an address and a route, and lo.
		addNIC(t, "eth0", "02:00:00:00:10:01", "peer0")
		l, _ := netlink.LinkByName("eth0")
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("192.0.2.1"), Mask: net.CIDRMask(24, 32)}}); err != nil {
			t.Fatal(err)
		}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: &net.IPNet{IP: net.ParseIP("198.51.100.0").To4(), Mask: net.CIDRMask(24, 32)}, Gw: net.ParseIP("192.0.2.254")}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "carrier on eth0 and peer0", func() bool {
			for _, n := range []string{"eth0", "peer0"} {
				if l, err := netlink.LinkByName(n); err != nil || l.Attrs().RawFlags&unix.IFF_RUNNING == 0 {
					return false
				}
			}
			return true
		})
		before := linkDump(t)

		h, logs, dir := newHost(t)
		cfg := parseFile(t, noInterfaces+conntrackPin(t))
		for i := 0; i < 2; i++ {
			if err := h.Apply(cfg); err != nil {
				t.Fatalf("Apply #%d: %v", i+1, err)
			}
			if after := linkDump(t); after != before {
				t.Errorf("Apply #%d changed the namespace's NICs:\nbefore:\n%s\nafter:\n%s", i+1, before, after)
			}
			if log := logs.Take(); strings.Contains(log, "interface change") || strings.Contains(log, "announced") {
				t.Errorf("Apply #%d logged NIC changes:\n%s", i+1, log)
			}
		}
		if st := h.Status(); st != nil {
			t.Errorf("Status = %+v, want nil: no NIC is managed", st)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("state dir holds %v, want nothing: no NIC, no lease", ents)
		}
		// The sysctls did land, in this namespace.
		if v := readSysctl(t, "net.ipv4.ip_forward"); v != "1" {
			t.Errorf("ip_forward = %s, want 1", v)
		}
		if v := readSysctl(t, "net.netfilter.nf_conntrack_tcp_timeout_established"); v != "3600" {
			t.Errorf("conntrack established timeout = %s, want lbd's 3600", v)
		}
	})
}

const staticLAN = `
[[interface]]
name = "lan"
mac = "02:00:00:00:20:01"
addresses = ["192.0.2.1/24"]
`

func vipService(name, vip string, port int) string {
	addr := "192.0.2.11"
	if strings.Contains(vip, ":") {
		addr = "[2001:db8::11]"
	}
	return fmt.Sprintf(`
[[service]]
name = %q
vip = %q
port = %d
interface = "lan"
  [[service.backend]]
  address = "%s:80"
`, name, vip, port, addr)
}

// VIPs follow the services through Host: added to the NIC the service
// names, once per address however many services share it, removed when the
// last service goes, and re-applying changes nothing. Dropping every
// [[interface]] hands the NIC back: lbd's addresses go, the NIC stays.
func TestApplyInterfaceAndVIPs(t *testing.T) {
	inNetns(t, func(t *testing.T) {
		addNIC(t, "eth5", "02:00:00:00:20:01", "peer5")
		h, logs, dir := newHost(t)
		pin := conntrackPin(t)
		vip4, vip6 := netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("2001:db8::10/128")
		static := netip.MustParsePrefix("192.0.2.1/24")

		full := parseFile(t, staticLAN+pin+vipService("web", "192.0.2.10", 80)+vipService("tls", "192.0.2.10", 443)+vipService("web6", "2001:db8::10", 80))
		if err := h.Apply(full); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		addrs := addrsOf(t, "lan")
		for _, want := range []netip.Prefix{static, vip4, vip6} {
			if !slices.Contains(addrs, want) {
				t.Errorf("lan lacks %s; has %v", want, addrs)
			}
		}
		if _, err := netlink.LinkByName("eth5"); err == nil {
			t.Error("eth5 not renamed to lan")
		}
		if _, err := os.Stat(filepath.Join(dir, "netif.json")); err != nil {
			t.Errorf("address ownership not recorded in the state dir: %v", err)
		}
		st := h.Status()
		if len(st) != 1 || st[0].Name != "lan" || st[0].Device != "eth5" || st[0].MAC != "02:00:00:00:20:01" || !st[0].LinkUp || st[0].DHCP ||
			!slices.Contains(st[0].Addresses, "192.0.2.10/32") || !slices.Contains(st[0].Addresses, "192.0.2.1/24") {
			t.Errorf("Status = %+v", st)
		}
		logs.Take()

		if err := h.Apply(full); err != nil {
			t.Fatalf("re-Apply: %v", err)
		}
		if log := logs.Take(); strings.Contains(log, "interface change") || strings.Contains(log, "announced") {
			t.Errorf("re-applying the same config changed something:\n%s", log)
		}

		// web6 goes, one of the two services on 192.0.2.10 goes: only the
		// IPv6 VIP leaves.
		less := parseFile(t, staticLAN+pin+vipService("web", "192.0.2.10", 80))
		if err := h.Apply(less); err != nil {
			t.Fatalf("Apply without web6: %v", err)
		}
		addrs = addrsOf(t, "lan")
		if slices.Contains(addrs, vip6) || !slices.Contains(addrs, vip4) || !slices.Contains(addrs, static) {
			t.Errorf("after dropping web6: %v; want %s gone, %s and %s kept", addrs, vip6, vip4, static)
		}

		none := parseFile(t, staticLAN+pin+noInterfaces)
		if err := h.Apply(none); err != nil {
			t.Fatalf("Apply without VIP services: %v", err)
		}
		if addrs = addrsOf(t, "lan"); slices.Contains(addrs, vip4) || !slices.Contains(addrs, static) {
			t.Errorf("after dropping every VIP service: %v", addrs)
		}

		// Back to a config with a VIP, then one without any [[interface]].
		if err := h.Apply(less); err != nil {
			t.Fatal(err)
		}
		if err := h.Apply(parseFile(t, noInterfaces+pin)); err != nil {
			t.Fatalf("Apply without [[interface]]: %v", err)
		}
		addrs = addrsOf(t, "lan")
		if slices.Contains(addrs, vip4) || slices.Contains(addrs, static) {
			t.Errorf("[[interface]] removed from the config, lbd's addresses stay: %v", addrs)
		}
	})
}

// A DHCP NIC through Host: the client starts after the NIC is set up, its
// lease shows in Status and is kept in the state dir; switching the NIC to
// static stops the client.
func TestApplyDHCPInterface(t *testing.T) {
	inNetns(t, func(t *testing.T) {
		if _, err := exec.LookPath("dnsmasq"); err != nil {
			t.Fatalf("needs dnsmasq as the DHCP server (Debian: dnsmasq-base): %v", err)
		}
		addNIC(t, "eth3", "02:00:00:00:30:01", "srv0")
		dlog := startDHCPServer(t, "srv0")

		h, logs, dir := newHost(t)
		pin := conntrackPin(t)
		dhcpCfg := parseFile(t, pin+dhcpNIC)
		if err := h.Apply(dhcpCfg); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		leased := waitLease(t, h, "wan")
		st := h.Status()[0]
		if st.Device != "eth3" || !st.LeaseExpiry.After(time.Now()) {
			t.Errorf("Status = %+v", st)
		}
		if _, err := os.Stat(filepath.Join(dir, "dhcp-wan.lease")); err != nil {
			t.Errorf("lease not kept in the state dir: %v", err)
		}

		// The NIC renamed, still DHCP: the old client must take its
		// address off before the rename hides the NIC from it, and the
		// new one leases again; one leased address, not two.
		if err := h.Apply(parseFile(t, pin+strings.ReplaceAll(dhcpNIC, `"wan"`, `"uplink"`))); err != nil {
			t.Fatalf("Apply renamed: %v", err)
		}
		if log := logs.Take(); strings.Contains(log, "DHCP release") {
			t.Errorf("the old client could not release its lease:\n%s", log)
		}
		// The client sends its RELEASE before Release returns; the wait
		// is for dnsmasq to read and log it.
		waitFor(t, "dnsmasq to log the RELEASE of the renamed NIC's lease", func() bool {
			return strings.Contains(dlog.String(), "DHCPRELEASE(srv0)")
		})
		leased = waitLease(t, h, "uplink")
		if n := countIn(addrsOf(t, "uplink"), leaseNet); n != 1 {
			t.Errorf("uplink has %d addresses from the DHCP range, want 1: %v", n, addrsOf(t, "uplink"))
		}

		// The same NIC, now static: the client stops, and the leased
		// address, which nobody renews any more, must not stay behind.
		static := parseFile(t, pin+`
[[interface]]
name = "uplink"
mac = "02:00:00:00:30:01"
addresses = ["198.51.100.2/24"]
`)
		if err := h.Apply(static); err != nil {
			t.Fatalf("Apply static: %v", err)
		}
		st = h.Status()[0]
		if st.DHCP || !st.LeaseExpiry.IsZero() {
			t.Errorf("Status after switching to static = %+v; want no DHCP, no lease", st)
		}
		if addrs := addrsOf(t, "uplink"); slices.Contains(addrs, leased) {
			t.Errorf("leased %s left on the NIC after DHCP was turned off; nothing renews it (addresses %v)", leased, addrs)
		}
	})
}

const dhcpNIC = `
[[interface]]
name = "wan"
mac = "02:00:00:00:30:01"
dhcp = true
`

var leaseNet = netip.MustParsePrefix("198.51.100.48/28") // holds dnsmasq's range .50-.59

func countIn(addrs []netip.Prefix, n netip.Prefix) int {
	c := 0
	for _, a := range addrs {
		if n.Contains(a.Addr()) {
			c++
		}
	}
	return c
}

// startDHCPServer moves peer into a namespace of its own and runs dnsmasq
// there on 198.51.100.1/24, handing out .50-.59. The server needs its own
// namespace: with both ends in one, the client's unicast RELEASE to
// 198.51.100.1 is delivered locally over lo, never reaching dnsmasq.
func startDHCPServer(t *testing.T, peer string) *logBuffer {
	t.Helper()
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Fatalf("needs dnsmasq as the DHCP server (Debian: dnsmasq-base): %v", err)
	}
	dir := t.TempDir()
	dlog := &logBuffer{}
	cmd := exec.Command("dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
		"--interface="+peer, "--bind-interfaces", "--dhcp-authoritative", "--log-dhcp", "--log-facility=-",
		"--dhcp-range=198.51.100.50,198.51.100.59,255.255.255.0,1h",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--pid-file="+filepath.Join(dir, "pid"))
	cmd.Stdout, cmd.Stderr = dlog, dlog
	errc := make(chan error, 1)
	go func() {
		// This thread enters the server's namespace and is never unlocked,
		// so the runtime discards it when the goroutine ends. dnsmasq is
		// forked from it and so starts inside that namespace.
		runtime.LockOSThread()
		errc <- func() error {
			client, err := netns.Get()
			if err != nil {
				return err
			}
			defer client.Close()
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("unshare: %w", err)
			}
			server, err := netns.Get()
			if err != nil {
				return err
			}
			defer server.Close()
			ch, err := netlink.NewHandleAt(client)
			if err != nil {
				return err
			}
			defer ch.Close()
			sh, err := netlink.NewHandleAt(server)
			if err != nil {
				return err
			}
			defer sh.Close()
			l, err := ch.LinkByName(peer)
			if err != nil {
				return err
			}
			if err := ch.LinkSetNsFd(l, int(server)); err != nil {
				return fmt.Errorf("move %s: %w", peer, err)
			}
			if l, err = sh.LinkByName(peer); err != nil {
				return err
			}
			if err := sh.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("198.51.100.1"), Mask: net.CIDRMask(24, 32)}}); err != nil {
				return err
			}
			if err := sh.LinkSetUp(l); err != nil {
				return err
			}
			return cmd.Start()
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("DHCP server: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq:\n%s", dlog.String())
		}
	})
	return dlog
}

// waitLease waits until Status shows NIC name with a bound DHCP lease and
// returns the leased address.
func waitLease(t *testing.T, h *Host, name string) netip.Prefix {
	t.Helper()
	var leased netip.Prefix
	waitFor(t, "a DHCP lease on "+name+" in Status", func() bool {
		for _, n := range h.Status() {
			if n.Name != name || !n.DHCP || n.LeaseExpiry.IsZero() {
				continue
			}
			for _, a := range n.Addresses {
				if p := netip.MustParsePrefix(a); leaseNet.Contains(p.Addr()) {
					leased = p
					return true
				}
			}
		}
		return false
	})
	return leased
}

// waitFor polls cond until it holds; the bound only turns a hang into a
// failure, it asserts nothing about speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}
