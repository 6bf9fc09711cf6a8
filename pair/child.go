package pair

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"

	"lbd/internal/enginecaps"
)

// child is one supervised process (keepalived or conntrackd) that lbd
// runs in its own network namespace, so the pair works the same in the
// namespace tests and on the appliance. It is restarted with backoff when
// it dies; Pdeathsig ends it when lbd dies, so a restarted lbd never
// finds an orphan holding the VIPs with nobody following its role.
type child struct {
	name string
	argv []string
	out  io.Writer
	log  *slog.Logger
	// started runs after each start (conntrackd needs its role commands
	// again after a restart); died after each death, before the restart.
	started, died func()

	mu       sync.Mutex
	cmd      *exec.Cmd
	restarts int
	lastExit string
	stopped  bool
	done     chan struct{}
}

func newChild(name string, argv []string, out io.Writer, log *slog.Logger) *child {
	return &child{name: name, argv: argv, out: out, log: log, done: make(chan struct{})}
}

// Backoff bounds between restarts of a child that died.
const (
	restartMin = 200 * time.Millisecond
	restartMax = 10 * time.Second
	// A child that ran this long before dying starts again at restartMin.
	restartReset = 30 * time.Second
)

// run keeps the process running until ctx ends, then stops it (SIGTERM:
// keepalived gives up the VIPs with a priority-0 advert on its way out).
func (c *child) run(ctx context.Context) {
	defer close(c.done)
	// Pdeathsig fires when the thread that started the child exits, not
	// the process: pin this goroutine to its thread so that is only when
	// lbd dies (as appliance/bgp's supervisor does for BIRD).
	runtime.LockOSThread()
	backoff := restartMin
	for {
		start := time.Now()
		cmd := exec.Command(c.argv[0], c.argv[1:]...)
		cmd.Stdout, cmd.Stderr = c.out, c.out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
		enginecaps.Apply(cmd.SysProcAttr)
		err := cmd.Start()
		if err == nil {
			c.mu.Lock()
			c.cmd = cmd
			c.mu.Unlock()
			c.log.Info("ha: started", "process", c.name, "pid", cmd.Process.Pid)
			if c.started != nil {
				c.started()
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err = <-exited:
			case <-ctx.Done():
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(5 * time.Second):
					_ = cmd.Process.Kill()
					<-exited
				}
				c.mu.Lock()
				c.cmd, c.stopped = nil, true
				c.mu.Unlock()
				return
			}
			if err == nil {
				err = fmt.Errorf("exited with status 0")
			}
		}
		c.mu.Lock()
		c.cmd = nil
		c.restarts++
		c.lastExit = fmt.Sprintf("%s: %v", time.Now().UTC().Format(time.RFC3339), err)
		c.mu.Unlock()
		if time.Since(start) > restartReset {
			backoff = restartMin
		}
		c.log.Error("ha: process died; restarting", "process", c.name, "err", err, "retry_in", backoff)
		if c.died != nil {
			c.died()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, restartMax)
	}
}

// signal sends sig to the running process (false when none runs).
func (c *child) signal(sig os.Signal) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil || c.cmd.Process == nil {
		return false
	}
	return c.cmd.Process.Signal(sig) == nil
}

// state is what status shows of the process.
func (c *child) state() (pid, restarts int, lastExit string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil && c.cmd.Process != nil {
		pid = c.cmd.Process.Pid
	}
	return pid, c.restarts, c.lastExit
}
