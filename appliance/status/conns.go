package status

// Conn is one tracked connection of a service (`lbd conns`, like
// `ipvsadm -Lnc`).
type Conn struct {
	Service  string `json:"service"`
	Protocol string `json:"protocol"`
	State    string `json:"state,omitempty"`
	// ExpiresSeconds is how long until conntrack forgets the flow.
	ExpiresSeconds uint32 `json:"expires_seconds"`
	Client         string `json:"client"`
	VIP            string `json:"vip"`
	Backend        string `json:"backend"`
}
