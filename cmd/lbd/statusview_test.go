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
		"  rates per second over the last 2.0s\n",
		"Prot VIP:Port Scheduler Flags [Service]  NewFlows FirstBytes Refused  Flows/s Bytes/s Refused/s\n",
		"  -> Backend              State      Weight  Slots  ActiveConn   Conns InPkts OutPkts InBytes OutBytes     CPS  InPPS  OutPPS   InBPS   OutBPS  Last check\n",
		"UDP  [2001:db8:ff::53]:53 mh nat [dns6]  300 19200 5  100.0 6400 2.0\n",
		"     refused: no_backend 0, max_connections 0, rate 0, per_client_rate 0, per_client_connections 0, denied 5, throttle 0\n",
		"  -> [2001:db8:2::11]:53  UP              2     97           4       0      0       0       0        0       0      0       0       0        0  reply\n",
		"  -> [2001:db8:2::12]:53  DRAIN           1      0           0       0      0       0       0        0       0      0       0       0        0  runtime-drain\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q", want)
		}
	}
}

// TestStatusTableTraffic: --stats prints each backend's traffic totals and
// the service's sum in the same columns; --rate divides the difference
// between two samples by the time between them.
func TestStatusTableTraffic(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	snap := func(at time.Time, a, b status.Traffic) status.Snapshot {
		return status.Snapshot{Version: "v", Hostname: "lb-1", Now: at,
			Config: status.Config{Path: "/config/lb.toml", LoadedAt: now},
			Services: []status.Service{{Name: "web", VIP: "198.51.100.1", Port: 80, Protocol: "tcp", Scheduler: "rr",
				Traffic: a.Add(b),
				Backends: []status.Backend{{Address: "192.0.2.11:80", Weight: 1, State: "up", Slots: 2, Traffic: a},
					{Address: "192.0.2.12:80", Weight: 1, State: "up", Slots: 2, Traffic: b}}}}}
	}
	a0 := status.Traffic{Connections: 10, PacketsIn: 100, PacketsOut: 90, BytesIn: 10000, BytesOut: 2_000_000}
	a1 := status.Traffic{Connections: 30, PacketsIn: 300, PacketsOut: 290, BytesIn: 30000, BytesOut: 4_000_000}
	b0 := status.Traffic{Connections: 1, PacketsIn: 5, PacketsOut: 5, BytesIn: 500, BytesOut: 500}

	var buf bytes.Buffer
	printTable(&buf, snap(now, a1, b0), true, nil)
	out := buf.String()
	t.Log("\n" + out)
	for _, want := range []string{
		"  -> Backend        State      Weight  Slots  ActiveConn   Conns InPkts OutPkts InBytes OutBytes  Last check\n",
		"     all backends                                             31    305     295   30500     4.0M\n",
		"  -> 192.0.2.11:80  UP              1      2           0      30    300     290   30000     4.0M\n",
		"  -> 192.0.2.12:80  UP              1      2           0       1      5       5     500      500\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--stats table lacks %q", want)
		}
	}

	buf.Reset()
	prev := snap(now, a0, b0)
	printTable(&buf, snap(now.Add(10*time.Second), a1, b0), false, &prev)
	out = buf.String()
	t.Log("\n" + out)
	for _, want := range []string{
		"  -> Backend        State      Weight  Slots  ActiveConn     CPS  InPPS  OutPPS   InBPS   OutBPS  Last check\n",
		"     all backends                                              2     20      20    2000     200K\n",
		"  -> 192.0.2.11:80  UP              1      2           0       2     20      20    2000     200K\n",
		"  -> 192.0.2.12:80  UP              1      2           0       0      0       0       0        0\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--rate table lacks %q", want)
		}
	}
	for v, want := range map[float64]string{0: "0", 0.5: "0.5", 12: "12", 99999: "99999", 123456: "123K", 4_000_000: "4.0M", 2.5e9: "2.5G"} {
		if got := human(v); got != want {
			t.Errorf("human(%v) = %q, want %q", v, got, want)
		}
	}
}
