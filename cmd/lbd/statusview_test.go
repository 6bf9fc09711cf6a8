package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"lbd/appliance/status"
)

func TestStatusTableStatsRateAndIPv6(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	snap := func(at time.Time, pkts, bytes, denied uint64) status.Snapshot {
		return status.Snapshot{Version: "v", Hostname: "lb-1", Now: at,
			Config: status.Config{Path: "/config/lb.toml", LoadedAt: now},
			Services: []status.Service{{Name: "dns6", VIP: "2001:db8:ff::53", Port: 53, Protocol: "udp", Scheduler: "mh",
				Packets: pkts, Bytes: bytes, Refused: status.Refusals{Denied: denied},
				Backends: []status.Backend{{Address: "[2001:db8:2::11]:53", Weight: 2, State: "up", Slots: 97, ActiveConnections: 4, LastCheck: "reply"},
					{Address: "[2001:db8:2::12]:53", Weight: 1, State: "drain", Drain: &status.Drain{Since: now}}}}}}
	}
	var b bytes.Buffer
	prev := snap(now, 100, 6400, 1)
	printTable(&b, snap(now.Add(2*time.Second), 300, 19200, 5), true, &prev)
	out := b.String()
	t.Log("\n" + out)
	for _, want := range []string{
		"Prot VIP:Port Scheduler Flags [Service]  NewFlows FirstBytes Refused  Flows/s Bytes/s Refused/s\n",
		"UDP  [2001:db8:ff::53]:53 mh nat [dns6]  300 19200 5  100.0 6400 2.0\n",
		"     refused: no_backend 0, max_connections 0, rate 0, per_client_rate 0, per_client_connections 0, denied 5, throttle 0\n",
		"  -> [2001:db8:2::11]:53  UP              2     97           4  reply\n",
		"  -> [2001:db8:2::12]:53  DRAIN           1      0           0  runtime-drain\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q", want)
		}
	}
}
