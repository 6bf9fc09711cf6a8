package lb

import (
	"encoding/binary"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Protection (limits, allow/deny, throttle) becomes rules at the head of a
// service's chain. Only the first packet of a flow reaches that chain, so a
// limit costs nothing per packet and "ct count" there counts flows. Every
// refusal answers (TCP reset / ICMP port unreachable) and counts into the
// named counter <kind>_<service>, which ReadCounters reports by kind.
//
// State that must outlive a rewrite of the chain (connection counts,
// per-client buckets) lives in per-service dynamic sets, not in the rules:
// a throttle change or a restart of lbd re-adds the rules, and a count kept
// in a rule would start again from zero. Those sets get no transactional
// element adds (only the packet path adds to them), so binding one rule to
// each is cheap.

// Refusal kinds: the <kind> of a refusal counter <kind>_<service>.
const (
	RefusedMaxConn    = "maxconn"
	RefusedRate       = "rate"
	RefusedClientRate = "clientrate"
	RefusedClientConn = "clientconn"
	RefusedDeny       = "deny"
	RefusedThrottle   = "throttle"
)

func refusedCounter(kind, svc string) string { return kind + "_" + svc }

// Sizes of the per-service dynamic sets. A full set fails open: the
// kernel cannot add the client, the rule does not match, the flow passes.
const (
	clientSetSize  = 65536
	maxconnSetSize = 16
)

// clientRateSetTimeout is the default timeout of a clientrate set; every
// element is added with its own (see clientRateTimeout).
const clientRateSetTimeout = time.Minute

// setAdder adds a set and its elements to the transaction being built
// (Conn.AddSet, which also gives an anonymous set its ID); unit tests pass
// a recorder.
type setAdder func(*nftables.Set, []nftables.SetElement) error

// protectionKinds lists the refusal counters a protection uses, in the
// order its rules are evaluated.
func (p *Protection) protectionKinds() []string {
	var k []string
	if len(p.Deny) > 0 || len(p.Allow) > 0 {
		k = append(k, RefusedDeny)
	}
	if p.ClientRate.IsSet() {
		k = append(k, RefusedClientRate)
	}
	if p.PerClientConnections > 0 {
		k = append(k, RefusedClientConn)
	}
	if p.Throttle.IsSet() {
		k = append(k, RefusedThrottle)
	}
	if p.Rate.IsSet() {
		k = append(k, RefusedRate)
	}
	if p.MaxConnections > 0 {
		k = append(k, RefusedMaxConn)
	}
	return k
}

// Names of a service's dynamic sets. The client sets carry the family in
// their name so a service whose VIP changes family gets a new set instead
// of a clash with the old key type.
func maxconnSetName(svc string) string { return "maxconn_" + svc }

func clientConnSetName(svc string, is6 bool) string { return "clientconn" + famDigit(is6) + "_" + svc }

func clientRateSetName(svc string, is6 bool) string { return "clientrate" + famDigit(is6) + "_" + svc }

func famDigit(is6 bool) string {
	if is6 {
		return "6"
	}
	return "4"
}

// protectionSetPrefixes are the name prefixes of every per-service set this
// file makes, to find stale ones in the kernel.
var protectionSetPrefixes = []string{"maxconn_", "clientconn4_", "clientconn6_", "clientrate4_", "clientrate6_"}

// protectionDynSets returns the named dynamic sets s's protection needs.
// Their shape depends only on the service's family, never on the limits:
// the limit is part of each element's key instead (see limitKey), so a
// changed limit starts fresh elements while the set itself stays.
func protectionDynSets(t *nftables.Table, s *Service) []*nftables.Set {
	p := &s.Protect
	addr := nftables.TypeIPAddr
	if s.Is6() {
		addr = nftables.TypeIP6Addr
	}
	clientKey := nftables.MustConcatSetType(addr, nftables.TypeMark)
	var out []*nftables.Set
	if p.ClientRate.IsSet() {
		out = append(out, &nftables.Set{Table: t, Name: clientRateSetName(s.Name, s.Is6()), Dynamic: true,
			HasTimeout: true, Timeout: clientRateSetTimeout, Concatenation: true, KeyType: clientKey, Size: clientSetSize})
	}
	if p.PerClientConnections > 0 {
		// No timeout: an element lives while its client has flows; the
		// kernel's set gc drops it once its count is zero. A timeout would
		// forget the flows of a client that holds long connections.
		out = append(out, &nftables.Set{Table: t, Name: clientConnSetName(s.Name, s.Is6()), Dynamic: true,
			Concatenation: true, KeyType: clientKey, Size: clientSetSize})
	}
	if p.MaxConnections > 0 {
		out = append(out, &nftables.Set{Table: t, Name: maxconnSetName(s.Name), Dynamic: true,
			KeyType: nftables.TypeMark, Size: maxconnSetSize})
	}
	return out
}

// limitKey is a 32-bit fingerprint of a limit's parameters. Element keys
// carry it, because a set element keeps the limit it was created with: a
// reload that changes the limit must not leave old elements enforcing the
// old one.
func limitKey(parts ...uint64) []byte {
	h := fnv.New32a()
	for _, p := range parts {
		_, _ = h.Write(binary.BigEndian.AppendUint64(nil, p))
	}
	return binary.BigEndian.AppendUint32(nil, h.Sum32())
}

func rateUnit(r Rate) (expr.LimitTime, time.Duration) {
	switch r.Per {
	case time.Minute:
		return expr.LimitTimeMinute, time.Minute
	case time.Hour:
		return expr.LimitTimeHour, time.Hour
	}
	return expr.LimitTimeSecond, time.Second
}

// limitOver is `limit rate over N/unit burst B packets`. Burst 0 leaves the
// kernel's default of 5 back-to-back flows (as nft does).
func limitOver(r Rate, burst int) *expr.Limit {
	u, _ := rateUnit(r)
	return &expr.Limit{Type: expr.LimitTypePkts, Rate: r.N, Unit: u, Burst: uint32(max(burst, 0)), Over: true}
}

// clientRateTimeout is how long a quiet client's bucket is kept: at least
// the time an empty bucket takes to fill again, so forgetting it changes
// nothing (a new element starts full).
func clientRateTimeout(r Rate, burst int) time.Duration {
	_, unit := rateUnit(r)
	if burst <= 0 {
		burst = 5
	}
	refill := time.Duration(float64(unit) * float64(burst) / float64(r.N))
	return max(time.Minute, 2*refill).Round(time.Second)
}

// connlimitOver is `ct count over n`.
func connlimitOver(n int) *expr.Connlimit {
	return &expr.Connlimit{Count: uint32(n), Flags: expr.NFT_CONNLIMIT_F_INV}
}

// protectionRules returns the rules at the head of s's chain, in the order
// they apply: deny, allow, per-client rate and connections (so an abusive
// client is turned away before it spends the shared budget), throttle,
// new-connection rate, then max_connections (last, so a flow refused
// earlier never takes one of the connection slots). Anonymous sets (the
// CIDR lists) go to addSet before the rule that looks them up.
func protectionRules(t *nftables.Table, ch *nftables.Chain, s *Service, addSet setAdder) []*nftables.Rule {
	p := &s.Protect
	is6 := s.Is6()
	r := regsFor(is6)
	var rules []*nftables.Rule
	refuseAs := func(kind string, e ...expr.Any) {
		e = append(e, counterRef(refusedCounter(kind, s.Name)))
		rules = append(rules, &nftables.Rule{Table: t, Chain: ch, Exprs: append(e, refuse(s.Proto, false)...)})
	}
	// Client key registers: saddr, then the limit fingerprint right after it.
	keyReg := r.daddr
	limitReg := keyReg + r.addrLen/4

	if len(p.Deny) > 0 {
		if els := intervalElements(p.Deny, is6); len(els) > 0 {
			set := prefixSet(t, is6)
			_ = addSet(set, els)
			refuseAs(RefusedDeny, loadSaddr(is6, keyReg),
				&expr.Lookup{SourceRegister: keyReg, SetName: set.Name, SetID: set.ID})
		}
	}
	if len(p.Allow) > 0 {
		if els := intervalElements(p.Allow, is6); len(els) > 0 {
			set := prefixSet(t, is6)
			_ = addSet(set, els)
			refuseAs(RefusedDeny, loadSaddr(is6, keyReg),
				&expr.Lookup{SourceRegister: keyReg, SetName: set.Name, SetID: set.ID, Invert: true})
		} else {
			// An allow list with no address of this family admits no
			// client of this family.
			refuseAs(RefusedDeny)
		}
	}
	if p.ClientRate.IsSet() {
		u, _ := rateUnit(p.ClientRate)
		refuseAs(RefusedClientRate, loadSaddr(is6, keyReg),
			&expr.Immediate{Register: limitReg, Data: limitKey(p.ClientRate.N, uint64(u), uint64(p.Burst))},
			&expr.Dynset{SrcRegKey: keyReg, SetName: clientRateSetName(s.Name, is6), Operation: unix.NFT_DYNSET_OP_UPDATE,
				Timeout: clientRateTimeout(p.ClientRate, p.Burst), Exprs: []expr.Any{limitOver(p.ClientRate, p.Burst)}})
	}
	if p.PerClientConnections > 0 {
		refuseAs(RefusedClientConn, loadSaddr(is6, keyReg),
			&expr.Immediate{Register: limitReg, Data: limitKey(uint64(p.PerClientConnections))},
			&expr.Dynset{SrcRegKey: keyReg, SetName: clientConnSetName(s.Name, is6), Operation: unix.NFT_DYNSET_OP_ADD,
				Exprs: []expr.Any{connlimitOver(p.PerClientConnections)}})
	}
	if p.Throttle.IsSet() {
		refuseAs(RefusedThrottle, limitOver(p.Throttle, 0))
	}
	if p.Rate.IsSet() {
		refuseAs(RefusedRate, limitOver(p.Rate, p.Burst))
	}
	if p.MaxConnections > 0 {
		refuseAs(RefusedMaxConn,
			&expr.Immediate{Register: keyReg, Data: limitKey(uint64(p.MaxConnections))},
			&expr.Dynset{SrcRegKey: keyReg, SetName: maxconnSetName(s.Name), Operation: unix.NFT_DYNSET_OP_ADD,
				Exprs: []expr.Any{connlimitOver(p.MaxConnections)}})
	}
	return rules
}

// prefixSet is a constant anonymous interval set of addresses.
func prefixSet(t *nftables.Table, is6 bool) *nftables.Set {
	kt := nftables.TypeIPAddr
	if is6 {
		kt = nftables.TypeIP6Addr
	}
	return &nftables.Set{Table: t, Anonymous: true, Constant: true, Interval: true, KeyType: kt}
}

// intervalElements encodes the prefixes of one family as interval set
// elements the way nft does: overlapping and adjacent ranges merged, each
// range a start element and an end element holding the first address
// after it, and a leading end element at 0 when the first range does not
// start there.
func intervalElements(prefixes []netip.Prefix, is6 bool) []nftables.SetElement {
	type span struct{ lo, hi netip.Addr }
	var spans []span
	for _, p := range prefixes {
		a := p.Addr()
		if a.Is4In6() {
			a = a.Unmap()
			p = netip.PrefixFrom(a, p.Bits()-96)
		}
		if a.Is6() != is6 || !p.IsValid() {
			continue
		}
		p = p.Masked()
		spans = append(spans, span{p.Addr(), lastAddr(p)})
	}
	if len(spans) == 0 {
		return nil
	}
	slices.SortFunc(spans, func(x, y span) int { return x.lo.Compare(y.lo) })
	merged := spans[:1]
	for _, sp := range spans[1:] {
		last := &merged[len(merged)-1]
		next := last.hi.Next()
		if !next.IsValid() || sp.lo.Compare(next) <= 0 {
			if sp.hi.Compare(last.hi) > 0 {
				last.hi = sp.hi
			}
			continue
		}
		merged = append(merged, sp)
	}
	var els []nftables.SetElement
	zero := make([]byte, len(merged[0].lo.AsSlice()))
	if !merged[0].lo.IsUnspecified() {
		els = append(els, nftables.SetElement{Key: zero, IntervalEnd: true})
	}
	for _, sp := range merged {
		els = append(els, nftables.SetElement{Key: sp.lo.AsSlice()})
		if end := sp.hi.Next(); end.IsValid() {
			els = append(els, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
	}
	return els
}

// lastAddr is the highest address in a masked prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// addServiceRules writes a service's chain: protection first, then the
// scheduling rules.
func (d *Dataplane) addServiceRules(c *nftables.Conn, ch *nftables.Chain, s *Service) {
	for _, r := range protectionRules(d.table, ch, s, c.AddSet) {
		c.AddRule(r)
	}
	for _, r := range serviceRules(d.table, ch, s, d.sets) {
		c.AddRule(r)
	}
}

// addProtectionObjects adds the counters and dynamic sets s's protection
// uses. Adding an existing one is a no-op, so counts and client state
// survive rule rewrites and restarts.
func addProtectionObjects(c *nftables.Conn, t *nftables.Table, s *Service) {
	for _, k := range s.Protect.protectionKinds() {
		c.AddObj(&nftables.NamedObj{Table: t, Name: refusedCounter(k, s.Name), Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
	}
	for _, set := range protectionDynSets(t, s) {
		_ = c.AddSet(set, nil)
	}
}

// delProtectionObjects deletes what old's protection used and new's does
// not (new nil: the service is gone). It must follow the flush of the
// chain whose rules referred to them, in the same transaction.
func delProtectionObjects(c *nftables.Conn, t *nftables.Table, old, new *Service) {
	keepCounters, keepSets := map[string]bool{}, map[string]bool{}
	if new != nil {
		for _, k := range new.Protect.protectionKinds() {
			keepCounters[refusedCounter(k, new.Name)] = true
		}
		for _, set := range protectionDynSets(t, new) {
			keepSets[set.Name] = true
		}
	}
	for _, k := range old.Protect.protectionKinds() {
		if n := refusedCounter(k, old.Name); !keepCounters[n] {
			c.DeleteObject(&nftables.NamedObj{Table: t, Name: n, Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
		}
	}
	for _, set := range protectionDynSets(t, old) {
		if !keepSets[set.Name] {
			c.DelSet(set)
		}
	}
}

// pruneProtection deletes, on a cold sync, refusal counters and dynamic
// sets that no wanted service uses: left by an lbd that ran another
// config, they are not in the cache. Runs after every service chain was
// flushed or deleted in the same transaction. Best effort: if the kernel
// cannot be listed, nothing is pruned.
func (d *Dataplane) pruneProtection(c *nftables.Conn, want map[string]*Service) {
	// Also deletes the flows_/empty_ counter objects that releases before
	// the counter sets (flows4/6, empty4/6) kept per service.
	wantSets, wantCounters := map[string]bool{}, map[string]bool{}
	for _, s := range want {
		for _, set := range protectionDynSets(d.table, s) {
			wantSets[set.Name] = true
		}
		for _, k := range s.Protect.protectionKinds() {
			wantCounters[refusedCounter(k, s.Name)] = true
		}
	}
	if sets, err := c.GetSets(d.table); err == nil {
		for _, set := range sets {
			if isProtectionSet(set.Name) && !wantSets[set.Name] {
				c.DelSet(&nftables.Set{Table: d.table, Name: set.Name})
			}
		}
	}
	objs, err := c.GetNamedObjects(d.table)
	if err != nil {
		return
	}
	for _, o := range objs {
		no, ok := o.(*nftables.NamedObj)
		if !ok || no.Type != nftables.ObjTypeCounter {
			continue
		}
		kind, _, _ := strings.Cut(no.Name, "_")
		if kind == "flows" || kind == "empty" || (isRefusalKind(kind) && !wantCounters[no.Name]) {
			c.DeleteObject(&nftables.NamedObj{Table: d.table, Name: no.Name, Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
		}
	}
}

func isProtectionSet(name string) bool {
	for _, p := range protectionSetPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func isRefusalKind(k string) bool {
	switch k {
	case RefusedMaxConn, RefusedRate, RefusedClientRate, RefusedClientConn, RefusedDeny, RefusedThrottle:
		return true
	}
	return false
}

// Per-backend max_connections is not a rule: a full backend must stop
// getting new flows while the others have room, so its slots move to them.
// The daemon polls conntrack and sets Availability.Full for the planner.
