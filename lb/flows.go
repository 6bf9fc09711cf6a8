package lb

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Flow is one conntrack entry of a flow lbd translated (ipvsadm -Lnc).
type Flow struct {
	Endpoint string // Service.Endpoint()
	Proto    string // tcp | udp
	State    string // TCP state (ESTABLISHED, TIME_WAIT, ...), UDP: "" or ASSURED
	Expires  uint32 // seconds until the entry times out
	Client   netip.AddrPort
	VIP      netip.AddrPort
	Backend  netip.AddrPort
}

// tcpStates are the kernel's TCP_CONNTRACK_* names, by number.
var tcpStates = []string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

// ListFlows dumps the conntrack table once and returns the flows of the
// given services.
func ListFlows(services []Service) ([]Flow, error) {
	want := map[string]bool{}
	for i := range services {
		want[services[i].Endpoint()] = true
	}
	var out []Flow
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, fam)
		if err != nil {
			return nil, fmt.Errorf("conntrack dump: %w", err)
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
			fl := Flow{Endpoint: ep, Proto: protoName(f.Forward.Protocol), Expires: f.TimeOut, Client: client, VIP: vip, Backend: be}
			if tcp, ok := f.ProtoInfo.(*netlink.ProtoInfoTCP); ok && int(tcp.State) < len(tcpStates) {
				fl.State = tcpStates[tcp.State]
			}
			out = append(out, fl)
		}
	}
	return out, nil
}
