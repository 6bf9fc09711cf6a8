package console

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// style is what a span means; Render maps it to ANSI colours and Run to
// tcell styles. The words on the page never depend on it, so the page reads
// the same without colour (serial console, `--once` piped to a file).
type style int

const (
	plain style = iota
	bold
	good // up, link up
	bad  // down, failed reload
	warn // drain, throttle, near-full conntrack, warnings
	dim  // secondary detail
)

// ansi holds the SGR sequence for each style; plain has none.
var ansi = map[style]string{bold: "\x1b[1m", good: "\x1b[32m", bad: "\x1b[1;31m", warn: "\x1b[33m", dim: "\x1b[2m"}

const ansiReset = "\x1b[0m"

type span struct {
	text string
	st   style
}

// kind tells what a line shows, so the "… N more" line can say what was cut.
type kind int

const (
	kindOther kind = iota
	kindNIC
	kindService
	kindBackend
)

type line struct {
	spans []span
	kind  kind
}

// frame collects lines; add and addf are the only ways content gets in.
type frame struct{ lines []line }

func (f *frame) add(k kind, spans ...span) { f.lines = append(f.lines, line{spans: spans, kind: k}) }

func sp(st style, format string, a ...any) span { return span{text: fmt.Sprintf(format, a...), st: st} }

func (l line) text() string {
	var b strings.Builder
	for _, s := range l.spans {
		b.WriteString(s.text)
	}
	return b.String()
}

// fit cuts the frame to height lines, replacing the overflow by one line
// saying what was left out, so nothing is silently lost.
func (f *frame) fit(height int) {
	if height <= 0 {
		f.lines = nil
		return
	}
	if len(f.lines) <= height {
		return
	}
	keep := height - 1
	cut := f.lines[keep:]
	counts := map[kind]int{}
	for _, l := range cut {
		counts[l.kind]++
	}
	var parts []string
	for _, k := range []struct {
		k    kind
		name string
	}{{kindService, "service"}, {kindBackend, "backend"}, {kindNIC, "interface"}, {kindOther, "line"}} {
		if n := counts[k.k]; n > 0 {
			parts = append(parts, more(n, k.name))
		}
	}
	f.lines = append(f.lines[:keep:keep], line{spans: []span{sp(dim, "… %s", strings.Join(parts, ", "))}})
}

// more says "1 more service", "3 more backends".
func more(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d more %s", n, word)
	}
	return fmt.Sprintf("%d more %ss", n, word)
}

// clip cuts spans to width runes, ending in "…" when something was cut.
// Every rune on the page is one cell wide (ASCII plus "…" and "·").
func clip(spans []span, width int) []span {
	total := 0
	for _, s := range spans {
		total += utf8.RuneCountInString(s.text)
	}
	if total <= width {
		return spans
	}
	var out []span
	left := width - 1 // room for the ellipsis
	for _, s := range spans {
		if left <= 0 {
			break
		}
		r := []rune(s.text)
		if len(r) > left {
			r = r[:left]
		}
		out = append(out, span{text: string(r), st: s.st})
		left -= len(r)
	}
	if width > 0 {
		out = append(out, span{text: "…", st: dim})
	}
	return out
}

// string renders the frame as text, with ANSI colours when color is set.
// Trailing spaces are trimmed so golden files stay diff-friendly.
func (f *frame) string(width int, color bool) string {
	var b strings.Builder
	for _, l := range f.lines {
		var lb strings.Builder
		for _, s := range clip(l.spans, width) {
			if color && ansi[s.st] != "" && strings.TrimSpace(s.text) != "" {
				lb.WriteString(ansi[s.st] + s.text + ansiReset)
			} else {
				lb.WriteString(s.text)
			}
		}
		b.WriteString(strings.TrimRight(lb.String(), " "))
		b.WriteByte('\n')
	}
	return b.String()
}
