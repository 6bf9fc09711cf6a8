package netif

import (
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
)

// nicInfo is the part of a kernel link that matching needs; a plain struct
// so matching is unit-tested without a kernel.
type nicInfo struct {
	Index int
	Name  string
	MAC   net.HardwareAddr
}

func nicInfos(links []netlink.Link) []nicInfo {
	out := make([]nicInfo, 0, len(links))
	for _, l := range links {
		a := l.Attrs()
		out = append(out, nicInfo{Index: a.Index, Name: a.Name, MAC: a.HardwareAddr})
	}
	return out
}

// matchNIC finds the NIC a spec means. prevIndex is the index the spec
// matched last time (0 if none): after lbd renamed "eth1" to "lan" the
// device name no longer exists, and the NIC must still be found.
func matchNIC(nics []nicInfo, s Spec, prevIndex int) (nicInfo, error) {
	if s.MAC != "" {
		want, err := net.ParseMAC(s.MAC)
		if err != nil {
			return nicInfo{}, fmt.Errorf("interface %q: mac %q: %w", s.Name, s.MAC, err)
		}
		var found []nicInfo
		for _, n := range nics {
			if strings.EqualFold(n.MAC.String(), want.String()) {
				found = append(found, n)
			}
		}
		switch len(found) {
		case 0:
			return nicInfo{}, missingNIC{fmt.Sprintf("interface %q: no NIC with mac %s", s.Name, s.MAC)}
		case 1:
		default:
			return nicInfo{}, fmt.Errorf("interface %q: mac %s is ambiguous, it matches %s", s.Name, s.MAC, names(found))
		}
		n := found[0]
		if s.Device != "" && n.Name != s.Device && n.Name != s.Name && n.Index != prevIndex {
			return nicInfo{}, fmt.Errorf("interface %q: NIC with mac %s is %q, not device %q", s.Name, s.MAC, n.Name, s.Device)
		}
		return n, nil
	}
	for _, n := range nics {
		if n.Name == s.Device {
			return n, nil
		}
	}
	// Already renamed by an earlier Apply (of this process or, via the
	// name, of an earlier lbd run).
	for _, n := range nics {
		if n.Index == prevIndex || n.Name == s.Name {
			return n, nil
		}
	}
	return nicInfo{}, missingNIC{fmt.Sprintf("interface %q: no NIC named %q", s.Name, s.Device)}
}

// missingNIC is the error of a spec whose NIC is not there (yet): at boot
// its driver may still be loading, which the first Apply waits out.
type missingNIC struct{ msg string }

func (e missingNIC) Error() string { return e.msg }

func names(nics []nicInfo) string {
	var s []string
	for _, n := range nics {
		s = append(s, n.Name)
	}
	return strings.Join(s, ", ")
}

// matchAll resolves every spec and checks that no two specs share a name or
// a NIC; nothing is changed unless all specs resolve.
func matchAll(nics []nicInfo, specs []Spec, prev map[string]int) ([]nicInfo, error) {
	out := make([]nicInfo, len(specs))
	byName := map[string]bool{}
	byIndex := map[int]string{}
	for i, s := range specs {
		if err := s.validate(); err != nil {
			return nil, err
		}
		if byName[s.Name] {
			return nil, fmt.Errorf("interface %q: listed twice", s.Name)
		}
		byName[s.Name] = true
		n, err := matchNIC(nics, s, prev[s.Name])
		if err != nil {
			return nil, err
		}
		if other, ok := byIndex[n.Index]; ok {
			return nil, fmt.Errorf("interface %q: NIC %q is already used by interface %q", s.Name, n.Name, other)
		}
		byIndex[n.Index] = s.Name
		out[i] = n
	}
	return out, nil
}
