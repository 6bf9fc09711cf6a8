package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"runtime/debug"
	"sort"
	"time"

	"lbd/appliance/status"
	"lbd/config"
	"lbd/health"
	"lbd/lb"
)

// inputs are what event sources record for the sync loop. Everything here
// is guarded by Daemon.mu; nothing but the loop reads it to act on the
// kernel.
type inputs struct {
	// reload is a config waiting to be applied, with whoever waits for it.
	reload *reloadRequest
	// dirty names the services to re-plan; resync re-plans all of them
	// and rewrites the whole desired state (after a failure).
	dirty  map[string]bool
	resync bool
	// downs are backends that went down since the last sync: their
	// persistence entries (and, with down_action = flush, flows) go after
	// the slots no longer point at them.
	downs []backendKey
	// healthChanged: health.json needs writing before the next apply.
	healthChanged bool
	throttles     map[string]lb.Rate
	upSince       map[backendKey]time.Time  // when a backend came up (slow start)
	full          map[backendKey]bool       // backends at their max_connections
	shares        map[backendKey]float64    // lc/wlc slot shares (conntrackTick)
	drains        map[backendKey]drainState // runtime drains (lbd drain)
	drainFlushes  []backendKey              // drains past their deadline
	calls         []func()                  // run by the loop (inLoop)
	nextDump      time.Time                 // conntrackTick waits for it after a slow dump
	// adopted are backends the previous lbd left down (health.json);
	// kernelSlots what the kernel served at start, when there was no file.
	adopted     map[backendKey]bool
	kernelSlots map[string]map[netip.AddrPort]int
	// gen counts recorded changes; the loop copies it when it starts a
	// sync so waiters know whether their change is in the kernel.
	gen uint64
	// wedge (test hook) blocks the loop.
	wedge bool
	// haRole is keepalived's newest role (ha.go), haTransition why.
	haRole, haTransition string
	// fleet gates the BGP announcements (fleet.go).
	fleet fleetGate
}

func newInputs() inputs {
	return inputs{dirty: map[string]bool{}, throttles: map[string]lb.Rate{},
		upSince: map[backendKey]time.Time{}, full: map[backendKey]bool{}, shares: map[backendKey]float64{},
		drains: map[backendKey]drainState{}}
}

// published is what the loop made true, for status and control replies.
type published struct {
	cfg *config.Config
	// planned is written only by the sync loop, under mu.
	planned   map[string]lb.Service
	loadedAt  time.Time
	lastErrs  []string
	source    string
	reloadsOK int
	reloadsNG int
	lastLoad  time.Time
	// appliedGen is the newest inputs.gen the kernel holds.
	appliedGen uint64
	sync       status.Sync
	// haRole is the role the loop last acted on; haErr why the pair
	// could not start (ha.go).
	haRole, haErr string
	// fleet is the BGP side ([bgp]); vips what it announces and why not.
	fleet *fleet
	vips  []status.VIPAnnounce
}

type reloadRequest struct {
	cfg     *config.Config
	source  string // last good copy, when not the config file
	fileErr error  // the config file's errors when source is set
	first   bool
	replies []chan reloadResult
}

type reloadResult struct {
	err    error
	lifted []string // throttles the reload lifted
}

// kick wakes the loop; never blocks.
func (d *Daemon) kick() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// record runs f on the inputs under the lock, counts a change and wakes
// the loop. It returns the change's generation for waitApplied.
func (d *Daemon) record(f func(in *inputs)) uint64 {
	d.mu.Lock()
	f(&d.in)
	d.in.gen++
	gen := d.in.gen
	d.mu.Unlock()
	d.kick()
	return gen
}

// waitApplied blocks until the kernel holds change gen, a sync fails
// after it was recorded, or timeout passes.
func (d *Daemon) waitApplied(gen uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	t := time.AfterFunc(timeout, func() { d.mu.Lock(); d.synced.Broadcast(); d.mu.Unlock() })
	defer t.Stop()
	d.mu.Lock()
	defer d.mu.Unlock()
	failures := d.pub.sync.Failures
	for d.pub.appliedGen < gen {
		if d.pub.sync.Failures > failures {
			return fmt.Errorf("kernel refused the change (retrying with backoff): %s", d.pub.sync.LastError)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not applied after %s; the sync loop is busy or stuck", timeout)
		}
		d.synced.Wait()
	}
	return nil
}

// syncLoop is the only goroutine that changes the kernel. It wakes on a
// recorded change, on its retry timer after a failure, and once a second
// (its heartbeat for the watchdog).
func (d *Daemon) syncLoop(ctx context.Context) {
	defer close(d.loopDone)
	heartbeat := time.NewTicker(time.Second)
	defer heartbeat.Stop()
	var retry <-chan time.Time
	backoff := time.Duration(0)
	var last time.Time
	for {
		d.beat.Store(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-heartbeat.C:
			continue
		case <-retry:
		case <-d.wake:
		}
		retry = nil
		// Coalesce: changes arriving while we wait join this sync.
		if wait := d.opts.MinSyncInterval - time.Since(last); wait > 0 {
			time.Sleep(wait)
		}
		d.maybeWedge(ctx)
		last = time.Now()
		d.busySince.Store(last)
		err := d.syncOnce()
		d.haAfterSync()
		d.busySince.Store(time.Time{})
		if err == nil {
			backoff = 0
			continue
		}
		backoff = min(max(2*backoff, d.opts.RetryMin), d.opts.RetryMax)
		d.log.Error("sync failed; retrying", "err", err, "retry_in", backoff)
		retry = time.After(backoff)
	}
}

// maybeWedge blocks the loop while the test hook asks for it.
func (d *Daemon) maybeWedge(ctx context.Context) {
	d.mu.Lock()
	wedged := d.in.wedge
	d.mu.Unlock()
	if wedged {
		d.log.Warn("sync loop wedged by the debug-wedge test hook")
		<-ctx.Done()
	}
}

// syncOnce applies the newest inputs: a pending reload first (it replans
// everything), else the dirty services. It returns an error only for a
// failed apply that must be retried; a refused reload is answered to its
// caller and the running config stays.
func (d *Daemon) syncOnce() error {
	d.mu.Lock()
	req, calls := d.in.reload, d.in.calls
	d.in.reload, d.in.calls = nil, nil
	gen := d.in.gen
	d.mu.Unlock()
	if req != nil {
		d.applyReload(req)
	}
	for _, f := range calls {
		f()
	}

	d.mu.Lock()
	cfg := d.pub.cfg
	dirty, resync, downs, drainFlushes := d.in.dirty, d.in.resync, d.in.downs, d.in.drainFlushes
	d.in.dirty, d.in.resync, d.in.downs, d.in.drainFlushes = map[string]bool{}, false, nil, nil
	healthChanged := d.in.healthChanged
	d.in.healthChanged = false
	throttles := maps(d.in.throttles)
	d.mu.Unlock()
	// The loop is the only writer of pub.planned (always under mu), so it
	// reads it without the lock and without copying 10,000 plans per flip.
	planned := d.pub.planned
	if cfg == nil || (len(dirty) == 0 && !resync) {
		d.syncAnnouncements()
		d.markApplied(gen, nil)
		if cfg != nil && len(drainFlushes) > 0 {
			d.flushDrained(d.plannedList(), drainFlushes)
		}
		return nil
	}

	avail := d.availability(cfg)
	plans := make([]lb.Service, 0, len(cfg.Services))
	for i := range cfg.Services {
		s := &cfg.Services[i]
		p, ok := planned[s.Name]
		if resync || dirty[s.Name] || !ok {
			spec := serviceSpec(s)
			p = lb.PlanService(&spec, avail)
		}
		p.Protect.Throttle = throttles[s.Name]
		plans = append(plans, p)
	}
	if healthChanged {
		// Before the kernel changes, so no moment exists (for a kill -9
		// to hit) where a backend is out of the slots but health.json
		// still says it is up.
		d.saveHealth()
	}
	st, err := d.dp.ApplyState(plans, firewallFor(cfg))
	if err != nil {
		// Put the work back: the next attempt rewrites everything (the
		// data plane also rebuilds its cache from the kernel).
		d.mu.Lock()
		d.in.resync = true
		d.in.downs = append(downs, d.in.downs...)
		d.in.drainFlushes = append(drainFlushes, d.in.drainFlushes...)
		d.mu.Unlock()
		d.markApplied(gen, err)
		return err
	}
	if st.ElementsAdded+st.ElementsDeleted > 0 || st.ServicesRewired > 0 {
		d.log.Debug("sync applied", "change", st.String(), "services", len(dirty), "resync", resync)
	}
	d.mu.Lock()
	for _, p := range plans {
		d.pub.planned[p.Name] = p
	}
	d.mu.Unlock()
	d.syncAnnouncements()
	d.markApplied(gen, nil)
	d.afterDown(cfg, plans, downs)
	d.flushDrained(plans, drainFlushes)
	return nil
}

// markApplied publishes the result of a sync attempt and wakes waiters.
func (d *Daemon) markApplied(gen uint64, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	s := &d.pub.sync
	s.LastAttempt = now
	if err != nil {
		s.Failures++
		s.LastError = err.Error()
		if s.InSync || s.OutOfSyncSince.IsZero() {
			s.OutOfSyncSince = now
		}
		s.InSync = false
	} else {
		if !s.InSync && !s.OutOfSyncSince.IsZero() {
			d.log.Info("kernel back in sync", "out_of_sync_for", now.Sub(s.OutOfSyncSince).Round(time.Millisecond))
		}
		s.InSync, s.OutOfSyncSince, s.LastError = true, time.Time{}, ""
		s.LastSync = now
		s.Syncs++
		d.pub.appliedGen = max(d.pub.appliedGen, gen)
	}
	d.synced.Broadcast()
}

// applyReload applies a new config as a whole: NICs and VIPs, the status
// listener, health targets, then the data plane in one transaction. On
// failure the running config stays (its health targets are put back) and
// the caller hears why.
func (d *Daemon) applyReload(req *reloadRequest) {
	lifted, err := d.applyConfig(req)
	res := reloadResult{err: err, lifted: lifted}
	if len(res.lifted) > 0 {
		d.log.Warn("reload lifted the runtime throttles", "services", res.lifted)
	}
	for _, r := range req.replies {
		r <- res
	}
}

// applyConfig returns the services whose throttles the new config lifted.
func (d *Daemon) applyConfig(req *reloadRequest) ([]string, error) {
	cfg := req.cfg
	fail := func(err error) ([]string, error) {
		d.setErr(err, !req.first)
		return nil, err
	}
	// A config without [ha] stops the pair first: keepalived removes the
	// VIPs as it stops, and must not take away those lbd adds below.
	if cfg.HA == nil {
		d.haApply(cfg)
	}
	// NICs and VIP addresses first, so the services have somewhere to live.
	if err := d.host.Apply(cfg); err != nil {
		return fail(err)
	}
	if err := d.web.listen(cfg.Appliance.StatusListen); err != nil {
		return fail(fmt.Errorf("appliance.status_listen: %w", err))
	}
	d.mu.Lock()
	old := d.pub.cfg
	adopted, owners := d.in.adopted, d.in.kernelSlots
	d.in.adopted, d.in.kernelSlots = nil, nil // only the first config adopts the old health
	d.mu.Unlock()
	if owners != nil {
		adopted = adoptFromSlots(cfg, owners)
		if len(adopted) > 0 {
			d.log.Info("no health.json; adopting as down the checked backends the kernel served no slots", "down", len(adopted))
		}
	}
	if err := d.monitor.Set(healthTargets(cfg, adopted)); err != nil {
		return fail(fmt.Errorf("health checks: %w", err))
	}
	commitBGP, err := d.prepareBGP(cfg)
	if err != nil {
		if old != nil {
			_ = d.monitor.Set(healthTargets(old, nil))
		}
		return fail(fmt.Errorf("bgp: %w", err))
	}
	plans := lb.Plan(serviceSpecs(cfg), d.availability(cfg))
	d.setPair(cfg)
	start := time.Now()
	st, err := d.dp.ApplyState(plans, firewallFor(cfg))
	if err != nil {
		if old != nil {
			_ = d.monitor.Set(healthTargets(old, nil))
			d.setPair(old)
		}
		return fail(fmt.Errorf("the kernel refused the new data plane: %w", err))
	}
	d.log.Info("data plane applied", "change", st.String(), "took", time.Since(start).Round(time.Microsecond))
	if st.ElementsAdded > 10000 {
		// A big apply leaves tens of MB of netlink messages behind; give
		// them back to the OS now rather than when the GC gets round to it.
		debug.FreeOSMemory()
	}
	d.mu.Lock()
	d.pub.cfg, d.pub.loadedAt, d.pub.source = cfg, time.Now(), req.source
	d.pub.planned = make(map[string]lb.Service, len(plans))
	for _, p := range plans {
		d.pub.planned[p.Name] = p
	}
	if req.source == "" {
		d.pub.lastErrs = nil
	} else {
		d.pub.lastErrs = errorLines(req.fileErr)
	}
	if !req.first {
		d.pub.reloadsOK++
		d.pub.lastLoad = time.Now()
	}
	// The plan above had no throttles: lift them in the same step that
	// publishes the config, so a throttle set after this moment is kept.
	var lifted []string
	for name := range d.in.throttles {
		lifted = append(lifted, name)
	}
	sort.Strings(lifted)
	d.in.throttles = map[string]lb.Rate{}
	keepDrains(d.in.drains, cfg)
	d.mu.Unlock()
	if req.source == "" {
		d.saveLastGood(cfg)
	}
	d.saveHealth()
	d.haApply(cfg)
	commitBGP()
	return lifted, nil
}

func (d *Daemon) setErr(err error, reload bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pub.lastErrs = errorLines(err)
	if reload {
		d.pub.reloadsNG++
		d.pub.lastLoad = time.Now()
	}
	for _, l := range d.pub.lastErrs {
		d.log.Error("config refused", "error", l)
	}
}

// load reads the config file and hands it to the loop, waiting for the
// result. At start (first) a broken file falls back to the last good copy.
func (d *Daemon) load(first bool) ([]string, error) {
	cfg, source, fileErr := d.readConfig(first)
	if cfg == nil {
		d.setErr(fileErr, !first)
		return nil, fileErr
	}
	if source != "" {
		d.setErr(fileErr, false)
	}
	reply := make(chan reloadResult, 1)
	d.record(func(in *inputs) {
		if in.reload != nil {
			// A newer file supersedes a pending one; both callers get
			// the newest result.
			in.reload.cfg, in.reload.source, in.reload.fileErr = cfg, source, fileErr
			in.reload.replies = append(in.reload.replies, reply)
			return
		}
		in.reload = &reloadRequest{cfg: cfg, source: source, fileErr: fileErr, first: first, replies: []chan reloadResult{reply}}
	})
	res := <-reply
	return res.lifted, res.err
}

// Reload re-reads the config; on any error the running config stays. It
// returns the services whose runtime throttles the reload lifted.
func (d *Daemon) Reload() ([]string, error) {
	d.opts.Notify.Reloading()
	lifted, err := d.load(false)
	d.opts.Notify.Ready(d.summary())
	return lifted, err
}

// onTransition is called by the health monitor, one call at a time. It
// only records the change and wakes the loop: no netlink, no conntrack
// under the monitor's lock.
func (d *Daemon) onTransition(tr health.Transition) {
	d.record(func(in *inputs) {
		for _, s := range tr.Services {
			k := backendKey{s, tr.Addr}
			in.dirty[s] = true
			switch tr.To {
			case health.StateUp:
				in.upSince[k] = tr.At
			case health.StateDown:
				in.downs = append(in.downs, k)
			}
		}
		in.healthChanged = true
	})
}

// afterDown lets go of what pinned clients to backends that went down:
// persistence entries, and with down_action = flush their conntrack
// flows. It runs in the loop after the slots stopped pointing at them.
func (d *Daemon) afterDown(cfg *config.Config, plans []lb.Service, downs []backendKey) {
	if len(downs) == 0 {
		return
	}
	byName := map[string]*lb.Service{}
	for i := range plans {
		byName[plans[i].Name] = &plans[i]
	}
	flush := map[string]bool{}
	for _, s := range cfg.Services {
		flush[s.Name] = s.DownAction == "flush"
	}
	for _, k := range downs {
		p, ok := byName[k.Service]
		if !ok || d.isUp(k) {
			continue // gone from the config, or back up already
		}
		if err := d.dp.ForgetPersistence(p, []netip.AddrPort{k.Backend}); err != nil {
			d.log.Warn("persistence cleanup", "service", k.Service, "err", err)
		}
		if !flush[k.Service] {
			continue
		}
		n, err := d.ct.FlushBackend(p, k.Backend)
		if err != nil {
			d.log.Warn("conntrack flush", "service", k.Service, "backend", k.Backend.String(), "err", err)
		} else {
			d.log.Info("flushed flows of dead backend", "service", k.Service, "backend", k.Backend.String(), "flows", n)
		}
	}
}

func (d *Daemon) isUp(k backendKey) bool {
	ts, ok := d.monitor.Lookup(k.Service, k.Backend)
	return !ok || ts.State != health.StateDown
}

// adoptHealth reads which backends the previous lbd had down: from
// health.json, or, when there is none (the first start after an upgrade
// from a release that did not write it), from the slots the kernel still
// holds (see adoptFromSlots).
func (d *Daemon) adoptHealth() {
	down, err := loadDownBackends(d.stateDir)
	if err != nil {
		d.log.Warn("backend health of the previous run not adopted; backends start up", "err", err)
		return
	}
	if down == nil {
		if r, ok := d.dp.(slotReader); ok {
			owners, err := r.SlotOwners()
			if err != nil {
				d.log.Warn("reading the slots the previous lbd left", "err", err)
			}
			d.mu.Lock()
			d.in.kernelSlots = owners
			d.log.Info("no health.json; read the slots the kernel holds", "services", len(owners))
			d.mu.Unlock()
		}
		return
	}
	if len(down) > 0 {
		d.log.Info("adopting backend health of the previous run", "down", len(down))
	}
	d.mu.Lock()
	d.in.adopted = down
	d.mu.Unlock()
}

// slotReader is a data plane that can say which backends hold slots now.
type slotReader interface {
	SlotOwners() (map[string]map[netip.AddrPort]int, error)
}

// adoptFromSlots derives the down set from what the kernel serves: a
// checked primary backend with weight whose service has slots in the
// kernel but that itself holds none was down (or full) when the previous
// lbd stopped. It starts down and earns its traffic with `rise` passes: a
// backend new in the config looks the same and so waits `rise` checks too,
// which costs a little time and never a failed connection.
func adoptFromSlots(cfg *config.Config, owners map[string]map[netip.AddrPort]int) map[backendKey]bool {
	down := map[backendKey]bool{}
	for i := range cfg.Services {
		s := &cfg.Services[i]
		spec := serviceSpec(s)
		planned := lb.Service{VIP: spec.VIP, Proto: spec.Proto, Port: spec.Port}
		held := owners[planned.Endpoint()]
		if len(held) == 0 {
			continue
		}
		for _, b := range s.Backends {
			if b.Backup || b.EffectiveWeight() == 0 || (s.Health == nil && b.Health == nil) {
				continue
			}
			if held[b.Addr] == 0 {
				down[backendKey{s.Name, b.Addr}] = true
			}
		}
	}
	return down
}

// saveHealth writes health.json from the monitor's current state.
func (d *Daemon) saveHealth() {
	cfg := d.configOrNil()
	if cfg == nil {
		return
	}
	down := downBackends(d.monitor, healthTargets(cfg, nil))
	if err := saveDownBackends(d.stateDir, down, time.Now()); err != nil {
		d.log.Debug("health state not saved", "err", err)
	}
}

// availability answers the planner from health, slow start and fullness.
func (d *Daemon) availability(cfg *config.Config) lb.AvailabilityFunc {
	slow := map[string]time.Duration{}
	for _, s := range cfg.Services {
		slow[s.Name] = s.SlowStart.D()
	}
	now := time.Now()
	d.mu.Lock()
	upSince := maps(d.in.upSince)
	full := maps(d.in.full)
	shares := maps(d.in.shares)
	drains := maps(d.in.drains)
	d.mu.Unlock()
	return func(svc string, be netip.AddrPort) lb.Availability {
		k := backendKey{svc, be}
		ts, ok := d.monitor.Lookup(svc, be)
		if ok && ts.State == health.StateDown {
			return lb.Availability{Up: false}
		}
		_, drained := drains[k]
		a := lb.Availability{Up: true, Full: full[k] || drained, Share: shares[k]}
		if ss := slow[svc]; ss > 0 {
			if t, ok := upSince[k]; ok && now.Sub(t) < ss {
				a.Ramp = max(0.05, float64(now.Sub(t))/float64(ss))
			}
		}
		return a
	}
}

// maps copies a map.
func maps[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// plannedList is the published plan as a list.
func (d *Daemon) plannedList() []lb.Service {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]lb.Service, 0, len(d.pub.planned))
	for _, p := range d.pub.planned {
		out = append(out, p)
	}
	return out
}
