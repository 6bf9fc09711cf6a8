package lb

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"lbd/internal/lab"
)

// TestPairRules: the pair options put "snat to lan_address" before the
// masquerade rule and the guard chain in, traffic through a snat service
// reaches the backend from that address, and setting them back to zero
// takes both out again.
func TestPairRules(t *testing.T) {
	s := newKernelLab(t, "pair", 1, 1)
	// The floating address as a secondary address: masquerade would pick
	// the primary 192.0.2.1.
	if err := s.Exec("lb", "ip", "addr", "add", "192.0.2.99/24", "dev", "lanbr"); err != nil {
		t.Fatal(err)
	}
	dp := s.dp
	plans := Plan([]ServiceSpec{spec("echo", lab.VIPv4, "rr", lab.BackendV4(1))}, nil)
	plans[0].SNAT = true
	if _, err := dp.Apply(plans); err != nil {
		t.Fatal(err)
	}
	dp.SetPair(Pair{SNAT4: netip.MustParseAddr("192.0.2.99"), SNAT6: netip.MustParseAddr("2001:db8:2::99"), Guard: true})
	if _, err := dp.Apply(plans); err != nil {
		t.Fatal(err)
	}
	out, err := s.Output("lb", "nft", "list", "table", "inet", "lbd")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"snat ip to 192.0.2.99", "snat ip6 to 2001:db8:2::99", "masquerade", "chain ha_guard", "type filter hook prerouting priority mangle", "drop"} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, out)
		}
	}
	if i, j := strings.Index(out, "snat ip to"), strings.Index(out, "masquerade"); i > j {
		t.Errorf("snat to lan_address must come before masquerade:\n%s", out)
	}
	c, err := s.DialFrom("client", lab.ClientV4, lab.VIPv4+":7000", 0)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := lab.AskOn(c, "hi")
	c.Close()
	if err != nil {
		ct, _ := s.Output("lb", "conntrack", "-L")
		t.Fatalf("%v\n%s\n%s", err, ct, out)
	}
	ct, _ := s.Output("lb", "conntrack", "-L", "-p", "tcp", "--orig-dst", lab.VIPv4)
	if !strings.Contains(ct, "dst=192.0.2.99") {
		t.Errorf("flow not source-NATed to the floating address (answer %q):\n%s", ans, ct)
	}
	dp.SetPair(Pair{})
	if _, err := dp.Apply(plans); err != nil {
		t.Fatal(err)
	}
	out, _ = s.Output("lb", "nft", "list", "table", "inet", "lbd")
	if strings.Contains(out, "snat ip to") || strings.Contains(out, "ha_guard") || !strings.Contains(out, "masquerade") {
		t.Errorf("pair rules not removed:\n%s", out)
	}
}

// TestPairFirewallTrusted: with the firewall on and the WAN restricted,
// the peer's VRRP adverts and conntrackd's sync traffic are accepted.
func TestPairFirewallTrusted(t *testing.T) {
	needRoot(t)
	s, err := lab.NewStandard("pairfw", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	f, err := os.Open(s.NSFile("lb"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dp := NewInNetNS(int(f.Fd()))
	fw := Firewall{Enabled: true, WAN: []string{"wanbr"}, Trusted: []TrustedFlow{
		{Src: netip.MustParseAddr("198.51.100.5"), Proto: 112},
		{Src: netip.MustParseAddr("192.0.2.6"), Proto: 17, DPort: 3780},
	}}
	if _, err := dp.ApplyState(nil, fw); err != nil {
		t.Fatal(err)
	}
	out, err := s.Output("lb", "nft", "list", "chain", "inet", "lbd", "input")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ip saddr 198.51.100.5 meta l4proto vrrp accept", "ip saddr 192.0.2.6 udp dport 3780 accept"} {
		if !strings.Contains(out, want) {
			t.Errorf("input chain lacks %q:\n%s", want, out)
		}
	}
	// Unchanged firewall: nothing to write; dropping Trusted rewrites it.
	st, err := dp.ApplyState(nil, fw)
	if err != nil || st.String() != (ApplyStats{}).String() {
		t.Errorf("re-apply of the same firewall: %v %v", st, err)
	}
	if _, err := dp.ApplyState(nil, Firewall{Enabled: true, WAN: []string{"wanbr"}}); err != nil {
		t.Fatal(err)
	}
	out, _ = s.Output("lb", "nft", "list", "chain", "inet", "lbd", "input")
	if strings.Contains(out, "198.51.100.5") {
		t.Errorf("trusted rule not removed:\n%s", out)
	}
}
