// Package status holds the live-state snapshot that lbd reports: the JSON of
// `lbd status --json`, /status.json, the console page and /metrics all render
// this one type, so they can never disagree.
package status

import "time"

// Backend states as reported to users.
const (
	StateUp        = "up"
	StateDown      = "down"
	StateDrain     = "drain"
	StateUnchecked = "unchecked"
)

// Snapshot is the whole live state at one instant.
type Snapshot struct {
	Hostname  string      `json:"hostname"`
	Version   string      `json:"version"`
	StartedAt time.Time   `json:"started_at"`
	Now       time.Time   `json:"now"`
	Config    Config      `json:"config"`
	Services  []Service   `json:"services"`
	NICs      []NIC       `json:"interfaces,omitempty"`
	Conntrack Conntrack   `json:"conntrack"`
	Reloads   ReloadStats `json:"reloads"`
	Sync      Sync        `json:"sync"`
	// HA is set on a node of a pair (ha.go).
	HA       *HA      `json:"ha,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	BGP      *BGP     `json:"bgp,omitempty"` // [bgp] only (bgp.go)
}

// Config describes the configuration currently serving.
type Config struct {
	Path      string    `json:"path"`
	LoadedAt  time.Time `json:"loaded_at"`
	LastError string    `json:"last_error"`
	// LastErrors lists every error of the last refused load, one
	// "FILE:LINE:COL: message" each; LastError is their first line.
	LastErrors []string `json:"last_errors,omitempty"`
	// Source is where the serving config came from when it is not Path
	// (for example the last good copy kept on the state partition).
	Source string `json:"source,omitempty"`
}

// ReloadStats counts reload attempts by result.
type ReloadStats struct {
	OK     int       `json:"ok"`
	Failed int       `json:"failed"`
	LastAt time.Time `json:"last_at,omitzero"`
}

// Service is one VIP service.
type Service struct {
	Name      string    `json:"name"`
	VIP       string    `json:"vip"`
	Port      int       `json:"port"`
	Protocol  string    `json:"protocol"`
	Scheduler string    `json:"scheduler"`
	SNAT      bool      `json:"snat"`
	Slots     int       `json:"slots"`
	Packets   uint64    `json:"packets"`
	Bytes     uint64    `json:"bytes"`
	Throttle  string    `json:"throttle,omitempty"`
	Limits    Limits    `json:"limits,omitzero"`
	Refused   Refusals  `json:"refused"`
	Backends  []Backend `json:"backends"`
	// Traffic sums the backends' (see traffic.go).
	Traffic Traffic `json:"traffic"`
}

// Refusals counts new connections turned away, by reason.
type Refusals struct {
	NoBackend       uint64 `json:"no_backend"`
	MaxConnections  uint64 `json:"max_connections"`
	Rate            uint64 `json:"rate"`
	PerClientRate   uint64 `json:"per_client_rate"`
	PerClientConns  uint64 `json:"per_client_connections"`
	Denied          uint64 `json:"denied"`
	ThrottleRefused uint64 `json:"throttle"`
}

// Backend is one real server of a service.
type Backend struct {
	Address           string    `json:"address"`
	Weight            int       `json:"weight"`
	Backup            bool      `json:"backup"`
	State             string    `json:"state"`
	ActiveConnections int       `json:"active_connections"`
	MaxConnections    int       `json:"max_connections,omitempty"`
	Slots             int       `json:"slots"`
	LastCheck         string    `json:"last_check,omitempty"`
	LastCheckLatency  float64   `json:"last_check_latency_seconds"`
	LastTransition    time.Time `json:"last_transition,omitzero"`
	ChecksPassed      uint64    `json:"checks_passed"`
	ChecksFailed      uint64    `json:"checks_failed"`
	// Drain is set while `lbd drain` holds the backend out of new flows.
	Drain *Drain `json:"drain,omitempty"`
	// Traffic is what the backend's flows carried (see traffic.go).
	Traffic Traffic `json:"traffic"`
}

// Drain is a runtime drain (`lbd drain`), kept across reloads that keep
// the backend, lifted by `lbd undrain`.
type Drain struct {
	Since time.Time `json:"since"`
	// Deadline is when the flows left are flushed; zero = never.
	Deadline time.Time `json:"deadline,omitzero"`
	// Done is when the backend had no flows left or its flows were
	// flushed at the deadline; Flushed counts those.
	Done    time.Time `json:"done,omitzero"`
	Flushed uint      `json:"flushed,omitempty"`
}

// NIC is one network interface managed by lbd.
type NIC struct {
	Name        string    `json:"name"`
	Device      string    `json:"device,omitempty"`
	MAC         string    `json:"mac,omitempty"`
	LinkUp      bool      `json:"link_up"`
	Addresses   []string  `json:"addresses"`
	DHCP        bool      `json:"dhcp"`
	LeaseExpiry time.Time `json:"lease_expiry,omitzero"`
}

// Conntrack reports NAT table usage.
type Conntrack struct {
	Count int `json:"count"`
	Max   int `json:"max"`
}
