package console

import (
	"errors"
	"net"
	"strings"
	"time"
)

// RenderError draws the page shown while the status cannot be fetched:
// the reason, wrapped so it is readable in full, and that the console keeps
// retrying. A failed dial means the daemon is not running; anything else
// is reported as the status being unavailable.
func RenderError(err error, now time.Time, width, height int, color bool) string {
	f := errorFrame(err, now, width)
	f.fit(height)
	return f.string(width, color)
}

func errorFrame(err error, now time.Time, width int) *frame {
	f := &frame{}
	title := "lbd console"
	stamp := clock(now)
	pad := max(2, width-len(title)-len(stamp))
	f.add(kindOther, sp(bold, "%s", title), sp(plain, "%s", strings.Repeat(" ", pad)), sp(dim, "%s", stamp))
	f.add(kindOther)
	msg := "status unavailable: " + err.Error()
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		msg = "lbd not running: " + err.Error()
	}
	for _, l := range wrap(msg, width) {
		f.add(kindOther, sp(bad, "%s", l))
	}
	f.add(kindOther)
	f.add(kindOther, sp(dim, "retrying every second · q quits"))
	return f
}

// wrap breaks s into lines of at most width runes, at spaces when it can.
func wrap(s string, width int) []string {
	if width < 1 {
		return nil
	}
	var out []string
	r := []rune(s)
	for len(r) > width {
		cut := width
		for i := width; i > width/2; i-- {
			if r[i] == ' ' {
				cut = i
				break
			}
		}
		out = append(out, strings.TrimRight(string(r[:cut]), " "))
		r = []rune(strings.TrimLeft(string(r[cut:]), " "))
	}
	return append(out, string(r))
}
