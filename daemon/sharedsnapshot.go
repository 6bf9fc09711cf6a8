package daemon

import (
	"sync"

	"lbd/appliance/status"
)

// snapshots lets concurrent readers of the live state share one snapshot
// instead of each building its own. At 100,000 services a snapshot is
// hundreds of MB (a conntrack walk, every counter, every backend); a client
// polling `lbd status` in a loop once piled up enough of them to grow lbd
// to 10.9 GB. With this, the control socket and the status page build at
// most one at a time, and whoever asks while one is being built gets that
// one (it is at most as old as the request). Readers must not modify it.
type snapshots struct {
	build func() status.Snapshot

	mu       sync.Mutex
	inFlight *snapshotCall
}

type snapshotCall struct {
	done    chan struct{}
	snap    status.Snapshot
	waiters int // readers sharing it (under snapshots.mu)
}

func (s *snapshots) get() status.Snapshot {
	s.mu.Lock()
	if c := s.inFlight; c != nil {
		c.waiters++
		s.mu.Unlock()
		<-c.done
		return c.snap
	}
	c := &snapshotCall{done: make(chan struct{})}
	s.inFlight = c
	s.mu.Unlock()

	defer func() {
		s.mu.Lock()
		s.inFlight = nil
		s.mu.Unlock()
		close(c.done)
	}()
	c.snap = s.build()
	return c.snap
}
