package lb

import (
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// In a fleet behind an ECMP router, flows move between appliances when the
// router's next hops change (a node drained, lost or added). The node a
// flow lands on has no conntrack entry for it, so its next packet (an ACK,
// not a SYN) starts a new conntrack entry. Left alone it would be NATed to
// some backend, which answers with a reset if nothing on the way drops it.
// With ResetUnknown the nat prerouting chain answers such a packet with a
// reset at once, from the appliance itself, before the dispatch rule, so
// the client reconnects in milliseconds instead of depending on the
// backend (or hanging when a firewall drops the stray packet):
//
//	chain prerouting { type nat hook prerouting priority dstnat;
//	  meta l4proto tcp ct state new tcp flags & (syn|rst) == 0
//	    ip daddr . meta l4proto . th dport @svc4 counter reject with tcp reset
//	  (the same for IPv6 with @svc6)
//	  ... the dispatch rules }
//
// The rule lives in the nat chain, not in a filter chain of its own: the
// service dispatch maps (which say what is a VIP) jump to chains holding
// dnat, and the kernel refuses (EOPNOTSUPP) to bind such a map to a
// filter chain even for a plain lookup. A nat chain only sees a flow's
// first packet, so this costs nothing per established packet.

// writePrerouting (re)writes the nat prerouting chain: the reset rules
// when resetUnknown, then the dispatch rules, in the caller's transaction.
func (d *Dataplane) writePrerouting(c *nftables.Conn, pre *nftables.Chain, resetUnknown bool) {
	c.AddChain(pre)
	c.FlushChain(pre)
	if resetUnknown {
		for _, is6 := range []bool{false, true} {
			c.AddRule(fleetResetRule(d.table, pre, d.sets, is6))
		}
	}
	c.AddRule(dispatchRule(d.table, pre, d.sets.svc4, false))
	c.AddRule(dispatchRule(d.table, pre, d.sets.svc6, true))
}

// ctStateNew is IP_CT_NEW's bit in `ct state`.
const ctStateNew = 8

// tcpFlagSYN|tcpFlagRST as in the TCP header's flags byte.
const (
	tcpFlagSYN = 0x02
	tcpFlagRST = 0x04
)

func fleetResetRule(t *nftables.Table, ch *nftables.Chain, sets *tableSets, is6 bool) *nftables.Rule {
	vmap := sets.svc4
	if is6 {
		vmap = sets.svc6
	}
	exprs := append([]expr.Any{}, l4proto(unix.IPPROTO_TCP)...)
	exprs = append(exprs, ctState(ctStateNew)...)
	exprs = append(exprs,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{tcpFlagSYN | tcpFlagRST}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}},
	)
	exprs = append(exprs, nfproto(is6)...)
	exprs = append(exprs, loadEndpoint(is6)...)
	exprs = append(exprs,
		&expr.Lookup{SourceRegister: regsFor(is6).daddr, SetName: vmap.Name, SetID: vmap.ID},
		&expr.Counter{},
		&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
	)
	return &nftables.Rule{Table: t, Chain: ch, Exprs: exprs}
}
