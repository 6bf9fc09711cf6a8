package console

import (
	"math"
	"time"

	"lbd/appliance/status"
)

// The console's graphs: graphCells character cells, each graphStep of
// time, so a graph covers the last four minutes. Cells are aligned to
// absolute time (not to now), so a sample stays in its cell from one
// frame to the next and the graphs do not shimmer as they scroll.
const (
	graphCells = 12
	graphStep  = 20 * time.Second
)

// sparkRamp draws a value as the height of a block; sparkRampVT is for the
// Linux virtual console, whose built-in font (code page 437) has only full,
// half and shaded blocks.
var (
	sparkRamp   = []rune("▁▂▃▄▅▆▇█")
	sparkRampVT = []rune("_▄█")
)

// healthCell draws a backend state in a health strip: full when it serves,
// low when down, so a strip reads without colour. The strip shows the
// worst state seen in a cell, so a short outage is not averaged away.
var healthCell = map[string]rune{
	status.StateUp:        '█',
	status.StateUnchecked: '▒',
	status.StateDrain:     '▄',
	status.StateDown:      '▁',
}

// healthCellVT is healthCell for the Linux virtual console's font.
var healthCellVT = map[string]rune{
	status.StateUp:        '█',
	status.StateUnchecked: '▒',
	status.StateDrain:     '▄',
	status.StateDown:      '_',
}

// worse orders states for a cell holding several: down hides anything.
var worse = map[string]int{status.StateUp: 0, status.StateUnchecked: 1, status.StateDrain: 2, status.StateDown: 3}

// history is what the console remembers between fetches: the daemon keeps
// no history, so the console builds its own from the snapshots it sees.
type history struct {
	samples []sample
	vt      bool // draw with the Linux console's glyphs
}

type sample struct {
	at   time.Time
	svcs map[string]svcSample
}

type svcSample struct {
	flows  uint64 // the new-flow counter (Service.Packets)
	bytes  uint64 // traffic both ways (Service.Traffic)
	active int
	states map[string]string // by backend address
}

// add records snapshot s, taken at at unless the snapshot carries the
// daemon's time (preferred: rates then follow the daemon's clock, not when
// the answer arrived).
func (h *history) add(s status.Snapshot, at time.Time) {
	if !s.Now.IsZero() {
		at = s.Now
	}
	if n := len(h.samples); n > 0 {
		last := h.samples[n-1].at
		if at.Equal(last) {
			return // the same snapshot again
		}
		if at.Before(last) {
			h.samples = nil // the clock went back: old points would lie
		}
	}
	smp := sample{at: at, svcs: map[string]svcSample{}}
	for _, svc := range s.Services {
		ss := svcSample{flows: svc.Packets, bytes: svc.Traffic.BytesIn + svc.Traffic.BytesOut, states: map[string]string{}}
		for _, b := range svc.Backends {
			ss.active += b.ActiveConnections
			ss.states[b.Address] = b.State
		}
		smp.svcs[svc.Name] = ss
	}
	h.samples = append(h.samples, smp)
	// Keep one cell more than shown, so the oldest cell's rate has a start.
	keep := at.Add(-(graphCells + 1) * graphStep)
	i := 0
	for i < len(h.samples)-2 && h.samples[i].at.Before(keep) {
		i++
	}
	h.samples = h.samples[i:]
}

// ready reports whether there is anything to draw: one snapshot makes no
// rate, and `lbd console --once` never has more.
func (h *history) ready() bool { return h != nil && len(h.samples) >= 2 }

func bucket(t time.Time) int64 { return t.Unix() / int64(graphStep/time.Second) }

// cell is the graph cell t falls into, or -1 when it is off the left edge.
func (h *history) cell(t time.Time) int {
	c := graphCells - 1 - int(bucket(h.samples[len(h.samples)-1].at)-bucket(t))
	if c < 0 || c >= graphCells {
		return -1
	}
	return c
}

func nanCells() []float64 {
	out := make([]float64, graphCells)
	for i := range out {
		out[i] = math.NaN()
	}
	return out
}

// rate is the service's new connections per second in each cell: growth
// of the new-flow counter over the time between polls. A counter that went
// down (the service was re-created) adds nothing rather than a negative.
func (h *history) rate(name string) []float64 {
	var flows, secs [graphCells]float64
	for i := 1; i < len(h.samples); i++ {
		a, okA := h.samples[i-1].svcs[name]
		b, okB := h.samples[i].svcs[name]
		c := h.cell(h.samples[i].at)
		if !okA || !okB || b.flows < a.flows || c < 0 {
			continue
		}
		flows[c] += float64(b.flows - a.flows)
		secs[c] += h.samples[i].at.Sub(h.samples[i-1].at).Seconds()
	}
	out := nanCells()
	for c := range out {
		if secs[c] > 0 {
			out[c] = flows[c] / secs[c]
		}
	}
	return out
}

// lastRate is the rate between the two newest samples, the number shown
// next to the graph; NaN when the service is not in both.
func (h *history) lastRate(name string) float64 {
	n := len(h.samples)
	a, okA := h.samples[n-2].svcs[name]
	b, okB := h.samples[n-1].svcs[name]
	dt := h.samples[n-1].at.Sub(h.samples[n-2].at).Seconds()
	if !okA || !okB || b.flows < a.flows || dt <= 0 {
		return math.NaN()
	}
	return float64(b.flows-a.flows) / dt
}

// lastBytesRate is the service's traffic (bytes in + out per second)
// between the last two snapshots; NaN when there is no rate.
func (h *history) lastBytesRate(name string) float64 {
	n := len(h.samples)
	a, okA := h.samples[n-2].svcs[name]
	b, okB := h.samples[n-1].svcs[name]
	dt := h.samples[n-1].at.Sub(h.samples[n-2].at).Seconds()
	if !okA || !okB || b.bytes < a.bytes || dt <= 0 {
		return math.NaN()
	}
	return float64(b.bytes-a.bytes) / dt
}

// active is the service's active connections, averaged over each cell.
func (h *history) active(name string) []float64 {
	var sum, n [graphCells]float64
	for _, smp := range h.samples {
		s, ok := smp.svcs[name]
		c := h.cell(smp.at)
		if !ok || c < 0 {
			continue
		}
		sum[c] += float64(s.active)
		n[c]++
	}
	out := nanCells()
	for c := range out {
		if n[c] > 0 {
			out[c] = sum[c] / n[c]
		}
	}
	return out
}

// health is a backend's worst state in each cell, "" where unknown.
func (h *history) health(name, addr string) []string {
	out := make([]string, graphCells)
	for _, smp := range h.samples {
		st := smp.svcs[name].states[addr]
		c := h.cell(smp.at)
		if st == "" || c < 0 {
			continue
		}
		if out[c] == "" || worse[st] > worse[out[c]] {
			out[c] = st
		}
	}
	return out
}

// spark draws values as blocks scaled to their own maximum; a cell without
// data is a space. All zero draws the lowest block: "nothing", not "no data".
func (h *history) spark(vals []float64) string {
	ramp := sparkRamp
	if h.vt {
		ramp = sparkRampVT
	}
	top := 0.0
	for _, v := range vals {
		if !math.IsNaN(v) && v > top {
			top = v
		}
	}
	out := make([]rune, len(vals))
	for i, v := range vals {
		switch {
		case math.IsNaN(v):
			out[i] = ' '
		case top <= 0:
			out[i] = ramp[0]
		default:
			out[i] = ramp[min(len(ramp)-1, int(math.Round(v/top*float64(len(ramp)-1))))]
		}
	}
	return string(out)
}

// strip draws a backend's health cells as spans coloured by state.
func (h *history) strip(states []string) []span {
	cells := healthCell
	if h.vt {
		cells = healthCellVT
	}
	var out []span
	for _, st := range states {
		r, ok := cells[st]
		if !ok {
			r = ' '
			if st != "" {
				r = '?' // a state this page does not know yet
			}
		}
		style, ok := stateStyle[st]
		if !ok {
			style = plain
		}
		out = append(out, span{text: string(r), st: style})
	}
	return out
}
