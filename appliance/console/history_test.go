package console

import (
	"math"
	"strings"
	"testing"
	"time"

	"lbd/appliance/status"
)

// steady is one service whose new-flow counter grows by perSec a second.
func steady(sec int, perSec uint64, state string) status.Snapshot {
	return status.Snapshot{
		Now: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC).Add(time.Duration(sec) * time.Second),
		Services: []status.Service{{Name: "s", Packets: uint64(sec) * perSec,
			Backends: []status.Backend{{Address: "192.0.2.1:80", State: state, ActiveConnections: 7}}}},
	}
}

func TestHistoryRate(t *testing.T) {
	h := &history{}
	for i := 0; i <= 300; i++ {
		h.add(steady(i, 10, status.StateUp), time.Time{})
	}
	if got := h.lastRate("s"); got != 10 {
		t.Errorf("lastRate %v, want 10", got)
	}
	for c, v := range h.rate("s") {
		if v != 10 {
			t.Errorf("cell %d: rate %v, want 10", c, v)
		}
	}
	if got := h.spark(h.rate("s")); got != strings.Repeat("█", graphCells) {
		t.Errorf("steady rate drawn as %q", got)
	}
	if n := len(h.samples); n > int((graphCells+1)*graphStep/time.Second)+2 {
		t.Errorf("history keeps %d samples, more than the graphs cover", n)
	}
}

// A console just started has drawn only its newest cell.
func TestHistoryFresh(t *testing.T) {
	h := &history{}
	h.add(steady(0, 5, status.StateUp), time.Time{})
	if h.ready() {
		t.Error("ready with one snapshot: there is no rate yet")
	}
	if Render(steady(0, 5, status.StateUp), 80, 24, false) != build(steady(0, 5, status.StateUp), 80, h).string(80, false) {
		t.Error("one snapshot draws differently from Render")
	}
	h.add(steady(1, 5, status.StateUp), time.Time{})
	if !h.ready() {
		t.Fatal("not ready after two snapshots")
	}
	if got := h.spark(h.rate("s")); got != strings.Repeat(" ", graphCells-1)+"█" {
		t.Errorf("fresh graph %q, want data in the last cell only", got)
	}
	// The same snapshot fetched twice is one sample, not a zero rate.
	h.add(steady(1, 5, status.StateUp), time.Time{})
	if len(h.samples) != 2 || h.lastRate("s") != 5 {
		t.Errorf("%d samples, last rate %v", len(h.samples), h.lastRate("s"))
	}
}

// A counter that goes down (service re-created by a reload) must not draw
// a huge or negative rate, and a clock going back starts over.
func TestHistoryResets(t *testing.T) {
	h := &history{}
	h.add(steady(10, 100, status.StateUp), time.Time{})
	h.add(steady(11, 1, status.StateUp), time.Time{})
	if !math.IsNaN(h.lastRate("s")) {
		t.Errorf("rate across a counter reset: %v", h.lastRate("s"))
	}
	for _, v := range h.rate("s") {
		if !math.IsNaN(v) {
			t.Errorf("rate cell across a counter reset: %v", v)
		}
	}
	h.add(steady(5, 1, status.StateUp), time.Time{})
	if len(h.samples) != 1 {
		t.Errorf("clock went back, %d samples kept", len(h.samples))
	}
}

// The strip keeps the worst state of a cell, so a short outage shows.
func TestHealthStrip(t *testing.T) {
	h := &history{}
	for i := 0; i <= 60; i++ {
		st := status.StateUp
		if i == 30 {
			st = status.StateDown
		}
		h.add(steady(i, 1, st), time.Time{})
	}
	got := line{spans: h.strip(h.health("s", "192.0.2.1:80"))}.text()
	if !strings.Contains(got, "█▁█") || strings.Count(got, "▁") != 1 {
		t.Errorf("one-second outage drawn as %q", got)
	}
	h.vt = true
	if got := (line{spans: h.strip(h.health("s", "192.0.2.1:80"))}).text(); strings.ContainsAny(got, "▁▂▃▅▆▇") {
		t.Errorf("Linux console strip uses glyphs its font lacks: %q", got)
	}
	if got := h.spark([]float64{0, 1, 2, 3, 4, math.NaN()}); got != "_▄▄██ " {
		t.Errorf("Linux console sparkline %q", got)
	}
}

func TestDrainText(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		d    *status.Drain
		want string
	}{
		{nil, ""},
		{&status.Drain{Since: now.Add(-time.Minute)}, "drained for 1m 0s"},
		{&status.Drain{Since: now.Add(-time.Minute), Deadline: now.Add(90 * time.Second)}, "drained, flush in 1m 30s"},
		{&status.Drain{Since: now.Add(-time.Minute), Done: now}, "drained, no flows left"},
		{&status.Drain{Since: now.Add(-time.Minute), Done: now, Flushed: 12}, "drained, flushed 12"},
	} {
		if got := drainText(c.d, now); got != c.want {
			t.Errorf("%+v: %q, want %q", c.d, got, c.want)
		}
	}
}
