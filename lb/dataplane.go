package lb

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TableName is the one table lbd owns. Nothing outside it is ever touched.
const TableName = "lbd"

const (
	chainPrefix = "svc_"
	// elementChunk bounds the elements per netlink message: one huge
	// element list fails at some sizes (ENOBUFS/ENOENT), chunks of ~1000
	// inside one transaction work at every size tried.
	elementChunk = 1000
	// sockBuf caps the netlink socket's buffers; it is a limit, not an
	// allocation. A transaction is one sendmsg (the kernel applies a batch
	// from one skb), so the send cap bounds the largest transaction, and
	// every message's ack queues before lbd reads any, so the receive cap
	// bounds the message count. 64 MiB failed at 100,000 services x 8
	// backends ("sendmsg: message too long"); 1 GiB (the kernel doubles it
	// up to INT_MAX) fits ten times that.
	sockBuf = 1 << 30
)

// tableSets are the named sets and maps of table lbd.
type tableSets struct {
	svc4, svc6         *nftables.Set // daddr . l4proto . dport : jump svc_<name>
	slots4, slots6     *nftables.Set // daddr . l4proto . dport . slot : addr . port
	persist4, persist6 *nftables.Set // daddr . l4proto . dport . saddr : addr . port, timeout
	// Counter sets: one element per service (daddr . l4proto . dport),
	// each with its own counter. flows counts new flows given a backend,
	// empty those refused for want of one.
	flows4, flows6 *nftables.Set
	empty4, empty6 *nftables.Set
}

func newTableSets(t *nftables.Table) *tableSets {
	ep4 := []nftables.SetDatatype{nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService}
	ep6 := []nftables.SetDatatype{nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService}
	cat := func(ts ...nftables.SetDatatype) nftables.SetDatatype { return nftables.MustConcatSetType(ts...) }
	with := func(base []nftables.SetDatatype, t nftables.SetDatatype) []nftables.SetDatatype {
		return append(append([]nftables.SetDatatype{}, base...), t)
	}
	be4 := cat(nftables.TypeIPAddr, nftables.TypeInetService)
	be6 := cat(nftables.TypeIP6Addr, nftables.TypeInetService)
	s := &tableSets{
		svc4:     &nftables.Set{Table: t, Name: "svc4", IsMap: true, Concatenation: true, KeyType: cat(ep4...), DataType: nftables.TypeVerdict},
		svc6:     &nftables.Set{Table: t, Name: "svc6", IsMap: true, Concatenation: true, KeyType: cat(ep6...), DataType: nftables.TypeVerdict},
		slots4:   &nftables.Set{Table: t, Name: "slots4", IsMap: true, Concatenation: true, KeyType: cat(with(ep4, nftables.TypeMark)...), DataType: be4},
		slots6:   &nftables.Set{Table: t, Name: "slots6", IsMap: true, Concatenation: true, KeyType: cat(with(ep6, nftables.TypeMark)...), DataType: be6},
		persist4: &nftables.Set{Table: t, Name: "persist4", IsMap: true, Concatenation: true, HasTimeout: true, Dynamic: true, KeyType: cat(with(ep4, nftables.TypeIPAddr)...), DataType: be4},
		persist6: &nftables.Set{Table: t, Name: "persist6", IsMap: true, Concatenation: true, HasTimeout: true, Dynamic: true, KeyType: cat(with(ep6, nftables.TypeIP6Addr)...), DataType: be6},
		flows4:   &nftables.Set{Table: t, Name: "flows4", Concatenation: true, Counter: true, KeyType: cat(ep4...)},
		flows6:   &nftables.Set{Table: t, Name: "flows6", Concatenation: true, Counter: true, KeyType: cat(ep6...)},
		empty4:   &nftables.Set{Table: t, Name: "empty4", Concatenation: true, Counter: true, KeyType: cat(ep4...)},
		empty6:   &nftables.Set{Table: t, Name: "empty6", Concatenation: true, Counter: true, KeyType: cat(ep6...)},
	}
	return s
}

func (s *tableSets) all() []*nftables.Set {
	return []*nftables.Set{s.svc4, s.svc6, s.slots4, s.slots6, s.persist4, s.persist6, s.flows4, s.flows6, s.empty4, s.empty6}
}

// counted are the counter sets: a cold sync keeps their elements (and so
// the counts) for the services it keeps.
func (s *tableSets) counted() []*nftables.Set {
	return []*nftables.Set{s.flows4, s.flows6, s.empty4, s.empty6}
}

// static are the maps lbd rewrites wholesale on a cold sync; the dynamic
// ones (persistence, per-client state) survive a restart of lbd.
func (s *tableSets) static() []*nftables.Set {
	return []*nftables.Set{s.svc4, s.svc6, s.slots4, s.slots6}
}

// Dataplane programs table lbd. It caches what it last wrote, so each Apply
// sends only the difference, in one netlink transaction.
type Dataplane struct {
	mu      sync.Mutex
	newConn func() (*nftables.Conn, error)
	table   *nftables.Table
	sets    *tableSets
	synced  bool
	// dnatChains are the shared DNAT chains written since the last cold sync.
	dnatChains map[string]bool
	cache      map[string]*Service
	// fw is the firewall last applied (zero: none).
	fw Firewall
	// wantPair is what SetPair asked for; pair what the kernel holds.
	wantPair, pair Pair
}

// New returns a Dataplane for the current network namespace.
func New() *Dataplane { return NewInNetNS(-1) }

// NewInNetNS returns a Dataplane for the network namespace open as nsFD
// (-1: the current one). Tests use it to program a namespace they made
// without moving their own thread.
func NewInNetNS(nsFD int) *Dataplane {
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	return &Dataplane{
		table:      t,
		sets:       newTableSets(t),
		cache:      map[string]*Service{},
		dnatChains: map[string]bool{},
		newConn: func() (*nftables.Conn, error) {
			opts := []nftables.ConnOption{nftables.WithSockOptions(bigBuffers)}
			if nsFD >= 0 {
				opts = append(opts, nftables.WithNetNSFd(nsFD))
			}
			return nftables.New(opts...)
		},
	}
}

// bigBuffers raises the netlink socket buffers so a transaction of hundreds
// of thousands of elements is not cut short (ENOBUFS).
func bigBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sockBuf); e != nil {
			serr = e
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, sockBuf)
	})
	if err != nil {
		return err
	}
	return serr
}

// ApplyStats says what one Apply changed.
type ApplyStats struct {
	Cold            bool
	ServicesAdded   int
	ServicesRemoved int
	ServicesRewired int // rules rewritten
	ElementsAdded   int
	ElementsDeleted int
	// Stages is how many transactions a staged cold start took (0: one).
	Stages int
}

func (s ApplyStats) String() string {
	kind := "diff"
	if s.Cold {
		kind = "cold"
	}
	out := fmt.Sprintf("%s apply: +%d -%d ~%d services, +%d -%d elements", kind, s.ServicesAdded,
		s.ServicesRemoved, s.ServicesRewired, s.ElementsAdded, s.ElementsDeleted)
	if s.Stages > 0 {
		out += fmt.Sprintf(" in %d stages", s.Stages)
	}
	return out
}

// Apply makes table lbd hold exactly the given services. The first call
// rebuilds the static parts of the table in one transaction, adopting what
// a previous lbd left (established flows live in conntrack and are never
// touched; persistence entries survive). Later calls send only the
// difference. Either the whole transaction applies or nothing does.
func (d *Dataplane) Apply(services []Service) (ApplyStats, error) {
	return d.apply(services, nil)
}

// ApplyState is Apply that also makes the appliance's firewall (chains
// input and forward of table lbd) match fw, in the same transaction. Apply
// alone keeps the firewall last applied.
func (d *Dataplane) ApplyState(services []Service, fw Firewall) (ApplyStats, error) {
	return d.apply(services, &fw)
}

func (d *Dataplane) apply(services []Service, fw *Firewall) (ApplyStats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	wantFW := d.fw
	if fw != nil {
		wantFW = fw.Normalized()
	}
	want := make(map[string]*Service, len(services))
	for i := range services {
		s := services[i]
		want[s.Name] = &s
	}
	if !d.synced {
		st, err := d.coldSync(want, wantFW)
		if err != nil {
			return st, err
		}
		d.synced = true
		d.cache, d.fw, d.pair = want, wantFW, d.wantPair
		return st, nil
	}
	st, err := d.diffSync(want, wantFW)
	if err != nil {
		// The kernel refused the transaction, so it holds what it held
		// before; but if our cache is the thing that is wrong, the next
		// Apply must rebuild from scratch.
		d.synced = false
		return st, err
	}
	d.cache, d.fw, d.pair = want, wantFW, d.wantPair
	return st, nil
}

func (d *Dataplane) chain(name string) *nftables.Chain {
	return &nftables.Chain{Name: chainPrefix + name, Table: d.table}
}

func (d *Dataplane) baseChains() (pre, out, post *nftables.Chain) {
	accept := nftables.ChainPolicyAccept
	pre = &nftables.Chain{Name: "prerouting", Table: d.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept}
	out = &nftables.Chain{Name: "output", Table: d.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest, Policy: &accept}
	post = &nftables.Chain{Name: "postrouting", Table: d.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept}
	return
}

func (d *Dataplane) coldSync(want map[string]*Service, fw Firewall) (ApplyStats, error) {
	st := ApplyStats{Cold: true}
	c, err := d.newConn()
	if err != nil {
		return st, fmt.Errorf("netlink: %w", err)
	}
	existing, err := d.kernelChains(c)
	if err != nil {
		return st, err
	}
	if len(existing) == 0 && len(want) >= stagedMinServices {
		// Nothing of ours in the kernel: build in stages (see stager).
		return st, d.buildCold(c, want, nil, fw, &st, newStager(c))
	}
	if err := d.buildCold(c, want, existing, fw, &st, nil); err != nil {
		return st, err
	}
	if err := c.Flush(); err != nil {
		// An incompatible table left by another version: start clean.
		if len(existing) == 0 {
			return st, fmt.Errorf("apply ruleset: %w", err)
		}
		c2, err2 := d.newConn()
		if err2 != nil {
			return st, fmt.Errorf("netlink: %w", err2)
		}
		c2.DelTable(d.table)
		_ = d.buildCold(c2, want, nil, fw, &st, nil)
		if err2 := c2.Flush(); err2 != nil {
			return st, fmt.Errorf("apply ruleset: %w (after rebuilding table %s: %v)", err, TableName, err2)
		}
	}
	return st, nil
}

// kernelChains lists the chains of table lbd as the kernel has them now.
func (d *Dataplane) kernelChains(c *nftables.Conn) (map[string]bool, error) {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	out := map[string]bool{}
	for _, ch := range chains {
		if ch.Table.Name == TableName {
			out[ch.Name] = true
		}
	}
	return out, nil
}

// buildCold queues the whole table: objects and service chains, then the
// slot elements, then what makes them reachable (the dispatch maps' elements,
// the hooked base chains, the firewall). With a stager (nil: one
// transaction) it commits along the way; the last stage is the one that
// hooks the table in, so no packet meets a half-built table.
func (d *Dataplane) buildCold(c *nftables.Conn, want map[string]*Service, existing map[string]bool, fw Firewall, st *ApplyStats, sg *stager) error {
	*st = ApplyStats{Cold: true}
	d.dnatChains = map[string]bool{}
	c.AddTable(d.table)
	for _, s := range d.sets.all() {
		_ = c.AddSet(s, nil)
	}
	for _, s := range d.sets.static() {
		c.FlushSet(s)
	}
	// Service chains first: the vmap elements and jumps refer to them.
	for name := range existing {
		if strings.HasPrefix(name, chainPrefix) {
			if _, ok := want[strings.TrimPrefix(name, chainPrefix)]; !ok {
				ch := &nftables.Chain{Name: name, Table: d.table}
				c.FlushChain(ch)
				c.DelChain(ch)
				st.ServicesRemoved++
			}
		}
	}
	for _, s := range sortedServices(want) {
		d.addServiceObjects(c, s)
		ch := d.chain(s.Name)
		if existing[ch.Name] {
			// Only a chain the kernel holds has rules to drop: at 10,000
			// new services the flushes were 10,000 messages (and acks)
			// of a cold start's 60,000.
			c.FlushChain(ch)
		}
		d.addServiceRules(c, ch, s)
		st.ServicesAdded++
		if err := sg.serviceDone(); err != nil {
			return err
		}
	}
	if len(existing) > 0 {
		d.pruneProtection(c, want)
		d.pruneCounted(c, want)
	}
	// Stream the elements out in chunks rather than building one list of
	// hundreds of thousands first: the slots, then the dispatch maps that
	// lead to them.
	b := newElementBatcher(c, sg)
	dispatch := map[*nftables.Set][]nftables.SetElement{}
	for _, s := range want {
		for set, els := range d.elements(s) {
			if set == d.sets.svc4 || set == d.sets.svc6 {
				dispatch[set] = append(dispatch[set], els...)
				continue
			}
			if err := b.add(set, els); err != nil {
				return err
			}
		}
	}
	if err := b.flush(); err != nil {
		return err
	}
	for set, els := range dispatch {
		if err := b.add(set, els); err != nil {
			return err
		}
	}
	if err := b.flush(); err != nil {
		return err
	}
	st.ElementsAdded = b.n
	d.addBaseChains(c, existing, fw.ResetUnknown)
	d.writeFirewall(c, fw, existing)
	err := sg.last()
	if sg != nil {
		st.Stages = sg.stages
	}
	return err
}

// elementBatcher queues set elements and hands them to the connection in
// chunks of elementChunk per message.
type elementBatcher struct {
	c       *nftables.Conn
	sg      *stager
	pending map[*nftables.Set][]nftables.SetElement
	n       int
}

func newElementBatcher(c *nftables.Conn, sg *stager) *elementBatcher {
	return &elementBatcher{c: c, sg: sg, pending: map[*nftables.Set][]nftables.SetElement{}}
}

func (b *elementBatcher) add(set *nftables.Set, els []nftables.SetElement) error {
	for len(els) > 0 {
		p := b.pending[set]
		if p == nil {
			p = make([]nftables.SetElement, 0, elementChunk)
		}
		k := min(elementChunk-len(p), len(els))
		p = append(p, els[:k]...)
		els = els[k:]
		b.n += k
		if len(p) == elementChunk {
			_ = b.c.SetAddElements(set, p)
			p = nil
			if err := b.sg.elementsQueued(elementChunk); err != nil {
				return err
			}
		}
		b.pending[set] = p
	}
	return nil
}

// flush queues what is pending (staged: and commits it).
func (b *elementBatcher) flush() error {
	queued := 0
	for set, p := range b.pending {
		if len(p) > 0 {
			_ = b.c.SetAddElements(set, p)
			queued += len(p)
		}
		delete(b.pending, set)
	}
	return b.sg.elementsQueued(queued)
}

func (d *Dataplane) addBaseChains(c *nftables.Conn, existing map[string]bool, resetUnknown bool) {
	pre, out, post := d.baseChains()
	d.writePrerouting(c, pre, resetUnknown)
	c.AddChain(out)
	c.FlushChain(out)
	c.AddRule(dispatchRule(d.table, out, d.sets.svc4, false))
	c.AddRule(dispatchRule(d.table, out, d.sets.svc6, true))
	c.AddChain(post)
	c.FlushChain(post)
	d.writePostrouting(c, post, d.wantPair)
	d.writeGuard(c, d.wantPair, existing[guardChain])
}

// ensureDNATChain adds the shared DNAT chain a service jumps to. Adding an
// existing chain is a no-op, so its rule is only written with the chain.
func (d *Dataplane) ensureDNATChain(c *nftables.Conn, s *Service) {
	drop := s.OnEmpty == "drop"
	name := dnatChainName(s.Is6(), s.Persistence, drop)
	if d.dnatChains[name] {
		return
	}
	ch := &nftables.Chain{Name: name, Table: d.table}
	c.AddChain(ch)
	c.FlushChain(ch)
	for _, r := range dnatChainRules(d.table, ch, s.Is6(), s.Persistence, drop, d.sets) {
		c.AddRule(r)
	}
	d.dnatChains[name] = true
}

func (d *Dataplane) addServiceObjects(c *nftables.Conn, s *Service) {
	d.ensureDNATChain(c, s)
	c.AddChain(d.chain(s.Name))
	addProtectionObjects(c, d.table, s)
}

func (d *Dataplane) delServiceObjects(c *nftables.Conn, s *Service) {
	ch := d.chain(s.Name)
	c.FlushChain(ch)
	c.DelChain(ch)
	delProtectionObjects(c, d.table, s, nil)
}

// pruneCounted deletes, on a cold sync over an existing table, the counter
// set elements of services no longer wanted; the kept ones keep counting.
// A set the kernel does not hold yet (the table of a release before the
// counter sets) has nothing to prune.
func (d *Dataplane) pruneCounted(c *nftables.Conn, want map[string]*Service) {
	keep := make(map[string]bool, len(want))
	for _, s := range want {
		keep[string(endpointKey(s.VIP, s.Proto, s.Port))] = true
	}
	for _, set := range d.sets.counted() {
		els, err := readElements(c, set)
		if err != nil {
			continue
		}
		var gone []nftables.SetElement
		for _, e := range els {
			if !keep[string(e.Key)] {
				gone = append(gone, nftables.SetElement{Key: e.Key})
			}
		}
		d.delElements(c, map[*nftables.Set][]nftables.SetElement{set: gone})
	}
}

// elements returns every set element a service owns, by set.
func (d *Dataplane) elements(s *Service) map[*nftables.Set][]nftables.SetElement {
	svc, slots, flows, empty := d.sets.svc4, d.sets.slots4, d.sets.flows4, d.sets.empty4
	if s.Is6() {
		svc, slots, flows, empty = d.sets.svc6, d.sets.slots6, d.sets.flows6, d.sets.empty6
	}
	key := endpointKey(s.VIP, s.Proto, s.Port)
	out := map[*nftables.Set][]nftables.SetElement{
		svc:   {{Key: key, VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: chainPrefix + s.Name}}},
		flows: {{Key: key}},
		empty: {{Key: key}},
	}
	if len(s.Slots) > 0 {
		els := make([]nftables.SetElement, len(s.Slots))
		for i, b := range s.Slots {
			els[i] = nftables.SetElement{Key: slotKey(s, i), Val: backendValue(b)}
		}
		out[slots] = els
	}
	return out
}

func (d *Dataplane) addElements(c *nftables.Conn, adds map[*nftables.Set][]nftables.SetElement) int {
	return chunked(adds, c.SetAddElements)
}

func (d *Dataplane) delElements(c *nftables.Conn, dels map[*nftables.Set][]nftables.SetElement) int {
	return chunked(dels, c.SetDeleteElements)
}

// chunked hands each set's elements to op elementChunk at a time.
func chunked(m map[*nftables.Set][]nftables.SetElement, op func(*nftables.Set, []nftables.SetElement) error) int {
	n := 0
	for set, els := range m {
		for i := 0; i < len(els); i += elementChunk {
			_ = op(set, els[i:min(i+elementChunk, len(els))])
		}
		n += len(els)
	}
	return n
}

func slotsEqual(a, b []netip.AddrPort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// rulesEqual reports whether two desired services produce the same rules.
// It compares field by field: with 10,000 services a reflective compare
// on every health flip cost more than the kernel transaction itself.
func rulesEqual(a, b *Service) bool {
	if a.Name != b.Name || a.VIP != b.VIP || a.Proto != b.Proto || a.Port != b.Port ||
		a.Scheduler != b.Scheduler || a.Modulus != b.Modulus || a.Seed != b.Seed || a.SNAT != b.SNAT ||
		a.Persistence != b.Persistence || a.OnEmpty != b.OnEmpty {
		return false
	}
	p, q := &a.Protect, &b.Protect
	return p.MaxConnections == q.MaxConnections && p.Rate == q.Rate && p.Burst == q.Burst &&
		p.ClientRate == q.ClientRate && p.PerClientConnections == q.PerClientConnections &&
		p.Throttle == q.Throttle && slices.Equal(p.Allow, q.Allow) && slices.Equal(p.Deny, q.Deny)
}

func (d *Dataplane) diffSync(want map[string]*Service, fw Firewall) (ApplyStats, error) {
	var st ApplyStats
	c, err := d.newConn()
	if err != nil {
		return st, fmt.Errorf("netlink: %w", err)
	}
	dels := map[*nftables.Set][]nftables.SetElement{}
	adds := map[*nftables.Set][]nftables.SetElement{}
	var removed []*Service
	for name, old := range d.cache {
		if _, ok := want[name]; !ok {
			for set, els := range d.elements(old) {
				dels[set] = append(dels[set], els...)
			}
			removed = append(removed, old)
		}
	}
	var added, rewired []*Service
	// Unsorted walk: a health flip in a 10,000-service table must not pay
	// for sorting them all; only the changed ones are sorted below.
	for _, s := range want {
		old, ok := d.cache[s.Name]
		if !ok {
			added = append(added, s)
			for set, els := range d.elements(s) {
				adds[set] = append(adds[set], els...)
			}
			continue
		}
		sameRules := rulesEqual(old, s)
		if sameRules && slotsEqual(old.Slots, s.Slots) {
			continue
		}
		if !sameRules {
			rewired = append(rewired, s)
		}
		diffElements(d.elements(old), d.elements(s), adds, dels)
	}
	sortByName(added)
	sortByName(rewired)
	fwChanged := !reflect.DeepEqual(fw, d.fw)
	pairChanged := d.wantPair != d.pair
	if len(removed)+len(added)+len(rewired)+len(adds)+len(dels) == 0 && !fwChanged && !pairChanged {
		return st, nil
	}
	// Order inside the transaction: drop elements first (they may point at
	// chains about to go), then chains, then add new chains and elements.
	st.ElementsDeleted = d.delElements(c, dels)
	for _, s := range removed {
		d.delServiceObjects(c, s)
	}
	for _, s := range added {
		d.addServiceObjects(c, s)
		d.addServiceRules(c, d.chain(s.Name), s)
	}
	for _, s := range rewired {
		d.ensureDNATChain(c, s)
		addProtectionObjects(c, d.table, s)
		ch := d.chain(s.Name)
		c.FlushChain(ch)
		d.addServiceRules(c, ch, s)
		delProtectionObjects(c, d.table, d.cache[s.Name], s)
	}
	if fwChanged {
		d.writeFirewall(c, fw, map[string]bool{fwInputChain: d.fw.Enabled, fwForwardChain: d.fw.Enabled})
		if fw.ResetUnknown != d.fw.ResetUnknown {
			pre, _, _ := d.baseChains()
			d.writePrerouting(c, pre, fw.ResetUnknown)
		}
	}
	if pairChanged {
		_, _, post := d.baseChains()
		c.FlushChain(post)
		d.writePostrouting(c, post, d.wantPair)
		d.writeGuard(c, d.wantPair, d.pair.Guard)
	}
	st.ElementsAdded = d.addElements(c, adds)
	st.ServicesAdded, st.ServicesRemoved, st.ServicesRewired = len(added), len(removed), len(rewired)
	if err := c.Flush(); err != nil {
		return st, fmt.Errorf("apply ruleset change (%s): %w", st, err)
	}
	return st, nil
}

// diffElements appends to adds/dels what turns old into new. An element
// whose key stays but whose value changes is deleted and re-added in the
// same transaction.
func diffElements(old, new map[*nftables.Set][]nftables.SetElement, adds, dels map[*nftables.Set][]nftables.SetElement) {
	sets := map[*nftables.Set]bool{}
	for s := range old {
		sets[s] = true
	}
	for s := range new {
		sets[s] = true
	}
	for set := range sets {
		oldBy := map[string]nftables.SetElement{}
		for _, e := range old[set] {
			oldBy[string(e.Key)] = e
		}
		newBy := map[string]bool{}
		for _, e := range new[set] {
			newBy[string(e.Key)] = true
			o, ok := oldBy[string(e.Key)]
			if ok && elemValueEqual(o, e) {
				continue
			}
			if ok {
				dels[set] = append(dels[set], o)
			}
			adds[set] = append(adds[set], e)
		}
		for _, o := range old[set] {
			if !newBy[string(o.Key)] {
				dels[set] = append(dels[set], o)
			}
		}
	}
}

func elemValueEqual(a, b nftables.SetElement) bool {
	if (a.VerdictData == nil) != (b.VerdictData == nil) {
		return false
	}
	if a.VerdictData != nil && (a.VerdictData.Kind != b.VerdictData.Kind || a.VerdictData.Chain != b.VerdictData.Chain) {
		return false
	}
	return bytes.Equal(a.Val, b.Val)
}

func sortedServices(m map[string]*Service) []*Service {
	out := make([]*Service, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	sortByName(out)
	return out
}

// Counters are the per-service counts read from the kernel.
type Counters struct {
	Flows, FlowBytes uint64
	NoBackend        uint64
	Refused          map[string]uint64 // by protection reason
}

// ReadCounters returns the counters of every service: flows (scheduled
// new flows, with or without a backend) and empty from the counter sets'
// elements, refusals from the named counters of
// the services with protection. Services are found by endpoint in what
// lbd last applied.
func (d *Dataplane) ReadCounters() (map[string]Counters, error) {
	d.mu.Lock()
	byEndpoint := make(map[string]string, len(d.cache))
	for name, s := range d.cache {
		byEndpoint[string(endpointKey(s.VIP, s.Proto, s.Port))] = name
	}
	d.mu.Unlock()
	c, err := d.newConn()
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	out := map[string]Counters{}
	for _, set := range d.sets.counted() {
		els, err := readElements(c, set)
		if err != nil {
			return nil, fmt.Errorf("read counters of %s: %w", set.Name, err)
		}
		for _, e := range els {
			name, ok := byEndpoint[string(e.Key)]
			if !ok || e.Counter == nil {
				continue
			}
			// Flows counts every new flow the service scheduled, as the
			// flows_ counter objects did before the counter sets: those
			// that found a backend and those refused for want of one.
			cs := out[name]
			cs.Flows += e.Counter.Packets
			cs.FlowBytes += e.Counter.Bytes
			if set == d.sets.empty4 || set == d.sets.empty6 {
				cs.NoBackend = e.Counter.Packets
			}
			out[name] = cs
		}
	}
	objs, err := c.GetNamedObjects(d.table)
	if err != nil {
		return nil, fmt.Errorf("read counters: %w", err)
	}
	for _, o := range objs {
		no, ok := o.(*nftables.NamedObj)
		if !ok {
			continue
		}
		ctr, ok := no.Obj.(*expr.Counter)
		if !ok {
			continue
		}
		kind, svc, ok := strings.Cut(no.Name, "_")
		if !ok || !isRefusalKind(kind) {
			continue
		}
		cs := out[svc]
		if cs.Refused == nil {
			cs.Refused = map[string]uint64{}
		}
		cs.Refused[kind] = ctr.Packets
		out[svc] = cs
	}
	return out, nil
}

// ForgetPersistence deletes the persistence entries of one service that
// point at a backend, so clients pinned to a backend that left move at
// once instead of after the persistence time.
func (d *Dataplane) ForgetPersistence(s *Service, gone []netip.AddrPort) error {
	if len(gone) == 0 || s.Persistence == 0 {
		return nil
	}
	c, err := d.newConn()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	set := d.sets.persist4
	if s.Is6() {
		set = d.sets.persist6
	}
	els, err := readElements(c, set)
	if err != nil {
		return fmt.Errorf("read %s: %w", set.Name, err)
	}
	prefix := endpointKey(s.VIP, s.Proto, s.Port)
	var del []nftables.SetElement
	for _, e := range els {
		if !bytes.HasPrefix(e.Key, prefix) {
			continue
		}
		for _, g := range gone {
			if bytes.Equal(e.Val, backendValue(g)) {
				del = append(del, nftables.SetElement{Key: e.Key})
			}
		}
	}
	if len(del) == 0 {
		return nil
	}
	d.delElements(c, map[*nftables.Set][]nftables.SetElement{set: del})
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("forget persistence of %s: %w", s.Name, err)
	}
	return nil
}

// Remove deletes table lbd (used by tests and `lbd run --cleanup`).
func (d *Dataplane) Remove() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, err := d.newConn()
	if err != nil {
		return err
	}
	c.DelTable(d.table)
	d.synced = false
	d.cache = map[string]*Service{}
	d.fw = Firewall{}
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete table %s: %w", TableName, err)
	}
	return nil
}
