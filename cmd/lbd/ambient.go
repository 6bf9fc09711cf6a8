package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dropInheritableCaps empties the inheritable and ambient capability sets
// of every thread of lbd, keeping the permitted and effective ones.
//
// lbd.service runs lbd as the unprivileged user lbd and hands it
// CAP_NET_ADMIN, CAP_NET_RAW and CAP_NET_BIND_SERVICE as ambient
// capabilities: the only way a non-root program gets capabilities across
// execve without file capabilities. lbd keeps them in its permitted and
// effective sets (which is all it needs), but ambient ones would also pass
// on to every exec health check, and inheritable ones would be offered to
// any program carrying file capabilities. Emptied, the checks run as user
// lbd with no capability in any set (e2e TestDebPackage reads them).
//
// Capabilities are per thread in Linux, and the Go runtime has started
// several threads by now: syscall.AllThreadsSyscall runs capset on each
// (the kernel drops the ambient set with the inheritable one). It refuses
// (ENOTSUP) in a cgo build; the release binary is CGO_ENABLED=0.
func dropInheritableCaps(log *slog.Logger) {
	if !hasInheritableCaps() {
		return
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData // version 3: two 32-bit halves
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		log.Warn("exec health checks inherit lbd's capabilities", "err", fmt.Errorf("capget: %w", err))
		return
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	_, _, errno := syscall.AllThreadsSyscall(syscall.SYS_CAPSET,
		uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	runtime.KeepAlive(&hdr)
	runtime.KeepAlive(&data)
	if errno != 0 {
		log.Warn("exec health checks inherit lbd's capabilities",
			"err", fmt.Errorf("capset on all threads: %w", errno))
		return
	}
	log.Debug("inheritable and ambient capabilities cleared: exec health checks run without capabilities")
}

// hasInheritableCaps reports whether CapInh or CapAmb of /proc/self/status
// (the main thread's; all threads agree until dropInheritableCaps runs) is
// not empty.
func hasInheritableCaps() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		for _, key := range []string{"CapInh:", "CapAmb:"} {
			if v, ok := bytes.CutPrefix(line, []byte(key)); ok && len(bytes.Trim(bytes.TrimSpace(v), "0")) > 0 {
				return true
			}
		}
	}
	return false
}
