// Package host turns the machine-level part of lb.toml into kernel state:
// NICs (static and DHCP), VIP addresses on NICs, and sysctls. Without
// [[interface]] sections it touches no NIC at all, which is how tests run
// lbd inside namespaces they built themselves.
package host

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"lbd/appliance/dhcp"
	"lbd/appliance/netif"
	"lbd/appliance/status"
	"lbd/appliance/sysctl"
	"lbd/config"
)

// Host owns the NICs and sysctls of the namespace lbd runs in.
type Host struct {
	log      *slog.Logger
	stateDir string

	mu    sync.Mutex
	nics  *netif.Manager
	dhcp  map[string]*dhcp.Client // by interface name
	specs []netif.Spec
	// started is set by the first Apply (lbd's start). Only that one waits
	// for late NICs: the NIC manager is made by the first Apply with
	// [[interface]] sections, which may be a reload, and a reload must
	// not wait.
	started bool
}

// New makes a Host; stateDir keeps DHCP leases and address ownership.
func New(stateDir string, log *slog.Logger) *Host {
	return &Host{log: log, stateDir: stateDir, dhcp: map[string]*dhcp.Client{}}
}

// Apply brings NICs, VIPs and sysctls to what cfg says. It is idempotent:
// applying the same config twice changes nothing.
func (h *Host) Apply(cfg *config.Config) error {
	if changes, err := sysctl.Apply(Sysctls(cfg)); err != nil {
		return fmt.Errorf("sysctls: %w", err)
	} else {
		for _, c := range changes {
			if c.Warning != "" {
				h.log.Warn("sysctl not applied", "key", c.Key, "reason", c.Warning)
			} else {
				h.log.Info("sysctl set", "key", c.Key, "old", c.Old, "new", c.New)
			}
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	atStart := !h.started
	h.started = true
	if len(cfg.Interfaces) == 0 && h.nics == nil {
		return nil
	}
	if h.nics == nil {
		// At boot lbd may start before udev has loaded every NIC's driver:
		// the apply at start waits up to 20 s for a listed NIC to appear.
		var wait time.Duration
		if atStart {
			wait = 20 * time.Second
		}
		m, err := netif.New(netif.Options{StatePath: filepath.Join(h.stateDir, "netif.json"), Logger: h.log, FirstApplyWait: wait})
		if err != nil {
			return fmt.Errorf("interfaces: %w", err)
		}
		h.nics = m
	}
	specs := Specs(cfg)
	// Before netif renames or lets go of a NIC: a client finds its NIC by
	// the old name, and must still find it to take its address off.
	h.releaseDHCP(specs)
	// netif logs each change itself (it has h.log); logging the returned
	// list again printed every change twice.
	if _, err := h.nics.Apply(specs); err != nil {
		return fmt.Errorf("interfaces: %w", err)
	}
	h.specs = specs
	h.startDHCP(specs)
	if _, err := h.nics.SetVIPs(VIPs(cfg)); err != nil {
		return fmt.Errorf("VIPs: %w", err)
	}
	return nil
}

// releaseDHCP stops the clients of NICs that the config no longer runs
// DHCP on (now static, renamed or gone) and gives their leases back. Stop
// would keep the address, as a restart wants; here nothing would renew it,
// so it would linger on the NIC past its lease (found by the namespace test).
func (h *Host) releaseDHCP(specs []netif.Spec) {
	want := map[string]bool{}
	for _, s := range specs {
		if s.DHCP {
			want[s.Name] = true
		}
	}
	for name, c := range h.dhcp {
		if want[name] {
			continue
		}
		if err := c.Release(); err != nil {
			h.log.Warn("DHCP release", "interface", name, "err", err)
		}
		delete(h.dhcp, name)
	}
}

// startDHCP starts a client for each DHCP NIC that has none. Clients start
// after netif's Apply because a rename takes the link down and the kernel
// drops that NIC's routes.
func (h *Host) startDHCP(specs []netif.Spec) {
	for _, s := range specs {
		if !s.DHCP {
			continue
		}
		if _, ok := h.dhcp[s.Name]; ok {
			continue
		}
		c, err := dhcp.New(dhcp.Config{Interface: s.Name, LeaseFile: filepath.Join(h.stateDir, "dhcp-"+s.Name+".lease"),
			KeepOnStop: true, Logger: h.log, // dhcp adds interface= itself
			OnChange: func(l dhcp.Lease, bound bool) {
				h.log.Info("DHCP lease", "interface", s.Name, "address", l.Address.String(), "router", l.Router.String(), "bound", bound, "expires", l.Expiry.Format(time.RFC3339))
			}})
		if err != nil {
			h.log.Error("DHCP client", "interface", s.Name, "err", err)
			continue
		}
		c.Start()
		h.dhcp[s.Name] = c
	}
}

// Status reports every managed NIC.
func (h *Host) Status() []status.NIC {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.nics == nil {
		return nil
	}
	var out []status.NIC
	for _, n := range h.nics.Status() {
		sn := status.NIC{Name: n.Name, Device: n.Device, MAC: n.MAC, LinkUp: n.LinkUp, DHCP: n.DHCP, Addresses: []string{}}
		for _, a := range n.Addresses {
			sn.Addresses = append(sn.Addresses, a.String())
		}
		if c, ok := h.dhcp[n.Name]; ok {
			sn.DHCP = true
			if l, ok := c.Lease(); ok {
				sn.LeaseExpiry = l.Expiry
			}
		}
		out = append(out, sn)
	}
	return out
}

// Close stops the DHCP clients without releasing their leases: a
// restarting lbd keeps its address.
func (h *Host) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.dhcp {
		_ = c.Stop()
	}
	if h.nics != nil {
		_ = h.nics.Close()
	}
}

// Specs maps [[interface]] sections onto netif specs.
func Specs(cfg *config.Config) []netif.Spec {
	var out []netif.Spec
	for _, i := range cfg.Interfaces {
		s := netif.Spec{Name: i.Name, MAC: i.MAC, Device: i.Device, MTU: i.MTU, DHCP: i.DHCP,
			Addresses: i.Prefixes, Gateway: i.GatewayAddr, Gateway6: i.Gateway6Addr}
		for _, r := range i.Routes {
			s.Routes = append(s.Routes, netif.Route{To: r.ToPrefix, Via: r.ViaAddr})
		}
		out = append(out, s)
	}
	return out
}

// VIPs lists the VIPs each NIC should carry (services with interface = ...).
func VIPs(cfg *config.Config) map[string][]netip.Addr {
	out := map[string][]netip.Addr{}
	seen := map[string]bool{}
	for _, s := range cfg.Services {
		// In a pair keepalived adds and removes the VIPs (only the
		// master holds them); lbd adding them too would put them on
		// both nodes.
		if s.Interface == "" || cfg.HAEnabled() {
			continue
		}
		k := s.Interface + "|" + s.VIPAddr.String()
		if !seen[k] {
			seen[k] = true
			out[s.Interface] = append(out[s.Interface], s.VIPAddr)
		}
	}
	for _, v := range out {
		sort.Slice(v, func(i, j int) bool { return v[i].Less(v[j]) })
	}
	for _, i := range cfg.Interfaces {
		if _, ok := out[i.Name]; !ok {
			out[i.Name] = nil // so VIPs of a service that went away are removed
		}
	}
	return out
}

// Sysctls are lbd's defaults overlaid with [conntrack] and [kernel].
func Sysctls(cfg *config.Config) sysctl.Settings {
	s := sysctl.Defaults()
	c := cfg.Conntrack
	if c.Max > 0 {
		s.ConntrackMax = c.Max
	}
	set := func(dst *time.Duration, v config.Duration) {
		if v > 0 {
			*dst = v.D()
		}
	}
	set(&s.TCPEstablishedTimeout, c.TCPEstablishedTimeout)
	set(&s.TCPTimeWaitTimeout, c.TCPTimeWaitTimeout)
	set(&s.TCPCloseWaitTimeout, c.TCPCloseWaitTimeout)
	set(&s.TCPFinWaitTimeout, c.TCPFinWaitTimeout)
	set(&s.UDPTimeout, c.UDPTimeout)
	set(&s.UDPStreamTimeout, c.UDPStreamTimeout)
	if k := cfg.Kernel.RPFilter; k != nil {
		s.RPFilter = *k
	}
	if k := cfg.Kernel.TCPSyncookies; k != nil {
		s.TCPSyncookies = *k
	}
	if k := cfg.Kernel.IPv6Forwarding; k != nil {
		s.ForwardIPv6 = *k
	}
	return s
}
