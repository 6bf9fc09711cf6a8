package daemon

import (
	"net/netip"
	"testing"

	"lbd/config"
	"lbd/lb"
)

func TestCanServe(t *testing.T) {
	cfg := &config.Config{Services: []config.Service{{Name: "web"}, {Name: "dns"}}}
	be := netip.MustParseAddrPort("192.0.2.11:80")
	live := map[string]lb.Service{"web": {Name: "web"}, "dns": {Name: "dns", Slots: []netip.AddrPort{be}}}
	dead := map[string]lb.Service{"web": {Name: "web"}, "dns": {Name: "dns"}}
	for _, c := range []struct {
		name    string
		cfg     *config.Config
		inSync  bool
		planned map[string]lb.Service
		ok      bool
		why     string
	}{
		{"not ready", nil, true, nil, false, "no config applied"},
		{"out of sync", cfg, false, live, false, "the kernel is out of sync with the config"},
		{"one service live", cfg, true, live, true, ""},
		{"no live backend", cfg, true, dead, false, "no service has a live backend"},
		{"no services at all", &config.Config{}, true, nil, true, ""},
	} {
		ok, why := canServe(c.cfg, c.inSync, c.planned)
		if ok != c.ok || why != c.why {
			t.Errorf("%s: got %v %q, want %v %q", c.name, ok, why, c.ok, c.why)
		}
	}
}
