package status

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// fullSnapshot sets every field to a non-zero value, so the encoding test
// sees every key that a running daemon can emit.
func fullSnapshot() Snapshot {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	return Snapshot{
		Hostname: "lb1", Version: "1.2.3", StartedAt: t0, Now: t0.Add(time.Hour),
		Config: Config{Path: "/etc/lbd/lb.toml", LoadedAt: t0.Add(time.Minute), LastError: "lb.toml:3:1: bad",
			LastErrors: []string{"lb.toml:3:1: bad", "lb.toml:9:2: worse"}, Source: "/var/lib/lbd/last-good.toml"},
		Services: []Service{{
			Name: "web", VIP: "203.0.113.10", Port: 80, Protocol: "tcp", Scheduler: "rr", SNAT: true, Slots: 64,
			Packets: 10, Bytes: 1000, Throttle: "200/s",
			Refused: Refusals{NoBackend: 1, MaxConnections: 2, Rate: 3, PerClientRate: 4, PerClientConns: 5, Denied: 6, ThrottleRefused: 7},
			Backends: []Backend{{Address: "192.0.2.11:8080", Weight: 2, Backup: true, State: StateUp, ActiveConnections: 3,
				Slots: 32, LastCheck: "ok", LastCheckLatency: 0.5, LastTransition: t0, ChecksPassed: 9, ChecksFailed: 1}},
		}},
		NICs: []NIC{{Name: "wan", Device: "eth0", MAC: "52:54:00:00:00:01", LinkUp: true, Addresses: []string{"198.51.100.2/24"},
			DHCP: true, LeaseExpiry: t0.Add(2 * time.Hour)}},
		Conntrack: Conntrack{Count: 5, Max: 100},
		Reloads:   ReloadStats{OK: 1, Failed: 2, LastAt: t0},
		Warnings:  []string{"w"},
	}
}

func keysOf(t *testing.T, v any) []string {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%T is not a JSON object", v)
	}
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func decode(t *testing.T, s Snapshot) map[string]any {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestJSONKeys pins the key names of every object in the document: they
// are the interface of `lbd status --json` and /status.json, which scripts
// and monitoring read, so a renamed Go field must not rename or drop a key.
// New keys may appear (readers ignore what they do not know), but every key
// must be snake_case: a field added without a json tag would show up as
// "LastError" beside "last_error".
func TestJSONKeys(t *testing.T) {
	m := decode(t, fullSnapshot())
	svc := m["services"].([]any)[0].(map[string]any)
	for _, c := range []struct {
		name string
		obj  any
		want string
	}{
		{"snapshot", m, "config conntrack hostname interfaces now reloads services started_at version warnings"},
		{"config", m["config"], "last_error last_errors loaded_at path source"},
		{"service", svc, "backends bytes name packets port protocol refused scheduler slots snat throttle vip"},
		{"refused", svc["refused"], "denied max_connections no_backend per_client_connections per_client_rate rate throttle"},
		{"backend", svc["backends"].([]any)[0], "active_connections address backup checks_failed checks_passed last_check last_check_latency_seconds last_transition slots state weight"},
		{"interface", m["interfaces"].([]any)[0], "addresses device dhcp lease_expiry link_up mac name"},
		{"conntrack", m["conntrack"], "count max"},
		{"reloads", m["reloads"], "failed last_at ok"},
	} {
		have := map[string]bool{}
		for _, k := range keysOf(t, c.obj) {
			have[k] = true
			if !snakeCase(k) {
				t.Errorf("%s key %q is not snake_case (missing json tag?)", c.name, k)
			}
		}
		for _, k := range strings.Fields(c.want) {
			if !have[k] {
				t.Errorf("%s lacks key %q", c.name, k)
			}
		}
	}
	cfg := m["config"].(map[string]any)
	if cfg["path"] != "/etc/lbd/lb.toml" || cfg["loaded_at"] != "2024-05-01T12:01:00Z" || cfg["last_error"] != "lb.toml:3:1: bad" {
		t.Errorf("config = %v", cfg)
	}
}

func snakeCase(k string) bool {
	for _, r := range k {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return k != ""
}

// TestJSONHealthyConfig checks what a reader sees when nothing went wrong:
// last_error is present and empty (readers test it without checking for
// the key), the optional lists are absent, and services is [] not null.
func TestJSONHealthyConfig(t *testing.T) {
	s := Snapshot{Config: Config{Path: "/etc/lbd/lb.toml"}, Services: []Service{}}
	m := decode(t, s)
	cfg := m["config"].(map[string]any)
	if v, ok := cfg["last_error"]; !ok || v != "" {
		t.Errorf("last_error = %v (present %v), want present and empty", v, ok)
	}
	for _, k := range []string{"last_errors", "source"} {
		if _, ok := cfg[k]; ok {
			t.Errorf("config.%s present on a clean load", k)
		}
	}
	for _, k := range []string{"interfaces", "warnings"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s present although empty", k)
		}
	}
	if svcs, ok := m["services"].([]any); !ok || len(svcs) != 0 {
		t.Errorf("services = %#v, want []", m["services"])
	}
}

// TestZeroTimesOmitted: fields tagged omitempty that hold a time.Time
// ("last_at", "last_transition", "lease_expiry") are meant to vanish when
// unset. encoding/json never treats a struct as empty, so omitempty alone
// prints "0001-01-01T00:00:00Z" instead (a reload that never happened
// shown as year 1); omitzero is what drops them.
func TestZeroTimesOmitted(t *testing.T) {
	s := Snapshot{
		Services: []Service{{Name: "web", Backends: []Backend{{Address: "192.0.2.11:80", State: StateUnchecked}}}},
		NICs:     []NIC{{Name: "lan"}},
	}
	m := decode(t, s)
	if _, ok := m["reloads"].(map[string]any)["last_at"]; ok {
		t.Error("reloads.last_at present although no reload happened")
	}
	if _, ok := m["services"].([]any)[0].(map[string]any)["backends"].([]any)[0].(map[string]any)["last_transition"]; ok {
		t.Error("backend last_transition present although it never changed state")
	}
	if _, ok := m["interfaces"].([]any)[0].(map[string]any)["lease_expiry"]; ok {
		t.Error("interface lease_expiry present although it holds no lease")
	}
}

// TestJSONRoundTrip: the client side (`lbd status`, `lbd console`) decodes
// what the daemon encoded; nothing may be lost on the way.
func TestJSONRoundTrip(t *testing.T) {
	in := fullSnapshot()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Snapshot
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip changed the snapshot:\n in %+v\nout %+v", in, out)
	}
}

// TestStateValues pins the words users and scripts match on.
func TestStateValues(t *testing.T) {
	got := []string{StateUp, StateDown, StateDrain, StateUnchecked}
	want := []string{"up", "down", "drain", "unchecked"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("states = %q, want %q", got, want)
	}
	m := decode(t, Snapshot{Services: []Service{{Backends: []Backend{{State: StateDrain}}}}})
	if st := m["services"].([]any)[0].(map[string]any)["backends"].([]any)[0].(map[string]any)["state"]; st != "drain" {
		t.Errorf("state encodes as %v, want drain", st)
	}
}

func TestConntrackHigh(t *testing.T) {
	for _, c := range []struct {
		count, max int
		high       bool
	}{
		{89, 100, false}, {90, 100, true}, {100, 100, true}, {150, 100, true},
		// Unknown size: never high, however many entries.
		{0, 0, false}, {1000, 0, false}, {5, -1, false},
		// The default table (262144): 90% is 235929.6, so the first high
		// count is 235930; rounding down would warn one entry early.
		{235929, 262144, false}, {235930, 262144, true},
	} {
		if got := (Conntrack{Count: c.count, Max: c.max}).High(); got != c.high {
			t.Errorf("Conntrack{%d, %d}.High() = %v, want %v", c.count, c.max, got, c.high)
		}
	}
	if ConntrackWarnPercent != 90 {
		t.Errorf("ConntrackWarnPercent = %d; README promises a warning over 90%%", ConntrackWarnPercent)
	}
}

func TestConntrackPercent(t *testing.T) {
	for _, c := range []struct {
		count, max int
		want       float64
	}{{0, 100, 0}, {45, 100, 45}, {1, 3, 100.0 / 3}, {200, 100, 200}, {7, 0, 0}, {7, -5, 0}} {
		if got := (Conntrack{Count: c.count, Max: c.max}).Percent(); got != c.want {
			t.Errorf("Conntrack{%d, %d}.Percent() = %v, want %v", c.count, c.max, got, c.want)
		}
	}
}
