package lb

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
)

// scaleConfig is n services of 8 backends each on distinct VIPs.
func scaleConfig(n int) []ServiceSpec {
	var specs []ServiceSpec
	for i := 0; i < n; i++ {
		s := ServiceSpec{Name: fmt.Sprintf("s%d", i), Port: 80, Proto: protoTCP, Scheduler: "rr", OnEmpty: "reject",
			VIP: netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)})}
		for b := 0; b < 8; b++ {
			s.Backends = append(s.Backends, BackendSpec{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + b)}), 8080), Weight: 1})
		}
		specs = append(specs, s)
	}
	return specs
}

var benchSeq int

func benchNS(b *testing.B) *Dataplane {
	if os.Geteuid() != 0 {
		b.Skip("SKIPPED: needs root")
	}
	benchSeq++
	name := fmt.Sprintf("lbdt-bench-%d-%d", os.Getpid(), benchSeq)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		b.Fatalf("%v %s", err, out)
	}
	b.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return NewInNetNS(int(f.Fd()))
}

// BenchmarkColdApply measures planning plus one cold transaction of N
// services x 8 backends into an empty namespace.
func BenchmarkColdApply(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			cfg := scaleConfig(n)
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dp := benchNS(b)
				b.StartTimer()
				plans := Plan(cfg, nil)
				if _, err := dp.Apply(plans); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				_ = dp.Remove()
				b.StartTimer()
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heapMB")
		})
	}
}

// BenchmarkHealthFlip measures one backend going down then up in one
// service among 10,000 (a diff transaction that rewrites slot elements).
func BenchmarkHealthFlip(b *testing.B) {
	cfg := scaleConfig(10000)
	dp := benchNS(b)
	if _, err := dp.Apply(Plan(cfg, nil)); err != nil {
		b.Fatal(err)
	}
	dead := cfg[5000].Backends[3].Addr
	down := func(svc string, a netip.AddrPort) Availability {
		return Availability{Up: !(svc == "s5000" && a == dead)}
	}
	up := Plan(cfg, nil)
	dn := Plan(cfg, down)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := dn
		if i%2 == 1 {
			p = up
		}
		if _, err := dp.Apply(p); err != nil {
			b.Fatal(err)
		}
	}
}
