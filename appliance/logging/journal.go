package logging

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// SendFunc sends one journal entry; journal.Send in production, a
// recorder in tests.
type SendFunc func(message string, priority journal.Priority, vars map[string]string) error

// journalHandler turns slog records into journal entries. Each attribute
// becomes a field named by its upper-cased key path, so attrs "service" and
// "backend" become SERVICE= and BACKEND=, and "check.latency" inside group
// "check" becomes CHECK_LATENCY=.
type journalHandler struct {
	send     SendFunc
	level    slog.Leveler
	ident    string
	fields   []field // from WithAttrs, names already prefixed
	prefix   string  // open groups, e.g. "CHECK_"
	fallback slog.Handler
}

type field struct{ name, value string }

// NewJournal returns a handler that sends every record through send. When a
// send fails (journald restarting, say) the record is written as text to
// opts.Stderr instead of being lost.
func NewJournal(send SendFunc, opts Options) slog.Handler {
	ident := opts.Identifier
	if ident == "" {
		ident = "lbd"
	}
	level := opts.Level
	if level == nil {
		level = slog.LevelInfo
	}
	return &journalHandler{send: send, level: level, ident: ident, fallback: newText(opts)}
}

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	vars := map[string]string{"SYSLOG_IDENTIFIER": h.ident}
	if r.PC != 0 {
		f, _ := runtime.CallersFrames([]uintptr{r.PC}).Next()
		vars["CODE_FILE"] = f.File
		vars["CODE_LINE"] = strconv.Itoa(f.Line)
		vars["CODE_FUNC"] = f.Function
	}
	for _, f := range h.fields {
		vars[f.name] = f.value
	}
	// The details also go into MESSAGE as key=value, so a plain
	// `journalctl` or the serial console shows the reason, not just
	// "config refused".
	msg := strings.Builder{}
	msg.WriteString(r.Message)
	for _, f := range h.fields {
		fmt.Fprintf(&msg, " %s=%s", strings.ToLower(f.name), quoteIfSpace(f.value))
	}
	r.Attrs(func(a slog.Attr) bool {
		for _, f := range flatten(h.prefix, a) {
			vars[f.name] = f.value
			fmt.Fprintf(&msg, " %s=%s", strings.ToLower(f.name), quoteIfSpace(f.value))
		}
		return true
	})
	if err := h.send(msg.String(), Priority(r.Level), vars); err != nil {
		// Keep the entry: stderr of a service still reaches the journal
		// through its stream, only without the structured fields.
		_ = h.fallback.Handle(ctx, r)
		return fmt.Errorf("journal send: %w", err)
	}
	return nil
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.fields = append([]field(nil), h.fields...)
	for _, a := range as {
		c.fields = append(c.fields, flatten(h.prefix, a)...)
	}
	c.fallback = h.fallback.WithAttrs(as)
	return &c
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.prefix = h.prefix + fieldName(name) + "_"
	c.fallback = h.fallback.WithGroup(name)
	return &c
}

// Priority maps a slog level to a syslog priority; levels between the
// named ones round down (Info+2 is still informational).
func Priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	default:
		return journal.PriDebug
	}
}

// flatten turns one attribute (possibly a group) into journal fields.
func flatten(prefix string, a slog.Attr) []field {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return nil // slog's rule: empty attrs are ignored
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += fieldName(a.Key) + "_"
		}
		var out []field
		for _, g := range a.Value.Group() {
			out = append(out, flatten(p, g)...)
		}
		return out
	}
	name := prefix + fieldName(a.Key)
	if reserved[name] {
		// MESSAGE, PRIORITY etc. are set by lbd itself; an attr of that
		// name must not override or duplicate them.
		name = "ATTR_" + name
	}
	return []field{{name: name, value: valueString(a.Value)}}
}

var reserved = map[string]bool{
	"MESSAGE": true, "PRIORITY": true, "SYSLOG_IDENTIFIER": true,
	"CODE_FILE": true, "CODE_LINE": true, "CODE_FUNC": true,
}

// fieldName makes a journal field name: upper-case letters, digits and
// underscores, not starting with an underscore (those are trusted fields
// journald sets) nor a digit.
func fieldName(key string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(key) {
		switch {
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	n := strings.TrimLeft(b.String(), "_")
	if n == "" || (n[0] >= '0' && n[0] <= '9') {
		n = "F" + n
	}
	return n
}

func valueString(v slog.Value) string {
	if v.Kind() == slog.KindTime {
		return v.Time().Format(time.RFC3339Nano)
	}
	return v.String()
}

func quoteIfSpace(v string) string {
	if strings.ContainsAny(v, " \t\"") {
		return strconv.Quote(v)
	}
	return v
}
