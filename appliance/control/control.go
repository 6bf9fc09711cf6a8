// Package control is the daemon's local control socket: one JSON request
// per connection, one JSON response. `lbd reload`, `lbd status`,
// `lbd throttle` and `lbd console` are clients.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"lbd/appliance/status"
)

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/run/lbd/lbd.sock"

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
}

// Handler executes requests.
type Handler func(ctx context.Context, req Request) Response

// Serve listens on path until ctx ends. A stale socket file from a dead
// daemon is replaced; a live one is an error (two daemons must not fight).
func Serve(ctx context.Context, path string, h Handler, log *slog.Logger) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("control socket dir: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another lbd is running", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	_ = os.Chmod(path, 0o660)
	go func() {
		<-ctx.Done()
		ln.Close()
		_ = os.Remove(path)
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveConn(ctx, c, h, log)
		}
	}()
	return nil
}

func serveConn(ctx context.Context, c net.Conn, h Handler, log *slog.Logger) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var req Request
	if err := json.NewDecoder(c).Decode(&req); err != nil {
		log.Warn("control: bad request", "err", err)
		return
	}
	resp := h(ctx, req)
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_ = json.NewEncoder(c).Encode(resp)
}

// Call sends one request to the daemon at path.
func Call(path string, req Request, timeout time.Duration) (Response, error) {
	var resp Response
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return resp, fmt.Errorf("lbd not running? %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return resp, fmt.Errorf("send %s: %w", req.Command, err)
	}
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return resp, fmt.Errorf("read answer to %s: %w", req.Command, err)
	}
	if !resp.OK && len(resp.Errors) == 0 && resp.Message == "" {
		return resp, errors.New(req.Command + " failed")
	}
	return resp, nil
}
