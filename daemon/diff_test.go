package daemon

import (
	"context"
	"strings"
	"testing"

	"net/netip"

	"lbd/appliance/control"
)

func TestDiffSaysWhatAReloadWouldChangeAndChangesNothing(t *testing.T) {
	a := svcTOML("web", "198.51.100.10", "", be1, be2, be3) + svcTOML("old", "198.51.100.11", "", be1)
	td := startDaemon(t, a, "")
	_, applies := td.dp.state()
	b := svcTOML("web", "198.51.100.10", "persistence = \"30s\"", be1, be2) + svcTOML("new", "198.51.100.12", `scheduler = "sh"`, be3)
	td.write(t, b)
	r := td.d.handle(context.Background(), control.Request{Command: "diff"})
	if !r.OK {
		t.Fatalf("diff: %+v", r)
	}
	got := strings.Join(r.Lines, "\n")
	t.Log("\n" + got)
	for _, want := range []string{
		"- service old 198.51.100.11:80/tcp: removed",
		"+ service new 198.51.100.12:80/tcp: added, sh, 1 backends",
		"~ service web 198.51.100.10:80/tcp:",
		"    persistence: 0s -> 30s",
		"    - backend 192.0.2.13:80",
		// rr over 3 backends, M=33 -> over 2, M=32: every slot index is
		// compared, so most move (rr tables are interleaved).
		"    slots: ",
		"    share of new flows: 192.0.2.11:80 33.3% -> 50.0%, 192.0.2.12:80 33.3% -> 50.0%, 192.0.2.13:80 33.3% -> 0.0%",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("diff lacks %q", want)
		}
	}
	if _, n := td.dp.state(); n != applies {
		t.Fatalf("diff applied something: %d -> %d transactions", applies, n)
	}
	// Unchanged file: says so.
	td.write(t, a)
	r = td.d.handle(context.Background(), control.Request{Command: "diff"})
	if len(r.Lines) != 1 || !strings.HasPrefix(r.Lines[0], "no change") {
		t.Fatalf("diff of the running file: %q", r.Lines)
	}
	// A broken file: the errors, as a reload would show them.
	td.write(t, a+"bogus = 1\n")
	r = td.d.handle(context.Background(), control.Request{Command: "diff"})
	if r.OK || len(r.Errors) == 0 || !strings.Contains(r.Errors[0], "lb.toml:") {
		t.Fatalf("diff of a broken file: %+v", r)
	}
}

func TestSlotsMovedCountsOnlyChangedOwners(t *testing.T) {
	if m, n := slotsMoved([]netip.AddrPort{be1, be2, be1, be2}, []netip.AddrPort{be1, be2, be1, be3}); m != 1 || n != 4 {
		t.Fatalf("moved %d of %d, want 1 of 4", m, n)
	}
	if m, n := slotsMoved([]netip.AddrPort{be1, be2}, nil); m != 2 || n != 2 {
		t.Fatalf("all gone: moved %d of %d", m, n)
	}
}
