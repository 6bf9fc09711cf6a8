package dhcp

import (
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func ack(t *testing.T, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	base := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.ParseIP("198.51.100.50")),
		dhcpv4.WithServerIP(net.ParseIP("198.51.100.1")),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("198.51.100.1"))),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(net.CIDRMask(24, 32))),
		dhcpv4.WithOption(dhcpv4.OptRouter(net.ParseIP("198.51.100.1"))),
		dhcpv4.WithOption(dhcpv4.OptDNS(net.ParseIP("198.51.100.53"))),
		dhcpv4.WithLeaseTime(120),
	}
	d, err := dhcpv4.New(append(base, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestLeaseFromACKDefaults(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l, err := leaseFromACK(ack(t), now)
	if err != nil {
		t.Fatal(err)
	}
	if l.Address != netip.MustParsePrefix("198.51.100.50/24") || l.Router != netip.MustParseAddr("198.51.100.1") ||
		l.Server != netip.MustParseAddr("198.51.100.1") || len(l.DNS) != 1 {
		t.Errorf("lease %+v", l)
	}
	// RFC 2131 defaults: T1 = 1/2, T2 = 7/8 of the lease.
	if l.Renew != now.Add(60*time.Second) || l.Rebind != now.Add(105*time.Second) || l.Expiry != now.Add(120*time.Second) {
		t.Errorf("times: renew %v rebind %v expiry %v", l.Renew.Sub(now), l.Rebind.Sub(now), l.Expiry.Sub(now))
	}
}

func TestLeaseFromACKClampsTimes(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	// T2 beyond the lease and T1 beyond T2: a broken server.
	l, err := leaseFromACK(ack(t,
		dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(500*time.Second)),
		dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(400*time.Second))), now)
	if err != nil {
		t.Fatal(err)
	}
	if !(l.Renew.Before(l.Rebind) && l.Rebind.Before(l.Expiry)) {
		t.Errorf("times not ordered: renew %v rebind %v expiry %v", l.Renew.Sub(now), l.Rebind.Sub(now), l.Expiry.Sub(now))
	}
}

func TestLeaseFromACKRejectsIncomplete(t *testing.T) {
	d := ack(t)
	d.Options.Del(dhcpv4.OptionIPAddressLeaseTime)
	if _, err := leaseFromACK(d, time.Now()); err == nil {
		t.Error("ACK without lease time accepted")
	}
	d = ack(t)
	d.YourIPAddr = net.IPv4zero
	if _, err := leaseFromACK(d, time.Now()); err == nil {
		t.Error("ACK without address accepted")
	}
}

func TestLeaseFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wan.lease")
	if a, err := loadLease(path); err != nil || a.IsValid() {
		t.Fatalf("missing file: %v %v", a, err)
	}
	l, err := leaseFromACK(ack(t), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := saveLease(path, "wan", l); err != nil {
		t.Fatal(err)
	}
	a, err := loadLease(path)
	if err != nil || a != netip.MustParseAddr("198.51.100.50") {
		t.Errorf("loaded %v, %v", a, err)
	}
}
