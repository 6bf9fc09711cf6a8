package config

import (
	"strings"
	"testing"
	"time"
)

const haService = `
[[service]]
name = "web"
vip = "203.0.113.10"
port = 80
backend = [{ address = "192.0.2.11" }]
`

const haGood = `
[ha]
mode = "vrrp"
interface = "wan"
router_id = 51
priority = 150
peer = "198.51.100.5"
advert_interval = "200ms"
lan_interface = "lan"
lan_address = "192.0.2.1/24"
sync_peer = "192.0.2.6"
` + haService

func TestHAGood(t *testing.T) {
	c, err := Parse("lb.toml", []byte(haGood))
	if err != nil {
		t.Fatalf("unexpected error:\n%v", err)
	}
	h := c.HA
	if h == nil || !c.HAEnabled() {
		t.Fatal("[ha] not decoded")
	}
	if h.AdvertInterval.D() != 200*time.Millisecond || h.Preempt || h.SyncInterface != "lan" ||
		h.PeerAddr.String() != "198.51.100.5" || h.LANPrefix.String() != "192.0.2.1/24" || h.SyncPeerAddr.String() != "192.0.2.6" {
		t.Errorf("decoded [ha] wrong: %+v", h)
	}
	c, err = Parse("lb.toml", []byte(strings.Replace(haGood, `advert_interval = "200ms"`, "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if c.HA.AdvertInterval.D() != time.Second {
		t.Errorf("default advert_interval: %s", c.HA.AdvertInterval.D())
	}
	c, err = Parse("lb.toml", []byte(haService))
	if err != nil || c.HAEnabled() {
		t.Fatalf("no [ha] must be a single appliance: %v %v", err, c)
	}
}

// With declared interfaces, the subnets are checked.
const haIfaces = `
[[interface]]
name = "wan"
device = "eth0"
addresses = ["198.51.100.4/24"]

[[interface]]
name = "lan"
device = "eth1"
addresses = ["192.0.2.5/24"]
`

func TestHAErrors(t *testing.T) {
	for _, tc := range []struct {
		name, from, to string
		ifaces         bool
		want           string // "LINE:COL: path: fragment"
	}{
		{"priority high", "priority = 150", "priority = 255", false, "6:12: ha.priority: 255 out of range; expected 1 to 254"},
		{"priority zero", "priority = 150", "priority = 0", false, "6:12: ha.priority: 0 out of range"},
		{"priority missing", "priority = 150", "", false, "2:2: ha: missing key \"priority\""},
		{"router_id", "router_id = 51", "router_id = 256", false, "5:13: ha.router_id: 256 out of range; expected 1 to 255"},
		{"router_id type", "router_id = 51", `router_id = "51"`, false, "5:13: ha.router_id: expected an integer"},
		{"mode bgp", `mode = "vrrp"`, `mode = "bgp"`, false, "3:8: ha.mode: mode \"bgp\""},
		{"mode unknown", `mode = "vrrp"`, `mode = "carp"`, false, "3:8: ha.mode: unknown mode \"carp\""},
		{"peer bad", `peer = "198.51.100.5"`, `peer = "lb-2"`, false, "7:8: ha.peer: bad address \"lb-2\""},
		{"advert parse", `advert_interval = "200ms"`, `advert_interval = "fast"`, false, "8:19: ha.advert_interval: bad duration \"fast\""},
		{"advert step", `advert_interval = "200ms"`, `advert_interval = "205ms"`, false, "8:19: ha.advert_interval: 205ms is not a whole number of centiseconds"},
		{"advert range", `advert_interval = "200ms"`, `advert_interval = "41s"`, false, "8:19: ha.advert_interval: 41s out of range"},
		{"lan_address bad", `lan_address = "192.0.2.1/24"`, `lan_address = "192.0.2.1"`, false, "10:15: ha.lan_address: bad address \"192.0.2.1\""},
		{"sync_peer missing", `sync_peer = "192.0.2.6"`, ``, false, "2:2: ha: missing key \"sync_peer\""},
		{"unknown key", `preempt`, `preempt`, false, ""},
		{"unknown ha key", `mode = "vrrp"`, "mode = \"vrrp\"\nweight = 3", false, "4:1: ha.weight: unknown key"},
		{"peer family", `peer = "198.51.100.5"`, `peer = "2001:db8:1::5"`, true, "ha.peer: 2001:db8:1::5 is IPv6 but interface \"wan\" has no IPv6 address"},
		{"lan subnet", `lan_address = "192.0.2.1/24"`, `lan_address = "198.51.100.1/24"`, true, "ha.lan_address: 198.51.100.1 is not on a subnet of lan_interface \"lan\" (192.0.2.5/24)"},
		{"lan owned", `lan_address = "192.0.2.1/24"`, `lan_address = "192.0.2.5/24"`, true, "ha.lan_address: 192.0.2.5 is a static address of interface \"lan\""},
		{"sync subnet", `sync_peer = "192.0.2.6"`, `sync_peer = "203.0.113.6"`, true, "ha.sync_peer: 203.0.113.6 is not on a subnet of sync_interface \"lan\""},
		{"no such iface", `lan_interface = "lan"`, `lan_interface = "eth9"`, true, "ha.lan_interface: no [[interface]] named \"eth9\""},
		{"lan6 bad", `lan_address = "192.0.2.1/24"`, "lan_address = \"192.0.2.1/24\"\nlan_address6 = \"192.0.2.2/24\"", false, "11:16: ha.lan_address6: bad address \"192.0.2.2/24\"; expected an IPv6"},
		{"lan6 twice", `lan_address = "192.0.2.1/24"`, "lan_address = \"2001:db8:2::1/64\"\nlan_address6 = \"2001:db8:2::2/64\"", false, "11:16: ha.lan_address6: lan_address is IPv6 already"},
		{"lan6 ok", `lan_address = "192.0.2.1/24"`, "lan_address = \"192.0.2.1/24\"\nlan_address6 = \"2001:db8:2::1/64\"", false, ""},
		{"service iface", `backend = [`, "interface = \"lan\"\nbackend = [", true, "service[0].interface: \"lan\" differs from ha.interface \"wan\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.Replace(haGood, tc.from, tc.to, 1)
			if tc.ifaces {
				text = haIfaces + text
			}
			_, err := Parse("lb.toml", []byte(text))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want %q", tc.want)
			}
			if !strings.Contains(err.Error(), "lb.toml:") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got:\n%v\nwant a line containing %q", err, tc.want)
			}
		})
	}
}

func TestHAWithInterfacesGood(t *testing.T) {
	if _, err := Parse("lb.toml", []byte(haIfaces+haGood)); err != nil {
		t.Fatalf("unexpected error:\n%v", err)
	}
}
