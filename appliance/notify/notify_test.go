package notify

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen makes a unixgram socket standing in for systemd's and points
// NOTIFY_SOCKET at it.
func listen(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "")
	t.Setenv("WATCHDOG_PID", "")
	return conn
}

// next reads one datagram and returns its fields. The deadline only keeps
// a broken test from hanging; nothing asserts on time.
func next(t *testing.T, conn *net.UnixConn) []string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("reading notify socket: %v", err)
	}
	return strings.Split(strings.TrimRight(string(buf[:n]), "\n"), "\n")
}

func TestMessagesArriveInOrder(t *testing.T) {
	conn := listen(t)
	t.Setenv("WATCHDOG_USEC", "20000")

	if err := Ready("serving 2 services"); err != nil {
		t.Fatal(err)
	}
	if err := Status("2 services, 5/6 backends up\nREADY=1"); err != nil {
		t.Fatal(err)
	}
	if err := Reloading(); err != nil {
		t.Fatal(err)
	}
	if err := Ready("reloaded"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Watchdog(ctx, nil, func(err error) { t.Errorf("watchdog send: %v", err) }) }()

	var got []string
	for len(got) == 0 || got[len(got)-1] != "WATCHDOG=1" {
		got = append(got, next(t, conn)...)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watchdog returned %v", err)
	}

	// RELOADING=1 carries the CLOCK_MONOTONIC time in microseconds.
	var mono string
	for i, f := range got {
		if strings.HasPrefix(f, "MONOTONIC_USEC=") {
			mono = f
			got = append(got[:i:i], got[i+1:]...)
			break
		}
	}
	if v, err := strconv.ParseInt(strings.TrimPrefix(mono, "MONOTONIC_USEC="), 10, 64); err != nil || v <= 0 {
		t.Errorf("MONOTONIC_USEC field = %q, want a positive integer", mono)
	}
	want := []string{
		"READY=1", "STATUS=serving 2 services",
		"STATUS=2 services, 5/6 backends up READY=1", // newline flattened, no second field
		"RELOADING=1",
		"READY=1", "STATUS=reloaded",
		"WATCHDOG=1",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("received\n  %q\nwant\n  %q", got, want)
	}
}

func TestWatchdogWithheldWhileUnhealthy(t *testing.T) {
	conn := listen(t)
	t.Setenv("WATCHDOG_USEC", "20000")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	calls := 0
	go func() {
		done <- Watchdog(ctx, func() error {
			calls++
			if calls == 1 {
				return errors.New("main loop stuck")
			}
			return nil
		}, nil)
	}()
	first := next(t, conn)
	second := next(t, conn)
	cancel()
	<-done
	if strings.Join(first, "|") != "STATUS=watchdog withheld: main loop stuck" {
		t.Errorf("first message %q, want the withheld status", first)
	}
	if strings.Join(second, "|") != "WATCHDOG=1" {
		t.Errorf("second message %q, want WATCHDOG=1 once healthy", second)
	}
}

func TestNoSocketIsNoOp(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	for name, f := range map[string]func() error{
		"Ready":     func() error { return Ready("x") },
		"Reloading": Reloading,
		"Status":    func() error { return Status("x") },
		"Stopping":  Stopping,
	} {
		if err := f(); err != nil {
			t.Errorf("%s without NOTIFY_SOCKET: %v", name, err)
		}
	}
	// No watchdog configured: returns at once instead of looping forever.
	if err := Watchdog(context.Background(), nil, nil); err != nil {
		t.Errorf("Watchdog without WATCHDOG_USEC: %v", err)
	}
}

func TestWatchdogBadInterval(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "soon")
	err := Watchdog(context.Background(), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "WATCHDOG_USEC") {
		t.Errorf("err = %v, want one naming WATCHDOG_USEC", err)
	}
}

func TestSendErrorNamesMessage(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent.sock"))
	err := Stopping()
	if err == nil || !strings.Contains(err.Error(), "STOPPING=1") {
		t.Errorf("err = %v, want one naming STOPPING=1", err)
	}
}
