package health

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestTCPCheckClosesWithFIN: the server must see a clean EOF, never
// "connection reset by peer" (keepalived#2560), also when it greets first
// and the check never reads the greeting on purpose.
func TestTCPCheckClosesWithFIN(t *testing.T) {
	for _, banner := range []string{"", "220 smtp.example ESMTP ready\r\n"} {
		t.Run("banner="+strings.TrimSpace(banner), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			serverErr := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					serverErr <- err
					return
				}
				defer c.Close()
				if banner != "" {
					if _, err := c.Write([]byte(banner)); err != nil {
						serverErr <- err
						return
					}
				}
				_, err = io.Copy(io.Discard, c) // returns nil on EOF
				serverErr <- err
			}()
			res := checkOnce(t, addrOf(t, ln.Addr()), Spec{Type: TypeTCP, Timeout: 10 * time.Second})
			if !res.OK || res.Reason != "connected" {
				t.Fatalf("check = %+v, want OK connected", res)
			}
			if err := <-serverErr; err != nil {
				t.Fatalf("server read ended with %v, want clean EOF (FIN)", err)
			}
		})
	}
}

func TestTCPCheckRefused(t *testing.T) {
	res := checkOnce(t, closedTCPPort(t), Spec{Type: TypeTCP})
	if res.OK || res.Reason != "connect refused" {
		t.Fatalf("check = %+v, want failed with \"connect refused\"", res)
	}
}

// TestTCPCheckPortOverride: the check goes to Spec.Port, not the backend port.
func TestTCPCheckPortOverride(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil {
				c.Close()
			}
		}
	}()
	backend := closedTCPPort(t) // the service port itself is closed
	res := checkOnce(t, backend, Spec{Type: TypeTCP, Port: addrOf(t, ln.Addr()).Port()})
	if !res.OK {
		t.Fatalf("check with port override = %+v, want OK", res)
	}
}
