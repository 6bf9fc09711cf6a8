package daemon

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"

	"lbd/appliance/control"
	"lbd/appliance/status"
	"lbd/config"
	"lbd/lb"
	"lbd/pair"
)

// A node of an HA pair ([ha]). keepalived (VRRP) and conntrackd (FTFW)
// run as lbd's children, started from lbd in its own network namespace:
// that is the same on the appliance and in the namespace tests, their
// life is tied to lbd's (Pdeathsig), and lbd hears keepalived's role on a
// FIFO it owns. The role is one more input to the sync loop (recorded
// under the mutex, then a kick); the data plane is the same on both
// nodes, so a takeover needs no apply: keepalived moves the VIPs and
// lan_address, the pair node commits conntrackd's synced flows. After
// each sync the loop tells the node whether it can serve; one that
// cannot is held in FAULT so the peer takes over.

// haDir is the runtime directory of the pair's files: beside the control
// socket (/run/lbd/ha on the appliance; each test node has its own).
func (d *Daemon) haDir() string {
	return filepath.Join(filepath.Dir(d.opts.SocketPath), "ha")
}

// pairSetter is a data plane that takes the pair's options (the real one).
type pairSetter interface{ SetPair(lb.Pair) }

// setPair sets the data plane's pair options for cfg before its apply:
// with [ha], snat services masquerade to the floating lan_address and
// mid-stream TCP that would open a flow is dropped (see lb.Pair).
func (d *Daemon) setPair(cfg *config.Config) {
	ps, ok := d.dp.(pairSetter)
	if !ok {
		return
	}
	var p lb.Pair
	if h := cfg.HA; h != nil {
		p.Guard = true
		if a := h.LANPrefix.Addr(); a.Is4() {
			p.SNAT4 = a
		} else {
			p.SNAT6 = a
		}
		if h.LANPrefix6.IsValid() {
			p.SNAT6 = h.LANPrefix6.Addr()
		}
	}
	ps.SetPair(p)
}

// haApply starts, reconfigures or stops this node's pair for cfg. It runs
// in the loop after the data plane holds cfg. A failure is logged and
// shown in status; the data plane serves on regardless.
func (d *Daemon) haApply(cfg *config.Config) {
	d.mu.Lock()
	node := d.haNode
	d.mu.Unlock()
	if cfg.HA == nil {
		if node != nil {
			d.log.Warn("ha: [ha] removed; stopping keepalived and conntrackd (the VIPs go with them)")
			node.Close()
			d.mu.Lock()
			d.haNode, d.pub.haErr = nil, ""
			d.mu.Unlock()
		}
		return
	}
	d.mu.Lock()
	d.haTried = time.Now()
	d.mu.Unlock()
	spec, err := haSpec(cfg, d.haDir())
	if err == nil {
		if node == nil {
			node = pair.New(pair.Options{Log: d.log, Output: os.Stderr, OnRole: d.onRole})
			d.mu.Lock()
			d.haNode = node
			d.mu.Unlock()
		}
		err = node.Apply(spec)
	}
	d.mu.Lock()
	d.pub.haErr = ""
	if err != nil {
		d.pub.haErr = err.Error()
	}
	d.mu.Unlock()
	if err != nil {
		d.log.Error("ha: pair not started", "err", err)
	}
}

// haRetry runs on lbd's one-second tick: a pair that could not start (no
// address of its own on the sync link yet, say, before DHCP or a NIC
// came up) is tried again every few seconds in the loop, without a reload.
func (d *Daemon) haRetry() {
	d.mu.Lock()
	cfg, herr, last := d.pub.cfg, d.pub.haErr, d.haTried
	d.mu.Unlock()
	if herr == "" || cfg == nil || cfg.HA == nil || time.Since(last) < haRetryEvery {
		return
	}
	d.record(func(in *inputs) {
		in.calls = append(in.calls, func() {
			// The config serving when the loop runs this, not the one
			// of the tick: a reload may have come between.
			if c := d.configOrNil(); c != nil {
				d.haApply(c)
			}
		})
	})
}

const haRetryEvery = 5 * time.Second

// haSpec renders [ha] plus the services' VIPs into the pair's spec.
func haSpec(cfg *config.Config, dir string) (pair.Spec, error) {
	h := cfg.HA
	s := pair.Spec{Interface: h.Interface, RouterID: h.RouterID, Priority: h.Priority, Peer: h.PeerAddr,
		AdvertInterval: h.AdvertInterval.D(), Preempt: h.Preempt, LANInterface: h.LANInterface, LANAddress: h.LANPrefix, LANAddress6: h.LANPrefix6,
		SyncInterface: h.SyncInterface, SyncPeer: h.SyncPeerAddr, Dir: dir}
	seen := map[netip.Addr]bool{}
	for _, svc := range cfg.Services {
		if !seen[svc.VIPAddr] {
			seen[svc.VIPAddr] = true
			s.VIPs = append(s.VIPs, svc.VIPAddr)
		}
	}
	local, err := syncLocal(h)
	if err != nil {
		return s, err
	}
	s.SyncLocal = local
	return s, nil
}

// syncLocal finds this node's own address on the sync link: the one on
// sync_peer's subnet that is not the floating lan_address.
func syncLocal(h *config.HA) (netip.Addr, error) {
	link, err := netlink.LinkByName(h.SyncInterface)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("ha.sync_interface %q: %w", h.SyncInterface, err)
	}
	fam := netlink.FAMILY_V4
	if h.SyncPeerAddr.Is6() {
		fam = netlink.FAMILY_V6
	}
	addrs, err := netlink.AddrList(link, fam)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("ha.sync_interface %q: %w", h.SyncInterface, err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		ones, _ := a.Mask.Size()
		if ip == h.LANPrefix.Addr() || ip == h.LANPrefix6.Addr() || ip.IsLinkLocalUnicast() {
			continue
		}
		if netip.PrefixFrom(ip, ones).Masked().Contains(h.SyncPeerAddr) {
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("ha.sync_interface %q has no address of its own on the subnet of sync_peer %s (conntrackd binds it)", h.SyncInterface, h.SyncPeerAddr)
}

// onRole is the pair node's report of a keepalived transition: record it
// and wake the loop, like any other input.
func (d *Daemon) onRole(role, transition string) {
	d.record(func(in *inputs) {
		in.haRole, in.haTransition = role, transition
	})
}

// haAfterSync runs in the loop after each sync: it publishes the role and
// tells the node whether this appliance can serve. It cannot when lbd is
// not READY (no config applied, or the kernel out of sync), or when no
// service has a live backend. A link down is keepalived's own check
// (track_interface).
func (d *Daemon) haAfterSync() {
	d.mu.Lock()
	node := d.haNode
	if d.in.haRole != "" && d.in.haRole != d.pub.haRole {
		d.pub.haRole = d.in.haRole
		d.log.Info("ha: role is now "+d.pub.haRole, "transition", d.in.haTransition)
	}
	cfg, inSync, planned := d.pub.cfg, d.pub.sync.InSync, d.pub.planned
	d.mu.Unlock()
	if node == nil {
		return
	}
	node.SetServing(canServe(cfg, inSync, planned))
}

// canServe is the verdict haAfterSync hands the pair, and why not.
func canServe(cfg *config.Config, inSync bool, planned map[string]lb.Service) (bool, string) {
	switch {
	case cfg == nil:
		return false, "no config applied"
	case !inSync:
		return false, "the kernel is out of sync with the config"
	case len(cfg.Services) > 0 && !anyLive(planned):
		return false, "no service has a live backend"
	}
	return true, ""
}

// anyLive reports whether some service has a backend in its slots.
func anyLive(planned map[string]lb.Service) bool {
	for _, p := range planned {
		if len(p.Slots) > 0 { // nil when no backend is usable
			return true
		}
	}
	return false
}

// haStatus is the pair's part of the snapshot (nil on a single appliance).
func (d *Daemon) haStatus() *status.HA {
	d.mu.Lock()
	node, herr := d.haNode, d.pub.haErr
	d.mu.Unlock()
	if node == nil {
		if herr == "" {
			return nil
		}
		return &status.HA{Mode: "vrrp", Role: pair.RoleUnknown, NotServing: herr}
	}
	st := node.Status()
	if herr != "" {
		st.NotServing = herr
	}
	return &st
}

// haRequest answers `lbd ha release|resume`.
func (d *Daemon) haRequest(args []string) control.Response {
	d.mu.Lock()
	node := d.haNode
	d.mu.Unlock()
	if node == nil {
		return control.Response{Errors: []string{"this lbd runs no pair (no [ha] section)"}}
	}
	if len(args) == 0 {
		return control.Response{Errors: []string{"usage: lbd ha release [--timeout DURATION] | lbd ha resume"}}
	}
	switch args[0] {
	case "release":
		timeout := 30 * time.Second
		if len(args) > 1 && args[1] != "" {
			t, err := time.ParseDuration(args[1])
			if err != nil || t <= 0 {
				return control.Response{Errors: []string{fmt.Sprintf("bad timeout %q; expected a duration such as 30s", args[1])}}
			}
			timeout = t
		}
		msg, err := node.Release(timeout)
		if err != nil {
			return control.Response{Errors: []string{err.Error()}}
		}
		d.log.Warn("ha: released by lbd ha release", "result", msg)
		return control.Response{OK: true, Message: msg}
	case "resume":
		if err := node.Resume(); err != nil {
			return control.Response{Errors: []string{err.Error()}}
		}
		return control.Response{OK: true, Message: "resumed: this node may take the VIPs again"}
	}
	return control.Response{Errors: []string{fmt.Sprintf("unknown ha command %q; expected release or resume", args[0])}}
}

// haClose stops the pair at exit.
func (d *Daemon) haClose() {
	d.mu.Lock()
	node := d.haNode
	d.haNode = nil
	d.mu.Unlock()
	if node != nil {
		node.Close()
	}
}
