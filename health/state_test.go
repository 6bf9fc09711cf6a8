package health

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// results turns "+--+" into pass/fail results one second apart.
func results(pattern string) []Result {
	base := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	var out []Result
	for i, c := range pattern {
		r := Result{OK: c == '+', At: base.Add(time.Duration(i) * time.Second), Reason: "status 503"}
		if r.OK {
			r.Reason = "status 200"
		}
		out = append(out, r)
	}
	return out
}

func TestMachineRiseFall(t *testing.T) {
	tests := []struct {
		name    string
		spec    Spec
		initial State
		pattern string
		// states after each result, one letter each: u(p) d(own) c (unchecked)
		want string
	}{
		{"up stays up on passes", Spec{Rise: 2, Fall: 3}, StateUp, "+++", "uuu"},
		{"fall 3 needs 3 failures", Spec{Rise: 2, Fall: 3}, StateUp, "---", "uud"},
		{"a pass resets the failure streak", Spec{Rise: 2, Fall: 3}, StateUp, "--+--+---", "uuuuuuuud"},
		{"rise 2 brings it back", Spec{Rise: 2, Fall: 3}, StateUp, "---++", "uuddu"},
		{"a failure resets the pass streak", Spec{Rise: 2, Fall: 1}, StateDown, "+-+-++", "dddddu"},
		{"empty initial is up", Spec{Rise: 2, Fall: 1}, "", "-", "d"},
		{"initial down needs rise passes", Spec{Rise: 3, Fall: 1}, StateDown, "+++", "ddu"},
		{"rise 1 fall 1 follows every result", Spec{Rise: 1, Fall: 1}, StateUp, "-+-+", "dudu"},
		{"type none stays unchecked", Spec{Type: TypeNone, Rise: 1, Fall: 1}, StateDown, "-+-", "ccc"},
	}
	letter := map[State]string{StateUp: "u", StateDown: "d", StateUnchecked: "c"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMachine(tt.spec, tt.initial)
			var got strings.Builder
			for _, r := range results(tt.pattern) {
				m.Observe(r)
				got.WriteString(letter[m.State()])
			}
			if got.String() != tt.want {
				t.Errorf("states = %s, want %s", got.String(), tt.want)
			}
		})
	}
}

func TestMachineReportsTransitionAndCounts(t *testing.T) {
	m := NewMachine(Spec{Rise: 2, Fall: 2}, StateUp)
	var log []string
	for _, r := range results("+--++") {
		if from, to, changed := m.Observe(r); changed {
			log = append(log, fmt.Sprintf("%s->%s at %s", from, to, m.ChangedAt().Format("05")))
		}
	}
	want := "up->down at 02,down->up at 04"
	if got := strings.Join(log, ","); got != want {
		t.Errorf("transitions = %s, want %s", got, want)
	}
	if p, f := m.Counts(); p != 3 || f != 2 {
		t.Errorf("Counts() = %d passed, %d failed; want 3, 2", p, f)
	}
	if m.Last().Reason != "status 200" || !m.Last().OK {
		t.Errorf("Last() = %+v", m.Last())
	}
}

func TestMachineNeverChangedHasZeroTime(t *testing.T) {
	m := NewMachine(Spec{Rise: 2, Fall: 3}, StateUp)
	m.Observe(results("-")[0])
	if !m.ChangedAt().IsZero() {
		t.Errorf("ChangedAt() = %v, want zero before any transition", m.ChangedAt())
	}
}
