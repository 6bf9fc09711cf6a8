package bgp

import (
	"net/netip"
	"strconv"
	"strings"
)

// Peer is one BGP session as `show protocols all` reports it.
type Peer struct {
	Name      string // BIRD protocol name (PeerName)
	State     string // BIRD protocol state: up, start, down
	BGPState  string // Established, Active, Connect, Idle, OpenSent, OpenConfirm
	Since     string // BIRD's own time stamp, as printed
	LastError string
	Exported  int // routes announced to the neighbor
}

// Up reports an established session.
func (p Peer) Up() bool { return p.BGPState == "Established" }

// ParsePeers reads the BGP protocols out of `show protocols all` output
// (codes stripped, as Ctl.Run returns it).
func ParsePeers(text string) map[string]Peer {
	out := map[string]Peer{}
	var cur *Peer
	flush := func() {
		if cur != nil {
			out[cur.Name] = *cur
		}
		cur = nil
	}
	for _, line := range strings.Split(text, "\n") {
		if line == "" {
			continue
		}
		if line[0] != ' ' { // a protocol's summary row (or the header)
			flush()
			f := strings.Fields(line)
			if len(f) >= 5 && f[1] == "BGP" {
				cur = &Peer{Name: f[0], State: f[3], Since: f[4]}
				if len(f) >= 6 {
					cur.BGPState = f[5]
				}
			}
			continue
		}
		if cur == nil {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "BGP state":
			cur.BGPState = v
		case "Last error":
			cur.LastError = v
		case "Routes":
			// "1 imported, 2 exported, 0 preferred"
			for _, part := range strings.Split(v, ",") {
				f := strings.Fields(part)
				if len(f) == 2 && f[1] == "exported" {
					cur.Exported, _ = strconv.Atoi(f[0])
				}
			}
		}
	}
	flush()
	return out
}

// BFDSession is one row of `show bfd sessions`.
type BFDSession struct {
	Addr      netip.Addr
	Interface string
	State     string // Up, Down, Init, AdminDown
}

// ParseBFD reads `show bfd sessions`.
func ParseBFD(text string) map[netip.Addr]BFDSession {
	out := map[netip.Addr]BFDSession{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		out[a.Unmap()] = BFDSession{Addr: a.Unmap(), Interface: f[1], State: f[2]}
	}
	return out
}
