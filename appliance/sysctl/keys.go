package sysctl

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Key is one /proc/sys entry that lbd manages.
type Key struct {
	// Name is the sysctl's dotted name, e.g. net.ipv4.ip_forward.
	Name string
	// Setting is the lb.toml key that sets it.
	Setting string
	// Default is lbd's default, as a user would write it in lb.toml.
	Default string
	// Doc says in one line why lbd sets it.
	Doc string
	// Global marks keys only the initial network namespace may write
	// (nf_conntrack_max on kernels >= 6.x is read-only in child netns).
	Global bool

	value   func(*Settings) (v string, set bool)
	timeout func(*Settings) time.Duration
}

// Keys lists every sysctl lbd writes, in the order Apply writes them. It
// returns a copy: the table itself is not to be changed at run time.
func Keys() []Key { return slices.Clone(keys) }

var keys = []Key{
	{
		Name: "net.netfilter.nf_conntrack_max", Setting: "conntrack.max", Default: "262144",
		Doc:    "NAT table size; global: only settable from the initial network namespace",
		Global: true,
		value: func(s *Settings) (string, bool) {
			return strconv.Itoa(s.ConntrackMax), s.ConntrackMax > 0
		},
	},
	timeoutKey("net.netfilter.nf_conntrack_tcp_timeout_established", "conntrack.tcp_established_timeout", "1h",
		"idle time after which an established TCP flow (and its NAT mapping) is forgotten",
		func(s *Settings) time.Duration { return s.TCPEstablishedTimeout }),
	timeoutKey("net.netfilter.nf_conntrack_tcp_timeout_time_wait", "conntrack.tcp_time_wait_timeout", "2m",
		"how long a closed TCP flow stays in TIME_WAIT",
		func(s *Settings) time.Duration { return s.TCPTimeWaitTimeout }),
	timeoutKey("net.netfilter.nf_conntrack_tcp_timeout_close_wait", "conntrack.tcp_close_wait_timeout", "1m",
		"how long a half-closed TCP flow stays in CLOSE_WAIT",
		func(s *Settings) time.Duration { return s.TCPCloseWaitTimeout }),
	timeoutKey("net.netfilter.nf_conntrack_tcp_timeout_fin_wait", "conntrack.tcp_fin_wait_timeout", "2m",
		"how long a TCP flow stays in FIN_WAIT",
		func(s *Settings) time.Duration { return s.TCPFinWaitTimeout }),
	timeoutKey("net.netfilter.nf_conntrack_udp_timeout", "conntrack.udp_timeout", "30s",
		"idle time of a UDP flow that has seen packets one way only",
		func(s *Settings) time.Duration { return s.UDPTimeout }),
	timeoutKey("net.netfilter.nf_conntrack_udp_timeout_stream", "conntrack.udp_stream_timeout", "2m",
		"idle time of a UDP flow that has seen replies",
		func(s *Settings) time.Duration { return s.UDPStreamTimeout }),
	{
		Name: "net.ipv4.ip_forward", Setting: "kernel.ip_forward", Default: "true",
		Doc:   "route IPv4 between the NICs (needed for NAT to backends)",
		value: func(s *Settings) (string, bool) { return boolValue(s.ForwardIPv4), true },
	},
	{
		Name: "net.ipv6.conf.all.forwarding", Setting: "kernel.ipv6_forwarding", Default: "true",
		Doc:   "route IPv6 between the NICs; note the kernel then ignores router advertisements",
		value: func(s *Settings) (string, bool) { return boolValue(s.ForwardIPv6), true },
	},
	{
		Name: "net.ipv4.conf.all.rp_filter", Setting: "kernel.rp_filter", Default: "2",
		Doc:   "reverse-path filter: 0 off, 1 strict, 2 loose (strict drops asymmetric NAT paths)",
		value: func(s *Settings) (string, bool) { return strconv.Itoa(s.RPFilter), true },
	},
	{
		Name: "net.ipv4.conf.default.rp_filter", Setting: "kernel.rp_filter", Default: "2",
		Doc:   "the same for NICs that appear later",
		value: func(s *Settings) (string, bool) { return strconv.Itoa(s.RPFilter), true },
	},
	{
		Name: "net.ipv4.tcp_syncookies", Setting: "kernel.tcp_syncookies", Default: "1",
		Doc:   "SYN cookies for the appliance's own listeners: 0 off, 1 on overflow, 2 always",
		value: func(s *Settings) (string, bool) { return strconv.Itoa(s.TCPSyncookies), true },
	},
}

// timeoutKey builds a conntrack timeout entry; the kernel takes whole
// seconds, so durations are rounded up (a 1.5s timeout becomes 2s, never 1s).
func timeoutKey(name, setting, def, doc string, get func(*Settings) time.Duration) Key {
	return Key{
		Name: name, Setting: setting, Default: def, Doc: doc,
		timeout: get,
		value: func(s *Settings) (string, bool) {
			d := get(s)
			if d <= 0 {
				return "", false
			}
			secs := (d + time.Second - 1) / time.Second
			return strconv.FormatInt(int64(secs), 10), true
		},
	}
}

func boolValue(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Doc renders Keys as a Markdown table for the README.
func Doc() string {
	var b strings.Builder
	b.WriteString("| lb.toml key | sysctl | default | what for |\n|---|---|---|---|\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "| `%s` | `%s` | `%s` | %s |\n", k.Setting, k.Name, k.Default, k.Doc)
	}
	return b.String()
}
