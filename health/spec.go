package health

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Type names a kind of health check; the values are the config spellings.
type Type string

// Check types.
const (
	TypeTCP   Type = "tcp"
	TypeHTTP  Type = "http"
	TypeHTTPS Type = "https"
	TypeUDP   Type = "udp"
	TypeExec  Type = "exec"
	TypeNone  Type = "none"
)

// Types lists every check type, in the order messages name them.
var Types = []Type{TypeTCP, TypeHTTP, TypeHTTPS, TypeUDP, TypeExec, TypeNone}

// Defaults applied by Normalize to unset (zero) fields. These are the
// defaults lb.toml documents; config takes them from here.
const (
	DefaultType     = TypeTCP
	DefaultInterval = 2 * time.Second
	DefaultTimeout  = 1 * time.Second
	DefaultRise     = 2
	DefaultFall     = 3
	DefaultPath     = "/"
)

// Bounds of a spec: Problems refuses values outside them.
const (
	MinInterval = 10 * time.Millisecond
	MaxRiseFall = 100
)

// DefaultExpectStatus is what an http(s) check accepts when ExpectStatus is
// empty: any success or redirect, as keepalived and HAProxy do. A function,
// not a variable, so no caller can change the default for everyone.
func DefaultExpectStatus() []StatusRange { return []StatusRange{{Min: 200, Max: 399}} }

// StatusRange is an inclusive range of HTTP status codes; a single code is
// a range with Min == Max.
type StatusRange struct {
	Min, Max int
}

// Contains reports whether code lies in the range.
func (r StatusRange) Contains(code int) bool { return code >= r.Min && code <= r.Max }

func (r StatusRange) String() string {
	if r.Min == r.Max {
		return fmt.Sprint(r.Min)
	}
	return fmt.Sprintf("%d-%d", r.Min, r.Max)
}

// Spec is one health check definition. The zero value of every field
// except Type means "default"; call Normalize to make defaults explicit.
type Spec struct {
	Type Type
	// Port overrides the backend port for the check; 0 = backend port.
	Port uint16

	Interval time.Duration // between check starts
	Timeout  time.Duration // bound on one whole check
	Rise     int           // consecutive passes to go up
	Fall     int           // consecutive failures to go down

	// http / https
	Path          string
	Host          string // Host header (and SNI fallback); empty = backend address
	ExpectStatus  []StatusRange
	ExpectBody    string // substring of the first 64 KiB of the body
	TLSSkipVerify bool
	SNI           string

	// udp
	Payload []byte
	Expect  string // substring the reply must contain; empty = any reply

	// exec: argv, run without a shell
	Command []string
}

// Normalize returns a copy of s with defaults filled in for zero fields
// (negative ones are left for Problems to refuse). Type is left as is:
// which check fits a service is the integrator's decision (lb.toml's is
// DefaultType). The default timeout never exceeds the interval: a check
// every 500ms gets a 500ms timeout, not 1s.
func (s Spec) Normalize() Spec {
	if s.Interval == 0 {
		s.Interval = DefaultInterval
	}
	if s.Timeout == 0 {
		s.Timeout = min(DefaultTimeout, s.Interval)
	}
	if s.Rise == 0 {
		s.Rise = DefaultRise
	}
	if s.Fall == 0 {
		s.Fall = DefaultFall
	}
	if s.Type == TypeHTTP || s.Type == TypeHTTPS {
		if s.Path == "" {
			s.Path = DefaultPath
		}
		if len(s.ExpectStatus) == 0 {
			s.ExpectStatus = DefaultExpectStatus()
		}
	}
	return s
}

// Problem is one thing wrong with a spec. Key is the lb.toml key name, so
// config can point at the line that has it.
type Problem struct {
	Key string
	Msg string
}

func (p Problem) Error() string { return p.Key + ": " + p.Msg }

// Validate reports every problem of a normalized spec, joined, each as
// "key: message".
func (s Spec) Validate() error {
	var errs []error
	for _, p := range s.Problems() {
		errs = append(errs, p)
	}
	return errors.Join(errs...)
}

// Problems lists everything wrong with a normalized spec, in key order.
// This is the one place the rules of a health check live: lbd check and
// the monitor both use it.
func (s Spec) Problems() []Problem {
	var ps []Problem
	bad := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	switch {
	case s.Type == "":
		bad("type", "missing; expected one of %s", typeList())
	case !slices.Contains(Types, s.Type):
		bad("type", "unknown check type %q; expected one of %s", string(s.Type), typeList())
	}
	if s.Interval < MinInterval {
		bad("interval", "%s is too short; expected at least %s", s.Interval, MinInterval)
	}
	// A timeout longer than the interval is allowed here (the monitor
	// never overlaps checks of one target); lb.toml refuses it as a
	// likely mistake, see config.
	if s.Timeout <= 0 {
		bad("timeout", "%s is not positive; expected a duration such as \"1s\"", s.Timeout)
	}
	if s.Rise < 1 || s.Rise > MaxRiseFall {
		bad("rise", "%d out of range; expected 1 to %d", s.Rise, MaxRiseFall)
	}
	if s.Fall < 1 || s.Fall > MaxRiseFall {
		bad("fall", "%d out of range; expected 1 to %d", s.Fall, MaxRiseFall)
	}
	isHTTP := s.Type == TypeHTTP || s.Type == TypeHTTPS
	if s.Path != "" && !strings.HasPrefix(s.Path, "/") {
		bad("path", "bad path %q; expected it to start with '/'", s.Path)
	}
	if !isHTTP && (s.Path != "" || s.Host != "" || len(s.ExpectStatus) > 0 || s.ExpectBody != "") {
		bad("type", "path/host/expect_status/expect_body need type = \"http\" or \"https\", not %q", string(s.Type))
	}
	for _, r := range s.ExpectStatus {
		if err := r.validate(); err != nil {
			bad("expect_status", "%v", err)
		}
	}
	if s.Type != TypeUDP && (len(s.Payload) > 0 || s.Expect != "") {
		bad("type", "payload/expect need type = \"udp\", not %q", string(s.Type))
	}
	if s.Type == TypeExec && (len(s.Command) == 0 || s.Command[0] == "") {
		bad("command", "an exec check needs a program to run; expected an argv list such as [\"/usr/local/bin/check\", \"--fast\"]")
	}
	if s.Type != TypeExec && len(s.Command) > 0 {
		bad("command", "only used by type = \"exec\"")
	}
	return ps
}

func typeList() string {
	names := make([]string, len(Types))
	for i, t := range Types {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

func (r StatusRange) validate() error {
	if r.Min < 100 || r.Max > 599 {
		return fmt.Errorf("%s is outside 100-599", r)
	}
	if r.Min > r.Max {
		return fmt.Errorf("%s is an empty range (low > high)", r)
	}
	return nil
}
