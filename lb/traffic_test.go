package lb

import (
	"encoding/binary"
	"net/netip"
	"testing"

	mnl "github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// destroyMsg encodes a ctnetlink DESTROY message the way the kernel does
// (nested attributes with NLA_F_NESTED, big-endian numbers).
func destroyMsg(t testing.TB, client, vip, backend, replyDst netip.AddrPort, in, out [2]uint64) (mnl.HeaderType, []byte) {
	tup := func(src, dst netip.AddrPort) func(*mnl.AttributeEncoder) error {
		return func(e *mnl.AttributeEncoder) error {
			e.ByteOrder = binary.BigEndian
			e.Nested(ctaTupleIP, func(n *mnl.AttributeEncoder) error {
				s, d := uint16(ctaIPv4Src), uint16(ctaIPv4Dst)
				if src.Addr().Is6() {
					s, d = ctaIPv6Src, ctaIPv6Dst
				}
				n.Bytes(s, src.Addr().AsSlice())
				n.Bytes(d, dst.Addr().AsSlice())
				return nil
			})
			e.Nested(ctaTupleProto, func(n *mnl.AttributeEncoder) error {
				n.ByteOrder = binary.BigEndian
				n.Uint8(ctaProtoNum, unix.IPPROTO_TCP)
				n.Uint16(ctaProtoSrc, src.Port())
				n.Uint16(ctaProtoDst, dst.Port())
				return nil
			})
			return nil
		}
	}
	ctr := func(c [2]uint64) func(*mnl.AttributeEncoder) error {
		return func(e *mnl.AttributeEncoder) error {
			e.ByteOrder = binary.BigEndian
			e.Uint64(ctaCountersPackets, c[0])
			e.Uint64(ctaCountersBytes, c[1])
			return nil
		}
	}
	e := mnl.NewAttributeEncoder()
	e.Nested(ctaTupleOrig, tup(client, vip))
	e.Nested(ctaTupleReply, tup(backend, replyDst))
	e.Nested(ctaCountersOrig, ctr(in))
	e.Nested(ctaCountersReply, ctr(out))
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return mnl.HeaderType(unix.NFNL_SUBSYS_CTNETLINK<<8 | ipctnlMsgCtDelete), append([]byte{unix.AF_INET, 0, 0, 0}, b...)
}

func TestParseDestroy(t *testing.T) {
	client := netip.MustParseAddrPort("192.0.2.10:40000")
	vip := netip.MustParseAddrPort("198.51.100.1:80")
	be := netip.MustParseAddrPort("203.0.113.11:8080")
	typ, data := destroyMsg(t, client, vip, be, client, [2]uint64{5, 400}, [2]uint64{4, 9000})
	ft, ok := ParseDestroy(typ, data)
	if !ok {
		t.Fatal("translated flow not parsed")
	}
	want := FlowTraffic{Key: FlowKey{Endpoint: "198.51.100.1/tcp/80", Backend: be},
		Tuple:     FlowTuple{Proto: unix.IPPROTO_TCP, Client: client, VIP: vip},
		PacketsIn: 5, BytesIn: 400, PacketsOut: 4, BytesOut: 9000}
	if ft != want {
		t.Errorf("parsed %+v\nwant   %+v", ft, want)
	}
	// An untranslated flow (the reply comes from the address the client
	// asked for) is not a load-balanced flow.
	if _, ok := ParseDestroy(destroyMsg(t, client, vip, vip, client, [2]uint64{1, 60}, [2]uint64{1, 60})); ok {
		t.Error("untranslated flow counted")
	}
	if _, ok := ParseDestroy(mnl.HeaderType(unix.NFNL_SUBSYS_CTNETLINK<<8|0), data); ok {
		t.Error("a NEW message parsed as DESTROY")
	}
	if _, ok := ParseDestroy(typ, data[:3]); ok {
		t.Error("truncated message parsed")
	}
}

// BenchmarkParseDestroy is lbd's cost per ended flow in user space (the
// README quotes it).
func BenchmarkParseDestroy(b *testing.B) {
	typ, data := destroyMsg(b, netip.MustParseAddrPort("192.0.2.10:40000"), netip.MustParseAddrPort("198.51.100.1:80"),
		netip.MustParseAddrPort("203.0.113.11:8080"), netip.MustParseAddrPort("192.0.2.10:40000"), [2]uint64{5, 400}, [2]uint64{4, 9000})
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := ParseDestroy(typ, data); !ok {
			b.Fatal("not parsed")
		}
	}
}
