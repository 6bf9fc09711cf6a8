package lb

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
)

// readElements dumps a set's elements, retrying a dump that was not
// consistent. The kernel dumps a large set over several messages and each
// continues by skipping as many elements as it has sent; when the set's
// hash table is resized in between (it grows in the background after a big
// insert), the order changes and the dump repeats some elements and misses
// as many others. A duplicate key gives such a dump away, so read again
// until there is none (the resize is over within milliseconds).
func readElements(c *nftables.Conn, set *nftables.Set) ([]nftables.SetElement, error) {
	const attempts = 20
	for i := 0; ; i++ {
		els, err := c.GetSetElements(set)
		if err != nil {
			return nil, err
		}
		seen := make(map[string]struct{}, len(els))
		for _, e := range els {
			seen[string(e.Key)] = struct{}{}
		}
		if len(seen) == len(els) || i == attempts-1 {
			return els, nil
		}
		time.Sleep(time.Duration(i+1) * 5 * time.Millisecond)
	}
}

// SlotOwners reads which backends hold slots in the kernel now, by service
// endpoint (Service.Endpoint()). A starting lbd uses it to learn what the
// previous one served when no state file says so (an upgrade from a
// release that did not write one). A missing table is an empty answer.
func (d *Dataplane) SlotOwners() (map[string]map[netip.AddrPort]int, error) {
	c, err := d.newConn()
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	out := map[string]map[netip.AddrPort]int{}
	for _, set := range []*nftables.Set{d.sets.slots4, d.sets.slots6} {
		addrLen := 4
		if set == d.sets.slots6 {
			addrLen = 16
		}
		els, err := readElements(c, set)
		if err != nil {
			// No table or no map yet: nothing was served.
			continue
		}
		for _, e := range els {
			ep, ok := decodeEndpoint(e.Key, addrLen)
			be, ok2 := decodeBackend(e.Val, addrLen)
			if !ok || !ok2 {
				continue
			}
			if out[ep] == nil {
				out[ep] = map[netip.AddrPort]int{}
			}
			out[ep][be]++
		}
	}
	return out, nil
}

// decodeEndpoint reverses endpointKey (daddr . l4proto . dport, each field
// padded to 4 bytes) into Service.Endpoint()'s spelling.
func decodeEndpoint(k []byte, addrLen int) (string, bool) {
	if len(k) < addrLen+8 {
		return "", false
	}
	vip, ok := netip.AddrFromSlice(k[:addrLen])
	if !ok {
		return "", false
	}
	s := Service{VIP: vip, Proto: k[addrLen], Port: binary.BigEndian.Uint16(k[addrLen+4:])}
	return s.Endpoint(), true
}

// decodeBackend reverses backendValue (addr . port).
func decodeBackend(v []byte, addrLen int) (netip.AddrPort, bool) {
	if len(v) < addrLen+2 {
		return netip.AddrPort{}, false
	}
	a, ok := netip.AddrFromSlice(v[:addrLen])
	if !ok {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(v[addrLen:])), true
}
