package httpstatus

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"lbd/appliance/status"
)

func TestMetricsBGP(t *testing.T) {
	s := newServer(t)
	s.mu.Lock()
	s.snap.BGP = &status.BGP{ASN: 65010, Draining: true, Bird: status.BirdState{Running: true, Restarts: 2},
		Neighbors: []status.BGPNeighbor{{Address: "203.0.113.254", Up: true, BFD: "Up"}, {Address: "2001:db8:4::fe", Up: false}},
		VIPs:      []status.VIPAnnounce{{VIP: "203.0.113.10", Announced: true}, {VIP: "203.0.113.11", Reason: status.WithdrawnNoBackend}}}
	snap := s.snap
	s.mu.Unlock()
	_, body := s.get(t, "/metrics")
	mfs := parseMetrics(t, body)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"lbd_bgp_session_up", map[string]string{"neighbor": "203.0.113.254"}, 1},
		{"lbd_bgp_session_up", map[string]string{"neighbor": "2001:db8:4::fe"}, 0},
		{"lbd_bfd_session_up", map[string]string{"neighbor": "203.0.113.254"}, 1},
		{"lbd_vip_announced", map[string]string{"vip": "203.0.113.10", "reason": ""}, 1},
		{"lbd_vip_announced", map[string]string{"vip": "203.0.113.11", "reason": status.WithdrawnNoBackend}, 0},
		{"lbd_node_draining", nil, 1},
		{"lbd_bird_restarts_total", nil, 2},
	} {
		if v := value(t, mfs, c.name, c.labels); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	if _, ok := mfs["lbd_bfd_session_up"]; ok && len(mfs["lbd_bfd_session_up"].GetMetric()) != 1 {
		t.Errorf("lbd_bfd_session_up only for neighbors with BFD: %v", mfs["lbd_bfd_session_up"])
	}
	problems, err := testutil.CollectAndLint(NewCollector(func() status.Snapshot { return snap }))
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}
