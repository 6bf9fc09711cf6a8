package config

import (
	"errors"
	"math"
	"math/bits"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The fuzz targets here check the parser alone; daemon/fuzz_kernel_test.go
// applies what it accepts to a real kernel. Seeds live in
// testdata/fuzz/<Target>/ and are replayed by every plain `go test`.

// parseBound is a hang detector, not a performance assertion: one input
// of a few kilobytes parses in microseconds, so an input that takes this
// long is stuck in a loop.
const parseBound = 10 * time.Second

// located is what every config error must look like: FILE:LINE:COL: then
// a key path or the TOML parser's message.
var located = regexp.MustCompile(`^fuzz\.toml:[0-9]+:[0-9]+: `)

func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseBounded(t, data)
		if err != nil {
			checkErrors(t, data, err)
			return
		}
		checkAccepted(t, data, cfg)
		// Parsing is a pure function of the text: a second parse must give
		// the same config (no state kept between parses, no map order).
		again, err := Parse("fuzz.toml", data)
		if err != nil || !reflect.DeepEqual(cfg, again) {
			t.Fatalf("second parse differs (err %v)\n%s", err, data)
		}
	})
}

func parseBounded(t *testing.T, data []byte) (*Config, error) {
	type result struct {
		cfg *Config
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := Parse("fuzz.toml", data)
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		return r.cfg, r.err
	case <-time.After(parseBound):
		t.Fatalf("Parse did not return within %s (hang)\n%q", parseBound, data)
		return nil, nil
	}
}

// checkErrors asserts a refused file says where and why: an Errors value,
// each entry FILE:LINE:COL located inside the file.
func checkErrors(t *testing.T, data []byte, err error) {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) || len(errs) == 0 {
		t.Fatalf("error is not a non-empty Errors: %T %v", err, err)
	}
	lines := strings.Count(string(data), "\n") + 1
	for _, e := range errs {
		msg := e.Error()
		if !located.MatchString(msg) {
			t.Fatalf("error without FILE:LINE:COL: %q\ninput: %q", msg, data)
		}
		if e.Pos.Line < 1 || e.Pos.Line > lines || e.Pos.Col < 1 {
			t.Fatalf("error position %d:%d outside the %d-line input: %q\ninput: %q", e.Pos.Line, e.Pos.Col, lines, msg, data)
		}
		if strings.TrimSpace(e.Msg) == "" {
			t.Fatalf("error with no message at %d:%d\ninput: %q", e.Pos.Line, e.Pos.Col, data)
		}
	}
}

// checkAccepted asserts the invariants every accepted config keeps. The
// kernel bounds are re-derived here from the kernel's own arithmetic (see
// kernel.go for the sources), not by calling the validator's helpers.
func checkAccepted(t *testing.T, data []byte, c *Config) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		args = append(args, data)
		t.Fatalf(format+"\ninput: %q", args...)
	}
	if c.Conntrack.Max < 0 || c.Conntrack.Max > 1<<26 {
		fail("conntrack.max %d accepted", c.Conntrack.Max)
	}
	for _, d := range []Duration{c.Conntrack.TCPEstablishedTimeout, c.Conntrack.TCPTimeWaitTimeout,
		c.Conntrack.TCPCloseWaitTimeout, c.Conntrack.TCPFinWaitTimeout, c.Conntrack.UDPTimeout, c.Conntrack.UDPStreamTimeout} {
		secs := (d.D() + time.Second - 1) / time.Second
		if d < 0 || int64(secs) > (1<<31-1)/1000 {
			fail("conntrack timeout %s accepted: more than the kernel's int jiffies hold", d.D())
		}
	}
	names := map[string]bool{}
	for _, s := range c.Services {
		if names[s.Name] || s.Name == "" {
			fail("service name %q empty or duplicate", s.Name)
		}
		names[s.Name] = true
		if !s.VIPAddr.IsValid() || s.VIPAddr.Zone() != "" || s.VIPAddr.Is4In6() {
			fail("service %q: VIP %v", s.Name, s.VIPAddr)
		}
		if s.Port < 1 || s.Port > 65535 {
			fail("service %q: port %d", s.Name, s.Port)
		}
		if s.Protocol != "tcp" && s.Protocol != "udp" {
			fail("service %q: protocol %q", s.Name, s.Protocol)
		}
		if !oneOf(s.Scheduler, Schedulers) {
			fail("service %q: scheduler %q", s.Name, s.Scheduler)
		}
		if s.Slots < 0 || s.Slots > MaxSlots {
			fail("service %q: slots %d", s.Name, s.Slots)
		}
		if len(s.Backends) == 0 {
			fail("service %q has no backend", s.Name)
		}
		if p := s.Persistence.D(); p < 0 || (p > 0 && p < time.Millisecond) {
			fail("service %q: persistence %s the kernel keeps as no timeout", s.Name, p)
		}
		for _, n := range []int{s.MaxConnections, s.PerClientConnections} {
			if n < 0 || n > 1<<32-1 {
				fail("service %q: connection limit %d", s.Name, n)
			}
		}
		for _, r := range []Rate{s.NewConnRate, s.ClientRate} {
			if !r.IsSet() {
				continue
			}
			if !kernelLimitOK(r, s.Burst) {
				fail("service %q: rate %s burst %d overflows the kernel's token bucket", s.Name, r, s.Burst)
			}
			if again, err := ParseRate(r.String()); err != nil || again != r {
				fail("rate %v does not round-trip: %v %v", r, again, err)
			}
		}
		if r := s.ClientRate; r.IsSet() && 2*bucketRefill(r, s.Burst) >= math.MaxInt64 {
			fail("service %q: per-client bucket timeout (2 x refill) of %s burst %d overflows a Duration", s.Name, r, s.Burst)
		}
		if s.Burst < 0 || s.Burst > 1<<32-1 {
			fail("service %q: burst %d", s.Name, s.Burst)
		}
		for _, h := range healthOf(&s) {
			if err := h.Spec().Validate(); err != nil {
				fail("service %q: accepted health check fails health.Spec.Validate: %v", s.Name, err)
			}
		}
		for _, b := range s.Backends {
			if !b.Addr.IsValid() || b.Addr.Port() == 0 || b.Addr.Addr().Zone() != "" || b.Addr.Addr().Is4In6() {
				fail("service %q: backend %v", s.Name, b.Addr)
			}
			if b.Addr.Addr().Is4() != s.VIPAddr.Is4() {
				fail("service %q: backend %v of another family than %v", s.Name, b.Addr, s.VIPAddr)
			}
			if w := b.EffectiveWeight(); w < 0 || w > MaxWeight {
				fail("service %q: weight %d", s.Name, w)
			}
		}
	}
}

func healthOf(s *Service) []*Health {
	var hs []*Health
	if s.Health != nil {
		hs = append(hs, s.Health)
	}
	for _, b := range s.Backends {
		if b.Health != nil {
			hs = append(hs, b.Health)
		}
	}
	return hs
}

// kernelLimitOK is nft_limit_init's arithmetic for a packet limit, written
// out again independently of the validator: rate*unit must not overflow,
// nor rate+burst, nor (unit_ns/rate)*burst (burst 0 means 5).
func kernelLimitOK(r Rate, burst int) bool {
	unit := map[string]uint64{"second": 1, "minute": 60, "hour": 3600}[r.Unit]
	nsecs := unit * 1e9
	b := uint64(burst)
	if b == 0 {
		b = 5
	}
	if r.N+b < r.N {
		return false
	}
	hi, _ := bits.Mul64(nsecs/r.N, b)
	return hi == 0
}

// bucketRefill is how lb sizes a per-client bucket's lifetime: the time an
// empty bucket takes to fill again, in float64 nanoseconds.
func bucketRefill(r Rate, burst int) float64 {
	unit := map[string]float64{"second": 1e9, "minute": 60e9, "hour": 3600e9}[r.Unit]
	if burst <= 0 {
		burst = 5
	}
	return unit * float64(burst) / float64(r.N)
}

func FuzzParseRate(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			if r.IsSet() {
				t.Fatalf("ParseRate(%q) failed but returned a set rate %v", s, r)
			}
			return
		}
		if r.N == 0 || r.N > 1<<32-1 {
			t.Fatalf("ParseRate(%q) = %d outside 1..2^32-1", s, r.N)
		}
		switch r.Unit {
		case "second", "minute", "hour":
		default:
			t.Fatalf("ParseRate(%q) unit %q", s, r.Unit)
		}
		if again, err := ParseRate(r.String()); err != nil || again != r {
			t.Fatalf("ParseRate(%q) = %v does not round-trip through %q: %v %v", s, r, r.String(), again, err)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			if !strings.Contains(err.Error(), "expected") {
				t.Fatalf("ParseDuration(%q) error does not say what is expected: %v", s, err)
			}
			return
		}
		if d < 0 {
			t.Fatalf("ParseDuration(%q) = %d, negative", s, d)
		}
		if again, err := ParseDuration(d.D().String()); err != nil || again != d {
			t.Fatalf("ParseDuration(%q) = %s does not round-trip: %v %v", s, d.D(), again, err)
		}
	})
}

// FuzzParseAddress covers the three address forms of lb.toml: a VIP, a
// backend address (with the service port as default) and a network in
// allow/deny/admin_networks.
func FuzzParseAddress(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string, defPort uint16) {
		if defPort == 0 {
			defPort = 80 // the validator never passes port 0 (service port is required)
		}
		if a, err := parseVIP(s); err == nil {
			if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
				t.Fatalf("parseVIP(%q) = %v", s, a)
			}
			if again, err := parseVIP(a.String()); err != nil || again != a {
				t.Fatalf("parseVIP(%q) = %v does not round-trip: %v %v", s, a, again, err)
			}
		}
		if ap, err := parseBackendAddr(s, int(defPort)); err == nil {
			if !ap.IsValid() || ap.Port() == 0 || ap.Addr().Zone() != "" || ap.Addr().Is4In6() {
				t.Fatalf("parseBackendAddr(%q) = %v: the kernel's DNAT takes a plain address and a non-zero port", s, ap)
			}
			if again, err := parseBackendAddr(ap.String(), 1); err != nil || again != ap {
				t.Fatalf("parseBackendAddr(%q) = %v does not round-trip: %v %v", s, ap, again, err)
			}
		} else if err.Error() == "" {
			t.Fatalf("parseBackendAddr(%q): empty error", s)
		}
		if p, err := parsePrefix(s); err == nil {
			if !p.IsValid() || p != p.Masked() {
				t.Fatalf("parsePrefix(%q) = %v, not a masked prefix", s, p)
			}
			if again, err := parsePrefix(p.String()); err != nil || again != p {
				t.Fatalf("parsePrefix(%q) = %v does not round-trip: %v %v", s, p, again, err)
			}
		}
	})
}
