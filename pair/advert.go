package pair

import (
	"context"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// ipprotoVRRP is VRRP's IP protocol number.
const ipprotoVRRP = 112

// Advert is the newest VRRP advertisement heard from the peer. Only a
// master advertises, so a recent advert with priority > 0 means the peer
// is master now; priority 0 is a master giving up.
type Advert struct {
	From     netip.Addr
	Priority int
	Interval time.Duration
	At       time.Time
}

// advertWatch keeps the peer's newest advert for our router id. It reads
// a raw socket of its own: the kernel hands every raw socket of protocol
// 112 a copy of each advert, so keepalived sees them all the same.
type advertWatch struct {
	mu   sync.Mutex
	last Advert
}

func newAdvertWatch() *advertWatch {
	return &advertWatch{}
}

func (w *advertWatch) get() Advert {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// parseAdvert reads a VRRP (v2 or v3) advertisement: version/type, router
// id, priority, count, then the interval (v3: 12 bits of centiseconds).
func parseAdvert(b []byte) (vrid, prio int, interval time.Duration, ok bool) {
	if len(b) < 8 || b[0]&0x0f != 1 {
		return 0, 0, 0, false
	}
	switch b[0] >> 4 {
	case 3:
		interval = time.Duration(int(b[4]&0x0f)<<8|int(b[5])) * 10 * time.Millisecond
	case 2:
		interval = time.Duration(b[5]) * time.Second
	default:
		return 0, 0, 0, false
	}
	return int(b[1]), int(b[2]), interval, true
}

// run reads adverts from peer for router id vrid until ctx ends.
func (w *advertWatch) run(ctx context.Context, peer netip.Addr, vrid int) error {
	fam := syscall.AF_INET
	if peer.Is6() {
		fam = syscall.AF_INET6
	}
	fd, err := syscall.Socket(fam, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, ipprotoVRRP)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	tv := syscall.Timeval{Sec: 0, Usec: 200000}
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	buf := make([]byte, 1500)
	for ctx.Err() == nil {
		n, from, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil || n <= 0 {
			continue
		}
		var src netip.Addr
		pkt := buf[:n]
		switch sa := from.(type) {
		case *syscall.SockaddrInet4:
			src = netip.AddrFrom4(sa.Addr)
			// IPv4 raw sockets deliver the IP header too.
			ihl := int(pkt[0]&0x0f) * 4
			if ihl < 20 || ihl > len(pkt) {
				continue
			}
			pkt = pkt[ihl:]
		case *syscall.SockaddrInet6:
			src = netip.AddrFrom16(sa.Addr)
		}
		if src != peer {
			continue
		}
		id, prio, iv, ok := parseAdvert(pkt)
		if !ok || id != vrid {
			continue
		}
		w.mu.Lock()
		w.last = Advert{From: src, Priority: prio, Interval: iv, At: time.Now()}
		w.mu.Unlock()
	}
	return nil
}
