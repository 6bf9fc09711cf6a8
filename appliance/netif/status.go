package netif

import (
	"net"
	"net/netip"
)

// NICStatus is one managed NIC as the status page shows it.
type NICStatus struct {
	Name   string
	Device string // kernel name of the NIC before lbd renamed it (as first seen by this process)
	MAC    string
	MTU    int
	// AdminUp is the link's administrative state; LinkUp adds carrier
	// (IFF_RUNNING): the cable or virtual peer is there.
	AdminUp   bool
	LinkUp    bool
	DHCP      bool
	Addresses []netip.Prefix // every address on the NIC, VIPs and DHCP included
	Err       string         // why the NIC could not be read
}

// Status reports the NICs of the last successful Apply, read fresh from the
// kernel.
func (m *Manager) Status() []NICStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]NICStatus, 0, len(m.applied))
	for _, a := range m.applied {
		st := NICStatus{Name: a.spec.Name, Device: a.device, DHCP: a.spec.DHCP}
		link, err := m.h.LinkByIndex(a.index)
		if err != nil {
			st.Err = err.Error()
			out = append(out, st)
			continue
		}
		attrs := link.Attrs()
		st.Name = attrs.Name
		st.MAC = attrs.HardwareAddr.String()
		st.MTU = attrs.MTU
		st.AdminUp = attrs.Flags&net.FlagUp != 0
		st.LinkUp = attrs.Flags&net.FlagRunning != 0
		addrs, err := m.linkPrefixes(link)
		if err != nil {
			st.Err = err.Error()
		}
		st.Addresses = addrs
		out = append(out, st)
	}
	return out
}
