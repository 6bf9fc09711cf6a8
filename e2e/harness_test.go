// Package e2e runs the real lbd binary in a namespace lab (client, lb,
// backends) and sends real TCP/UDP through the kernel it programs.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lbd/appliance/control"
	"lbd/appliance/status"
	"lbd/internal/lab"
)

var (
	labSeq               int
	buildOnce            sync.Once
	lbdBin, labserverBin string
	buildErr             error
)

// binaries builds lbd (unless LBD_BIN names one) and the lab backend once.
func binaries(t *testing.T) (string, string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "lbd-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		lbdBin = os.Getenv("LBD_BIN")
		if lbdBin == "" {
			lbdBin = filepath.Join(dir, "lbd")
			if out, err := exec.Command("go", "build", "-o", lbdBin, "lbd/cmd/lbd").CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build lbd: %v\n%s", err, out)
				return
			}
		}
		labserverBin = filepath.Join(dir, "labserver")
		if out, err := exec.Command("go", "build", "-o", labserverBin, "lbd/internal/labserver").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build labserver: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return lbdBin, labserverBin
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: end-to-end tests need root (network namespaces, nftables); CI runs them as root")
	}
}

// env is one lab with lbd running in its lb namespace.
type env struct {
	t       *testing.T
	lab     *lab.Standard
	dir     string
	cfgPath string
	socket  string
	lbd     *exec.Cmd
	logf    *os.File
	labsrv  string
	// extraEnv is added to lbd's environment (after NOTIFY_SOCKET= is cleared).
	extraEnv []string
	// bin, when set, is the lbd binary startLBD runs instead of the one
	// under test (the upgrade test starts a previous release).
	bin string
}

// newEnv builds a lab with n backends (servers started) and clients.
func newEnv(t *testing.T, n, clients int) *env {
	t.Helper()
	needRoot(t)
	_, ls := binaries(t)
	labSeq++
	name := fmt.Sprintf("e%d", labSeq)
	s, err := lab.NewStandardClients(name, n, clients)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, lab: s, dir: t.TempDir(), labsrv: ls}
	e.cfgPath = filepath.Join(e.dir, "lb.toml")
	e.socket = filepath.Join(e.dir, "lbd.sock")
	t.Cleanup(func() {
		e.stopLBD(true)
		if t.Failed() && e.logf != nil {
			if b, err := os.ReadFile(e.logf.Name()); err == nil {
				t.Logf("lbd log:\n%s", b)
			}
		}
		s.Close()
	})
	if err := s.StartBackends(ls, e.dir); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) writeConfig(text string) {
	e.t.Helper()
	if err := os.WriteFile(e.cfgPath, []byte(text), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// startLBD runs `lbd run` in the lb namespace and waits for its socket.
func (e *env) startLBD() {
	e.t.Helper()
	bin, _ := binaries(e.t)
	if e.bin != "" {
		bin = e.bin
	}
	if e.logf == nil {
		f, err := os.Create(filepath.Join(e.dir, "lbd.log"))
		if err != nil {
			e.t.Fatal(err)
		}
		e.logf = f
	}
	cmd := e.lab.Command("lb", bin, "run", "--config", e.cfgPath, "--socket", e.socket)
	cmd.Env = append(os.Environ(), "LBD_STATE_DIR="+filepath.Join(e.dir, "state"), "NOTIFY_SOCKET=")
	cmd.Env = append(cmd.Env, e.extraEnv...)
	cmd.Stdout, cmd.Stderr = e.logf, e.logf
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.lbd = cmd
	for i := 0; i < 200; i++ {
		if _, err := control.Call(e.socket, control.Request{Command: "status"}, time.Second); err == nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	e.t.Fatalf("lbd did not come up")
}

// stopLBD ends lbd: SIGKILL when kill, else SIGTERM (what systemd sends
// on stop), after which lbd must exit with status 0; anything else fails
// the test.
func (e *env) stopLBD(kill bool) {
	if e.lbd == nil || e.lbd.Process == nil {
		return
	}
	cmd := e.lbd
	e.lbd = nil
	if kill {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return
	}
	if err := terminate(cmd, time.Minute); err != nil {
		e.t.Errorf("lbd on SIGTERM: %v", err)
	}
}

// terminate sends SIGTERM and waits for the exit: nil only for exit status
// 0. After wait (a bound for a hung process, not a timing assertion) it
// kills the process and says so. cmd.Wait, not Process.Wait, so that
// ProcessState is set and lab.Close does not signal a reaped pid.
func terminate(cmd *exec.Cmd, wait time.Duration) error {
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("still running %s after SIGTERM; killed", wait)
	}
}

func (e *env) status() status.Snapshot {
	e.t.Helper()
	resp, err := control.Call(e.socket, control.Request{Command: "status"}, 10*time.Second)
	if err != nil || resp.Status == nil {
		e.t.Fatalf("status: %v", err)
	}
	return *resp.Status
}

// lbdCmd runs an lbd subcommand against this env's daemon.
func (e *env) lbdCmd(args ...string) (string, error) {
	bin, _ := binaries(e.t)
	args = append(args, "--socket", e.socket)
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

func (e *env) reload() {
	e.t.Helper()
	if out, err := e.lbdCmd("reload"); err != nil {
		e.t.Fatalf("reload: %v\n%s", err, out)
	}
}

// spread makes n new TCP connections from client i's address to addr and
// counts the answering backends.
func (e *env) spread(client int, addr string, n int) map[string]int {
	e.t.Helper()
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		c, err := e.lab.DialFrom(e.lab.Client(client), lab.ClientAddr(client), addr, 3*time.Second)
		if err != nil {
			e.t.Fatalf("connection %d to %s: %v", i, addr, err)
		}
		ans, err := lab.AskOn(c, "hi")
		c.Close()
		if err != nil {
			e.t.Fatalf("connection %d to %s: %v", i, addr, err)
		}
		counts[lab.Name(ans)]++
	}
	return counts
}

func (e *env) nft(args ...string) string {
	e.t.Helper()
	out, err := e.lab.Output("lb", append([]string{"nft"}, args...)...)
	if err != nil {
		e.t.Fatalf("nft %v: %v", args, err)
	}
	return out
}

// backends returns the config lines of backends 1..n at port.
func backends(port int, ids ...int) string {
	var b strings.Builder
	for _, i := range ids {
		fmt.Fprintf(&b, "\n  [[service.backend]]\n  address = \"%s:%d\"\n", lab.BackendV4(i), port)
	}
	return b.String()
}
