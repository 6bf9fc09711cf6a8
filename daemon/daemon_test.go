package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lbd/appliance/control"
	"lbd/health"
	"lbd/lb"
)

// These tests drive the real daemon (its sync loop, control handler and
// state files) against fakes of the kernel, conntrack and the health
// monitor: no root, no namespaces, milliseconds each.

var (
	be1 = netip.MustParseAddrPort("192.0.2.11:80")
	be2 = netip.MustParseAddrPort("192.0.2.12:80")
	be3 = netip.MustParseAddrPort("192.0.2.13:80")
)

// svcTOML is a checked service with the given backends.
func svcTOML(name, vip string, extra string, backends ...netip.AddrPort) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[[service]]\nname = %q\nvip = %q\nport = 80\n%s\n[service.health]\ntype = \"tcp\"\n", name, vip, extra)
	for _, a := range backends {
		fmt.Fprintf(&b, "[[service.backend]]\naddress = %q\n", a.String())
	}
	return b.String()
}

type testDaemon struct {
	*fakes
	d      *Daemon
	cfg    string
	cancel context.CancelFunc
	done   chan error
}

// startDaemon writes config text and runs a daemon on fakes until the test
// ends. stateDir "" means a fresh temp dir.
func startDaemon(t *testing.T, text, stateDir string) *testDaemon {
	t.Helper()
	return startDaemonWith(t, text, stateDir, newFakeDataplane())
}

func startDaemonWith(t *testing.T, text, stateDir string, dp *fakeDataplane) *testDaemon {
	t.Helper()
	dir := t.TempDir()
	if stateDir == "" {
		stateDir = t.TempDir()
	}
	td := &testDaemon{fakes: &fakes{dp: dp, ct: &fakeConntrack{}, mon: &fakeMonitor{}},
		cfg: filepath.Join(dir, "lb.toml"), done: make(chan error, 1)}
	td.write(t, text)
	td.d = New(td.options(td.cfg, filepath.Join(dir, "s.sock"), stateDir))
	ctx, cancel := context.WithCancel(context.Background())
	td.cancel = cancel
	go func() { td.done <- td.d.Run(ctx) }()
	t.Cleanup(td.stop)
	waitFor(t, "daemon ready", func() bool { return td.d.configOrNil() != nil || td.d.Snapshot().Config.LastError != "" })
	return td
}

func (td *testDaemon) stop() {
	td.cancel()
	<-td.done
	td.done <- nil // stop is idempotent
}

func (td *testDaemon) write(t *testing.T, text string) {
	t.Helper()
	if err := os.WriteFile(td.cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond; a generous deadline, never a timing assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func slotsOf(s lb.Service) map[netip.AddrPort]int { return s.SlotCounts() }

func serviceNamesOf(m map[string]lb.Service) string {
	var names []string
	for n := range m {
		names = append(names, n)
	}
	return strings.Join(sortedStrings(names), ",")
}

func sortedStrings(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestReloadAnswersAfterTheKernelHoldsIt(t *testing.T) {
	td := startDaemon(t, svcTOML("a", "198.51.100.10", "", be1, be2), "")
	if got, _ := td.dp.state(); serviceNamesOf(got) != "a" {
		t.Fatalf("after start the kernel holds %q, want a", serviceNamesOf(got))
	}
	td.write(t, svcTOML("b", "198.51.100.11", "", be1))
	if _, err := td.d.Reload(); err != nil {
		t.Fatal(err)
	}
	// No waiting: Reload returned, so the kernel must hold b already.
	if got, _ := td.dp.state(); serviceNamesOf(got) != "b" {
		t.Fatalf("after reload the kernel holds %q, want b", serviceNamesOf(got))
	}
}

// A burst of health flips while an apply is in flight becomes exactly one
// more transaction, and none of the flips waits for the kernel.
func TestHealthBurstCoalescesIntoOneTransaction(t *testing.T) {
	td := startDaemon(t, svcTOML("a", "198.51.100.10", "", be1, be2, be3), "")
	_, before := td.dp.state()
	gate, entered := make(chan struct{}), make(chan struct{}, 1)
	td.dp.mu.Lock()
	td.dp.gate, td.dp.entered = gate, entered
	td.dp.mu.Unlock()

	td.mon.flip("a", be3, health.StateDown)
	<-entered // the loop is now inside ApplyState, held by the gate
	for i := 0; i < 1000; i++ {
		to := health.StateUp
		if i%2 == 0 {
			to = health.StateDown
		}
		td.mon.flip("a", []netip.AddrPort{be1, be2}[i%2], to)
	}
	td.mon.flip("a", be1, health.StateUp)
	td.mon.flip("a", be2, health.StateDown)
	td.dp.mu.Lock()
	td.dp.entered = nil
	td.dp.mu.Unlock()
	close(gate)
	waitFor(t, "the burst applied", func() bool {
		got, _ := td.dp.state()
		s := slotsOf(got["a"])
		return s[be1] > 0 && s[be2] == 0 && s[be3] == 0
	})
	time.Sleep(50 * time.Millisecond) // let any stray extra sync show itself
	if _, after := td.dp.state(); after-before != 2 {
		t.Fatalf("1,002 flips took %d transactions; want exactly 2 (the one in flight, then one for the rest)", after-before)
	}
}

func TestFailedApplyIsRetriedAndReported(t *testing.T) {
	td := startDaemon(t, svcTOML("a", "198.51.100.10", "", be1, be2), "")
	if r := td.d.handle(context.Background(), control.Request{Command: "ping"}); !r.OK || r.Message != "ready: 1 services" {
		t.Fatalf("ping of a ready daemon: %+v", r)
	}
	td.dp.mu.Lock()
	td.dp.failNext = 1 << 30
	td.dp.mu.Unlock()
	td.mon.flip("a", be2, health.StateDown)
	waitFor(t, "status to say out of sync", func() bool {
		s := td.d.Snapshot()
		return !s.Sync.InSync && !s.Sync.OutOfSyncSince.IsZero() && s.Sync.Failures >= 3
	})
	snap := td.d.Snapshot()
	if len(snap.Warnings) == 0 || !strings.Contains(strings.Join(snap.Warnings, "\n"), "kernel out of sync since") {
		t.Fatalf("warnings do not say the kernel is out of sync: %q", snap.Warnings)
	}
	if !strings.Contains(snap.Sync.LastError, "refused") {
		t.Fatalf("last error %q", snap.Sync.LastError)
	}
	if r := td.d.handle(context.Background(), control.Request{Command: "ping"}); r.OK || !strings.HasPrefix(r.Message, "kernel out of sync: ") || !strings.Contains(r.Message, "refused") {
		t.Fatalf("ping while out of sync must fail and say why: %+v", r)
	}
	td.dp.mu.Lock()
	td.dp.failNext = 0
	td.dp.mu.Unlock()
	waitFor(t, "the retry to land", func() bool {
		got, _ := td.dp.state()
		return slotsOf(got["a"])[be2] == 0 && td.d.Snapshot().Sync.InSync
	})
	if s := td.d.Snapshot().Sync; !s.OutOfSyncSince.IsZero() || s.LastError != "" || s.Failures < 3 {
		t.Fatalf("after recovery: %+v", s)
	}
	if r := td.d.handle(context.Background(), control.Request{Command: "ping"}); !r.OK {
		t.Fatalf("ping after recovery: %+v", r)
	}
}

func TestRestartAdoptsBackendHealth(t *testing.T) {
	state := t.TempDir()
	cfg := svcTOML("a", "198.51.100.10", "", be1, be2)
	first := startDaemon(t, cfg, state)
	first.mon.flip("a", be2, health.StateDown)
	waitFor(t, "be2 out of the slots", func() bool {
		got, _ := first.dp.state()
		return slotsOf(got["a"])[be2] == 0
	})
	first.stop()
	if _, err := os.Stat(filepath.Join(state, "health.json")); err != nil {
		t.Fatalf("health state not written: %v", err)
	}

	// The config gains be3 across the restart: a new backend starts up.
	second := startDaemon(t, svcTOML("a", "198.51.100.10", "", be1, be2, be3), state)
	got, applies := second.dp.state()
	if applies != 1 {
		t.Fatalf("%d applies at start, want 1", applies)
	}
	s := slotsOf(got["a"])
	if s[be2] != 0 || s[be1] == 0 || s[be3] == 0 {
		t.Fatalf("first apply after restart: slots %v; want be2 (down before the restart) out, be1 and new be3 in", s)
	}
	if st := second.mon.initial("a", be2); st != health.StateDown {
		t.Fatalf("be2 starts %q, want down until it passes rise checks", st)
	}
	if st := second.mon.initial("a", be3); st != health.StateUp {
		t.Fatalf("new be3 starts %q, want up", st)
	}
	// Once be2 passes its checks again it gets flows.
	second.mon.flip("a", be2, health.StateUp)
	waitFor(t, "be2 back", func() bool {
		got, _ := second.dp.state()
		return slotsOf(got["a"])[be2] > 0
	})
}

func TestReloadLiftsThrottlesInTheKernel(t *testing.T) {
	text := svcTOML("a", "198.51.100.10", "", be1)
	td := startDaemon(t, text, "")
	resp := td.d.throttle([]string{"a", "100/s"})
	if !resp.OK {
		t.Fatal(resp.Errors)
	}
	if got, _ := td.dp.state(); got["a"].Protect.Throttle != (lb.Rate{N: 100, Per: time.Second}) {
		t.Fatalf("throttle answered OK but the kernel holds %+v", got["a"].Protect.Throttle)
	}
	r := td.d.handle(context.Background(), reloadRequestFor())
	if !r.OK || !strings.Contains(r.Message, "lifted the throttles of a") {
		t.Fatalf("reload reply %+v; want OK naming the lifted throttle", r)
	}
	if got, _ := td.dp.state(); got["a"].Protect.Throttle.IsSet() {
		t.Fatalf("reload lifted the throttle in status only; the kernel still holds %+v", got["a"].Protect.Throttle)
	}
	if th := td.d.Snapshot().Services[0].Throttle; th != "" {
		t.Fatalf("status shows throttle %q after reload", th)
	}
}

func TestConfigTheKernelRefusesKeepsTheRunningOne(t *testing.T) {
	td := startDaemon(t, svcTOML("a", "198.51.100.10", "", be1), "")
	td.dp.mu.Lock()
	td.dp.refuse = func(s []lb.Service) error {
		for _, x := range s {
			if x.Name == "bad" {
				return fmt.Errorf("value too large for defined data type")
			}
		}
		return nil
	}
	td.dp.mu.Unlock()
	td.write(t, svcTOML("bad", "198.51.100.12", "", be1))
	_, err := td.d.Reload()
	if err == nil || !strings.Contains(err.Error(), "kernel refused") {
		t.Fatalf("reload of a config the kernel refuses: %v", err)
	}
	if got, _ := td.dp.state(); serviceNamesOf(got) != "a" {
		t.Fatalf("kernel holds %q, want the running a", serviceNamesOf(got))
	}
	snap := td.d.Snapshot()
	if len(snap.Services) != 1 || snap.Services[0].Name != "a" || !strings.Contains(snap.Config.LastError, "kernel refused") || snap.Reloads.Failed != 1 {
		t.Fatalf("status after refused reload: services %v, last error %q, reloads %+v", snap.Services, snap.Config.LastError, snap.Reloads)
	}
	// The running config still follows health.
	td.mon.flip("a", be1, health.StateDown)
	waitFor(t, "health change on the running config", func() bool {
		got, _ := td.dp.state()
		return len(got["a"].Slots) == 0
	})
}

// Cleanup of a dead backend's persistence and (down_action = flush) flows
// runs in the loop after the slots stopped pointing at it.
func TestDownBackendCleanupAfterApply(t *testing.T) {
	td := startDaemon(t, svcTOML("a", "198.51.100.10", "persistence = \"60s\"\ndown_action = \"flush\"", be1, be2), "")
	td.mon.flip("a", be2, health.StateDown)
	waitFor(t, "flush", func() bool {
		td.ct.mu.Lock()
		defer td.ct.mu.Unlock()
		return len(td.ct.flushed) == 1
	})
	td.dp.mu.Lock()
	order := strings.Join(td.dp.order, "; ")
	td.dp.mu.Unlock()
	if !strings.HasSuffix(order, "apply; forget a "+be2.String()) {
		t.Fatalf("call order %q; want the apply, then the persistence cleanup", order)
	}
	if td.ct.flushed[0] != "a "+be2.String() {
		t.Fatalf("flushed %v", td.ct.flushed)
	}
}

// Reloads racing health flips and throttles: at the end the kernel holds
// exactly the last config, with slots that match the last health.
func TestReloadsRacingHealthFlipsEndInTheFinalState(t *testing.T) {
	cfgA := svcTOML("stable", "198.51.100.10", "", be1, be2) + svcTOML("onlyA", "198.51.100.11", "", be1, be3)
	cfgB := svcTOML("stable", "198.51.100.10", "", be1, be2) + svcTOML("onlyB", "198.51.100.12", "", be2, be3)
	td := startDaemon(t, cfgA, "")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for _, svc := range []string{"stable", "onlyA", "onlyB"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				to := health.StateDown
				if i%2 == 1 {
					to = health.StateUp
				}
				td.mon.flip(svc, be3, to)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			td.d.throttle([]string{"stable", []string{"50/s", "off"}[i%2]})
		}
	}()
	for i := 0; i < 40; i++ {
		td.write(t, []string{cfgA, cfgB}[i%2])
		if _, err := td.d.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	td.write(t, cfgB)
	if _, err := td.d.Reload(); err != nil {
		t.Fatal(err)
	}
	td.mon.flip("onlyB", be3, health.StateDown)
	waitFor(t, "final state", func() bool {
		got, _ := td.dp.state()
		return serviceNamesOf(got) == "onlyB,stable" && slotsOf(got["onlyB"])[be3] == 0
	})
	got, _ := td.dp.state()
	if s := slotsOf(got["stable"]); s[be1] == 0 || s[be2] == 0 || got["stable"].Protect.Throttle.IsSet() {
		t.Fatalf("stable: slots %v throttle %v", s, got["stable"].Protect.Throttle)
	}
	if s := slotsOf(got["onlyB"]); s[be2] != len(got["onlyB"].Slots) {
		t.Fatalf("onlyB slots %v; want all on be2", s)
	}
}

func reloadRequestFor() control.Request { return control.Request{Command: "reload"} }

// Upgrading from a release that wrote no health.json: the slots the kernel
// still holds say which checked backends were down.
func TestFirstStartWithoutHealthFileAdoptsFromKernelSlots(t *testing.T) {
	dp := newFakeDataplane()
	dp.owners = map[string]map[netip.AddrPort]int{"198.51.100.10/tcp/80": {be1: 16}}
	extra := "[[service.backend]]\naddress = \"192.0.2.14:80\"\nbackup = true\n"
	td := startDaemonWith(t, svcTOML("a", "198.51.100.10", "", be1, be2)+extra+svcTOML("fresh", "198.51.100.11", "", be2), "", dp)
	if st := td.mon.initial("a", be2); st != health.StateDown {
		t.Errorf("be2 held no slot in the kernel: starts %q, want down", st)
	}
	for _, c := range []struct {
		svc string
		be  netip.AddrPort
	}{{"a", be1}, {"a", netip.MustParseAddrPort("192.0.2.14:80")}, {"fresh", be2}} {
		if st := td.mon.initial(c.svc, c.be); st != health.StateUp {
			t.Errorf("%s %s starts %q, want up (held slots, a backup, or a service the kernel did not have)", c.svc, c.be, st)
		}
	}
	got, _ := td.dp.state()
	if s := slotsOf(got["a"]); s[be2] != 0 || s[be1] == 0 {
		t.Errorf("first apply: slots %v", s)
	}
}
