package e2e

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"lbd/internal/lab"
)

// Protection end to end: every limit refuses with a reset (TCP) or ICMP
// port unreachable (UDP), never silently, and counts into status. Counts
// are asserted with tolerances; nothing here measures time.

// attempt is the outcome of one new connection.
type attempt int

const (
	served  attempt = iota // connected and the backend answered
	refused                // reset / port unreachable
)

// connect opens a connection from client i (v4 address unless addr is a
// bracketed IPv6 VIP) and has the backend answer once. A refusal is a
// result; a timeout or any other error fails the test: a limit must never
// drop silently.
func (e *env) connect(client int, addr string) (net.Conn, attempt) {
	e.t.Helper()
	var c net.Conn
	var err error
	if strings.HasPrefix(addr, "[") {
		c, err = e.lab.Dial(e.lab.Client(client), "tcp", addr, 3*time.Second)
	} else {
		c, err = e.lab.DialFrom(e.lab.Client(client), lab.ClientAddr(client), addr, 3*time.Second)
	}
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, refused
		}
		e.t.Fatalf("client %d -> %s: want served or refused, got %v", client, addr, err)
	}
	if _, err := lab.AskOn(c, "hi"); err != nil {
		c.Close()
		e.t.Fatalf("client %d -> %s: connected but no answer: %v", client, addr, err)
	}
	return c, served
}

// burst makes n connections back to back from client i, closing each, and
// returns how many were served and refused.
func (e *env) burst(client int, addr string, n int) (ok, no int) {
	e.t.Helper()
	for i := 0; i < n; i++ {
		c, r := e.connect(client, addr)
		if r == refused {
			no++
			continue
		}
		ok++
		c.Close()
	}
	return ok, no
}

// eventually retries f (bounded) until it is true: for state the kernel
// settles a moment after a close (conntrack leaving FIN_WAIT).
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if f() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never happened", what)
}

func (e *env) service(name string) (i int) {
	e.t.Helper()
	st := e.status()
	for i, s := range st.Services {
		if s.Name == name {
			return i
		}
	}
	e.t.Fatalf("no service %q in status", name)
	return -1
}

func backends6(port int, ids ...int) string {
	var b strings.Builder
	for _, i := range ids {
		fmt.Fprintf(&b, "\n  [[service.backend]]\n  address = \"[%s]:%d\"\n", lab.BackendV6(i), port)
	}
	return b.String()
}

func vip6(port int) string { return fmt.Sprintf("[%s]:%d", lab.VIPv6, port) }

func TestMaxConnectionsRefusesBeyondCap(t *testing.T) {
	e := newEnv(t, 2, 1)
	e.writeConfig(svcHeader("echo", lab.VIPv4, 7000, "max_connections = 5") + backends(7000, 1, 2))
	e.startLBD()
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := 0; i < 5; i++ {
		c, r := e.connect(0, vip4(7000))
		if r != served {
			t.Fatalf("connection %d of 5 refused under max_connections = 5", i+1)
		}
		open = append(open, c)
	}
	if _, r := e.connect(0, vip4(7000)); r != refused {
		t.Fatal("the 6th concurrent connection should be refused with a reset")
	}
	for i, c := range open {
		if _, err := lab.AskOn(c, "still"); err != nil {
			t.Fatalf("connection %d broke when the 6th was refused: %v", i+1, err)
		}
	}
	open[0].Close()
	open = open[1:]
	var c net.Conn
	eventually(t, "a new connection after one closed", func() bool {
		var r attempt
		c, r = e.connect(0, vip4(7000))
		return r == served
	})
	open = append(open, c)
	if _, r := e.connect(0, vip4(7000)); r != refused {
		t.Fatal("back at 5 open connections, a new one should be refused again")
	}
	st := e.status().Services[0]
	if st.Refused.MaxConnections < 2 {
		t.Fatalf("refused.max_connections = %d, want >= 2", st.Refused.MaxConnections)
	}
	t.Logf("refused: %+v", st.Refused)
}

func TestNewConnectionRate(t *testing.T) {
	e := newEnv(t, 2, 1)
	// 6/m refills one connection every 10 s: a burst from one client
	// gets exactly `burst` through (one more if the test is very slow).
	e.writeConfig(svcHeader("burst", lab.VIPv4, 7000, "new_connection_rate = \"6/m\"\nburst = 3") + backends(7000, 1, 2) +
		svcHeader("steady", lab.VIPv4, 7001, "new_connection_rate = \"600/m\"\nburst = 5") + backends(7000, 1, 2))
	e.startLBD()
	ok, no := e.burst(0, vip4(7000), 20)
	if ok < 3 || ok > 4 || ok+no != 20 {
		t.Fatalf("6/m burst 3: 20 back-to-back connections gave %d served, %d refused; want 3-4 served", ok, no)
	}
	if got := e.status().Services[e.service("burst")].Refused.Rate; got != uint64(no) {
		t.Errorf("refused.rate = %d, want %d", got, no)
	}
	// Below the rate (at most 5/s against 10/s), nothing is refused.
	for i := 0; i < 15; i++ {
		c, r := e.connect(0, vip4(7001))
		if r != served {
			t.Fatalf("connection %d at half the allowed rate was refused", i)
		}
		c.Close()
		time.Sleep(200 * time.Millisecond)
	}
	if got := e.status().Services[e.service("steady")].Refused.Rate; got != 0 {
		t.Errorf("below the rate: refused.rate = %d, want 0", got)
	}
}

func TestNewConnectionRateUDP(t *testing.T) {
	e := newEnv(t, 2, 1)
	e.writeConfig(svcHeader("dns", lab.VIPv4, 5353, "protocol = \"udp\"\nnew_connection_rate = \"6/m\"\nburst = 3") + backends(5353, 1, 2))
	e.startLBD()
	// 8 flows: the kernel rate-limits ICMP errors per destination (a
	// burst of 6, then 1/s; net.ipv4.icmp_ratelimit), so beyond that a
	// refused UDP flow is counted but its port unreachable is not sent.
	ok, no := 0, 0
	for i := 0; i < 8; i++ {
		// Each AskUDP is a new socket, so a new flow through the chain.
		_, err := e.lab.AskUDP("client", vip4(5353))
		switch {
		case err == nil:
			ok++
		case errors.Is(err, syscall.ECONNREFUSED):
			no++
		default:
			t.Fatalf("udp flow %d: want an answer or port unreachable, got %v", i, err)
		}
	}
	if ok < 3 || ok > 4 {
		t.Fatalf("udp 6/m burst 3: %d answered, %d refused; want 3-4 answered", ok, no)
	}
	if got := e.status().Services[0].Refused.Rate; got != uint64(no) {
		t.Errorf("refused.rate = %d, want %d", got, no)
	}
}

func TestPerClientRate(t *testing.T) {
	e := newEnv(t, 2, 2)
	e.writeConfig(svcHeader("echo", lab.VIPv4, 7000, "per_client_rate = \"6/m\"\nburst = 3") + backends(7000, 1, 2) +
		svcHeader("echo6", lab.VIPv6, 7000, "per_client_rate = \"6/m\"\nburst = 3") + backends6(7000, 1, 2))
	e.startLBD()
	for _, addr := range []string{vip4(7000), vip6(7000)} {
		ok, no := e.burst(0, addr, 15)
		if ok < 3 || ok > 4 {
			t.Fatalf("%s: noisy client: %d served, %d refused; want 3-4 served", addr, ok, no)
		}
		// The quiet client has its own bucket.
		ok, no = e.burst(1, addr, 3)
		if no != 0 {
			t.Fatalf("%s: quiet client refused %d of 3 while another client was limited", addr, no)
		}
	}
	st := e.status()
	for _, s := range st.Services {
		if s.Refused.PerClientRate < 11 || s.Refused.Rate != 0 {
			t.Errorf("%s: refused %+v, want per_client_rate >= 11 and nothing else", s.Name, s.Refused)
		}
	}
}

func TestPerClientConnections(t *testing.T) {
	e := newEnv(t, 2, 2)
	e.writeConfig(svcHeader("echo", lab.VIPv4, 7000, "per_client_connections = 2") + backends(7000, 1, 2) +
		svcHeader("echo6", lab.VIPv6, 7000, "per_client_connections = 2") + backends6(7000, 1, 2))
	e.startLBD()
	for _, addr := range []string{vip4(7000), vip6(7000)} {
		var held []net.Conn
		for i := 0; i < 2; i++ {
			c, r := e.connect(0, addr)
			if r != served {
				t.Fatalf("%s: connection %d of 2 refused", addr, i+1)
			}
			held = append(held, c)
		}
		if _, r := e.connect(0, addr); r != refused {
			t.Fatalf("%s: a client's 3rd concurrent connection should be refused", addr)
		}
		for i := 0; i < 2; i++ {
			c, r := e.connect(1, addr)
			if r != served {
				t.Fatalf("%s: another client was refused while the first was at its limit", addr)
			}
			held = append(held, c)
		}
		held[0].Close()
		eventually(t, addr+": a new connection after the client closed one", func() bool {
			c, r := e.connect(0, addr)
			if r == served {
				held = append(held, c)
			}
			return r == served
		})
		for _, c := range held {
			c.Close()
		}
	}
	for _, s := range e.status().Services {
		if s.Refused.PerClientConns < 1 {
			t.Errorf("%s: refused.per_client_connections = %d, want >= 1", s.Name, s.Refused.PerClientConns)
		}
	}
}

func TestAllowDeny(t *testing.T) {
	e := newEnv(t, 1, 2)
	// client 0 is 198.51.100.2 / 2001:db8:1::2, client 1 .3 / ::3.
	deny := `deny = ["198.51.100.2/32", "2001:db8:1::2/128"]
allow = ["198.51.100.0/24", "2001:db8:1::/64"]`
	allow := `allow = ["198.51.100.3/32", "2001:db8:1::3/128", "192.0.2.0/24"]`
	e.writeConfig(svcHeader("deny4", lab.VIPv4, 7000, deny) + backends(7000, 1) +
		svcHeader("deny6", lab.VIPv6, 7000, deny) + backends6(7000, 1) +
		svcHeader("allow4", lab.VIPv4, 7001, allow) + backends(7000, 1) +
		svcHeader("allow6", lab.VIPv6, 7001, allow) + backends6(7000, 1))
	e.startLBD()
	for _, addr := range []string{vip4(7000), vip6(7000), vip4(7001), vip6(7001)} {
		if _, r := e.connect(0, addr); r != refused {
			t.Errorf("%s: client 0 should be refused", addr)
		}
		c, r := e.connect(1, addr)
		if r != served {
			t.Errorf("%s: client 1 should be served", addr)
			continue
		}
		c.Close()
	}
	for _, s := range e.status().Services {
		if s.Refused.Denied != 1 {
			t.Errorf("%s: refused.denied = %d, want 1", s.Name, s.Refused.Denied)
		}
	}
}

func TestThrottleAtRuntime(t *testing.T) {
	e := newEnv(t, 2, 1)
	e.writeConfig(svcHeader("echo", lab.VIPv4, 7000, "") + backends(7000, 1, 2))
	e.startLBD()
	long, r := e.connect(0, vip4(7000))
	if r != served {
		t.Fatal("first connection refused")
	}
	defer long.Close()

	if out, err := e.lbdCmd("throttle", "echo", "6/m"); err != nil {
		t.Fatalf("throttle: %v\n%s", err, out)
	}
	if st := e.status().Services[0]; st.Throttle != "6/m" {
		t.Fatalf("status throttle = %q, want 6/m", st.Throttle)
	}
	// 6/m with the default burst of 5.
	ok, no := e.burst(0, vip4(7000), 15)
	if ok < 5 || ok > 6 {
		t.Fatalf("throttled to 6/m: %d served, %d refused; want 5-6 served", ok, no)
	}
	if got := e.status().Services[0].Refused.ThrottleRefused; got != uint64(no) {
		t.Errorf("refused.throttle = %d, want %d", got, no)
	}
	if _, err := lab.AskOn(long, "during"); err != nil {
		t.Fatalf("an established connection broke when the throttle was set: %v", err)
	}

	if out, err := e.lbdCmd("throttle", "echo", "off"); err != nil {
		t.Fatalf("throttle off: %v\n%s", err, out)
	}
	if st := e.status().Services[0]; st.Throttle != "" {
		t.Fatalf("status throttle after off = %q, want empty", st.Throttle)
	}
	if ok, no := e.burst(0, vip4(7000), 15); no != 0 {
		t.Fatalf("throttle lifted but %d of %d refused", no, ok+no)
	}
	if _, err := lab.AskOn(long, "after"); err != nil {
		t.Fatalf("an established connection broke when the throttle was lifted: %v", err)
	}
}

func TestNoProtectionNoExtraRules(t *testing.T) {
	e := newEnv(t, 1, 1)
	e.writeConfig(svcHeader("plain", lab.VIPv4, 7000, "") + backends(7000, 1) +
		svcHeader("guarded", lab.VIPv4, 7001, "max_connections = 10\ndeny = [\"203.0.113.0/24\"]") + backends(7000, 1))
	e.startLBD()
	rules := func(chain string) []string {
		var out []string
		for _, l := range strings.Split(e.nft("list", "chain", "inet", "lbd", chain), "\n") {
			l = strings.TrimSpace(l)
			if l != "" && !strings.HasPrefix(l, "table") && !strings.HasPrefix(l, "chain") && l != "}" {
				out = append(out, l)
			}
		}
		return out
	}
	// One scheduling rule: the refusal for want of a backend lives in the
	// shared DNAT chain.
	if r := rules("svc_plain"); len(r) != 1 {
		t.Fatalf("a service without protection keys should have its 1 scheduling rule only:\n%s", strings.Join(r, "\n"))
	}
	if r := rules("svc_guarded"); len(r) != 3 {
		t.Fatalf("deny + max_connections should add 2 rules:\n%s", strings.Join(r, "\n"))
	}
	// Removing the keys by reload removes the rules, counters and sets.
	e.writeConfig(svcHeader("plain", lab.VIPv4, 7000, "") + backends(7000, 1) +
		svcHeader("guarded", lab.VIPv4, 7001, "") + backends(7000, 1))
	e.reload()
	if r := rules("svc_guarded"); len(r) != 1 {
		t.Fatalf("after removing the keys:\n%s", strings.Join(r, "\n"))
	}
	if out := e.nft("list", "table", "inet", "lbd"); strings.Contains(out, "maxconn_guarded") || strings.Contains(out, "deny_guarded") {
		t.Fatalf("protection objects left behind:\n%s", out)
	}
}

func TestBackendMaxConnections(t *testing.T) {
	e := newEnv(t, 2, 1)
	e.writeConfig(svcHeader("echo", lab.VIPv4, 7000, "") + backends(7000, 1) + "  max_connections = 2\n" + backends(7000, 2))
	e.startLBD()
	// Fill be1: rr alternates, so 4 connections put 2 on each.
	held := map[string][]net.Conn{}
	defer func() {
		for _, cs := range held {
			for _, c := range cs {
				c.Close()
			}
		}
	}()
	for i := 0; i < 4; i++ {
		c, err := e.lab.Dial("client", "tcp", vip4(7000), 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ans, err := lab.AskOn(c, "hold")
		if err != nil {
			t.Fatal(err)
		}
		held[lab.Name(ans)] = append(held[lab.Name(ans)], c)
	}
	if len(held["be1"]) != 2 {
		t.Fatalf("rr should have put 2 of 4 connections on be1: %v", held)
	}
	// The daemon counts flows about once a second; once be1 has left the
	// slots every new connection goes to be2, none is refused.
	eventually(t, "be1 marked full", func() bool { return e.status().Services[0].Backends[0].Slots == 0 })
	counts := e.spread(0, vip4(7000), 10)
	if counts["be2"] != 10 {
		t.Fatalf("with be1 at max_connections new connections should all go to be2: %v", counts)
	}
	for _, c := range held["be1"] {
		c.Close()
	}
	held["be1"] = nil
	eventually(t, "be1 back in the slots after its connections closed", func() bool {
		return e.status().Services[0].Backends[0].Slots > 0
	})
}

func TestFirewallWANSide(t *testing.T) {
	e := newEnv(t, 1, 1)
	// The lab's own bridges declared as interfaces with the addresses they
	// already have: that is what turns the firewall on by default.
	e.writeConfig(`[appliance]
status_listen = "0.0.0.0:9100"

[firewall]
wan = ["wanbr"]

[[interface]]
name = "wanbr"
device = "wanbr"
addresses = ["198.51.100.1/24", "2001:db8:1::1/64"]

[[interface]]
name = "lanbr"
device = "lanbr"
addresses = ["192.0.2.1/24", "2001:db8:2::1/64"]
` + svcHeader("echo", lab.VIPv4, 7000, "") + backends(7000, 1) +
		svcHeader("echo6", lab.VIPv6, 7000, "") + backends6(7000, 1))
	e.startLBD()
	// The daemon applies the firewall with the services: a missing input
	// chain is a regression, not a feature still to come.
	if out, err := e.lab.Output("lb", "nft", "list", "chain", "inet", "lbd", "input"); err != nil {
		t.Fatalf("[firewall] with wan interfaces should give table lbd an input chain: %v", err)
	} else if !strings.Contains(out, "hook input") {
		t.Fatalf("input chain of table lbd is not hooked:\n%s", out)
	}
	reach := func(ns, addr string) bool {
		c, err := e.lab.Dial(ns, "tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	if c, r := e.connect(0, vip4(7000)); r != served {
		t.Fatal("VIP service from the WAN side should work")
	} else {
		c.Close()
	}
	if c, r := e.connect(0, vip6(7000)); r != served {
		t.Fatal("IPv6 VIP service from the WAN side should work")
	} else {
		c.Close()
	}
	if reach("client", lab.LBWanV4+":9100") {
		t.Error("the status page should be unreachable from the WAN side")
	}
	if reach("client", lab.VIPv4+":7001") {
		t.Error("a VIP port that is no service should be unreachable from the WAN side")
	}
	if reach("client", lab.BackendV4(1)+":7000") {
		t.Error("a backend should not be reachable directly from the WAN side")
	}
	if !reach("be1", lab.LBLanV4+":9100") {
		t.Error("the status page should be reachable from the LAN side")
	}
}
