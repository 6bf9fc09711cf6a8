package netiftest

import (
	"net"
	"testing"
	"time"

	"lbd/appliance/netif"

	"golang.org/x/sys/unix"
)

// Capture is an AF_PACKET socket listening to every frame on one interface
// of a test namespace (a tcpdump without tcpdump).
type Capture struct {
	fd int
}

// NewCapture opens a capture on ifname inside n; it is closed in cleanup.
func NewCapture(t testing.TB, n *Netns, ifname string) *Capture {
	t.Helper()
	ifc, err := n.NL.LinkByName(ifname)
	if err != nil {
		t.Fatalf("capture: link %s: %v", ifname, err)
	}
	proto := int(htons(unix.ETH_P_ALL))
	var fd int
	err = netif.RunInNetns(n.H, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifc.Attrs().Index})
	})
	if err != nil {
		t.Fatalf("capture socket on %s: %v", ifname, err)
	}
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	c := &Capture{fd: fd}
	t.Cleanup(func() { unix.Close(fd) })
	return c
}

// Wait reads frames until match accepts one (true) or the deadline passes
// (false). The deadline only bounds the test; it asserts nothing about speed.
func (c *Capture) Wait(within time.Duration, match func(frame []byte) bool) bool {
	buf := make([]byte, 65536)
	end := time.Now().Add(within)
	for time.Now().Before(end) {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			continue // timeout tick or EINTR
		}
		if match(buf[:n]) {
			return true
		}
	}
	return false
}

// Collect returns the frames that arrive during the given time (and any
// already queued).
func (c *Capture) Collect(during time.Duration) [][]byte {
	buf := make([]byte, 65536)
	end := time.Now().Add(during)
	var out [][]byte
	for time.Now().Before(end) {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err == nil {
			out = append(out, append([]byte(nil), buf[:n]...))
		}
	}
	return out
}

// CountFrames counts the frames match accepts.
func CountFrames(frames [][]byte, match func([]byte) bool) int {
	n := 0
	for _, f := range frames {
		if match(f) {
			n++
		}
	}
	return n
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// MAC parses a MAC address or panics (test constants).
func MAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}
