// Package daemon is `lbd run`: it loads the config, programs the data plane,
// runs the health checks, and answers the control socket. Reading it top to
// bottom gives the life of the appliance: start, apply, serve, reload, stop.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"lbd/config"
	"lbd/appliance/control"
	"lbd/appliance/host"
	"lbd/appliance/status"
	"lbd/appliance/sysctl"
	"lbd/health"
	"lbd/lb"
)

// Options configure a daemon.
type Options struct {
	ConfigPath string
	SocketPath string
	Version    string
	Logger     *slog.Logger
	// Notify receives systemd state changes; nil = none.
	Notify Notifier
}

// Notifier is the systemd notify side (see appliance/notify).
type Notifier interface {
	Ready(status string)
	Reloading()
	Status(line string)
	Stopping()
}

type nopNotifier struct{}

func (nopNotifier) Ready(string)  {}
func (nopNotifier) Reloading()    {}
func (nopNotifier) Status(string) {}
func (nopNotifier) Stopping()     {}

// Daemon is one running lbd.
type Daemon struct {
	opts    Options
	log     *slog.Logger
	dp      *lb.Dataplane
	monitor *health.Monitor
	host    *host.Host
	web     *statusServer
	started time.Time
	beat    atomicTime // main loop heartbeat, for the systemd watchdog

	mu        sync.Mutex // guards everything below
	cfg       *config.Config
	planned   map[string]lb.Service
	loadedAt  time.Time
	lastErrs  []string
	source    string
	reloadsOK int
	reloadsNG int
	lastLoad  time.Time
	throttles map[string]config.Rate
	upSince   map[string]time.Time // service|backend -> when it came up (slow start)
	full      map[string]bool      // service|backend at its max_connections
}

// New makes a daemon; Run starts it.
func New(opts Options) *Daemon {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Notify == nil {
		opts.Notify = nopNotifier{}
	}
	if opts.SocketPath == "" {
		opts.SocketPath = control.DefaultSocket
	}
	d := &Daemon{opts: opts, log: opts.Logger, dp: lb.New(), started: time.Now(),
		planned: map[string]lb.Service{}, throttles: map[string]config.Rate{}, upSince: map[string]time.Time{}}
	d.monitor = health.NewMonitor(d.onTransition, opts.Logger)
	d.host = host.New(d.stateDir(nil), opts.Logger)
	d.web = newStatusServer(d.Snapshot, opts.Logger)
	d.beat.Store(time.Now())
	return d
}

// Run serves until ctx ends or SIGTERM/SIGINT. The data plane stays in the
// kernel when lbd exits, so traffic flows on while lbd is restarted.
func (d *Daemon) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := enableForwarding(); err != nil {
		d.log.Warn("forwarding", "err", err)
	}
	if err := d.load(true); err != nil {
		d.log.Error("config not applied", "err", err)
	}
	if err := control.Serve(ctx, d.opts.SocketPath, d.handle, d.log); err != nil {
		return err
	}
	d.opts.Notify.Ready(d.summary())
	d.log.Info("lbd ready", "config", d.opts.ConfigPath, "socket", d.opts.SocketPath, "summary", d.summary())

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	ramp := time.NewTicker(time.Second)
	defer ramp.Stop()
	for {
		select {
		case <-ctx.Done():
			return d.stop()
		case s := <-sigs:
			if s == syscall.SIGHUP {
				_ = d.Reload()
				continue
			}
			d.log.Info("stopping; the data plane stays in place", "signal", s.String())
			return d.stop()
		case <-ramp.C:
			d.beat.Store(time.Now())
			d.slowStartTick()
			d.maxConnTick()
		}
	}
}

func (d *Daemon) stop() error {
	d.opts.Notify.Stopping()
	d.monitor.Close()
	d.web.stop()
	d.host.Close()
	return nil
}

// Healthy is the watchdog's question: is the main loop still turning?
func (d *Daemon) Healthy() error {
	if age := time.Since(d.beat.Load()); age > 10*time.Second {
		return fmt.Errorf("main loop stalled for %s", age.Round(time.Second))
	}
	return nil
}

// Reload re-reads the config; on any error the running config stays.
func (d *Daemon) Reload() error {
	d.opts.Notify.Reloading()
	err := d.load(false)
	d.opts.Notify.Ready(d.summary())
	return err
}

// load reads, validates and applies the config file. At start (first),
// an invalid file falls back to the last good copy in the state directory.
func (d *Daemon) load(first bool) error {
	path := d.opts.ConfigPath
	cfg, err := config.Load(path)
	source := ""
	if err != nil && first {
		if lg, lgErr := config.Load(lastGoodPath(d.stateDir(nil))); lgErr == nil {
			d.log.Warn("config invalid; serving the last config that applied cleanly", "path", lastGoodPath(d.stateDir(nil)))
			d.setErr(err, false)
			cfg, source = lg, lastGoodPath(d.stateDir(nil))
			err = nil
		}
	}
	if err != nil {
		d.setErr(err, !first)
		return err
	}
	if err := d.apply(cfg); err != nil {
		d.setErr(err, !first)
		return err
	}
	d.mu.Lock()
	d.cfg, d.loadedAt, d.source = cfg, time.Now(), source
	if source == "" {
		d.lastErrs = nil
	}
	if !first {
		d.reloadsOK++
		d.lastLoad = time.Now()
	}
	hadThrottles := len(d.throttles) > 0
	d.throttles = map[string]config.Rate{}
	d.mu.Unlock()
	if hadThrottles {
		d.log.Warn("reload lifted the runtime throttles")
	}
	if source == "" {
		d.saveLastGood(cfg)
	}
	return nil
}

func (d *Daemon) setErr(err error, reload bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastErrs = errorLines(err)
	if reload {
		d.reloadsNG++
		d.lastLoad = time.Now()
	}
	for _, l := range d.lastErrs {
		d.log.Error("config refused", "error", l)
	}
}

func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	var es config.Errors
	if errors.As(err, &es) {
		out := make([]string, len(es))
		for i, e := range es {
			out[i] = e.Error()
		}
		return out
	}
	return strings.Split(err.Error(), "\n")
}

// apply programs cfg: health targets first (so new backends have a state),
// then the data plane in one transaction. On failure nothing changes.
func (d *Daemon) apply(cfg *config.Config) error {
	// NICs and VIP addresses first, so the services have somewhere to live.
	if err := d.host.Apply(cfg); err != nil {
		return err
	}
	if err := d.web.listen(cfg.Appliance.StatusListen); err != nil {
		return fmt.Errorf("appliance.status_listen: %w", err)
	}
	targets := healthTargets(cfg)
	if err := d.monitor.Set(targets); err != nil {
		return fmt.Errorf("health checks: %w", err)
	}
	d.mu.Lock()
	throttles := d.throttles
	d.mu.Unlock()
	plans := lb.Plan(cfg, d.availability(cfg))
	for i := range plans {
		plans[i].Protect.Throttle = throttles[plans[i].Name]
	}
	start := time.Now()
	st, err := d.dp.ApplyState(plans, lb.FirewallFor(cfg))
	if err != nil {
		// Put the health targets of the running config back.
		d.mu.Lock()
		old := d.cfg
		d.mu.Unlock()
		if old != nil {
			_ = d.monitor.Set(healthTargets(old))
		}
		return err
	}
	d.log.Info("data plane applied", "change", st.String(), "took", time.Since(start).Round(time.Microsecond))
	if st.ElementsAdded > 10000 {
		// A big apply leaves tens of MB of netlink messages behind; give
		// them back to the OS now rather than when the GC gets round to it.
		debug.FreeOSMemory()
	}
	d.mu.Lock()
	d.planned = map[string]lb.Service{}
	for _, p := range plans {
		d.planned[p.Name] = p
	}
	d.mu.Unlock()
	return nil
}

func (d *Daemon) stateDir(cfg *config.Config) string {
	if cfg != nil && cfg.Appliance.StateDir != "" {
		return cfg.Appliance.StateDir
	}
	if v := os.Getenv("LBD_STATE_DIR"); v != "" {
		return v
	}
	return "/var/lib/lbd"
}

func lastGoodPath(dir string) string { return filepath.Join(dir, "last-good.toml") }

// saveLastGood keeps a copy of a config that applied cleanly, for a boot
// with a broken file. Best effort: a read-only state dir is no error.
func (d *Daemon) saveLastGood(cfg *config.Config) {
	data, err := os.ReadFile(cfg.Path)
	if err != nil {
		return
	}
	dir := d.stateDir(cfg)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	tmp := lastGoodPath(dir) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err == nil {
		_ = os.Rename(tmp, lastGoodPath(dir))
	}
}

// availability answers the planner from health state, for cfg.
func (d *Daemon) availability(cfg *config.Config) lb.AvailabilityFunc {
	slow := map[string]time.Duration{}
	for _, s := range cfg.Services {
		slow[s.Name] = s.SlowStart.D()
	}
	now := time.Now()
	d.mu.Lock()
	upSince := make(map[string]time.Time, len(d.upSince))
	for k, v := range d.upSince {
		upSince[k] = v
	}
	full := make(map[string]bool, len(d.full))
	for k, v := range d.full {
		full[k] = v
	}
	d.mu.Unlock()
	return func(svc string, be netip.AddrPort) lb.Availability {
		ts, ok := d.monitor.Lookup(svc, be)
		if !ok || ts.State != health.StateDown {
			a := lb.Availability{Up: true, Full: full[svc+"|"+be.String()]}
			if ss := slow[svc]; ss > 0 {
				if t, ok := upSince[svc+"|"+be.String()]; ok && now.Sub(t) < ss {
					a.Ramp = max(0.05, float64(now.Sub(t))/float64(ss))
				}
			}
			return a
		}
		return lb.Availability{Up: false}
	}
}

// onTransition is called by the health monitor: it re-plans the services
// using that backend and applies the difference (only their slot elements).
func (d *Daemon) onTransition(tr health.Transition) {
	d.mu.Lock()
	cfg := d.cfg
	if tr.To == health.StateUp {
		for _, s := range tr.Services {
			d.upSince[s+"|"+tr.Addr.String()] = tr.At
		}
	}
	d.mu.Unlock()
	if cfg == nil {
		return
	}
	// The monitor has logged the transition with its reason, per service.
	d.replan(cfg, tr.Services, tr.To == health.StateDown, tr.Addr)
}

// replan recomputes the given services and applies the change. When a
// backend went down, flows pinned to it by persistence or (down_action =
// flush) by conntrack are let go so they move to a live backend.
func (d *Daemon) replan(cfg *config.Config, services []string, down bool, backend netip.AddrPort) {
	d.mu.Lock()
	if d.cfg != cfg {
		d.mu.Unlock()
		return // a reload replaced cfg and planned with fresh state
	}
	plans := make([]lb.Service, 0, len(d.planned))
	for _, p := range d.planned {
		plans = append(plans, p)
	}
	throttles := d.throttles
	d.mu.Unlock()
	avail := d.availability(cfg)
	touched := map[string]bool{}
	for _, s := range services {
		touched[s] = true
	}
	for i, p := range plans {
		if !touched[p.Name] {
			continue
		}
		for j := range cfg.Services {
			if cfg.Services[j].Name == p.Name {
				plans[i] = lb.PlanService(&cfg.Services[j], avail)
				plans[i].Protect.Throttle = throttles[p.Name]
			}
		}
	}
	st, err := d.dp.Apply(plans)
	if err != nil {
		d.log.Error("applying health change failed", "err", err)
		return
	}
	d.mu.Lock()
	for _, p := range plans {
		d.planned[p.Name] = p
	}
	d.mu.Unlock()
	if st.ElementsAdded+st.ElementsDeleted > 0 {
		d.log.Debug("health change applied", "change", st.String())
	}
	if !down {
		return
	}
	for _, p := range plans {
		if !touched[p.Name] {
			continue
		}
		p := p
		if err := d.dp.ForgetPersistence(&p, []netip.AddrPort{backend}); err != nil {
			d.log.Warn("persistence cleanup", "service", p.Name, "err", err)
		}
		for j := range cfg.Services {
			if cfg.Services[j].Name == p.Name && cfg.Services[j].DownAction == "flush" {
				n, err := lb.FlushBackend(&p, backend)
				if err != nil {
					d.log.Warn("conntrack flush", "service", p.Name, "backend", backend.String(), "err", err)
				} else {
					d.log.Info("flushed flows of dead backend", "service", p.Name, "backend", backend.String(), "flows", n)
				}
			}
		}
	}
}

// maxConnTick enforces per-backend max_connections: once a second it counts
// each such backend's live flows (one conntrack dump) and takes a full
// backend out of the slots until it has room again, so new flows go to the
// others instead of being dropped (like IPVS upper thresholds).
func (d *Daemon) maxConnTick() {
	d.mu.Lock()
	cfg := d.cfg
	var plans []lb.Service
	limits := map[string]int{}
	if cfg != nil {
		for _, s := range cfg.Services {
			for _, b := range s.Backends {
				if b.MaxConnections > 0 {
					limits[s.Name+"|"+b.Addr.String()] = b.MaxConnections
				}
			}
		}
		for _, p := range d.planned {
			plans = append(plans, p)
		}
	}
	old := d.full
	d.mu.Unlock()
	if len(limits) == 0 {
		if len(old) > 0 {
			d.mu.Lock()
			d.full = nil
			d.mu.Unlock()
		}
		return
	}
	active, err := lb.ActiveConnections(plans)
	if err != nil {
		d.log.Warn("max_connections: conntrack", "err", err)
		return
	}
	ep := map[string]string{}
	for _, p := range plans {
		ep[p.Name] = p.Endpoint()
	}
	now := map[string]bool{}
	var changed []string
	for _, s := range cfg.Services {
		for _, b := range s.Backends {
			k := s.Name + "|" + b.Addr.String()
			lim, ok := limits[k]
			if !ok {
				continue
			}
			n := active[lb.FlowKey{Endpoint: ep[s.Name], Backend: b.Addr}]
			// Hysteresis: full at the limit, free again one below it.
			isFull := n >= lim || (old[k] && n >= lim-1 && lim > 1)
			if isFull {
				now[k] = true
			}
			if isFull != old[k] {
				changed = append(changed, s.Name)
				d.log.Info("backend max_connections", "service", s.Name, "backend", b.Addr.String(), "active", n, "limit", lim, "full", isFull)
			}
		}
	}
	d.mu.Lock()
	d.full = now
	d.mu.Unlock()
	if len(changed) > 0 {
		d.replan(cfg, changed, false, netip.AddrPort{})
	}
}

// slowStartTick re-plans services whose backends are ramping up.
func (d *Daemon) slowStartTick() {
	d.mu.Lock()
	cfg := d.cfg
	var ramping []string
	if cfg != nil {
		now := time.Now()
		for _, s := range cfg.Services {
			if s.SlowStart == 0 {
				continue
			}
			for _, b := range s.Backends {
				if t, ok := d.upSince[s.Name+"|"+b.Addr.String()]; ok && now.Sub(t) < s.SlowStart.D()+time.Second {
					ramping = append(ramping, s.Name)
					break
				}
			}
		}
	}
	d.mu.Unlock()
	if len(ramping) > 0 {
		d.replan(cfg, ramping, false, netip.AddrPort{})
	}
}

func (d *Daemon) summary() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	if d.cfg != nil {
		n = len(d.cfg.Services)
	}
	s := fmt.Sprintf("%d services", n)
	if len(d.lastErrs) > 0 {
		s += "; config error: " + d.lastErrs[0]
	}
	return s
}

// handle answers the control socket.
func (d *Daemon) handle(ctx context.Context, req control.Request) control.Response {
	switch req.Command {
	case "status":
		snap := d.Snapshot()
		return control.Response{OK: true, Status: &snap}
	case "reload":
		if err := d.Reload(); err != nil {
			return control.Response{OK: false, Message: "reload refused; the running config stays", Errors: errorLines(err)}
		}
		return control.Response{OK: true, Message: "reloaded: " + d.summary()}
	case "throttle":
		return d.throttle(req.Args)
	}
	return control.Response{OK: false, Errors: []string{fmt.Sprintf("unknown command %q", req.Command)}}
}

// throttle sets or lifts a runtime new-connection rate on one service.
func (d *Daemon) throttle(args []string) control.Response {
	if len(args) != 2 {
		return control.Response{Errors: []string{"usage: lbd throttle SERVICE RATE|off"}}
	}
	name, arg := args[0], args[1]
	d.mu.Lock()
	cfg := d.cfg
	_, known := d.planned[name]
	d.mu.Unlock()
	if cfg == nil || !known {
		return control.Response{Errors: []string{fmt.Sprintf("no service %q", name)}}
	}
	var r config.Rate
	if arg != "off" {
		var err error
		if r, err = config.ParseRate(arg); err != nil {
			return control.Response{Errors: []string{err.Error()}}
		}
	}
	d.mu.Lock()
	if r.IsSet() {
		d.throttles[name] = r
	} else {
		delete(d.throttles, name)
	}
	d.mu.Unlock()
	d.replan(cfg, []string{name}, false, netip.AddrPort{})
	d.log.Warn("throttle changed", "service", name, "rate", arg)
	if !r.IsSet() {
		return control.Response{OK: true, Message: fmt.Sprintf("%s: throttle lifted", name)}
	}
	return control.Response{OK: true, Message: fmt.Sprintf("%s: new connections throttled to %s until lifted or the next reload", name, r)}
}

// Snapshot returns the live state.
func (d *Daemon) Snapshot() status.Snapshot {
	d.mu.Lock()
	cfg := d.cfg
	planned := make(map[string]lb.Service, len(d.planned))
	for k, v := range d.planned {
		planned[k] = v
	}
	snap := status.Snapshot{
		Version: d.opts.Version, StartedAt: d.started, Now: time.Now(),
		Config: status.Config{Path: d.opts.ConfigPath, LoadedAt: d.loadedAt, Source: d.source,
			LastErrors: append([]string(nil), d.lastErrs...)},
		Reloads: status.ReloadStats{OK: d.reloadsOK, Failed: d.reloadsNG, LastAt: d.lastLoad},
	}
	throttles := d.throttles
	d.mu.Unlock()
	if len(snap.Config.LastErrors) > 0 {
		snap.Config.LastError = snap.Config.LastErrors[0]
	}
	snap.Hostname, _ = os.Hostname()
	snap.NICs = d.host.Status()
	if n, m, err := sysctl.ConntrackUsage(); err == nil {
		snap.Conntrack = status.Conntrack{Count: n, Max: m}
		if sysctl.ConntrackHigh(n, m) {
			snap.Warnings = append(snap.Warnings, fmt.Sprintf("conntrack table %d of %d entries (over %d%%): raise [conntrack] max", n, m, sysctl.ConntrackWarnPercent))
		}
	}
	if cfg == nil {
		snap.Services = []status.Service{}
		return snap
	}
	var plans []lb.Service
	for _, p := range planned {
		plans = append(plans, p)
	}
	active, err := lb.ActiveConnections(plans)
	if err != nil {
		snap.Warnings = append(snap.Warnings, err.Error())
	}
	counters, err := d.dp.ReadCounters()
	if err != nil {
		snap.Warnings = append(snap.Warnings, err.Error())
	}
	for _, s := range cfg.Services {
		p := planned[s.Name]
		slots := p.SlotCounts()
		c := counters[s.Name]
		ss := status.Service{Name: s.Name, VIP: s.VIPAddr.String(), Port: s.Port, Protocol: s.Protocol,
			Scheduler: s.Scheduler, SNAT: s.SNATEnabled(), Slots: p.Modulus,
			Packets: c.Flows, Bytes: c.FlowBytes, Throttle: throttles[s.Name].String(),
			Refused: status.Refusals{NoBackend: c.NoBackend, MaxConnections: c.Refused["maxconn"],
				Rate: c.Refused["rate"], PerClientRate: c.Refused["clientrate"], PerClientConns: c.Refused["clientconn"],
				Denied: c.Refused["deny"], ThrottleRefused: c.Refused["throttle"]},
			Backends: []status.Backend{}}
		for _, b := range s.Backends {
			sb := status.Backend{Address: b.Addr.String(), Weight: b.EffectiveWeight(), Backup: b.Backup,
				Slots: slots[b.Addr], ActiveConnections: active[lb.FlowKey{Endpoint: p.Endpoint(), Backend: b.Addr}]}
			ts, checked := d.monitor.Lookup(s.Name, b.Addr)
			switch {
			case !checked || ts.State == health.StateUnchecked:
				sb.State = status.StateUnchecked
			case ts.State == health.StateDown:
				sb.State = status.StateDown
			default:
				sb.State = status.StateUp
			}
			if b.EffectiveWeight() == 0 && sb.State != status.StateDown {
				sb.State = status.StateDrain
			}
			if checked {
				sb.LastCheck = ts.Last.Reason
				sb.LastCheckLatency = ts.Last.Latency.Seconds()
				sb.LastTransition = ts.LastTransition
				sb.ChecksPassed, sb.ChecksFailed = ts.Passed, ts.Failed
			}
			ss.Backends = append(ss.Backends, sb)
		}
		snap.Services = append(snap.Services, ss)
	}
	return snap
}

// enableForwarding turns on IPv4/IPv6 forwarding in lbd's namespace: the
// NAT paths need it and nothing else on the appliance would set it.
func enableForwarding() error {
	var errs []error
	for _, p := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
		if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}
