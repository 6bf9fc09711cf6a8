package health

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fastSpec checks often so tests see many rounds quickly; nothing asserts
// on timing.
func fastSpec(path string) Spec {
	return Spec{Type: TypeHTTP, Path: path, Interval: 10 * time.Millisecond, Timeout: 5 * time.Second, Rise: 2, Fall: 2}
}

// flipServer answers every path with a status the test sets, counting hits
// per path.
type flipServer struct {
	*httptest.Server
	status atomic.Int32
	mu     sync.Mutex
	hits   map[string]int
}

func newFlipServer(t *testing.T) *flipServer {
	s := &flipServer{hits: map[string]int{}}
	s.status.Store(http.StatusOK)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		w.WriteHeader(int(s.status.Load()))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *flipServer) hitsOf(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// transitions collects what onChange receives.
type transitions struct {
	mu  sync.Mutex
	all []Transition
}

func (c *transitions) add(tr Transition) {
	c.mu.Lock()
	c.all = append(c.all, tr)
	c.mu.Unlock()
}

func (c *transitions) get() []Transition {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.all)
}

// syncBuffer is a log sink safe for the checking goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestMonitor(t *testing.T) (*Monitor, *transitions, *syncBuffer) {
	trs, logs := &transitions{}, &syncBuffer{}
	m := NewMonitor(trs.add, slog.New(slog.NewTextHandler(logs, nil)))
	t.Cleanup(m.Close)
	return m, trs, logs
}

func lookup(t *testing.T, m *Monitor, tg Target) TargetStatus {
	t.Helper()
	st, ok := m.Lookup(tg.Service, tg.Addr)
	if !ok {
		t.Fatalf("no status for %s %s", tg.Service, tg.Addr)
	}
	return st
}

// TestMonitorDownAndUp: fall failures take a backend down with the reason,
// rise passes bring it back, and status and logs say so.
func TestMonitorDownAndUp(t *testing.T) {
	srv := newFlipServer(t)
	m, trs, logs := newTestMonitor(t)
	web := Target{Service: "web", Addr: addrOf(t, srv.Listener.Addr()), Spec: fastSpec("/healthz")}
	if err := m.Set([]Target{web}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first passes", func() bool { return lookup(t, m, web).Passed >= 2 })
	if st := lookup(t, m, web); st.State != StateUp || !st.Last.OK || st.Last.Reason != "status 200" {
		t.Fatalf("healthy status = %+v", st)
	}

	srv.status.Store(http.StatusServiceUnavailable)
	waitFor(t, "down transition", func() bool { return len(trs.get()) == 1 })
	down := trs.get()[0]
	if down.From != StateUp || down.To != StateDown || down.Reason != "status 503" ||
		!slices.Equal(down.Services, []string{"web"}) || down.Addr != web.Addr || down.At.IsZero() {
		t.Fatalf("down transition = %+v", down)
	}
	st := lookup(t, m, web)
	if st.State != StateDown || st.Failed < 2 || st.LastTransition != down.At || st.Type != TypeHTTP {
		t.Fatalf("status after down = %+v", st)
	}

	srv.status.Store(http.StatusOK)
	waitFor(t, "up transition", func() bool { return len(trs.get()) == 2 })
	if up := trs.get()[1]; up.From != StateDown || up.To != StateUp || up.Reason != "status 200" {
		t.Fatalf("up transition = %+v", up)
	}
	log := logs.String()
	for _, want := range []string{"service=web", "backend=" + web.Addr.String(), `reason="status 503"`, "to=down", "to=up"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestMonitorDedup: services sharing a backend with the same check share
// one check and one state, and a transition names all of them.
func TestMonitorDedup(t *testing.T) {
	srv := newFlipServer(t)
	m, trs, logs := newTestMonitor(t)
	addr := addrOf(t, srv.Listener.Addr())
	web := Target{Service: "web", Addr: addr, Spec: fastSpec("/shared")}
	api := Target{Service: "api", Addr: addr, Spec: fastSpec("/shared")}
	admin := Target{Service: "admin", Addr: addr, Spec: fastSpec("/admin")} // another check
	if err := m.Set([]Target{web, api, admin, web}); err != nil {           // web twice: harmless
		t.Fatal(err)
	}
	waitFor(t, "several rounds", func() bool { return lookup(t, m, web).Passed >= 5 })

	// Hits first, then counts: every hit is then recorded, or is the one
	// check in flight. Two checks per round would double the hits.
	hits := srv.hitsOf("/shared")
	ws, as := lookup(t, m, web), lookup(t, m, api)
	if ws.Key != as.Key || ws.Key == lookup(t, m, admin).Key {
		t.Fatalf("keys: web %s api %s admin %s", ws.Key, as.Key, lookup(t, m, admin).Key)
	}
	if checks := int(as.Passed + as.Failed); hits > checks+1 {
		t.Errorf("shared check hit the server %d times for %d recorded checks: not deduplicated", hits, checks)
	}
	if n := len(m.Snapshot()); n != 3 {
		t.Errorf("Snapshot has %d entries, want 3 (one per service)", n)
	}

	srv.status.Store(http.StatusServiceUnavailable)
	waitFor(t, "both checks down", func() bool { return len(trs.get()) == 2 })
	var shared Transition
	for _, tr := range trs.get() {
		if tr.Key == ws.Key {
			shared = tr
		}
	}
	if !slices.Equal(shared.Services, []string{"api", "web"}) || shared.To != StateDown {
		t.Fatalf("shared transition = %+v, want one naming api and web", shared)
	}
	for _, svc := range []string{"web", "api", "admin"} {
		if !strings.Contains(logs.String(), "service="+svc) {
			t.Errorf("no log line for service %s", svc)
		}
	}
}

// TestMonitorSetKeepsState: re-setting an unchanged check keeps its state
// and counters; a changed check starts over.
func TestMonitorSetKeepsState(t *testing.T) {
	srv := newFlipServer(t)
	srv.status.Store(http.StatusServiceUnavailable)
	m, trs, _ := newTestMonitor(t)
	web := Target{Service: "web", Addr: addrOf(t, srv.Listener.Addr()), Spec: fastSpec("/")}
	if err := m.Set([]Target{web}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "down", func() bool { return lookup(t, m, web).State == StateDown })
	before := lookup(t, m, web)

	api := web
	api.Service = "api"
	if err := m.Set([]Target{web, api}); err != nil {
		t.Fatal(err)
	}
	for _, tg := range []Target{web, api} {
		st := lookup(t, m, tg)
		if st.Key != before.Key || st.State != StateDown || st.Failed < before.Failed || st.LastTransition != before.LastTransition {
			t.Errorf("%s after Set = %+v, want the kept state of %+v", tg.Service, st, before)
		}
	}
	if n := len(trs.get()); n != 1 {
		t.Errorf("%d transitions, want only the first down", n)
	}

	// Another fall makes another check: a fresh machine in its initial
	// state (up), which a fall of 100 (the most a spec allows) will not
	// leave during the few milliseconds this test still runs.
	changed := web
	changed.Spec.Fall = MaxRiseFall
	if err := m.Set([]Target{changed}); err != nil {
		t.Fatal(err)
	}
	st := lookup(t, m, changed)
	if st.Key == before.Key || st.State != StateUp || !st.LastTransition.IsZero() {
		t.Errorf("changed check = %+v, want a new key starting up", st)
	}
	if _, ok := m.Lookup("api", web.Addr); ok {
		t.Error("api still monitored after Set without it")
	}

	if err := m.Set(nil); err != nil {
		t.Fatal(err)
	}
	if snap := m.Snapshot(); len(snap) != 0 {
		t.Errorf("Snapshot after Set(nil) = %+v", snap)
	}
}

// TestMonitorSlowCheckDoesNotDelayOthers: a backend that accepts but never
// answers keeps its check busy until the timeout; another backend's checks
// go on meanwhile. Counts only, no durations.
func TestMonitorSlowCheckDoesNotDelayOthers(t *testing.T) {
	hang := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer stuck.Close()
	defer close(hang)
	fast := newFlipServer(t)

	m, _, _ := newTestMonitor(t)
	slowSpec := fastSpec("/")
	slowSpec.Timeout = time.Hour // only Close ends this check
	slow := Target{Service: "web", Addr: addrOf(t, stuck.Listener.Addr()), Spec: slowSpec}
	quick := Target{Service: "web", Addr: addrOf(t, fast.Listener.Addr()), Spec: fastSpec("/")}
	if err := m.Set([]Target{slow, quick}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the quick backend to complete 5 checks", func() bool { return lookup(t, m, quick).Passed >= 5 })
	if st := lookup(t, m, slow); st.Passed+st.Failed != 0 || st.State != StateUp {
		t.Errorf("slow backend = %+v, want no completed check yet", st)
	}
	// Close aborts the hanging check instead of waiting an hour.
	m.Close()
}

func TestMonitorNoneIsUnchecked(t *testing.T) {
	m, _, _ := newTestMonitor(t)
	tg := Target{Service: "dns", Addr: mustAddrPort(t, "192.0.2.53:53"), Spec: Spec{Type: TypeNone}, Initial: StateDown}
	if err := m.Set([]Target{tg}); err != nil {
		t.Fatal(err)
	}
	if st := lookup(t, m, tg); st.State != StateUnchecked || st.Passed+st.Failed != 0 {
		t.Errorf("none target = %+v, want unchecked with no checks", st)
	}
}

func TestMonitorInitialDownRises(t *testing.T) {
	srv := newFlipServer(t)
	m, trs, _ := newTestMonitor(t)
	tg := Target{Service: "web", Addr: addrOf(t, srv.Listener.Addr()), Spec: fastSpec("/"), Initial: StateDown}
	if err := m.Set([]Target{tg}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rise", func() bool { return len(trs.get()) == 1 })
	if tr := trs.get()[0]; tr.From != StateDown || tr.To != StateUp {
		t.Errorf("transition = %+v, want down -> up", tr)
	}
	if st := lookup(t, m, tg); st.Passed < 2 {
		t.Errorf("went up after %d passes, want rise = 2", st.Passed)
	}
}

func TestMonitorSetRejectsInvalidAndKeepsOld(t *testing.T) {
	m, _, _ := newTestMonitor(t)
	// tcp to a closed port: it fails, which does not matter here.
	good := Target{Service: "web", Addr: closedTCPPort(t), Spec: Spec{Type: TypeTCP, Interval: time.Hour}}
	if err := m.Set([]Target{good}); err != nil {
		t.Fatal(err)
	}
	bad := []Target{
		good,
		{Service: "api", Addr: good.Addr, Spec: Spec{Type: TypeExec}},
		{Service: "mail", Spec: Spec{Type: TypeTCP}},
	}
	err := m.Set(bad)
	if err == nil || !strings.Contains(err.Error(), "service api backend") || !strings.Contains(err.Error(), "command:") ||
		!strings.Contains(err.Error(), "service mail: backend address missing") {
		t.Fatalf("Set(bad) = %v, want errors naming api's command and mail's address", err)
	}
	if snap := m.Snapshot(); len(snap) != 1 || snap[0].Service != "web" {
		t.Errorf("Snapshot after refused Set = %+v, want the old web target", snap)
	}
}

func TestMonitorSetAfterClose(t *testing.T) {
	m := NewMonitor(nil, nil)
	m.Close()
	m.Close() // idempotent
	if err := m.Set([]Target{{Service: "web", Addr: mustAddrPort(t, "127.0.0.1:1"), Spec: Spec{Type: TypeTCP}}}); err == nil {
		t.Fatal("Set after Close succeeded")
	}
}

// TestMonitorUDPRefusedGoesDown: end to end through the Monitor, an ICMP
// refusal counts as a failure like any other.
func TestMonitorUDPRefusedGoesDown(t *testing.T) {
	m, trs, _ := newTestMonitor(t)
	tg := Target{Service: "dns", Addr: closedUDPPort(t),
		Spec: Spec{Type: TypeUDP, Payload: []byte("ping"), Interval: 10 * time.Millisecond, Timeout: time.Hour, Fall: 2}}
	if err := m.Set([]Target{tg}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "down", func() bool { return len(trs.get()) == 1 })
	if tr := trs.get()[0]; tr.To != StateDown || tr.Reason != "connection refused" {
		t.Errorf("transition = %+v", tr)
	}
}

// TestMonitorSamePairTwoChecks: one backend listed with two different
// checks in one service is checked both ways; Lookup picks one stably.
func TestMonitorSamePairTwoChecks(t *testing.T) {
	m, _, _ := newTestMonitor(t)
	addr := closedTCPPort(t)
	a := Target{Service: "web", Addr: addr, Spec: Spec{Type: TypeTCP, Interval: time.Hour}}
	b := Target{Service: "web", Addr: addr, Spec: Spec{Type: TypeHTTP, Interval: time.Hour}}
	if err := m.Set([]Target{b, a}); err != nil {
		t.Fatal(err)
	}
	if n := len(m.Snapshot()); n != 2 {
		t.Fatalf("Snapshot has %d entries, want 2", n)
	}
	want := min(a.Key(), b.Key())
	for range 3 {
		if st := lookup(t, m, a); st.Key != want {
			t.Fatalf("Lookup key = %s, want the smallest, %s", st.Key, want)
		}
	}
}
