package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

const bgpGood = `
[[interface]]
name = "wan"
device = "eth0"
addresses = ["2001:db8::1/64", "198.51.100.1/24"]

[bgp]
asn = 65010
source_address = "198.51.100.1"

[[bgp.neighbor]]
address = "198.51.100.254"
asn = 65000
bfd = true
hold_time = "9s"
password = "s3cret"

[[bgp.neighbor]]
address = "2001:db8::fe"
asn = 65000

[[service]]
name = "web"
vip = "198.51.100.10"
port = 80
backend = [{ address = "192.0.2.11" }]

[[service]]
name = "web6"
vip = "2001:db8:10::10"
port = 80
announce = false
backend = [{ address = "[2001:db8:2::11]:80" }]
`

func TestParseBGP(t *testing.T) {
	c, err := Parse("lb.toml", []byte(bgpGood))
	if err != nil {
		t.Fatalf("unexpected error:\n%v", err)
	}
	b := c.BGP
	if b == nil || b.ASN != 65010 {
		t.Fatalf("bgp: %+v", b)
	}
	if b.RouterIDAddr != netip.MustParseAddr("198.51.100.1") {
		t.Errorf("router_id default: got %v, want the first IPv4 address of the first interface", b.RouterIDAddr)
	}
	if b.Delay() != 2*time.Second {
		t.Errorf("announce_delay default: %v", b.Delay())
	}
	if i, m := b.BFD(); i != 100*time.Millisecond || m != 5 {
		t.Errorf("bfd defaults: %v x %d", i, m)
	}
	n0, n1 := b.Neighbors[0], b.Neighbors[1]
	if !n0.BFD || n0.Hold() != 9*time.Second || n0.Password != "s3cret" || n0.SourceAddr != b.SourceAddr {
		t.Errorf("neighbor 0: %+v", n0)
	}
	if n1.BFD || n1.SourceAddr.IsValid() || !n1.Addr.Is6() {
		t.Errorf("neighbor 1 (IPv6) must not take the IPv4 source_address: %+v", n1)
	}
	if !c.Services[0].Announced(c) || c.Services[1].Announced(c) {
		t.Errorf("announce: web %v web6 %v", c.Services[0].Announced(c), c.Services[1].Announced(c))
	}
	noBGP, err := Parse("lb.toml", []byte(good))
	if err != nil || noBGP.BGP != nil || noBGP.Services[0].Announced(noBGP) {
		t.Errorf("without [bgp] nothing is announced: %v", err)
	}
}

func TestParseBGPErrors(t *testing.T) {
	svc := "[[service]]\nname = \"a\"\nvip = \"198.51.100.10\"\nport = 80\nbackend = [{ address = \"192.0.2.11\" }]\n"
	bgp := "[bgp]\nasn = 65010\nrouter_id = \"198.51.100.1\"\n"
	nb := "[[bgp.neighbor]]\naddress = \"198.51.100.254\"\nasn = 65000\n"
	cases := []struct {
		name string
		text string
		want []string
	}{
		{"asn zero", "[bgp]\nasn = 0\nrouter_id = \"198.51.100.1\"\n" + nb, []string{"2:7: bgp.asn: 0 out of range"}},
		{"asn too big", "[bgp]\nasn = 4294967295\nrouter_id = \"198.51.100.1\"\n" + nb, []string{"2:7: bgp.asn: 4294967295 out of range"}},
		{"asn reserved", "[bgp]\nasn = 23456\nrouter_id = \"198.51.100.1\"\n" + nb, []string{"2:7: bgp.asn: 23456 is reserved"}},
		{"asn missing", "[bgp]\nrouter_id = \"198.51.100.1\"\n" + nb, []string{"1:2: bgp: missing key \"asn\""}},
		{"asn a string", "[bgp]\nasn = \"65010\"\nrouter_id = \"198.51.100.1\"\n" + nb, []string{"2:7: bgp.asn: expected an integer"}},
		{"router_id v6", "[bgp]\nasn = 65010\nrouter_id = \"2001:db8::1\"\n" + nb, []string{"3:13: bgp.router_id: bad router_id"}},
		{"no router_id to default to", "[bgp]\nasn = 65010\n" + nb, []string{"1:2: bgp: missing key \"router_id\""}},
		{"no neighbor", bgp, []string{"1:2: bgp: no [[bgp.neighbor]]"}},
		{"neighbor asn", bgp + "[[bgp.neighbor]]\naddress = \"198.51.100.254\"\nasn = 65535\n", []string{"6:7: bgp.neighbor[0].asn: 65535 is reserved"}},
		{"neighbor address", bgp + "[[bgp.neighbor]]\naddress = \"router\"\nasn = 65000\n", []string{"5:11: bgp.neighbor[0].address: bad address"}},
		{"neighbor wrong family", bgp + "[[bgp.neighbor]]\naddress = \"2001:db8::fe\"\nasn = 65000\nsource_address = \"198.51.100.1\"\n",
			[]string{"7:18: bgp.neighbor[0].source_address: 198.51.100.1 is IPv4 but the neighbor 2001:db8::fe is IPv6"}},
		{"VIP with no neighbor of its family", bgp + nb + "[[service]]\nname = \"a\"\nvip = \"2001:db8::10\"\nport = 80\nbackend = [{ address = \"[2001:db8:2::11]:80\" }]\n",
			[]string{"9:7: service[0].vip: VIP 2001:db8::10 is IPv6 but no [[bgp.neighbor]] is"}},
		{"hold time fraction", bgp + nb + "hold_time = \"2500ms\"\n", []string{"7:13: bgp.neighbor[0].hold_time: 2.5s is not whole seconds"}},
		{"hold time short", bgp + nb + "hold_time = \"2s\"\n", []string{"7:13: bgp.neighbor[0].hold_time: 2s out of range"}},
		{"password quote", bgp + nb + "password = 'a\"b'\n", []string{"7:12: bgp.neighbor[0].password: must not hold"}},
		{"bfd interval", strings.Replace(bgp, "asn = 65010\n", "asn = 65010\nbfd_interval = \"5ms\"\nbfd_multiplier = 300\n", 1) + nb,
			[]string{"3:16: bgp.bfd_interval: 5ms out of range", "4:18: bgp.bfd_multiplier: 300 out of range"}},
		{"duplicate neighbor", bgp + nb + nb, []string{"8:11: bgp.neighbor[1].address: duplicate neighbor"}},
		{"unknown key", bgp + nb + "multihop = 2\n", []string{"7:1: bgp.neighbor[0].multihop: unknown key"}},
		{"snat off in a fleet", bgp + nb + svc + "snat = false\n", []string{"12:8: service[0].snat: snat = false cannot be used with [bgp]: in a fleet each appliance must masquerade"}},
		{"announce without bgp", svc + "announce = true\n", []string{"6:12: service[0].announce: only used with [bgp]"}},
		{"announced VIP on an interface", "[[interface]]\nname = \"wan\"\ndevice = \"eth0\"\n" + bgp + nb + svc + "interface = \"wan\"\n",
			[]string{"15:13: service[0].interface: an announced VIP is not put on an interface"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("lb.toml", []byte(tc.text))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("want Errors, got %v", err)
			}
			if len(errs) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tc.want), err)
			}
			for i, w := range tc.want {
				if got := errs[i].Error(); !strings.Contains(got, "lb.toml:"+w) {
					t.Errorf("error %d:\n got  %s\n want lb.toml:%s...", i, got, w)
				}
			}
		})
	}
}
