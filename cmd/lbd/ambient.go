package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// dropAmbientCaps empties the ambient capability set of every thread of
// lbd, keeping the permitted and effective ones.
//
// lbd.service runs lbd as the unprivileged user lbd and hands it
// CAP_NET_ADMIN, CAP_NET_RAW and CAP_NET_BIND_SERVICE as ambient
// capabilities: the only way a non-root program gets capabilities across
// execve without file capabilities. lbd keeps them in its permitted and
// effective sets (which is all it needs), but ambient ones would also pass
// on to every exec health check. Cleared, a check runs as user lbd with no
// permitted, effective or ambient capability (e2e TestDebPackage reads
// them). The inheritable set stays (emptying it needs capset, which the
// unit's syscall filter denies with @privileged): it grants nothing by
// itself, and under NoNewPrivileges no file capability can add to it.
//
// Capabilities are per thread in Linux, and the Go runtime has started
// several threads by now: syscall.AllThreadsSyscall runs the prctl on each.
// It refuses (ENOTSUP) in a cgo build; the release binary is CGO_ENABLED=0.
func dropAmbientCaps(log *slog.Logger) {
	if !hasAmbientCaps() {
		return
	}
	_, _, errno := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0)
	if errno != 0 {
		log.Warn("exec health checks inherit lbd's ambient capabilities",
			"err", fmt.Errorf("clear ambient capabilities on all threads: %w", errno))
		return
	}
	log.Debug("ambient capabilities cleared: exec health checks run without capabilities")
}

// hasAmbientCaps reads CapAmb of /proc/self/status (the main thread's; all
// threads have the same set until dropAmbientCaps runs).
func hasAmbientCaps() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("CapAmb:")); ok {
			return len(bytes.Trim(bytes.TrimSpace(v), "0")) > 0
		}
	}
	return false
}
