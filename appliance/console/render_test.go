package console

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"lbd/appliance/status"
)

var update = flag.Bool("update", false, "rewrite testdata golden files from the current output")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("frame differs from %s (go test -update to accept):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func TestGolden80x24(t *testing.T) {
	golden(t, "frame-80x24.txt", Render(fixedSnapshot(), 80, 24, false))
}

func TestGoldenError80x24(t *testing.T) {
	golden(t, "error-80x24.txt", RenderError(dialError(), fixedSnapshot().Now, 80, 24, false))
}

// dialError is what a client gets when the daemon's socket is missing,
// built by hand so the test does not depend on whether lbd runs here.
func dialError() error {
	return fmt.Errorf("fetch status: %w", &net.OpError{
		Op: "dial", Net: "unix",
		Addr: &net.UnixAddr{Name: "/run/lbd/lbd.sock", Net: "unix"},
		Err:  os.NewSyscallError("connect", syscall.ENOENT),
	})
}

func TestErrorPageWording(t *testing.T) {
	now := fixedSnapshot().Now
	if out := RenderError(dialError(), now, 200, 24, false); !strings.Contains(out, "lbd not running: fetch status: dial unix /run/lbd/lbd.sock: connect: no such file or directory") {
		t.Errorf("dial error page:\n%s", out)
	}
	if out := RenderError(errors.New("decode status: unexpected EOF"), now, 80, 24, false); !strings.Contains(out, "status unavailable: decode status: unexpected EOF") {
		t.Errorf("other error page:\n%s", out)
	}
}

// Every frame stays inside the screen, whatever the size and content.
func TestFrameFitsScreen(t *testing.T) {
	big := fixedSnapshot()
	for i := 0; i < 40; i++ {
		svc := big.Services[0]
		svc.Name = fmt.Sprintf("service-with-a-rather-long-name-%d", i)
		big.Services = append(big.Services, svc)
	}
	for _, s := range []status.Snapshot{fixedSnapshot(), big, {}, movingSnapshot(300)} {
		for _, size := range [][2]int{{80, 24}, {40, 10}, {20, 3}, {200, 60}, {80, 1}} {
			f := build(s, size[0], movingHistory(300))
			f.fit(size[1])
			for _, out := range []string{Render(s, size[0], size[1], false), f.string(size[0], false)} {
				lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
				if len(lines) > size[1] {
					t.Errorf("%dx%d: %d lines", size[0], size[1], len(lines))
				}
				for _, l := range lines {
					if n := utf8.RuneCountInString(l); n > size[0] {
						t.Errorf("%dx%d: line of %d runes: %q", size[0], size[1], n, l)
					}
				}
			}
		}
	}
}

func TestOverflowSaysWhatWasCut(t *testing.T) {
	out := Render(fixedSnapshot(), 80, 22, false)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	last := lines[len(lines)-1]
	if last != "… 1 more service, 4 more backends" {
		t.Errorf("last line %q", last)
	}
}

func TestStateWordsWithAndWithoutColour(t *testing.T) {
	for _, color := range []bool{false, true} {
		out := Render(fixedSnapshot(), 80, 40, color)
		for _, w := range []string{"up", "down", "drain", "unchecked", "DOWN", "FAILED"} {
			if !strings.Contains(out, w) {
				t.Errorf("color=%v: %q missing", color, w)
			}
		}
		if has := strings.Contains(out, "\x1b["); has != color {
			t.Errorf("color=%v: ANSI escapes present = %v", color, has)
		}
	}
	out := Render(fixedSnapshot(), 80, 40, true)
	if !strings.Contains(out, "\x1b[1;31mdown") || !strings.Contains(out, "\x1b[32mup") {
		t.Errorf("state words not coloured: %q", out)
	}
}

func TestManyReloadErrorsSummarised(t *testing.T) {
	s := fixedSnapshot()
	s.Config.LastErrors = nil
	for i := 1; i <= 5; i++ {
		s.Config.LastErrors = append(s.Config.LastErrors, fmt.Sprintf("/config/lb.toml:%d:1: bad", i))
	}
	out := Render(s, 80, 40, false)
	if !strings.Contains(out, "/config/lb.toml:3:1: bad") || strings.Contains(out, "/config/lb.toml:4:1: bad") ||
		!strings.Contains(out, "… 2 more errors") {
		t.Errorf("errors not capped at %d:\n%s", maxErrorLines, out)
	}
}

func TestConntrackBelowThresholdIsNotAWarning(t *testing.T) {
	s := fixedSnapshot()
	s.Conntrack = status.Conntrack{Count: 1000, Max: 262144}
	if out := Render(s, 80, 40, false); strings.Contains(out, "nearly full") || !strings.Contains(out, "conntrack 1000/262144 (0%)") {
		t.Errorf("conntrack line wrong:\n%s", out)
	}
}

// movingHistory is what the console has seen after watching movingSnapshot
// for n+1 seconds, one fetch a second.
func movingHistory(n int) *history {
	h := &history{}
	for i := 0; i <= n; i++ {
		h.add(movingSnapshot(i), time.Time{})
	}
	return h
}

// The full-screen console after four minutes and a bit: a graph line per
// service, a health strip per backend (192.0.2.12's outage in it), the
// out-of-sync lines at the top, limits and refusals.
func TestGoldenGraphs80x24(t *testing.T) {
	const n = 250
	f := build(movingSnapshot(n), 80, movingHistory(n))
	f.fit(24)
	golden(t, "graphs-80x24.txt", f.string(80, false))
}

// TestPairLine: a node of a pair shows its role line near the top; a
// single appliance shows none.
func TestPairLine(t *testing.T) {
	s := fixedSnapshot()
	if out := Render(s, 120, 40, false); strings.Contains(out, "pair:") {
		t.Fatalf("single appliance shows a pair line:\n%s", out)
	}
	s.HA = &status.HA{Role: "BACKUP", RoleSince: s.Now.Add(-time.Minute), Priority: 100, RouterID: 51, Interface: "wan",
		Peer: "198.51.100.4", Serving: true,
		PeerAdvert: &status.PeerAdvert{From: "198.51.100.4", Priority: 150, At: s.Now.Add(-200 * time.Millisecond)}}
	out := Render(s, 120, 40, false)
	if !strings.Contains(out, "pair: BACKUP for 1m0s (priority 100, router id 51 on wan); peer 198.51.100.4 advertised priority 150 200ms ago") {
		t.Fatalf("no pair line:\n%s", out)
	}
}
