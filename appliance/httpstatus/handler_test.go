package httpstatus

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"lbd/appliance/status"
)

// server serves Handler over a snapshot the test can change between requests.
type server struct {
	mu   sync.Mutex
	snap status.Snapshot
	*httptest.Server
}

func newServer(t *testing.T) *server {
	t.Helper()
	s := &server{snap: fixedSnapshot()}
	h, err := Handler(func() status.Snapshot {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.snap
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Server = httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func (s *server) get(t *testing.T, path string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(s.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestEncodeJSONFormat(t *testing.T) {
	var b bytes.Buffer
	if err := EncodeJSON(&b, fixedSnapshot()); err != nil {
		t.Fatal(err)
	}
	want, _ := json.MarshalIndent(fixedSnapshot(), "", "  ")
	if b.String() != string(want)+"\n" {
		t.Errorf("EncodeJSON is not MarshalIndent(two spaces)+newline:\n%s", b.String())
	}
	if !strings.Contains(b.String(), "\n  \"hostname\": \"lb-1\",\n") {
		t.Errorf("not indented by two spaces:\n%.200s", b.String())
	}
}

func TestStatusJSONEqualsEncodeJSON(t *testing.T) {
	s := newServer(t)
	resp, body := s.get(t, "/status.json")
	var want bytes.Buffer
	if err := EncodeJSON(&want, fixedSnapshot()); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !bytes.Equal(body, want.Bytes()) {
		t.Errorf("status %d, body differs from EncodeJSON:\n%s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var back status.Snapshot
	if err := json.Unmarshal(body, &back); err != nil || back.Services[0].Backends[1].State != status.StateDown {
		t.Errorf("round trip: %v, %+v", err, back.Services)
	}
}

func parseMetrics(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse as Prometheus text: %v\n%s", err, body)
	}
	return mfs
}

// value finds the sample of family name whose labels include all of want.
func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("metric %s missing", name)
	}
next:
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s sample with labels %v", name, want)
	return 0
}

func TestMetricsCarryBackendStates(t *testing.T) {
	s := newServer(t)
	resp, body := s.get(t, "/metrics")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	mfs := parseMetrics(t, body)
	web := func(backend string, extra ...string) map[string]string {
		m := map[string]string{"service": "web", "backend": backend}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"lbd_up", nil, 1},
		{"lbd_build_info", map[string]string{"version": "v0.4.0"}, 1},
		{"lbd_backend_up", web("192.0.2.11:8080"), 1},
		{"lbd_backend_up", web("192.0.2.12:8080"), 0},
		{"lbd_backend_up", web("192.0.2.13:8080"), 0},
		{"lbd_backend_state", web("192.0.2.11:8080", "state", "up"), 1},
		{"lbd_backend_state", web("192.0.2.11:8080", "state", "down"), 0},
		{"lbd_backend_state", web("192.0.2.12:8080", "state", "down"), 1},
		{"lbd_backend_state", web("192.0.2.12:8080", "state", "up"), 0},
		{"lbd_backend_state", web("192.0.2.13:8080", "state", "drain"), 1},
		{"lbd_backend_state", map[string]string{"backend": "[2001:db8:2::11]:53", "state": "unchecked"}, 1},
		{"lbd_backend_active_connections", web("192.0.2.11:8080"), 31},
		{"lbd_backend_weight", web("192.0.2.13:8080"), 0},
		{"lbd_backend_connections_total", web("192.0.2.11:8080"), 812},
		{"lbd_backend_packets_total", web("192.0.2.11:8080", "direction", "in"), 9100},
		{"lbd_backend_packets_total", web("192.0.2.11:8080", "direction", "out"), 12050},
		{"lbd_backend_bytes_total", web("192.0.2.11:8080", "direction", "in"), 1048576},
		{"lbd_backend_bytes_total", web("192.0.2.11:8080", "direction", "out"), 16777216},
		{"lbd_backend_bytes_total", web("192.0.2.12:8080", "direction", "out"), 0},
		{"lbd_backend_check_duration_seconds", web("192.0.2.12:8080"), 0.0042},
		{"lbd_backend_checks_total", web("192.0.2.12:8080", "result", "failed"), 9},
		{"lbd_backend_checks_total", web("192.0.2.11:8080", "result", "passed"), 100},
		{"lbd_service_packets_total", map[string]string{"service": "web"}, 1234},
		{"lbd_service_bytes_total", map[string]string{"service": "web"}, 567890},
		{"lbd_service_refused_total", map[string]string{"service": "web", "reason": "no_backend"}, 3},
		{"lbd_service_refused_total", map[string]string{"service": "web", "reason": "rate"}, 12},
		{"lbd_service_refused_total", map[string]string{"service": "web", "reason": "denied"}, 0},
		{"lbd_service_info", map[string]string{"service": "web", "vip": "198.51.100.10", "port": "80", "protocol": "tcp", "scheduler": "rr"}, 1},
		{"lbd_reloads_total", map[string]string{"result": "ok"}, 3},
		{"lbd_reloads_total", map[string]string{"result": "failed"}, 1},
		{"lbd_config_last_reload_successful", nil, 0},
		{"lbd_sync_failures_total", nil, 4},
		{"lbd_sync_in_sync", nil, 0},
		{"lbd_sync_out_of_sync_since_timestamp_seconds", nil, 1700000000},
		{"lbd_syncs_total", nil, 17},
		{"lbd_conntrack_entries", nil, 240000},
		{"lbd_conntrack_max", nil, 262144},
		{"lbd_interface_up", map[string]string{"interface": "lan"}, 0},
		{"lbd_interface_up", map[string]string{"interface": "wan"}, 1},
	} {
		if got := value(t, mfs, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// One-hot: each backend has exactly one state at 1.
	per := map[string]float64{}
	for _, m := range mfs["lbd_backend_state"].GetMetric() {
		var key string
		for _, l := range m.GetLabel() {
			if l.GetName() != "state" {
				key += l.GetValue() + "|"
			}
		}
		per[key] += m.GetGauge().GetValue()
	}
	if len(per) != 4 {
		t.Errorf("lbd_backend_state covers %d backends, want 4", len(per))
	}
	for k, v := range per {
		if v != 1 {
			t.Errorf("backend %s has %v states at 1", k, v)
		}
	}
	if _, ok := mfs["go_goroutines"]; !ok {
		t.Error("Go runtime metrics missing")
	}
}

// Metrics reflect the snapshot at scrape time, not at registration.
func TestMetricsReadSnapshotAtScrape(t *testing.T) {
	s := newServer(t)
	s.mu.Lock()
	s.snap.Services[0].Backends[1].State = status.StateUp
	s.snap.Reloads.OK = 4
	s.mu.Unlock()
	_, body := s.get(t, "/metrics")
	mfs := parseMetrics(t, body)
	if v := value(t, mfs, "lbd_backend_up", map[string]string{"backend": "192.0.2.12:8080"}); v != 1 {
		t.Errorf("backend still down after the snapshot changed: %v", v)
	}
	if v := value(t, mfs, "lbd_reloads_total", map[string]string{"result": "ok"}); v != 4 {
		t.Errorf("reloads ok = %v, want 4", v)
	}
}

func TestMetricsLint(t *testing.T) {
	problems, err := testutil.CollectAndLint(NewCollector(fixedSnapshot))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// A duplicated service or backend (config validation should prevent it)
// must not break the whole scrape.
func TestMetricsSurviveDuplicates(t *testing.T) {
	snap := fixedSnapshot()
	snap.Services = append(snap.Services, snap.Services[0])
	snap.Services[0].Backends = append(snap.Services[0].Backends, snap.Services[0].Backends[0])
	if n, err := testutil.GatherAndCount(mustRegistry(t, snap), "lbd_backend_up"); err != nil || n != 4 {
		t.Errorf("gather with duplicates: %d samples, %v; want 4, nil", n, err)
	}
}

func TestPage(t *testing.T) {
	s := newServer(t)
	resp, body := s.get(t, "/")
	page := string(body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`<noscript><meta http-equiv="refresh" content="2"></noscript>`, `data-refresh="2"`,
		"lb-1", "lbd v0.4.0", "up 3h 0m",
		"last reload FAILED", "/config/lb.toml:14:8: service.port: 70000 out of range",
		"WARNING: NAT table nearly full", "conntrack table 92% full",
		`<td class="up">up</td>`, `<td class="down">DOWN</td>`, "lease until 2026-11-26 11:00:00Z",
		`198.51.100.10:80/tcp <span class="dim">rr snat</span>`, `<span class="badge up">1/3 up</span>`,
		// unchecked backends serve: the v6 service is up, not "0/1"
		`<span class="badge up">1/1 up</span>`, "THROTTLED 100/s",
		"new flows 1234 · first-packet bytes 567890",
		"limits: new 500/s burst 100 · max 1000 conns · per client 20/s · deny 203.0.113.0/24",
		"31/500", `<tr class="note"><td></td><td colspan="5" class="warn">lbd drain 3m 0s, flush in 2m 0s</td></tr>`,
		`<div class="banner" id="sync">kernel out of sync since 2023-11-14 22:13:20Z`, "4 failed applies, retrying: netlink: no buffer space",
		`<td class="up">up</td>`, `<td class="down">down</td>`, `<td class="drain">drain</td>`, `<td class="unchecked">unchecked</td>`,
		"192.0.2.12:8080", "status 503", "4.2ms", "[2001:db8::53]:53/udp",
		"refused: no_backend 3 rate 12",
		"&lt;script&gt;alert(1)&lt;/script&gt;",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>alert") {
		t.Error("service name not escaped")
	}
	if strings.Contains(page, "! kernel out of sync") {
		t.Error("out-of-sync warning repeated under the banner")
	}
	if strings.Contains(page, "pkts") {
		t.Error(`first packets of new flows labelled as traffic ("pkts")`)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", resp.Header.Get("Cache-Control"))
	}
}

func TestRoutes(t *testing.T) {
	s := newServer(t)
	if resp, _ := s.get(t, "/nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/nope: %d, want 404", resp.StatusCode)
	}
	resp, err := http.Post(s.URL+"/status.json", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /status.json: %d, want 405", resp.StatusCode)
	}
	head, err := http.Head(s.URL + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	if head.StatusCode != 200 {
		t.Errorf("HEAD /status.json: %d", head.StatusCode)
	}
}

func TestHandlerRejectsConflictingCollector(t *testing.T) {
	_, err := Handler(fixedSnapshot, NewCollector(fixedSnapshot))
	if err == nil || !strings.Contains(err.Error(), "register metrics") {
		t.Errorf("err = %v, want a registration error", err)
	}
}

func mustRegistry(t *testing.T, snap status.Snapshot) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(NewCollector(func() status.Snapshot { return snap })); err != nil {
		t.Fatal(err)
	}
	return reg
}
