package console

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// human formats a duration the way an operator reads it: the two largest
// units, "3d 4h", "4h 12m", "12m 5s", "5s".
func human(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	d = d.Truncate(time.Second)
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
	default:
		return fmt.Sprintf("%ds", s)
	}
}

// latency formats a check duration in seconds with useful precision.
func latency(sec float64) string {
	switch {
	case sec <= 0:
		return "-"
	case sec < 0.001:
		return fmt.Sprintf("%.0fus", sec*1e6)
	case sec < 1:
		return fmt.Sprintf("%.1fms", sec*1e3)
	default:
		return fmt.Sprintf("%.2fs", sec)
	}
}

// count abbreviates large counters: 987, 12.3k, 4.5M, 1.2G.
func count(n uint64) string {
	return scaled(float64(n), "")
}

// bytes formats a byte counter in SI units.
func bytes(n uint64) string {
	return scaled(float64(n), "B")
}

func scaled(v float64, unit string) string {
	sep := ""
	if unit != "" {
		sep = " "
	}
	for _, p := range []string{"", "k", "M", "G", "T", "P"} {
		if v < 1000 {
			if p == "" {
				return fmt.Sprintf("%.0f%s%s", v, sep, unit)
			}
			return fmt.Sprintf("%.1f%s%s%s", v, sep, p, unit)
		}
		v /= 1000
	}
	return fmt.Sprintf("%.1f%sE%s", v, sep, unit)
}

// clock formats an instant in UTC: the appliance has no time zone of its
// own, and a fixed zone keeps the page the same whoever renders it.
func clock(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// hostPort writes vip:port with brackets around IPv6 addresses.
func hostPort(vip string, port int) string {
	return net.JoinHostPort(vip, strconv.Itoa(port))
}
