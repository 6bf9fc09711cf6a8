package lb

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mnl "github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Per-backend traffic counters come from conntrack accounting
// (net.netfilter.nf_conntrack_acct): every conntrack entry then carries
// packets and bytes per direction, added by the kernel for each packet the
// entry sees. A backend's totals are what its ended flows carried (read
// from the DESTROY events, which hold the final counters) plus what its
// live flows carry now (read from a dump). Nothing in table lbd changes:
// the cost is one per-entry extension and two atomic adds per packet,
// whatever the number of services.

// FlowTraffic is the accounting of one conntrack entry that lbd translated.
type FlowTraffic struct {
	Key FlowKey
	// Tuple is the original direction (proto, client, VIP); it names the
	// entry while it lives, so a flow seen both in a dump and in a DESTROY
	// event is counted once.
	Tuple                FlowTuple
	PacketsIn, BytesIn   uint64 // original direction: from the client
	PacketsOut, BytesOut uint64 // reply direction: towards the client
}

// FlowTuple is a conntrack entry's original-direction tuple.
type FlowTuple struct {
	Proto  uint8
	Client netip.AddrPort
	VIP    netip.AddrPort
}

// acctSysctl turns conntrack accounting on; it is per network namespace.
const acctSysctl = "/proc/sys/net/netfilter/nf_conntrack_acct"

// EnableAccounting sets nf_conntrack_acct = 1 in the caller's network
// namespace. Only entries created after it carry counters, so lbd sets it
// before it installs its table. The key exists once nf_conntrack is loaded;
// WatchEndedFlows loads it (ctnetlink depends on it), so call that first.
func EnableAccounting() error {
	b, err := os.ReadFile(acctSysctl)
	if err == nil && len(b) > 0 && b[0] == '1' {
		return nil
	}
	if err := os.WriteFile(acctSysctl, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("conntrack accounting: %w", err)
	}
	return nil
}

// LiveTraffic dumps the conntrack table once and returns the counters of
// every translated flow of the given services, in any state.
func LiveTraffic(services []Service) ([]FlowTraffic, error) {
	var out []FlowTraffic
	err := eachServiceFlow(services, func(sf serviceFlow) {
		f := sf.flow
		out = append(out, FlowTraffic{Key: FlowKey{Endpoint: sf.endpoint, Backend: sf.backend},
			Tuple:     FlowTuple{Proto: f.Forward.Protocol, Client: sf.client, VIP: sf.vip},
			PacketsIn: f.Forward.Packets, BytesIn: f.Forward.Bytes, PacketsOut: f.Reverse.Packets, BytesOut: f.Reverse.Bytes})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// eventBuffer is the receive buffer asked for the DESTROY stream: about
// 30,000 events (~280 bytes each) of slack before the kernel drops some,
// i.e. 150,000 ended flows a second between two drains.
const eventBuffer = 8 << 20

// drainEvery is how often the DESTROY stream is read. The events are
// read in batches on a timer, from a socket outside Go's netpoller, rather
// than as they come: woken per event (a MSG_PEEK, a buffer allocation and
// a receive, then a park), lbd cost about 30 us of CPU per connection, a
// fifth of a load balancer's whole cost per new connection (profiled in
// issue 13), and every event's broadcast woke a sleeper from the packet
// path. The traffic counters lag by up to this much.
const drainEvery = 200 * time.Millisecond

// EndedFlows is a subscription to conntrack DESTROY events.
type EndedFlows struct {
	fd int
	// mu serialises reads of the socket (Run's timer and Drain) and its
	// closing; f is Run's callback.
	mu     sync.Mutex
	closed bool
	f      func(FlowTraffic)
	buf    []byte
	// Lost counts receive-buffer overruns (ENOBUFS): each lost at least
	// one event, so the totals miss those flows.
	Lost atomic.Uint64
}

// SubscribeEndedFlows joins the ctnetlink DESTROY multicast group of the
// caller's network namespace. Joining loads nf_conntrack_netlink (and so
// nf_conntrack) on demand. The socket is non-blocking and never polled:
// Run drains it on a timer.
func SubscribeEndedFlows() (*EndedFlows, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("conntrack events: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("conntrack events: bind: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, unix.NFNLGRP_CONNTRACK_DESTROY); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("conntrack events: join destroy group: %w", err)
	}
	// SO_RCVBUFFORCE passes net.core.rmem_max (root only); fall back to
	// what an ordinary SO_RCVBUF gets.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, eventBuffer) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, eventBuffer)
	}
	return &EndedFlows{fd: fd}, nil
}

// Close ends a subscription that Run is not reading: Run closes it itself
// when ctx ends.
func (e *EndedFlows) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	return unix.Close(e.fd)
}

// Run reads events until ctx ends and hands each translated flow (one
// whose reply source differs from its original destination, i.e. DNAT was
// applied) to f. Untranslated flows (lbd's own health checks, routed
// traffic) are dropped here, so f sees only load-balanced flows. It only
// reads: it never changes the kernel.
func (e *EndedFlows) Run(ctx context.Context, f func(FlowTraffic)) error {
	defer e.Close()
	e.mu.Lock()
	e.f, e.buf = f, make([]byte, 1<<16)
	e.mu.Unlock()
	t := time.NewTicker(drainEvery)
	defer t.Stop()
	for {
		if err := e.Drain(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Drain reads, now, every event queued on the socket and hands the flows to
// Run's callback, so a reader that wants exact totals (a status snapshot)
// need not wait for the timer. Before Run starts and after it ends it does
// nothing.
func (e *EndedFlows) Drain() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.f == nil {
		return nil
	}
	return e.drain(e.buf, e.f)
}

// drain reads every event queued on the socket, into one reused buffer.
func (e *EndedFlows) drain(buf []byte, f func(FlowTraffic)) error {
	for {
		n, _, err := unix.Recvfrom(e.fd, buf, unix.MSG_DONTWAIT)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOBUFS):
			e.Lost.Add(1)
			continue
		case err != nil:
			return fmt.Errorf("conntrack events: %w", err)
		}
		eachMessage(buf[:n], func(typ uint16, data []byte) {
			if ft, ok := ParseDestroy(mnl.HeaderType(typ), data); ok {
				f(ft)
			}
		})
	}
}

// eachMessage calls f with the type and payload of each netlink message in
// one datagram.
func eachMessage(b []byte, f func(typ uint16, data []byte)) {
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return
		}
		f(binary.NativeEndian.Uint16(b[4:]), b[unix.NLMSG_HDRLEN:l])
		l = (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if l >= len(b) {
			return
		}
		b = b[l:]
	}
}

// ctnetlink attribute numbers (linux/netfilter/nfnetlink_conntrack.h).
const (
	ctaTupleOrig     = 1
	ctaTupleReply    = 2
	ctaCountersOrig  = 9
	ctaCountersReply = 10

	ctaTupleIP    = 1
	ctaTupleProto = 2
	ctaIPv4Src    = 1
	ctaIPv4Dst    = 2
	ctaIPv6Src    = 3
	ctaIPv6Dst    = 4
	ctaProtoNum   = 1
	ctaProtoSrc   = 2
	ctaProtoDst   = 3

	ctaCountersPackets = 1
	ctaCountersBytes   = 2

	ipctnlMsgCtDelete = 2
)

type tuple struct {
	src, dst netip.AddrPort
	proto    uint8
}

// ParseDestroy decodes one ctnetlink DESTROY message (header type and
// payload after the netlink header). ok is false for other messages and
// for flows lbd did not translate. It walks the attributes by hand: with
// mdlayher's decoders one event cost ~35 allocations, and at tens of
// thousands of ended flows a second that is lbd's main cost here.
func ParseDestroy(typ mnl.HeaderType, data []byte) (FlowTraffic, bool) {
	if uint16(typ) != unix.NFNL_SUBSYS_CTNETLINK<<8|ipctnlMsgCtDelete || len(data) < 4 {
		return FlowTraffic{}, false
	}
	var orig, reply tuple
	var ft FlowTraffic
	ok := walkAttrs(data[4:], func(typ uint16, v []byte) bool { // after struct nfgenmsg
		switch typ {
		case ctaTupleOrig:
			return decodeTuple(v, &orig)
		case ctaTupleReply:
			return decodeTuple(v, &reply)
		case ctaCountersOrig:
			ft.PacketsIn, ft.BytesIn = decodeCounters(v)
		case ctaCountersReply:
			ft.PacketsOut, ft.BytesOut = decodeCounters(v)
		}
		return true
	})
	if !ok || !orig.dst.IsValid() || !reply.src.IsValid() || reply.src == orig.dst {
		return FlowTraffic{}, false
	}
	ep := orig.dst.Addr().AppendTo(make([]byte, 0, 64))
	ep = append(append(append(ep, '/'), protoName(orig.proto)...), '/')
	ep = strconv.AppendUint(ep, uint64(orig.dst.Port()), 10)
	ft.Key = FlowKey{Endpoint: string(ep), Backend: reply.src}
	ft.Tuple = FlowTuple{Proto: orig.proto, Client: orig.src, VIP: orig.dst}
	return ft, true
}

// walkAttrs calls f for each netlink attribute in b (type without the
// NLA_F_NESTED / byte-order flags); false from f or a malformed attribute
// stops it and returns false.
func walkAttrs(b []byte, f func(typ uint16, v []byte) bool) bool {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < 4 || l > len(b) {
			return false
		}
		if !f(typ, b[4:l]) {
			return false
		}
		l = (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
		if l >= len(b) {
			return true
		}
		b = b[l:]
	}
	return true
}

func decodeTuple(b []byte, t *tuple) bool {
	var src, dst netip.Addr
	var sport, dport uint16
	ok := walkAttrs(b, func(typ uint16, v []byte) bool {
		switch typ {
		case ctaTupleIP:
			return walkAttrs(v, func(typ uint16, v []byte) bool {
				a, _ := netip.AddrFromSlice(v)
				switch typ {
				case ctaIPv4Src, ctaIPv6Src:
					src = a.Unmap()
				case ctaIPv4Dst, ctaIPv6Dst:
					dst = a.Unmap()
				}
				return true
			})
		case ctaTupleProto:
			return walkAttrs(v, func(typ uint16, v []byte) bool {
				switch {
				case typ == ctaProtoNum && len(v) >= 1:
					t.proto = v[0]
				case typ == ctaProtoSrc && len(v) >= 2:
					sport = binary.BigEndian.Uint16(v)
				case typ == ctaProtoDst && len(v) >= 2:
					dport = binary.BigEndian.Uint16(v)
				}
				return true
			})
		}
		return true
	})
	if src.IsValid() && dst.IsValid() {
		t.src, t.dst = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	}
	return ok
}

func decodeCounters(b []byte) (packets, bytes uint64) {
	walkAttrs(b, func(typ uint16, v []byte) bool {
		if len(v) < 8 {
			return true
		}
		switch typ {
		case ctaCountersPackets:
			packets = binary.BigEndian.Uint64(v)
		case ctaCountersBytes:
			bytes = binary.BigEndian.Uint64(v)
		}
		return true
	})
	return packets, bytes
}
