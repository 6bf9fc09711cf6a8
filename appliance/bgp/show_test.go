package bgp

import (
	"net/netip"
	"testing"
)

// Text as Ctl.Run returns it (codes stripped) from BIRD 2.0.12.
const protocolsAll = `Name       Proto      Table      State  Since         Info
device1    Device     ---        up     13:02:33.869
peer_203_0_113_254 BGP        ---        up     13:02:35.101  Established
  BGP state:          Established
    Neighbor address: 203.0.113.254
    Neighbor AS:      65000
  Channel ipv4
    State:          UP
    Table:          lbd_vips4
    Routes:         0 imported, 2 exported, 0 preferred
peer_2001_db8_4__fe BGP        ---        start  13:02:33.868  Active        Socket: Connection refused
  BGP state:          Active
    Neighbor address: 2001:db8:4::fe
    Last error:       Socket: Connection refused
  Channel ipv6
    State:          DOWN
`

const bfdSessions = `lbd_bfd:
IP address                Interface  State      Since         Interval  Timeout
203.0.113.254             eth0       Up         13:02:35.120    0.100    0.300
2001:db8:4::fe            eth0       Down       13:02:35.120    1.000    0.000
`

func TestParsePeers(t *testing.T) {
	ps := ParsePeers(protocolsAll)
	if len(ps) != 2 {
		t.Fatalf("peers: %+v", ps)
	}
	up := ps[PeerName(netip.MustParseAddr("203.0.113.254"))]
	if !up.Up() || up.Exported != 2 || up.State != "up" {
		t.Errorf("established peer: %+v", up)
	}
	down := ps[PeerName(netip.MustParseAddr("2001:db8:4::fe"))]
	if down.Up() || down.BGPState != "Active" || down.LastError != "Socket: Connection refused" {
		t.Errorf("down peer: %+v", down)
	}
}

func TestParseBFD(t *testing.T) {
	s := ParseBFD(bfdSessions)
	if s[netip.MustParseAddr("203.0.113.254")].State != "Up" || s[netip.MustParseAddr("2001:db8:4::fe")].State != "Down" || len(s) != 2 {
		t.Errorf("bfd: %+v", s)
	}
}
