package daemon

import (
	"net/netip"
	"reflect"
	"testing"

	"lbd/config"
	"lbd/lb"
)

func TestFirewallFor(t *testing.T) {
	on, off := true, false
	base := func() *config.Config {
		return &config.Config{
			Appliance:  config.Appliance{StatusListen: "192.0.2.1:9100"},
			Interfaces: []config.Interface{{Name: "wan"}, {Name: "lan"}},
			Services:   []config.Service{{Name: "web", Interface: "wan"}, {Name: "dns"}},
		}
	}
	cfg := base()
	fw := firewallFor(cfg)
	want := lb.Firewall{Enabled: true, WAN: []string{"wan"}, ManagementPorts: []uint16{22, 9100}}
	if !reflect.DeepEqual(fw, want) {
		t.Fatalf("defaults with interfaces: %+v, want %+v", fw, want)
	}
	cfg.Firewall.Enabled = &off
	if fw := firewallFor(cfg); fw.Enabled {
		t.Fatal("enabled = false must turn it off")
	}
	if fw := firewallFor(&config.Config{}); fw.Enabled {
		t.Fatal("without [[interface]] (tests, labs) the firewall is off by default")
	}
	cfg = base()
	cfg.Firewall = config.Firewall{Enabled: &on, WAN: []string{"lan", "wan", "lan"},
		AdminPrefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.7/24")}}
	fw = firewallFor(cfg)
	if !reflect.DeepEqual(fw.WAN, []string{"lan", "wan"}) || fw.AdminNetworks[0] != netip.MustParsePrefix("192.0.2.0/24") {
		t.Fatalf("explicit wan and admin networks, normalized: %+v", fw)
	}
}
