package status

// ConntrackWarnPercent is the table fill level from which lbd warns: past
// it new flows soon get dropped ("nf_conntrack: table full"). It lives with
// the status document so that the daemon's warning, the console and the
// HTTP page judge the same numbers the same way.
const ConntrackWarnPercent = 90

// High reports whether Count has reached ConntrackWarnPercent of Max. A
// table of unknown size (Max <= 0) is never high: there is nothing to
// compare against, and a false alarm would teach people to ignore it.
func (c Conntrack) High() bool {
	return c.Max > 0 && c.Count*100 >= c.Max*ConntrackWarnPercent
}

// Percent is Count as a percentage of Max, or 0 when Max is unknown.
func (c Conntrack) Percent() float64 {
	if c.Max <= 0 {
		return 0
	}
	return float64(c.Count) * 100 / float64(c.Max)
}
