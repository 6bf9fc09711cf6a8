package health

import (
	"context"
	"io"
	"log"
	"net"
	"net/netip"
	"testing"
	"time"
)

// checkOnce runs one check of spec against addr with the package's own
// timeout handling, as the Monitor does.
func checkOnce(t *testing.T, addr netip.AddrPort, spec Spec) Result {
	t.Helper()
	res, err := Check(context.Background(), Target{Service: "web", Addr: addr, Spec: spec})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return res
}

// addrOf turns a listener or server address into an AddrPort.
func addrOf(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatalf("parse %s: %v", a, err)
	}
	return ap
}

// closedTCPPort returns a loopback port nothing listens on.
func closedTCPPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := addrOf(t, ln.Addr())
	ln.Close()
	return ap
}

// waitFor polls cond until it holds. The long guard only turns a hang into
// a readable failure; no test asserts how fast anything happens.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	guard := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(guard) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// quietLog silences a test server's error log where errors are the point.
func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }
