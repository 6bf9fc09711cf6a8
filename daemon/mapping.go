package daemon

import (
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"lbd/config"
	"lbd/lb"
	"lbd/pair"
)

// ipprotoVRRP is VRRP's IP protocol number (keepalived's adverts).
const ipprotoVRRP = 112

// This file is the one place where the config's vocabulary becomes the
// data plane's: lb never reads lb.toml, it takes lb.ServiceSpec and
// lb.Firewall.

// DesiredState is everything cfg asks of the kernel with every backend
// usable: the services' plans and the appliance firewall. The fuzz test of
// the whole path (file -> kernel) applies exactly this.
func DesiredState(cfg *config.Config) ([]lb.Service, lb.Firewall) {
	return lb.Plan(serviceSpecs(cfg), nil), firewallFor(cfg)
}

// serviceSpecs maps every [[service]] onto the planner's input.
func serviceSpecs(cfg *config.Config) []lb.ServiceSpec {
	out := make([]lb.ServiceSpec, len(cfg.Services))
	for i := range cfg.Services {
		out[i] = serviceSpec(&cfg.Services[i])
	}
	return out
}

func serviceSpec(s *config.Service) lb.ServiceSpec {
	proto := uint8(6)
	if s.Protocol == "udp" {
		proto = 17
	}
	spec := lb.ServiceSpec{
		Name: s.Name, VIP: s.VIPAddr, Proto: proto, Port: uint16(s.Port),
		Scheduler: s.Scheduler, Slots: s.Slots, SNAT: s.SNATEnabled(),
		Persistence: s.Persistence.D(), OnEmpty: s.OnEmpty,
		Protect: lb.Protection{
			MaxConnections: s.MaxConnections, Rate: lbRate(s.NewConnRate), Burst: s.Burst,
			ClientRate: lbRate(s.ClientRate), PerClientConnections: s.PerClientConnections,
			Allow: s.AllowPrefixes, Deny: s.DenyPrefixes,
		},
		Backends: make([]lb.BackendSpec, len(s.Backends)),
	}
	for j, b := range s.Backends {
		w := b.EffectiveWeight()
		if s.Scheduler == "lc" && w > 0 {
			w = 1 // lc counts flows only; weight 0 still drains
		}
		spec.Backends[j] = lb.BackendSpec{Addr: b.Addr, Weight: w, Backup: b.Backup}
	}
	return spec
}

// lbRate converts a parsed config rate; units are already one of the three
// the kernel knows.
func lbRate(r config.Rate) lb.Rate {
	if !r.IsSet() {
		return lb.Rate{}
	}
	per := time.Second
	switch r.Unit {
	case "minute":
		per = time.Minute
	case "hour":
		per = time.Hour
	}
	return lb.Rate{N: r.N, Per: per}
}

// firewallFor derives the firewall from a config: on when the config has
// [[interface]] sections (a real appliance) unless [firewall] enabled says
// otherwise; off by default without interfaces (tests and labs, where lbd
// touches no NIC). WAN defaults to the interfaces services put their VIPs
// on. Management ports are ssh and the status page's port.
func firewallFor(cfg *config.Config) lb.Firewall {
	fwc := cfg.Firewall
	enabled := len(cfg.Interfaces) > 0
	if fwc.Enabled != nil {
		enabled = *fwc.Enabled
	}
	if !enabled {
		return lb.Firewall{ResetUnknown: cfg.BGP != nil}
	}
	fw := lb.Firewall{Enabled: true, WAN: append([]string(nil), fwc.WAN...),
		AdminNetworks: fwc.AdminPrefixes, AllowForward: fwc.ForwardPrefixes, ManagementPorts: []uint16{lb.SSHPort},
		ResetUnknown: cfg.BGP != nil}
	if len(fw.WAN) == 0 {
		for _, s := range cfg.Services {
			if s.Interface != "" {
				fw.WAN = append(fw.WAN, s.Interface)
			}
		}
		if cfg.HA != nil {
			fw.WAN = append(fw.WAN, cfg.HA.Interface) // keepalived puts the VIPs there
		}
	}
	if h := cfg.HA; h != nil {
		// The peer's VRRP adverts and conntrackd's sync traffic.
		fw.Trusted = append(fw.Trusted, lb.TrustedFlow{Src: h.PeerAddr, Proto: ipprotoVRRP},
			lb.TrustedFlow{Src: h.SyncPeerAddr, Proto: unix.IPPROTO_UDP, DPort: pair.SyncPort})
	}
	if ap, err := netip.ParseAddrPort(cfg.Appliance.StatusListen); err == nil {
		fw.ManagementPorts = append(fw.ManagementPorts, ap.Port())
	}
	return fw.Normalized()
}
