package console

import (
	"strings"
	"testing"
	"time"

	"lbd/appliance/status"
)

func TestRenderFleet(t *testing.T) {
	s := status.Snapshot{Now: time.Unix(1000, 0), Services: []status.Service{},
		BGP: &status.BGP{ASN: 65010, RouterID: "203.0.113.129", Draining: true,
			Bird: status.BirdState{Running: true, PID: 42},
			Neighbors: []status.BGPNeighbor{{Address: "203.0.113.254", ASN: 65000, State: "Established", Up: true, BFD: "Up"},
				{Address: "2001:db8:4::fe", ASN: 65000, State: "Active"}},
			VIPs: []status.VIPAnnounce{{VIP: "203.0.113.10", Services: []string{"web"}, Announced: true},
				{VIP: "203.0.113.11", Services: []string{"api"}, Reason: status.WithdrawnNoBackend}}}}
	out := Render(s, 100, 40, false)
	for _, want := range []string{"BGP AS65010 router-id 203.0.113.129", "NODE DRAINING", "203.0.113.254", "Established  bfd Up",
		"Active", "203.0.113.10                 announced  web", "withdrawn: no usable backend  api"} {
		if !strings.Contains(out, want) {
			t.Errorf("page lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(Render(status.Snapshot{Now: time.Unix(1000, 0), Services: []status.Service{}}, 100, 40, false), "BGP") {
		t.Error("no BGP lines without [bgp]")
	}
}
