// Package examples holds example lb.toml files and a Grafana dashboard;
// its tests keep them in step with the config schema and the metrics.
package examples

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"testing"

	"lbd/appliance/status"
	"lbd/config"
)

// TestExamplesParse: every example passes `lbd check` (config.Load is what
// it runs).
func TestExamplesParse(t *testing.T) {
	files, _ := filepath.Glob("*.toml")
	if len(files) < 5 {
		t.Fatalf("found %d examples, want lb.toml and the four per-case files", len(files))
	}
	for _, f := range files {
		cfg, err := config.Load(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if len(cfg.Services) == 0 {
			t.Errorf("%s: no services", f)
		}
	}
}

// TestExamplesCoverTheirCases: each per-case example shows what its name
// promises, so an edit cannot quietly drop the point of the file.
func TestExamplesCoverTheirCases(t *testing.T) {
	load := func(name string) *config.Config {
		cfg, err := config.Load(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return cfg
	}
	web := load("web-https.toml")
	if h := web.Services[0].Health; h == nil || h.Type != "https" || len(web.Services[0].Backends) < 2 {
		t.Errorf("web-https.toml: want a backend pair checked over https")
	}
	dns := load("dns-udp.toml")
	if s := dns.Services[0]; s.Protocol != "udp" || s.Port != 53 || s.Health == nil || s.Health.Type != "udp" || s.Health.Payload == "" {
		t.Errorf("dns-udp.toml: want a udp/53 service with a udp check sending a query")
	}
	v6 := load("ipv6.toml")
	if !v6.Services[0].VIPAddr.Is6() {
		t.Errorf("ipv6.toml: VIP is not IPv6")
	}
	p := load("protection.toml").Services[0]
	if !p.NewConnRate.IsSet() || !p.ClientRate.IsSet() || p.PerClientConnections == 0 || len(p.AllowPrefixes) == 0 || len(p.DenyPrefixes) == 0 || p.MaxConnections == 0 {
		t.Errorf("protection.toml: want rates, per-client limits, allow and deny")
	}
}

// metricNames reads the metric names lbd exports from the descriptors in
// appliance/httpstatus/metrics.go, the one place they are defined.
func metricNames(t *testing.T) map[string]bool {
	src, err := os.ReadFile(filepath.Join("..", "appliance", "httpstatus", "metrics.go"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`prometheus\.NewDesc\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"`).FindAllSubmatch(src, -1) {
		names[string(m[1])] = true
	}
	if len(names) < 10 {
		t.Fatalf("found only %d metric descriptors in metrics.go; has its form changed?", len(names))
	}
	return names
}

// queries collects every PromQL string in the dashboard: panel and
// annotation "expr" fields and template "query"/"definition" strings.
func queries(v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && (k == "expr" || k == "definition" || (k == "query" && regexp.MustCompile(`lbd_`).MatchString(s))) {
				*out = append(*out, s)
			}
			queries(e, out)
		}
	case []any:
		for _, e := range x {
			queries(e, out)
		}
	}
}

func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	var qs []string
	queries(dash, &qs)
	if len(qs) < 10 {
		t.Fatalf("only %d queries found", len(qs))
	}
	known := metricNames(t)
	used := map[string]bool{}
	metricRE := regexp.MustCompile(`\blbd_[a-z0-9_]+`)
	stateRE := regexp.MustCompile(`state="([a-z]+)"`)
	states := []string{status.StateUp, status.StateDown, status.StateDrain, status.StateUnchecked}
	for _, q := range qs {
		for _, m := range metricRE.FindAllString(q, -1) {
			used[m] = true
			if !known[m] {
				t.Errorf("query uses %s, which metrics.go does not export: %s", m, q)
			}
		}
		for _, m := range stateRE.FindAllStringSubmatch(q, -1) {
			if !slices.Contains(states, m[1]) {
				t.Errorf("query selects backend state %q, not one of %v: %s", m[1], states, q)
			}
		}
	}
	// The panels the dashboard promises, by the metric each one needs.
	for _, m := range []string{"lbd_service_packets_total", "lbd_backend_active_connections", "lbd_backend_state",
		"lbd_service_refused_total", "lbd_reloads_total", "lbd_sync_in_sync", "lbd_sync_failures_total",
		"lbd_conntrack_entries", "lbd_conntrack_max"} {
		if !used[m] {
			t.Errorf("no panel queries %s", m)
		}
	}
	// Grafana refuses a dashboard whose panels share an id.
	ids := map[float64]bool{}
	panels, _ := dash["panels"].([]any)
	for _, p := range panels {
		pm := p.(map[string]any)
		id, _ := pm["id"].(float64)
		if ids[id] {
			t.Errorf("panel id %v used twice", id)
		}
		ids[id] = true
		if pm["type"] != "row" {
			if tg, _ := pm["targets"].([]any); len(tg) == 0 {
				t.Errorf("panel %q has no query", pm["title"])
			}
		}
	}
	var names []string
	for m := range used {
		names = append(names, m)
	}
	sort.Strings(names)
	t.Logf("dashboard queries %d metrics: %v", len(names), names)
}
