package lb

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"lbd/internal/lab"
)

func (p *kernelLab) nft(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.Output("lb", append([]string{"nft"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// echoService is a config with one service named echo on the v4 VIP
// (and echo6 on the v6 VIP) over backends 1..n, plus extra keys.
// echoService is an IPv4 and an IPv6 service of n backends, both with p.
func echoService(n int, p Protection) []ServiceSpec {
	var v4, v6 []string
	for i := 1; i <= n; i++ {
		v4, v6 = append(v4, lab.BackendV4(i)), append(v6, lab.BackendV6(i))
	}
	out := []ServiceSpec{spec("echo", lab.VIPv4, "rr", v4...), spec("echo6", lab.VIPv6, "rr", v6...)}
	for i := range out {
		out[i].Protect = p
	}
	return out
}

func TestProtectionRulesLoad(t *testing.T) {
	p := newKernelLab(t, "pload", 2, 1)
	cfg := echoService(2, Protection{MaxConnections: 5, Rate: Rate{N: 100, Per: time.Second}, Burst: 10,
		ClientRate: Rate{N: 20, Per: time.Second}, PerClientConnections: 3,
		Allow: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:1::/64")},
		Deny:  []netip.Prefix{netip.MustParsePrefix("198.51.100.99/32"), netip.MustParsePrefix("2001:db8:1::99/128")}})
	plans := Plan(cfg, nil)
	plans[0].Protect.Throttle = cfg[0].Protect.Rate
	if _, err := p.dp.Apply(plans); err != nil {
		t.Fatal(err)
	}
	t.Log(p.nft(t, "list", "ruleset"))
}

// startServer runs a labserver line echo on addr inside namespace ns.
func (p *kernelLab) startServer(t *testing.T, bin, ns, name, addr string) {
	t.Helper()
	cmd := p.Command(ns, bin, "-name", name, "-tcp", addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitTCP(ns, "127.0.0.1"+addr[strings.LastIndex(addr, ":"):]); err != nil {
		t.Fatal(err)
	}
}

// reach says whether a connection from ns to addr is served; a refusal or
// a timeout (a drop) is false.
func (p *kernelLab) reach(ns, addr string) bool {
	c, err := p.Dial(ns, "tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_, err = lab.AskOn(c, "hi")
	return err == nil
}

func TestFirewall(t *testing.T) {
	p := newKernelLab(t, "fw", 2, 2)
	bin := labserver(t)
	// Management and a non-service port on the lb itself; a server on the
	// client side for traffic the backends start.
	p.startServer(t, bin, "lb", "mgmt", ":9100")
	p.startServer(t, bin, "lb", "other", ":2222")
	p.startServer(t, bin, "client", "cl", ":7000")
	cfg := echoService(1, Protection{})
	fw := Firewall{Enabled: true, WAN: []string{"wanbr"}, ManagementPorts: []uint16{9100},
		AdminNetworks: []netip.Prefix{netip.MustParsePrefix(lab.ClientAddr(1) + "/32")},
		AllowForward:  []netip.Prefix{netip.MustParsePrefix(lab.BackendV4(2) + "/32")}}
	if _, err := p.dp.ApplyState(Plan(cfg, nil), fw); err != nil {
		t.Fatal(err)
	}
	wanMgmt, wanOther := lab.LBWanV4+":9100", lab.LBWanV4+":2222"
	checks := []struct {
		what, ns, addr string
		want           bool
	}{
		{"WAN client -> v4 VIP service", "client", lab.VIPv4 + ":7000", true},
		{"WAN client -> v6 VIP service (neighbour discovery passes)", "client", "[" + lab.VIPv6 + "]:7000", true},
		{"WAN client -> status page", "client", wanMgmt, false},
		{"WAN client -> other local port", "client", wanOther, false},
		{"WAN client -> a backend directly (not a VIP flow)", "client", lab.BackendV4(1) + ":7000", false},
		{"admin network on WAN -> status page", "client1", wanMgmt, true},
		{"admin network on WAN -> other local port", "client1", wanOther, false},
		{"LAN -> status page", "be1", lab.LBLanV4 + ":9100", true},
		{"LAN -> other local port", "be1", lab.LBLanV4 + ":2222", true},
		{"backend not in allow_forward -> out", "be1", lab.ClientV4 + ":7000", false},
		{"backend in allow_forward -> out", "be2", lab.ClientV4 + ":7000", true},
	}
	for _, c := range checks {
		if got := p.reach(c.ns, c.addr); got != c.want {
			t.Errorf("%s (%s -> %s): reachable = %v, want %v", c.what, c.ns, c.addr, got, c.want)
		}
	}
	if err := p.ping("client", lab.LBWanV4); err != nil {
		t.Errorf("ping from the WAN should pass (ICMP essentials): %v", err)
	}
	out := p.nft(t, "list", "table", "inet", "lbd")
	for _, want := range []string{"chain input", "chain forward", "hook input", "hook forward"} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, out)
		}
	}
	if t.Failed() {
		t.Log(out)
	}

	// A health-style apply keeps the firewall; turning it off removes the
	// chains, in the same kind of transaction.
	if _, err := p.dp.Apply(Plan(cfg, nil)); err != nil {
		t.Fatal(err)
	}
	if p.reach("client", wanMgmt) {
		t.Fatal("Apply without a firewall argument should keep the firewall")
	}
	if _, err := p.dp.ApplyState(Plan(cfg, nil), Firewall{}); err != nil {
		t.Fatal(err)
	}
	if !p.reach("client", wanMgmt) {
		t.Error("with the firewall off the status page should be reachable")
	}
	if out := p.nft(t, "list", "table", "inet", "lbd"); strings.Contains(out, "hook input") {
		t.Errorf("firewall chains left after turning it off:\n%s", out)
	}
	// A fresh Dataplane (lbd restarted) adopts a table with the firewall.
	if _, err := p.dp.ApplyState(Plan(cfg, nil), fw); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p.NSFile("lb"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dp2 := NewInNetNS(int(f.Fd()))
	if _, err := dp2.ApplyState(Plan(cfg, nil), fw); err != nil {
		t.Fatalf("restart with the firewall on: %v", err)
	}
	if p.reach("client", wanMgmt) || !p.reach("client", lab.VIPv4+":7000") {
		t.Error("after a restart the firewall should still hold and the VIP serve")
	}
	if _, err := dp2.ApplyState(Plan(cfg, nil), Firewall{}); err != nil {
		t.Fatalf("restart turning the firewall off: %v", err)
	}
}

// ping sends one ICMP echo request from ns and waits for the reply.
func (p *kernelLab) ping(ns, dst string) error {
	return p.InNS(ns, func() error {
		c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return err
		}
		defer c.Close()
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 7, Seq: 1, Data: []byte("lbd")}}
		b, err := msg.Marshal(nil)
		if err != nil {
			return err
		}
		if _, err := c.WriteTo(b, &net.IPAddr{IP: net.ParseIP(dst)}); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1500)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return err
			}
			if m, err := icmp.ParseMessage(1, buf[:n]); err == nil && m.Type == ipv4.ICMPTypeEchoReply {
				return nil
			}
		}
	})
}

// TestConnectionCountsSurviveRewriteAndRestart: a throttle change rewrites
// the service chain and a restarted lbd re-adds every rule; neither may
// forget the connections already counted. Once they close, the set
// element is collected.
func TestConnectionCountsSurviveRewriteAndRestart(t *testing.T) {
	p := newKernelLab(t, "pcount", 1, 1)
	cfg := echoService(1, Protection{MaxConnections: 2, PerClientConnections: 2})
	apply := func(dp *Dataplane, throttle bool) {
		t.Helper()
		plans := Plan(cfg, nil)
		if throttle {
			plans[0].Protect.Throttle = Rate{N: 1000, Per: time.Second}
		}
		if _, err := dp.Apply(plans); err != nil {
			t.Fatal(err)
		}
	}
	apply(p.dp, false)
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < 2; i++ {
		c, err := p.Dial("client", "tcp", lab.VIPv4+":7000", 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lab.AskOn(c, "hold"); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	refusedNow := func(when string) {
		t.Helper()
		_, err := p.Dial("client", "tcp", lab.VIPv4+":7000", 3*time.Second)
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("%s: a 3rd connection should be refused, got %v", when, err)
		}
	}
	refusedNow("at the limit")
	apply(p.dp, true)
	refusedNow("after a throttle rewrote the chain")
	f, err := os.Open(p.NSFile("lb"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	apply(NewInNetNS(int(f.Fd())), false)
	refusedNow("after a restart")

	for _, c := range held {
		c.Close()
	}
	held = nil
	elements := func() string {
		return p.nft(t, "list", "set", "inet", "lbd", "maxconn_echo") + p.nft(t, "list", "set", "inet", "lbd", "clientconn4_echo")
	}
	if !strings.Contains(elements(), "elements") {
		t.Fatalf("the sets should hold the counted elements:\n%s", elements())
	}
	// The sets have no timeout: the kernel's set gc drops an element
	// once its ct count has no live connection left.
	start := time.Now()
	for i := 0; i < 200 && strings.Contains(elements(), "elements"); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if s := elements(); strings.Contains(s, "elements") {
		t.Fatalf("elements still present 20 s after their connections closed:\n%s", s)
	}
	t.Logf("elements collected %v after the connections closed", time.Since(start).Round(100*time.Millisecond))
}
