package e2e

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"lbd/internal/lab"
)

// restartSoak is how long clients keep connecting after the restarted lbd
// answers. Several health intervals (400 ms here): a daemon that forgot
// the dead backend puts it back for fall x interval, and lets it be found
// by the load well within this time.
const restartSoak = 5 * time.Second

// TestRestartRemembersHealth: a backend that was down before `kill -9`
// gets no new flow after lbd comes back (issue 10, item 2). lbd must adopt
// the last known health at start instead of starting every known backend
// as up. A backend that is new in the config starts as the README says
// ("Backends start as up"), so it gets its share at once.
func TestRestartRemembersHealth(t *testing.T) {
	e := newEnv(t, 4, 1)
	// snat = false keeps the client's address on the way to the backend,
	// so a counter in be2's namespace can tell client flows from lbd's
	// own health checks (which come from the lb's LAN address).
	svc := func(ids ...int) string {
		return svcHeader("echo", lab.VIPv4, 7000, "snat = false") + fastHealth("tcp", "") + backends(7000, ids...)
	}
	e.writeConfig(svc(1, 2, 3))
	e.startLBD()
	be := func(i int) string { return lab.BackendV4(i) + ":7000" }
	for i := 1; i <= 3; i++ {
		e.waitState("echo", be(i), "up")
		e.waitSlots("echo", be(i), some)
	}
	witness := newSYNWitness(t, e, 2)

	e.lab.StopBackend(2)
	e.waitState("echo", be(2), "down") // and its slots are gone
	ep := nftEndpoint{VIP: netip.MustParseAddr(lab.VIPv4), Proto: 6, Port: 7000}
	ks, err := readKernel(e.lab.NSFile("lb"))
	if err != nil {
		t.Fatal(err)
	}
	if ch := ks.Dispatch[ep]; ch != "svc_echo" {
		t.Fatalf("the kernel's dispatch map sends %s to %q, want svc_echo", ep, ch)
	}
	for _, b := range ks.Slots[ep] {
		if b == beV4(2, 7000) {
			t.Fatalf("status says be2 is down and slotless, but the kernel still has a slot for it: %v", ks.Slots[ep])
		}
	}

	// Steady new connections from before the kill until well after the
	// restart.
	l := e.startLoad(0, vip4(7000), 10*time.Millisecond)
	waitUntil(t, "the load to get going", func() bool { ok, _, _, _ := l.result(); return ok >= 20 })

	e.stopLBD(true) // SIGKILL: no chance to save anything on the way out
	killedAt := time.Now()
	// A backend that is new across the restart (be4, listening).
	e.writeConfig(svc(1, 2, 3, 4))
	e.startLBD()
	upAt := time.Now()
	first, err := e.backendStates()
	if err != nil {
		t.Fatal(err)
	}
	if s := first["echo"][beV4(2, 7000)]; s.State != "down" || s.Slots != 0 {
		t.Errorf("right after the restart be2 should be down with no slot (its last known health), status says %+v", s)
	}
	if s := first["echo"][beV4(4, 7000)]; s.State != "up" {
		t.Errorf("a backend new in the config should start up (README: backends start as up) until its checks say otherwise, status says %+v", s)
	}
	time.Sleep(restartSoak)
	l.stop()

	ok, failed, by, failures := l.result()
	t.Logf("lbd down for %.2fs; load: %s", upAt.Sub(killedAt).Seconds(), l)
	if failed != 0 {
		t.Errorf("%d of %d new connections failed across the restart (want exactly 0); first failures:\n  %s", failed, ok+failed, strings.Join(failures, "\n  "))
	}
	if n := witness.count(); n != 0 {
		t.Errorf("the dead backend be2 received %d client SYNs after it went down (want 0)", n)
	}
	if by["be4"] == 0 {
		t.Errorf("the new backend be4 got no connection after the restart: %v", by)
	}
	if by["be1"] == 0 || by["be3"] == 0 {
		t.Errorf("the live backends should have shared the load: %v", by)
	}
	st, err := e.backendStates()
	if err != nil {
		t.Fatal(err)
	}
	if s := st["echo"][beV4(2, 7000)]; s.State != "down" || s.Slots != 0 {
		t.Errorf("be2 should still be down and slotless at the end: %+v", s)
	}
}

// waitFor polls cond until it holds; the deadline only bounds a broken
// test.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// synWitness counts, in a backend's own namespace, TCP SYNs to port 7000
// that come from the client side (198.51.100.0/24). It is the backend's
// view of "received a connection", independent of lbd and of whether
// anything listened.
type synWitness struct {
	t  *testing.T
	e  *env
	ns string
}

func newSYNWitness(t *testing.T, e *env, backend int) *synWitness {
	t.Helper()
	ns := e.lab.Backend(backend)
	script := `add table inet witness
add counter inet witness syns
add chain inet witness in { type filter hook input priority -300; }
add rule inet witness in ip saddr 198.51.100.0/24 tcp dport 7000 tcp flags & (syn | ack) == syn counter name syns
`
	if _, err := e.lab.Output(ns, "bash", "-c", "nft -f - <<'EOF'\n"+script+"EOF\n"); err != nil {
		t.Fatalf("witness counter in %s: %v", ns, err)
	}
	return &synWitness{t: t, e: e, ns: ns}
}

var packetsRE = regexp.MustCompile(`packets (\d+)`)

func (w *synWitness) count() int {
	w.t.Helper()
	out, err := w.e.lab.Output(w.ns, "nft", "list", "counter", "inet", "witness", "syns")
	if err != nil {
		w.t.Fatalf("read witness counter: %v", err)
	}
	m := packetsRE.FindStringSubmatch(out)
	if m == nil {
		w.t.Fatalf("witness counter: no packet count in %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestRestartDropsRemovedService: a service that leaves the config while
// lbd is down (kill -9, edit, start) must leave nothing behind in table
// lbd: not its chain, its dispatch and slot elements, nor its named
// counters. The concurrency test found the counters left over when a
// restart fell between a config write and its reload; this is that case
// made deterministic.
func TestRestartDropsRemovedService(t *testing.T) {
	e := newEnv(t, 2, 1)
	keep := svcDef{Name: "keep", VIP: lab.VIPv4, Port: 7000, Proto: "tcp", Backends: []netip.AddrPort{beV4(1, 7000), beV4(2, 7000)}}
	gone := svcDef{Name: "gone", VIP: "203.0.113.11", Port: 7000, Proto: "tcp", Backends: []netip.AddrPort{beV4(1, 7000)}}
	gone6 := svcDef{Name: "gone6", VIP: "2001:db8:3::11", Port: 7000, Proto: "tcp", Backends: []netip.AddrPort{beV6(2, 7000)}}
	e.writeConfig(configOf(keep, gone, gone6))
	e.startLBD()
	if d := e.kernelServicesDiff([]svcDef{keep, gone, gone6}); len(d) > 0 {
		t.Fatalf("before the restart the kernel should hold all three services:\n  %s", strings.Join(d, "\n  "))
	}
	e.stopLBD(true)
	e.writeConfig(configOf(keep))
	e.startLBD()
	ks, err := readKernel(e.lab.NSFile("lb"))
	if err != nil {
		t.Fatal(err)
	}
	want := []wantService{{Name: "keep", EP: keep.key(), Up: keep.Backends}}
	if d := ks.diffKernel(want, []string{"keep", "gone", "gone6"}); len(d) > 0 {
		t.Errorf("after a restart on a config without gone and gone6 the kernel still differs:\n  %s", strings.Join(d, "\n  "))
	}
	if ans, err := e.askOnce(0, vip4(7000)); err != nil {
		t.Errorf("keep should still answer after the restart: %q %v", ans, err)
	}
}
