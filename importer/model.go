package importer

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"time"

	"lbd/config"
)

// Result is an imported configuration: what the TOML writer prints, and the
// warnings for everything that did not map exactly.
type Result struct {
	Source    string // file the input came from, named in the output's header
	Kind      string // "keepalived" or "ipvsadm"
	Services  []*Service
	Conntrack Conntrack
	Warnings  []Warning
}

// Warning is one difference between the input and the generated lb.toml.
type Warning struct {
	Pos Pos
	Msg string
}

func (w Warning) String() string { return fmt.Sprintf("%s: warning: %s", w.Pos, w.Msg) }

// Conntrack holds timeouts taken from keepalived's lvs_timeouts or
// ipvsadm's --set; zero means not set.
type Conntrack struct {
	TCPEstablished, TCPFinWait, UDP time.Duration
}

// Service is one [[service]] to print.
type Service struct {
	Pos         Pos
	Name        string
	VIP         netip.Addr
	Port        int
	Protocol    string // tcp, udp
	Scheduler   string
	SNAT        bool
	Persistence time.Duration
	Health      *Health // [service.health]; nil when not checked or per backend
	Backends    []*Backend
	Notes       []string // printed as comments above the service

	ipvsSched string   // the IPVS scheduler named in the input
	flags     []string // its scheduler flags (sh-port, ops, ...)
	schedPos  Pos
	nameHint  string // keepalived snmp_name, used as name when valid
}

// Backend is one [[service.backend]].
type Backend struct {
	Pos            Pos
	Addr           netip.Addr
	Port           int
	Weight         int
	Backup         bool
	MaxConnections int
	Health         *Health // per-backend override; nil = the service's
	Notes          []string

	sorry bool // keepalived sorry_server: never checked by keepalived
}

// Health is a [service.health] table; zero fields are left out.
type Health struct {
	Type          string
	Port          int
	Interval      time.Duration
	Timeout       time.Duration
	Rise, Fall    int
	Path, Host    string
	ExpectStatus  []string
	ExpectBody    string
	TLSSkipVerify bool
	SNI           string
	Payload       string
	Expect        string
	Command       []string
}

func (h *Health) equal(o *Health) bool {
	if h == nil || o == nil {
		return h == o
	}
	return reflect.DeepEqual(h, o)
}

// Options tune the conversion.
type Options struct {
	// Schedulers lists the scheduler names lbd accepts; empty means the
	// running lbd's (config.Schedulers). Least-connection schedulers map
	// to lc/wlc only when this list has them.
	Schedulers []string
	// ConfigID is keepalived's config id (-i): `@ConfigID` lines are
	// kept, `@^ConfigID` lines dropped. Empty: every conditional line is
	// skipped with a warning.
	ConfigID string
}

func (o Options) has(s string) bool {
	list := o.Schedulers
	if len(list) == 0 {
		list = config.Schedulers
	}
	return slices.Contains(list, s)
}

// converter collects warnings while building a Result.
type converter struct {
	opt Options
	res *Result
}

func (c *converter) warn(p Pos, format string, args ...any) {
	c.res.Warnings = append(c.res.Warnings, Warning{Pos: p, Msg: fmt.Sprintf(format, args...)})
}
