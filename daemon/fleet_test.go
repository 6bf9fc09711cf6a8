package daemon

import (
	"net/netip"
	"testing"
	"time"

	"lbd/appliance/status"
	"lbd/config"
	"lbd/lb"
)

const fleetTOML = `
[bgp]
asn = 65010
router_id = "203.0.113.129"
announce_delay = "2s"
[[bgp.neighbor]]
address = "203.0.113.254"
asn = 65000
[[bgp.neighbor]]
address = "2001:db8:4::fe"
asn = 65000

[[service]]
name = "web"
vip = "203.0.113.10"
port = 80
backend = [{ address = "192.0.2.11" }]
[[service]]
name = "web-tls"
vip = "203.0.113.10"
port = 443
backend = [{ address = "192.0.2.11" }]
[[service]]
name = "api"
vip = "203.0.113.11"
port = 80
backend = [{ address = "192.0.2.11" }]
[[service]]
name = "web6"
vip = "2001:db8:3::10"
port = 80
backend = [{ address = "[2001:db8:2::11]:80" }]
[[service]]
name = "quiet"
vip = "203.0.113.12"
port = 80
announce = false
backend = [{ address = "192.0.2.11" }]
`

func TestAnnouncements(t *testing.T) {
	cfg, err := config.Parse("lb.toml", []byte(fleetTOML))
	if err != nil {
		t.Fatal(err)
	}
	be := netip.MustParseAddrPort("192.0.2.11:80")
	usable := func(names ...string) map[string]lb.Service {
		m := map[string]lb.Service{}
		for _, s := range cfg.Services {
			m[s.Name] = lb.Service{Name: s.Name}
		}
		for _, n := range names {
			m[n] = lb.Service{Name: n, Slots: []netip.AddrPort{be}}
		}
		return m
	}
	t0 := time.Unix(1000, 0)
	ready := fleetGate{readyAt: t0}
	after := t0.Add(3 * time.Second)
	reason := func(vips []status.VIPAnnounce, vip string) string {
		for _, v := range vips {
			if v.VIP == vip {
				if v.Announced {
					return "announced"
				}
				return v.Reason
			}
		}
		return "absent"
	}
	cases := []struct {
		name    string
		planned map[string]lb.Service
		gate    fleetGate
		now     time.Time
		want    map[string]string // vip -> "announced" or reason
	}{
		{"all usable", usable("web", "web-tls", "api", "web6", "quiet"), ready, after, map[string]string{
			"203.0.113.10": "announced", "203.0.113.11": "announced", "2001:db8:3::10": "announced", "203.0.113.12": status.WithdrawnOff}},
		{"one service of a VIP is enough", usable("web-tls"), ready, after, map[string]string{
			"203.0.113.10": "announced", "203.0.113.11": status.WithdrawnNoBackend, "2001:db8:3::10": status.WithdrawnNoBackend}},
		{"before announce_delay", usable("web", "api"), ready, t0.Add(time.Second), map[string]string{
			"203.0.113.10": status.WithdrawnDelay, "203.0.113.11": status.WithdrawnDelay}},
		{"not ready", usable("web"), fleetGate{}, after, map[string]string{"203.0.113.10": status.WithdrawnNotReady}},
		{"draining", usable("web", "api"), fleetGate{readyAt: t0, drainSince: after}, after, map[string]string{
			"203.0.113.10": status.WithdrawnDraining, "203.0.113.11": status.WithdrawnDraining}},
		{"stopping", usable("web"), fleetGate{readyAt: t0, stopping: true}, after, map[string]string{"203.0.113.10": status.WithdrawnStopping}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want, vips := announcements(cfg, tc.planned, tc.gate, tc.now)
			n := 0
			for vip, w := range tc.want {
				if got := reason(vips, vip); got != w {
					t.Errorf("%s: got %q want %q", vip, got, w)
				}
				if w == "announced" {
					n++
					if !want[netip.MustParseAddr(vip)] {
						t.Errorf("%s not in the announced set %v", vip, want)
					}
				}
			}
			if len(want) != n {
				t.Errorf("announced set %v, want %d VIPs", want, n)
			}
			if len(vips) != 4 {
				t.Errorf("one status line per VIP: %+v", vips)
			}
		})
	}
}
