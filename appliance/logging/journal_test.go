package logging

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

type entry struct {
	msg  string
	pri  journal.Priority
	vars map[string]string
}

type recorder struct{ entries []entry }

func (r *recorder) send(msg string, pri journal.Priority, vars map[string]string) error {
	r.entries = append(r.entries, entry{msg, pri, vars})
	return nil
}

func TestJournalFieldMapping(t *testing.T) {
	rec := &recorder{}
	log := slog.New(NewJournal(rec.send, Options{Level: slog.LevelDebug}))
	log = log.With("service", "web")
	log.Warn("backend down", "backend", "192.0.2.11:8080", "reason", "status 503",
		"latency", 1500*time.Millisecond, "message", "spoof", "_PID", 1,
		slog.Group("check", "type", "http", "rise-count", 2))
	log.WithGroup("reload").Error("reload refused", "errors", 3)
	log.Debug("tick")
	log.Info("serving")

	if len(rec.entries) != 4 {
		t.Fatalf("got %d entries, want 4", len(rec.entries))
	}
	e := rec.entries[0]
	// MESSAGE carries the details too, for plain journalctl and the serial console.
	if !strings.HasPrefix(e.msg, "backend down service=web backend=192.0.2.11:8080 reason=\"status 503\"") || e.pri != journal.PriWarning {
		t.Errorf("entry 0: %q priority %d", e.msg, e.pri)
	}
	for k, v := range map[string]string{
		"SERVICE":           "web",
		"BACKEND":           "192.0.2.11:8080",
		"REASON":            "status 503",
		"LATENCY":           "1.5s",
		"ATTR_MESSAGE":      "spoof", // never overrides MESSAGE
		"PID":               "1",     // leading underscore stripped: not a trusted field
		"CHECK_TYPE":        "http",
		"CHECK_RISE_COUNT":  "2",
		"SYSLOG_IDENTIFIER": "lbd",
	} {
		if e.vars[k] != v {
			t.Errorf("%s = %q, want %q (all: %v)", k, e.vars[k], v, e.vars)
		}
	}
	if !strings.HasSuffix(e.vars["CODE_FILE"], "journal_test.go") || e.vars["CODE_LINE"] == "" {
		t.Errorf("CODE_FILE/LINE = %q:%q, want this test file", e.vars["CODE_FILE"], e.vars["CODE_LINE"])
	}
	for k := range e.vars {
		if k != fieldName(k) {
			t.Errorf("field %q is not a valid journal field name", k)
		}
	}

	e = rec.entries[1]
	if e.pri != journal.PriErr || e.vars["RELOAD_ERRORS"] != "3" || e.vars["SERVICE"] != "web" {
		t.Errorf("grouped entry: priority %d vars %v", e.pri, e.vars)
	}
	if rec.entries[2].pri != journal.PriDebug || rec.entries[3].pri != journal.PriInfo {
		t.Errorf("debug/info priorities %d, %d", rec.entries[2].pri, rec.entries[3].pri)
	}
}

func TestPriority(t *testing.T) {
	for l, want := range map[slog.Level]journal.Priority{
		slog.LevelDebug - 4: journal.PriDebug,
		slog.LevelDebug:     journal.PriDebug,
		slog.LevelInfo:      journal.PriInfo,
		slog.LevelInfo + 2:  journal.PriInfo,
		slog.LevelWarn:      journal.PriWarning,
		slog.LevelError:     journal.PriErr,
		slog.LevelError + 4: journal.PriErr,
	} {
		if got := Priority(l); got != want {
			t.Errorf("Priority(%v) = %d, want %d", l, got, want)
		}
	}
}

func TestLevelFilter(t *testing.T) {
	rec := &recorder{}
	log := slog.New(NewJournal(rec.send, Options{}))
	log.Debug("hidden")
	log.Info("shown")
	if len(rec.entries) != 1 || rec.entries[0].msg != "shown" {
		t.Errorf("entries %+v, want only the info one", rec.entries)
	}
}

func TestFailedSendFallsBackToStderr(t *testing.T) {
	var buf bytes.Buffer
	fail := func(string, journal.Priority, map[string]string) error { return errors.New("journald gone") }
	slog.New(NewJournal(fail, Options{Stderr: &buf})).With("service", "web").Info("still here", "backend", "b1")
	out := buf.String()
	for _, s := range []string{"still here", "service=web", "backend=b1"} {
		if !strings.Contains(out, s) {
			t.Errorf("fallback output %q lacks %q", out, s)
		}
	}
}

func TestNewWithoutSystemdIsText(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "")
	t.Setenv("INVOCATION_ID", "")
	var buf bytes.Buffer
	slog.New(New(Options{Stderr: &buf})).Info("hello", "service", "web")
	if !strings.Contains(buf.String(), "msg=hello service=web") {
		t.Errorf("text output %q", buf.String())
	}
}

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{
		"service": "SERVICE", "last-check": "LAST_CHECK", "_x": "X", "9lives": "F9LIVES", "": "F", "é": "F",
	} {
		if got := fieldName(in); got != want {
			t.Errorf("fieldName(%q) = %q, want %q", in, got, want)
		}
	}
}
