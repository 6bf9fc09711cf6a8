// Package daemon is `lbd run`: it loads the config, programs the data plane,
// runs the health checks, and answers the control socket.
//
// One goroutine owns the kernel: the sync loop (loop.go). Reloads, health
// transitions, slow-start and max_connections ticks and runtime throttles
// only record what changed and wake it; the loop computes the desired state
// from the newest inputs and applies the difference in one transaction,
// retrying with backoff when the kernel refuses (status then says since
// when the kernel is out of sync). Files, by phase: daemon.go (start and
// stop), load.go (config, last good, state directory), loop.go (the sync
// loop), ticks.go (slow start, max_connections), control.go (control
// requests), snapshot.go (status), traffic.go (per-backend traffic
// counters from conntrack accounting), mapping.go (config -> lb types),
// healthstate.go (health that survives restarts), ha.go (a node of an HA
// pair: keepalived's role as a loop input, lbd ha release).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"lbd/appliance/control"
	"lbd/appliance/host"
	"lbd/config"
	"lbd/health"
	"lbd/lb"
	"lbd/pair"
)

// Options configure a daemon. The zero value of each dependency means the
// real one; tests pass fakes.
type Options struct {
	ConfigPath string
	SocketPath string
	Version    string
	Logger     *slog.Logger
	// Notify receives systemd state changes; nil = none.
	Notify Notifier
	// StateDir overrides the state directory rule (see resolveStateDir).
	StateDir string

	Dataplane Dataplane
	Conntrack Conntrack
	// Traffic feeds the per-backend traffic counters; nil = conntrack
	// accounting when Conntrack is the kernel's, none with a fake.
	Traffic TrafficSource
	// NewMonitor makes the health monitor that reports to onChange.
	NewMonitor func(onChange func(health.Transition), log *slog.Logger) HealthMonitor
	// NewHost makes the NIC/VIP/sysctl side, keeping its state in stateDir.
	NewHost func(stateDir string, log *slog.Logger) Host
	// System is forwarding and the single-instance lock (tests: a no-op).
	System System
	// MinSyncInterval spaces syncs so a burst of changes coalesces into a
	// few transactions (default 10ms). RetryMin/RetryMax bound the backoff
	// after a failed sync (default 100ms .. 10s).
	MinSyncInterval, RetryMin, RetryMax time.Duration
	// BirdBin is the BIRD 2 binary for [bgp]; "" = bird from PATH.
	BirdBin string
	// TestHooks enables control commands that exist only for tests
	// (debug-wedge); lbd run sets it from LBD_TEST_HOOKS=1.
	TestHooks bool
}

// System is what lbd changes on the machine before it applies anything.
type System interface {
	// Lock makes sure no other lbd manages table lbd in this network
	// namespace; release frees it at exit.
	Lock() (release func(), err error)
	EnableForwarding() error
}

type realSystem struct{}

func (realSystem) Lock() (func(), error)   { return lockInstance() }
func (realSystem) EnableForwarding() error { return enableForwarding() }

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
	opts     Options
	log      *slog.Logger
	dp       Dataplane
	ct       Conntrack
	traffic  *trafficBook
	monitor  HealthMonitor
	host     Host
	web      *statusServer
	snaps    *snapshots
	started  time.Time
	stateDir string

	// wake tells the sync loop that inputs changed; capacity 1, so any
	// number of changes before the loop looks coalesce into one wake-up.
	wake chan struct{}
	// beat is the sync loop's heartbeat; busySince is set while it applies.
	beat, busySince atomicTime
	loopDone        chan struct{}

	// haNode is this node's half of a pair (ha.go); nil without [ha].
	// Guarded by mu.
	haNode *pair.Node
	// haTried is when the pair was last started or reconfigured (ha.go).
	haTried time.Time

	mu     sync.Mutex // guards the inputs and the published state
	synced *sync.Cond // signalled (with mu) after every sync attempt
	in     inputs
	pub    published
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
	if opts.Dataplane == nil {
		opts.Dataplane = lb.New()
	}
	if opts.Conntrack == nil {
		opts.Conntrack = kernelConntrack{}
	}
	if opts.NewMonitor == nil {
		opts.NewMonitor = func(f func(health.Transition), log *slog.Logger) HealthMonitor { return health.NewMonitor(f, log) }
	}
	if opts.NewHost == nil {
		opts.NewHost = func(dir string, log *slog.Logger) Host { return host.New(dir, log) }
	}
	if opts.System == nil {
		opts.System = realSystem{}
	}
	opts.MinSyncInterval = cmpOr(opts.MinSyncInterval, 10*time.Millisecond)
	opts.RetryMin = cmpOr(opts.RetryMin, 100*time.Millisecond)
	opts.RetryMax = cmpOr(opts.RetryMax, 10*time.Second)
	d := &Daemon{opts: opts, log: opts.Logger, dp: opts.Dataplane, ct: opts.Conntrack, started: time.Now(),
		wake: make(chan struct{}, 1), loopDone: make(chan struct{})}
	d.synced = sync.NewCond(&d.mu)
	d.traffic = newTrafficBook(defaultTraffic(opts.Conntrack, opts.Traffic))
	d.in = newInputs()
	d.pub.planned = map[string]lb.Service{}
	d.stateDir = resolveStateDir(opts.StateDir, opts.ConfigPath)
	d.monitor = opts.NewMonitor(d.onTransition, opts.Logger)
	d.host = opts.NewHost(d.stateDir, opts.Logger)
	d.snaps = &snapshots{build: d.Snapshot}
	d.web = newStatusServer(d.snaps.get, opts.Logger)
	d.beat.Store(time.Now())
	return d
}

func cmpOr(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

// Run serves until ctx ends or SIGTERM/SIGINT. In order, it:
//  1. takes the per-namespace instance lock (a second lbd leaves here,
//     before it touches anything);
//  2. turns on IP forwarding;
//  3. starts the sync loop and hands it the config (or, when the file is
//     broken, the last good copy), with the backend health the previous
//     lbd left in the state directory, and waits until it is applied;
//  4. opens the control socket and tells systemd READY;
//  5. then serves: SIGHUP reloads, ticks drive slow start and
//     max_connections, and SIGTERM/SIGINT stop.
//
// The data plane stays in the kernel when lbd exits, so traffic flows on
// while lbd is restarted.
func (d *Daemon) Run(ctx context.Context) error {
	release, err := d.opts.System.Lock()
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := d.opts.System.EnableForwarding(); err != nil {
		d.log.Warn("forwarding", "err", err)
	}
	d.adoptHealth()
	// Before the table is installed: only flows created after accounting
	// is on carry counters.
	d.traffic.start(ctx)
	loopCtx, stopLoop := context.WithCancel(context.Background())
	go d.syncLoop(loopCtx)
	defer stopLoop()

	if _, err := d.load(true); err != nil {
		d.log.Error("config not applied", "err", err)
	}
	if err := control.Serve(ctx, d.opts.SocketPath, d.handle, d.log); err != nil {
		d.shutdown(stopLoop)
		return err
	}
	d.opts.Notify.Ready(d.summary())
	d.fleetReady()
	d.log.Info("lbd ready", "config", d.opts.ConfigPath, "socket", d.opts.SocketPath,
		"state_dir", d.stateDir, "summary", d.summary())

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return d.shutdown(stopLoop)
		case s := <-sigs:
			if s == syscall.SIGHUP {
				go func() { _, _ = d.Reload() }()
				continue
			}
			d.log.Info("stopping; the data plane stays in place", "signal", s.String())
			d.stopFleet()
			return d.shutdown(stopLoop)
		case <-tick.C:
			// Ticks only record and wake the loop; the conntrack dump of
			// the max_connections poll stays off the loop.
			d.slowStartTick()
			d.conntrackTick()
			d.haRetry()
		}
	}
}

// shutdown stops the checks first (no transition after this), then the
// loop (it finishes the sync in progress), then writes the final health.
func (d *Daemon) shutdown(stopLoop context.CancelFunc) error {
	d.opts.Notify.Stopping()
	// The pair first: keepalived gives the VIPs up (priority-0 advert) so
	// the peer takes over at once rather than after 3 silent intervals.
	d.haClose()
	d.monitor.Close()
	stopLoop()
	<-d.loopDone
	d.closeFleet()
	d.web.stop()
	d.host.Close()
	return nil
}

// Healthy is the watchdog's question: is the sync loop still turning? It
// beats at least once a second when idle; one apply may take a while (a
// cold start of 100,000 services), but not minutes.
func (d *Daemon) Healthy() error {
	if since := d.busySince.Load(); !since.IsZero() && time.Since(since) > 2*time.Minute {
		return fmt.Errorf("sync loop stuck in one apply for %s", time.Since(since).Round(time.Second))
	}
	if age := time.Since(d.beat.Load()); age > 10*time.Second && d.busySince.Load().IsZero() {
		return fmt.Errorf("sync loop stalled for %s", age.Round(time.Second))
	}
	return nil
}

func (d *Daemon) summary() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	if d.pub.cfg != nil {
		n = len(d.pub.cfg.Services)
	}
	s := fmt.Sprintf("%d services", n)
	if len(d.pub.lastErrs) > 0 {
		s += "; config error: " + d.pub.lastErrs[0]
	}
	if !d.pub.sync.InSync && !d.pub.sync.OutOfSyncSince.IsZero() {
		s += "; kernel out of sync: " + d.pub.sync.LastError
	}
	return s
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

// configOrNil is the config serving now.
func (d *Daemon) configOrNil() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pub.cfg
}
