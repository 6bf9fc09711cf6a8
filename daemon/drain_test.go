package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	"lbd/appliance/control"
	"lbd/lb"
)

func backendStatus(t *testing.T, td *testDaemon, svc, addr string) (state string, drain bool, done bool, flushed uint) {
	t.Helper()
	for _, s := range td.d.Snapshot().Services {
		if s.Name != svc {
			continue
		}
		for _, b := range s.Backends {
			if b.Address == addr {
				if b.Drain == nil {
					return b.State, false, false, 0
				}
				return b.State, true, !b.Drain.Done.IsZero(), b.Drain.Flushed
			}
		}
	}
	t.Fatalf("no %s %s in status", svc, addr)
	return
}

func TestRuntimeDrainKeptAcrossReloadAndLifted(t *testing.T) {
	text := svcTOML("a", "198.51.100.10", "", be1, be2)
	td := startDaemon(t, text, "")
	call := func(cmd string, args ...string) control.Response {
		return td.d.handle(context.Background(), control.Request{Command: cmd, Args: args})
	}
	if r := call("drain", "a", "192.0.2.99"); r.OK || !strings.Contains(strings.Join(r.Errors, ""), "has no backend") {
		t.Fatalf("unknown backend: %+v", r)
	}
	if r := call("drain", "a", "192.0.2.12"); !r.OK { // port may be left out
		t.Fatal(r.Errors)
	}
	got, _ := td.dp.state()
	if s := slotsOf(got["a"]); s[be2] != 0 || s[be1] != len(got["a"].Slots) {
		t.Fatalf("drain answered OK but the kernel has slots %v", s)
	}
	if st, dr, _, _ := backendStatus(t, td, "a", be2.String()); st != "drain" || !dr {
		t.Fatalf("status %q drain %v", st, dr)
	}
	// A reload that keeps the backend keeps the drain.
	if _, err := td.d.Reload(); err != nil {
		t.Fatal(err)
	}
	got, _ = td.dp.state()
	if s := slotsOf(got["a"]); s[be2] != 0 {
		t.Fatalf("reload lost the drain: slots %v", s)
	}
	if r := call("undrain", "a", be2.String()); !r.OK {
		t.Fatal(r.Errors)
	}
	got, _ = td.dp.state()
	if s := slotsOf(got["a"]); s[be2] == 0 {
		t.Fatalf("undrain answered OK but be2 has no slots: %v", s)
	}
	// A reload that drops the backend drops its drain.
	call("drain", "a", be2.String())
	td.write(t, svcTOML("a", "198.51.100.10", "", be1))
	td.d.Reload()
	td.write(t, text)
	td.d.Reload()
	if st, dr, _, _ := backendStatus(t, td, "a", be2.String()); dr || st == "drain" {
		t.Fatalf("a backend removed and re-added kept an old drain: %q", st)
	}
}

func TestDrainDoneAtZeroFlowsAndFlushedAtDeadline(t *testing.T) {
	td := startDaemon(t, svcTOML("a", "198.51.100.10", "", be1, be2), "")
	call := func(cmd string, args ...string) control.Response {
		return td.d.handle(context.Background(), control.Request{Command: cmd, Args: args})
	}
	got, _ := td.dp.state()
	svc := got["a"]
	ep := svc.Endpoint()
	td.ct.mu.Lock()
	td.ct.active = map[lb.FlowKey]int{{Endpoint: ep, Backend: be1}: 3, {Endpoint: ep, Backend: be2}: 5}
	td.ct.mu.Unlock()
	if r := call("drain", "a", be1.String()); !r.OK {
		t.Fatal(r.Errors)
	}
	if r := call("drain", "a", be2.String(), "1ms"); !r.OK {
		t.Fatal(r.Errors)
	}
	time.Sleep(5 * time.Millisecond) // past be2's deadline
	td.d.conntrackTick()
	waitFor(t, "be2 flushed at its deadline", func() bool {
		_, _, done, flushed := backendStatus(t, td, "a", be2.String())
		return done && flushed == 1
	})
	if _, _, done, _ := backendStatus(t, td, "a", be1.String()); done {
		t.Fatal("be1 still has 3 flows and no deadline: not done")
	}
	td.ct.mu.Lock()
	td.ct.active = nil
	td.ct.mu.Unlock()
	td.d.conntrackTick()
	if _, _, done, flushed := backendStatus(t, td, "a", be1.String()); !done || flushed != 0 {
		t.Fatalf("be1 at zero flows: done %v flushed %d", done, flushed)
	}
	td.ct.mu.Lock()
	defer td.ct.mu.Unlock()
	if strings.Join(td.ct.flushed, ",") != "a "+be2.String() {
		t.Fatalf("flushed %v; want only be2", td.ct.flushed)
	}
}
