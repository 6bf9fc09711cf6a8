package console

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdamore/tcell/v2"

	"lbd/appliance/status"
)

// recordingScreen hands each shown frame to the test as text. It reads the
// cells inside Show, on the run loop's goroutine, so the test never reads
// the simulation screen while run writes it.
type recordingScreen struct {
	tcell.SimulationScreen
	frames chan string
}

func (r *recordingScreen) Show() {
	r.SimulationScreen.Show()
	cells, w, h := r.GetContents()
	var b strings.Builder
	for y := 0; y < h; y++ {
		var row strings.Builder
		for x := 0; x < w; x++ {
			if rs := cells[y*w+x].Runes; len(rs) > 0 {
				row.WriteString(string(rs))
			} else {
				row.WriteByte(' ')
			}
		}
		b.WriteString(strings.TrimRight(row.String(), " ") + "\n")
	}
	r.frames <- b.String()
}

func newScreen(t *testing.T) *recordingScreen {
	t.Helper()
	sim := tcell.NewSimulationScreen("UTF-8")
	if err := sim.Init(); err != nil {
		t.Fatal(err)
	}
	sim.SetSize(80, 24)
	t.Cleanup(sim.Fini)
	return &recordingScreen{SimulationScreen: sim, frames: make(chan string)}
}

// waitFrame returns the next shown frame; the deadline only stops a broken
// test from hanging.
func waitFrame(t *testing.T, scr *recordingScreen) string {
	t.Helper()
	select {
	case f := <-scr.frames:
		return f
	case <-time.After(30 * time.Second):
		t.Fatal("no frame shown")
		return ""
	}
}

// The page shows the fetch error, keeps retrying, shows the state once the
// daemon answers, and q quits.
func TestRunRetriesAndQuits(t *testing.T) {
	scr := newScreen(t)
	var mu sync.Mutex
	calls := 0
	fetch := func() (status.Snapshot, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return status.Snapshot{}, dialError()
		}
		return fixedSnapshot(), nil
	}
	done := make(chan error, 1)
	go func() { done <- run(context.Background(), scr, fetch, time.Millisecond) }()

	if f := waitFrame(t, scr); !strings.Contains(f, "lbd not running") {
		t.Errorf("first frame is not the error page:\n%s", f)
	}
	f := waitFrame(t, scr)
	if want := Render(fixedSnapshot(), 80, 24, false); f != want {
		t.Errorf("screen differs from Render:\n--- screen\n%s--- Render\n%s", f, want)
	}
	scr.InjectKey(tcell.KeyRune, 'q', tcell.ModNone)
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run returned %v", err)
			}
			return
		case <-scr.frames: // refreshes keep coming until q is read
		case <-time.After(30 * time.Second):
			t.Fatal("q did not quit")
		}
	}
}

func TestQuitKeys(t *testing.T) {
	for _, ev := range []*tcell.EventKey{
		tcell.NewEventKey(tcell.KeyRune, 'q', tcell.ModNone),
		tcell.NewEventKey(tcell.KeyRune, 'Q', tcell.ModNone),
		tcell.NewEventKey(tcell.KeyCtrlC, 0, tcell.ModCtrl),
		tcell.NewEventKey(tcell.KeyEscape, 0, tcell.ModNone),
	} {
		if !quits(ev) {
			t.Errorf("%s does not quit", ev.Name())
		}
	}
	if quits(tcell.NewEventKey(tcell.KeyRune, 'x', tcell.ModNone)) {
		t.Error("x quits")
	}
}

// Run keeps a history of what it fetched and draws graphs from it.
func TestRunDrawsGraphs(t *testing.T) {
	scr := newScreen(t)
	var mu sync.Mutex
	n := 0
	fetch := func() (status.Snapshot, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		return movingSnapshot(n), nil // a second of daemon time per fetch
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, scr, fetch, time.Millisecond) }()
	var f string
	for i := 0; i < 40; i++ {
		f = waitFrame(t, scr)
	}
	cancel()
	for {
		select {
		case <-done:
			for _, want := range []string{"health 4m", "   new/s ", "  active ", "███ ok"} {
				if !strings.Contains(f, want) {
					t.Errorf("frame after 40 fetches lacks %q:\n%s", want, f)
				}
			}
			return
		case <-scr.frames:
		}
	}
}
