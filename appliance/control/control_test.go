package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"lbd/appliance/status"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// sockPath is a socket path in a fresh temp dir. Unix socket paths are
// limited to 107 bytes and t.TempDir() embeds the test name, so long
// names get a short directory of their own.
func sockPath(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "lbd.sock")
	if len(p) < 100 {
		return p
	}
	d, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Join(d, "lbd.sock")
}

// echo answers every request with its own command and arguments, so a
// test can see exactly what reached the server.
func echo(_ context.Context, req Request) Response {
	return Response{OK: true, Message: req.Command + " " + strings.Join(req.Args, ",")}
}

// start binds path and serves h until the test ends.
func start(t *testing.T, path string, h Handler) *Server {
	t.Helper()
	s, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.Serve(ctx, h, quiet)
	t.Cleanup(func() { cancel(); s.Close() })
	return s
}

// waitFor polls cond until it holds; the bound only turns a hang into a
// failure, it asserts nothing about speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("gave up waiting for %s", what)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func TestRoundTrip(t *testing.T) {
	p := sockPath(t)
	snap := &status.Snapshot{Hostname: "lb1", Config: status.Config{Path: "/etc/lbd/lb.toml"},
		Services: []status.Service{{Name: "web", VIP: "203.0.113.10", Port: 80,
			Backends: []status.Backend{{Address: "192.0.2.11:80", State: status.StateDown}}}}}
	var got Request
	start(t, p, func(_ context.Context, req Request) Response {
		got = req
		return Response{OK: true, Message: "here", Status: snap}
	})
	req := Request{Command: "throttle", Args: []string{"web", "100/s"}}
	resp, err := Call(p, req, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, req) {
		t.Errorf("server got %+v, want %+v", got, req)
	}
	if !resp.OK || resp.Message != "here" || resp.Status == nil || !reflect.DeepEqual(*resp.Status, *snap) {
		t.Errorf("client got %+v", resp)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, %v; want 0660 (root and its group only)", fi.Mode().Perm(), err)
	}
}

// The daemon's handler answers unknown commands with an error line and no
// OK; the client must hand that answer over intact, not as a transport
// error, so `lbd` can print it.
func TestRefusalReachesClient(t *testing.T) {
	p := sockPath(t)
	start(t, p, func(_ context.Context, req Request) Response {
		switch req.Command {
		case "status":
			return Response{OK: true}
		case "mute":
			return Response{} // refused, with nothing to say
		}
		return Response{Errors: []string{fmt.Sprintf("unknown command %q", req.Command)}}
	})
	resp, err := Call(p, Request{Command: "frobnicate"}, 5*time.Second)
	if err != nil || resp.OK || len(resp.Errors) != 1 || resp.Errors[0] != `unknown command "frobnicate"` {
		t.Errorf("unknown command: resp %+v, err %v", resp, err)
	}
	// A refusal without any words still has to fail loudly.
	if _, err := Call(p, Request{Command: "mute"}, 5*time.Second); err == nil || err.Error() != "mute failed" {
		t.Errorf("silent refusal: err %v, want \"mute failed\"", err)
	}
}

func TestSecondServerRefused(t *testing.T) {
	p := sockPath(t)
	start(t, p, echo)
	s2, err := Listen(p)
	if err == nil {
		s2.Close()
		t.Fatal("second server on a live socket started")
	}
	if !strings.Contains(err.Error(), "another lbd is running") {
		t.Errorf("err = %v, want it to say another lbd is running", err)
	}
	// The refused server must have left the first one's socket alone.
	if resp, err := Call(p, Request{Command: "status"}, 5*time.Second); err != nil || resp.Message != "status " {
		t.Errorf("first server after the refused start: %+v, %v", resp, err)
	}
	if err := Serve(context.Background(), p, echo, quiet); err == nil || !strings.Contains(err.Error(), "another lbd is running") {
		t.Errorf("Serve on a live socket: %v", err)
	}
}

// A daemon that predates the lock file listens without holding it; the
// dial check must still keep a new one from taking its socket.
func TestLiveSocketWithoutLockRefused(t *testing.T) {
	p := sockPath(t)
	ln, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if s, err := Listen(p); err == nil {
		s.Close()
		t.Fatal("replaced a live socket")
	} else if !strings.Contains(err.Error(), "another lbd is running") {
		t.Errorf("err = %v", err)
	}
	if !exists(p) {
		t.Error("the live socket file was removed")
	}
}

// Servers starting at the same instant: exactly one may win. Without the
// lock, each could see no live socket, remove the other's and listen,
// leaving a daemon nobody can reach (found: 2 or 3 of 8 started).
func TestConcurrentStartsOneWins(t *testing.T) {
	for round := 0; round < 20; round++ {
		p := sockPath(t)
		var (
			mu  sync.Mutex
			won []*Server
			wg  sync.WaitGroup
		)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if s, err := Listen(p); err == nil {
					mu.Lock()
					won = append(won, s)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		for _, s := range won {
			s.Close()
		}
		if len(won) != 1 {
			t.Fatalf("round %d: %d servers bound the same path, want 1", round, len(won))
		}
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	p := sockPath(t)
	// A socket file nobody listens on, as a daemon killed with -9 leaves.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if !exists(p) {
		t.Fatal("setup: stale socket file missing")
	}
	_, err = Call(p, Request{Command: "status"}, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "left from one that exited") || !strings.Contains(err.Error(), "systemctl start lbd") {
		t.Errorf("call on a stale socket: %v", err)
	}
	start(t, p, echo)
	if _, err := Call(p, Request{Command: "status"}, 5*time.Second); err != nil {
		t.Errorf("after replacing the stale socket: %v", err)
	}
}

// Whatever --socket names, lbd must not delete a file that is not a
// socket (it used to remove anything there, the config file included).
func TestNonSocketNotReplaced(t *testing.T) {
	p := sockPath(t)
	if err := os.WriteFile(p, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Listen(p); err == nil {
		s.Close()
		t.Error("Listen took over a regular file")
	} else if !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("err = %v, want it to say the file is not a socket", err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "precious" {
		t.Errorf("file after Listen: %q, %v", b, err)
	}

	d := filepath.Join(filepath.Dir(p), "dir.sock")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if s, err := Listen(d); err == nil {
		s.Close()
		t.Error("Listen took over a directory")
	}
	if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
		t.Errorf("directory after Listen: %v", err)
	}
}

// Close removes the socket and frees the path for the next daemon (a
// restart), and a client then hears that nothing is listening.
func TestCloseFreesPath(t *testing.T) {
	p := sockPath(t)
	s, err := Listen(p)
	if err != nil {
		t.Fatal(err)
	}
	s.Serve(context.Background(), echo, quiet)
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if exists(p) {
		t.Error("socket file left after Close")
	}
	if _, err := Call(p, Request{Command: "status"}, 5*time.Second); err == nil || !strings.Contains(err.Error(), "no such socket") {
		t.Errorf("call after Close: %v", err)
	}
	start(t, p, echo)
	if _, err := Call(p, Request{Command: "status"}, 5*time.Second); err != nil {
		t.Errorf("restarted server: %v", err)
	}
}

// Serve (the one-call form the daemon uses) stops and cleans up when its
// context ends.
func TestServeStopsWithContext(t *testing.T) {
	p := sockPath(t)
	ctx, cancel := context.WithCancel(context.Background())
	if err := Serve(ctx, p, echo, quiet); err != nil {
		t.Fatal(err)
	}
	if _, err := Call(p, Request{Command: "status"}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	cancel()
	waitFor(t, "the socket to go", func() bool { return !exists(p) })
	waitFor(t, "the lock to be released", func() bool {
		s, err := Listen(p)
		if err == nil {
			s.Close()
		}
		return err == nil
	})
}

func TestCallNoDaemon(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lbd.sock")
	_, err := Call(p, Request{Command: "status"}, 5*time.Second)
	if err == nil {
		t.Fatal("call without a daemon succeeded")
	}
	// The person reading this needs: which socket, that nothing listens,
	// and what to do about it.
	for _, want := range []string{p, "no lbd is listening", "systemctl start lbd", "--socket"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// The console tells a failed dial from other failures by the
	// *net.OpError underneath; the friendlier text must keep it.
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("error %v does not wrap the dial error", err)
	}
}

// Root cannot be refused a connect, so the other dial failures are shown
// with the errors the kernel would return.
func TestExplainDial(t *testing.T) {
	const p = "/run/lbd/lbd.sock"
	dial := func(errno error) error {
		return &net.OpError{Op: "dial", Net: "unix", Addr: &net.UnixAddr{Name: p, Net: "unix"}, Err: os.NewSyscallError("connect", errno)}
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{dial(syscall.ENOENT), "no lbd is listening on /run/lbd/lbd.sock (no such socket): start it with `systemctl start lbd`, or pass --socket PATH if it listens elsewhere"},
		{dial(syscall.ECONNREFUSED), "no lbd is listening on /run/lbd/lbd.sock (the socket is left from one that exited): start it with `systemctl start lbd`; `journalctl -u lbd` says why it stopped"},
		{dial(syscall.EACCES), "permission denied on /run/lbd/lbd.sock: run this as root"},
		{dial(syscall.EAGAIN), "lbd on /run/lbd/lbd.sock accepts no connections (busy or stuck?): see `journalctl -u lbd`"},
		{dial(syscall.ENOTSOCK), "cannot reach lbd on /run/lbd/lbd.sock: dial unix /run/lbd/lbd.sock: connect: socket operation on non-socket"},
	} {
		got := explainDial(p, c.err)
		if got.Error() != c.want {
			t.Errorf("explainDial(%v):\n got %s\nwant %s", c.err, got, c.want)
		}
		if !errors.Is(got, c.err) {
			t.Errorf("explainDial(%v) does not wrap it", c.err)
		}
	}
}

// A status of a large installation is many megabytes, far more than a
// socket buffer: it must arrive whole.
func TestLargeResponse(t *testing.T) {
	snap := &status.Snapshot{Hostname: "big"}
	for i := 0; i < 4000; i++ {
		svc := status.Service{Name: fmt.Sprintf("svc-%04d", i), VIP: "203.0.113.10", Port: 1024 + i, Protocol: "tcp", Scheduler: "rr"}
		for j := 0; j < 8; j++ {
			svc.Backends = append(svc.Backends, status.Backend{Address: fmt.Sprintf("192.0.2.%d:%d", j+1, 8000+i),
				Weight: 1, State: status.StateUp, LastCheck: strings.Repeat("x", 64)})
		}
		snap.Services = append(snap.Services, svc)
	}
	b, _ := json.Marshal(snap)
	if len(b) < 4<<20 {
		t.Fatalf("test snapshot is only %d bytes; make it bigger", len(b))
	}
	p := sockPath(t)
	start(t, p, func(context.Context, Request) Response { return Response{OK: true, Status: snap} })
	resp, err := Call(p, Request{Command: "status"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status == nil || !reflect.DeepEqual(*resp.Status, *snap) {
		t.Errorf("large status (%d bytes) arrived changed or truncated", len(b))
	}
}

// A client speaking garbage gets an answer saying so, and the server
// keeps serving others.
func TestBadRequestAnswered(t *testing.T) {
	p := sockPath(t)
	start(t, p, echo)
	c, err := net.Dial("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("reload please\n")); err != nil {
		t.Fatal(err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		t.Fatalf("no answer to a bad request: %v", err)
	}
	if resp.OK || len(resp.Errors) != 1 || !strings.HasPrefix(resp.Errors[0], "bad request: ") {
		t.Errorf("answer to a bad request: %+v", resp)
	}
	if _, err := Call(p, Request{Command: "status"}, 5*time.Second); err != nil {
		t.Errorf("server after a bad request: %v", err)
	}
}

// A panicking handler would otherwise crash the whole daemon from a
// status request.
func TestHandlerPanicAnswered(t *testing.T) {
	p := sockPath(t)
	start(t, p, func(_ context.Context, req Request) Response {
		if req.Command == "boom" {
			panic("nil map")
		}
		return Response{OK: true}
	})
	resp, err := Call(p, Request{Command: "boom"}, 5*time.Second)
	if err != nil || resp.OK || len(resp.Errors) != 1 || !strings.Contains(resp.Errors[0], "internal error in boom: nil map") {
		t.Errorf("panic answer: %+v, %v", resp, err)
	}
	if _, err := Call(p, Request{Command: "status"}, 5*time.Second); err != nil {
		t.Errorf("server after a panic: %v", err)
	}
}

// A daemon that accepts but never answers: the client gives up after its
// timeout and says what happened.
func TestCallNoAnswer(t *testing.T) {
	p := sockPath(t)
	release := make(chan struct{})
	defer close(release)
	start(t, p, func(context.Context, Request) Response { <-release; return Response{OK: true} })
	_, err := Call(p, Request{Command: "reload"}, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "did not answer reload") || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("err = %v", err)
	}
}

// A daemon that hangs up without answering (it is stopping).
func TestCallHangUp(t *testing.T) {
	p := sockPath(t)
	ln, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_ = json.NewDecoder(c).Decode(&Request{})
		c.Close()
	}()
	_, err = Call(p, Request{Command: "status"}, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "closed the connection without answering status") {
		t.Errorf("err = %v", err)
	}
}

// flakyListener fails Accept a few times, as a process out of file
// descriptors does, then hands out the connections it is given.
type flakyListener struct {
	fails atomic.Int32
	conns chan net.Conn
	done  chan struct{}
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, os.NewSyscallError("accept4", syscall.EMFILE)
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *flakyListener) Close() error   { return nil }
func (l *flakyListener) Addr() net.Addr { return &net.UnixAddr{Name: "flaky", Net: "unix"} }

// The accept loop used to return on the first error, leaving a running
// daemon that no client could reach again.
func TestAcceptErrorsWaitedOut(t *testing.T) {
	server, client := net.Pipe()
	l := &flakyListener{conns: make(chan net.Conn, 1), done: make(chan struct{})}
	l.fails.Store(3)
	l.conns <- server
	loopDone := make(chan struct{})
	go func() { acceptLoop(context.Background(), l, echo, quiet); close(loopDone) }()
	defer func() { close(l.done); <-loopDone }()
	if err := json.NewEncoder(client).Encode(Request{Command: "status"}); err != nil {
		t.Fatal(err)
	}
	var resp Response
	if err := json.NewDecoder(client).Decode(&resp); err != nil || resp.Message != "status " {
		t.Errorf("after accept errors: %+v, %v", resp, err)
	}
	client.Close()
}
