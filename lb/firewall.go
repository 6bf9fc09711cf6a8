package lb

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The appliance's own packet filter lives in table lbd next to the NAT
// chains, so it is written in the same transaction as the services and
// never touches anyone else's tables. Its shape:
//
//	input:   established/related -> accept; ICMP essentials -> accept;
//	         invalid -> drop; lo -> accept; DHCP client replies -> accept;
//	         ct status dnat -> accept (a VIP whose backend is this host);
//	         not from a WAN interface -> accept; admin networks -> the
//	         management ports; everything else -> count and drop.
//	forward: established/related -> accept; invalid -> drop;
//	         ct status dnat (a VIP flow) -> accept; allow_forward sources
//	         -> accept; everything else -> count and drop.
//
// VIP traffic is DNATed in prerouting, before the filter hooks, so on the
// WAN side it shows up as forwarded flows with ct status dnat: that one rule
// is "accept only traffic to VIP services".

// Chain names of the firewall in table lbd.
const (
	fwInputChain   = "input"
	fwForwardChain = "forward"
)

// Firewall is the desired appliance firewall. The zero value is "off": no
// filter chains at all.
type Firewall struct {
	Enabled bool
	// WAN names the interfaces facing clients (kernel names; lbd renames
	// NICs to their [[interface]] name). Input from them is restricted;
	// input from any other interface is accepted. No WAN interface means
	// input is not restricted (only invalid packets are dropped), so a
	// misconfiguration cannot lock the operator out.
	WAN []string
	// ManagementPorts are the local TCP ports of management services
	// (status page, ssh) that AdminNetworks may reach over a WAN interface.
	ManagementPorts []uint16
	// AdminNetworks may reach the management ports from any side.
	AdminNetworks []netip.Prefix
	// AllowForward are sources (typically backends) whose own outgoing
	// connections the LB forwards; other non-VIP forwarding is dropped.
	AllowForward []netip.Prefix
	// Trusted are the other node's flows of an HA pair that input accepts
	// on any interface: its VRRP adverts and conntrackd's sync traffic.
	// Dropped, both nodes would think themselves master.
	Trusted []TrustedFlow
	// ResetUnknown answers a TCP packet to a VIP that belongs to no flow
	// this node knows with a reset (a fleet: see fleetreset.go). It is
	// independent of Enabled.
	ResetUnknown bool
}

// TrustedFlow is input accepted from one address: protocol Proto, and
// when DPort is set, that destination port.
type TrustedFlow struct {
	Src   netip.Addr
	Proto uint8
	DPort uint16
}

// Normalized returns fw in a canonical form (sorted, no duplicates, zero
// when disabled), so two firewalls that mean the same compare equal and a
// reload that does not change it writes nothing.
func (fw Firewall) Normalized() Firewall {
	if !fw.Enabled {
		return Firewall{ResetUnknown: fw.ResetUnknown}
	}
	out := Firewall{Enabled: true, ResetUnknown: fw.ResetUnknown}
	out.WAN = slices.Compact(slices.Sorted(slices.Values(fw.WAN)))
	out.ManagementPorts = slices.Compact(slices.Sorted(slices.Values(fw.ManagementPorts)))
	norm := func(ps []netip.Prefix) []netip.Prefix {
		var o []netip.Prefix
		for _, p := range ps {
			if p.IsValid() {
				o = append(o, p.Masked())
			}
		}
		slices.SortFunc(o, func(a, b netip.Prefix) int {
			if c := a.Addr().Compare(b.Addr()); c != 0 {
				return c
			}
			return a.Bits() - b.Bits()
		})
		return slices.Compact(o)
	}
	out.AdminNetworks = norm(fw.AdminNetworks)
	out.AllowForward = norm(fw.AllowForward)
	out.Trusted = slices.Compact(slices.SortedFunc(slices.Values(fw.Trusted), func(a, b TrustedFlow) int {
		if c := a.Src.Compare(b.Src); c != 0 {
			return c
		}
		if a.Proto != b.Proto {
			return int(a.Proto) - int(b.Proto)
		}
		return int(a.DPort) - int(b.DPort)
	}))
	return out
}

// SSHPort is the management port of a login service, always listed.
const SSHPort = 22

// writeFirewall adds to the batch what makes the kernel's filter chains
// match fw; present says which of them the kernel has now.
func (d *Dataplane) writeFirewall(c *nftables.Conn, fw Firewall, present map[string]bool) {
	in, fwd := d.firewallChains()
	if !fw.Enabled {
		for _, ch := range []*nftables.Chain{in, fwd} {
			if present[ch.Name] {
				c.FlushChain(ch)
				c.DelChain(ch)
			}
		}
		return
	}
	for _, ch := range []*nftables.Chain{in, fwd} {
		c.AddChain(ch)
		c.FlushChain(ch)
	}
	for _, r := range firewallRules(d.table, in, fwd, fw, c.AddSet) {
		c.AddRule(r)
	}
}

func (d *Dataplane) firewallChains() (in, fwd *nftables.Chain) {
	accept := nftables.ChainPolicyAccept
	// Policy accept with an explicit final "counter drop" rule: the same
	// effect as policy drop, but the drops are counted in `nft list`.
	in = &nftables.Chain{Name: fwInputChain, Table: d.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept}
	fwd = &nftables.Chain{Name: fwForwardChain, Table: d.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept}
	return in, fwd
}

// conntrack state bits as `ct state` sees them.
const (
	ctStateInvalid     = 1
	ctStateEstablished = 2
	ctStateRelated     = 4
	ipsDstNAT          = 0x20 // IPS_DST_NAT in `ct status`
)

// ICMP types a host needs to work (errors, ping, IPv6 neighbour and router
// discovery, MLD). Neighbour discovery has no conntrack entry (ct state
// invalid), so these are accepted before invalid packets are dropped.
var (
	icmp4Essential = []byte{3, 8, 11, 12}
	icmp6Essential = []byte{1, 2, 3, 4, 128, 130, 131, 132, 133, 134, 135, 136, 143}
)

// firewallRules builds the input and forward rules for fw (enabled).
func firewallRules(t *nftables.Table, in, fwd *nftables.Chain, fw Firewall, addSet setAdder) []*nftables.Rule {
	var rules []*nftables.Rule
	// add takes expressions and lists of them, in order.
	add := func(ch *nftables.Chain, parts ...any) {
		var e []expr.Any
		for _, p := range parts {
			switch v := p.(type) {
			case expr.Any:
				e = append(e, v)
			case []expr.Any:
				e = append(e, v...)
			}
		}
		rules = append(rules, &nftables.Rule{Table: t, Chain: ch, Exprs: e})
	}
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	anon := func(kt nftables.SetDatatype, interval bool, els []nftables.SetElement) *nftables.Set {
		s := &nftables.Set{Table: t, Anonymous: true, Constant: true, Interval: interval, KeyType: kt}
		_ = addSet(s, els)
		return s
	}
	bytesSet := func(kt nftables.SetDatatype, vals []byte) *nftables.Set {
		els := make([]nftables.SetElement, len(vals))
		for i, v := range vals {
			els[i] = nftables.SetElement{Key: []byte{v}}
		}
		return anon(kt, false, els)
	}
	lookup := func(s *nftables.Set, invert bool) expr.Any {
		return &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: invert}
	}

	// input
	add(in, ctState(ctStateEstablished|ctStateRelated), accept)
	add(in, l4proto(unix.IPPROTO_ICMP), icmpType(), lookup(bytesSet(nftables.TypeICMPType, icmp4Essential), false), accept)
	add(in, l4proto(unix.IPPROTO_ICMPV6), icmpType(), lookup(bytesSet(nftables.TypeICMP6Type, icmp6Essential), false), accept)
	add(in, ctState(ctStateInvalid), drop)
	add(in, &expr.Meta{Key: expr.MetaKeyIIF, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, 1)}, accept) // lo
	// DHCP client replies: udp 67 -> 68 (sport and dport in one load).
	add(in, l4proto(unix.IPPROTO_UDP),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 67, 0, 68}}, accept)
	add(in, ctStatusDNAT(), accept)
	for _, tf := range fw.Trusted {
		is6 := tf.Src.Is6()
		e := []expr.Any{loadSaddr(is6, 1), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: tf.Src.AsSlice()}}
		e = append(e, l4proto(tf.Proto)...)
		if tf.DPort != 0 {
			e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, tf.DPort)})
		}
		add(in, nfproto(is6), e, accept)
	}
	if len(fw.WAN) == 0 {
		add(in, accept)
	} else {
		// iifname != a iifname != b ... accept: one compare per name (the
		// list is short, and nft shows names in a set of ours as "").
		e := []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}}
		for _, n := range fw.WAN {
			e = append(e, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifnameKey(n)})
		}
		add(in, e, accept)
		if len(fw.ManagementPorts) > 0 {
			for _, is6 := range []bool{false, true} {
				nets := intervalElements(fw.AdminNetworks, is6)
				if len(nets) == 0 {
					continue
				}
				var pe []nftables.SetElement
				for _, p := range fw.ManagementPorts {
					pe = append(pe, nftables.SetElement{Key: binary.BigEndian.AppendUint16(nil, p)})
				}
				admin := anon(prefixSet(t, is6).KeyType, true, nets)
				ports := anon(nftables.TypeInetService, false, pe)
				add(in, nfproto(is6), loadSaddr(is6, 1), lookup(admin, false),
					l4proto(unix.IPPROTO_TCP),
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
					lookup(ports, false), accept)
			}
		}
	}
	add(in, &expr.Counter{}, drop)

	// forward
	add(fwd, ctState(ctStateEstablished|ctStateRelated), accept)
	add(fwd, ctState(ctStateInvalid), drop)
	add(fwd, ctStatusDNAT(), accept)
	for _, is6 := range []bool{false, true} {
		if nets := intervalElements(fw.AllowForward, is6); len(nets) > 0 {
			src := anon(prefixSet(t, is6).KeyType, true, nets)
			add(fwd, nfproto(is6), loadSaddr(is6, 1), lookup(src, false), accept)
		}
	}
	add(fwd, &expr.Counter{}, drop)
	return rules
}

func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func ctStatusDNAT() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, ipsDstNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

func icmpType() expr.Any {
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1}
}

func nfproto(is6 bool) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(regsFor(is6).nfproto)}},
	}
}

// ifnameKey is an interface name as the 16-byte, zero-padded ifname key.
func ifnameKey(n string) []byte {
	k := make([]byte, unix.IFNAMSIZ)
	copy(k, n)
	return k
}
