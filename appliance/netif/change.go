package netif

import "fmt"

// Change is one netlink (or sysctl) change the Manager made. Apply and
// SetVIPs return the list so the daemon can log it and tests can check that a
// re-apply changes nothing.
type Change struct {
	Link   string // interface name after the change
	Action string // e.g. "rename", "mtu", "up", "add-address", "del-route", "add-vip"
	Detail string
}

func (c Change) String() string {
	return fmt.Sprintf("%s: %s %s", c.Link, c.Action, c.Detail)
}
