package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"lbd/appliance/httpstatus"
	"lbd/appliance/status"
)

// atomicTime is a time.Time readable from any goroutine. The zero Time
// round-trips (stored as 0): time.Time{}.UnixNano() is not 0, and a
// "busy since" that never reads back as zero would make Healthy report a
// stuck loop two minutes after start.
type atomicTime struct{ v atomic.Int64 }

func (a *atomicTime) Store(t time.Time) {
	if t.IsZero() {
		a.v.Store(0)
		return
	}
	a.v.Store(t.UnixNano())
}

func (a *atomicTime) Load() time.Time {
	n := a.v.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// statusServer serves the HTML page, /status.json and /metrics on
// [appliance] status_listen, moving when a reload changes the address.
type statusServer struct {
	fetch func() status.Snapshot
	log   *slog.Logger

	mu   sync.Mutex
	addr string
	srv  *http.Server
}

func newStatusServer(fetch func() status.Snapshot, log *slog.Logger) *statusServer {
	return &statusServer{fetch: fetch, log: log}
}

// listen makes the server listen on addr ("" = off). Binding happens here
// so a bad address fails the config load instead of failing later.
func (s *statusServer) listen(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if addr == s.addr {
		return nil
	}
	var ln net.Listener
	if addr != "" {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return err
		}
	}
	s.shutdownLocked()
	s.addr = addr
	if ln == nil {
		return nil
	}
	h, err := httpstatus.Handler(s.fetch)
	if err != nil {
		ln.Close()
		return err
	}
	s.srv = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	srv := s.srv
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("status page", "err", err)
		}
	}()
	s.log.Info("status page listening", "addr", addr)
	return nil
}

func (s *statusServer) shutdownLocked() {
	if s.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.srv.Shutdown(ctx)
		cancel()
		s.srv = nil
	}
}

func (s *statusServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutdownLocked()
	s.addr = ""
}
