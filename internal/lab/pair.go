package lab

import (
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
)

// The pair topology: two lb nodes on a shared client-side segment and a
// shared backend-side segment, both segments bridges in a switch
// namespace (documentation ranges only).
//
//	client (198.51.100.2) --+-- wanbr --+-- lb1 wan (198.51.100.4)
//	                        |  (sw)     +-- lb2 wan (198.51.100.5)
//	be i (192.0.2.1i) ------+-- lanbr --+-- lb1 lan (192.0.2.5)
//	                           (sw)     +-- lb2 lan (192.0.2.6)
//
// The client reaches the VIPs (203.0.113.0/24) on-link: it ARPs for the
// VIP, and whichever node holds it (keepalived adds it on the master and
// sends gratuitous ARP on takeover) answers. The backends' gateway is the
// floating PairLANFloat, which moves with the VIPs.
const (
	PairWAN1     = "198.51.100.4"
	PairWAN2     = "198.51.100.5"
	PairLAN1     = "192.0.2.5"
	PairLAN2     = "192.0.2.6"
	PairLANFloat = "192.0.2.1"
	// IPv6: wan 2001:db8:1::4/::5, lan 2001:db8:2::5/::6, the floating
	// 2001:db8:2::1, the client 2001:db8:1::2 (VIPs 2001:db8:3::/64
	// on-link), backend i 2001:db8:2::1i.
	PairLANFloat6 = "2001:db8:2::1"
)

// Pair is a client, two lb nodes ("lb1", "lb2") and n backends.
type Pair struct {
	*Lab
	Backends int
}

// Node names lb node i (1 or 2).
func (p *Pair) Node(i int) string { return fmt.Sprintf("lb%d", i) }

// Backend names backend namespace i (from 1).
func (p *Pair) Backend(i int) string { return fmt.Sprintf("be%d", i) }

// NewPair builds the pair topology with n backends; nothing runs yet.
func NewPair(prefix string, n int) (*Pair, error) {
	p := &Pair{Lab: New(prefix), Backends: n}
	if err := p.build(); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *Pair) build() error {
	if _, err := p.AddNS("sw"); err != nil {
		return err
	}
	st := &Standard{Lab: p.Lab}
	if err := st.steps([][]string{
		{"sw", "ip", "link", "add", "wanbr", "type", "bridge"},
		{"sw", "ip", "link", "add", "lanbr", "type", "bridge"},
		{"sw", "ip", "link", "set", "wanbr", "up"},
		{"sw", "ip", "link", "set", "lanbr", "up"},
	}); err != nil {
		return err
	}
	attach := func(ns, ifname, port, bridge string) error {
		if err := p.Link(ns, ifname, "sw", port); err != nil {
			return err
		}
		return p.Exec("sw", "ip", "link", "set", port, "master", bridge)
	}
	for i, addrs := range [][4]string{{PairWAN1, PairLAN1, "2001:db8:1::4", "2001:db8:2::5"}, {PairWAN2, PairLAN2, "2001:db8:1::5", "2001:db8:2::6"}} {
		n := p.Node(i + 1)
		if _, err := p.AddNS(n); err != nil {
			return err
		}
		// HardKill takes the links down, and IPv6 drops a link's
		// addresses when it goes down: keep them, as a node that comes
		// back configured would have them.
		if err := st.steps([][]string{{n, "sysctl", "-qw", "net.ipv6.conf.all.keep_addr_on_down=1", "net.ipv6.conf.default.keep_addr_on_down=1"}}); err != nil {
			return err
		}
		if err := attach(n, "wan", fmt.Sprintf("w%d", i+1), "wanbr"); err != nil {
			return err
		}
		if err := attach(n, "lan", fmt.Sprintf("l%d", i+1), "lanbr"); err != nil {
			return err
		}
		if err := st.steps([][]string{
			{n, "ip", "addr", "add", addrs[0] + "/24", "dev", "wan"},
			{n, "ip", "addr", "add", addrs[1] + "/24", "dev", "lan"},
			{n, "ip", "addr", "add", addrs[2] + "/64", "dev", "wan", "nodad"},
			{n, "ip", "addr", "add", addrs[3] + "/64", "dev", "lan", "nodad"},
			{n, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"},
		}); err != nil {
			return err
		}
	}
	if _, err := p.AddNS("client"); err != nil {
		return err
	}
	if err := attach("client", "eth0", "wc", "wanbr"); err != nil {
		return err
	}
	if err := st.steps([][]string{
		{"client", "ip", "addr", "add", ClientV4 + "/24", "dev", "eth0"},
		{"client", "ip", "route", "add", "203.0.113.0/24", "dev", "eth0"},
		{"client", "ip", "addr", "add", ClientV6 + "/64", "dev", "eth0", "nodad"},
		{"client", "ip", "-6", "route", "add", "2001:db8:3::/64", "dev", "eth0"},
	}); err != nil {
		return err
	}
	for i := 1; i <= p.Backends; i++ {
		b := p.Backend(i)
		if _, err := p.AddNS(b); err != nil {
			return err
		}
		if err := attach(b, "eth0", fmt.Sprintf("b%d", i), "lanbr"); err != nil {
			return err
		}
		if err := st.steps([][]string{
			{b, "ip", "addr", "add", BackendV4(i) + "/24", "dev", "eth0"},
			{b, "ip", "route", "add", "default", "via", PairLANFloat},
			{b, "ip", "addr", "add", BackendV6(i) + "/64", "dev", "eth0", "nodad"},
			{b, "ip", "-6", "route", "add", "default", "via", PairLANFloat6},
		}); err != nil {
			return err
		}
	}
	return nil
}

// StartBackends starts the labserver in every backend (see Standard).
func (p *Pair) StartBackends(labserver string) error {
	st := &Standard{Lab: p.Lab, Backends: p.Backends}
	return st.StartBackends(labserver, "")
}

// Addrs lists the addresses (IPv4 and IPv6) on a node's interface.
func (p *Pair) Addrs(node, ifname string) ([]string, error) {
	out, err := p.Output(node, "ip", "-o", "addr", "show", "dev", ifname)
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" || f[i] == "inet6" {
				addrs = append(addrs, strings.Split(f[i+1], "/")[0])
			}
		}
	}
	sort.Strings(addrs)
	return addrs, nil
}

// HardKill is a node dying: its links go down first (nothing it does on
// the way out reaches the wire: no priority-0 advert, no last sync), then
// every process in its namespace gets SIGKILL in one kill(1) call, lbd
// (lbdPID) last so keepalived's Pdeathsig cannot turn it into a clean
// stop.
func (p *Pair) HardKill(node string, lbdPID int) error {
	for _, ifname := range []string{"wan", "lan"} {
		if err := p.Exec(node, "ip", "link", "set", ifname, "down"); err != nil {
			return err
		}
	}
	out, err := exec.Command("ip", "netns", "pids", p.NS(node)).Output()
	if err != nil {
		return err
	}
	args := []string{"-9"}
	for _, f := range strings.Fields(string(out)) {
		if f != strconv.Itoa(lbdPID) {
			args = append(args, f)
		}
	}
	args = append(args, strconv.Itoa(lbdPID))
	// kill exits 1 when one pid is already gone (a conntrackd client
	// lbd ran a moment ago): the others are killed all the same, and
	// the caller waits for lbd.
	_ = exec.Command("kill", args...).Run()
	return nil
}

// LinksUp brings a node's links back.
func (p *Pair) LinksUp(node string) error {
	for _, ifname := range []string{"wan", "lan"} {
		if err := p.Exec(node, "ip", "link", "set", ifname, "up"); err != nil {
			return err
		}
	}
	return nil
}
