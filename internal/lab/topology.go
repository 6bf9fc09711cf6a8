package lab

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"
)

// Addresses of the standard topology (documentation ranges only).
//
//	client (198.51.100.2, 2001:db8:1::2) --- lb wan (198.51.100.1, 2001:db8:1::1)
//	lb lan bridge (192.0.2.1, 2001:db8:2::1) --- backend i (192.0.2.1i, 2001:db8:2::1i)
//
// VIPs live in 203.0.113.0/24 and 2001:db8:3::/64, routed by the client to
// the lb; they are not assigned to any interface.
const (
	ClientV4 = "198.51.100.2"
	ClientV6 = "2001:db8:1::2"
	LBWanV4  = "198.51.100.1"
	LBLanV4  = "192.0.2.1"
	VIPv4    = "203.0.113.10"
	VIPv6    = "2001:db8:3::10"
)

// BackendV4 returns backend i's address (i from 1).
func BackendV4(i int) string { return fmt.Sprintf("192.0.2.%d", 10+i) }

// BackendV6 returns backend i's IPv6 address.
func BackendV6(i int) string { return fmt.Sprintf("2001:db8:2::%d", 10+i) }

// Standard is a client, an lb and n backends.
type Standard struct {
	*Lab
	Backends int
	Clients  int
}

// Client names the i-th client namespace ("client" for i = 0).
func (s *Standard) Client(i int) string {
	if i == 0 {
		return "client"
	}
	return fmt.Sprintf("client%d", i)
}

// ClientAddr returns client i's IPv4 address.
func ClientAddr(i int) string {
	if i == 0 {
		return ClientV4
	}
	return fmt.Sprintf("198.51.100.%d", 2+i)
}

// Backend names backend namespace i (from 1).
func (s *Standard) Backend(i int) string { return fmt.Sprintf("be%d", i) }

// NewStandard builds the standard topology with n backends and one client.
// The lb namespace forwards (lbd also turns that on); nothing runs yet.
func NewStandard(prefix string, n int) (*Standard, error) {
	return NewStandardClients(prefix, n, 1)
}

// NewStandardClients is NewStandard with several clients on the wan side.
func NewStandardClients(prefix string, n, clients int) (*Standard, error) {
	s := &Standard{Lab: New(prefix), Backends: n, Clients: clients}
	if err := s.build(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Standard) build() error {
	if _, err := s.AddNS("lb"); err != nil {
		return err
	}
	steps := [][]string{
		{"lb", "ip", "link", "add", "wanbr", "type", "bridge"},
		{"lb", "ip", "link", "set", "wanbr", "up"},
		{"lb", "ip", "addr", "add", LBWanV4 + "/24", "dev", "wanbr"},
		{"lb", "ip", "addr", "add", "2001:db8:1::1/64", "dev", "wanbr", "nodad"},
		{"lb", "ip", "link", "add", "lanbr", "type", "bridge"},
		{"lb", "ip", "link", "set", "lanbr", "up"},
		{"lb", "ip", "addr", "add", LBLanV4 + "/24", "dev", "lanbr"},
		{"lb", "ip", "addr", "add", "2001:db8:2::1/64", "dev", "lanbr", "nodad"},
		{"lb", "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"},
	}
	if err := s.steps(steps); err != nil {
		return err
	}
	for i := 0; i < s.Clients; i++ {
		c := s.Client(i)
		if _, err := s.AddNS(c); err != nil {
			return err
		}
		port := fmt.Sprintf("wan%d", i)
		if err := s.Link(c, "eth0", "lb", port); err != nil {
			return err
		}
		v6 := fmt.Sprintf("2001:db8:1::%d", 2+i)
		if err := s.steps([][]string{
			{"lb", "ip", "link", "set", port, "master", "wanbr"},
			{c, "ip", "addr", "add", ClientAddr(i) + "/24", "dev", "eth0"},
			{c, "ip", "addr", "add", v6 + "/64", "dev", "eth0", "nodad"},
			{c, "ip", "route", "add", "default", "via", LBWanV4},
			{c, "ip", "-6", "route", "add", "default", "via", "2001:db8:1::1"},
		}); err != nil {
			return err
		}
	}
	for i := 1; i <= s.Backends; i++ {
		b := s.Backend(i)
		if _, err := s.AddNS(b); err != nil {
			return err
		}
		port := fmt.Sprintf("lan%d", i)
		if err := s.Link(b, "eth0", "lb", port); err != nil {
			return err
		}
		if err := s.steps([][]string{
			{"lb", "ip", "link", "set", port, "master", "lanbr"},
			{b, "ip", "addr", "add", BackendV4(i) + "/24", "dev", "eth0"},
			{b, "ip", "addr", "add", BackendV6(i) + "/64", "dev", "eth0", "nodad"},
			{b, "ip", "route", "add", "default", "via", LBLanV4},
			{b, "ip", "-6", "route", "add", "default", "via", "2001:db8:2::1"},
		}); err != nil {
			return err
		}
	}
	return nil
}

func (s *Standard) steps(steps [][]string) error {
	for _, st := range steps {
		if err := s.Exec(st[0], st[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// StartBackends starts the labserver binary in every backend namespace with
// HTTP on :80, line-echo TCP on :7000 and UDP on :5353 (v4 and v6).
// healthDir, when set, holds one file per backend (be1.health ...) that
// /healthz answers with.
func (s *Standard) StartBackends(labserver, healthDir string) error {
	for i := 1; i <= s.Backends; i++ {
		if err := s.StartBackend(labserver, healthDir, i); err != nil {
			return err
		}
	}
	return nil
}

// StartBackend (re)starts backend i's labserver and returns once it listens.
func (s *Standard) StartBackend(labserver, healthDir string, i int) error {
	b := s.Backend(i)
	args := []string{labserver, "-name", b, "-http", ":80", "-tcp", ":7000", "-udp", ":5353"}
	if healthDir != "" {
		args = append(args, "-health-file", fmt.Sprintf("%s/%s.health", healthDir, b))
	}
	cmd := s.Command(b, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start labserver in %s: %w", b, err)
	}
	return s.WaitTCP(b, "127.0.0.1:80")
}

// StopBackend kills backend i's labserver processes.
func (s *Standard) StopBackend(i int) {
	killNetnsPids(s.NS(s.Backend(i)))
}

// WaitTCP waits until something accepts on addr inside a namespace.
func (s *Standard) WaitTCP(short, addr string) error {
	for i := 0; i < 100; i++ {
		if err := s.Exec(short, "bash", "-c", "exec 3<>/dev/tcp/"+strings.Replace(addr, ":", "/", 1)); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s in %s", addr, short)
}

// NSFile is the path of a namespace's handle, for setns-based clients.
func (l *Lab) NSFile(short string) string { return "/run/netns/" + l.NS(short) }

// Addr parses an address or panics (for constants).
func Addr(s string) netip.Addr { return netip.MustParseAddr(s) }

var _ = exec.Command
