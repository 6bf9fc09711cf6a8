package httpstatus

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"lbd/appliance/status"
)

func TestMetricsHA(t *testing.T) {
	snap := fixedSnapshot()
	if n, _ := testutil.GatherAndCount(mustRegistry(t, snap), "lbd_ha_role"); n != 0 {
		t.Fatalf("a single appliance exports %d lbd_ha_role series; want none", n)
	}
	snap.HA = &status.HA{Mode: "vrrp", Role: "BACKUP", Transitions: 3, Serving: true,
		PeerAdvert: &status.PeerAdvert{From: "198.51.100.5", Priority: 150, At: time.Unix(1700000000, 0)},
		FlowSync:   status.FlowSync{Internal: 2, External: 12, MsgSent: 5, MsgRecv: 40},
		Keepalived: status.Process{PID: 10, Restarts: 1}}
	want := `
# HELP lbd_ha_role keepalived's role for this node, one-hot over MASTER, BACKUP, FAULT, STOP and UNKNOWN; only the master holds the VIPs.
# TYPE lbd_ha_role gauge
lbd_ha_role{role="BACKUP"} 1
lbd_ha_role{role="FAULT"} 0
lbd_ha_role{role="MASTER"} 0
lbd_ha_role{role="STOP"} 0
lbd_ha_role{role="UNKNOWN"} 0
# HELP lbd_ha_transitions_total Role transitions keepalived reported since lbd started.
# TYPE lbd_ha_transitions_total counter
lbd_ha_transitions_total 3
# HELP lbd_ha_sync_flows Flows in conntrackd's caches: internal (this node's kernel) and external (the peer's, committed on takeover).
# TYPE lbd_ha_sync_flows gauge
lbd_ha_sync_flows{cache="external"} 12
lbd_ha_sync_flows{cache="internal"} 2
# HELP lbd_ha_peer_last_advert_timestamp_seconds Unix time of the last VRRP advert heard from the peer (only a master advertises).
# TYPE lbd_ha_peer_last_advert_timestamp_seconds gauge
lbd_ha_peer_last_advert_timestamp_seconds 1.7e+09
`
	if err := testutil.GatherAndCompare(mustRegistry(t, snap), strings.NewReader(want),
		"lbd_ha_role", "lbd_ha_transitions_total", "lbd_ha_sync_flows", "lbd_ha_peer_last_advert_timestamp_seconds"); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.CollectAndLint(NewCollector(func() status.Snapshot { return snap }))
	if err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}
}
