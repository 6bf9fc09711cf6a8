package dhcp_test

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"lbd/appliance/netif/netiftest"
)

// dnsmasq is a real DHCP server running in a test namespace.
type dnsmasq struct {
	cmd  *exec.Cmd
	log  *netiftest.LogBuffer
	stop func() // kill and wait; safe to call again from cleanup
}

// startDnsmasq runs dnsmasq (DHCP only, DNS off) on p0 of ns, with T1 of
// 3 s (unless extra sets T1) so renewals come quickly (dnsmasq's minimum lease is 2 minutes). The
// lease file lives in dir, so a restarted server remembers its leases. The
// process is killed in cleanup.
func startDnsmasq(t *testing.T, ns *netiftest.Netns, dir string, extra ...string) *dnsmasq {
	t.Helper()
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Fatal("dnsmasq not installed: make test installs it (Debian dnsmasq-base); a missing tool is a failure, not a skip")
	}
	args := []string{"netns", "exec", ns.Name, "dnsmasq",
		"--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
		"--interface=p0", "--bind-interfaces", "--dhcp-authoritative",
		"--log-dhcp", "--log-facility=-",
		"--dhcp-leasefile=" + filepath.Join(dir, "dnsmasq.leases"),
		"--pid-file=" + filepath.Join(dir, "dnsmasq.pid"),
		"--dhcp-option=option:router,198.51.100.1",
		"--dhcp-option=option:dns-server,198.51.100.53",
	}
	if !slices.ContainsFunc(extra, func(a string) bool { return strings.HasPrefix(a, "--dhcp-option=option:T1") }) {
		args = append(args, "--dhcp-option=option:T1,3s", "--dhcp-option=option:T2,100s")
	}
	args = append(args, extra...)
	d := &dnsmasq{log: &netiftest.LogBuffer{}}
	d.cmd = exec.Command("ip", args...)
	d.cmd.Stdout = d.log
	d.cmd.Stderr = d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	exited := make(chan struct{})
	go func() { d.cmd.Wait(); close(exited) }()
	var once sync.Once
	d.stop = func() { once.Do(func() { d.cmd.Process.Kill(); <-exited }) }
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("dnsmasq log:\n%s", d.log.String())
		}
	})
	// dnsmasq logs "DHCP, IP range ..." once it listens.
	waitFor(t, 10*time.Second, "dnsmasq to start", func() bool {
		select {
		case <-exited:
			t.Fatalf("dnsmasq exited:\n%s", d.log.String())
		default:
		}
		return strings.Contains(d.log.String(), "DHCP, ")
	})
	return d
}

// count returns how many log lines contain s.
func (d *dnsmasq) count(s string) int {
	return strings.Count(d.log.String(), s)
}

// waitFor polls cond until it holds or the bound passes (then the test
// fails naming what it waited for). The bound only keeps a broken test
// from hanging; nothing asserts how fast things happen.
func waitFor(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("gave up waiting for %s after %s", what, bound)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
