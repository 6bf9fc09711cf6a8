package status

import "time"

// BGP is the fleet side of the status ([bgp] set): the BIRD child, each
// session, and which VIPs are announced and why not.
type BGP struct {
	ASN      int64     `json:"asn"`
	RouterID string    `json:"router_id"`
	Bird     BirdState `json:"bird"`
	// Draining: `lbd drain-node` (or SIGTERM) withdrew every VIP.
	Draining      bool          `json:"draining"`
	DrainingSince time.Time     `json:"draining_since,omitzero"`
	Neighbors     []BGPNeighbor `json:"neighbors"`
	VIPs          []VIPAnnounce `json:"vips"`
}

// BirdState is the supervised BIRD process.
type BirdState struct {
	Running  bool   `json:"running"`
	PID      int    `json:"pid,omitempty"`
	Restarts int    `json:"restarts"`
	LastExit string `json:"last_exit,omitempty"`
	Error    string `json:"error,omitempty"` // BIRD's control socket did not answer
}

// BGPNeighbor is one session.
type BGPNeighbor struct {
	Address   string `json:"address"`
	ASN       int64  `json:"asn"`
	State     string `json:"state"` // BGP state: Established, Active, Connect, Idle, ...
	Up        bool   `json:"up"`
	Since     string `json:"since,omitempty"`
	BFD       string `json:"bfd,omitempty"` // Up, Down, Init, AdminDown; "" = BFD off
	Exported  int    `json:"exported"`      // routes announced on the session
	LastError string `json:"last_error,omitempty"`
}

// VIPAnnounce says whether a VIP is announced and, when not, why.
type VIPAnnounce struct {
	VIP       string   `json:"vip"`
	Services  []string `json:"services"`
	Announced bool     `json:"announced"`
	Reason    string   `json:"reason,omitempty"`
}

// Reasons a VIP is not announced.
const (
	WithdrawnNoBackend = "no usable backend"
	WithdrawnDelay     = "announce_delay after start"
	WithdrawnNotReady  = "lbd not ready"
	WithdrawnDraining  = "node draining"
	WithdrawnStopping  = "lbd stopping"
	WithdrawnOff       = "announce = false"
)
