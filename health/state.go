package health

import "time"

// State is a target's health as reported to users and the data plane; the
// values match the status contract ("up", "down", "unchecked").
type State string

// States.
const (
	StateUnchecked State = "unchecked" // type none: never checked, always used
	StateUp        State = "up"
	StateDown      State = "down"
)

// Machine is the rise/fall hysteresis of one target: a single failed check
// never drops an up backend, Fall consecutive failures do; a down backend
// needs Rise consecutive passes. It is not safe for concurrent use (the
// Monitor guards it).
type Machine struct {
	rise, fall int
	state      State
	streak     int // consecutive results disagreeing with state
	passed     uint64
	failed     uint64
	last       Result
	changedAt  time.Time
}

// NewMachine starts a machine for a normalized spec in the initial state
// (StateUp when empty). Type none always yields StateUnchecked.
func NewMachine(s Spec, initial State) *Machine {
	m := &Machine{rise: s.Rise, fall: s.Fall, state: initial}
	switch {
	case s.Type == TypeNone:
		m.state = StateUnchecked
	case initial != StateDown:
		m.state = StateUp
	}
	return m
}

// Observe records one result and reports the state change it caused, if any.
func (m *Machine) Observe(r Result) (from, to State, changed bool) {
	m.last = r
	if r.OK {
		m.passed++
	} else {
		m.failed++
	}
	if m.state == StateUnchecked {
		return m.state, m.state, false
	}
	// A result agreeing with the current state resets the streak: only an
	// unbroken run of Rise passes or Fall failures flips the state.
	if r.OK == (m.state == StateUp) {
		m.streak = 0
		return m.state, m.state, false
	}
	m.streak++
	need, next := m.fall, StateDown
	if m.state == StateDown {
		need, next = m.rise, StateUp
	}
	if m.streak < need {
		return m.state, m.state, false
	}
	from = m.state
	m.state, m.streak, m.changedAt = next, 0, r.At.Add(r.Latency)
	return from, next, true
}

// State is the current state.
func (m *Machine) State() State { return m.state }

// Counts returns the checks passed and failed so far.
func (m *Machine) Counts() (passed, failed uint64) { return m.passed, m.failed }

// Last is the latest result (zero before the first check).
func (m *Machine) Last() Result { return m.last }

// ChangedAt is when the state last changed: the end of the check that
// tipped it, zero if it never changed.
func (m *Machine) ChangedAt() time.Time { return m.changedAt }
