// Package control is the daemon's local control socket: one JSON request
// per connection, one JSON response. `lbd reload`, `lbd status`,
// `lbd throttle` and `lbd console` are clients.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"lbd/appliance/status"
)

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/run/lbd/lbd.sock"

// connTimeout bounds how long one client may take to send its request and
// to read the answer, so a stuck client cannot pin a goroutine forever.
const connTimeout = 10 * time.Second

// Request is one command.
type Request struct {
	Command string   `json:"command"` // status | reload | throttle
	Args    []string `json:"args,omitempty"`
}

// Response answers a Request.
type Response struct {
	OK      bool             `json:"ok"`
	Message string           `json:"message,omitempty"`
	Errors  []string         `json:"errors,omitempty"`
	Status  *status.Snapshot `json:"status,omitempty"`
	// Conns answers "conns"; Count says how many entries "flush" removed.
	Conns []status.Conn `json:"conns,omitempty"`
	Count int           `json:"count,omitempty"`
	// Lines is a text answer, one line each ("diff").
	Lines []string `json:"lines,omitempty"`
}

// Handler executes requests.
type Handler func(ctx context.Context, req Request) Response

// Server is a bound control socket. It holds an exclusive lock beside the
// socket (PATH.lock) for as long as it lives, so at most one Server owns a
// path at a time, even when several start at the same instant.
type Server struct {
	path string
	lock *os.File
	ln   *net.UnixListener

	closeOnce sync.Once
	closeErr  error
	done      chan struct{} // closed when the accept loop has returned
}

// Listen claims path for this process and binds it, without serving yet.
// A daemon calls it before it touches anything else (the kernel tables), so
// a second daemon stops while it has changed nothing.
//
// The socket file of a daemon that died is replaced. A live daemon on the
// same path, a lock held by one that is starting, or a file at path that is
// not a socket are errors: two daemons must not fight, and a mistyped
// --socket must not delete, say, the config file.
func Listen(path string) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket dir: %w", err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("control socket lock: %w", err)
	}
	// The lock file is never removed: removing it would let a second
	// process lock a fresh inode while the first still holds the old one.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("control socket %s: another lbd is running (it holds %s)", path, lock.Name())
		}
		return nil, fmt.Errorf("control socket lock %s: %w", lock.Name(), err)
	}
	fail := func(err error) (*Server, error) {
		lock.Close() // releases the flock
		return nil, err
	}
	if err := clearStale(path); err != nil {
		return fail(err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fail(fmt.Errorf("control socket: %w", err))
	}
	// Close unlinks the socket; safe because nobody else can own the path
	// until our lock is released, which happens after the unlink.
	ln.SetUnlinkOnClose(true)
	_ = os.Chmod(path, 0o660)
	return &Server{path: path, lock: lock, ln: ln, done: make(chan struct{})}, nil
}

// clearStale removes a socket file nobody answers on. With the lock held
// only a daemon that predates the lock could still be listening, so a
// successful dial is still checked.
func clearStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket %s: exists and is not a socket (%s); refusing to replace it", path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, 200*time.Millisecond)
	if err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another lbd is running", path)
	}
	// Only "nobody listens" proves the socket is stale; anything else (a
	// full accept queue answers EAGAIN) may be a live daemon.
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control socket %s: cannot tell whether another lbd is running: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control socket: remove stale %s: %w", path, err)
	}
	return nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Serve answers requests with h until ctx ends or Close is called, then
// closes the server. It returns at once; the work runs on goroutines.
func (s *Server) Serve(ctx context.Context, h Handler, log *slog.Logger) {
	go func() {
		select {
		case <-ctx.Done():
			_ = s.Close()
		case <-s.done:
		}
	}()
	go func() {
		defer close(s.done)
		acceptLoop(ctx, s.ln, h, log)
	}()
}

// Close stops accepting, removes the socket file and releases the lock.
// Requests already being answered finish on their own.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.ln.Close()
		if err := s.lock.Close(); s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}

// Serve listens on path and answers with h until ctx ends. It returns
// once the socket is bound, or the reason it could not be (see Listen).
func Serve(ctx context.Context, path string, h Handler, log *slog.Logger) error {
	s, err := Listen(path)
	if err != nil {
		return err
	}
	s.Serve(ctx, h, log)
	return nil
}

// acceptLoop accepts until ln is closed. Other accept errors (out of file
// descriptors) are waited out, as net/http does: returning would leave a
// running daemon that no `lbd reload` or `lbd status` can reach.
func acceptLoop(ctx context.Context, ln net.Listener, h Handler, log *slog.Logger) {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			log.Warn("control: accept", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		go serveConn(ctx, c, h, log)
	}
}

func serveConn(ctx context.Context, c net.Conn, h Handler, log *slog.Logger) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(connTimeout))
	var req Request
	var resp Response
	if err := json.NewDecoder(c).Decode(&req); err != nil {
		log.Warn("control: bad request", "err", err)
		// Answer anyway, so the client says what went wrong instead of
		// "connection closed".
		resp = Response{Errors: []string{"bad request: " + err.Error()}}
	} else {
		resp = call(ctx, h, req, log)
	}
	_ = c.SetWriteDeadline(time.Now().Add(connTimeout))
	if err := json.NewEncoder(c).Encode(resp); err != nil {
		log.Warn("control: answer", "command", req.Command, "err", err)
	}
}

// call runs h, turning a panic into an error answer: a bug in one command
// must not take down the daemon, which owns the data plane.
func call(ctx context.Context, h Handler, req Request, log *slog.Logger) (resp Response) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("control: handler panicked", "command", req.Command, "panic", p, "stack", string(debug.Stack()))
			resp = Response{Errors: []string{fmt.Sprintf("internal error in %s: %v (see the journal)", req.Command, p)}}
		}
	}()
	return h(ctx, req)
}

// dialError explains a failed connect in words a person can act on. It
// wraps the *net.OpError, so callers can still tell a failed dial apart.
type dialError struct {
	msg string
	err error
}

func (e *dialError) Error() string { return e.msg }
func (e *dialError) Unwrap() error { return e.err }

func explainDial(path string, err error) error {
	var msg string
	switch {
	case errors.Is(err, syscall.ENOENT):
		msg = fmt.Sprintf("no lbd is listening on %s (no such socket): start it with `systemctl start lbd`, or pass --socket PATH if it listens elsewhere", path)
	case errors.Is(err, syscall.ECONNREFUSED):
		msg = fmt.Sprintf("no lbd is listening on %s (the socket is left from one that exited): start it with `systemctl start lbd`; `journalctl -u lbd` says why it stopped", path)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		msg = fmt.Sprintf("permission denied on %s: run this as root", path)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, syscall.EAGAIN):
		msg = fmt.Sprintf("lbd on %s accepts no connections (busy or stuck?): see `journalctl -u lbd`", path)
	default:
		msg = fmt.Sprintf("cannot reach lbd on %s: %v", path, err)
	}
	return &dialError{msg: msg, err: err}
}

// Call sends one request to the daemon at path and waits up to timeout
// for the whole exchange. An answer with OK false is returned without an
// error when it carries its own Message or Errors; the caller shows them.
func Call(path string, req Request, timeout time.Duration) (Response, error) {
	var resp Response
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return resp, explainDial(path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return resp, fmt.Errorf("send %s to lbd on %s: %w", req.Command, path, err)
	}
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return resp, fmt.Errorf("lbd on %s did not answer %s within %s (busy or stuck?): see `journalctl -u lbd`: %w", path, req.Command, timeout, err)
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
			return resp, fmt.Errorf("lbd on %s closed the connection without answering %s (did it stop?): see `journalctl -u lbd`: %w", path, req.Command, err)
		}
		return resp, fmt.Errorf("read answer to %s from lbd on %s: %w", req.Command, path, err)
	}
	if !resp.OK && len(resp.Errors) == 0 && resp.Message == "" {
		return resp, errors.New(req.Command + " failed")
	}
	return resp, nil
}
