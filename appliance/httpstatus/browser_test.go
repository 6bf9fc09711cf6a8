package httpstatus

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"lbd/appliance/status"
)

// screenshot, when set, makes TestPageInBrowser also save a PNG of the page
// there, for a person to look at (go test -run Browser -screenshot /tmp/p.png).
var screenshot = flag.String("screenshot", "", "also save a screenshot of the status page to this PNG file")

// pollBudget is the virtual time Chromium gives the page: with its 2s poll
// that is about 30 polls, enough for graphs across their whole width and a
// backend going down and up again. Virtual time runs as fast as the page's
// work allows, so the test does not wait a real minute.
const pollBudget = 60 * time.Second

// movingFixture is a two-service appliance whose state moves on every fetch,
// as if 2 seconds passed between polls: web's new-flow counter grows at a
// varying rate, its active connections rise, one backend goes down and
// comes back every 40s; dns is IPv6 with one unchecked backend (no health check).
type movingFixture struct {
	mu   sync.Mutex
	step int
}

func (m *movingFixture) fetch() status.Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.step
	m.step++
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	now := start.Add(time.Duration(n) * 2 * time.Second)
	var flows uint64
	for i := 0; i <= n; i++ {
		flows += uint64(20 + 10*(i%5)) // 10 to 30 new connections/s
	}
	down := status.StateUp
	lastCheck := "ok"
	if n%20 >= 4 && n%20 < 8 { // down for 8s of every 40s
		down, lastCheck = status.StateDown, "connection refused"
	}
	return status.Snapshot{
		Hostname: "lb-1", Version: "v0.5.0", StartedAt: start.Add(-time.Hour), Now: now,
		Config:    status.Config{Path: "/config/lb.toml", LoadedAt: start},
		Conntrack: status.Conntrack{Count: 1200 + 10*n, Max: 262144},
		Reloads:   status.ReloadStats{OK: 1},
		Sync: status.Sync{InSync: false, OutOfSyncSince: start.Add(-90 * time.Second), Failures: 7,
			LastError: "netlink: no buffer space", Syncs: 3},
		Warnings: []string{"kernel out of sync since 2026-11-26T09:58:30Z (7 failed applies, retrying): netlink: no buffer space"},
		Services: []status.Service{
			{
				Name: "web", VIP: "198.51.100.10", Port: 80, Protocol: "tcp", Scheduler: "rr", SNAT: true,
				Packets: flows, Bytes: flows * 60, Throttle: "200/s",
				Limits:  status.Limits{NewConnectionRate: "500/s", Burst: 100, PerClientRate: "20/s", PerClientConnections: 50},
				Refused: status.Refusals{Rate: uint64(12 + n), PerClientRate: 4, ThrottleRefused: 9},
				Backends: []status.Backend{
					{Address: "192.0.2.11:8080", Weight: 2, State: status.StateUp, ActiveConnections: 20 + 3*n, MaxConnections: 500, LastCheck: "ok", LastCheckLatency: 0.0012},
					{Address: "192.0.2.12:8080", Weight: 1, State: down, ActiveConnections: 5 + n%3, LastCheck: lastCheck, LastCheckLatency: 0.0021, LastTransition: start},
					{Address: "192.0.2.13:8080", Weight: 1, State: status.StateDrain, ActiveConnections: 3, LastCheck: "ok", LastCheckLatency: 0.001,
						Drain: &status.Drain{Since: start.Add(-time.Minute), Deadline: now.Add(4 * time.Minute)}},
				},
			},
			{
				Name: "dns", VIP: "2001:db8:ff::53", Port: 53, Protocol: "udp", Scheduler: "sh",
				Packets: uint64(100 * n), Bytes: uint64(4000 * n),
				Backends: []status.Backend{{Address: "[2001:db8:2::11]:53", Weight: 1, State: status.StateUnchecked, ActiveConnections: n}},
			},
		},
	}
}

// chromium runs Debian's chromium headless against url with args for
// budget of the page's virtual time, inside its own temporary home, and
// returns its standard output.
func chromium(t *testing.T, url string, budget time.Duration, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		// Not a skip: the page's script is only tested here, and CI
		// (make test, through make deps) installs chromium.
		t.Fatalf("chromium not found (%v): install it with scripts/apt-ensure chromium, as make deps does", err)
	}
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	all := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--user-data-dir=" + filepath.Join(home, "profile"),
		fmt.Sprintf("--virtual-time-budget=%d", budget.Milliseconds()),
	}, args...)
	cmd := exec.CommandContext(ctx, bin, append(all, url)...)
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home, "XDG_CACHE_HOME="+home)
	// Chromium forks helpers; its own process group lets the test end
	// exactly the processes it started, and WaitDelay stops a helper that
	// keeps stdout open from hanging the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // leftover helpers, if any
	}
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, lastLines(stderr.String(), 20))
	}
	return string(out)
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// TestPageInBrowser loads the status page in a real browser and checks the
// DOM its script built from a dozen polls of /status.json: the services
// and their counts, the banner, the limits and refusals, and graphs drawn
// from the history the page kept.
func TestPageInBrowser(t *testing.T) {
	fx := &movingFixture{}
	h, err := Handler(fx.fetch)
	if err != nil {
		t.Fatal(err)
	}
	// Two polls in the middle fail, as when the daemon restarts: the page
	// must keep polling and recover on its own.
	var polls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/status.json" {
			if n := polls.Add(1); n == 10 || n == 11 {
				http.Error(w, "lbd restarting", http.StatusServiceUnavailable)
				return
			}
		}
		h.ServeHTTP(w, r)
	})) // listens on 127.0.0.1
	t.Cleanup(srv.Close)

	dom := chromium(t, srv.URL+"/", pollBudget, "--dump-dom")
	fx.mu.Lock()
	fetches := fx.step
	fx.mu.Unlock()
	if polls.Load() < 14 {
		t.Errorf("the page polled %d times; it should go on after the failed 10th and 11th", polls.Load())
	}
	if strings.Contains(dom, "status unavailable: HTTP 503") {
		t.Error("the error banner stayed after polls succeeded again")
	}
	if fetches < 6 {
		t.Fatalf("the page fetched the status %d times in %v of virtual time, want a poll every 2s", fetches, pollBudget)
	}
	if strings.Contains(dom, "<noscript>") && !strings.Contains(dom, `class="graphs"`) {
		t.Fatalf("the script did not redraw the page:\n%s", dom)
	}

	for _, want := range []string{
		`<span class="name">web</span> 198.51.100.10:80/tcp`,
		`<span class="name">dns</span> [2001:db8:ff::53]:53/udp`,
		"[2001:db8:2::11]:53",
		`<span class="badge up">1/1 up</span>`, // dns: unchecked counts as serving
		`<div class="banner" id="sync">kernel out of sync since 2026-11-26 09:58:30Z`,
		"7 failed applies, retrying: netlink: no buffer space",
		"THROTTLED 200/s",
		"limits: new 500/s burst 100 · per client 20/s · per client 50 conns",
		"refused: rate ", " per_client_rate 4 throttle 9",
		"new flows ", " · first-packet bytes ",
		"new conn/s", "active conns", "refused/s",
		`<span class="badge up">2/3 up</span>`, // drain does not serve new flows
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("DOM lacks %q", want)
		}
	}
	if strings.Contains(dom, `<p class="warn">! kernel out of sync`) {
		t.Error("out-of-sync warning repeated under the banner")
	}
	if strings.Contains(dom, "2001:db8:ff::53:53") {
		t.Error("IPv6 VIP printed without brackets")
	}

	// Graphs: each series is an <svg data-series=...> with polylines of
	// several points; the health strip has the down period in it.
	for _, series := range []string{"web new/s", "web active", "web refused/s", "dns new/s", "dns active", "web 192.0.2.11:8080 active"} {
		pts := seriesPoints(t, dom, series)
		if pts < 5 {
			t.Errorf("sparkline %q has %d points, want at least 5 after %d polls", series, pts, fetches)
		}
	}
	strip := svgOf(t, dom, "web 192.0.2.12:8080 health")
	for _, cls := range []string{`class="up"`, `class="down"`} {
		if !strings.Contains(strip, cls) {
			t.Errorf("health strip of the flapping backend has no %s bar:\n%s", cls, strip)
		}
	}
	if m := regexp.MustCompile(`(\d+) health transitions`).FindStringSubmatch(strip); m == nil || atoi(m[1]) < 2 {
		t.Errorf("health strip does not count the down and up transitions:\n%s", strip)
	}
	if s := svgOf(t, dom, "dns [2001:db8:2::11]:53 health"); !strings.Contains(s, `class="unchecked"`) {
		t.Errorf("unchecked backend's strip:\n%s", s)
	}
	// A runtime drain says since when and when its flows get flushed.
	if !regexp.MustCompile(`<td class="drain">drain</td>.*\n<tr class="note"><td></td><td colspan="7" class="warn">lbd drain \dm \d+s, flush in 4m 0s</td></tr>`).MatchString(dom) {
		t.Error("runtime drain of 192.0.2.13:8080 not shown")
	}
	// Backend connections against the backend's max_connections.
	if !regexp.MustCompile(`<td class="num">\d+/500</td>`).MatchString(dom) {
		t.Error("192.0.2.11:8080 conns not shown against its max_connections 500")
	}
	// The rate graph's current value is one of the fixture's rates: 20 to
	// 60 new flows per 2s poll.
	if m := regexp.MustCompile(`new conn/s <span class="value">(\d+)</span>`).FindStringSubmatch(dom); m == nil || !strings.Contains(" 10 15 20 25 30 ", " "+m[1]+" ") {
		t.Errorf("web new conn/s value %v, want the fixture's rate", m)
	}

	if *screenshot != "" {
		dir := t.TempDir()
		png := filepath.Join(dir, "page.png")
		chromium(t, srv.URL+"/", pollBudget, "--window-size=1100,1000", "--hide-scrollbars", "--screenshot="+png)
		b, err := os.ReadFile(png)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(*screenshot, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// When /status.json fails from the start, the page keeps the server's
// first paint and says, on top, why it is not moving.
func TestPageInBrowserStatusFails(t *testing.T) {
	h, err := Handler((&movingFixture{}).fetch)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/status.json" {
			http.Error(w, "lbd restarting", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	dom := chromium(t, srv.URL+"/", 5*time.Second, "--dump-dom")
	for _, want := range []string{
		`<div class="banner" id="error">status unavailable: HTTP 503; retrying every 2s</div>`,
		`<span class="name">dns</span> [2001:db8:ff::53]:53/udp`, // the first paint is still there
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("DOM lacks %q", want)
		}
	}
}

// svgOf returns the <svg> element whose data-series is series.
func svgOf(t *testing.T, dom, series string) string {
	t.Helper()
	re := regexp.MustCompile(`(?s)<svg [^>]*data-series="` + regexp.QuoteMeta(series) + `".*?</svg>`)
	s := re.FindString(dom)
	if s == "" {
		t.Errorf("no graph for %q", series)
	}
	return s
}

// seriesPoints counts the points of the polylines of one sparkline.
func seriesPoints(t *testing.T, dom, series string) int {
	t.Helper()
	n := 0
	for _, m := range regexp.MustCompile(`<polyline points="([^"]*)"`).FindAllStringSubmatch(svgOf(t, dom, series), -1) {
		n += len(strings.Fields(m[1]))
	}
	return n
}
