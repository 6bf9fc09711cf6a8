// Package console draws lbd's full-screen status page: `lbd console` on
// tty1 of the appliance or any terminal, and `lbd console --once` for one
// frame as text. Render is pure (snapshot in, text out) so the page is
// golden-tested; Run only fetches, renders and paints.
package console

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"lbd/appliance/status"
)

// maxErrorLines bounds how many errors of a refused reload the page lists;
// the rest are summarised (all of them are in `lbd status`).
const maxErrorLines = 3

// Render draws one frame of the page for snapshot s on a width x height
// terminal: at most height lines of at most width runes, the overflow
// summarised as "… N more". With color, ANSI colours are added around
// state words; the words themselves are always there.
//
// Render has one snapshot, so it draws no graphs; the full-screen console
// (Run) keeps a history and draws them.
func Render(s status.Snapshot, width, height int, color bool) string {
	f := build(s, width, nil)
	f.fit(height)
	return f.string(width, color)
}

// build lays out the whole page top to bottom; what matters most when the
// screen is short (kernel out of sync, reload failures, warnings) comes
// before the long lists. h may be nil: no graphs then.
func build(s status.Snapshot, width int, h *history) *frame {
	f := &frame{}
	header(f, s, width)
	syncLines(f, s)
	configLines(f, s)
	conntrackLine(f, s)
	if s.HA != nil {
		style := good
		if s.HA.Role != "MASTER" && s.HA.Role != "BACKUP" {
			style = warn
		}
		f.add(kindOther, sp(style, "%s", s.HA.Line(s.Now)))
	}
	for _, w := range s.Warnings {
		if outOfSync(s.Sync) && strings.HasPrefix(w, syncWarningPrefix) {
			continue // syncLines says it, in red, at the top
		}
		f.add(kindOther, sp(warn, "! %s", w))
	}
	fleetLines(f, s.BGP)
	if len(s.NICs) > 0 {
		f.add(kindOther)
		f.add(kindOther, sp(bold, "Interfaces"))
		for _, n := range s.NICs {
			nicLine(f, s, n)
		}
	}
	f.add(kindOther)
	services(f, s, h)
	return f
}

// syncWarningPrefix starts the warning the daemon adds while the kernel is
// out of sync; the page shows that state on its own lines instead.
const syncWarningPrefix = "kernel out of sync since"

func outOfSync(y status.Sync) bool { return !y.InSync && !y.OutOfSyncSince.IsZero() }

// syncLines says, right under the title, that the kernel does not hold
// what lbd wants: traffic follows an older state until an apply succeeds.
func syncLines(f *frame, s status.Snapshot) {
	y := s.Sync
	if !outOfSync(y) {
		return
	}
	f.add(kindOther, sp(bad, "KERNEL OUT OF SYNC for %s", human(s.Now.Sub(y.OutOfSyncSince))),
		sp(plain, " (since %s), retrying", clock(y.OutOfSyncSince)))
	detail := fmt.Sprintf("  %d failed applies", y.Failures)
	if y.LastError != "" {
		detail += ": " + y.LastError
	}
	f.add(kindOther, sp(bad, "%s", detail))
}

func header(f *frame, s status.Snapshot, width int) {
	left := []span{sp(bold, "%s", orDash(s.Hostname)), sp(plain, "  lbd %s", orDash(s.Version))}
	if !s.StartedAt.IsZero() {
		left = append(left, sp(plain, "  up %s", human(s.Now.Sub(s.StartedAt))))
	}
	now := sp(dim, "%s", clock(s.Now))
	used := utf8.RuneCountInString(line{spans: left}.text()) + utf8.RuneCountInString(now.text)
	if gap := width - used; gap >= 2 {
		left = append(left, sp(plain, "%s", strings.Repeat(" ", gap)), now)
	}
	f.add(kindOther, left...)
}

func configLines(f *frame, s status.Snapshot) {
	c := s.Config
	spans := []span{sp(plain, "config %s", orDash(c.Path))}
	if !c.LoadedAt.IsZero() {
		spans = append(spans, sp(dim, " loaded %s", clock(c.LoadedAt)))
	}
	spans = append(spans, sp(plain, " · reloads %d ok", s.Reloads.OK))
	if s.Reloads.Failed > 0 {
		spans = append(spans, sp(bad, ", %d failed", s.Reloads.Failed))
	}
	f.add(kindOther, spans...)
	if c.Source != "" && c.Source != c.Path {
		f.add(kindOther, sp(warn, "serving the last good config from %s", c.Source))
	}
	if c.LastError == "" {
		return
	}
	errs := c.LastErrors
	if len(errs) == 0 {
		errs = []string{c.LastError}
	}
	f.add(kindOther, sp(bad, "last reload FAILED"), sp(plain, " (old config still serving):"))
	for i, e := range errs {
		if i == maxErrorLines {
			f.add(kindOther, sp(dim, "  … %s (lbd check lists all)", more(len(errs)-i, "error")))
			break
		}
		f.add(kindOther, sp(bad, "  %s", e))
	}
}

func conntrackLine(f *frame, s status.Snapshot) {
	ct := s.Conntrack
	if ct.Max <= 0 {
		f.add(kindOther, sp(plain, "conntrack %d", ct.Count), sp(dim, " (table size unknown)"))
		return
	}
	pct := ct.Percent()
	if ct.High() {
		f.add(kindOther, sp(warn, "conntrack %d/%d (%.0f%%) WARNING: NAT table nearly full", ct.Count, ct.Max, pct))
		return
	}
	f.add(kindOther, sp(plain, "conntrack %d/%d (%.0f%%)", ct.Count, ct.Max, pct))
}

func nicLine(f *frame, s status.Snapshot, n status.NIC) {
	name := n.Name
	if n.Device != "" && n.Device != n.Name {
		name += " (" + n.Device + ")"
	}
	link := sp(good, "%-5s", "up")
	if !n.LinkUp {
		link = sp(bad, "%-5s", "DOWN")
	}
	addrs := "no address"
	if len(n.Addresses) > 0 {
		addrs = strings.Join(n.Addresses, " ")
	}
	spans := []span{sp(plain, " %-12s ", name), link, sp(plain, " %s", addrs)}
	if n.DHCP {
		switch {
		case n.LeaseExpiry.IsZero():
			spans = append(spans, sp(warn, "  dhcp: no lease"))
		case n.LeaseExpiry.After(s.Now):
			spans = append(spans, sp(dim, "  dhcp lease %s left", human(n.LeaseExpiry.Sub(s.Now))))
		default:
			spans = append(spans, sp(bad, "  dhcp lease expired %s ago", human(s.Now.Sub(n.LeaseExpiry))))
		}
	}
	f.add(kindNIC, spans...)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
