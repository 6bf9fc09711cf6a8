package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lbd/appliance/control"
	"lbd/internal/lab"
)

// The test below is the service manager: it does for lbd what systemd does
// for the image's lbd.service (Type=notify, NotifyAccess=main,
// WatchdogSec=), with a short WATCHDOG_USEC so it runs in seconds.
//
//   - NOTIFY_SOCKET is a unixgram socket it reads with SO_PASSCRED, and like
//     NotifyAccess=main it only counts messages whose sender is lbd's PID;
//   - WATCHDOG_USEC and WATCHDOG_PID are set as systemd sets them (the PID
//     of the process it started: a shell that execs lbd keeps its PID);
//   - once no WATCHDOG=1 came for WATCHDOG_USEC it sends SIGABRT (systemd's
//     default WatchdogSignal=), SIGKILL if that does not end it, and starts
//     lbd again (Restart=always).
const watchdogUsec = 4_000_000 // 4 s: keep-alives every 2 s

// notifyMsg is one datagram on NOTIFY_SOCKET and the PID that sent it.
type notifyMsg struct {
	pid  int32
	at   time.Time
	text string
}

// serviceManager is the systemd side of one lbd "unit".
type serviceManager struct {
	t    *testing.T
	e    *env
	sock string
	conn *net.UnixConn
	msgs chan notifyMsg
	log  []string // every message, for failure output
	mu   sync.Mutex
	env  []string
	pid  int
}

func newServiceManager(t *testing.T, e *env) *serviceManager {
	t.Helper()
	m := &serviceManager{t: t, e: e, sock: filepath.Join(e.dir, "notify.sock"), msgs: make(chan notifyMsg, 1000)}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: m.sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	m.conn = conn
	// SO_PASSCRED: the kernel attaches the sender's PID to each datagram,
	// which is how systemd tells the main process from its children.
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PASSCRED, 1)
	}); err != nil || serr != nil {
		t.Fatalf("SO_PASSCRED: %v %v", err, serr)
	}
	t.Cleanup(func() {
		conn.Close()
		if t.Failed() {
			m.mu.Lock()
			t.Logf("notify messages:\n%s", strings.Join(m.log, "\n"))
			m.mu.Unlock()
		}
	})
	go m.read()
	return m
}

func (m *serviceManager) read() {
	buf := make([]byte, 4096)
	oob := make([]byte, syscall.CmsgSpace(syscall.SizeofUcred))
	for {
		n, oobn, _, _, err := m.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			close(m.msgs)
			return
		}
		msg := notifyMsg{pid: -1, at: time.Now(), text: string(buf[:n])}
		if cmsgs, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, c := range cmsgs {
				if cred, err := syscall.ParseUnixCredentials(&c); err == nil {
					msg.pid = cred.Pid
				}
			}
		}
		m.mu.Lock()
		m.log = append(m.log, fmt.Sprintf("%s pid=%d %q", msg.at.Format("15:04:05.000"), msg.pid, msg.text))
		m.mu.Unlock()
		m.msgs <- msg
	}
}

// start runs lbd in the lb namespace as systemd would start the unit.
func (m *serviceManager) start() {
	m.t.Helper()
	bin, _ := binaries(m.t)
	e := m.e
	if e.logf == nil {
		f, err := os.Create(filepath.Join(e.dir, "lbd.log"))
		if err != nil {
			m.t.Fatal(err)
		}
		e.logf = f
	}
	// `ip netns exec` and the shell both exec, so $$ is lbd's PID: the
	// WATCHDOG_PID that systemd sets for the main process.
	cmd := e.lab.Command("lb", "/bin/sh", "-c", `WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"`, "sh",
		bin, "run", "--config", e.cfgPath, "--socket", e.socket)
	cmd.Env = append(os.Environ(), "LBD_STATE_DIR="+filepath.Join(e.dir, "state"),
		"NOTIFY_SOCKET="+m.sock, "WATCHDOG_USEC="+strconv.Itoa(watchdogUsec))
	cmd.Env = append(cmd.Env, m.env...)
	cmd.Stdout, cmd.Stderr = e.logf, e.logf
	if err := cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	e.lbd = cmd // the harness kills it on cleanup
	m.pid = cmd.Process.Pid
	m.t.Logf("lbd started, pid %d", m.pid)
}

// next waits for a message from the main PID containing want. Messages
// from other PIDs are ignored, as with NotifyAccess=main.
func (m *serviceManager) next(want string, timeout time.Duration) notifyMsg {
	m.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case msg, ok := <-m.msgs:
			if !ok {
				m.t.Fatalf("notify socket closed while waiting for %q", want)
			}
			if msg.pid == int32(m.pid) && strings.Contains(msg.text, want) {
				return msg
			}
		case <-deadline:
			m.t.Fatalf("no %q from lbd (pid %d) within %s", want, m.pid, timeout)
		}
	}
}

// watchdogFires waits until the watchdog deadline passes: WATCHDOG_USEC
// without a WATCHDOG=1 from the main PID. It returns the STATUS= lines lbd
// sent meanwhile. Fails if that does not happen within timeout.
func (m *serviceManager) watchdogFires(timeout time.Duration) []string {
	m.t.Helper()
	interval := time.Duration(watchdogUsec) * time.Microsecond
	last := time.Now()
	var statuses []string
	deadline := time.After(timeout)
	for {
		wait := time.Until(last.Add(interval))
		if wait <= 0 {
			return statuses
		}
		select {
		case msg, ok := <-m.msgs:
			if !ok {
				m.t.Fatal("notify socket closed")
			}
			if msg.pid != int32(m.pid) {
				continue
			}
			for _, line := range strings.Split(msg.text, "\n") {
				if line == "WATCHDOG=1" {
					last = msg.at
				}
				if s, ok := strings.CutPrefix(line, "STATUS="); ok {
					statuses = append(statuses, s)
				}
			}
		case <-time.After(wait):
		case <-deadline:
			m.t.Fatalf("lbd kept sending WATCHDOG=1 for %s after debug-wedge; statuses: %q", timeout, statuses)
		}
	}
}

// abort is what systemd does at the watchdog deadline: SIGABRT to the main
// process (WatchdogSignal=), SIGKILL if it has not exited after a while.
func (m *serviceManager) abort() {
	m.t.Helper()
	cmd := m.e.lbd
	if err := cmd.Process.Signal(syscall.SIGABRT); err != nil {
		m.t.Fatalf("SIGABRT: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := cmd.Process.Wait(); done <- err }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		m.t.Log("lbd ignored SIGABRT for 30 s: SIGKILL")
		_ = cmd.Process.Kill()
		<-done
	}
	m.e.lbd = nil
}

// TestWatchdogRestartsWedgedSyncLoop: with the watchdog armed, lbd sends
// keep-alives while its sync loop turns; the debug-wedge hook
// (LBD_TEST_HOOKS=1) blocks that loop, after which the keep-alives stop and
// STATUS= says why; the service manager aborts lbd and starts it again,
// and the new lbd is READY, feeds the watchdog and serves the VIP.
func TestWatchdogRestartsWedgedSyncLoop(t *testing.T) {
	e := newEnv(t, 2, 1)
	e.writeConfig(svcHeader("echo", lab.VIPv4, 7000, `scheduler = "rr"`) + fastHealth("tcp", "") + backends(7000, 1, 2))
	m := newServiceManager(t, e)
	m.env = []string{"LBD_TEST_HOOKS=1"}

	m.start()
	ready := m.next("READY=1", 60*time.Second)
	t.Logf("READY: %q", ready.text)
	// Keep-alives flow while the loop turns (a count, not a rate).
	for i := 0; i < 3; i++ {
		m.next("WATCHDOG=1", 30*time.Second)
	}
	e.waitState("echo", lab.BackendV4(1)+":7000", "up")
	e.waitState("echo", lab.BackendV4(2)+":7000", "up")
	if c := e.spread(0, vip4(7000), 10); c[e.lab.Backend(1)] != 5 || c[e.lab.Backend(2)] != 5 {
		t.Fatalf("before the wedge: 10 connections over 2 backends (rr): %v", c)
	}

	// Wedge the sync loop the way `lbd throttle` talks to the daemon. The
	// answer may never come if the handler waits for the loop: only an
	// explicit refusal is an error here; the keep-alives decide.
	resp, err := control.Call(e.socket, control.Request{Command: "debug-wedge"}, 5*time.Second)
	switch {
	case err == nil && !resp.OK:
		t.Fatalf("debug-wedge refused with LBD_TEST_HOOKS=1: %s %v", resp.Message, resp.Errors)
	case err != nil:
		t.Logf("debug-wedge: no answer (%v); watching the keep-alives", err)
	default:
		t.Logf("debug-wedge: %s", resp.Message)
	}
	statuses := m.watchdogFires(90 * time.Second)
	t.Logf("watchdog deadline passed; STATUS= since the wedge: %q", statuses)
	why := ""
	for _, s := range statuses {
		if strings.Contains(s, "watchdog") {
			why = s
		}
	}
	if why == "" {
		t.Errorf("keep-alives stopped but no STATUS= said why: %q", statuses)
	}
	// The data plane stays in the kernel while the loop is wedged.
	if c := e.spread(0, vip4(7000), 4); c[e.lab.Backend(1)]+c[e.lab.Backend(2)] != 4 {
		t.Errorf("the kernel should keep serving while lbd is wedged: %v", c)
	}

	m.abort()
	m.start()
	ready = m.next("READY=1", 60*time.Second)
	t.Logf("READY after the restart: %q", ready.text)
	for i := 0; i < 3; i++ {
		m.next("WATCHDOG=1", 30*time.Second)
	}
	e.waitState("echo", lab.BackendV4(1)+":7000", "up")
	e.waitState("echo", lab.BackendV4(2)+":7000", "up")
	if c := e.spread(0, vip4(7000), 10); c[e.lab.Backend(1)] != 5 || c[e.lab.Backend(2)] != 5 {
		t.Fatalf("after the restart: 10 connections over 2 backends (rr): %v", c)
	}
	// The restarted daemon's loop turns: a health change reaches the kernel.
	e.lab.StopBackend(2)
	e.waitState("echo", lab.BackendV4(2)+":7000", "down")
	if c := e.spread(0, vip4(7000), 6); c[e.lab.Backend(1)] != 6 {
		t.Fatalf("after the restart, backend 2 down: all 6 connections should reach backend 1: %v", c)
	}
}

// TestDebugWedgeNeedsTestHooks: without LBD_TEST_HOOKS=1 the hook is not
// there: debug-wedge is refused and the keep-alives go on.
func TestDebugWedgeNeedsTestHooks(t *testing.T) {
	e := newEnv(t, 1, 1)
	e.writeConfig(svcHeader("echo", lab.VIPv4, 7000, "") + backends(7000, 1))
	m := newServiceManager(t, e)
	m.start()
	m.next("READY=1", 60*time.Second)
	resp, err := control.Call(e.socket, control.Request{Command: "debug-wedge"}, 10*time.Second)
	if err != nil || resp.OK {
		t.Fatalf("debug-wedge without LBD_TEST_HOOKS=1 should be refused at once: ok=%v err=%v", resp.OK, err)
	}
	t.Logf("refused: %s %v", resp.Message, resp.Errors)
	for i := 0; i < 3; i++ {
		m.next("WATCHDOG=1", 30*time.Second)
	}
	if _, err := e.lbdCmd("status"); err != nil {
		t.Fatalf("lbd status after a refused debug-wedge: %v", err)
	}
}
