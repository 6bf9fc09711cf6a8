// Package dhcp is the appliance's DHCPv4 client: one Client per interface
// acquires a lease (DISCOVER/OFFER/REQUEST/ACK), puts the address and the
// default route on the NIC, renews at T1 by unicast to the server, rebinds
// at T2 by broadcast, starts over when the lease is lost and releases it on
// a clean Stop. It never touches other addresses on the NIC (VIPs, static
// extras), and all kernel work happens through handles and sockets of the
// network namespace it was given.
package dhcp

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Lease is what the status page and the integrator see of a lease.
type Lease struct {
	Address  netip.Prefix // leased address with the subnet's prefix length
	Router   netip.Addr   // first router option; invalid when none
	DNS      []netip.Addr
	Server   netip.Addr // server identifier
	Obtained time.Time  // when the last ACK arrived
	Renew    time.Time  // T1
	Rebind   time.Time  // T2
	Expiry   time.Time
}

func (l Lease) String() string {
	return fmt.Sprintf("%s router %s server %s expires %s", l.Address, l.Router, l.Server, l.Expiry.Format(time.RFC3339))
}

// leaseFromACK reads the lease out of an ACK received at now. T1 and T2
// default to 1/2 and 7/8 of the lease time (RFC 2131 4.4.5) and are clamped
// into order, since a server may send nonsense.
func leaseFromACK(ack *dhcpv4.DHCPv4, now time.Time) (Lease, error) {
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || ip.IsUnspecified() {
		return Lease{}, fmt.Errorf("ACK without an address")
	}
	mask := ack.SubnetMask()
	if mask == nil {
		mask = net.IP(ip.AsSlice()).DefaultMask()
	}
	ones, bits := mask.Size()
	if bits != 32 {
		return Lease{}, fmt.Errorf("ACK with bad subnet mask %v", mask)
	}
	sid, ok := netip.AddrFromSlice(ack.ServerIdentifier().To4())
	if !ok {
		return Lease{}, fmt.Errorf("ACK without server identifier")
	}
	lt := ack.IPAddressLeaseTime(0)
	if lt <= 0 {
		return Lease{}, fmt.Errorf("ACK without lease time")
	}
	t1 := ack.IPAddressRenewalTime(lt / 2)
	t2 := ack.IPAddressRebindingTime(lt * 7 / 8)
	if t2 <= 0 || t2 > lt {
		t2 = lt * 7 / 8
	}
	if t1 <= 0 || t1 > t2 {
		t1 = t2 / 2
	}
	l := Lease{
		Address:  netip.PrefixFrom(ip, ones),
		Server:   sid,
		Obtained: now,
		Renew:    now.Add(t1),
		Rebind:   now.Add(t2),
		Expiry:   now.Add(lt),
	}
	if rs := ack.Router(); len(rs) > 0 {
		if r, ok := netip.AddrFromSlice(rs[0].To4()); ok {
			l.Router = r
		}
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			l.DNS = append(l.DNS, a)
		}
	}
	return l, nil
}
