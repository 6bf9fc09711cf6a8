// Package sysctl applies the kernel settings a NAT load balancer depends on
// (conntrack size and timeouts, forwarding, reverse-path filtering, SYN
// cookies) by writing /proc/sys, and reads conntrack table usage.
//
// Every key lbd touches is listed in Keys() with its default, so the README
// and `lbd check` can show exactly what the appliance changes.
package sysctl

import (
	"fmt"
	"time"
)

// Settings is the desired value of every kernel setting lbd manages.
// Start from Defaults() and override what the config sets.
type Settings struct {
	// ConntrackMax is net.netfilter.nf_conntrack_max, the NAT table size.
	// 0 leaves the kernel's value. The key is global: only the initial
	// network namespace may write it (see Apply).
	ConntrackMax int

	// Conntrack timeouts (whole seconds in the kernel; 0 leaves the kernel's
	// value). An established TCP flow idle longer than TCPEstablishedTimeout
	// is forgotten and its NAT mapping lost.
	TCPEstablishedTimeout time.Duration
	TCPTimeWaitTimeout    time.Duration
	TCPCloseWaitTimeout   time.Duration
	TCPFinWaitTimeout     time.Duration
	// UDPTimeout applies to a UDP flow that has seen traffic one way only,
	// UDPStreamTimeout to one that has seen replies (assured).
	UDPTimeout       time.Duration
	UDPStreamTimeout time.Duration

	// ForwardIPv4 / ForwardIPv6 route packets between the NICs; NAT to
	// backends needs both for the families in use. Note IPv6 forwarding
	// makes the kernel ignore router advertisements (accept_ra=1 behaves as
	// 0), so a forwarding appliance needs static IPv6 or accept_ra=2.
	ForwardIPv4 bool
	ForwardIPv6 bool

	// RPFilter is net.ipv4.conf.{all,default}.rp_filter: 0 off, 1 strict,
	// 2 loose. Strict filtering drops asymmetric NAT paths (replies of
	// snat=false backends arriving on another NIC), so the default is loose.
	// The kernel uses max(all, <interface>), so all=2 makes every NIC at
	// least loose; 0 leaves each interface's own value in force.
	RPFilter int

	// TCPSyncookies is net.ipv4.tcp_syncookies (0 off, 1 on overflow,
	// 2 always). It protects the appliance's own listeners (status page);
	// forwarded flows to backends are not affected.
	TCPSyncookies int
}

// Defaults returns the settings lbd applies when the config says nothing.
// Conntrack established timeout is 1h rather than the kernel's 5 days so
// that a flood of abandoned flows cannot hold the NAT table full for days.
func Defaults() Settings {
	return Settings{
		ConntrackMax:          262144,
		TCPEstablishedTimeout: time.Hour,
		TCPTimeWaitTimeout:    2 * time.Minute,
		TCPCloseWaitTimeout:   time.Minute,
		TCPFinWaitTimeout:     2 * time.Minute,
		UDPTimeout:            30 * time.Second,
		UDPStreamTimeout:      2 * time.Minute,
		ForwardIPv4:           true,
		ForwardIPv6:           true,
		RPFilter:              2,
		TCPSyncookies:         1,
	}
}

// Validate reports values the kernel would reject or that make no sense,
// naming the setting; Apply calls it first.
func (s Settings) Validate() error {
	if s.ConntrackMax < 0 {
		return fmt.Errorf("conntrack max %d: must be >= 0 (0 keeps the kernel's value)", s.ConntrackMax)
	}
	for _, k := range keys {
		if k.timeout == nil {
			continue
		}
		d := k.timeout(&s)
		if d < 0 || (d > 0 && d < time.Second) {
			return fmt.Errorf("%s %v: must be 0 (keep the kernel value) or at least 1s", k.Setting, d)
		}
	}
	if s.RPFilter < 0 || s.RPFilter > 2 {
		return fmt.Errorf("rp_filter %d: must be 0 (off), 1 (strict) or 2 (loose)", s.RPFilter)
	}
	if s.TCPSyncookies < 0 || s.TCPSyncookies > 2 {
		return fmt.Errorf("tcp_syncookies %d: must be 0, 1 or 2", s.TCPSyncookies)
	}
	return nil
}
