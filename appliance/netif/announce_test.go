package netif

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

func TestGARPFrame(t *testing.T) {
	mac := mustMAC("02:00:00:00:07:01")
	f := garpFrame(mac, netip.MustParseAddr("198.51.100.10"))
	if len(f) != 60 {
		t.Fatalf("len %d, want a padded 60-byte frame", len(f))
	}
	if !bytes.Equal(f[0:6], broadcastMAC) || !bytes.Equal(f[6:12], mac) || binary.BigEndian.Uint16(f[12:]) != 0x0806 {
		t.Errorf("bad Ethernet header % x", f[:14])
	}
	a := f[14:]
	vip := []byte{198, 51, 100, 10}
	if binary.BigEndian.Uint16(a[6:]) != 1 || !bytes.Equal(a[8:14], mac) || !bytes.Equal(a[14:18], vip) || !bytes.Equal(a[24:28], vip) {
		t.Errorf("not an ARP announcement: % x", a[:28])
	}
}

func TestUnsolicitedNAFrame(t *testing.T) {
	mac := mustMAC("02:00:00:00:07:01")
	vip := netip.MustParseAddr("2001:db8:7::10")
	f := unsolicitedNAFrame(mac, vip)
	ip6 := f[14:54]
	if ip6[6] != 58 || ip6[7] != 255 {
		t.Errorf("next header %d hop limit %d, want ICMPv6 and 255", ip6[6], ip6[7])
	}
	icmp := f[54:]
	if icmp[0] != 136 || icmp[4] != 0x20 {
		t.Errorf("type %d flags %#x, want NA with only the override flag", icmp[0], icmp[4])
	}
	v := vip.As16()
	if !bytes.Equal(icmp[8:24], v[:]) || !bytes.Equal(icmp[26:32], mac) {
		t.Errorf("target or link-layer option wrong: % x", icmp)
	}
	// A correct checksum makes the sum over pseudo-header and message,
	// checksum included, come out as zero.
	var src, dst [16]byte
	copy(src[:], ip6[8:24])
	copy(dst[:], ip6[24:40])
	if got := icmpv6Checksum(src, dst, icmp); got != 0 {
		t.Errorf("checksum does not verify: residual %#x", got)
	}
}
