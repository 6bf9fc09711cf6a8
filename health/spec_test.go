package health

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNormalizeFillsDefaults(t *testing.T) {
	got := Spec{Type: TypeHTTP}.Normalize()
	want := Spec{Type: TypeHTTP, Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3,
		Path: "/", ExpectStatus: []StatusRange{{200, 399}}}
	if got.Interval != want.Interval || got.Timeout != want.Timeout || got.Rise != want.Rise ||
		got.Fall != want.Fall || got.Path != want.Path || !slices.Equal(got.ExpectStatus, want.ExpectStatus) {
		t.Errorf("Normalize() = %+v, want %+v", got, want)
	}
	// Set values survive, and tcp gets no http defaults.
	got = Spec{Type: TypeTCP, Interval: time.Second, Rise: 5}.Normalize()
	if got.Interval != time.Second || got.Rise != 5 || got.Fall != 3 || got.Path != "" || got.ExpectStatus != nil {
		t.Errorf("Normalize(tcp) = %+v", got)
	}
}

func TestNormalizeDoesNotAliasDefaultRanges(t *testing.T) {
	s := Spec{Type: TypeHTTP}.Normalize()
	s.ExpectStatus[0].Max = 200
	if got := (Spec{Type: TypeHTTP}).Normalize().ExpectStatus; got[0].Max != 399 {
		t.Fatalf("editing one normalized spec changed the default: %v", got)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want string // substring of the error; "" = valid
	}{
		{"tcp defaults", Spec{Type: TypeTCP}, ""},
		{"none", Spec{Type: TypeNone}, ""},
		{"exec", Spec{Type: TypeExec, Command: []string{"/bin/true"}}, ""},
		{"missing type", Spec{}, "type: missing"},
		{"unknown type", Spec{Type: "icmp"}, `type: unknown check type "icmp"`},
		{"exec without command", Spec{Type: TypeExec}, "command:"},
		{"path without slash", Spec{Type: TypeHTTP, Path: "healthz"}, "path:"},
		{"bad range", Spec{Type: TypeHTTPS, ExpectStatus: []StatusRange{{399, 200}}}, "expect_status: 399-200 is an empty range"},
		{"out of range", Spec{Type: TypeHTTP, ExpectStatus: []StatusRange{{200, 700}}}, "outside 100-599"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Normalize().Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := Spec{Type: TypeHTTP, Path: "x", Rise: -1, Interval: -1}.Validate()
	for _, want := range []string{"interval:", "timeout:", "rise:", "fall:", "path:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}

func TestKey(t *testing.T) {
	addr := netip.MustParseAddrPort("192.0.2.11:8080")
	other := netip.MustParseAddrPort("192.0.2.12:8080")
	http := Spec{Type: TypeHTTP, Path: "/healthz"}
	exec := Spec{Type: TypeExec, Command: []string{"/bin/check"}}
	tests := []struct {
		name string
		a, b Target
		same bool
	}{
		{"same check, other service", Target{"web", addr, http, ""}, Target{"api", addr, http, ""}, true},
		{"defaults spelled out", Target{"web", addr, Spec{Type: TypeHTTP}, ""},
			Target{"web", addr, Spec{Type: TypeHTTP, Path: "/", Interval: 2 * time.Second, Timeout: time.Second,
				Rise: 2, Fall: 3, ExpectStatus: []StatusRange{{200, 399}}}, ""}, true},
		{"initial state does not matter", Target{"web", addr, http, StateUp}, Target{"web", addr, http, StateDown}, true},
		{"other backend", Target{"web", addr, http, ""}, Target{"web", other, http, ""}, false},
		{"port override", Target{"web", addr, http, ""}, Target{"web", addr, Spec{Type: TypeHTTP, Path: "/healthz", Port: 9000}, ""}, false},
		{"other path", Target{"web", addr, http, ""}, Target{"web", addr, Spec{Type: TypeHTTP, Path: "/"}, ""}, false},
		{"other fall", Target{"web", addr, http, ""}, Target{"web", addr, Spec{Type: TypeHTTP, Path: "/healthz", Fall: 5}, ""}, false},
		{"exec differs per service", Target{"web", addr, exec, ""}, Target{"api", addr, exec, ""}, false},
		{"exec same service", Target{"web", addr, exec, ""}, Target{"web", addr, exec, ""}, true},
		{"strings cannot collide by shifting", Target{"web", addr, Spec{Type: TypeHTTP, Path: "/a", Host: "b"}, ""},
			Target{"web", addr, Spec{Type: TypeHTTP, Path: "/a b", Host: ""}, ""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ka, kb := tt.a.Key(), tt.b.Key()
			if (ka == kb) != tt.same {
				t.Errorf("keys %q and %q: equal = %v, want %v", ka, kb, ka == kb, tt.same)
			}
		})
	}
}

func TestCheckAddrAppliesPortOverride(t *testing.T) {
	tg := Target{Addr: netip.MustParseAddrPort("[2001:db8::1]:80"), Spec: Spec{Port: 8081}}
	if got := tg.CheckAddr().String(); got != "[2001:db8::1]:8081" {
		t.Errorf("CheckAddr() = %s", got)
	}
	tg.Spec.Port = 0
	if got := tg.CheckAddr().String(); got != "[2001:db8::1]:80" {
		t.Errorf("CheckAddr() = %s", got)
	}
}

func TestFirstDelaySpreadsOverInterval(t *testing.T) {
	const interval = 2 * time.Second
	seen := map[time.Duration]bool{}
	for i := range 50 {
		key := Target{Service: "web", Addr: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(8000+i)),
			Spec: Spec{Type: TypeTCP}}.Key()
		d := firstDelay(key, interval)
		if d < 0 || d >= interval {
			t.Fatalf("firstDelay = %s, want within [0, %s)", d, interval)
		}
		if d != firstDelay(key, interval) {
			t.Fatal("firstDelay is not deterministic")
		}
		seen[d] = true
	}
	if len(seen) < 45 {
		t.Errorf("50 keys got only %d distinct delays: not spread", len(seen))
	}
}
