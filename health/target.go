package health

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Target is one backend of one service to be checked.
type Target struct {
	Service string
	Addr    netip.AddrPort // the backend address; Spec.Port may override the port checked
	Spec    Spec
	// Initial is the state a new target starts in: StateUp (also when
	// empty) or StateDown. lbd starts backends up so a restart never empties
	// a service; a backend added by a reload may rather start down and earn
	// its traffic with Rise passes. Ignored for type none (always
	// unchecked) and for targets already monitored (they keep their state).
	Initial State
}

// CheckAddr is the address the check connects to: the backend address with
// the Spec's port override applied.
func (t Target) CheckAddr() netip.AddrPort {
	if t.Spec.Port != 0 {
		return netip.AddrPortFrom(t.Addr.Addr(), t.Spec.Port)
	}
	return t.Addr
}

// Key identifies a distinct check: targets with equal keys are checked once
// and share one state machine. It covers the address checked and every
// field of the normalized Spec (rise, fall and interval included, since they
// shape the shared state). Exec checks also include the service, because the
// script sees LBD_SERVICE and may answer differently per service.
func (t Target) Key() string {
	s := t.Spec.Normalize()
	var b strings.Builder
	// %q keeps field boundaries unambiguous whatever the strings contain.
	fmt.Fprintf(&b, "%q %s %d %s %s %d %d %q %q %v %q %t %q %x %q %q",
		s.Type, t.Addr, s.Port, s.Interval, s.Timeout, s.Rise, s.Fall,
		s.Path, s.Host, s.ExpectStatus, s.ExpectBody, s.TLSSkipVerify, s.SNI,
		s.Payload, s.Expect, s.Command)
	if s.Type == TypeExec {
		fmt.Fprintf(&b, " %q", t.Service)
	}
	sum := sha256.Sum256([]byte(b.String()))
	// Readable prefix for logs, hash for identity.
	return fmt.Sprintf("%s/%s/%s", s.Type, t.CheckAddr(), hex.EncodeToString(sum[:12]))
}

// firstDelay spreads the first checks of many targets over one interval so
// they do not all fire together after a start or reload. It is derived from
// the key, so it is stable across restarts and needs no random source.
func firstDelay(key string, interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	sum := sha256.Sum256([]byte(key))
	return time.Duration(binary.BigEndian.Uint64(sum[:8]) % uint64(interval))
}

// Transition is a state change of one distinct check. Every service using
// that check is listed, so the integrator can rewrite all of their slots in
// one transaction.
type Transition struct {
	Key      string
	Services []string // sorted
	Addr     netip.AddrPort
	From, To State
	Reason   string // the result that tipped it, e.g. "status 503"
	At       time.Time
	Result   Result
}

// TargetStatus is the live state of one (service, backend) pair, for status
// output. Targets sharing a check report the same state and counters.
type TargetStatus struct {
	Service        string
	Addr           netip.AddrPort
	Key            string
	Type           Type
	State          State
	Passed         uint64 // checks passed since the target was added
	Failed         uint64
	Last           Result    // zero until the first check completes
	LastTransition time.Time // zero until the state first changes
}
