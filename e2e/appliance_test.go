package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"lbd/appliance/status"
	"lbd/internal/lab"
)

// TestSystemdNotify runs lbd with a NOTIFY_SOCKET the test listens on and
// checks the messages and their order across start, reload and watchdog.
func TestSystemdNotify(t *testing.T) {
	e := newEnv(t, 1, 1)
	sockPath := filepath.Join(e.dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	e.writeConfig(svcHeader("echo", lab.VIPv4, 7000, "") + backends(7000, 1))
	e.extraEnv = []string{"NOTIFY_SOCKET=" + sockPath, "WATCHDOG_USEC=400000"}
	e.startLBD()
	next := func(want string) string {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case m := <-msgs:
				if strings.Contains(m, want) {
					return m
				}
				if !strings.Contains(m, "WATCHDOG=1") && !strings.HasPrefix(m, "STATUS=") {
					t.Fatalf("waiting for %q, got unexpected %q", want, m)
				}
			case <-deadline:
				t.Fatalf("no %q from lbd", want)
			}
		}
	}
	ready := next("READY=1")
	if !strings.Contains(ready, "STATUS=1 services") {
		t.Errorf("READY should carry a STATUS summary: %q", ready)
	}
	next("WATCHDOG=1")
	go e.reload()
	r := next("RELOADING=1")
	if !strings.Contains(r, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 needs MONOTONIC_USEC for Type=notify-reload: %q", r)
	}
	next("READY=1")
	next("WATCHDOG=1")
}

// httpIn GETs a URL from inside a namespace; any failure fails the test.
func httpIn(t *testing.T, e *env, ns, url string) []byte {
	t.Helper()
	b, err := httpInErr(e, ns, url)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", url, ns, err)
	}
	return b
}

func TestStatusPageJSONAndMetrics(t *testing.T) {
	e := newEnv(t, 2, 1)
	e.writeConfig(`[appliance]
status_listen = "192.0.2.1:9100"
` + svcHeader("echo", lab.VIPv4, 7000, "") + fastHealth("tcp", "") + backends(7000, 1, 2))
	e.startLBD()
	e.waitState("echo", lab.BackendV4(1)+":7000", "up")
	e.lab.StopBackend(2)
	e.waitState("echo", lab.BackendV4(2)+":7000", "down")

	web := httpIn(t, e, "be1", "http://192.0.2.1:9100/status.json")
	cli, err := e.lbdCmd("status", "--json")
	if err != nil {
		t.Fatalf("lbd status --json: %v\n%s", err, cli)
	}
	// Same document modulo the instant it was taken and live counters.
	norm := func(b []byte) string {
		var s status.Snapshot
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatalf("bad JSON: %v\n%s", err, b)
		}
		s.Now = time.Time{}
		s.Conntrack.Count = 0
		for i := range s.Services {
			for j := range s.Services[i].Backends {
				b := &s.Services[i].Backends[j]
				b.ChecksPassed, b.ChecksFailed, b.LastCheckLatency = 0, 0, 0
			}
		}
		out, _ := json.Marshal(s)
		return string(out)
	}
	if norm(web) != norm([]byte(cli)) {
		t.Fatalf("/status.json and lbd status --json differ:\n%s\n%s", web, cli)
	}
	metrics := httpIn(t, e, "be1", "http://192.0.2.1:9100/metrics")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(metrics))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	up := fams["lbd_backend_up"]
	if up == nil {
		t.Fatalf("no lbd_backend_up in /metrics")
	}
	got := map[string]float64{}
	for _, m := range up.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "backend" {
				got[l.GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	if got[lab.BackendV4(1)+":7000"] != 1 || got[lab.BackendV4(2)+":7000"] != 0 {
		t.Fatalf("lbd_backend_up: %v", got)
	}
	page := httpIn(t, e, "be1", "http://192.0.2.1:9100/")
	if !bytes.Contains(page, []byte("echo")) || !bytes.Contains(page, []byte("down")) {
		t.Errorf("HTML page lacks the service or the state word")
	}
	out, err := e.lbdCmd("console", "--once")
	if err != nil || !strings.Contains(out, "echo") || !strings.Contains(out, "down") {
		t.Errorf("lbd console --once: %v\n%s", err, out)
	}
	if n := strings.Count(strings.TrimRight(out, "\n"), "\n") + 1; n > 24 {
		t.Errorf("console frame has %d lines, want at most 24", n)
	}
}

// linkPeer adds a namespace "peer" joined to the lb by a veth whose lb end
// has the given MAC and the kernel name eth9 (lbd will rename it).
func linkPeer(t *testing.T, e *env, mac string) {
	t.Helper()
	if _, err := e.lab.AddNS("peer"); err != nil {
		t.Fatal(err)
	}
	if err := e.lab.Link("lb", "eth9", "peer", "eth0"); err != nil {
		t.Fatal(err)
	}
	for _, st := range [][]string{
		{"lb", "ip", "link", "set", "eth9", "down"},
		{"lb", "ip", "link", "set", "eth9", "address", mac},
		{"peer", "ip", "addr", "add", "203.0.113.2/24", "dev", "eth0"},
	} {
		if err := e.lab.Exec(st[0], st[1:]...); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInterfacesStaticAndVIP(t *testing.T) {
	e := newEnv(t, 2, 1)
	mac := "52:54:00:12:34:56"
	linkPeer(t, e, mac)
	cfg := func(addr string) string {
		return fmt.Sprintf(`
[[interface]]
name = "wan2"
mac = %q
mtu = 1400
addresses = [%q, "2001:db8:5::1/64"]
  [[interface.route]]
  to = "198.18.0.0/15"
  via = "203.0.113.2"
`, mac, addr) + svcHeader("echo", "203.0.113.50", 7000, `interface = "wan2"`) + backends(7000, 1, 2)
	}
	e.writeConfig(cfg("203.0.113.1/24"))
	e.startLBD()
	link, err := e.lab.Output("lb", "ip", "-o", "addr", "show", "dev", "wan2")
	if err != nil {
		t.Fatalf("NIC not renamed to wan2: %v", err)
	}
	for _, want := range []string{"203.0.113.1/24", "2001:db8:5::1/64", "203.0.113.50/32"} {
		if !strings.Contains(link, want) {
			t.Errorf("wan2 lacks %s:\n%s", want, link)
		}
	}
	if out, _ := e.lab.Output("lb", "ip", "route", "show", "198.18.0.0/15"); !strings.Contains(out, "via 203.0.113.2") {
		t.Errorf("route missing: %q", out)
	}
	if out, _ := e.lab.Output("lb", "ip", "link", "show", "wan2"); !strings.Contains(out, "mtu 1400") {
		t.Errorf("mtu not set: %s", out)
	}
	// The peer reaches the VIP on the NIC and is balanced to the backends.
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		ans, err := e.lab.Ask("peer", "203.0.113.50:7000")
		if err != nil {
			t.Fatalf("VIP on wan2 unreachable from peer: %v", err)
		}
		seen[lab.Name(ans)] = true
	}
	if len(seen) != 2 {
		t.Errorf("VIP traffic should reach both backends: %v", seen)
	}
	st := e.status()
	if len(st.NICs) != 1 || st.NICs[0].Name != "wan2" || !st.NICs[0].LinkUp {
		t.Errorf("status interfaces: %+v", st.NICs)
	}
	// Idempotent reload, then a reload that changes the address.
	before, _ := e.lab.Output("lb", "ip", "-o", "addr", "show", "dev", "wan2")
	e.reload()
	after, _ := e.lab.Output("lb", "ip", "-o", "addr", "show", "dev", "wan2")
	if stripLifetimes(before) != stripLifetimes(after) {
		t.Errorf("re-applying the same config changed the NIC:\n%s\n%s", before, after)
	}
	e.writeConfig(cfg("203.0.113.3/24"))
	e.reload()
	after, _ = e.lab.Output("lb", "ip", "-o", "addr", "show", "dev", "wan2")
	if !strings.Contains(after, "203.0.113.3/24") || strings.Contains(after, "203.0.113.1/24") {
		t.Errorf("address change not applied:\n%s", after)
	}
	if _, err := e.lab.Ask("peer", "203.0.113.50:7000"); err != nil {
		t.Errorf("VIP lost across an address change: %v", err)
	}
}

func stripLifetimes(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if i := strings.Index(l, "valid_lft"); i >= 0 {
			l = l[:i]
		}
		out = append(out, strings.TrimSpace(l))
	}
	return strings.Join(out, "\n")
}

func TestInterfaceDHCP(t *testing.T) {
	e := newEnv(t, 1, 1)
	mac := "52:54:00:ab:cd:ef"
	linkPeer(t, e, mac)
	leases := filepath.Join(e.dir, "dnsmasq.leases")
	dns := e.lab.Command("peer", "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--interface=eth0", "--bind-interfaces",
		"--port=0", "--dhcp-range=203.0.113.100,203.0.113.150,255.255.255.0,2m", "--dhcp-option=3,203.0.113.2",
		"--dhcp-leasefile="+leases, "--pid-file="+filepath.Join(e.dir, "dnsmasq.pid"))
	var dlog bytes.Buffer
	dns.Stdout, dns.Stderr = &dlog, &dlog
	if err := dns.Start(); err != nil {
		t.Fatalf("dnsmasq: %v", err)
	}
	e.writeConfig(fmt.Sprintf("[[interface]]\nname = \"wan\"\nmac = %q\ndhcp = true\n", mac) +
		svcHeader("echo", lab.VIPv4, 7000, "") + backends(7000, 1))
	e.startLBD()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		st := e.status()
		if len(st.NICs) == 1 && !st.NICs[0].LeaseExpiry.IsZero() {
			addrs := strings.Join(st.NICs[0].Addresses, " ")
			if !strings.Contains(addrs, "203.0.113.1") {
				t.Fatalf("lease address not from the dnsmasq range: %s", addrs)
			}
			lf, _ := os.ReadFile(leases)
			if !strings.Contains(string(lf), mac) {
				t.Errorf("dnsmasq has no lease for %s: %s", mac, lf)
			}
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no DHCP lease in lbd status; dnsmasq said:\n%s", dlog.String())
}
