// Package logging builds lbd's slog.Handler: structured journal entries
// (SERVICE=, BACKEND=, ... fields, PRIORITY from the level) when lbd runs as
// a systemd service with a journal, plain text on stderr otherwise.
//
// `journalctl -u lbd SERVICE=web` then lists one service's events, which
// text lines on stderr could not offer.
package logging

import (
	"io"
	"log/slog"
	"os"

	"github.com/coreos/go-systemd/v22/journal"
)

// Options configures New.
type Options struct {
	// Level is the minimum level logged; nil means slog.LevelInfo.
	Level slog.Leveler
	// Stderr receives text logs, and journal entries that failed to send;
	// nil means os.Stderr.
	Stderr io.Writer
	// Identifier is SYSLOG_IDENTIFIER in the journal (`journalctl -t`);
	// empty means "lbd".
	Identifier string
}

// New returns the journal handler when UnderJournal says so, else a text
// handler on Options.Stderr.
func New(opts Options) slog.Handler {
	if UnderJournal() {
		return NewJournal(journal.Send, opts)
	}
	return newText(opts)
}

// UnderJournal reports whether lbd should log natively to the journal:
// stderr is the journal stream systemd gave the service (JOURNAL_STREAM
// matches it), or systemd started us as a unit (INVOCATION_ID) and the
// journal socket answers. A child started with JOURNAL_STREAM inherited but
// stderr redirected elsewhere gets text, as systemd's docs ask.
func UnderJournal() bool {
	if ok, err := journal.StderrIsJournalStream(); err == nil && ok {
		return true
	}
	return os.Getenv("INVOCATION_ID") != "" && journal.Enabled()
}

func newText(opts Options) slog.Handler {
	w := opts.Stderr
	if w == nil {
		w = os.Stderr
	}
	return slog.NewTextHandler(w, &slog.HandlerOptions{Level: opts.Level})
}
