package lb

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Register layout. nftables has 16 32-bit data registers, numbered 8..23
// (NFT_REG32_00..15); a concatenation occupies consecutive registers with
// every field padded to 4 bytes.
//
//	IPv4: key  daddr=8 l4proto=9 dport=10 slot|saddr=11    data addr=12 port=13
//	IPv6: key  daddr=8..11 l4proto=12 dport=13 slot|saddr=14..17  data addr=18..21 port=22
type regs struct {
	daddr, proto, dport, slot, data, dataPort uint32
	addrLen                                   uint32
	nfproto                                   uint32
	saddrOff                                  uint32
}

var (
	regs4 = regs{daddr: 8, proto: 9, dport: 10, slot: 11, data: 12, dataPort: 13, addrLen: 4, nfproto: unix.NFPROTO_IPV4, saddrOff: 12}
	regs6 = regs{daddr: 8, proto: 12, dport: 13, slot: 14, data: 18, dataPort: 22, addrLen: 16, nfproto: unix.NFPROTO_IPV6, saddrOff: 8}
)

func regsFor(is6 bool) regs {
	if is6 {
		return regs6
	}
	return regs4
}

func daddrOff(is6 bool) uint32 {
	if is6 {
		return 24
	}
	return 16
}

// loadEndpoint loads daddr . l4proto . th dport into the key registers.
func loadEndpoint(is6 bool) []expr.Any {
	r := regsFor(is6)
	return []expr.Any{
		&expr.Payload{DestRegister: r.daddr, Base: expr.PayloadBaseNetworkHeader, Offset: daddrOff(is6), Len: r.addrLen},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: r.proto},
		&expr.Payload{DestRegister: r.dport, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
}

func loadSaddr(is6 bool, reg uint32) expr.Any {
	r := regsFor(is6)
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: r.saddrOff, Len: r.addrLen}
}

// dispatchRule is the one rule per family that finds a service:
// `meta nfproto ipvX  daddr . l4proto . th dport vmap @svcX`.
func dispatchRule(t *nftables.Table, c *nftables.Chain, vmap *nftables.Set, is6 bool) *nftables.Rule {
	r := regsFor(is6)
	exprs := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(r.nfproto)}},
	}
	exprs = append(exprs, loadEndpoint(is6)...)
	exprs = append(exprs, &expr.Lookup{SourceRegister: r.daddr, DestRegister: 0, IsDestRegSet: true, SetName: vmap.Name, SetID: vmap.ID})
	return &nftables.Rule{Table: t, Chain: c, Exprs: exprs}
}

// SNATMark is the conntrack mark bit a service with snat sets on a flow's
// first packet; postrouting masquerades flows carrying it. Marking the
// conntrack entry (not the packet) leaves users' fwmark routing alone.
const SNATMark = 0x40000000

// markReg is a scratch register no other field uses.
const markReg = 23

// setSNATMark is `ct mark set ct mark | SNATMark`.
func setSNATMark() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: markReg, Key: expr.CtKeyMARK},
		&expr.Bitwise{SourceRegister: markReg, DestRegister: markReg, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, ^uint32(SNATMark)), Xor: binary.NativeEndian.AppendUint32(nil, SNATMark)},
		&expr.Ct{Register: markReg, Key: expr.CtKeyMARK, SourceRegister: true},
	}
}

// snatRule masquerades flows a service marked: `ct mark & SNATMark != 0
// masquerade`. Only first packets reach nat chains, so this costs nothing
// per packet.
func snatRule(t *nftables.Table, c *nftables.Chain) *nftables.Rule {
	return &nftables.Rule{Table: t, Chain: c, Exprs: []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, SNATMark), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Masq{},
	}}
}

// slotExprs computes the slot number into the slot register.
func slotExprs(s *Service) []expr.Any {
	r := regsFor(s.Is6())
	m := uint32(s.Modulus)
	switch s.Scheduler {
	case "random":
		return []expr.Any{&expr.Numgen{Register: r.slot, Modulus: m, Type: unix.NFT_NG_RANDOM}}
	case "sh":
		return []expr.Any{
			loadSaddr(s.Is6(), r.slot),
			&expr.Hash{SourceRegister: r.slot, DestRegister: r.slot, Length: r.addrLen, Modulus: m, Seed: s.Seed, Type: expr.HashTypeJenkins},
		}
	case "mh":
		sport := r.slot + r.addrLen/4
		return []expr.Any{
			loadSaddr(s.Is6(), r.slot),
			&expr.Payload{DestRegister: sport, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
			&expr.Hash{SourceRegister: r.slot, DestRegister: r.slot, Length: r.addrLen + 4, Modulus: m, Seed: s.Seed, Type: expr.HashTypeJenkins},
		}
	default: // rr, and lc/wlc, whose choice lives in the slot shares
		return []expr.Any{&expr.Numgen{Register: r.slot, Modulus: m, Type: unix.NFT_NG_INCREMENTAL}}
	}
}

func dnat(is6 bool) expr.Any {
	r := regsFor(is6)
	return &expr.NAT{Type: expr.NATTypeDestNAT, Family: r.nfproto, RegAddrMin: r.data, RegProtoMin: r.dataPort, Specified: true}
}

func counterRef(name string) expr.Any {
	return &expr.Objref{Type: int(nftables.ObjTypeCounter), Name: name}
}

// countIn bumps the counter of the service's element in a counter set
// (flows4/6, empty4/6): a lookup of the service's endpoint. Counters live
// in set elements, not in a named counter object per service: at 10,000
// services the two objects per service were 20,000 netlink messages (and
// acks) of a cold start's 60,000, and each is a kernel object with a name
// to hash.
//
// The endpoint is loaded again even where the registers still hold it:
// nft (1.0.6) cannot list a rule that reads a register twice, and
// operators list the ruleset.
func countIn(is6 bool, set *nftables.Set) []expr.Any {
	return append(loadEndpoint(is6), &expr.Lookup{SourceRegister: regsFor(is6).daddr, SetName: set.Name, SetID: set.ID})
}

// serviceRules are the scheduling rules of one service's chain, in order,
// after its protection rules (protect.go). They depend on everything in the
// Service except Slots, so a health change never needs them rewritten.
func serviceRules(t *nftables.Table, c *nftables.Chain, s *Service, maps *tableSets) []*nftables.Rule {
	is6 := s.Is6()
	r := regsFor(is6)
	persistMap, flows := maps.persist4, maps.flows4
	if is6 {
		persistMap, flows = maps.persist6, maps.flows6
	}
	var rules []*nftables.Rule
	add := func(e ...expr.Any) { rules = append(rules, &nftables.Rule{Table: t, Chain: c, Exprs: e}) }

	if s.Persistence > 0 {
		// A client seen within the persistence time goes to the backend it
		// had; the hit refreshes the timeout. (nft 1.0.6 cannot list this
		// rule: the refresh takes its data from the lookup's register,
		// which nft does not know how to print; see the listing test.)
		e := loadEndpoint(is6)
		e = append(e, loadSaddr(is6, r.slot),
			&expr.Lookup{SourceRegister: r.daddr, DestRegister: r.data, IsDestRegSet: true, SetName: persistMap.Name, SetID: persistMap.ID},
			&expr.Dynset{SrcRegKey: r.daddr, SrcRegData: r.data, SetName: persistMap.Name, SetID: persistMap.ID,
				Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: s.Persistence})
		e = append(e, countIn(is6, flows)...)
		if s.SNAT {
			e = append(e, setSNATMark()...)
		}
		add(append(e, dnat(is6))...)
	}

	// The slot lookup and DNAT live in one shared chain per family,
	// persistence time and on_empty (dnatChainRules). The kernel re-checks
	// every element added to a map against every rule bound to it, so one
	// lookup rule per service would make large applies quadratic.
	// Registers do not survive a jump, so the slot travels in the packet
	// mark, which the shared chain clears again. Every path through the
	// shared chain ends the packet's walk (DNAT or a refusal), so this is
	// the service chain's last rule.
	e := slotExprs(s)
	e = append(e, &expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: r.slot})
	if s.SNAT {
		e = append(e, setSNATMark()...)
	}
	add(append(e, &expr.Verdict{Kind: expr.VerdictJump, Chain: dnatChainName(is6, s.Persistence, s.OnEmpty == "drop")})...)
	return rules
}

// dnatChainName names the shared chain that looks the slot up and DNATs;
// services with persistence also record the client there, with their time,
// and services whose on_empty is drop have their own (the refusal is the
// chain's last rule).
func dnatChainName(is6 bool, persist time.Duration, drop bool) string {
	n := "dnat4"
	if is6 {
		n = "dnat6"
	}
	if persist > 0 {
		n = fmt.Sprintf("%s_persist_%dms", n, persist.Milliseconds())
	}
	if drop {
		n += "_drop"
	}
	return n
}

// dnatChainRules are the rules of a shared DNAT chain: the slot lookup and
// DNAT (counted in flows4/6), then, reached only when the service has no
// usable backend (no slot filled), the refusal, counted in empty4/6:
// refuse loudly rather than let the packet fall through to a blackhole.
func dnatChainRules(t *nftables.Table, c *nftables.Chain, is6 bool, persist time.Duration, drop bool, maps *tableSets) []*nftables.Rule {
	r := regsFor(is6)
	slotsMap, persistMap, flows, empty := maps.slots4, maps.persist4, maps.flows4, maps.empty4
	if is6 {
		slotsMap, persistMap, flows, empty = maps.slots6, maps.persist6, maps.flows6, maps.empty6
	}
	e := loadEndpoint(is6)
	e = append(e, &expr.Meta{Key: expr.MetaKeyMARK, Register: r.slot},
		&expr.Lookup{SourceRegister: r.daddr, DestRegister: r.data, IsDestRegSet: true, SetName: slotsMap.Name, SetID: slotsMap.ID})
	if persist > 0 {
		e = append(e, loadSaddr(is6, r.slot),
			&expr.Dynset{SrcRegKey: r.daddr, SrcRegData: r.data, SetName: persistMap.Name, SetID: persistMap.ID,
				Operation: unix.NFT_DYNSET_OP_ADD, Timeout: persist})
	}
	e = append(e, countIn(is6, flows)...)
	e = append(e, &expr.Immediate{Register: r.slot, Data: make([]byte, 4)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: r.slot})
	rules := []*nftables.Rule{{Table: t, Chain: c, Exprs: append(e, dnat(is6))}}

	// No slot: count, then refuse. The protocol picks the refusal, so one
	// chain serves TCP and UDP services: a TCP reset, else ICMP port
	// unreachable (the count happens once, in the first of the two rules).
	e = countIn(is6, empty)
	if drop {
		return append(rules, &nftables.Rule{Table: t, Chain: c, Exprs: append(e, refuse(protoTCP, true)...)})
	}
	e = append(e, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{protoTCP}})
	rules = append(rules, &nftables.Rule{Table: t, Chain: c, Exprs: append(e, refuse(protoTCP, false)...)})
	return append(rules, &nftables.Rule{Table: t, Chain: c, Exprs: refuse(protoUDP, false)})
}

// refuse answers a refused new flow: TCP reset or ICMP port unreachable, or
// a silent drop when asked for.
func refuse(proto uint8, drop bool) []expr.Any {
	if drop {
		return []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}
	}
	if proto == protoTCP {
		return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}
	}
	return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}}
}

// Element encodings. Every concatenated field is padded to 4 bytes; the
// slot number is host-endian like the numgen/jhash result it is compared to.

func endpointKey(vip netip.Addr, proto uint8, port uint16) []byte {
	k := append([]byte(nil), vip.AsSlice()...)
	k = append(k, proto, 0, 0, 0)
	k = binary.BigEndian.AppendUint16(k, port)
	return append(k, 0, 0)
}

func slotKey(s *Service, slot int) []byte {
	return binary.NativeEndian.AppendUint32(endpointKey(s.VIP, s.Proto, s.Port), uint32(slot))
}

func backendValue(b netip.AddrPort) []byte {
	v := append([]byte(nil), b.Addr().AsSlice()...)
	v = binary.BigEndian.AppendUint16(v, b.Port())
	return append(v, 0, 0)
}
