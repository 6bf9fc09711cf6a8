package netiftest

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"lbd/appliance/netif"
)

// Reachable checks that a TCP connection from namespace from reaches addr,
// listened on in namespace to: proof that addresses and routes carry
// traffic, without needing ping. It fails the test otherwise.
func Reachable(t testing.TB, from, to *Netns, addr netip.Addr) {
	t.Helper()
	var ln net.Listener
	err := netif.RunInNetns(to.H, func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, to.Name, err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	err = netif.RunInNetns(from.H, func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		t.Fatalf("connect from %s to %s: %v", from.Name, ln.Addr(), err)
	}
}
