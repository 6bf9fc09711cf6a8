package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// udpChecker sends one datagram and waits for any reply.
type udpChecker struct {
	addr    netip.AddrPort
	payload []byte
	expect  string
}

func (c udpChecker) check(ctx context.Context) (string, error) {
	var d net.Dialer
	// A connected socket: the kernel then reports an ICMP port unreachable
	// for this peer as ECONNREFUSED on the next read, so a closed port is
	// down at once instead of after the timeout.
	conn, err := d.DialContext(ctx, "udp", c.addr.String())
	if err != nil {
		return "", fmt.Errorf("udp check %s: %w", c.addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return "", fmt.Errorf("udp check %s: %w", c.addr, err)
		}
	}
	// Cancellation (Monitor.Close, target removed) must end the read too.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if _, err := conn.Write(c.payload); err != nil {
		return "", c.readErr(err)
	}
	buf := make([]byte, 64<<10)
	mismatch := false
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if mismatch && errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(ctx.Err(), context.Canceled) {
				return "", failf("reply does not contain %q", c.expect)
			}
			return "", c.readErr(err)
		}
		if c.expect == "" || bytes.Contains(buf[:n], []byte(c.expect)) {
			return fmt.Sprintf("reply %d bytes", n), nil
		}
		// Not the answer we want (maybe a stray or late datagram): keep
		// listening until the deadline.
		mismatch = true
	}
}

func (c udpChecker) readErr(err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return failure("connection refused")
	}
	return fmt.Errorf("udp check %s: %w", c.addr, err)
}
