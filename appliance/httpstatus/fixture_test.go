package httpstatus

import (
	"time"

	"lbd/appliance/status"
)

func fixedSnapshot() status.Snapshot {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	return status.Snapshot{
		Hostname: "lb-1", Version: "v0.4.0",
		StartedAt: now.Add(-3 * time.Hour), Now: now,
		Config: status.Config{
			Path: "/config/lb.toml", LoadedAt: now.Add(-time.Hour),
			LastError:  "/config/lb.toml:14:8: service.port: 70000 out of range, want 1-65535",
			LastErrors: []string{"/config/lb.toml:14:8: service.port: 70000 out of range, want 1-65535"},
		},
		NICs: []status.NIC{
			{Name: "wan", Device: "eth0", LinkUp: true, Addresses: []string{"198.51.100.2/24"}, DHCP: true, LeaseExpiry: now.Add(time.Hour)},
			{Name: "lan", Device: "eth1", Addresses: []string{"192.0.2.1/24"}},
		},
		Conntrack: status.Conntrack{Count: 240000, Max: 262144},
		Reloads:   status.ReloadStats{OK: 3, Failed: 1, LastAt: now},
		Sync:      status.Sync{InSync: false, OutOfSyncSince: time.Unix(1700000000, 0), Failures: 4, LastError: "netlink: no buffer space", Syncs: 17},
		Warnings: []string{"conntrack table 92% full",
			"kernel out of sync since 2023-11-14T22:13:20Z (4 failed applies, retrying): netlink: no buffer space"},
		Services: []status.Service{
			{
				Name: "web", VIP: "198.51.100.10", Port: 80, Protocol: "tcp", Scheduler: "rr", SNAT: true,
				Packets: 1234, Bytes: 567890, Refused: status.Refusals{NoBackend: 3, Rate: 12},
				Throttle: "100/s",
				Traffic:  status.Traffic{Connections: 812, PacketsIn: 9100, PacketsOut: 12050, BytesIn: 1048576, BytesOut: 16777216},
				Limits:   status.Limits{NewConnectionRate: "500/s", Burst: 100, MaxConnections: 1000, PerClientRate: "20/s", Deny: []string{"203.0.113.0/24"}},
				Backends: []status.Backend{
					{Address: "192.0.2.11:8080", Weight: 2, State: status.StateUp, ActiveConnections: 31, MaxConnections: 500, LastCheck: "ok", LastCheckLatency: 0.00123, ChecksPassed: 100, ChecksFailed: 2,
						Traffic: status.Traffic{Connections: 812, PacketsIn: 9100, PacketsOut: 12050, BytesIn: 1048576, BytesOut: 16777216}},
					{Address: "192.0.2.12:8080", Weight: 1, State: status.StateDown, LastCheck: "status 503", LastCheckLatency: 0.0042, ChecksPassed: 50, ChecksFailed: 9},
					{Address: "192.0.2.13:8080", Weight: 0, State: status.StateDrain, ActiveConnections: 2,
						Drain: &status.Drain{Since: now.Add(-3 * time.Minute), Deadline: now.Add(2 * time.Minute)}},
				},
			},
			{
				Name: "<script>alert(1)</script>", VIP: "2001:db8::53", Port: 53, Protocol: "udp", Scheduler: "sh",
				Backends: []status.Backend{{Address: "[2001:db8:2::11]:53", Weight: 1, State: status.StateUnchecked}},
			},
		},
	}
}
