package health

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// udpResponder answers each datagram with reply(datagram); a nil reply
// stays silent. It stops when the test ends.
func udpResponder(t *testing.T, network, laddr string, reply func([]byte) []byte) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket(network, laddr)
	if err != nil {
		t.Fatalf("udp responder on %s: %v", laddr, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			if out := reply(buf[:n]); out != nil {
				pc.WriteTo(out, from)
			}
		}
	}()
	return addrOf(t, pc.LocalAddr())
}

// closedUDPPort returns a loopback port nothing listens on: datagrams to it
// draw an ICMP port unreachable.
func closedUDPPort(t *testing.T) netip.AddrPort {
	t.Helper()
	return closedUDPPortOn(t, "127.0.0.1:0")
}

func closedUDPPortOn(t *testing.T, laddr string) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", laddr)
	if err != nil {
		t.Fatal(err)
	}
	ap := addrOf(t, pc.LocalAddr())
	pc.Close()
	return ap
}

func TestUDPCheck(t *testing.T) {
	echo := udpResponder(t, "udp", "127.0.0.1:0", func(b []byte) []byte { return bytes.Clone(b) })
	echo6 := udpResponder(t, "udp6", "[::1]:0", func(b []byte) []byte { return bytes.Clone(b) })
	// Answers, but never with what an expect-check wants.
	chatty := udpResponder(t, "udp", "127.0.0.1:0", func([]byte) []byte { return []byte("noise") })
	silent := udpResponder(t, "udp", "127.0.0.1:0", func([]byte) []byte { return nil })

	tests := []struct {
		name       string
		addr       netip.AddrPort
		spec       Spec
		wantOK     bool
		wantReason string
	}{
		{"echo answers", echo, Spec{Type: TypeUDP, Payload: []byte("ping")}, true, "reply 4 bytes"},
		{"echo over ipv6", echo6, Spec{Type: TypeUDP, Payload: []byte("ping")}, true, "reply 4 bytes"},
		{"empty payload still gets a reply", echo, Spec{Type: TypeUDP}, true, "reply 0 bytes"},
		{"expect matches", echo, Spec{Type: TypeUDP, Payload: []byte("PONG?"), Expect: "PONG"}, true, "reply 5 bytes"},
		{"expect does not match", chatty, Spec{Type: TypeUDP, Payload: []byte("ping"), Expect: "pong", Timeout: 200 * time.Millisecond},
			false, `reply does not contain "pong"`},
		{"silence is a timeout", silent, Spec{Type: TypeUDP, Payload: []byte("ping"), Timeout: 200 * time.Millisecond},
			false, "timeout after 200ms"},
		// ICMP port unreachable: down at once, not after the (long) timeout.
		{"closed port refused", closedUDPPort(t), Spec{Type: TypeUDP, Payload: []byte("ping"), Timeout: time.Hour},
			false, "connection refused"},
		{"closed ipv6 port refused", closedUDPPortOn(t, "[::1]:0"), Spec{Type: TypeUDP, Payload: []byte("ping"), Timeout: time.Hour},
			false, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := checkOnce(t, tt.addr, tt.spec)
			if res.OK != tt.wantOK || res.Reason != tt.wantReason {
				t.Fatalf("check = %+v, want OK=%v reason %q", res, tt.wantOK, tt.wantReason)
			}
		})
	}
}

// TestUDPCheckKeepsListeningForExpect: a first reply without the expected
// text does not end the check; a later matching one passes it.
func TestUDPCheckKeepsListeningForExpect(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 512)
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo([]byte("noise"), from)
		pc.WriteTo([]byte("status: pong"), from)
	}()
	res := checkOnce(t, addrOf(t, pc.LocalAddr()), Spec{Type: TypeUDP, Payload: []byte("ping"), Expect: "pong", Timeout: time.Hour})
	if !res.OK {
		t.Fatalf("check = %+v, want OK from the second reply", res)
	}
}
