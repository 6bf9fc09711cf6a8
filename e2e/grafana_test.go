package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"lbd/internal/lab"
)

// TestGrafanaDashboardQueriesOnPrometheus runs every query of
// examples/grafana-dashboard.json on a real Prometheus (Debian's) that
// scrapes a running lbd: a renamed metric or a broken expression shows up
// here, not on an operator's empty panel.
func TestGrafanaDashboardQueriesOnPrometheus(t *testing.T) {
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus not installed: make test installs it (TEST_DEBS)")
	}
	panels := dashboardQueries(t)
	e := newEnv(t, 2, 1)
	e.writeConfig(`[appliance]
status_listen = "192.0.2.1:9100"
` + svcHeader("web", lab.VIPv4, 7000, "") + fastHealth("tcp", "") + backends(7000, 1, 2))
	e.startLBD()
	e.waitState("web", lab.BackendV4(1)+":7000", "up")
	e.waitState("web", lab.BackendV4(2)+":7000", "up")

	// Prometheus lives in backend 1's namespace, which reaches lbd's
	// status address on the backend segment; its API listens on that
	// namespace's loopback only.
	promDir := filepath.Join(e.dir, "prometheus")
	if err := os.MkdirAll(promDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(promDir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: lbd
    static_configs:
      - targets: ["192.0.2.1:9100"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(promDir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := e.lab.Command("be1", prom, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(promDir, "data"),
		"--web.listen-address=127.0.0.1:9090")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus log (tail):\n%s", tail(string(b), 40))
		}
	})
	query := func(q string) (promResult, error) {
		u := "http://127.0.0.1:9090/api/v1/query?query=" + url.QueryEscape(q)
		return promQuery(e, u)
	}

	// Traffic between scrapes so the rates have something to say, then
	// backend 2 dies so "Backends down" has one.
	deadline := time.Now().Add(90 * time.Second)
	for {
		e.spread(0, vip4(7000), 4)
		r, err := query(`count_over_time(up{job="lbd"}[1m])`)
		if err == nil && len(r.Data.Result) == 1 && r.value(t, 0) >= 12 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus did not collect 12 scrapes of lbd in 90 s: %+v %v", r, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	e.lab.StopBackend(2)
	e.waitState("web", lab.BackendV4(2)+":7000", "down")
	for i := 0; i < 6; i++ { // a few more scrapes with be2 down and traffic on be1
		e.spread(0, vip4(7000), 2)
		time.Sleep(500 * time.Millisecond)
	}
	waitQuery := func(q string, ok func(promResult) bool) promResult {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			r, err := query(q)
			if err == nil && ok(r) {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %+v %v", q, r, err)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}

	// Every metric a panel names is one lbd exports.
	exported := map[string]bool{}
	for _, m := range waitQuery(`count by (__name__) ({job="lbd"})`, func(r promResult) bool { return len(r.Data.Result) > 10 }).Data.Result {
		exported[m.Metric["__name__"]] = true
	}
	metricName := regexp.MustCompile(`\blbd_[a-z_]+`)
	for _, p := range panels {
		for _, name := range metricName.FindAllString(p.expr, -1) {
			if !exported[name] {
				t.Errorf("panel %q uses %s, which lbd does not export (exported: %v)", p.title, name, keysOf(exported))
			}
		}
	}

	// Every query runs, and the ones whose answer this lab fixes give it.
	want := map[string]func(promResult) error{
		"Backends down":  exactly(1),
		"Kernel in sync": exactly(1),
		"Last reload":    exactly(1),
		"New flows/s (all services)": func(r promResult) error {
			if len(r.Data.Result) != 1 || r.num(0) <= 0 {
				return fmt.Errorf("want one positive rate")
			}
			return nil
		},
		"Active connections per backend": series(2),
		"Backend state": func(r promResult) error {
			states := map[string]float64{}
			for i, s := range r.Data.Result {
				states[s.Metric["backend"]] = r.num(i)
			}
			if states[lab.BackendV4(1)+":7000"] != 1 || states[lab.BackendV4(2)+":7000"] != 3 || len(states) != 2 {
				return fmt.Errorf("want be1 up (1) and be2 down (3), got %v", states)
			}
			return nil
		},
		"New flows/s per service": series(1),
		"Out of sync for":         exactly(0),
	}
	checked := map[string]bool{}
	for _, p := range panels {
		q := p.expr
		for _, v := range [][2]string{{"$__rate_interval", "15s"}, {"$instance", ".*"}, {"$service", ".*"}} {
			q = strings.ReplaceAll(q, v[0], v[1])
		}
		check, fixed := want[p.title]
		if !fixed {
			if _, err := query(q); err != nil {
				t.Errorf("panel %q: %s: %v", p.title, q, err)
			}
			continue
		}
		var last error
		waitQuery(q, func(r promResult) bool { last = check(r); return last == nil })
		checked[p.title] = true
	}
	for title := range want {
		if !checked[title] {
			t.Errorf("no panel titled %q in the dashboard", title)
		}
	}
}

type panelQuery struct{ title, expr string }

func dashboardQueries(t *testing.T) []panelQuery {
	t.Helper()
	b, err := os.ReadFile("../examples/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	var out []panelQuery
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, panelQuery{p.Title, tg.Expr})
		}
	}
	if len(out) < 10 {
		t.Fatalf("dashboard has only %d queries", len(out))
	}
	return out
}

type promResult struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

func (r promResult) num(i int) float64 {
	s, _ := r.Data.Result[i].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return -1
	}
	return v
}

func (r promResult) value(t *testing.T, i int) float64 {
	t.Helper()
	return r.num(i)
}

func promQuery(e *env, u string) (promResult, error) {
	var r promResult
	b, err := httpInErr(e, "be1", u)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("bad answer %q: %w", b, err)
	}
	if r.Status != "success" {
		return r, fmt.Errorf("query failed: %s", r.Error)
	}
	return r, nil
}

func exactly(v float64) func(promResult) error {
	return func(r promResult) error {
		if len(r.Data.Result) != 1 || r.num(0) != v {
			return fmt.Errorf("want exactly one sample of %v", v)
		}
		return nil
	}
}

func series(n int) func(promResult) error {
	return func(r promResult) error {
		if len(r.Data.Result) != n {
			return fmt.Errorf("want %d series, got %d", n, len(r.Data.Result))
		}
		return nil
	}
}

// keysOf lists lbd's own metric names.
func keysOf(m map[string]bool) []string {
	var out []string
	for k := range m {
		if strings.HasPrefix(k, "lbd_") {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// httpInErr GETs a URL from inside a namespace, returning errors (httpIn
// fails the test, which polling cannot use).
func httpInErr(e *env, ns, u string) ([]byte, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return e.lab.Dial(ns, network, addr, 3*time.Second)
	}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return b, fmt.Errorf("GET %s: %s: %s", u, resp.Status, b)
	}
	return b, nil
}
