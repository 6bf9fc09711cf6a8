package lb

import (
	"net/netip"
	"testing"
)

func TestEndpointAndBackendDecodeReverseTheEncoding(t *testing.T) {
	for _, c := range []struct {
		vip   string
		proto uint8
		port  uint16
		be    string
		want  string
	}{
		{"198.51.100.10", protoTCP, 80, "192.0.2.11:8080", "198.51.100.10/tcp/80"},
		{"2001:db8::10", protoUDP, 53, "[2001:db8:2::11]:5353", "2001:db8::10/udp/53"},
	} {
		vip := netip.MustParseAddr(c.vip)
		n := 4
		if vip.Is6() {
			n = 16
		}
		s := &Service{VIP: vip, Proto: c.proto, Port: c.port}
		ep, ok := decodeEndpoint(slotKey(s, 7), n)
		if !ok || ep != c.want {
			t.Errorf("decodeEndpoint = %q %v, want %q", ep, ok, c.want)
		}
		be := netip.MustParseAddrPort(c.be)
		got, ok := decodeBackend(backendValue(be), n)
		if !ok || got != be {
			t.Errorf("decodeBackend = %v %v, want %v", got, ok, be)
		}
	}
}
