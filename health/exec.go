package health

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// defaultPath is the PATH of check programs when lbd itself has none
// (systemd gives services a PATH, a bare exec may not).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// execChecker runs an operator's program; exit 0 is healthy.
type execChecker struct {
	argv []string
	env  []string
}

func newExecChecker(t Target) execChecker {
	path := os.Getenv("PATH")
	if path == "" {
		path = defaultPath
	}
	// A clean environment: the script gets what it needs and nothing of
	// lbd's own (NOTIFY_SOCKET would let it talk to systemd as lbd).
	env := []string{
		"PATH=" + path,
		"LBD_SERVICE=" + t.Service,
		"LBD_BACKEND_ADDR=" + t.Addr.Addr().String(),
		"LBD_BACKEND_PORT=" + strconv.Itoa(int(t.Addr.Port())),
		// The port to check: the override when set, else the backend port.
		"LBD_CHECK_PORT=" + strconv.Itoa(int(t.CheckAddr().Port())),
	}
	return execChecker{argv: t.Spec.Command, env: env}
}

func (c execChecker) check(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	cmd.Env = c.env
	cmd.Dir = "/"
	// Stdin, stdout and stderr stay nil (/dev/null): no pipe a leftover
	// grandchild could hold open and keep Wait from returning.
	//
	// Its own process group, so at the timeout the whole tree dies, not
	// only the shell while its "sleep" or "curl" lives on.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// Negative pid = the process group (its id is the leader's pid,
		// still ours: Wait has not reaped the leader yet).
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	err := cmd.Run()
	if err == nil {
		return "exit status 0", nil
	}
	if ctx.Err() != nil {
		return "", fmt.Errorf("exec check %s: %w", c.argv[0], ctx.Err())
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return "", failure(exitErr.Error()) // "exit status 1", "signal: terminated"
	}
	return "", fmt.Errorf("exec check: %w", err)
}
