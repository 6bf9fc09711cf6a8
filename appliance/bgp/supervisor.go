package bgp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"lbd/internal/enginecaps"
)

// Supervisor runs BIRD as lbd's child, the same way on the appliance and in
// a test namespace: `bird -f` with lbd's own generated config, its own
// control socket (-s) and pid file (-P) in lbd's run directory, so several
// nodes can run on one machine. It restarts BIRD with backoff when it dies
// and reconfigures it in place (`configure`) when [bgp] changes.
type Supervisor struct {
	bin, dir string
	log      *slog.Logger

	mu       sync.Mutex
	conf     string // the text BIRD runs
	pid      int
	running  bool
	started  bool
	stopping bool
	restarts int
	lastExit string
	since    time.Time
	wake     chan struct{} // cut a restart backoff short (Stop)
	done     chan struct{}
}

// File names in the run directory.
const (
	ConfFile   = "bird.conf"
	SocketFile = "bird.ctl"
	PidFile    = "bird.pid"
)

// NewSupervisor prepares a supervisor; bin "" finds `bird` in PATH (then
// /usr/sbin, where Debian puts it).
func NewSupervisor(bin, dir string, log *slog.Logger) *Supervisor {
	if bin == "" {
		bin = "bird"
		if p, err := exec.LookPath("bird"); err == nil {
			bin = p
		} else if _, err := os.Stat("/usr/sbin/bird"); err == nil {
			bin = "/usr/sbin/bird"
		}
	}
	return &Supervisor{bin: bin, dir: dir, log: log, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Ctl is a client of this BIRD's control socket.
func (s *Supervisor) Ctl() Ctl { return Ctl{Socket: filepath.Join(s.dir, SocketFile)} }

// Check has BIRD parse text (`bird -p`) without touching the running one:
// a config lbd cannot run (BIRD built without BFD, say) is refused before
// anything changes.
func (s *Supervisor) Check(text string) error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("bird run directory: %w", err)
	}
	f, err := os.CreateTemp(s.dir, "bird.conf.check-*")
	if err != nil {
		return fmt.Errorf("bird config check: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return fmt.Errorf("bird config check: %w", err)
	}
	f.Close()
	out, err := exec.Command(s.bin, "-p", "-c", f.Name()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("BIRD (%s) refused the generated config: %s", s.bin, firstLine(out, err))
	}
	return nil
}

func firstLine(out []byte, err error) string {
	if l := strings.TrimSpace(string(bytes.SplitN(out, []byte("\n"), 2)[0])); l != "" {
		return l
	}
	return err.Error()
}

// Apply makes BIRD run text: it writes the file, starts BIRD the first
// time, and afterwards asks the running BIRD to re-read it. BIRD restarts
// only the protocols whose options changed; the others keep their sessions.
func (s *Supervisor) Apply(text string) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return errors.New("bird supervisor is stopping")
	}
	same := s.started && text == s.conf
	s.conf = text
	first := !s.started
	s.started = true
	running := s.running
	s.mu.Unlock()
	if same {
		return nil
	}
	if err := writeAtomic(filepath.Join(s.dir, ConfFile), text); err != nil {
		return err
	}
	if first {
		s.killStale()
		go s.run()
		return nil
	}
	if !running {
		return nil // the restart loop starts it with the new file
	}
	out, err := s.Ctl().Run("configure")
	if err != nil {
		return fmt.Errorf("bird configure: %w", err)
	}
	s.log.Info("bird reconfigured", "reply", strings.TrimSpace(out))
	return nil
}

func writeAtomic(path, text string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("bird run directory: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil { // may hold MD5 passwords
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// killStale stops a BIRD a previous lbd left behind (its pid file names a
// live bird), which would hold the control socket and the BGP port.
func (s *Supervisor) killStale() {
	b, err := os.ReadFile(filepath.Join(s.dir, PidFile))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != "bird" {
		return
	}
	s.log.Warn("stopping the bird a previous lbd left", "pid", pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 50; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// run starts BIRD and restarts it when it dies, with backoff (1 s
// doubling to 30 s; back to 1 s after a run of a minute).
func (s *Supervisor) run() {
	defer close(s.done)
	// Pdeathsig fires when the thread that started the child exits: pin
	// this goroutine to its thread so that is only when lbd dies. Then a
	// killed lbd takes its BIRD down and the router stops sending to it.
	runtime.LockOSThread()
	backoff := time.Duration(0)
	for {
		began := time.Now()
		err := s.runOnce()
		s.mu.Lock()
		stopping := s.stopping
		s.running = false
		if !stopping {
			s.restarts++
			s.lastExit = fmt.Sprintf("%s: %v", time.Now().Format(time.RFC3339), err)
		}
		s.mu.Unlock()
		if stopping {
			return
		}
		if time.Since(began) > time.Minute {
			backoff = 0
		}
		backoff = min(max(2*backoff, time.Second), 30*time.Second)
		s.log.Error("bird exited; restarting", "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-s.wake:
		}
	}
}

func (s *Supervisor) runOnce() error {
	cmd := exec.Command(s.bin, "-f", "-c", filepath.Join(s.dir, ConfFile),
		"-s", filepath.Join(s.dir, SocketFile), "-P", filepath.Join(s.dir, PidFile))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	enginecaps.Apply(cmd.SysProcAttr)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = io.Discard
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return nil
	}
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	s.pid, s.running, s.since = cmd.Process.Pid, true, time.Now()
	s.mu.Unlock()
	s.log.Info("bird started", "pid", cmd.Process.Pid, "dir", s.dir)
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		s.log.Info("bird", "line", sc.Text())
	}
	return cmd.Wait()
}

// Stop ends BIRD (SIGTERM: it closes its sessions with a Cease, so the
// routers withdraw at once) and the restart loop.
func (s *Supervisor) Stop() {
	s.mu.Lock()
	if s.stopping || !s.started {
		s.stopping = true
		s.mu.Unlock()
		return
	}
	s.stopping = true
	pid, running := s.pid, s.running
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if running {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-s.done
	}
}

// State is the supervisor's view for status.
type State struct {
	Running  bool
	PID      int
	Since    time.Time
	Restarts int
	LastExit string
}

// State reports whether BIRD runs and how often it was restarted.
func (s *Supervisor) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return State{Running: s.running, PID: s.pid, Since: s.since, Restarts: s.restarts, LastExit: s.lastExit}
}
