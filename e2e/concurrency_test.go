package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"lbd/appliance/control"
	"lbd/internal/lab"
)

// defaultConcurrencyDuration is how long TestConcurrencyKernelMatchesFinalState
// churns. Long enough for a few kills and dozens of reloads, short enough for
// make test; LBD_CONCURRENCY_SECONDS overrides it for a longer hunt.
const defaultConcurrencyDuration = 30 * time.Second

func concurrencyDuration(t *testing.T) time.Duration {
	if v := os.Getenv("LBD_CONCURRENCY_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("LBD_CONCURRENCY_SECONDS=%q: want a positive number of seconds", v)
		}
		return time.Duration(n) * time.Second
	}
	return defaultConcurrencyDuration
}

// churnProblems collects what goroutines found; the test goroutine reports
// them (t.Fatal is only allowed there).
type churnProblems struct {
	mu   sync.Mutex
	list []string
}

func (p *churnProblems) add(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.list) < 50 {
		p.list = append(p.list, fmt.Sprintf(format, args...))
	}
}

// churnStats counts what the churn did, for the log.
type churnStats struct {
	mu                                 sync.Mutex
	reloads, reloadRetries             int
	throttles, throttleRefused, thDown int
	flaps, restarts, stale             int
}

func (s *churnStats) inc(f *int, n int) {
	s.mu.Lock()
	*f += n
	s.mu.Unlock()
}

// TestConcurrencyKernelMatchesFinalState is the proof under concurrency of
// issue 10 (item 3). Under steady new connections it alternates reloads
// between two configs, flaps health, sets and lifts throttles and kills and
// restarts lbd, all at once. Then it quiesces into a known final state and
// reads the kernel back through google/nftables (not through lbd status):
// table inet lbd must hold exactly the final config's services, slots only
// for backends up in the final health, and no throttle; and no request to
// the service that existed throughout with a live backend may have failed.
// During the churn, right before each reload, the table must hold exactly
// the services of the config last applied (nothing else changes that set),
// which catches a stale write that raced any reload, not only the last.
//
// "stable" is in both configs with three backends. Its health check is
// HTTP /healthz on port 80 while clients use port 7000, so be3 flaps by
// its health file only: it never refuses a connection, and every request
// to stable must succeed (exactly 0 failures) whatever its slots hold. The
// other services flap for real (their backends' servers are stopped and
// started), including IPv6 and UDP ones, so transitions, conntrack flushes
// and removals race with reloads.
func TestConcurrencyKernelMatchesFinalState(t *testing.T) {
	dur := concurrencyDuration(t)
	e := newEnv(t, 5, 2)
	seed := uint64(time.Now().UnixNano())
	t.Logf("churn for %s, seed %d", dur, seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	var rngMu sync.Mutex
	jitter := func(base time.Duration) time.Duration {
		rngMu.Lock()
		defer rngMu.Unlock()
		return base/2 + time.Duration(rng.Int64N(int64(base)))
	}
	pick := func(n int) int {
		rngMu.Lock()
		defer rngMu.Unlock()
		return rng.IntN(n)
	}

	httpHealth := "  [service.health]\n  type = \"http\"\n  port = 80\n  path = \"/healthz\"\n  interval = \"400ms\"\n  timeout = \"350ms\"\n  rise = 2\n  fall = 2\n"
	tcpHealth := fastHealth("tcp", "")
	udpHealth := fastHealth("udp", "  payload = \"ping\"")
	stable := svcDef{Name: "stable", VIP: lab.VIPv4, Port: 7000, Proto: "tcp", Health: httpHealth,
		Backends: []netip.AddrPort{beV4(1, 7000), beV4(2, 7000), beV4(3, 7000)}}
	alpha := svcDef{Name: "alpha", VIP: "203.0.113.11", Port: 7000, Proto: "tcp", Health: tcpHealth,
		Backends: []netip.AddrPort{beV4(4, 7000), beV4(5, 7000)}}
	alpha6 := svcDef{Name: "alpha6", VIP: "2001:db8:3::11", Port: 7000, Proto: "tcp", Health: tcpHealth,
		Backends: []netip.AddrPort{beV6(4, 7000), beV6(5, 7000)}}
	beta := svcDef{Name: "beta", VIP: "203.0.113.12", Port: 7000, Proto: "tcp", Health: tcpHealth,
		Backends: []netip.AddrPort{beV4(4, 7000), beV4(5, 7000)}}
	beta6 := svcDef{Name: "beta6", VIP: "2001:db8:3::12", Port: 7000, Proto: "tcp", Health: tcpHealth,
		Backends: []netip.AddrPort{beV6(4, 7000), beV6(5, 7000)}}
	gamma := svcDef{Name: "gamma", VIP: "203.0.113.13", Port: 5353, Proto: "udp", Health: udpHealth,
		Backends: []netip.AddrPort{beV4(4, 5353), beV4(5, 5353)}}
	cfgA := configOf(stable, alpha, alpha6)
	cfgB := configOf(stable, beta, beta6, gamma)
	final := []svcDef{stable, beta, beta6, gamma}
	allNames := []string{"stable", "alpha", "alpha6", "beta", "beta6", "gamma"}

	e.writeConfig(cfgA)
	e.startLBD()
	for _, b := range stable.Backends {
		e.waitState("stable", b.String(), "up")
	}

	// Steady new connections: the asserted load on stable, and a lighter
	// one on the services that come and go (counted, not asserted: they
	// are absent half the time and their backends really die).
	stableLoad := e.startLoad(0, vip4(7000), 15*time.Millisecond)
	otherLoads := []*connLoad{
		e.startLoad(1, "203.0.113.11:7000", 100*time.Millisecond),
		e.startLoad(1, "203.0.113.12:7000", 100*time.Millisecond),
	}

	var probs churnProblems
	var stats churnStats
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var wg sync.WaitGroup
	loop := func(period time.Duration, op func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-time.After(jitter(period)):
				}
				op(i)
			}
		}()
	}

	// (a) Reloads alternate between A and B. A reload that cannot reach
	// lbd (killed a moment ago, not listening yet) is retried; a reply
	// that refuses a valid config is a bug.
	reload := func(text, which string) bool {
		if err := e.writeConfigAtomic(text); err != nil {
			probs.add("write config %s: %v", which, err)
			return false
		}
		resp, tries, err := e.callRetry(control.Request{Command: "reload"}, 60*time.Second)
		stats.inc(&stats.reloadRetries, tries-1)
		switch {
		case err != nil:
			probs.add("reload to %s: %v", which, err)
		case !resp.OK:
			probs.add("reload to %s refused: %s %v", which, resp.Message, resp.Errors)
		default:
			stats.inc(&stats.reloads, 1)
			return true
		}
		return false
	}
	// Between two reloads nothing may change which services the kernel
	// holds: health, throttles and restarts (which read the same file)
	// change slots and rules only. So right before each reload the table
	// must hold exactly the services of the config last applied. This is
	// exact, not timed, and it sees a stale write from a health change
	// that raced any reload of the run, not only the last one.
	configs := []struct {
		name, text string
		svcs       []svcDef
	}{{"A", cfgA, []svcDef{stable, alpha, alpha6}}, {"B", cfgB, final}}
	applied := configs[0]
	appliedOK := true
	loop(time.Second, func(i int) {
		if appliedOK {
			if d := e.kernelServicesDiff(applied.svcs); len(d) > 0 {
				stats.inc(&stats.stale, 1)
				probs.add("before reload %d, %s was running but the kernel held other services:\n    %s", i+1, applied.name, strings.Join(d, "\n    "))
			}
		}
		applied = configs[(i+1)%2]
		appliedOK = reload(applied.text, applied.name)
	})

	// (b) Health flaps: be3's health file (stable keeps be1 and be2), or
	// be4/be5's servers (the services that come and go).
	be3Health := filepath.Join(e.dir, "be3.health")
	running := map[int]bool{4: true, 5: true}
	loop(1300*time.Millisecond, func(int) {
		stats.inc(&stats.flaps, 1)
		switch k := 3 + pick(3); k {
		case 3:
			if _, err := os.Stat(be3Health); err == nil {
				_ = os.Remove(be3Health)
			} else if err := os.WriteFile(be3Health, []byte("503"), 0o644); err != nil {
				probs.add("flap be3: %v", err)
			}
		default:
			if running[k] {
				e.lab.StopBackend(k)
				running[k] = false
			} else if err := e.lab.StartBackend(e.labsrv, e.dir, k); err != nil {
				probs.add("restart backend be%d: %v", k, err)
			} else {
				running[k] = true
			}
		}
	})

	// (c) Throttles set and lifted on any service, present or not. stable
	// gets a rate far above the load, so its rule exists but never refuses
	// (its requests must all succeed); the others get 100/s.
	loop(900*time.Millisecond, func(int) {
		name := allNames[pick(len(allNames))]
		rate := "100/s"
		if name == "stable" {
			rate = "10000/s"
		}
		if pick(2) == 0 {
			rate = "off"
		}
		resp, err := control.Call(e.socket, control.Request{Command: "throttle", Args: []string{name, rate}}, 30*time.Second)
		switch {
		case err != nil:
			stats.inc(&stats.thDown, 1) // lbd being restarted: skip this one
		case !resp.OK:
			stats.inc(&stats.throttleRefused, 1) // e.g. the service is not in the running config
		default:
			stats.inc(&stats.throttles, 1)
		}
	})

	// (d) kill -9 and restart, a few times. Only this goroutine touches
	// e.lbd until the churn ends; the old process is reaped before the new
	// one starts, so two lbds never run at once.
	loop(dur/5, func(int) {
		e.stopLBD(true)
		if err := e.startLBDErr(); err != nil {
			probs.add("restart lbd: %v", err)
			return
		}
		stats.inc(&stats.restarts, 1)
	})

	<-ctx.Done()
	wg.Wait()
	t.Logf("churn: %d reloads (%d retried sends), %d throttle changes (%d refused, %d while lbd was down), %d flaps, %d kill -9 restarts; kernel held stale services before %d reloads",
		stats.reloads, stats.reloadRetries, stats.throttles, stats.throttleRefused, stats.thDown, stats.flaps, stats.restarts, stats.stale)
	if stats.restarts == 0 || stats.reloads == 0 {
		t.Errorf("the churn did not do its job (restarts %d, reloads %d)", stats.restarts, stats.reloads)
	}

	// Quiesce into the known final state. lbd runs (the restarter leaves one
	// running unless a start failed; then start one now).
	if _, err := control.Call(e.socket, control.Request{Command: "status"}, 5*time.Second); err != nil {
		e.stopLBD(true)
		if err := e.startLBDErr(); err != nil {
			t.Fatal(err)
		}
	}
	// Final health: be3 unhealthy (stable keeps be1, be2), be4 up, be5 down.
	if err := os.WriteFile(be3Health, []byte("503"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !running[4] {
		if err := e.lab.StartBackend(e.labsrv, e.dir, 4); err != nil {
			t.Fatal(err)
		}
	}
	e.lab.StopBackend(5)
	up := map[netip.AddrPort]bool{beV4(1, 7000): true, beV4(2, 7000): true,
		beV4(4, 7000): true, beV6(4, 7000): true, beV4(4, 5353): true}
	var last string
	settled := func() bool {
		st, err := e.backendStates()
		if err != nil {
			last = err.Error()
			return false
		}
		if len(st) != len(final) {
			last = fmt.Sprintf("status lists %d services, want %d", len(st), len(final))
			return false
		}
		for _, s := range final {
			for _, b := range s.Backends {
				bs, ok := st[s.Name][b]
				switch {
				case !ok:
					last = fmt.Sprintf("%s/%s missing from status", s.Name, b)
					return false
				case up[b] && (bs.State != "up" || bs.Slots == 0):
					last = fmt.Sprintf("%s/%s: %+v, want up with slots", s.Name, b, bs)
					return false
				case !up[b] && (bs.State != "down" || bs.Slots != 0):
					last = fmt.Sprintf("%s/%s: %+v, want down without slots", s.Name, b, bs)
					return false
				}
			}
		}
		return true
	}
	reload(cfgB, "B (final)")
	deadline := time.Now().Add(60 * time.Second)
	for !settled() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	// Throttles set after health settled, then one more reload of the same
	// file: that reload is the last event, and it must lift them in the
	// kernel too (README: "until lifted or the next reload").
	for _, th := range [][]string{{"stable", "10000/s"}, {"beta", "100/s"}} {
		if resp, _, err := e.callRetry(control.Request{Command: "throttle", Args: th}, 60*time.Second); err != nil || !resp.OK {
			t.Fatalf("throttle %v: %v %+v", th, err, resp)
		}
	}
	reload(cfgB, "B (final, lifts throttles)")

	deadline = time.Now().Add(60 * time.Second)
	for !settled() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if !settled() {
		t.Errorf("health never settled into the final state: %s", last)
	}
	if resp, err := control.Call(e.socket, control.Request{Command: "status"}, 10*time.Second); err == nil && resp.Status != nil {
		for _, s := range resp.Status.Services {
			if s.Throttle != "" {
				t.Errorf("status still shows a throttle on %s (%s) after the final reload", s.Name, s.Throttle)
			}
		}
	}

	// The kernel, read directly. Allow it a moment after status (a retry
	// with backoff is a correct way to get there), not a new event.
	var want []wantService
	for _, s := range final {
		w := wantService{Name: s.Name, EP: s.key()}
		for _, b := range s.Backends {
			if up[b] {
				w.Up = append(w.Up, b)
			}
		}
		want = append(want, w)
	}
	var diffs []string
	deadline = time.Now().Add(20 * time.Second)
	for {
		ks, err := readKernel(e.lab.NSFile("lb"))
		if err != nil {
			diffs = []string{err.Error()}
		} else {
			diffs = append(ks.diffKernel(want, allNames), ks.throttleLeft(false)...)
		}
		if len(diffs) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if len(diffs) > 0 {
		t.Errorf("the kernel does not hold the final state:\n  %s", strings.Join(diffs, "\n  "))
	}

	stableLoad.stop()
	for _, l := range otherLoads {
		l.stop()
	}
	ok, failed, by, failures := stableLoad.result()
	t.Logf("stable: %s", stableLoad)
	t.Logf("alpha (A only): %s", otherLoads[0])
	t.Logf("beta (B only): %s", otherLoads[1])
	if failed != 0 {
		t.Errorf("%d of %d new connections to stable failed (want exactly 0); first failures:\n  %s", failed, ok+failed, strings.Join(failures, "\n  "))
	}
	if ok < int(dur.Seconds()) {
		t.Errorf("too little load on stable to prove anything: %d connections (%v)", ok, by)
	}
	probs.mu.Lock()
	defer probs.mu.Unlock()
	for _, p := range probs.list {
		t.Errorf("during the churn: %s", p)
	}
}
