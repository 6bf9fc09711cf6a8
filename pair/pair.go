package pair

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"lbd/appliance/status"
	"lbd/internal/atomicfile"
)

// Options configure a Node.
type Options struct {
	Log *slog.Logger
	// Output receives keepalived's and conntrackd's own output.
	Output io.Writer
	// OnRole hears each transition after the conntrackd commands for it
	// ran. It must only record and return (the daemon's loop input).
	OnRole func(role, transition string)
	// Keepalived and Conntrackd are the binaries (default: found in PATH
	// or /usr/sbin).
	Keepalived, Conntrackd string
}

// Node is this appliance's half of the pair.
type Node struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	spec     *Spec
	kaText   string
	ctText   string
	cancel   context.CancelFunc
	watchEnd context.CancelFunc
	ka, ct   *child
	adverts  *advertWatch
	// role is keepalived's last word.
	role        string
	roleSince   time.Time
	transitions uint64
	lastTrans   string
	serving     bool
	notServing  string
	released    bool
	lastCommand string
	syncCache   status.FlowSync
	syncAt      time.Time
}

// New makes a node; Apply starts it.
func New(opts Options) *Node {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Output == nil {
		opts.Output = io.Discard
	}
	if opts.OnRole == nil {
		opts.OnRole = func(string, string) {}
	}
	opts.Keepalived = findBinary(opts.Keepalived, "keepalived")
	opts.Conntrackd = findBinary(opts.Conntrackd, "conntrackd")
	n := &Node{opts: opts, log: opts.Log, role: RoleUnknown, notServing: "lbd is starting"}
	return n
}

func findBinary(given, name string) string {
	if given != "" {
		return given
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return "/usr/sbin/" + name
}

// Apply starts the pair from s, or brings the running one to s: a changed
// keepalived.conf is reloaded (SIGHUP, the VIPs stay where they are), a
// changed conntrackd.conf restarts conntrackd (it has no reload).
func (n *Node) Apply(s Spec) error {
	ka, ct := RenderKeepalived(&s), RenderConntrackd(&s)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.spec == nil {
		return n.start(s, ka, ct)
	}
	if n.spec.Dir != s.Dir {
		return fmt.Errorf("ha: the runtime directory cannot change while running (%s -> %s)", n.spec.Dir, s.Dir)
	}
	if ka != n.kaText {
		if err := atomicfile.WriteFile(s.KeepalivedConf(), []byte(ka)); err != nil {
			return fmt.Errorf("ha: write %s: %w", s.KeepalivedConf(), err)
		}
		n.ka.signal(syscall.SIGHUP)
		n.log.Info("ha: keepalived.conf changed; keepalived reloads it", "file", s.KeepalivedConf())
	}
	if ct != n.ctText {
		if err := atomicfile.WriteFile(s.ConntrackdConf(), []byte(ct)); err != nil {
			return fmt.Errorf("ha: write %s: %w", s.ConntrackdConf(), err)
		}
		n.ct.signal(syscall.SIGTERM) // its supervisor starts it again on the new file
		n.log.Info("ha: conntrackd.conf changed; restarting conntrackd", "file", s.ConntrackdConf())
	}
	if s.Peer != n.spec.Peer || s.RouterID != n.spec.RouterID {
		n.watchEnd()
		n.startWatch(s)
	}
	n.spec, n.kaText, n.ctText = &s, ka, ct
	return nil
}

func (n *Node) start(s Spec, ka, ct string) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("ha: %w", err)
	}
	// A stale lock of a conntrackd that died with lbd would stop the new one.
	_ = os.Remove(s.ConntrackdLock())
	// conntrackd syncs flow states, not every sequence number, and a node
	// that comes back may still hold its own old entries of the same
	// flows: with strict TCP window tracking their next packets would be
	// "invalid", skip NAT, hit the VIP now local and draw a RST. Liberal
	// tracking (per network namespace) is what failover firewalls run.
	if err := os.WriteFile("/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal", []byte("1\n"), 0o644); err != nil {
		n.log.Warn("ha: cannot set nf_conntrack_tcp_be_liberal = 1; flows may break on takeover", "err", err)
	}
	if err := n.writeTrack(&s); err != nil {
		return err
	}
	if err := makeFIFO(s.NotifyFIFO()); err != nil {
		return fmt.Errorf("ha: %w", err)
	}
	for path, text := range map[string]string{s.KeepalivedConf(): ka, s.ConntrackdConf(): ct} {
		if err := atomicfile.WriteFile(path, []byte(text)); err != nil {
			return fmt.Errorf("ha: write %s: %w", path, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.spec, n.kaText, n.ctText = &s, ka, ct
	n.startWatch(s)
	go func() {
		if err := readNotify(ctx, s.NotifyFIFO(), n.onNotify); err != nil {
			n.log.Error("ha: notify fifo", "err", err)
		}
	}()
	n.ct = newChild("conntrackd", []string{n.opts.Conntrackd, "-C", s.ConntrackdConf()}, n.opts.Output, n.log)
	n.ct.started = func() {
		// A restarted conntrackd has empty caches: ask for the peer's
		// flows (backup) or send ours (master) once it answers.
		go n.afterConntrackdStart()
	}
	n.ka = newChild("keepalived", []string{n.opts.Keepalived, "--dont-fork", "--log-console", "--log-detail", "--vrrp",
		"--use-file=" + s.KeepalivedConf(), "--pid=" + s.KeepalivedPID(), "--vrrp_pid=" + s.VRRPPID()}, n.opts.Output, n.log)
	n.ka.died = func() { killLeftover(s.VRRPPID(), "keepalived") }
	go n.ct.run(ctx)
	go n.ka.run(ctx)
	n.log.Info("ha: pair node started", "dir", s.Dir, "interface", s.Interface, "router_id", s.RouterID,
		"priority", s.Priority, "peer", s.Peer.String(), "sync_peer", s.SyncPeer.String())
	return nil
}

func (n *Node) startWatch(s Spec) {
	ctx, cancel := context.WithCancel(context.Background())
	n.watchEnd = cancel
	if n.adverts == nil {
		n.adverts = newAdvertWatch()
	}
	w := n.adverts
	go func() {
		if err := w.run(ctx, s.Peer, s.RouterID); err != nil {
			n.log.Warn("ha: cannot watch the peer's adverts", "err", err)
		}
	}()
}

// Close stops keepalived (it gives the VIPs up with a priority-0 advert,
// so the peer takes over at once) and conntrackd.
func (n *Node) Close() {
	n.mu.Lock()
	cancel, watchEnd, ka, ct := n.cancel, n.watchEnd, n.ka, n.ct
	n.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	watchEnd()
	<-ka.done
	<-ct.done
}

// SetServing tells keepalived whether this node can serve (the daemon's
// verdict after each sync). A node that cannot is held in FAULT.
func (n *Node) SetServing(ok bool, why string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ok {
		why = ""
	}
	if n.serving == ok && n.notServing == why {
		return
	}
	n.serving, n.notServing = ok, why
	if ok {
		n.log.Info("ha: this node can serve")
	} else {
		n.log.Warn("ha: this node cannot serve; giving way to the peer", "why", why)
	}
	if n.spec != nil {
		if err := n.writeTrack(n.spec); err != nil {
			n.log.Error("ha: track file", "err", err)
		}
	}
}

// writeTrack writes keepalived's track file: 0 = fine, 1 = FAULT.
func (n *Node) writeTrack(s *Spec) error {
	v := "0\n"
	if !n.serving || n.released {
		v = "1\n"
	}
	if err := atomicfile.WriteFile(s.TrackFile(), []byte(v)); err != nil {
		return fmt.Errorf("ha: write %s: %w", s.TrackFile(), err)
	}
	return nil
}

// onNotify handles one transition from keepalived: conntrackd's commands
// for the new role first (on MASTER the synced flows must be in the
// kernel before the clients' packets are), then the daemon hears it.
func (n *Node) onNotify(ev notifyEvent) {
	n.mu.Lock()
	if n.spec == nil || ev.Instance != n.spec.InstanceName() {
		n.mu.Unlock()
		return
	}
	prev := n.role
	if prev == ev.State {
		n.mu.Unlock()
		return
	}
	why := n.reason(prev, ev.State)
	tr := fmt.Sprintf("%s -> %s: %s", prev, ev.State, why)
	n.role, n.roleSince, n.lastTrans = ev.State, time.Now(), tr
	n.transitions++
	n.mu.Unlock()
	n.log.Warn("ha: role changed", "from", prev, "to", ev.State, "why", why, "priority", ev.Priority)
	n.conntrackdFor(ev.State)
	n.opts.OnRole(ev.State, tr)
}

// reason guesses why keepalived moved, from what lbd knows.
func (n *Node) reason(from, to string) string {
	adv := n.adverts.get()
	switch to {
	case RoleMaster:
		if from == RoleUnknown || from == RoleFault && adv.At.IsZero() {
			return "no master heard on the link"
		}
		if adv.Priority == 0 && !adv.At.IsZero() {
			return "the peer gave the VIPs up (priority-0 advert)"
		}
		if n.spec.Preempt && !adv.At.IsZero() && time.Since(adv.At) < 3*n.spec.AdvertInterval {
			return "preempted a peer of lower priority"
		}
		return "the peer went silent (no advert for 3 intervals)"
	case RoleBackup:
		if from == RoleUnknown {
			return "started"
		}
		if from == RoleFault {
			return "can serve again"
		}
		return "a peer of higher priority is master"
	case RoleFault:
		switch {
		case n.released:
			return "released by lbd ha release"
		case !n.serving:
			return "cannot serve: " + n.notServing
		}
		return "a tracked link (interface or lan_interface) is down"
	case RoleStop:
		return "keepalived stopped"
	}
	return "keepalived said so"
}

// conntrackdFor runs conntrackd's commands for a role, in the order of
// conntrackd's primary-backup.sh. MASTER: commit the external cache (the
// peer's flows) into the kernel, flush both caches, resync the internal
// cache from the kernel, send a bulk update to the peer. BACKUP/FAULT:
// shorten the kernel's timers of flows this node held (the new master
// has them), request a resync from the master.
func (n *Node) conntrackdFor(role string) {
	var seq []string
	switch role {
	case RoleMaster:
		seq = []string{"-c", "-f", "-R", "-B"}
	case RoleBackup, RoleFault:
		seq = []string{"-t", "-n"}
	default:
		return
	}
	start := time.Now()
	var errs []string
	for _, a := range seq {
		if out, err := n.conntrackd(a); err != nil {
			errs = append(errs, fmt.Sprintf("conntrackd %s: %v %s", a, err, strings.TrimSpace(out)))
		}
	}
	res := fmt.Sprintf("%s: conntrackd %s in %s", role, strings.Join(seq, " "), time.Since(start).Round(time.Millisecond))
	if len(errs) > 0 {
		res += "; " + strings.Join(errs, "; ")
		n.log.Error("ha: conntrackd role commands", "role", role, "errors", strings.Join(errs, "; "))
	} else {
		n.log.Info("ha: conntrackd role commands done", "role", role, "seq", strings.Join(seq, " "), "took", time.Since(start).Round(time.Millisecond))
	}
	n.mu.Lock()
	n.lastCommand = res
	n.mu.Unlock()
}

// conntrackd runs one conntrackd client command against our daemon.
func (n *Node) conntrackd(args ...string) (string, error) {
	n.mu.Lock()
	conf := ""
	if n.spec != nil {
		conf = n.spec.ConntrackdConf()
	}
	n.mu.Unlock()
	// A commit of a big cache takes a while; a stats query must not hold
	// a status request up when conntrackd hangs.
	limit := 30 * time.Second
	if len(args) == 1 && args[0] == "-s" {
		limit = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	out, err := exec.CommandContext(ctx, n.opts.Conntrackd, append([]string{"-C", conf}, args...)...).CombinedOutput()
	return string(out), err
}

// afterConntrackdStart waits until a (re)started conntrackd answers, then
// runs the commands of the current role so its caches fill again.
func (n *Node) afterConntrackdStart() {
	for i := 0; i < 50; i++ {
		if _, err := n.conntrackd("-s"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	n.mu.Lock()
	role := n.role
	n.mu.Unlock()
	switch role {
	case RoleMaster:
		// Only the caches: the kernel has the flows; -c would be moot.
		for _, a := range []string{"-R", "-B"} {
			_, _ = n.conntrackd(a)
		}
	case RoleBackup, RoleFault:
		_, _ = n.conntrackd("-n")
	}
}

// Role is keepalived's last reported role.
func (n *Node) Role() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.role
}

// ErrNotMaster is Release on a node that holds no VIPs.
var ErrNotMaster = errors.New("this node is not master; nothing to release")

// Release hands the VIPs to the peer: this node goes to FAULT (keepalived
// sends a priority-0 advert, the peer takes over at once), then Release
// waits until the peer advertises as master. Without preempt the node is
// then let back to BACKUP (nopreempt keeps it there); with preempt it
// stays held until Resume, or it would take the VIPs straight back.
func (n *Node) Release(timeout time.Duration) (string, error) {
	n.mu.Lock()
	if n.spec == nil {
		n.mu.Unlock()
		return "", errors.New("no [ha] section is running")
	}
	if n.role != RoleMaster {
		role := n.role
		n.mu.Unlock()
		return "", fmt.Errorf("%w (role %s)", ErrNotMaster, role)
	}
	spec := n.spec
	n.released = true
	err := n.writeTrack(spec)
	n.mu.Unlock()
	if err != nil {
		return "", err
	}
	start := time.Now()
	deadline := start.Add(timeout)
	var adv Advert
	for {
		// Polled, not waited on a condition: the advert watch and the
		// node have their own locks, taken in either order elsewhere.
		adv = n.adverts.get()
		if adv.At.After(start) && adv.Priority > 0 && n.Role() != RoleMaster {
			break
		}
		if time.Now().After(deadline) {
			n.mu.Lock()
			n.released = false
			_ = n.writeTrack(spec)
			n.mu.Unlock()
			return "", fmt.Errorf("the peer %s did not become master within %s; this node takes the VIPs back", spec.Peer, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	msg := fmt.Sprintf("released: peer %s is master (advert priority %d) after %s", adv.From, adv.Priority, time.Since(start).Round(time.Millisecond))
	if spec.Preempt {
		return msg + "; this node stays held out (preempt = true would take the VIPs back): lbd ha resume lets it", nil
	}
	n.mu.Lock()
	n.released = false
	err = n.writeTrack(spec)
	n.mu.Unlock()
	return msg + "; this node is a backup again", err
}

// Resume lifts a release held by preempt.
func (n *Node) Resume() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.spec == nil {
		return errors.New("no [ha] section is running")
	}
	if !n.released {
		return errors.New("this node is not released")
	}
	n.released = false
	return n.writeTrack(n.spec)
}

// Status is the node's part of the status snapshot.
func (n *Node) Status() status.HA {
	n.mu.Lock()
	spec := n.spec
	st := status.HA{Mode: "vrrp", Role: n.role, RoleSince: n.roleSince, Transitions: n.transitions,
		LastTransition: n.lastTrans, Serving: n.serving, NotServing: n.notServing, Released: n.released,
		LastCommand: n.lastCommand}
	ka, ct := n.ka, n.ct
	cached, cachedAt := n.syncCache, n.syncAt
	n.mu.Unlock()
	if spec == nil {
		return st
	}
	st.Interface, st.RouterID, st.Priority, st.Preempt, st.Peer = spec.Interface, spec.RouterID, spec.Priority, spec.Preempt, spec.Peer.String()
	if a := n.adverts.get(); !a.At.IsZero() {
		st.PeerAdvert = &status.PeerAdvert{From: a.From.String(), Priority: a.Priority, At: a.At}
	}
	st.Keepalived.PID, st.Keepalived.Restarts, st.Keepalived.LastExit = ka.state()
	st.Conntrackd.PID, st.Conntrackd.Restarts, st.Conntrackd.LastExit = ct.state()
	// conntrackd -s costs a process; a status poll every few hundred ms
	// must not run one each time.
	if time.Since(cachedAt) < time.Second {
		st.FlowSync = cached
		return st
	}
	out, err := n.conntrackd("-s")
	if err != nil {
		st.FlowSync.Error = fmt.Sprintf("conntrackd -s: %v", err)
	} else {
		st.FlowSync = ParseStats(out)
	}
	n.mu.Lock()
	n.syncCache, n.syncAt = st.FlowSync, time.Now()
	n.mu.Unlock()
	return st
}

var (
	reCache   = regexp.MustCompile(`cache (internal|external):\s*\n\s*current active connections:\s*(\d+)`)
	reBytes   = regexp.MustCompile(`(\d+) Bytes sent\s+(\d+) Bytes recv`)
	rePkts    = regexp.MustCompile(`(\d+) Pckts sent\s+(\d+) Pckts recv`)
	reErrs    = regexp.MustCompile(`(\d+) Error send\s+(\d+) Error recv`)
	reLostMsg = regexp.MustCompile(`(\d+) Lost msgs`)
)

// ParseStats reads `conntrackd -s`.
func ParseStats(out string) status.FlowSync {
	var fs status.FlowSync
	u := func(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }
	for _, m := range reCache.FindAllStringSubmatch(out, -1) {
		if m[1] == "internal" {
			fs.Internal = u(m[2])
		} else {
			fs.External = u(m[2])
		}
	}
	if m := reBytes.FindStringSubmatch(out); m != nil {
		fs.BytesSent, fs.BytesRecv = u(m[1]), u(m[2])
	}
	if m := rePkts.FindStringSubmatch(out); m != nil {
		fs.MsgSent, fs.MsgRecv = u(m[1]), u(m[2])
	}
	if m := reErrs.FindStringSubmatch(out); m != nil {
		fs.SendErrors, fs.RecvErrors = u(m[1]), u(m[2])
	}
	if m := reLostMsg.FindStringSubmatch(out); m != nil {
		fs.LostMessages = u(m[1])
	}
	return fs
}

// killLeftover ends what a dead keepalived left: its VRRP process (named in
// the pid file) lives on for a moment after the parent's SIGKILL, and a new
// keepalived that finds it running exits at once.
func killLeftover(pidFile, comm string) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	name, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(name)) != comm {
		return // gone, or the pid was reused
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 50; i++ {
		if err := syscall.Kill(pid, 0); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
