package daemon

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// instanceLockName is an abstract unix socket name. Abstract sockets live
// in the network namespace, exactly like table lbd, and the kernel frees
// the name when the process dies (also on kill -9), so holding it means
// "this lbd alone manages table lbd here", whatever socket path or config
// each daemon was started with.
const instanceLockName = "@lbd-dataplane-owner"

// lockInstance takes the per-network-namespace lock. It is the first thing
// Run does: a second lbd must leave before it touches the kernel.
func lockInstance() (release func(), err error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: instanceLockName, Net: "unix"})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, errors.New("another lbd is running in this network namespace (it owns table lbd); stop it first")
		}
		return nil, fmt.Errorf("instance lock: %w", err)
	}
	return func() { ln.Close() }, nil
}
