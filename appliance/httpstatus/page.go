package httpstatus

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net"
	"strconv"
	"strings"
	"time"

	"lbd/appliance/status"
)

// refreshSeconds is how often the page's script polls /status.json (and,
// without JavaScript, how often the page reloads itself). The console
// refreshes every second; a browser tab need not hammer the daemon that
// hard, since every poll makes the daemon read conntrack.
const refreshSeconds = 2

// historyMinutes is how far back the page's graphs reach. The browser keeps
// the history itself (the daemon stores none), so it starts empty when the
// page is opened.
const historyMinutes = 5

//go:embed page.html
var pageFS embed.FS

var page = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"clock":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"since":     func(from, to time.Time) string { return human(to.Sub(from)) },
	"latency":   latency,
	"refused":   refusedList,
	"limits":    limitList,
	"serving":   func(s status.Service) int { return s.ServingCount() },
	"outOfSync": func(y status.Sync) bool { return !y.InSync && !y.OutOfSyncSince.IsZero() },
	"shown":     shownWarnings,
	"drain":     drainText,
	// JoinHostPort brackets IPv6 VIPs: [2001:db8::53]:53, not 2001:db8::53:53.
	"hostport": func(h string, p int) string { return net.JoinHostPort(h, strconv.Itoa(p)) },
}).ParseFS(pageFS, "page.html"))

// pageData is what the template sees: the snapshot plus the few derived
// values a template cannot compute.
type pageData struct {
	status.Snapshot
	Refresh       int
	History       int
	ConntrackPct  float64
	ConntrackHigh bool
}

// renderPage executes the template into memory, so a template error gives
// a clean 500 rather than half a page.
func renderPage(s status.Snapshot) ([]byte, error) {
	d := pageData{Snapshot: s, Refresh: refreshSeconds, History: historyMinutes}
	if s.Conntrack.Max > 0 {
		d.ConntrackPct = s.Conntrack.Percent()
		d.ConntrackHigh = s.Conntrack.High()
	}
	var b bytes.Buffer
	if err := page.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("render status page: %w", err)
	}
	return b.Bytes(), nil
}

// reason is one non-zero refusal counter.
type reason struct {
	Name  string
	Count uint64
}

func refusedList(r status.Refusals) []reason {
	var out []reason
	for i, n := range []uint64{r.NoBackend, r.MaxConnections, r.Rate, r.PerClientRate, r.PerClientConns, r.Denied, r.ThrottleRefused} {
		if n > 0 {
			out = append(out, reason{refusalReasonNames[i], n})
		}
	}
	return out
}

// limitList words a service's configured limits the way the config file
// and the console say them, listing the networks; the page's script
// (page.html, limitList) words them the same.
func limitList(l status.Limits) []string {
	return l.Phrases(func(ns []string) string { return strings.Join(ns, " ") })
}

// drainText says where a runtime drain (`lbd drain`) stands, the way the
// page's script and the console say it.
func drainText(d *status.Drain, now time.Time) string {
	if d == nil {
		return ""
	}
	t := "lbd drain " + human(now.Sub(d.Since))
	switch {
	case !d.Done.IsZero() && d.Flushed > 0:
		t += fmt.Sprintf(", flushed %d at timeout", d.Flushed)
	case !d.Done.IsZero():
		t += ", no flows left"
	case !d.Deadline.IsZero():
		t += ", flush in " + human(d.Deadline.Sub(now))
	}
	return t
}

// syncWarningPrefix starts the warning the daemon adds while the kernel is
// out of sync. The page shows that state as a banner of its own, so the
// same sentence is not repeated among the warnings.
const syncWarningPrefix = "kernel out of sync since"

func shownWarnings(s status.Snapshot) []string {
	var out []string
	for _, w := range s.Warnings {
		if !s.Sync.InSync && !s.Sync.OutOfSyncSince.IsZero() && strings.HasPrefix(w, syncWarningPrefix) {
			continue
		}
		out = append(out, w)
	}
	return out
}

// human formats a duration as its two largest units, as the console does.
func human(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	days := int(d / (24 * time.Hour))
	h := int(d/time.Hour) % 24
	m := int(d/time.Minute) % 60
	s := int(d/time.Second) % 60
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh", days, h)
	case h > 0:
		return fmt.Sprintf("%dh %dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm %ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

func latency(sec float64) string {
	switch {
	case sec <= 0:
		return "-"
	case sec < 0.001:
		return fmt.Sprintf("%.0fµs", sec*1e6)
	case sec < 1:
		return fmt.Sprintf("%.1fms", sec*1e3)
	}
	return fmt.Sprintf("%.2fs", sec)
}
