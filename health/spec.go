package health

import (
	"errors"
	"fmt"
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

// Defaults applied by Normalize to unset (zero) fields.
const (
	DefaultInterval = 2 * time.Second
	DefaultTimeout  = 1 * time.Second
	DefaultRise     = 2
	DefaultFall     = 3
	DefaultPath     = "/"
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

// Normalize returns a copy of s with defaults filled in. Type is left as is:
// which check fits a service (tcp for a TCP service, udp for UDP) is the
// integrator's decision.
func (s Spec) Normalize() Spec {
	if s.Interval <= 0 {
		s.Interval = DefaultInterval
	}
	if s.Timeout <= 0 {
		s.Timeout = DefaultTimeout
	}
	if s.Rise <= 0 {
		s.Rise = DefaultRise
	}
	if s.Fall <= 0 {
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

// Validate reports every problem of a normalized spec, joined. Field names
// in messages are the config key names, so the integrator can show them as is.
func (s Spec) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch s.Type {
	case TypeTCP, TypeHTTP, TypeHTTPS, TypeUDP, TypeExec, TypeNone:
	case "":
		bad("type: missing, expected one of tcp, http, https, udp, exec, none")
	default:
		bad("type: %q is unknown, expected one of tcp, http, https, udp, exec, none", string(s.Type))
	}
	if s.Interval <= 0 {
		bad("interval: must be > 0, got %s", s.Interval)
	}
	if s.Timeout <= 0 {
		bad("timeout: must be > 0, got %s", s.Timeout)
	}
	if s.Rise < 1 {
		bad("rise: must be >= 1, got %d", s.Rise)
	}
	if s.Fall < 1 {
		bad("fall: must be >= 1, got %d", s.Fall)
	}
	if s.Type == TypeHTTP || s.Type == TypeHTTPS {
		if !strings.HasPrefix(s.Path, "/") {
			bad("path: %q must start with /", s.Path)
		}
		for _, r := range s.ExpectStatus {
			if err := r.validate(); err != nil {
				bad("expect_status: %w", err)
			}
		}
	}
	if s.Type == TypeExec && (len(s.Command) == 0 || s.Command[0] == "") {
		bad("command: an exec check needs a program to run")
	}
	return errors.Join(errs...)
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
