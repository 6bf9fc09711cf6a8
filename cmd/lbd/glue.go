package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"lbd/appliance/console"
	"lbd/appliance/logging"
	"lbd/appliance/notify"
	"lbd/appliance/status"
)

// newLogger logs to the journal under systemd, as text otherwise.
func newLogger(stderr io.Writer) *slog.Logger {
	level := slog.LevelInfo
	if os.Getenv("LBD_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(logging.New(logging.Options{Level: level, Stderr: stderr}))
}

// sdNotifier adapts appliance/notify to the daemon; every call is a no-op
// when NOTIFY_SOCKET is unset.
type sdNotifier struct{ log *slog.Logger }

func systemdNotifier(log *slog.Logger) sdNotifier { return sdNotifier{log: log} }

func (n sdNotifier) warn(err error) {
	if err != nil {
		n.log.Warn("systemd notify", "err", err)
	}
}
func (n sdNotifier) Ready(status string) { n.warn(notify.Ready(status)) }
func (n sdNotifier) Reloading()          { n.warn(notify.Reloading()) }
func (n sdNotifier) Status(line string)  { n.warn(notify.Status(line)) }
func (n sdNotifier) Stopping()           { n.warn(notify.Stopping()) }

func cmdConsole(socket string, once bool, stdout, stderr io.Writer) int {
	fetch := func() (status.Snapshot, error) { return fetchStatus(socket) }
	if once {
		snap, err := fetch()
		if err != nil {
			fmt.Fprint(stdout, console.RenderError(err, time.Now(), 80, 24, false))
			return 1
		}
		fmt.Fprint(stdout, console.Render(snap, 80, 24, false))
		return 0
	}
	if err := consoleRun(socket); err != nil {
		fmt.Fprintln(stderr, "lbd console:", err)
		return 1
	}
	return 0
}
