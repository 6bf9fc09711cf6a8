// Package enginecaps gives the routing engines lbd supervises (keepalived,
// conntrackd, BIRD) the network capabilities they need when lbd itself runs
// unprivileged.
//
// lbd.service runs lbd as user lbd with CAP_NET_ADMIN, CAP_NET_RAW and
// CAP_NET_BIND_SERVICE, and lbd clears its ambient set at start so exec
// health checks get none. An engine started as lbd's child would then run
// as user lbd without capabilities: keepalived could not add the VIPs or
// send adverts, BIRD could not bind port 179 or program routes. The engines
// are started with those three as ambient capabilities again (Go's
// SysProcAttr.AmbientCaps: the child adds them to its permitted and
// inheritable sets with capset, which the unit's syscall filter allows for
// this, then raises them). Run as root (the namespace tests, a plain
// `lbd run`), the child inherits root's capabilities and nothing is set.
package enginecaps

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Net are the capabilities an engine gets: interfaces, addresses, routes
// and netfilter (NET_ADMIN), raw and packet sockets for VRRP, ARP and BFD
// (NET_RAW), and BGP's port 179 (NET_BIND_SERVICE).
var Net = []uintptr{unix.CAP_NET_ADMIN, unix.CAP_NET_RAW, unix.CAP_NET_BIND_SERVICE}

// Apply sets the ambient capabilities of a child about to start when lbd
// is not root.
func Apply(attr *syscall.SysProcAttr) {
	if attr == nil || os.Geteuid() == 0 {
		return
	}
	attr.AmbientCaps = append([]uintptr(nil), Net...)
}
