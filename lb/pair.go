package lb

import (
	"encoding/binary"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Pair is what a node of an HA pair needs in table lbd beyond the
// services. The zero value is a single appliance.
type Pair struct {
	// SNAT4/SNAT6 replace masquerade for snat services of that family:
	// the floating lan_address, so backends reply to whichever node holds
	// it and the flow synced by conntrackd still matches there.
	// Masquerade would pick the node's own primary address.
	SNAT4, SNAT6 netip.Addr
	// Guard drops TCP packets that would open a flow without a SYN (a
	// packet of an established connection the kernel does not know yet).
	// On a new master such a packet can arrive before conntrackd has
	// committed the synced flow: picked up mid-stream it would be
	// scheduled and NATed afresh (another backend, another port) and the
	// commit of the real flow would then clash. Dropped, it is resent by
	// TCP after the commit.
	Guard bool
}

// guardChain is the filter chain of Pair.Guard: after conntrack (-200),
// before DNAT (-100).
const guardChain = "ha_guard"

// SetPair sets the pair options; the next Apply writes them (in the same
// transaction as the services).
func (d *Dataplane) SetPair(p Pair) {
	d.mu.Lock()
	d.wantPair = p
	d.mu.Unlock()
}

func (d *Dataplane) guardChain() *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return &nftables.Chain{Name: guardChain, Table: d.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle, Policy: &accept}
}

// writePostrouting (re)writes the snat chain's rules for the pair options.
func (d *Dataplane) writePostrouting(c *nftables.Conn, post *nftables.Chain, p Pair) {
	if p.SNAT4.IsValid() {
		c.AddRule(snatToRule(d.table, post, p.SNAT4))
	}
	if p.SNAT6.IsValid() {
		c.AddRule(snatToRule(d.table, post, p.SNAT6))
	}
	c.AddRule(snatRule(d.table, post))
}

// writeGuard adds, rewrites or removes the guard chain. present says
// whether the kernel has it now.
func (d *Dataplane) writeGuard(c *nftables.Conn, p Pair, present bool) {
	ch := d.guardChain()
	if !p.Guard {
		if present {
			c.FlushChain(ch)
			c.DelChain(ch)
		}
		return
	}
	c.AddChain(ch)
	c.FlushChain(ch)
	c.AddRule(guardRule(d.table, ch))
}

// snatToRule is `ct mark & SNATMark != 0 meta nfproto ipvX snat to ADDR`.
func snatToRule(t *nftables.Table, c *nftables.Chain, a netip.Addr) *nftables.Rule {
	fam, nfproto := uint32(unix.NFPROTO_IPV4), byte(unix.NFPROTO_IPV4)
	if a.Is6() {
		fam, nfproto = unix.NFPROTO_IPV6, unix.NFPROTO_IPV6
	}
	return &nftables.Rule{Table: t, Chain: c, Exprs: []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, SNATMark), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
		&expr.Immediate{Register: 1, Data: a.AsSlice()},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: fam, RegAddrMin: 1, RegAddrMax: 1},
	}}
}

// guardRule is `meta l4proto tcp ct state new tcp flags & (fin|syn|rst|ack)
// != syn counter drop`.
func guardRule(t *nftables.Table, c *nftables.Chain) *nftables.Rule {
	return &nftables.Rule{Table: t, Chain: c, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, expr.CtStateBitNEW), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x17}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0x02}},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}}
}
