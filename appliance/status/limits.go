package status

import "strconv"

// Limits are a service's configured protection, as the config file says
// them (rates in the file's own notation, "500/s"), so the status views can
// show what a refusal counter is counting against. Zero values mean off.
// The runtime throttle is not here: it is Service.Throttle, because it
// lives outside the file and changes without a reload.
type Limits struct {
	MaxConnections       int      `json:"max_connections,omitempty"`
	NewConnectionRate    string   `json:"new_connection_rate,omitempty"`
	Burst                int      `json:"burst,omitempty"`
	PerClientRate        string   `json:"per_client_rate,omitempty"`
	PerClientConnections int      `json:"per_client_connections,omitempty"`
	Allow                []string `json:"allow,omitempty"`
	Deny                 []string `json:"deny,omitempty"`
}

// Backend.MaxConnections is the per-backend max_connections of the config
// (0 = off), shown next to the backend's active connections.

// Any reports whether any limit is set.
func (l Limits) Any() bool {
	return l.MaxConnections > 0 || l.NewConnectionRate != "" || l.PerClientRate != "" ||
		l.PerClientConnections > 0 || len(l.Allow) > 0 || len(l.Deny) > 0
}

// Phrases words the limits the way the config file says them ("new 500/s
// burst 50", "max 100 conns", "per client 20/s", ...), one phrase each, for
// the console and the page. nets words an allow or deny list: the page
// lists the networks, the 80-column console counts them.
func (l Limits) Phrases(nets func([]string) string) []string {
	var out []string
	if l.NewConnectionRate != "" {
		r := "new " + l.NewConnectionRate
		if l.Burst > 0 {
			r += " burst " + strconv.Itoa(l.Burst)
		}
		out = append(out, r)
	}
	if l.MaxConnections > 0 {
		out = append(out, "max "+strconv.Itoa(l.MaxConnections)+" conns")
	}
	if l.PerClientRate != "" {
		out = append(out, "per client "+l.PerClientRate)
	}
	if l.PerClientConnections > 0 {
		out = append(out, "per client "+strconv.Itoa(l.PerClientConnections)+" conns")
	}
	if len(l.Allow) > 0 {
		out = append(out, "allow "+nets(l.Allow))
	}
	if len(l.Deny) > 0 {
		out = append(out, "deny "+nets(l.Deny))
	}
	return out
}
