package daemon

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"lbd/appliance/status"
)

// Readers that arrive while a snapshot is being built share it; a reader
// after it gets a new one.
func TestConcurrentReadersShareOneSnapshot(t *testing.T) {
	var builds atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	s := &snapshots{build: func() status.Snapshot {
		n := builds.Add(1)
		if n == 1 {
			started <- struct{}{}
			<-release
		}
		return status.Snapshot{Version: string(rune('0' + n))}
	}}
	var wg sync.WaitGroup
	got := make([]string, 8)
	wg.Add(1)
	go func() { defer wg.Done(); got[0] = s.get().Version }()
	<-started
	for i := 1; i < 8; i++ {
		wg.Add(1)
		go func(i int) { defer wg.Done(); got[i] = s.get().Version }(i)
	}
	// Release the first build only once the seven latecomers wait on it.
	for {
		s.mu.Lock()
		waiting := s.inFlight.waiters
		s.mu.Unlock()
		if waiting == 7 {
			break
		}
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if b := builds.Load(); b != 1 {
		t.Fatalf("%d builds for 8 concurrent readers, want 1", b)
	}
	for i, v := range got {
		if v != "1" {
			t.Fatalf("reader %d got snapshot %q, want the shared one", i, v)
		}
	}
	if v := s.get().Version; v != "2" || builds.Load() != 2 {
		t.Fatalf("a reader after the build got %q (%d builds), want a fresh snapshot", v, builds.Load())
	}
}
