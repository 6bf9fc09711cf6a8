package lb

import (
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// rulesEqual compares by hand; this guard fails when a field is added to
// Service or Protection so the comparison gets updated with it.
func TestRulesEqualCoversEveryField(t *testing.T) {
	if n := reflect.TypeOf(Service{}).NumField(); n != 12 {
		t.Fatalf("Service has %d fields: update rulesEqual and this count", n)
	}
	if n := reflect.TypeOf(Protection{}).NumField(); n != 8 {
		t.Fatalf("Protection has %d fields: update rulesEqual and this count", n)
	}
	base := Service{Name: "a", VIP: netip.MustParseAddr("203.0.113.1"), Proto: 6, Port: 80, Scheduler: "rr", Modulus: 32,
		Seed: 1, OnEmpty: "reject", Slots: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:80")}}
	muts := []func(s *Service){
		func(s *Service) { s.Name = "b" },
		func(s *Service) { s.VIP = netip.MustParseAddr("203.0.113.2") },
		func(s *Service) { s.Proto = 17 },
		func(s *Service) { s.Port = 81 },
		func(s *Service) { s.Scheduler = "sh" },
		func(s *Service) { s.Modulus = 33 },
		func(s *Service) { s.Seed = 2 },
		func(s *Service) { s.SNAT = true },
		func(s *Service) { s.Persistence = time.Second },
		func(s *Service) { s.OnEmpty = "drop" },
		func(s *Service) { s.Protect.MaxConnections = 1 },
		func(s *Service) { s.Protect.Rate = Rate{N: 1, Per: time.Second} },
		func(s *Service) { s.Protect.Burst = 1 },
		func(s *Service) { s.Protect.ClientRate = Rate{N: 1, Per: time.Second} },
		func(s *Service) { s.Protect.PerClientConnections = 1 },
		func(s *Service) { s.Protect.Allow = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")} },
		func(s *Service) { s.Protect.Deny = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")} },
		func(s *Service) { s.Protect.Throttle = Rate{N: 1, Per: time.Second} },
	}
	for i, m := range muts {
		x := base
		m(&x)
		if rulesEqual(&base, &x) {
			t.Errorf("mutation %d not seen by rulesEqual", i)
		}
	}
	y := base
	y.Slots = nil
	if !rulesEqual(&base, &y) {
		t.Error("slots must not count as a rule change")
	}
}
