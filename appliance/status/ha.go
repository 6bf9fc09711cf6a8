package status

import (
	"fmt"
	"time"
)

// HA is this node's part of a high-availability pair ([ha]); absent from
// the snapshot on a single appliance.
type HA struct {
	Mode      string `json:"mode"` // "vrrp"
	Interface string `json:"interface"`
	RouterID  int    `json:"router_id"`
	Priority  int    `json:"priority"`
	Preempt   bool   `json:"preempt"`
	Peer      string `json:"peer"`
	// Role is keepalived's: MASTER, BACKUP, FAULT, STOP or UNKNOWN (not
	// heard yet). Only the master holds the VIPs and lan_address.
	Role        string    `json:"role"`
	RoleSince   time.Time `json:"role_since,omitzero"`
	Transitions uint64    `json:"transitions"`
	// LastTransition says from what to what and why, such as "BACKUP ->
	// MASTER: peer silent".
	LastTransition string `json:"last_transition,omitempty"`
	// Serving is false while this node cannot serve (it then holds
	// keepalived in FAULT so the peer takes over); NotServing says why.
	Serving    bool   `json:"serving"`
	NotServing string `json:"not_serving,omitempty"`
	// Released is set while `lbd ha release` holds this node out.
	Released bool `json:"released,omitempty"`
	// PeerAdvert is the newest VRRP advert heard from the peer (only a
	// master advertises; priority 0 is a master giving up).
	PeerAdvert *PeerAdvert `json:"peer_advert,omitempty"`
	Keepalived Process     `json:"keepalived"`
	Conntrackd Process     `json:"conntrackd"`
	// FlowSync is conntrackd's view (`conntrackd -s`).
	FlowSync FlowSync `json:"flow_sync"`
	// LastCommand is the last conntrackd role command sequence and its
	// result (commit on MASTER, resync request on BACKUP).
	LastCommand string `json:"last_command,omitempty"`
}

// PeerAdvert is one VRRP advertisement from the peer.
type PeerAdvert struct {
	From     string    `json:"from"`
	Priority int       `json:"priority"`
	At       time.Time `json:"at"`
}

// Process is a child lbd supervises.
type Process struct {
	PID      int    `json:"pid"`
	Restarts int    `json:"restarts"`
	LastExit string `json:"last_exit,omitempty"`
}

// FlowSync are conntrackd's counters: flows in its internal cache (this
// node's kernel) and external cache (the peer's, committed on takeover),
// and the sync link's traffic.
type FlowSync struct {
	Internal     uint64 `json:"internal_flows"`
	External     uint64 `json:"external_flows"`
	MsgSent      uint64 `json:"packets_sent"`
	MsgRecv      uint64 `json:"packets_received"`
	BytesSent    uint64 `json:"bytes_sent"`
	BytesRecv    uint64 `json:"bytes_received"`
	SendErrors   uint64 `json:"send_errors"`
	RecvErrors   uint64 `json:"receive_errors"`
	LostMessages uint64 `json:"lost_messages"`
	Error        string `json:"error,omitempty"`
}

// Line is the pair in one line for `lbd status` and the console: role,
// since when, the peer's last advert, the last transition and the flows
// conntrackd holds.
func (h *HA) Line(now time.Time) string {
	s := fmt.Sprintf("pair: %s", h.Role)
	if !h.RoleSince.IsZero() {
		s += fmt.Sprintf(" for %s", now.Sub(h.RoleSince).Round(time.Second))
	}
	s += fmt.Sprintf(" (priority %d, router id %d on %s)", h.Priority, h.RouterID, h.Interface)
	if a := h.PeerAdvert; a != nil {
		s += fmt.Sprintf("; peer %s advertised priority %d %s ago", a.From, a.Priority, now.Sub(a.At).Round(10*time.Millisecond))
	} else if h.Peer != "" {
		s += fmt.Sprintf("; no advert heard from peer %s", h.Peer)
	}
	if h.LastTransition != "" {
		s += fmt.Sprintf("; %d transitions, last %s", h.Transitions, h.LastTransition)
	}
	s += fmt.Sprintf("; flows synced %d here / %d from peer", h.FlowSync.Internal, h.FlowSync.External)
	switch {
	case h.Released:
		s += "; RELEASED (lbd ha resume)"
	case !h.Serving && h.NotServing != "":
		s += "; CANNOT SERVE: " + h.NotServing
	}
	return s
}
