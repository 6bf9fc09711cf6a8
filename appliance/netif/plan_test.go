package netif

import (
	"net/netip"
	"slices"
	"testing"
)

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

func TestPlanAddrsOnlyTouchesOwned(t *testing.T) {
	current := pfx("198.51.100.2/24", "203.0.113.9/24", "fe80::1/64", "2001:db8::2/64")
	owned := pfx("198.51.100.2/24", "2001:db8::2/64")
	desired := pfx("198.51.100.3/24", "2001:db8::2/64", "203.0.113.9/24")

	p := planAddrs(desired, current, owned)
	if !slices.Equal(p.add, pfx("198.51.100.3/24")) {
		t.Errorf("add = %v, want only the new address", p.add)
	}
	if !slices.Equal(p.del, pfx("198.51.100.2/24")) {
		t.Errorf("del = %v, want only the owned, no longer listed address", p.del)
	}
	if len(p.delFirst) != 0 || len(p.forget) != 0 {
		t.Errorf("unexpected delFirst %v / forget %v", p.delFirst, p.forget)
	}
}

func TestPlanAddrsSameIPNewPrefixDeletesFirst(t *testing.T) {
	p := planAddrs(pfx("2001:db8::2/56"), pfx("2001:db8::2/64"), pfx("2001:db8::2/64"))
	if !slices.Equal(p.delFirst, pfx("2001:db8::2/64")) || !slices.Equal(p.add, pfx("2001:db8::2/56")) || len(p.del) != 0 {
		t.Errorf("plan = %+v: the kernel refuses the same IPv6 address twice, so the old must go first", p)
	}
}

func TestPlanAddrsForgetsVanished(t *testing.T) {
	p := planAddrs(nil, nil, pfx("192.0.2.5/24"))
	if len(p.del) != 0 || !slices.Equal(p.forget, pfx("192.0.2.5/24")) {
		t.Errorf("plan = %+v, want the vanished owned address forgotten, not deleted", p)
	}
}

func TestPlanAddrsIdempotent(t *testing.T) {
	cur := pfx("198.51.100.2/24", "fe80::1/64")
	p := planAddrs(pfx("198.51.100.2/24"), cur, pfx("198.51.100.2/24"))
	if len(p.add)+len(p.del)+len(p.delFirst)+len(p.forget) != 0 {
		t.Errorf("plan for an unchanged NIC = %+v, want nothing", p)
	}
}

func TestPlanRoutes(t *testing.T) {
	r := func(to, via string) Route {
		return Route{To: netip.MustParsePrefix(to), Via: netip.MustParseAddr(via)}
	}
	desired := []Route{r("0.0.0.0/0", "198.51.100.1"), r("192.0.2.0/24", "198.51.100.254")}
	current := []Route{r("0.0.0.0/0", "198.51.100.9"), r("192.0.2.0/24", "198.51.100.254")}
	add, del := planRoutes(desired, current)
	if !slices.Equal(add, desired[:1]) || !slices.Equal(del, current[:1]) {
		t.Errorf("add %v del %v: want only the changed default route swapped", add, del)
	}
}

func TestSpecValidate(t *testing.T) {
	gw := netip.MustParseAddr("198.51.100.1")
	cases := []struct {
		name string
		spec Spec
		ok   bool
	}{
		{"mac", Spec{Name: "wan", MAC: "52:54:00:00:00:01"}, true},
		{"device", Spec{Name: "lan", Device: "eth1"}, true},
		{"neither", Spec{Name: "lan"}, false},
		{"bad mac", Spec{Name: "lan", MAC: "nope"}, false},
		{"long name", Spec{Name: "a-very-long-name-x", Device: "eth0"}, false},
		{"two v4 gateways", Spec{Name: "wan", Device: "eth0", Gateway: gw, Gateway6: gw}, false},
		{"mixed route", Spec{Name: "wan", Device: "eth0", Routes: []Route{{To: netip.MustParsePrefix("2001:db8::/32"), Via: gw}}}, false},
	}
	for _, c := range cases {
		err := c.spec.validate()
		if (err == nil) != c.ok {
			t.Errorf("%s: validate() = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}
