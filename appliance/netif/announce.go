package netif

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// announcement is one VIP to announce on one NIC.
type announcement struct {
	index int
	mac   net.HardwareAddr
	addr  netip.Addr
}

// announce sends every announcement once now and AnnounceCount-1 more
// times, AnnounceInterval apart, in the background (repeats cover a lost
// frame or a switch that learns slowly). Only the first round can fail the
// caller: waiting out the repeats would hold lbd's start (and every reload
// that adds a VIP) for half a second for frames nobody waits for. Frames go
// out through one AF_PACKET socket created inside the managed namespace.
// The caller holds m.mu.
func (m *Manager) announce(list []announcement) error {
	var fd int
	err := RunInNetns(m.ns, func() error {
		var err error
		// Protocol 0: a send-only packet socket, it receives nothing.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	var errs []error
	for _, a := range list {
		if err := sendAnnouncement(fd, a); err != nil {
			errs = append(errs, fmt.Errorf("%s on ifindex %d: %w", a.addr, a.index, err))
		}
	}
	if len(errs) > 0 {
		unix.Close(fd)
		return errors.Join(errs...)
	}
	// Logged now, with the repeats still to come: one line per change,
	// in order with the interface changes, never one arriving later.
	m.log.Info("vips announced", "count", len(list), "repeats", m.opts.AnnounceCount)
	if m.opts.AnnounceCount <= 1 {
		unix.Close(fd)
		return nil
	}
	stop := m.repeats.start()
	go func() {
		defer m.repeats.done()
		defer unix.Close(fd)
		for round := 1; round < m.opts.AnnounceCount; round++ {
			select {
			case <-stop:
				return
			case <-time.After(m.opts.AnnounceInterval):
			}
			for _, a := range list {
				// A repeat that fails (the NIC went away meanwhile) is
				// not worth more than the first frame that went out.
				_ = sendAnnouncement(fd, a)
			}
		}
	}()
	return nil
}

// sendAnnouncement sends one gratuitous ARP or unsolicited NA.
func sendAnnouncement(fd int, a announcement) error {
	frame, proto, dst := announceFrame(a.mac, a.addr)
	sa := &unix.SockaddrLinklayer{Ifindex: a.index, Protocol: htons(proto), Halen: 6}
	copy(sa.Addr[:], dst)
	return unix.Sendto(fd, frame, 0, sa)
}

// repeatTracker follows the background repeats of announce: stopAll ends
// them early (a VIP was removed: no more frames claiming an address that
// may now live elsewhere, such as on an HA peer) and wait returns once none
// runs (Close, and tests through WaitAnnouncements).
type repeatTracker struct {
	mu      sync.Mutex
	stop    chan struct{}
	running sync.WaitGroup
}

// start registers one background repeat and returns its stop channel.
func (r *repeatTracker) start() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stop == nil {
		r.stop = make(chan struct{})
	}
	r.running.Add(1)
	return r.stop
}

func (r *repeatTracker) done() { r.running.Done() }

func (r *repeatTracker) wait() { r.running.Wait() }

// stopAll stops every repeat running now; later ones start afresh.
func (r *repeatTracker) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stop != nil {
		close(r.stop)
		r.stop = nil
	}
}

// WaitAnnouncements returns once the background repeats of every VIP
// announced so far have been sent (tests; Close waits too).
func (m *Manager) WaitAnnouncements() { m.repeats.wait() }

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// announceFrame builds the Ethernet frame announcing addr at mac and returns
// it with its EtherType and destination MAC.
func announceFrame(mac net.HardwareAddr, addr netip.Addr) ([]byte, uint16, net.HardwareAddr) {
	if addr.Is4() {
		return garpFrame(mac, addr), unix.ETH_P_ARP, broadcastMAC
	}
	return unsolicitedNAFrame(mac, addr), unix.ETH_P_IPV6, allNodesMAC
}

var (
	broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	allNodesMAC  = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	allNodesIP   = netip.MustParseAddr("ff02::1")
)

// garpFrame is a gratuitous ARP request (sender = target = addr, RFC 5227
// "ARP announcement"), broadcast. Linux neighbours update an existing entry
// for addr from it (arp_accept=1 also makes them create one).
func garpFrame(mac net.HardwareAddr, addr netip.Addr) []byte {
	f := make([]byte, 60) // minimum Ethernet frame, zero padded
	copy(f[0:6], broadcastMAC)
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:14], unix.ETH_P_ARP)
	a := f[14:]
	binary.BigEndian.PutUint16(a[0:2], 1)      // hardware type Ethernet
	binary.BigEndian.PutUint16(a[2:4], 0x0800) // protocol IPv4
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], 1) // request
	ip := addr.As4()
	copy(a[8:14], mac)
	copy(a[14:18], ip[:])
	// target hardware address stays zero
	copy(a[24:28], ip[:])
	return f
}

// unsolicitedNAFrame is an ICMPv6 neighbour advertisement for addr with the
// override flag and the target link-layer address option (RFC 4861 7.2.6),
// sent from addr to all nodes with hop limit 255.
func unsolicitedNAFrame(mac net.HardwareAddr, addr netip.Addr) []byte {
	const icmpLen = 24 + 8 // NA + target link-layer address option
	f := make([]byte, 14+40+icmpLen)
	copy(f[0:6], allNodesMAC)
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:14], unix.ETH_P_IPV6)

	ip6 := f[14:54]
	ip6[0] = 0x60
	binary.BigEndian.PutUint16(ip6[4:6], icmpLen)
	ip6[6] = unix.IPPROTO_ICMPV6
	ip6[7] = 255
	src, dst := addr.As16(), allNodesIP.As16()
	copy(ip6[8:24], src[:])
	copy(ip6[24:40], dst[:])

	icmp := f[54:]
	icmp[0] = 136             // neighbour advertisement
	icmp[4] = 0x20            // flags: override (not router, not solicited)
	copy(icmp[8:24], src[:])  // target
	icmp[24], icmp[25] = 2, 1 // option: target link-layer address, 8 bytes
	copy(icmp[26:32], mac)
	binary.BigEndian.PutUint16(icmp[2:4], icmpv6Checksum(src, dst, icmp))
	return f
}

// icmpv6Checksum is the Internet checksum over the IPv6 pseudo-header and
// the ICMPv6 message (its checksum field zero).
func icmpv6Checksum(src, dst [16]byte, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src[:])
	add(dst[:])
	var tail [8]byte
	binary.BigEndian.PutUint32(tail[0:4], uint32(len(msg)))
	tail[7] = unix.IPPROTO_ICMPV6
	add(tail[:])
	add(msg)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
