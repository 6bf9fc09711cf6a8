package daemon

import (
	"net/netip"

	"lbd/appliance/status"
	"lbd/config"
	"lbd/health"
	"lbd/lb"
)

// The daemon reaches the kernel and the machine only through these small
// interfaces, so its ordering, coalescing, retry and restart logic can be
// tested in milliseconds with fakes (see fakes_test.go), the way
// kube-proxy tests its proxier against knftables.Fake.

// Dataplane is table lbd: *lb.Dataplane in production. Only the sync loop
// calls ApplyState and ForgetPersistence.
type Dataplane interface {
	ApplyState(services []lb.Service, fw lb.Firewall) (lb.ApplyStats, error)
	ForgetPersistence(s *lb.Service, gone []netip.AddrPort) error
	ReadCounters() (map[string]lb.Counters, error)
}

// Conntrack reads and prunes the kernel's flow table.
type Conntrack interface {
	ActiveConnections(services []lb.Service) (map[lb.FlowKey]int, error)
	FlushBackend(s *lb.Service, backend netip.AddrPort) (uint, error)
	ListFlows(services []lb.Service) ([]lb.Flow, error)
	FlushFlows(keys []lb.FlowKey) (uint, error)
}

// HealthMonitor runs the checks: *health.Monitor in production.
type HealthMonitor interface {
	Set(targets []health.Target) error
	Lookup(service string, addr netip.AddrPort) (health.TargetStatus, bool)
	Close()
}

// Host is the machine around the data plane: NICs, VIP addresses, DHCP and
// sysctls (*host.Host in production).
type Host interface {
	Apply(cfg *config.Config) error
	Status() []status.NIC
	Close()
}

// kernelConntrack is Conntrack on the real kernel.
type kernelConntrack struct{}

func (kernelConntrack) ActiveConnections(s []lb.Service) (map[lb.FlowKey]int, error) {
	return lb.ActiveConnections(s)
}

func (kernelConntrack) FlushBackend(s *lb.Service, b netip.AddrPort) (uint, error) {
	return lb.FlushBackend(s, b)
}

func (kernelConntrack) ListFlows(s []lb.Service) ([]lb.Flow, error) { return lb.ListFlows(s) }

func (kernelConntrack) FlushFlows(keys []lb.FlowKey) (uint, error) { return lb.FlushFlows(keys) }

// backendKey names one backend of one service: the key of every
// per-backend fact the daemon keeps (health, slow start, fullness).
type backendKey struct {
	Service string
	Backend netip.AddrPort
}
