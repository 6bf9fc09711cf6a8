package lb

import (
	"encoding/hex"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// recorder stands in for Conn.AddSet: it gives anonymous sets an ID, as
// AddSet does, and keeps what was added.
type recorder struct {
	sets  []*nftables.Set
	elems [][]nftables.SetElement
}

func (r *recorder) add(s *nftables.Set, els []nftables.SetElement) error {
	s.ID = uint32(len(r.sets) + 1000)
	r.sets, r.elems = append(r.sets, s), append(r.elems, els)
	return nil
}

func testTable() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
}

func protected(vip string, p Protection) *Service {
	return &Service{Name: "web", VIP: netip.MustParseAddr(vip), Proto: protoTCP, Port: 80, Protect: p}
}

// counterOf returns the refusal counter a rule counts into.
func counterOf(t *testing.T, r *nftables.Rule) string {
	t.Helper()
	for _, e := range r.Exprs {
		if o, ok := e.(*expr.Objref); ok {
			return o.Name
		}
	}
	t.Fatalf("rule without a counter: %#v", r.Exprs)
	return ""
}

func TestNoProtectionNoRules(t *testing.T) {
	var rec recorder
	s := protected("198.51.100.10", Protection{})
	if rules := protectionRules(testTable(), &nftables.Chain{Name: "svc_web"}, s, rec.add); len(rules) != 0 {
		t.Fatalf("no protection keys should mean no rules, got %d", len(rules))
	}
	if len(rec.sets) != 0 || len(protectionDynSets(testTable(), s)) != 0 || len(s.Protect.protectionKinds()) != 0 {
		t.Fatal("no protection keys should mean no sets and no counters")
	}
}

func TestProtectionRuleOrderAndShape(t *testing.T) {
	full := Protection{
		MaxConnections: 100, Rate: Rate{N: 500, Per: time.Second}, Burst: 50,
		ClientRate: Rate{N: 20, Per: time.Second}, PerClientConnections: 10,
		Allow:    []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::/32")},
		Deny:     []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32"), netip.MustParsePrefix("2001:db8::7/128")},
		Throttle: Rate{N: 10, Per: time.Second},
	}
	for _, vip := range []string{"203.0.113.10", "2001:db8:3::10"} {
		var rec recorder
		s := protected(vip, full)
		rules := protectionRules(testTable(), &nftables.Chain{Name: "svc_web"}, s, rec.add)
		var got []string
		for _, r := range rules {
			got = append(got, counterOf(t, r))
			last := r.Exprs[len(r.Exprs)-1]
			if rj, ok := last.(*expr.Reject); !ok || rj.Type != 1 /* tcp reset */ {
				t.Errorf("%s: every refusal must reset, rule ends with %#v", vip, last)
			}
		}
		want := []string{"deny_web", "deny_web", "clientrate_web", "clientconn_web", "throttle_web", "rate_web", "maxconn_web"}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: rules count into %v, want %v", vip, got, want)
		}
		// Deny then allow (inverted lookup), each with its own anonymous
		// interval set holding only the service's family.
		if len(rec.sets) != 2 || !rec.sets[0].Anonymous || !rec.sets[0].Interval {
			t.Fatalf("%s: want 2 anonymous interval sets, got %+v", vip, rec.sets)
		}
		lk := rules[1].Exprs[1].(*expr.Lookup)
		if !lk.Invert || lk.SetID != rec.sets[1].ID {
			t.Errorf("%s: allow rule should be an inverted lookup of the allow set: %+v", vip, lk)
		}
		// The per-client key is saddr . limit, the limit right after the
		// address in the registers.
		is6 := s.Is6()
		imm := rules[2].Exprs[1].(*expr.Immediate)
		wantReg := uint32(9)
		if is6 {
			wantReg = 12
		}
		if imm.Register != wantReg {
			t.Errorf("%s: limit fingerprint in reg %d, want %d", vip, imm.Register, wantReg)
		}
		ds := rules[2].Exprs[2].(*expr.Dynset)
		if ds.SetName != clientRateSetName("web", is6) || ds.Timeout < time.Minute {
			t.Errorf("%s: clientrate dynset %+v", vip, ds)
		}
		if l := ds.Exprs[0].(*expr.Limit); !l.Over || l.Rate != 20 || l.Burst != 50 || l.Unit != expr.LimitTimeSecond {
			t.Errorf("%s: clientrate limit %+v", vip, l)
		}
		if cl := rules[6].Exprs[1].(*expr.Dynset).Exprs[0].(*expr.Connlimit); cl.Count != 100 || cl.Flags != expr.NFT_CONNLIMIT_F_INV {
			t.Errorf("%s: maxconn should be ct count over 100: %+v", vip, cl)
		}
		if n := len(protectionDynSets(testTable(), s)); n != 3 {
			t.Errorf("%s: want 3 dynamic sets, got %d", vip, n)
		}
	}
}

func TestAllowWithoutThisFamilyRefusesAll(t *testing.T) {
	var rec recorder
	s := protected("203.0.113.10", Protection{Allow: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}})
	rules := protectionRules(testTable(), &nftables.Chain{Name: "svc_web"}, s, rec.add)
	if len(rules) != 1 || len(rules[0].Exprs) != 2 || len(rec.sets) != 0 {
		t.Fatalf("an allow list with no IPv4 entry should refuse every IPv4 client: %d rules %#v", len(rules), rules)
	}
}

// TestLimitKeyKnownValues: the key is part of every per-client element
// in the kernel, so per-client counts survive a restart of lbd or a
// reload that keeps the limit only if a new process computes the same key
// for the same limit; a different limit must give a different key so old
// elements stop counting. The values were computed outside Go (FNV-1a 32
// by hand in Python over the big-endian uint64 parts, big-endian result),
// so this is not the function compared with itself.
func TestLimitKeyKnownValues(t *testing.T) {
	for _, c := range []struct {
		parts []uint64
		want  string
	}{
		{[]uint64{5}, "96e16986"},
		{[]uint64{6}, "95e167f3"},
		{[]uint64{20, 1, 0}, "de19e796"},
		{[]uint64{20, 60, 0}, "a357c31d"},
		{[]uint64{1, 2}, "462054ec"},
		{[]uint64{2, 1}, "25d7958c"}, // order matters: rate 1 burst 2 is not rate 2 burst 1
	} {
		if got := hex.EncodeToString(limitKey(c.parts...)); got != c.want {
			t.Errorf("limitKey%v = %s, want %s", c.parts, got, c.want)
		}
	}
}

func TestClientRateTimeout(t *testing.T) {
	for _, c := range []struct {
		r     Rate
		burst int
		want  time.Duration
	}{
		{Rate{N: 20, Per: time.Second}, 0, time.Minute},
		{Rate{N: 6, Per: time.Minute}, 3, time.Minute},
		{Rate{N: 1, Per: time.Minute}, 5, 10 * time.Minute},
		{Rate{N: 10, Per: time.Hour}, 5, time.Hour},
	} {
		if got := clientRateTimeout(c.r, c.burst); got != c.want {
			t.Errorf("%v burst %d: timeout %v, want %v", c.r, c.burst, got, c.want)
		}
	}
}

func TestIntervalElements(t *testing.T) {
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	type el struct {
		key string
		end bool
	}
	render := func(els []nftables.SetElement) []el {
		var out []el
		for _, e := range els {
			a, _ := netip.AddrFromSlice(e.Key)
			out = append(out, el{a.String(), e.IntervalEnd})
		}
		return out
	}
	cases := []struct {
		name string
		in   []netip.Prefix
		is6  bool
		want []el
	}{
		{"merged and sorted", pfx("192.168.1.0/24", "10.0.0.0/8", "10.1.0.0/16", "192.168.0.0/24"), false,
			[]el{{"0.0.0.0", true}, {"10.0.0.0", false}, {"11.0.0.0", true}, {"192.168.0.0", false}, {"192.168.2.0", true}}},
		{"host bits masked", pfx("198.51.100.7/24"), false,
			[]el{{"0.0.0.0", true}, {"198.51.100.0", false}, {"198.51.101.0", true}}},
		{"everything", pfx("0.0.0.0/0"), false, []el{{"0.0.0.0", false}}},
		{"up to the top", pfx("255.255.255.255/32"), false, []el{{"0.0.0.0", true}, {"255.255.255.255", false}}},
		{"other family ignored", pfx("2001:db8::/32", "198.51.100.0/24"), true,
			[]el{{"::", true}, {"2001:db8::", false}, {"2001:db9::", true}}},
		{"none of this family", pfx("2001:db8::/32"), false, nil},
	}
	for _, c := range cases {
		if got := render(intervalElements(c.in, c.is6)); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

func TestFirewallRulesShape(t *testing.T) {
	in, fwd := &nftables.Chain{Name: fwInputChain}, &nftables.Chain{Name: fwForwardChain}
	count := func(fw Firewall) (nIn, nFwd int) {
		var rec recorder
		for _, r := range firewallRules(testTable(), in, fwd, fw, rec.add) {
			if r.Chain == in {
				nIn++
			} else {
				nFwd++
			}
		}
		return
	}
	// No WAN: input is not restricted (an accept before the final drop).
	if i, f := count(Firewall{Enabled: true}); i != 9 || f != 4 {
		t.Errorf("no WAN: %d input, %d forward rules; want 9, 4", i, f)
	}
	// WAN, admin networks of both families, forward sources of one.
	fw := Firewall{Enabled: true, WAN: []string{"wan"}, ManagementPorts: []uint16{22},
		AdminNetworks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")},
		AllowForward:  []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
	if i, f := count(fw); i != 11 || f != 5 {
		t.Errorf("full: %d input, %d forward rules; want 11, 5", i, f)
	}
}
