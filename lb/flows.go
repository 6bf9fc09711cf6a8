package lb

import (
	"net/netip"

	"github.com/vishvananda/netlink"
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
	var out []Flow
	err := eachServiceFlow(services, func(sf serviceFlow) {
		f := sf.flow
		fl := Flow{Endpoint: sf.endpoint, Proto: protoName(f.Forward.Protocol), Expires: f.TimeOut,
			Client: sf.client, VIP: sf.vip, Backend: sf.backend}
		if tcp, ok := f.ProtoInfo.(*netlink.ProtoInfoTCP); ok && int(tcp.State) < len(tcpStates) {
			fl.State = tcpStates[tcp.State]
		}
		out = append(out, fl)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
