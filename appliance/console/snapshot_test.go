package console

import (
	"math"
	"time"

	"lbd/appliance/status"
)

// fixedSnapshot is the state the golden frame shows: two NICs (one on
// DHCP, one down), three services with every backend state, refusals, a
// throttle, a failed reload with file:line:col errors and a warning.
func fixedSnapshot() status.Snapshot {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	return status.Snapshot{
		Hostname:  "lb-1",
		Version:   "v0.4.0",
		StartedAt: now.Add(-(76*time.Hour + 12*time.Minute)),
		Now:       now,
		Config: status.Config{
			Path:      "/config/lb.toml",
			LoadedAt:  now.Add(-2 * time.Hour),
			LastError: "/config/lb.toml:14:8: service.port: 70000 out of range, want 1-65535",
			LastErrors: []string{
				"/config/lb.toml:14:8: service.port: 70000 out of range, want 1-65535",
				"/config/lb.toml:22:13: service.backend.weight: -1 out of range, want 0-256",
			},
		},
		NICs: []status.NIC{
			{Name: "wan", Device: "eth0", MAC: "52:54:00:00:00:01", LinkUp: true, Addresses: []string{"198.51.100.2/24"}, DHCP: true, LeaseExpiry: now.Add(3*time.Hour + 5*time.Minute)},
			{Name: "lan", Device: "eth1", LinkUp: false, Addresses: []string{"192.0.2.1/24", "2001:db8:2::1/64"}},
		},
		Conntrack: status.Conntrack{Count: 240000, Max: 262144},
		Reloads:   status.ReloadStats{OK: 3, Failed: 1, LastAt: now.Add(-time.Minute)},
		Warnings:  []string{"conntrack table 92% full"},
		Services: []status.Service{
			{
				Name: "web", VIP: "198.51.100.10", Port: 80, Protocol: "tcp", Scheduler: "rr", SNAT: true,
				Packets: 1234567, Bytes: 987654321,
				Refused: status.Refusals{NoBackend: 3, Rate: 1200},
				Backends: []status.Backend{
					{Address: "192.0.2.11:8080", Weight: 2, State: status.StateUp, ActiveConnections: 31, LastCheck: "ok", LastCheckLatency: 0.00123},
					{Address: "192.0.2.12:8080", Weight: 1, State: status.StateDown, LastCheck: "status 503", LastCheckLatency: 0.0042},
					{Address: "192.0.2.13:8080", Weight: 0, State: status.StateDrain, ActiveConnections: 2, LastCheck: "ok", LastCheckLatency: 0.0009,
						Drain: &status.Drain{Since: now.Add(-3 * time.Minute), Deadline: now.Add(2 * time.Minute)}},
					{Address: "192.0.2.14:8080", Weight: 1, Backup: true, State: status.StateUp, LastCheck: "ok", LastCheckLatency: 0.002},
				},
			},
			{
				Name: "dns", VIP: "2001:db8::53", Port: 53, Protocol: "udp", Scheduler: "sh", SNAT: false,
				Packets: 999, Bytes: 64000, Throttle: "100/s",
				Backends: []status.Backend{
					{Address: "[2001:db8:2::11]:53", Weight: 1, State: status.StateUnchecked},
					{Address: "[2001:db8:2::12]:53", Weight: 1, State: status.StateDown, LastCheck: "timeout after 1s", LastCheckLatency: 1},
				},
			},
			{
				Name: "api", VIP: "198.51.100.11", Port: 443, Protocol: "tcp", Scheduler: "mh", SNAT: true,
				Backends: []status.Backend{
					{Address: "192.0.2.21:443", Weight: 1, State: status.StateUp, ActiveConnections: 7, LastCheck: "ok", LastCheckLatency: 0.0031},
					{Address: "192.0.2.22:443", Weight: 1, State: status.StateUp, ActiveConnections: 5, LastCheck: "ok", LastCheckLatency: 0.0028},
					{Address: "192.0.2.23:443", Weight: 1, State: status.StateUp, ActiveConnections: 6, LastCheck: "ok", LastCheckLatency: 0.0030},
				},
			},
		},
	}
}

// movingSnapshot is a two-service appliance at second n of a run, for the
// graphs: web's new connections swell from about 5/s to 35/s and back,
// its active connections follow, 192.0.2.12 is down from second 100 to
// 140; dns is IPv6 with one backend without a health check. The kernel has
// been out of sync since second 200.
func movingSnapshot(n int) status.Snapshot {
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	now := start.Add(time.Duration(n) * time.Second)
	var flows uint64
	for i := 1; i <= n; i++ {
		flows += uint64(20 + 15*math.Sin(float64(i)/30))
	}
	act := 40 + int(30*math.Sin(float64(n)/30))
	b2, check2 := status.StateUp, "ok"
	if n >= 100 && n < 140 {
		b2, check2 = status.StateDown, "connection refused"
	}
	s := status.Snapshot{
		Hostname: "lb-1", Version: "v0.5.0", StartedAt: start.Add(-26 * time.Hour), Now: now,
		Config:    status.Config{Path: "/config/lb.toml", LoadedAt: start.Add(-time.Hour)},
		Conntrack: status.Conntrack{Count: 1800, Max: 262144},
		Reloads:   status.ReloadStats{OK: 2},
		Sync:      status.Sync{InSync: true, Syncs: 40},
		Services: []status.Service{
			{
				Name: "web", VIP: "198.51.100.10", Port: 80, Protocol: "tcp", Scheduler: "wlc", SNAT: true,
				Packets: flows, Bytes: flows * 60, Throttle: "200/s",
				Traffic: status.Traffic{Connections: flows, BytesIn: flows * 2000, BytesOut: flows * 50000},
				Limits:  status.Limits{NewConnectionRate: "500/s", Burst: 100, PerClientRate: "20/s", Deny: []string{"203.0.113.0/24"}},
				Refused: status.Refusals{Rate: 1200, PerClientRate: 40, ThrottleRefused: uint64(n)},
				Backends: []status.Backend{
					{Address: "192.0.2.11:8080", Weight: 2, State: status.StateUp, ActiveConnections: act, MaxConnections: 500, LastCheck: "ok", LastCheckLatency: 0.0012},
					{Address: "192.0.2.12:8080", Weight: 1, State: b2, ActiveConnections: act / 4, LastCheck: check2, LastCheckLatency: 0.0021},
					{Address: "192.0.2.13:8080", Weight: 1, State: status.StateUp, ActiveConnections: act / 3, LastCheck: "ok", LastCheckLatency: 0.0009},
				},
			},
			{
				Name: "dns", VIP: "2001:db8:ff::53", Port: 53, Protocol: "udp", Scheduler: "sh",
				Packets: uint64(12 * n), Bytes: uint64(800 * n),
				Traffic:  status.Traffic{Connections: uint64(12 * n), BytesIn: uint64(800 * n), BytesOut: uint64(2400 * n)},
				Backends: []status.Backend{{Address: "[2001:db8:2::11]:53", Weight: 1, State: status.StateUnchecked, ActiveConnections: 30 + n%7}},
			},
		},
	}
	if n >= 200 {
		s.Sync = status.Sync{InSync: false, OutOfSyncSince: start.Add(200 * time.Second), Failures: 6, LastError: "netlink: no buffer space", Syncs: 40}
		s.Warnings = []string{"kernel out of sync since 2026-11-26T10:03:20Z (6 failed applies, retrying): netlink: no buffer space"}
	}
	return s
}
