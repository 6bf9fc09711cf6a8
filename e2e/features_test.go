package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"lbd/appliance/status"
	"lbd/internal/lab"
)

// README features end to end: the real binary in a namespace lab, real
// traffic, the kernel read back where the feature lives there.

// waitFor polls f until it holds. The minute only bounds a broken test on
// a loaded machine; how fast things happen is for the benchmarks.
func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if f() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never happened", what)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// askUDPErr sends one datagram from the client and waits up to wait for an
// answer; the error tells a refusal (ICMP port unreachable surfaces as
// ECONNREFUSED on a connected socket) from silence (a timeout).
func (e *env) askUDPErr(addr string, wait time.Duration) (string, error) {
	c, err := e.lab.Dial("client", "udp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte("hi")); err != nil {
		return "", err
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return lab.Name(string(buf[:n])), nil
}

func TestOnEmptyDropVersusReject(t *testing.T) {
	e := newEnv(t, 1, 1)
	// weight 0 leaves each service without a usable backend.
	empty := backends(7000, 1) + "  weight = 0\n"
	emptyUDP := backends(5353, 1) + "  weight = 0\n"
	e.writeConfig(svcHeader("tcp-reject", lab.VIPv4, 7000, "") + empty +
		svcHeader("tcp-drop", lab.VIPv4, 7001, `on_empty = "drop"`) + empty +
		svcHeader("udp-reject", lab.VIPv4, 5353, `protocol = "udp"`) + emptyUDP +
		svcHeader("udp-drop", lab.VIPv4, 5354, "protocol = \"udp\"\non_empty = \"drop\"") + emptyUDP)
	e.startLBD()

	// reject: a TCP reset (connection refused), at once.
	if _, err := e.lab.Dial("client", "tcp", vip4(7000), 10*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("on_empty reject, TCP: want connection refused, got %v", err)
	}
	// drop: no answer at all, so the connect times out. The wait bounds
	// the silence we accept as "dropped"; it asserts nothing about speed.
	if c, err := e.lab.Dial("client", "tcp", vip4(7001), 2*time.Second); err == nil {
		c.Close()
		t.Errorf("on_empty drop, TCP: connected")
	} else if !isTimeout(err) {
		t.Errorf("on_empty drop, TCP: want no answer (timeout), got %v", err)
	}
	// reject, UDP: ICMP port unreachable.
	if ans, err := e.askUDPErr(vip4(5353), 10*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("on_empty reject, UDP: want ICMP port unreachable (connection refused), got %q %v", ans, err)
	}
	// drop, UDP: silence.
	if ans, err := e.askUDPErr(vip4(5354), 2*time.Second); !isTimeout(err) {
		t.Errorf("on_empty drop, UDP: want no answer (timeout), got %q %v", ans, err)
	}
	for _, s := range e.status().Services {
		if strings.HasSuffix(s.Name, "-reject") && s.Refused.NoBackend == 0 {
			t.Errorf("%s: the refusal should be counted as no_backend: %+v", s.Name, s.Refused)
		}
	}
}

// conntrackTo counts the lb's conntrack entries of flows to vip:port that
// were sent to backend (the reply source, with NAT).
func (e *env) conntrackTo(vip string, port int, backend string) int {
	e.t.Helper()
	out, err := e.lab.Output("lb", "conntrack", "-L", "-p", "tcp", "--orig-dst", vip, "--dport", fmt.Sprint(port), "--reply-src", backend)
	if err != nil {
		e.t.Fatalf("conntrack -L: %v", err)
	}
	return strings.Count(out, "\n")
}

// TestDownActionTCP: a backend fails its health check while its service
// port still answers (the /healthz of its HTTP port says 503). With the TCP
// default "keep" its established flows live on; with "flush" their
// conntrack entries are deleted and the flows are cut.
func TestDownActionTCP(t *testing.T) {
	e := newEnv(t, 2, 1)
	hc := fastHealth("http", "  port = 80\n  path = \"/healthz\"")
	e.writeConfig(svcHeader("keep", lab.VIPv4, 7000, "") + hc + backends(7000, 1, 2) +
		svcHeader("flush", lab.VIPv4, 7001, `down_action = "flush"`) + hc + backends(7000, 1, 2))
	e.startLBD()
	be1 := lab.BackendV4(1)
	e.waitState("keep", be1+":7000", "up")
	e.waitState("flush", be1+":7000", "up")
	// One connection on be1 for each service (rr: at most two tries).
	onBE1 := func(port int) net.Conn {
		for i := 0; i < 4; i++ {
			c, err := e.lab.Dial("client", "tcp", vip4(port), 3*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if ans, err := lab.AskOn(c, "x"); err == nil && lab.Name(ans) == "be1" {
				return c
			}
			c.Close()
		}
		t.Fatalf("no connection to port %d landed on be1", port)
		return nil
	}
	keep, flush := onBE1(7000), onBE1(7001)
	defer keep.Close()
	defer flush.Close()
	if n := e.conntrackTo(lab.VIPv4, 7001, be1); n != 1 {
		t.Fatalf("want 1 conntrack entry of service flush to be1 before it goes down, got %d", n)
	}

	if err := os.WriteFile(filepath.Join(e.dir, "be1.health"), []byte("503"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.waitState("keep", be1+":7000", "down")
	e.waitState("flush", be1+":7000", "down")
	waitFor(t, "conntrack entries of the flush service to be1 deleted", func() bool {
		return e.conntrackTo(lab.VIPv4, 7001, be1) == 0
	})
	if n := e.conntrackTo(lab.VIPv4, 7000, be1); n != 1 {
		t.Errorf("down_action keep: the flow to be1 should keep its conntrack entry, found %d", n)
	}
	if ans, err := lab.AskOn(keep, "still"); err != nil || lab.Name(ans) != "be1" {
		t.Errorf("down_action keep: the established flow to be1 should live on, got %q %v", ans, err)
	}
	// Without its entry the flow's next segment is a stranger: it is reset
	// (by the live backend it is now sent to) or dropped; never answered
	// by be1.
	if ans, err := lab.AskOn(flush, "still"); err == nil {
		t.Errorf("down_action flush: the flow to the dead backend should be cut, but it answered %q", ans)
	} else {
		t.Logf("flushed flow: %v", err)
	}
	if c := e.spread(0, vip4(7001), 4); c["be2"] != 4 {
		t.Errorf("new connections should avoid the down backend: %v", c)
	}
}

// statusJSON runs `lbd status --json`, the way an operator reads it.
func (e *env) statusJSON() status.Snapshot {
	e.t.Helper()
	out, err := e.lbdCmd("status", "--json")
	if err != nil {
		e.t.Fatalf("lbd status --json: %v\n%s", err, out)
	}
	var st status.Snapshot
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		e.t.Fatalf("lbd status --json: %v\n%s", err, out)
	}
	return st
}

// TestSlowStartThroughDaemon: a backend that comes back ramps its slot
// share up over slow_start instead of taking its full share at once.
func TestSlowStartThroughDaemon(t *testing.T) {
	e := newEnv(t, 2, 1)
	e.writeConfig(svcHeader("echo", lab.VIPv4, 7000, `slow_start = "8s"`) + fastHealth("tcp", "") + backends(7000, 1, 2))
	e.startLBD()
	be2 := lab.BackendV4(2) + ":7000"
	e.waitState("echo", be2, "up")
	st := e.statusJSON()
	m := st.Services[0].Slots
	full := st.Services[0].Backends[1].Slots
	if m == 0 || full != m/2 {
		t.Fatalf("two equal backends: want be2 at half of %d slots, status %+v", m, st.Services[0])
	}
	e.lab.StopBackend(2)
	e.waitState("echo", be2, "down")
	if err := e.lab.StartBackend(e.labsrv, e.dir, 2); err != nil {
		t.Fatal(err)
	}
	// Sample be2's slots from the moment it is up until it holds its full
	// share again.
	var seen []int
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		st := e.statusJSON()
		b := st.Services[0].Backends[1]
		if b.State == "up" && (len(seen) == 0 || seen[len(seen)-1] != b.Slots) {
			seen = append(seen, b.Slots)
		}
		if b.Slots == full {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("be2 slots while ramping: %v (full %d of %d)", seen, full, m)
	if len(seen) == 0 || seen[len(seen)-1] != full {
		t.Fatalf("be2 never got back its full share of %d slots: %v", full, seen)
	}
	between := 0
	for i, n := range seen {
		if i > 0 && n < seen[i-1] {
			t.Fatalf("slot share of a ramping backend shrank: %v", seen)
		}
		if n > 0 && n < full {
			between++
		}
	}
	// An 8 s ramp re-planned about once a second shows several steps; two
	// is what a heavily loaded machine still shows, while a jump straight
	// to the full share (no slow start) shows none.
	if between < 2 {
		t.Fatalf("want at least 2 distinct partial shares on the way to %d, saw %v", full, seen)
	}
}

// TestBackendHealthOverride: [service.backend.health] replaces the
// service's check for that one backend.
func TestBackendHealthOverride(t *testing.T) {
	e := newEnv(t, 2, 1)
	e.writeConfig(svcHeader("echo", lab.VIPv4, 7000, "") + fastHealth("tcp", "") + backends(7000, 1, 2) +
		"  [service.backend.health]\n  type = \"http\"\n  port = 80\n  path = \"/healthz\"\n  interval = \"400ms\"\n  timeout = \"350ms\"\n  rise = 2\n  fall = 2\n" +
		// A service without [service.health] is not checked, except for a
		// backend that brings its own check.
		svcHeader("plain", lab.VIPv4, 7001, "") + backends(7000, 1, 2) +
		"  [service.backend.health]\n  type = \"tcp\"\n  port = 81\n  interval = \"400ms\"\n  timeout = \"350ms\"\n  rise = 2\n  fall = 2\n")
	e.startLBD()
	be1, be2 := lab.BackendV4(1)+":7000", lab.BackendV4(2)+":7000"
	e.waitState("echo", be2, "up")
	// Both /healthz say 503: only be2 runs the HTTP check, be1 keeps its
	// service's TCP check (its port 7000 is open) and stays up.
	for _, b := range []string{"be1", "be2"} {
		if err := os.WriteFile(filepath.Join(e.dir, b+".health"), []byte("503"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := e.waitState("echo", be2, "down")
	if b.LastCheck != "status 503" {
		t.Errorf("be2's override is an HTTP check, its reason should be the status: %q", b.LastCheck)
	}
	// Port 81 is closed on be2: the override's TCP check puts it down in
	// "plain"; be1 has no check there.
	e.waitState("plain", be2, "down")
	st := e.status()
	for _, s := range st.Services {
		if s.Backends[0].Address != be1 {
			t.Fatalf("backend order: %+v", s.Backends)
		}
		want := map[string]string{"echo": "up", "plain": "unchecked"}[s.Name]
		if got := s.Backends[0]; got.State != want {
			t.Errorf("%s: be1 follows the service's check, want %s, got %+v", s.Name, want, got)
		}
	}
	if c := e.spread(0, vip4(7000), 4); c["be1"] != 4 {
		t.Errorf("echo: be2 is down by its own check, new connections go to be1: %v", c)
	}
	if err := os.Remove(filepath.Join(e.dir, "be2.health")); err != nil {
		t.Fatal(err)
	}
	e.waitState("echo", be2, "up")
}

// TestStatusPlainText: the human `lbd status` shows every service and
// backend with state, weight and slots, the throttle and config errors.
func TestStatusPlainText(t *testing.T) {
	e := newEnv(t, 2, 1)
	e.writeConfig(svcHeader("echo", lab.VIPv4, 7000, "") + fastHealth("tcp", "") + backends(7000, 1, 2) +
		svcHeader("dns", lab.VIPv4, 5353, `protocol = "udp"`) + backends(5353, 1) + "  weight = 3\n  backup = true\n" + backends(5353, 2))
	e.startLBD()
	e.lab.StopBackend(2)
	e.waitState("echo", lab.BackendV4(2)+":7000", "down")
	if out, err := e.lbdCmd("throttle", "echo", "100/s"); err != nil {
		t.Fatalf("throttle: %v\n%s", err, out)
	}
	if c := e.spread(0, vip4(7000), 3); c["be1"] != 3 {
		t.Fatalf("traffic: %v", c)
	}
	out, err := e.lbdCmd("status")
	if err != nil {
		t.Fatalf("lbd status: %v\n%s", err, out)
	}
	t.Logf("lbd status:\n%s", out)
	js := e.statusJSON()
	m := js.Services[0].Slots
	for _, re := range []string{
		`(?m)^lbd \S+ on .*, config ` + regexp.QuoteMeta(e.cfgPath) + ` loaded \d{4}-`,
		`(?m)^Prot VIP:Port Scheduler Flags \[Service\]$`,
		`(?m)^  -> Backend +State +Weight +Slots +ActiveConn +Last check$`,
		`(?m)^TCP  203\.0\.113\.10:7000 rr snat THROTTLED 100/s \[echo\]$`,
		fmt.Sprintf(`(?m)^  -> 192\.0\.2\.11:7000 +UP +1 +%d +\d+  \S`, m),
		`(?m)^  -> 192\.0\.2\.12:7000 +DOWN +1 +0 +0  \S.*refused`,
		`(?m)^UDP  203\.0\.113\.10:5353 rr snat \[dns\]$`,
		`(?m)^  -> 192\.0\.2\.11:5353 +UNCHECKED +3 +0 +0  backup$`,
		fmt.Sprintf(`(?m)^  -> 192\.0\.2\.12:5353 +UNCHECKED +1 +%d +0$`, js.Services[1].Slots),
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("lbd status lacks a line matching %s", re)
		}
	}
	if strings.Contains(out, "CONFIG ERROR") {
		t.Errorf("no config error yet, status says one")
	}
	e.writeConfig("[[service]]\nname = \"echo\"\nport = 70000\n")
	if out, err := e.lbdCmd("reload"); err == nil {
		t.Fatalf("a broken reload should fail: %s", out)
	}
	out, err = e.lbdCmd("status")
	if err != nil {
		t.Fatalf("lbd status: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^  CONFIG ERROR: .*lb\.toml:\d+:\d+: .*70000`).MatchString(out) {
		t.Errorf("lbd status should show the refused config's errors:\n%s", out)
	}
}

// TestSysctlsThroughDaemon: [conntrack] and [kernel] end up in the lb
// namespace's /proc/sys at start, and a reload applies changed values.
func TestSysctlsThroughDaemon(t *testing.T) {
	e := newEnv(t, 1, 1)
	// The lab turns forwarding on itself; off, so lbd has to turn it on.
	if err := e.lab.Exec("lb", "sysctl", "-qw", "net.ipv4.ip_forward=0"); err != nil {
		t.Fatal(err)
	}
	svc := svcHeader("echo", lab.VIPv4, 7000, "") + backends(7000, 1)
	read := func(keys map[string]string) {
		t.Helper()
		for key, want := range keys {
			out, err := e.lab.Output("lb", "sysctl", "-n", key)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(out); got != want {
				t.Errorf("%s = %s in the lb namespace, want %s", key, got, want)
			}
		}
	}
	e.writeConfig(`[conntrack]
tcp_established_timeout = "7m"
tcp_time_wait_timeout = "33s"
tcp_close_wait_timeout = "44s"
tcp_fin_wait_timeout = "55s"
udp_timeout = "17s"
udp_stream_timeout = "99s"

[kernel]
rp_filter = 1
tcp_syncookies = 2
ipv6_forwarding = false
` + svc)
	e.startLBD()
	read(map[string]string{
		"net.netfilter.nf_conntrack_tcp_timeout_established": "420",
		"net.netfilter.nf_conntrack_tcp_timeout_time_wait":   "33",
		"net.netfilter.nf_conntrack_tcp_timeout_close_wait":  "44",
		"net.netfilter.nf_conntrack_tcp_timeout_fin_wait":    "55",
		"net.netfilter.nf_conntrack_udp_timeout":             "17",
		"net.netfilter.nf_conntrack_udp_timeout_stream":      "99",
		"net.ipv4.ip_forward":                                "1",
		"net.ipv6.conf.all.forwarding":                       "0",
		"net.ipv4.conf.all.rp_filter":                        "1",
		"net.ipv4.conf.default.rp_filter":                    "1",
		"net.ipv4.tcp_syncookies":                            "2",
	})
	if _, err := e.lab.Ask("client", vip4(7000)); err != nil {
		t.Fatalf("forwarding turned on by lbd should carry the service: %v", err)
	}
	// Back to the defaults by reload: the README's default column.
	e.writeConfig(svc)
	e.reload()
	read(map[string]string{
		"net.netfilter.nf_conntrack_tcp_timeout_established": "3600",
		"net.netfilter.nf_conntrack_tcp_timeout_time_wait":   "120",
		"net.netfilter.nf_conntrack_tcp_timeout_close_wait":  "60",
		"net.netfilter.nf_conntrack_tcp_timeout_fin_wait":    "120",
		"net.netfilter.nf_conntrack_udp_timeout":             "30",
		"net.netfilter.nf_conntrack_udp_timeout_stream":      "120",
		"net.ipv4.ip_forward":                                "1",
		"net.ipv6.conf.all.forwarding":                       "1",
		"net.ipv4.conf.all.rp_filter":                        "2",
		"net.ipv4.conf.default.rp_filter":                    "2",
		"net.ipv4.tcp_syncookies":                            "1",
	})
}
