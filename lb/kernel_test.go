package lb

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"lbd/internal/lab"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: needs root to create network namespaces and program nftables")
	}
}

func labserver(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "labserver")
	out, err := exec.Command("go", "build", "-o", bin, "lbd/internal/labserver").CombinedOutput()
	if err != nil {
		t.Fatalf("build labserver: %v\n%s", err, out)
	}
	return bin
}

// kernelLab is a standard lab with backends running and a Dataplane
// programming its lb namespace; nsFD is that namespace, for more
// Dataplanes (a restarted lbd, a reader).
type kernelLab struct {
	*lab.Standard
	dp   *Dataplane
	nsFD int
}

func newKernelLab(t *testing.T, name string, backends, clients int) *kernelLab {
	t.Helper()
	needRoot(t)
	s, err := lab.NewStandardClients(name, backends, clients)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.StartBackends(labserver(t), ""); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(s.NSFile("lb"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &kernelLab{Standard: s, dp: NewInNetNS(int(f.Fd())), nsFD: int(f.Fd())}
}

// spec is a service of the lab on port 7000 whose backends listen on 7000.
func spec(name, vip, sched string, backends ...string) ServiceSpec {
	s := ServiceSpec{Name: name, VIP: netip.MustParseAddr(vip), Proto: protoTCP, Port: 7000,
		Scheduler: sched, SNAT: true, OnEmpty: "reject"}
	for _, b := range backends {
		s.Backends = append(s.Backends, BackendSpec{Addr: netip.AddrPortFrom(netip.MustParseAddr(b), 7000), Weight: 1})
	}
	return s
}

// TestDataplaneRoundRobinV4 programs a namespace directly through the
// Dataplane and checks real connections spread exactly evenly.
func TestDataplaneRoundRobinV4(t *testing.T) {
	s := newKernelLab(t, "dp", 3, 1)
	dp := s.dp
	cfg := []ServiceSpec{
		spec("echo", lab.VIPv4, "rr", lab.BackendV4(1), lab.BackendV4(2), lab.BackendV4(3)),
		spec("echo6", lab.VIPv6, "sh", lab.BackendV6(1), lab.BackendV6(2)),
	}
	st, err := dp.Apply(Plan(cfg, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Log(st)
	// What a restarted lbd reads back: every backend's slot count.
	owners, err := NewInNetNS(s.nsFD).SlotOwners()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range Plan(cfg, nil) {
		if got, want := owners[p.Endpoint()], p.SlotCounts(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: kernel slots read back %v, want %v", p.Endpoint(), got, want)
		}
	}
	counts := map[string]int{}
	for i := 0; i < 30; i++ {
		name, err := s.Ask("client", lab.VIPv4+":7000")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		counts[lab.Name(name)]++
	}
	for i := 1; i <= 3; i++ {
		if counts[s.Backend(i)] != 10 {
			t.Errorf("rr not even: %v", counts)
		}
	}
	ans, err := s.Ask("client", "["+lab.VIPv6+"]:7000")
	if err != nil {
		t.Fatalf("v6: %v", err)
	}
	t.Log("v6 answer:", ans)

	// A health-style change: drop backend 3 from the slots; only elements change.
	avail := func(_ string, b netip.AddrPort) Availability {
		return Availability{Up: b.Addr().String() != lab.BackendV4(3)}
	}
	st, err = dp.Apply(Plan(cfg, avail))
	if err != nil {
		t.Fatal(err)
	}
	if st.ServicesRewired != 0 || st.ElementsAdded == 0 {
		t.Errorf("health change should only rewrite elements: %s", st)
	}
	for i := 0; i < 12; i++ {
		name, err := s.Ask("client", lab.VIPv4+":7000")
		if err != nil {
			t.Fatal(err)
		}
		if lab.Name(name) == s.Backend(3) {
			t.Fatalf("backend 3 still chosen after it left the slots")
		}
	}
	if err := dp.Remove(); err != nil {
		t.Fatal(err)
	}
}
