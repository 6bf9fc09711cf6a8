package status

import (
	"strings"
	"testing"
	"time"
)

func TestHALine(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	h := &HA{Role: "MASTER", RoleSince: now.Add(-90 * time.Second), Priority: 150, RouterID: 51, Interface: "wan",
		Peer: "198.51.100.5", Transitions: 2, LastTransition: "BACKUP -> MASTER: the peer went silent (no advert for 3 intervals)",
		Serving: true, FlowSync: FlowSync{Internal: 12, External: 0}}
	want := "pair: MASTER for 1m30s (priority 150, router id 51 on wan); no advert heard from peer 198.51.100.5; 2 transitions, last BACKUP -> MASTER: the peer went silent (no advert for 3 intervals); flows synced 12 here / 0 from peer"
	if got := h.Line(now); got != want {
		t.Errorf("line:\n got %s\nwant %s", got, want)
	}
	h.Role, h.Serving, h.NotServing = "FAULT", false, "no service has a live backend"
	h.PeerAdvert = &PeerAdvert{From: "198.51.100.5", Priority: 100, At: now.Add(-200 * time.Millisecond)}
	got := h.Line(now)
	for _, w := range []string{"pair: FAULT", "peer 198.51.100.5 advertised priority 100 200ms ago", "CANNOT SERVE: no service has a live backend"} {
		if !strings.Contains(got, w) {
			t.Errorf("line lacks %q: %s", w, got)
		}
	}
}
