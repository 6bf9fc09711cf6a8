package daemon

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"lbd/appliance/bgp"
	"lbd/appliance/control"
	"lbd/appliance/status"
	"lbd/config"
	"lbd/lb"
)

// A fleet ([bgp]): BIRD, lbd's child, announces the VIPs this node can
// serve to the upstream routers, which spread flows over the fleet by
// ECMP. The sync loop decides what is announced, like everything else it
// owns: a VIP is announced while lbd is ready, past announce_delay, not
// draining or stopping, and at least one of its announced services has a
// usable backend (a non-empty slot table). The decision becomes blackhole
// routes in kernel table bgp.Table, which BIRD learns and exports.

// fleet is the running BGP side. Created by the loop on the first config
// with [bgp]; the loop alone touches routes and table.
type fleet struct {
	sup    *bgp.Supervisor
	routes *bgp.Routes
	// table is what kernel table bgp.Table holds as far as lbd knows; nil
	// = unknown (read it back on the next sync).
	table map[netip.Addr]bool
	retry *time.Timer
}

// fleetGate is what, besides backends, decides announcements.
type fleetGate struct {
	readyAt    time.Time // zero until lbd is READY
	drainSince time.Time // zero unless drain-node
	stopping   bool
}

// defaultNodeDrainTimeout bounds drain-node's wait (and SIGTERM's with
// [bgp]) for the router to stop sending new flows.
const defaultNodeDrainTimeout = 30 * time.Second

// nodeDrainQuiet is how long no new flow must arrive before the router is
// taken to have moved new connections elsewhere.
const nodeDrainQuiet = 2 * time.Second

// prepareBGP checks the BIRD side of cfg before anything changes and
// returns what makes it so once the rest of the config is applied. It runs
// in the loop (applyConfig).
func (d *Daemon) prepareBGP(cfg *config.Config) (func(), error) {
	d.mu.Lock()
	f := d.pub.fleet
	d.mu.Unlock()
	if cfg.BGP == nil {
		if f == nil {
			return func() {}, nil
		}
		return func() {
			d.log.Warn("[bgp] removed: withdrawing every VIP and stopping bird")
			d.closeFleet()
		}, nil
	}
	text := bgp.Render(cfg.BGP, cfg.Path)
	newFleet := f == nil
	if newFleet {
		routes, err := bgp.NewRoutes()
		if err != nil {
			return nil, err
		}
		f = &fleet{sup: bgp.NewSupervisor(d.opts.BirdBin, d.runDir(), d.log), routes: routes}
	}
	if err := f.sup.Check(text); err != nil {
		if newFleet {
			f.routes.Close()
		}
		return nil, err
	}
	return func() {
		if newFleet {
			d.mu.Lock()
			d.pub.fleet = f
			d.mu.Unlock()
		}
		if err := f.sup.Apply(text); err != nil {
			d.log.Error("bird config", "err", err)
		}
		// A config that brings [bgp] after lbd became ready starts its
		// announce_delay now: wake the loop when it has passed.
		time.AfterFunc(cfg.BGP.Delay()+10*time.Millisecond, func() { d.record(func(*inputs) {}) })
	}, nil
}

// runDir holds BIRD's config, control socket and pid file: beside lbd's
// own control socket (/run/lbd on the appliance, a temp dir in tests).
func (d *Daemon) runDir() string { return filepath.Dir(d.opts.SocketPath) }

// closeFleet withdraws everything and stops BIRD; called with the loop
// stopped or from the loop.
func (d *Daemon) closeFleet() {
	d.mu.Lock()
	f := d.pub.fleet
	d.pub.fleet = nil
	d.pub.vips = nil
	d.mu.Unlock()
	if f == nil {
		return
	}
	if f.retry != nil {
		f.retry.Stop()
	}
	if _, removed, err := f.routes.Set(nil); err != nil {
		d.log.Error("withdrawing the VIPs", "err", err)
	} else if len(removed) > 0 {
		d.log.Info("withdrew every VIP", "vips", addrStrings(removed))
	}
	f.sup.Stop()
	f.routes.Close()
}

// syncAnnouncements makes table bgp.Table hold the VIPs to announce. It
// runs in the loop after each successful sync; it costs no netlink unless
// the answer changed.
func (d *Daemon) syncAnnouncements() {
	d.mu.Lock()
	f, cfg, gate := d.pub.fleet, d.pub.cfg, d.in.fleet
	d.mu.Unlock()
	if f == nil || cfg == nil {
		return
	}
	want, vips := announcements(cfg, d.pub.planned, gate, time.Now())
	if f.table == nil || !mapsEqual(want, f.table) {
		added, removed, err := f.routes.Set(want)
		if err != nil {
			f.table = nil
			d.log.Error("announcements not applied; retrying", "err", err)
			if f.retry == nil {
				f.retry = time.AfterFunc(time.Second, func() { d.record(func(*inputs) {}) })
			} else {
				f.retry.Reset(time.Second)
			}
		} else {
			f.table = want
		}
		if len(added) > 0 {
			d.log.Info("VIPs announced", "vips", addrStrings(added))
		}
		if len(removed) > 0 {
			d.log.Warn("VIPs withdrawn", "vips", addrStrings(removed), "why", reasons(vips, removed))
		}
	}
	d.mu.Lock()
	d.pub.vips = vips
	d.mu.Unlock()
}

// announcements is the pure decision: which VIPs to announce now, and
// each VIP's status line.
func announcements(cfg *config.Config, planned map[string]lb.Service, g fleetGate, now time.Time) (map[netip.Addr]bool, []status.VIPAnnounce) {
	type vipState struct {
		services       []string
		announce, usab bool
	}
	byVIP := map[netip.Addr]*vipState{}
	var order []netip.Addr
	for i := range cfg.Services {
		s := &cfg.Services[i]
		v, ok := byVIP[s.VIPAddr]
		if !ok {
			v = &vipState{}
			byVIP[s.VIPAddr] = v
			order = append(order, s.VIPAddr)
		}
		v.services = append(v.services, s.Name)
		if !s.Announced(cfg) {
			continue
		}
		v.announce = true
		if p, ok := planned[s.Name]; ok && len(p.Slots) > 0 {
			v.usab = true
		}
	}
	slices.SortFunc(order, func(a, b netip.Addr) int { return a.Compare(b) })
	want := map[netip.Addr]bool{}
	out := make([]status.VIPAnnounce, 0, len(order))
	for _, a := range order {
		v := byVIP[a]
		st := status.VIPAnnounce{VIP: a.String(), Services: v.services}
		switch {
		case !v.announce:
			st.Reason = status.WithdrawnOff
		case g.stopping:
			st.Reason = status.WithdrawnStopping
		case !g.drainSince.IsZero():
			st.Reason = status.WithdrawnDraining
		case g.readyAt.IsZero():
			st.Reason = status.WithdrawnNotReady
		case now.Before(g.readyAt.Add(cfg.BGP.Delay())):
			st.Reason = status.WithdrawnDelay
		case !v.usab:
			st.Reason = status.WithdrawnNoBackend
		default:
			st.Announced = true
			want[a] = true
		}
		out = append(out, st)
	}
	return want, out
}

// fleetReady opens the gate once lbd is READY and wakes the loop again
// when announce_delay has passed.
func (d *Daemon) fleetReady() {
	cfg := d.configOrNil()
	d.record(func(in *inputs) { in.fleet.readyAt = time.Now() })
	if cfg != nil && cfg.BGP != nil {
		time.AfterFunc(cfg.BGP.Delay()+10*time.Millisecond, func() { d.record(func(*inputs) {}) })
	}
}

func (d *Daemon) fleetActive() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pub.fleet != nil
}

// drainNode is `lbd drain-node [TIMEOUT]`: withdraw every VIP, then wait
// until the router has moved new connections elsewhere (no new flow for
// nodeDrainQuiet), at most TIMEOUT. The node stays drained until
// `lbd undrain-node` (or a restart).
func (d *Daemon) drainNode(args []string) control.Response {
	timeout := defaultNodeDrainTimeout
	if len(args) > 1 {
		return control.Response{Errors: []string{"usage: lbd drain-node [--timeout DURATION]"}}
	}
	if len(args) == 1 && args[0] != "" && args[0] != "0s" {
		t, err := time.ParseDuration(args[0])
		if err != nil || t < 0 {
			return control.Response{Errors: []string{fmt.Sprintf("bad timeout %q; expected a duration such as 30s", args[0])}}
		}
		timeout = t
	}
	if !d.fleetActive() {
		return control.Response{Errors: []string{"drain-node needs [bgp]: without it this node announces nothing a router could move away"}}
	}
	msg, err := d.withdrawAndWait(func(in *inputs) {
		if in.fleet.drainSince.IsZero() {
			in.fleet.drainSince = time.Now()
		}
	}, timeout)
	if err != nil {
		return control.Response{Errors: []string{err.Error()}}
	}
	return control.Response{OK: true, Message: "node draining: " + msg + "; `lbd undrain-node` announces again"}
}

func (d *Daemon) undrainNode() control.Response {
	if !d.fleetActive() {
		return control.Response{Errors: []string{"undrain-node needs [bgp]"}}
	}
	was := false
	gen := d.record(func(in *inputs) {
		was = !in.fleet.drainSince.IsZero()
		in.fleet.drainSince = time.Time{}
	})
	if !was {
		return control.Response{Errors: []string{"this node is not draining"}}
	}
	if err := d.waitApplied(gen, applyTimeout); err != nil {
		return control.Response{Errors: []string{fmt.Sprintf("undrain recorded but not applied yet: %v", err)}}
	}
	d.log.Info("node undrained: announcing the healthy VIPs again")
	return control.Response{OK: true, Message: "node announces its healthy VIPs again"}
}

// withdrawAndWait records a gate change that withdraws every VIP, waits
// until the routes are gone, then until no new flow arrived for
// nodeDrainQuiet (the routers have moved new connections elsewhere), at
// most timeout. It reports what it saw.
func (d *Daemon) withdrawAndWait(f func(in *inputs), timeout time.Duration) (string, error) {
	start := time.Now()
	gen := d.record(f)
	if err := d.waitApplied(gen, applyTimeout); err != nil {
		return "", fmt.Errorf("withdraw recorded but not applied yet: %v", err)
	}
	d.log.Warn("every VIP withdrawn; waiting for the routers to move new connections away", "quiet", nodeDrainQuiet, "timeout", timeout)
	deadline := start.Add(timeout)
	last, lastChange := d.newFlowTotal(), time.Now()
	first := last
	for time.Now().Before(deadline) && time.Since(lastChange) < nodeDrainQuiet {
		time.Sleep(100 * time.Millisecond)
		if n := d.newFlowTotal(); n != last {
			last, lastChange = n, time.Now()
		}
	}
	active := d.activeFlowTotal()
	quiet := time.Since(lastChange) >= nodeDrainQuiet
	msg := fmt.Sprintf("every VIP withdrawn; %d new flows arrived after the withdraw, the last %s after it", last-first, lastChange.Sub(start).Round(time.Millisecond))
	if !quiet {
		msg += fmt.Sprintf("; still receiving new flows at the %s timeout", timeout)
	}
	msg += fmt.Sprintf("; %d established flows held here move with the routes and get a reset on the other nodes", active)
	d.log.Warn("node drain", "result", msg)
	return msg, nil
}

// newFlowTotal sums the services' new-flow counters.
func (d *Daemon) newFlowTotal() uint64 {
	counters, err := d.dp.ReadCounters()
	if err != nil {
		return 0
	}
	var n uint64
	for _, c := range counters {
		n += c.Flows
	}
	return n
}

func (d *Daemon) activeFlowTotal() int {
	active, err := d.ct.ActiveConnections(d.plannedList())
	if err != nil {
		return 0
	}
	n := 0
	for _, c := range active {
		n += c
	}
	return n
}

// stopFleet is SIGTERM with [bgp]: withdraw and wait like drain-node, so
// a rolling restart fails no new connection; then the caller stops.
func (d *Daemon) stopFleet() {
	if !d.fleetActive() {
		return
	}
	if _, err := d.withdrawAndWait(func(in *inputs) { in.fleet.stopping = true }, defaultNodeDrainTimeout); err != nil {
		d.log.Error("withdrawing before stop", "err", err)
	}
}

// bgpStatus asks BIRD for its sessions (status requests, not the loop).
func (d *Daemon) bgpStatus(cfg *config.Config) *status.BGP {
	d.mu.Lock()
	f, vips, gate := d.pub.fleet, d.pub.vips, d.in.fleet
	d.mu.Unlock()
	if cfg == nil || cfg.BGP == nil {
		return nil
	}
	st := &status.BGP{ASN: cfg.BGP.ASN, RouterID: cfg.BGP.RouterIDAddr.String(), VIPs: vips,
		Draining: !gate.drainSince.IsZero() || gate.stopping, DrainingSince: gate.drainSince,
		Neighbors: []status.BGPNeighbor{}}
	if st.VIPs == nil {
		st.VIPs = []status.VIPAnnounce{}
	}
	var peers map[string]bgp.Peer
	var bfd map[netip.Addr]bgp.BFDSession
	if f != nil {
		ps := f.sup.State()
		st.Bird = status.BirdState{Running: ps.Running, PID: ps.PID, Restarts: ps.Restarts, LastExit: ps.LastExit}
		ctl := f.sup.Ctl()
		ctl.Timeout = time.Second
		if text, err := ctl.Run("show protocols all"); err != nil {
			st.Bird.Error = err.Error()
		} else {
			peers = bgp.ParsePeers(text)
		}
		if text, err := ctl.Run("show bfd sessions"); err == nil {
			bfd = bgp.ParseBFD(text)
		}
	}
	for _, n := range cfg.BGP.Neighbors {
		nb := status.BGPNeighbor{Address: n.Addr.String(), ASN: n.ASN, State: "unknown"}
		if p, ok := peers[bgp.PeerName(n.Addr)]; ok {
			nb.State, nb.Up, nb.Since, nb.Exported, nb.LastError = p.BGPState, p.Up(), p.Since, p.Exported, p.LastError
		}
		if n.BFD {
			nb.BFD = "Down"
			if s, ok := bfd[n.Addr]; ok {
				nb.BFD = s.State
			}
		}
		st.Neighbors = append(st.Neighbors, nb)
	}
	return st
}

func mapsEqual(a, b map[netip.Addr]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	sort.Strings(out)
	return out
}

func reasons(vips []status.VIPAnnounce, removed []netip.Addr) string {
	var parts []string
	for _, a := range removed {
		for _, v := range vips {
			if v.VIP == a.String() {
				parts = append(parts, v.VIP+": "+v.Reason)
			}
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}
