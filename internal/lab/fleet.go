package lab

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Fleet is a router in front of several lbd appliances that share one
// backend segment (documentation ranges only):
//
//	client (198.51.100.2.., 2001:db8:1::2) --- rt eth0 (198.51.100.1, 2001:db8:1::1)
//	rt frontbr (203.0.113.254/25, 2001:db8:4::fe) --- lbN eth0 (203.0.113.128+N, 2001:db8:4::N)
//	lbN eth1 (192.0.2.N, 2001:db8:2::N) --- sw lanbr --- beI (192.0.2.10+I, 2001:db8:2::10+I)
//
// The router runs BIRD 2 (BGP from every node, BFD, ECMP into the kernel
// with `merge paths`, L4 multipath hashing); the VIPs (FleetVIP...) are on
// no interface: the router learns them from the nodes.
type Fleet struct {
	*Lab
	Nodes, Backends int
	// Dir holds the router's BIRD config, control socket and log.
	Dir string
}

// Fleet addresses and AS numbers.
const (
	RouterClientV4 = "198.51.100.1"
	RouterFrontV4  = "203.0.113.254"
	RouterFrontV6  = "2001:db8:4::fe"
	RouterASN      = 65000
	FleetASN       = 65010
)

// NodeFrontV4 is node i's (from 1) address toward the router.
func NodeFrontV4(i int) string { return fmt.Sprintf("203.0.113.%d", 128+i) }

// NodeFrontV6 is node i's IPv6 address toward the router.
func NodeFrontV6(i int) string { return fmt.Sprintf("2001:db8:4::%d", i) }

// NodeLanV4 is node i's address on the backend segment (its masquerade
// address: the backends see it as the client).
func NodeLanV4(i int) string { return fmt.Sprintf("192.0.2.%d", i) }

// Node names node namespace i (from 1).
func (f *Fleet) Node(i int) string { return fmt.Sprintf("lb%d", i) }

// Backend names backend namespace i (from 1).
func (f *Fleet) Backend(i int) string { return fmt.Sprintf("be%d", i) }

// FleetClientAddr is the client's i-th IPv4 address (from 0); the client
// namespace holds clients addresses so tests can act as several clients.
func FleetClientAddr(i int) string { return fmt.Sprintf("198.51.100.%d", 2+i) }

// FleetClients is how many client addresses the client namespace holds.
const FleetClients = 8

// NewFleet builds the topology; dir keeps the router's files. Nothing runs
// yet (StartRouter, StartBackends).
func NewFleet(prefix, dir string, nodes, backends int) (*Fleet, error) {
	f := &Fleet{Lab: New(prefix), Nodes: nodes, Backends: backends, Dir: dir}
	if err := f.build(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (f *Fleet) build() error {
	for _, ns := range []string{"client", "rt", "sw"} {
		if _, err := f.AddNS(ns); err != nil {
			return err
		}
	}
	if err := f.Link("client", "eth0", "rt", "eth0"); err != nil {
		return err
	}
	steps := [][]string{
		{"rt", "ip", "addr", "add", RouterClientV4 + "/24", "dev", "eth0"},
		{"rt", "ip", "addr", "add", "2001:db8:1::1/64", "dev", "eth0", "nodad"},
		{"rt", "ip", "link", "add", "frontbr", "type", "bridge"},
		{"rt", "ip", "link", "set", "frontbr", "up"},
		{"rt", "ip", "addr", "add", RouterFrontV4 + "/25", "dev", "frontbr"},
		{"rt", "ip", "addr", "add", RouterFrontV6 + "/64", "dev", "frontbr", "nodad"},
		// Forwarding and L4 (5-tuple) multipath hashing in the router's
		// namespace only: without it all flows of one client would take
		// one path.
		{"rt", "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
			"net.ipv4.fib_multipath_hash_policy=1", "net.ipv6.fib_multipath_hash_policy=1"},
		{"sw", "ip", "link", "add", "lanbr", "type", "bridge"},
		{"sw", "ip", "link", "set", "lanbr", "up"},
		{"client", "ip", "addr", "add", "2001:db8:1::2/64", "dev", "eth0", "nodad"},
	}
	for i := 0; i < FleetClients; i++ {
		steps = append(steps, []string{"client", "ip", "addr", "add", FleetClientAddr(i) + "/24", "dev", "eth0"})
	}
	steps = append(steps, []string{"client", "ip", "route", "add", "default", "via", RouterClientV4},
		[]string{"client", "ip", "-6", "route", "add", "default", "via", "2001:db8:1::1"})
	if err := f.run(steps); err != nil {
		return err
	}
	for i := 1; i <= f.Nodes; i++ {
		n := f.Node(i)
		if _, err := f.AddNS(n); err != nil {
			return err
		}
		if err := f.Link(n, "eth0", "rt", fmt.Sprintf("f%d", i)); err != nil {
			return err
		}
		if err := f.Link(n, "eth1", "sw", fmt.Sprintf("l%d", i)); err != nil {
			return err
		}
		if err := f.run([][]string{
			// Keep the IPv6 addresses when a test takes the link down.
			{n, "sysctl", "-qw", "net.ipv6.conf.eth0.keep_addr_on_down=1"},
			{"rt", "ip", "link", "set", fmt.Sprintf("f%d", i), "master", "frontbr"},
			{"sw", "ip", "link", "set", fmt.Sprintf("l%d", i), "master", "lanbr"},
			{n, "ip", "addr", "add", NodeFrontV4(i) + "/25", "dev", "eth0"},
			{n, "ip", "addr", "add", NodeFrontV6(i) + "/64", "dev", "eth0", "nodad"},
			{n, "ip", "addr", "add", NodeLanV4(i) + "/24", "dev", "eth1"},
			{n, "ip", "addr", "add", fmt.Sprintf("2001:db8:2::%d/64", i), "dev", "eth1", "nodad"},
			{n, "ip", "route", "add", "default", "via", RouterFrontV4},
			{n, "ip", "-6", "route", "add", "default", "via", RouterFrontV6},
			{n, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"},
		}); err != nil {
			return err
		}
	}
	for i := 1; i <= f.Backends; i++ {
		b := f.Backend(i)
		if _, err := f.AddNS(b); err != nil {
			return err
		}
		if err := f.Link(b, "eth0", "sw", fmt.Sprintf("b%d", i)); err != nil {
			return err
		}
		if err := f.run([][]string{
			{"sw", "ip", "link", "set", fmt.Sprintf("b%d", i), "master", "lanbr"},
			{b, "ip", "addr", "add", BackendV4(i) + "/24", "dev", "eth0"},
			{b, "ip", "addr", "add", BackendV6(i) + "/64", "dev", "eth0", "nodad"},
		}); err != nil {
			return err
		}
	}
	return nil
}

func (f *Fleet) run(steps [][]string) error {
	for _, st := range steps {
		if err := f.Exec(st[0], st[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// RouterConfig is the router's BIRD config: one eBGP session per node and
// family, BFD, and ECMP into the kernel (merge paths).
func (f *Fleet) RouterConfig() string {
	var b strings.Builder
	fmt.Fprintf(&b, `log "%s" all;
router id %s;
protocol device { scan time 10; }
protocol bfd {
	interface "*" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };
}
template bgp node {
	local as %d;
	bfd on;
	hold time 9;
	graceful restart off;
	connect retry time 2;
	error wait time 1, 10;
}
protocol kernel {
	ipv4 { export all; };
	merge paths on;
}
protocol kernel {
	ipv6 { export all; };
	merge paths on;
}
`, filepath.Join(f.Dir, "router-bird.log"), RouterClientV4, RouterASN)
	for i := 1; i <= f.Nodes; i++ {
		fmt.Fprintf(&b, "protocol bgp node%d from node { neighbor %s as %d; ipv4 { import all; export none; }; }\n", i, NodeFrontV4(i), FleetASN)
		fmt.Fprintf(&b, "protocol bgp node%dv6 from node { neighbor %s as %d; ipv6 { import all; export none; }; }\n", i, NodeFrontV6(i), FleetASN)
	}
	return b.String()
}

// RouterSocket is the router BIRD's control socket.
func (f *Fleet) RouterSocket() string { return filepath.Join(f.Dir, "router-bird.ctl") }

// StartRouter writes the router's config and runs its BIRD (the lab kills
// it on Close).
func (f *Fleet) StartRouter() error {
	conf := filepath.Join(f.Dir, "router-bird.conf")
	if err := os.WriteFile(conf, []byte(f.RouterConfig()), 0o644); err != nil {
		return err
	}
	cmd := f.Command("rt", "bird", "-f", "-c", conf, "-s", f.RouterSocket(), "-P", filepath.Join(f.Dir, "router-bird.pid"))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start router bird: %w", err)
	}
	for i := 0; i < 100; i++ {
		if _, err := f.Birdc("show status"); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("router bird did not come up")
}

// Birdc runs a command on the router's BIRD.
func (f *Fleet) Birdc(cmd ...string) (string, error) {
	return f.Output("rt", append([]string{"birdc", "-s", f.RouterSocket()}, cmd...)...)
}

// NextHops reads the router's kernel route to a VIP: the gateways of its
// next hops, sorted (empty when it has no route).
func (f *Fleet) NextHops(vip string) ([]string, error) {
	fam := "-4"
	if strings.Contains(vip, ":") {
		fam = "-6"
	}
	out, err := f.Output("rt", "ip", "-j", fam, "route", "show", "exact", vip)
	if err != nil {
		return nil, err
	}
	var routes []struct {
		Gateway  string `json:"gateway"`
		Nexthops []struct {
			Gateway string `json:"gateway"`
		} `json:"nexthops"`
	}
	if err := json.Unmarshal([]byte(out), &routes); err != nil {
		return nil, fmt.Errorf("ip -j route: %w: %s", err, out)
	}
	var hops []string
	for _, r := range routes {
		if r.Gateway != "" {
			hops = append(hops, r.Gateway)
		}
		for _, n := range r.Nexthops {
			hops = append(hops, n.Gateway)
		}
	}
	sort.Strings(hops)
	return hops, nil
}

// StartBackends runs labserver in every backend (HTTP :80, line-echo TCP
// :7000) and waits until they listen.
func (f *Fleet) StartBackends(labserver string) error {
	for i := 1; i <= f.Backends; i++ {
		b := f.Backend(i)
		cmd := f.Command(b, labserver, "-name", b, "-http", ":80", "-tcp", ":7000")
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start labserver in %s: %w", b, err)
		}
		s := &Standard{Lab: f.Lab}
		if err := s.WaitTCP(b, "127.0.0.1:7000"); err != nil {
			return err
		}
	}
	return nil
}

// NodeLink takes node i's link to the router down (the node vanishes for
// the router) or up again, putting back the default routes the kernel
// dropped with the link.
func (f *Fleet) NodeLink(i int, up bool) error {
	n := f.Node(i)
	if !up {
		return f.Exec(n, "ip", "link", "set", "eth0", "down")
	}
	return f.run([][]string{
		{n, "ip", "link", "set", "eth0", "up"},
		{n, "ip", "route", "replace", "default", "via", RouterFrontV4},
		{n, "ip", "-6", "route", "replace", "default", "via", RouterFrontV6},
	})
}
