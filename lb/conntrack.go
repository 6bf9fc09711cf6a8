package lb

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// tcpEstablished is TCP_CONNTRACK_ESTABLISHED.
const tcpEstablished = 3

// FlowKey names one backend of one service in conntrack terms.
type FlowKey struct {
	Endpoint string // Service.Endpoint()
	Backend  netip.AddrPort
}

// ActiveConnections counts, per service endpoint and backend, the
// conntrack entries of flows lbd translated: established TCP connections
// and live UDP flows. One dump of the table serves every service.
func ActiveConnections(services []Service) (map[FlowKey]int, error) {
	out := map[FlowKey]int{}
	err := eachServiceFlow(services, func(sf serviceFlow) {
		if tcp, ok := sf.flow.ProtoInfo.(*netlink.ProtoInfoTCP); ok && tcp.State != tcpEstablished {
			return
		}
		out[FlowKey{Endpoint: sf.endpoint, Backend: sf.backend}]++
	})
	return out, err
}

// serviceFlow is one conntrack entry of a flow to a service's endpoint,
// with its addresses parsed.
type serviceFlow struct {
	flow                 *netlink.ConntrackFlow
	endpoint             string // Service.Endpoint()
	client, vip, backend netip.AddrPort
}

// eachServiceFlow dumps the conntrack table once per address family and
// calls fn for every entry of a flow to one of the services: the one walk
// behind the active counts, `lbd conns` and the traffic counters.
func eachServiceFlow(services []Service, fn func(serviceFlow)) error {
	want := map[string]bool{}
	for i := range services {
		want[services[i].Endpoint()] = true
	}
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, fam)
		if err != nil {
			return fmt.Errorf("conntrack dump: %w", err)
		}
		for _, f := range flows {
			ep := flowEndpoint(f)
			if !want[ep] {
				continue
			}
			client, ok1 := ipPort(f.Forward.SrcIP, f.Forward.SrcPort)
			vip, ok2 := ipPort(f.Forward.DstIP, f.Forward.DstPort)
			be, ok3 := ipPort(f.Reverse.SrcIP, f.Reverse.SrcPort)
			if !ok1 || !ok2 || !ok3 {
				continue
			}
			fn(serviceFlow{flow: f, endpoint: ep, client: client, vip: vip, backend: be})
		}
	}
	return nil
}

func flowEndpoint(f *netlink.ConntrackFlow) string {
	dst, ok := ipPort(f.Forward.DstIP, f.Forward.DstPort)
	if !ok {
		return ""
	}
	return fmt.Sprintf("%s/%s/%d", dst.Addr(), protoName(f.Forward.Protocol), dst.Port())
}

func ipPort(ip net.IP, port uint16) (netip.AddrPort, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), port), true
}

type backendFilter struct {
	endpoint string
	backend  netip.AddrPort
}

func (b backendFilter) MatchConntrackFlow(f *netlink.ConntrackFlow) bool {
	be, ok := ipPort(f.Reverse.SrcIP, f.Reverse.SrcPort)
	return ok && be == b.backend && flowEndpoint(f) == b.endpoint
}

// FlushBackend deletes the conntrack entries of one service's flows to one
// backend, so their next packet is scheduled afresh (UDP clients of a dead
// backend move at once instead of blackholing until the entry times out).
func FlushBackend(s *Service, backend netip.AddrPort) (uint, error) {
	fam := netlink.InetFamily(unix.AF_INET)
	if s.Is6() {
		fam = unix.AF_INET6
	}
	n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam, backendFilter{endpoint: s.Endpoint(), backend: backend})
	if err != nil {
		return n, fmt.Errorf("flush conntrack of %s -> %s: %w", s.Name, backend, err)
	}
	return n, nil
}

// flowKeysFilter matches the flows of a set of (service endpoint, backend).
type flowKeysFilter map[FlowKey]bool

func (k flowKeysFilter) MatchConntrackFlow(f *netlink.ConntrackFlow) bool {
	be, ok := ipPort(f.Reverse.SrcIP, f.Reverse.SrcPort)
	return ok && k[FlowKey{Endpoint: flowEndpoint(f), Backend: be}]
}

// FlushFlows deletes the conntrack entries of flows to the given backends
// of the given service endpoints in one walk of the table per address
// family, however many keys: `lbd flush --all` at 10,000 services would
// otherwise walk the whole table once per backend.
func FlushFlows(keys []FlowKey) (uint, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	filter := flowKeysFilter{}
	for _, k := range keys {
		filter[k] = true
	}
	var total uint
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam, filter)
		total += n
		if err != nil {
			return total, fmt.Errorf("flush conntrack: %w", err)
		}
	}
	return total, nil
}
