package sysctl

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// inFreshNetns runs fn on a thread moved into a new network namespace. The
// thread stays locked and is never unlocked, so the runtime kills it when
// the goroutine ends and the namespace (referenced by no process or mount)
// is freed: nothing of the test outlives it, and the host's /proc/sys/net
// is never written.
func inFreshNetns(t *testing.T, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root to create a network namespace (run the tests as root)")
	}
	ensureConntrack(t)
	host, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // deliberately never unlocked, see above
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare(CLONE_NEWNET): %v", err)
			return
		}
		ns, err := os.Readlink("/proc/thread-self/ns/net")
		if err != nil || ns == host {
			t.Errorf("thread still in the host namespace (%s, %v): refusing to write sysctls", ns, err)
			return
		}
		fn()
	}()
	<-done
}

// ensureConntrack loads nf_conntrack when its sysctls are missing. A
// machine without it is a machine lbd cannot run on, so this is a failure,
// never a skip: a skip here would hide the whole conntrack half of Apply.
func ensureConntrack(t *testing.T) {
	t.Helper()
	key := keyPath(procSys, "net.netfilter.nf_conntrack_count")
	if _, err := os.Stat(key); err == nil {
		return
	}
	out, err := exec.Command("modprobe", "nf_conntrack").CombinedOutput()
	if err != nil {
		t.Fatalf("nf_conntrack is not loaded and modprobe nf_conntrack failed: %v: %s", err, out)
	}
	if _, err := os.Stat(key); err != nil {
		t.Fatalf("modprobe nf_conntrack succeeded but %s is still missing: %v", key, err)
	}
}

func TestApplyInNetns(t *testing.T) {
	hostForward, err := readValue(keyPath(procSys, "net.ipv4.ip_forward"))
	if err != nil {
		t.Fatal(err)
	}
	inFreshNetns(t, func() {
		// A fresh namespace starts with forwarding off and rp_filter 0.
		_, hostMax, err := ConntrackUsage()
		if err != nil {
			t.Errorf("ConntrackUsage: %v", err)
			return
		}
		s := Defaults()
		s.ConntrackMax = hostMax + 1 // differs, so Apply must try to write it
		s.UDPTimeout = 17e9
		changes, err := Apply(s)
		if err != nil {
			t.Errorf("Apply: %v", err)
			return
		}
		byKey := map[string]Change{}
		for _, c := range changes {
			byKey[c.Key] = c
		}
		for key, want := range map[string]string{
			"net.ipv4.ip_forward":                                "1",
			"net.ipv6.conf.all.forwarding":                       "1",
			"net.ipv4.conf.all.rp_filter":                        "2",
			"net.ipv4.conf.default.rp_filter":                    "2",
			"net.netfilter.nf_conntrack_udp_timeout":             "17",
			"net.netfilter.nf_conntrack_tcp_timeout_established": "3600",
		} {
			c, ok := byKey[key]
			if !ok || !c.Applied() || c.New != want {
				t.Errorf("%s: change %+v, want applied -> %s", key, c, want)
			}
			got, err := readValue(keyPath(procSys, key))
			if err != nil || got != want {
				t.Errorf("%s reads %q (%v) in the namespace, want %s", key, got, err, want)
			}
		}
		// nf_conntrack_max is read-only outside the initial namespace:
		// reported as a warning, kernel value kept, no error.
		c := byKey["net.netfilter.nf_conntrack_max"]
		if c.Applied() || c.Warning == "" || c.Old != strconv.Itoa(hostMax) {
			t.Errorf("nf_conntrack_max change = %+v, want a warning keeping %d", c, hostMax)
		} else {
			t.Logf("expected warning: %s", c.Warning)
		}

		again, err := Apply(s)
		if err != nil {
			t.Errorf("second Apply: %v", err)
		}
		for _, c := range again {
			if c.Applied() {
				t.Errorf("second Apply changed %+v; want idempotent", c)
			}
		}

		count, max, err := ConntrackUsage()
		if err != nil || count != 0 || max != hostMax {
			t.Errorf("usage in fresh netns = %d/%d (%v), want 0/%d", count, max, err, hostMax)
		}
	})
	after, err := readValue(keyPath(procSys, "net.ipv4.ip_forward"))
	if err != nil || after != hostForward {
		t.Errorf("host ip_forward changed: %q -> %q (%v)", hostForward, after, err)
	}
}
