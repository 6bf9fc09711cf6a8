package httpstatus

import (
	"strings"
	"testing"

	"lbd/appliance/status"
)

// The page without JavaScript shows the fleet block ([bgp] only).
func TestPageBGP(t *testing.T) {
	s := fixedSnapshot()
	if b, err := renderPage(s); err != nil || strings.Contains(string(b), "<h2>BGP</h2>\n<p>AS") {
		t.Fatalf("BGP block without [bgp]: %v", err)
	}
	s.BGP = &status.BGP{ASN: 65010, RouterID: "203.0.113.129", Draining: true, Bird: status.BirdState{Running: true},
		Neighbors: []status.BGPNeighbor{{Address: "203.0.113.254", ASN: 65000, State: "Established", Up: true, BFD: "Up"}},
		VIPs: []status.VIPAnnounce{{VIP: "203.0.113.10", Services: []string{"web", "web-tls"}, Announced: true},
			{VIP: "203.0.113.11", Services: []string{"api"}, Reason: status.WithdrawnNoBackend}}}
	b, err := renderPage(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<h2>BGP</h2>\n<p>AS65010 router-id 203.0.113.129", "NODE DRAINING",
		`<td>203.0.113.254</td><td>65000</td><td class="up">Established</td><td>Up</td>`,
		`<td>203.0.113.10</td><td>web, web-tls</td><td class="up">announced</td>`,
		`<td class="warn">withdrawn: no usable backend</td>`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("page lacks %q", want)
		}
	}
}
