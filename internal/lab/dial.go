package lab

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// InNS runs f on an OS thread switched into namespace short, then switches
// the thread back. Sockets made by f stay in that namespace after it
// returns, so a test can dial from "client" without a helper process.
func (l *Lab) InNS(short string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked if switching back fails: the runtime
		// then retires it instead of reusing a thread in the wrong netns.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(l.NSFile(short))
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", short, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Dial opens a connection from namespace short.
func (l *Lab) Dial(short, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := l.InNS(short, func() error {
		var err error
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return c, err
}

// DialFrom opens a TCP connection from namespace short bound to a local
// address (to act as one of several clients).
func (l *Lab) DialFrom(short, local, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := l.InNS(short, func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		var err error
		c, err = d.Dial("tcp", addr)
		return err
	})
	return c, err
}

// Ask sends one line over a new TCP connection to a labserver line-echo
// port and returns the first word of the answer: the backend's name.
func (l *Lab) Ask(short, addr string) (string, error) {
	c, err := l.Dial(short, "tcp", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return AskOn(c, "hello")
}

// AskOn sends one line on an open labserver connection and returns the
// answer's words.
func AskOn(c net.Conn, line string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintln(c, line); err != nil {
		return "", err
	}
	ans, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(ans), nil
}

// AskUDP sends one datagram and returns the answer's first word.
func (l *Lab) AskUDP(short, addr string) (string, error) {
	c, err := l.Dial(short, "udp", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("hi")); err != nil {
		return "", err
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return strings.Fields(string(buf[:n]))[0], nil
}

// Name returns the first word of a labserver answer.
func Name(answer string) string {
	f := strings.Fields(answer)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}
