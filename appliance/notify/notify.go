// Package notify tells systemd about lbd's life cycle (sd_notify): READY=1
// once NICs and rules are in place, RELOADING=1 ... READY=1 around reloads,
// a one-line STATUS=, STOPPING=1, and WATCHDOG=1 keep-alives.
//
// Every call is a no-op returning nil when NOTIFY_SOCKET is unset, so the
// daemon calls them unconditionally whether or not systemd started it. The
// environment is left in place: health-check children inherit it, but
// systemd's default NotifyAccess=main ignores messages from them.
package notify

import (
	"fmt"
	"strings"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Ready reports that startup or a reload finished, with a status line.
func Ready(status string) error {
	return send(daemon.SdNotifyReady + "\n" + statusField(status))
}

// Reloading reports that a reload started. Type=notify-reload units need
// MONOTONIC_USEC with it so systemd can tell this reload from an older
// one; plain Type=notify units accept it too.
func Reloading() error {
	return send(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec())
}

// Status sets the one-line summary `systemctl status lbd` shows.
func Status(line string) error {
	return send(statusField(line))
}

// Stopping reports that lbd is shutting down (the data plane stays).
func Stopping() error {
	return send(daemon.SdNotifyStopping)
}

// statusField flattens line to one line: a newline would start a new
// field and could, say, smuggle a READY=1 into the message.
func statusField(line string) string {
	line = strings.Join(strings.Fields(line), " ")
	return "STATUS=" + line + "\n"
}

func send(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		first, _, _ := strings.Cut(state, "\n")
		return fmt.Errorf("sd_notify %s: %w", first, err)
	}
	return nil
}
