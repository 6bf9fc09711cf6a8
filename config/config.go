// Package config reads and validates /config/lb.toml. Decoding is strict
// (unknown keys are errors) and every error names FILE:LINE:COL and the key
// path, and all errors of a file are reported together.
package config

import (
	"net/netip"
	"os"
)

// DefaultPath is where the appliance keeps its config.
const DefaultPath = "/config/lb.toml"

// Config is one whole lb.toml.
type Config struct {
	Appliance  Appliance   `toml:"appliance"`
	Conntrack  Conntrack   `toml:"conntrack"`
	Kernel     Kernel      `toml:"kernel"`
	Firewall   Firewall    `toml:"firewall"`
	Interfaces []Interface `toml:"interface"`
	Services   []Service   `toml:"service"`
	// HA is the [ha] section (ha.go); nil = a single appliance.
	HA  *HA  `toml:"ha"`
	BGP *BGP `toml:"bgp"` // nil = no BGP (see bgp.go)

	// Path is the file this was read from.
	Path string `toml:"-"`
}

// Appliance holds machine-wide settings.
type Appliance struct {
	Hostname     string `toml:"hostname"`
	StatusListen string `toml:"status_listen"` // "ip:port"; empty = off
	ConsoleLogin bool   `toml:"console_login"`
	StateDir     string `toml:"state_dir"` // last good config, DHCP leases
}

// Conntrack sizes the NAT table and its timeouts; zero values keep the
// kernel's settings.
type Conntrack struct {
	Max                   int      `toml:"max"`
	TCPEstablishedTimeout Duration `toml:"tcp_established_timeout"`
	TCPTimeWaitTimeout    Duration `toml:"tcp_time_wait_timeout"`
	TCPCloseWaitTimeout   Duration `toml:"tcp_close_wait_timeout"`
	TCPFinWaitTimeout     Duration `toml:"tcp_fin_wait_timeout"`
	UDPTimeout            Duration `toml:"udp_timeout"`
	UDPStreamTimeout      Duration `toml:"udp_stream_timeout"`
}

// Kernel holds the other kernel settings lbd owns; unset keys keep lbd's
// defaults (see README).
type Kernel struct {
	RPFilter       *int  `toml:"rp_filter"`       // 0 off, 1 strict, 2 loose (default 2)
	TCPSyncookies  *int  `toml:"tcp_syncookies"`  // 0, 1 (default), 2
	IPv6Forwarding *bool `toml:"ipv6_forwarding"` // default true
}

// Firewall is the appliance's own packet filter (in table lbd).
type Firewall struct {
	Enabled       *bool    `toml:"enabled"`        // default true when interfaces are declared
	WAN           []string `toml:"wan"`            // interface names facing clients; default: the interfaces named by services
	AdminNetworks []string `toml:"admin_networks"` // CIDRs allowed to reach management from any side
	AllowForward  []string `toml:"allow_forward"`  // CIDRs of backends allowed to open connections out through the LB

	AdminPrefixes   []netip.Prefix `toml:"-"`
	ForwardPrefixes []netip.Prefix `toml:"-"`
}

// Interface is one NIC the appliance brings up.
type Interface struct {
	Name      string   `toml:"name"`
	MAC       string   `toml:"mac"`
	Device    string   `toml:"device"`
	MTU       int      `toml:"mtu"`
	DHCP      bool     `toml:"dhcp"`
	Addresses []string `toml:"addresses"`
	Gateway   string   `toml:"gateway"`
	Gateway6  string   `toml:"gateway6"`
	Routes    []Route  `toml:"route"`

	Prefixes     []netip.Prefix `toml:"-"`
	GatewayAddr  netip.Addr     `toml:"-"`
	Gateway6Addr netip.Addr     `toml:"-"`
}

// Route is an extra static route on an interface.
type Route struct {
	To  string `toml:"to"`
	Via string `toml:"via"`

	ToPrefix netip.Prefix `toml:"-"`
	ViaAddr  netip.Addr   `toml:"-"`
}

// Service is one virtual service: a VIP, port and protocol in front of backends.
type Service struct {
	Name        string    `toml:"name"`
	VIP         string    `toml:"vip"`
	Port        int       `toml:"port"`
	Protocol    string    `toml:"protocol"`
	Interface   string    `toml:"interface"`
	Scheduler   string    `toml:"scheduler"`
	SNAT        *bool     `toml:"snat"`
	Persistence Duration  `toml:"persistence"`
	Slots       int       `toml:"slots"`
	OnEmpty     string    `toml:"on_empty"`
	DownAction  string    `toml:"down_action"`
	SlowStart   Duration  `toml:"slow_start"`
	Health      *Health   `toml:"health"`
	Backends    []Backend `toml:"backend"`
	Announce    *bool     `toml:"announce"` // with [bgp]; default true

	// Protection (all optional).
	MaxConnections       int      `toml:"max_connections"`
	NewConnectionRate    string   `toml:"new_connection_rate"`
	Burst                int      `toml:"burst"`
	PerClientRate        string   `toml:"per_client_rate"`
	PerClientConnections int      `toml:"per_client_connections"`
	Allow                []string `toml:"allow"`
	Deny                 []string `toml:"deny"`

	VIPAddr       netip.Addr     `toml:"-"`
	NewConnRate   Rate           `toml:"-"`
	ClientRate    Rate           `toml:"-"`
	AllowPrefixes []netip.Prefix `toml:"-"`
	DenyPrefixes  []netip.Prefix `toml:"-"`
}

// SNATEnabled reports whether the service masquerades toward its backends.
func (s *Service) SNATEnabled() bool { return s.SNAT == nil || *s.SNAT }

// Backend is one real server.
type Backend struct {
	Address        string  `toml:"address"`
	Weight         *int    `toml:"weight"`
	Backup         bool    `toml:"backup"`
	MaxConnections int     `toml:"max_connections"`
	Health         *Health `toml:"health"`

	Addr netip.AddrPort `toml:"-"`
}

// EffectiveWeight is the configured weight, 1 when unset.
func (b *Backend) EffectiveWeight() int {
	if b.Weight == nil {
		return 1
	}
	return *b.Weight
}

// Health is a health check definition ([service.health] or a backend override).
type Health struct {
	Type          string       `toml:"type"`
	Port          int          `toml:"port"`
	Interval      Duration     `toml:"interval"`
	Timeout       Duration     `toml:"timeout"`
	Rise          int          `toml:"rise"`
	Fall          int          `toml:"fall"`
	Path          string       `toml:"path"`
	Host          string       `toml:"host"`
	ExpectStatus  StatusRanges `toml:"expect_status"`
	ExpectBody    string       `toml:"expect_body"`
	TLSSkipVerify bool         `toml:"tls_skip_verify"`
	SNI           string       `toml:"sni"`
	Payload       string       `toml:"payload"`
	Expect        string       `toml:"expect"`
	Command       []string     `toml:"command"`
}

// Load reads, decodes and validates a config file. On failure the error is
// an Errors value listing every problem.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: err.Error()}}
	}
	return Parse(path, data)
}

// Parse decodes and validates config text; path is used in messages only.
func Parse(path string, data []byte) (*Config, error) {
	tree, err := parseTree(data)
	if err != nil {
		e := err.(*Error)
		e.File = path
		return nil, Errors{e}
	}
	d := &decoder{}
	cfg := &Config{Path: path}
	d.decodeStruct(tree.tbl, reflectValue(cfg))
	v := &validator{tree: tree, errs: d.errs}
	v.config(cfg)
	if len(v.errs) > 0 {
		sortErrors(v.errs)
		for _, e := range v.errs {
			e.File = path
		}
		return nil, v.errs
	}
	return cfg, nil
}
