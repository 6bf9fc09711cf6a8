package daemon

import (
	"testing"
	"time"
)

func TestAtomicTimeKeepsZero(t *testing.T) {
	var a atomicTime
	if !a.Load().IsZero() {
		t.Fatal("new atomicTime is not zero")
	}
	now := time.Now()
	a.Store(now)
	if !a.Load().Equal(now) {
		t.Fatalf("stored %v, loaded %v", now, a.Load())
	}
	a.Store(time.Time{})
	if !a.Load().IsZero() {
		t.Fatalf("zero stored, %v loaded: Healthy would see a sync that never ends", a.Load())
	}
}

// An idle loop that beats is healthy; a loop that stopped beating, or is
// stuck in one apply for minutes, is not (the watchdog then withholds its
// keep-alive and systemd restarts lbd).
func TestHealthyFollowsTheLoop(t *testing.T) {
	d := &Daemon{}
	d.beat.Store(time.Now())
	if err := d.Healthy(); err != nil {
		t.Fatalf("fresh beat, idle: %v", err)
	}
	d.beat.Store(time.Now().Add(-time.Hour))
	if err := d.Healthy(); err == nil {
		t.Fatal("no beat for an hour: healthy")
	}
	d.beat.Store(time.Now().Add(-time.Hour))
	d.busySince.Store(time.Now().Add(-30 * time.Second))
	if err := d.Healthy(); err != nil {
		t.Fatalf("one long apply (30 s) is not a stall: %v", err)
	}
	d.busySince.Store(time.Now().Add(-10 * time.Minute))
	if err := d.Healthy(); err == nil {
		t.Fatal("an apply running for 10 minutes: healthy")
	}
}
