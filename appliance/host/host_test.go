package host

import (
	"io"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"testing"
	"time"

	"lbd/appliance/netif"
	"lbd/appliance/sysctl"
	"lbd/config"
)

// parse validates TOML the way lbd does, so the tests see the derived
// fields (Prefixes, GatewayAddr, VIPAddr) that the mapping reads.
func parse(t *testing.T, toml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(toml))
	if err != nil {
		t.Fatalf("config does not validate:\n%v", err)
	}
	return cfg
}

const noInterfaces = `
[[service]]
name = "web"
vip = "203.0.113.10"
port = 80
  [[service.backend]]
  address = "192.0.2.11:80"
`

const twoInterfaces = `
[[interface]]
name = "lan"
mac = "02:00:00:00:00:01"
mtu = 9000
addresses = ["192.0.2.1/24", "2001:db8::1/64"]
gateway = "192.0.2.254"
gateway6 = "2001:db8::fe"
  [[interface.route]]
  to = "198.51.100.0/24"
  via = "192.0.2.253"

[[interface]]
name = "wan"
device = "eth1"
dhcp = true

[[interface]]
name = "mgmt"
device = "eth2"
addresses = ["198.51.100.2/24"]

[[service]]
name = "web6"
vip = "2001:db8::10"
port = 80
interface = "lan"
  [[service.backend]]
  address = "[2001:db8::11]:80"

[[service]]
name = "web"
vip = "192.0.2.20"
port = 80
interface = "lan"
  [[service.backend]]
  address = "192.0.2.11:80"

[[service]]
name = "web-tls"
vip = "192.0.2.20"
port = 443
interface = "lan"
  [[service.backend]]
  address = "192.0.2.11:443"

[[service]]
name = "api"
vip = "192.0.2.10"
port = 8080
interface = "lan"
  [[service.backend]]
  address = "192.0.2.12:8080"

[[service]]
name = "dns"
vip = "203.0.113.53"
port = 53
protocol = "udp"
interface = "wan"
  [[service.backend]]
  address = "192.0.2.13:53"

[[service]]
name = "routed"
vip = "203.0.113.80"
port = 80
  [[service.backend]]
  address = "192.0.2.14:80"
`

func TestSpecs(t *testing.T) {
	if got := Specs(parse(t, noInterfaces)); got != nil {
		t.Errorf("Specs without [[interface]] = %+v, want nil (touch no NIC)", got)
	}
	got := Specs(parse(t, twoInterfaces))
	want := []netif.Spec{
		{Name: "lan", MAC: "02:00:00:00:00:01", MTU: 9000,
			Addresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("2001:db8::1/64")},
			Gateway:   netip.MustParseAddr("192.0.2.254"), Gateway6: netip.MustParseAddr("2001:db8::fe"),
			Routes: []netif.Route{{To: netip.MustParsePrefix("198.51.100.0/24"), Via: netip.MustParseAddr("192.0.2.253")}}},
		{Name: "wan", Device: "eth1", DHCP: true},
		{Name: "mgmt", Device: "eth2", Addresses: []netip.Prefix{netip.MustParsePrefix("198.51.100.2/24")}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Specs:\n got %+v\nwant %+v", got, want)
	}
}

func TestVIPs(t *testing.T) {
	got := VIPs(parse(t, twoInterfaces))
	want := map[string][]netip.Addr{
		// One address per VIP however many services share it, sorted
		// (IPv4 first), so re-applying the same config is a no-op diff.
		"lan": {netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.20"), netip.MustParseAddr("2001:db8::10")},
		"wan": {netip.MustParseAddr("203.0.113.53")},
		// Declared but carrying no VIP: present with nil, so a VIP whose
		// service went away is removed from it.
		"mgmt": nil,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("VIPs:\n got %v\nwant %v", got, want)
	}
	for name, v := range got {
		for _, a := range v {
			if a == netip.MustParseAddr("203.0.113.80") {
				t.Errorf("routed VIP (no interface =) put on %s", name)
			}
		}
	}
	if got := VIPs(parse(t, noInterfaces)); len(got) != 0 {
		t.Errorf("VIPs without [[interface]] = %v, want none", got)
	}
}

func TestSysctlsDefaults(t *testing.T) {
	if got, want := Sysctls(parse(t, noInterfaces)), sysctl.Defaults(); !reflect.DeepEqual(got, want) {
		t.Errorf("Sysctls of a config without [conntrack]/[kernel]:\n got %+v\nwant %+v", got, want)
	}
}

func TestSysctlsOverlay(t *testing.T) {
	cfg := parse(t, noInterfaces+`
[conntrack]
max = 1048576
tcp_established_timeout = "2h"
tcp_time_wait_timeout = "30s"
tcp_close_wait_timeout = "20s"
tcp_fin_wait_timeout = "10s"
udp_timeout = "15s"
udp_stream_timeout = "90s"

[kernel]
rp_filter = 0
tcp_syncookies = 2
ipv6_forwarding = false
`)
	want := sysctl.Defaults()
	want.ConntrackMax = 1048576
	want.TCPEstablishedTimeout = 2 * time.Hour
	want.TCPTimeWaitTimeout = 30 * time.Second
	want.TCPCloseWaitTimeout = 20 * time.Second
	want.TCPFinWaitTimeout = 10 * time.Second
	want.UDPTimeout = 15 * time.Second
	want.UDPStreamTimeout = 90 * time.Second
	// Zero is a real choice for these three (rp_filter off, syncookies
	// off, no IPv6 forwarding), so it must not fall back to the default.
	want.RPFilter = 0
	want.TCPSyncookies = 2
	want.ForwardIPv6 = false
	if got := Sysctls(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("Sysctls:\n got %+v\nwant %+v", got, want)
	}
	if err := Sysctls(cfg).Validate(); err != nil {
		t.Errorf("overlaid settings do not validate: %v", err)
	}
}

// A partial [conntrack] changes only what it names.
func TestSysctlsPartial(t *testing.T) {
	cfg := parse(t, noInterfaces+`
[conntrack]
udp_timeout = "15s"
`)
	want := sysctl.Defaults()
	want.UDPTimeout = 15 * time.Second
	if got := Sysctls(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("Sysctls:\n got %+v\nwant %+v", got, want)
	}
}

// Status and Close of a Host that never managed a NIC: nothing to report,
// nothing to stop, no state files.
func TestIdleHost(t *testing.T) {
	dir := t.TempDir()
	h := New(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if got := h.Status(); got != nil {
		t.Errorf("Status = %+v, want nil", got)
	}
	h.Close()
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("state dir after an idle Host: %v, %v; want empty", ents, err)
	}
}
