package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"lbd/appliance/control"
	"lbd/internal/lab"
)

// Helpers for the tests that prove the control loop (restart_test.go,
// concurrency_test.go): steady client load with an exact failure count,
// lbd started and killed from goroutines (no t.Fatal off the test
// goroutine), control requests that ride out a restart, and a small
// config builder.

// load makes new TCP connections one after another from one client to one
// address until stopped, and counts the answers by backend. Every attempt
// is a new flow, so each one is scheduled by the kernel afresh.
type connLoad struct {
	mu       sync.Mutex
	ok       int
	failed   int
	backends map[string]int
	failures []string // the first few, with when they happened
	cancel   context.CancelFunc
	done     chan struct{}
}

// startLoad runs a load from client i to addr, pausing pause between
// connections. The pause keeps the rate bounded (the machine is shared);
// the dial timeout is generous because a SYN lost once is retransmitted
// after a second, and that is not a failure of lbd.
func (e *env) startLoad(client int, addr string, pause time.Duration) *connLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &connLoad{backends: map[string]int{}, cancel: cancel, done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(l.done)
		for ctx.Err() == nil {
			name, err := e.askOnce(client, addr)
			l.mu.Lock()
			if err != nil {
				l.failed++
				if len(l.failures) < 20 {
					l.failures = append(l.failures, fmt.Sprintf("t+%.2fs: %v", time.Since(start).Seconds(), err))
				}
			} else {
				l.ok++
				l.backends[name]++
			}
			l.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
		}
	}()
	// A failed test must not leave the goroutine dialing into a lab that
	// is being torn down.
	e.t.Cleanup(l.stop)
	return l
}

// askOnce makes one connection and returns the answering backend's name.
func (e *env) askOnce(client int, addr string) (string, error) {
	c, err := e.lab.DialFrom(e.lab.Client(client), lab.ClientAddr(client), addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	ans, err := lab.AskOn(c, "hi")
	if err != nil {
		return "", err
	}
	if lab.Name(ans) == "" {
		return "", errors.New("empty answer")
	}
	return lab.Name(ans), nil
}

// stop ends the load and waits for the connection in flight.
func (l *connLoad) stop() {
	l.cancel()
	<-l.done
}

// result returns the counts so far.
func (l *connLoad) result() (ok, failed int, byBackend map[string]int, failures []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := map[string]int{}
	for k, v := range l.backends {
		m[k] = v
	}
	return l.ok, l.failed, m, append([]string(nil), l.failures...)
}

func (l *connLoad) String() string {
	ok, failed, by, _ := l.result()
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%d", k, by[k])
	}
	return fmt.Sprintf("%d ok, %d failed, by backend:%s", ok, failed, b.String())
}

// startLBDErr is startLBD for goroutines: it returns an error instead of
// failing the test, and waits longer (a restart under load with a busy
// machine may take a while; how long it takes is not what is tested).
func (e *env) startLBDErr() error {
	bin, _ := binaries(e.t)
	if e.logf == nil {
		f, err := os.Create(filepath.Join(e.dir, "lbd.log"))
		if err != nil {
			return err
		}
		e.logf = f
	}
	cmd := e.lab.Command("lb", bin, "run", "--config", e.cfgPath, "--socket", e.socket)
	cmd.Env = append(os.Environ(), "LBD_STATE_DIR="+filepath.Join(e.dir, "state"), "NOTIFY_SOCKET=")
	cmd.Env = append(cmd.Env, e.extraEnv...)
	cmd.Stdout, cmd.Stderr = e.logf, e.logf
	if err := cmd.Start(); err != nil {
		return err
	}
	e.lbd = cmd
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := control.Call(e.socket, control.Request{Command: "status"}, time.Second); err == nil {
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("lbd (pid %d) did not answer on %s within 30s", cmd.Process.Pid, e.socket)
}

// callRetry sends a control request and retries while lbd cannot be
// reached or drops the connection (it is being killed or has not opened
// its socket yet). A reply, OK or not, is returned as is: a refusal is the
// daemon's answer, not a transient condition.
func (e *env) callRetry(req control.Request, timeout time.Duration) (control.Response, int, error) {
	deadline := time.Now().Add(timeout)
	tries := 0
	for {
		tries++
		resp, err := control.Call(e.socket, req, 30*time.Second)
		if err == nil {
			return resp, tries, nil
		}
		if time.Now().After(deadline) {
			return resp, tries, fmt.Errorf("%s: lbd unreachable for %s: %w", req.Command, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeConfigAtomic replaces the config file by rename, so an lbd that
// starts or reloads at any moment reads either the old or the new file,
// never half of one.
func (e *env) writeConfigAtomic(text string) error {
	tmp := e.cfgPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, e.cfgPath)
}

// svcDef is one [[service]] of a test config.
type svcDef struct {
	Name     string
	VIP      string
	Port     uint16
	Proto    string // tcp | udp
	Health   string // the [service.health] section, "" for none
	Backends []netip.AddrPort
}

func (s svcDef) toml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n[[service]]\nname = %q\nvip = %q\nport = %d\nprotocol = %q\n", s.Name, s.VIP, s.Port, s.Proto)
	b.WriteString(s.Health)
	for _, be := range s.Backends {
		fmt.Fprintf(&b, "\n  [[service.backend]]\n  address = %q\n", be.String())
	}
	return b.String()
}

func (s svcDef) key() nftEndpoint {
	p := uint8(6)
	if s.Proto == "udp" {
		p = 17
	}
	return nftEndpoint{VIP: netip.MustParseAddr(s.VIP), Proto: p, Port: s.Port}
}

func configOf(svcs ...svcDef) string {
	var b strings.Builder
	for _, s := range svcs {
		b.WriteString(s.toml())
	}
	return b.String()
}

func beV4(i int, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(lab.BackendV4(i)), port)
}

func beV6(i int, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(lab.BackendV6(i)), port)
}

// backendStates reads lbd status: state and slot count of every backend,
// by service and address.
type backendState struct {
	State string
	Slots int
}

func (e *env) backendStates() (map[string]map[netip.AddrPort]backendState, error) {
	resp, err := control.Call(e.socket, control.Request{Command: "status"}, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if resp.Status == nil {
		return nil, errors.New("status: empty answer")
	}
	out := map[string]map[netip.AddrPort]backendState{}
	for _, s := range resp.Status.Services {
		m := map[netip.AddrPort]backendState{}
		for _, b := range s.Backends {
			ap, err := netip.ParseAddrPort(b.Address)
			if err != nil {
				return nil, fmt.Errorf("status: backend address %q: %v", b.Address, err)
			}
			m[ap] = backendState{State: b.State, Slots: b.Slots}
		}
		out[s.Name] = m
	}
	return out, nil
}

// wantOf lists svcs as the kernel should hold them (without health).
func wantOf(svcs []svcDef) []wantService {
	var w []wantService
	for _, s := range svcs {
		w = append(w, wantService{Name: s.Name, EP: s.key()})
	}
	return w
}

// kernelServicesDiff reads the lb namespace's table and says how its set
// of services differs from svcs. A dump can be interrupted by a
// concurrent write (lbd is busy); that is retried, and a table that
// cannot be read at all is reported as the difference.
func (e *env) kernelServicesDiff(svcs []svcDef) []string {
	var err error
	for try := 0; try < 5; try++ {
		var ks *kernelState
		if ks, err = readKernel(e.lab.NSFile("lb")); err == nil {
			return ks.diffServices(wantOf(svcs))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return []string{"read kernel: " + err.Error()}
}
