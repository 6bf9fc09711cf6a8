package status

// Traffic is what a backend's flows carried, from conntrack accounting:
// the flows that ended plus the live ones as they stand. In is the
// client-to-VIP direction, Out the replies towards the client; bytes are
// whole IP packets as the appliance forwarded them. The counters start
// when lbd starts (a restart begins again from the live flows) and never
// go down while it runs.
type Traffic struct {
	// Connections counts flows: every ended flow plus the live ones
	// (in any state, not only established).
	Connections uint64 `json:"connections"`
	PacketsIn   uint64 `json:"packets_in"`
	PacketsOut  uint64 `json:"packets_out"`
	BytesIn     uint64 `json:"bytes_in"`
	BytesOut    uint64 `json:"bytes_out"`
}

// Add returns t + o (a service's traffic is the sum of its backends').
func (t Traffic) Add(o Traffic) Traffic {
	return Traffic{Connections: t.Connections + o.Connections, PacketsIn: t.PacketsIn + o.PacketsIn,
		PacketsOut: t.PacketsOut + o.PacketsOut, BytesIn: t.BytesIn + o.BytesIn, BytesOut: t.BytesOut + o.BytesOut}
}
