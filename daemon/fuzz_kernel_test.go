package daemon_test

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"lbd/appliance/host"
	"lbd/appliance/netif"
	"lbd/appliance/sysctl"
	"lbd/config"
	"lbd/daemon"
	"lbd/lb"
)

// FuzzApplyConfig fuzzes the whole path from file to kernel: every config
// that config.Parse accepts is mapped exactly as lbd run maps it
// (daemon.DesiredState) and applied to a real kernel, in a network
// namespace of this process's own. A config `lbd check` passes and the
// kernel refuses is a failure: that is issue 10's "1/h with burst
// 4294967295", which the kernel refused with a bare EOVERFLOW.
//
// What "apply" means is applyToKernel's doc.
//
// Seeds: testdata/fuzz/FuzzApplyConfig (the example, README snippets and
// one config per feature).
func FuzzApplyConfig(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("SKIPPED: FuzzApplyConfig needs root to create a network namespace and program nftables in it")
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse("fuzz.toml", data)
		if err != nil {
			return // refusals are FuzzParse's business (config package)
		}
		applyToKernel(t, cfg, data)
	})
}

// FuzzApplyValues aims the same check at the numbers: most mutations of a
// whole file do not parse, while every input here is a well-formed file
// whose numeric keys (the ones that reach the kernel) take the fuzzed
// values. Whatever config accepts must apply.
func FuzzApplyValues(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("SKIPPED: FuzzApplyValues needs root to create a network namespace and program nftables in it")
	}
	f.Fuzz(func(t *testing.T, rate uint64, unit uint8, burst int64, perClient bool, maxConn, clientConn int64,
		persistNs int64, slots int64, sched uint8, weight int64, v6 bool, ctTimeoutNs int64) {
		units := []string{"s", "m", "h"}
		scheds := []string{"rr", "random", "sh", "mh"}
		vip, be := "198.51.100.10", "192.0.2.11"
		if v6 {
			vip, be = "2001:db8::10", "[2001:db8:2::11]"
		}
		rateKey := "new_connection_rate"
		if perClient {
			rateKey = "per_client_rate"
		}
		data := fmt.Appendf(nil, `[conntrack]
tcp_established_timeout = %q
udp_timeout = %q

[[service]]
name = "v"
vip = %q
port = 80
scheduler = %q
slots = %d
persistence = %q
%s = "%d/%s"
burst = %d
max_connections = %d
per_client_connections = %d
backend = [{ address = "%s:8080", weight = %d }, { address = "%s:8081" }]
`, time.Duration(ctTimeoutNs), time.Duration(ctTimeoutNs), vip, scheds[int(sched)%len(scheds)], slots,
			time.Duration(persistNs), rateKey, rate, units[int(unit)%len(units)], burst, maxConn, clientConn, be, weight, be)
		cfg, err := config.Parse("fuzz.toml", data)
		if err != nil {
			return
		}
		applyToKernel(t, cfg, data)
	})
}

// applyToKernel applies cfg the way lbd run does and fails the test if the
// kernel refuses any step: a cold apply of every service with all backends
// up, a diff apply with every backend down and a 1/h emergency throttle on
// each service (element deletes, rule rewrites), a diff apply back, then
// the sysctls of [conntrack] and [kernel]. The table is removed again
// before the next input.
func applyToKernel(t *testing.T, cfg *config.Config, data []byte) {
	t.Helper()
	ns := fuzzNetns(t)
	dp := lb.NewInNetNS(int(ns))
	defer func() {
		if err := dp.Remove(); err != nil {
			t.Errorf("remove table: %v", err)
		}
	}()
	refused := func(step string, err error) {
		t.Helper()
		t.Fatalf("config accepted by validation, refused by the kernel on %s:\n%v\n--- config ---\n%s", step, err, data)
	}

	services, fw := daemon.DesiredState(cfg)
	if _, err := dp.ApplyState(services, fw); err != nil {
		refused("the cold apply (all backends up)", err)
	}
	down := make([]lb.Service, len(services))
	for i, s := range services {
		s.Slots = nil
		s.Protect.Throttle = lb.Rate{N: 1, Per: time.Hour}
		down[i] = s
	}
	if _, err := dp.ApplyState(down, fw); err != nil {
		refused("the diff apply (all backends down, throttled)", err)
	}
	if _, err := dp.ApplyState(services, fw); err != nil {
		refused("the diff apply back (all up, throttle lifted)", err)
	}
	err := netif.RunInNetns(ns, func() error {
		changes, err := sysctl.Apply(host.Sysctls(cfg))
		for _, c := range changes {
			if !c.Applied() && c.Key != "net.netfilter.nf_conntrack_max" {
				return fmt.Errorf("%s not applied: %s", c.Key, c.Warning)
			}
		}
		return err
	})
	if err != nil {
		refused("the sysctls", err)
	}
}

// The namespace is made once per fuzz worker process and is anonymous: it
// is held only by the open handle, so the kernel removes it when the
// process exits, however it exits (a crash, the fuzz coordinator's kill).
var fuzzNS struct {
	once sync.Once
	h    netns.NsHandle
	err  error
}

func fuzzNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	fuzzNS.once.Do(func() { fuzzNS.h, fuzzNS.err = newAnonNetns() })
	if fuzzNS.err != nil {
		t.Fatalf("network namespace: %v", fuzzNS.err)
	}
	return fuzzNS.h
}

// newAnonNetns unshares a new network namespace on a locked thread, keeps
// a handle to it and puts the thread back. If the thread cannot go back
// it stays locked, so the runtime ends it with its goroutine instead of
// reusing it in the wrong namespace.
func newAnonNetns() (netns.NsHandle, error) {
	type result struct {
		h   netns.NsHandle
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			done <- result{netns.None(), fmt.Errorf("current netns: %w", err)}
			return
		}
		defer orig.Close()
		h, err := netns.New()
		if err != nil {
			done <- result{netns.None(), fmt.Errorf("unshare: %w", err)}
			return
		}
		if err := netns.Set(orig); err != nil {
			h.Close()
			done <- result{netns.None(), fmt.Errorf("back to the original netns: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		done <- result{h, nil}
	}()
	r := <-done
	return r.h, r.err
}

// TestKernelLimitBoundsMatchConfig pins config's limit bounds to the real
// kernel: at the largest burst config accepts the kernel accepts, one more
// and it refuses (EOVERFLOW in nft_limit_init), for each rate unit.
func TestKernelLimitBoundsMatchConfig(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: needs root to create a network namespace and program nftables in it")
	}
	for _, tc := range []struct {
		rate  string
		burst int // largest burst config accepts with this rate
	}{{"1/h", 5124095}, {"1/m", 307445734}, {"7/h", 35868669}} {
		t.Run(tc.rate, func(t *testing.T) {
			text := func(burst int) []byte {
				return fmt.Appendf(nil, "[[service]]\nname = \"a\"\nvip = \"198.51.100.1\"\nport = 80\n"+
					"new_connection_rate = %q\nburst = %d\nbackend = [{ address = \"192.0.2.11\" }]\n", tc.rate, burst)
			}
			cfg, err := config.Parse("lb.toml", text(tc.burst))
			if err != nil {
				t.Fatalf("config refuses its own bound: %v", err)
			}
			if _, err := config.Parse("lb.toml", text(tc.burst+1)); err == nil {
				t.Fatalf("config accepts burst %d", tc.burst+1)
			}
			dp := lb.NewInNetNS(int(fuzzNetns(t)))
			t.Cleanup(func() { _ = dp.Remove() })
			services, fw := daemon.DesiredState(cfg)
			if _, err := dp.ApplyState(services, fw); err != nil {
				t.Fatalf("kernel refuses burst %d: %v", tc.burst, err)
			}
			services[0].Protect.Burst++
			if _, err := dp.ApplyState(services, fw); err == nil {
				t.Fatalf("kernel accepts burst %d: config's bound is too strict", tc.burst+1)
			}
		})
	}
}
