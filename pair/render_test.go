package pair

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func testSpec() *Spec {
	return &Spec{Interface: "wan", RouterID: 51, Priority: 150, Peer: netip.MustParseAddr("198.51.100.5"),
		AdvertInterval: 200 * time.Millisecond, LANInterface: "lan", LANAddress: netip.MustParsePrefix("192.0.2.1/24"),
		SyncInterface: "lan", SyncPeer: netip.MustParseAddr("192.0.2.6"), SyncLocal: netip.MustParseAddr("192.0.2.5"),
		VIPs: []netip.Addr{netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("2001:db8:3::10")}, Dir: "/run/lbd/ha"}
}

func TestRenderKeepalived(t *testing.T) {
	got := RenderKeepalived(testSpec())
	if dir := os.Getenv("PAIR_RENDER_DIR"); dir != "" {
		_ = os.WriteFile(dir+"/keepalived.conf", []byte(got), 0o644)
	}
	for _, want := range []string{
		"vrrp_version 3\n",
		"notify_fifo /run/lbd/ha/notify.fifo\n",
		"track_file lbd_serving {\n    file /run/lbd/ha/serving\n    weight 0\n}",
		"vrrp_instance lbd_51 {\n    state BACKUP\n    interface wan\n    virtual_router_id 51\n    priority 150\n    advert_int 0.20\n    nopreempt\n",
		"    unicast_peer {\n        198.51.100.5\n    }\n",
		"    virtual_ipaddress {\n        203.0.113.10/32 dev wan\n    }\n",
		"    virtual_ipaddress_excluded {\n        2001:db8:3::10/128 dev wan\n        192.0.2.1/24 dev lan\n    }\n",
		"    track_interface {\n        wan\n        lan\n    }\n",
		"    track_file {\n        lbd_serving\n    }\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("keepalived.conf lacks %q:\n%s", want, got)
		}
	}
	for _, bad := range []string{"virtual_server", "vrrp_script", "notify_master"} {
		if strings.Contains(got, bad) {
			t.Errorf("keepalived.conf has %q", bad)
		}
	}
	s := testSpec()
	s.Preempt = true
	s.AdvertInterval = 1500 * time.Millisecond
	got = RenderKeepalived(s)
	if strings.Contains(got, "nopreempt") || !strings.Contains(got, "advert_int 1.50\n") {
		t.Errorf("preempt/advert_int not rendered:\n%s", got)
	}
	s.LANAddress6 = netip.MustParsePrefix("2001:db8:2::1/64")
	if got := RenderKeepalived(s); !strings.Contains(got, "        192.0.2.1/24 dev lan\n        2001:db8:2::1/64 dev lan\n") {
		t.Errorf("lan_address6 not beside lan_address:\n%s", got)
	}
	// No VIP of the peer's family: lan_address goes in the adverts.
	s.VIPs = []netip.Addr{netip.MustParseAddr("2001:db8:3::10")}
	got = RenderKeepalived(s)
	if !strings.Contains(got, "    virtual_ipaddress {\n        192.0.2.1/24 dev lan\n    }\n    virtual_ipaddress_excluded {\n        2001:db8:3::10/128 dev wan\n        2001:db8:2::1/64 dev lan\n    }\n") {
		t.Errorf("lan_address not the advertised address:\n%s", got)
	}
}

func TestAdvertInt(t *testing.T) {
	for d, want := range map[time.Duration]string{10 * time.Millisecond: "0.01", 200 * time.Millisecond: "0.20", time.Second: "1.00", 40950 * time.Millisecond: "40.95"} {
		if got := advertInt(d); got != want {
			t.Errorf("advertInt(%s) = %s, want %s", d, got, want)
		}
	}
}

func TestRenderConntrackd(t *testing.T) {
	got := RenderConntrackd(testSpec())
	if dir := os.Getenv("PAIR_RENDER_DIR"); dir != "" {
		_ = os.WriteFile(dir+"/conntrackd.conf", []byte(got), 0o644)
	}
	for _, want := range []string{
		"    Mode FTFW {\n",
		"        IPv4_address 192.0.2.5\n        IPv4_Destination_Address 192.0.2.6\n        Port 3780\n        Interface lan\n",
		"    LockFile /run/lbd/ha/conntrackd.lock\n",
		"    UNIX {\n        Path /run/lbd/ha/conntrackd.ctl\n    }\n",
		"        Protocol Accept {\n            TCP\n            UDP\n        }\n",
		"            IPv4_address 192.0.2.5\n        }\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("conntrackd.conf lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "203.0.113.10") || strings.Contains(got, "192.0.2.1\n") {
		t.Errorf("conntrackd ignores a VIP or lan_address: their flows are the ones to sync:\n%s", got)
	}
	s := testSpec()
	s.SyncPeer, s.SyncLocal = netip.MustParseAddr("2001:db8:2::6"), netip.MustParseAddr("2001:db8:2::5")
	got = RenderConntrackd(s)
	if !strings.Contains(got, "IPv6_address 2001:db8:2::5\n        IPv6_Destination_Address 2001:db8:2::6\n") {
		t.Errorf("IPv6 sync link not rendered:\n%s", got)
	}
}
