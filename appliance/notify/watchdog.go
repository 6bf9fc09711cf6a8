package notify

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Watchdog sends WATCHDOG=1 at half the WATCHDOG_USEC interval until ctx is
// done. It returns nil at once when systemd set no watchdog (or set it for
// another PID), and an error when WATCHDOG_USEC is malformed.
//
// healthy, when not nil, is asked before each keep-alive: a goroutine that
// merely ticks proves only that the Go runtime is alive, so the daemon
// passes a check of its main loop. While healthy fails, no keep-alive is
// sent (systemd then restarts lbd at the deadline) and STATUS= says why.
// A failed send is passed to onErr (may be nil) and the loop goes on: the
// next tick may succeed before systemd's deadline.
func Watchdog(ctx context.Context, healthy func() error, onErr func(error)) error {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return fmt.Errorf("systemd watchdog: %w", err)
	}
	if interval == 0 {
		return nil
	}
	report := func(err error) {
		if err != nil && onErr != nil {
			onErr(err)
		}
	}
	beat := func() {
		if healthy != nil {
			if herr := healthy(); herr != nil {
				report(Status("watchdog withheld: " + herr.Error()))
				return
			}
		}
		report(send(daemon.SdNotifyWatchdog))
	}
	tick := time.NewTicker(interval / 2)
	defer tick.Stop()
	for {
		beat()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
