package lb

import (
	"fmt"
	"reflect"
	"testing"

	"lbd/internal/lab"
)

// TestStagedColdStart applies 2,500 services into an empty namespace, which
// commits in stages, and checks the kernel holds all of them (slots read
// back per service) and that traffic flows through one of them exactly as
// rr says. A second Dataplane then cold-syncs over the table (a restart):
// one transaction, and nothing changes.
func TestStagedColdStart(t *testing.T) {
	s := newKernelLab(t, "stg", 2, 1)

	// The lab's service on 7000 plus 2,499 others on other ports of the VIP.
	var specs []ServiceSpec
	specs = append(specs, spec("echo", lab.VIPv4, "rr", lab.BackendV4(1), lab.BackendV4(2)))
	for i := 1; i < 2500; i++ {
		sp := spec(fmt.Sprintf("s%d", i), lab.VIPv4, "rr", lab.BackendV4(1), lab.BackendV4(2))
		sp.Port = uint16(10000 + i)
		specs = append(specs, sp)
	}
	plans := Plan(specs, nil)
	st, err := s.dp.Apply(plans)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(st)
	// 2,500 services: a stage after 2,000 services, one after 50,000 of
	// the 80,000 slot elements (32 slots each), then the last with the
	// rest, the dispatch elements and the hooks.
	if st.Stages != 3 || st.ServicesAdded != 2500 {
		t.Fatalf("staged cold start: %s; want 3 stages and 2500 services", st)
	}
	owners, err := NewInNetNS(s.nsFD).SlotOwners()
	if err != nil {
		t.Fatal(err)
	}
	if len(owners) != len(plans) {
		t.Fatalf("kernel holds slots of %d services, want %d", len(owners), len(plans))
	}
	for _, p := range plans {
		if got, want := owners[p.Endpoint()], p.SlotCounts(); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: kernel slots %v, want %v", p.Endpoint(), got, want)
		}
	}
	counts := map[string]int{}
	for i := 0; i < 20; i++ {
		name, err := s.Ask("client", lab.VIPv4+":7000")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		counts[lab.Name(name)]++
	}
	if counts[s.Backend(1)] != 10 || counts[s.Backend(2)] != 10 {
		t.Fatalf("rr through the staged table: %v; want 10 and 10", counts)
	}

	// A restart over the table: one transaction, the same kernel state.
	st, err = NewInNetNS(s.nsFD).Apply(plans)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stages != 0 {
		t.Fatalf("cold sync over an existing table must be one transaction: %s", st)
	}
	owners, err = NewInNetNS(s.nsFD).SlotOwners()
	if err != nil || len(owners) != len(plans) {
		t.Fatalf("after the restart sync: %d services hold slots (%v)", len(owners), err)
	}
}
