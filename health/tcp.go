package health

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// drainGrace bounds how long a tcp check waits, after its FIN, for the
// server to close its side. Servers close at once on EOF; this only caps a
// server that does not, and it does not make the check fail.
const drainGrace = time.Second

// tcpChecker passes when a TCP connection is established.
type tcpChecker struct {
	addr netip.AddrPort
}

func (c tcpChecker) check(ctx context.Context) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.addr.String())
	if err != nil {
		return "", fmt.Errorf("tcp check %s: %w", c.addr, err)
	}
	closeGracefully(ctx, conn.(*net.TCPConn))
	return "connected", nil
}

// closeGracefully ends a check connection with a FIN, never a RST: a RST
// close (SO_LINGER 0, as keepalived did, keepalived#2560) fills backend logs
// with "connection reset by peer". It half-closes first so the server sees
// EOF, then reads whatever the server sent (a banner, a greeting) until its
// EOF: closing a socket with unread data makes the kernel send a RST too.
func closeGracefully(ctx context.Context, conn *net.TCPConn) {
	defer conn.Close()
	if err := conn.CloseWrite(); err != nil {
		return
	}
	deadline := time.Now().Add(drainGrace)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := conn.SetReadDeadline(deadline); err != nil {
		return
	}
	// Bounded: a server streaming endlessly is not our business.
	_, _ = io.Copy(io.Discard, io.LimitReader(conn, 64<<10))
}
