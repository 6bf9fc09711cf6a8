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
	want := map[string]bool{}
	for i := range services {
		want[services[i].Endpoint()] = true
	}
	out := map[FlowKey]int{}
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, fam)
		if err != nil {
			return nil, fmt.Errorf("conntrack dump: %w", err)
		}
		for _, f := range flows {
			if tcp, ok := f.ProtoInfo.(*netlink.ProtoInfoTCP); ok && tcp.State != tcpEstablished {
				continue
			}
			ep := flowEndpoint(f)
			if !want[ep] {
				continue
			}
			be, ok := ipPort(f.Reverse.SrcIP, f.Reverse.SrcPort)
			if !ok {
				continue
			}
			out[FlowKey{Endpoint: ep, Backend: be}]++
		}
	}
	return out, nil
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
