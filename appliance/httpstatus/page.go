package httpstatus

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net"
	"strconv"
	"time"

	"lbd/appliance/status"
)

// refreshSeconds is the page's auto-refresh period; the console refreshes
// every second, a browser tab need not hammer the daemon that hard.
const refreshSeconds = 2

//go:embed page.html
var pageFS embed.FS

var page = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"clock":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"since":   func(from, to time.Time) string { return human(to.Sub(from)) },
	"latency": latency,
	"refused": refusedList,
	"upCount": upCount,
	// JoinHostPort brackets IPv6 VIPs: [2001:db8::53]:53, not 2001:db8::53:53.
	"hostport": func(h string, p int) string { return net.JoinHostPort(h, strconv.Itoa(p)) },
}).ParseFS(pageFS, "page.html"))

// pageData is what the template sees: the snapshot plus the few derived
// values a template cannot compute.
type pageData struct {
	status.Snapshot
	Refresh       int
	ConntrackPct  float64
	ConntrackHigh bool
}

// renderPage executes the template into memory, so a template error gives
// a clean 500 rather than half a page.
func renderPage(s status.Snapshot) ([]byte, error) {
	d := pageData{Snapshot: s, Refresh: refreshSeconds}
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

func upCount(bs []status.Backend) int {
	n := 0
	for _, b := range bs {
		if b.State == status.StateUp {
			n++
		}
	}
	return n
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
