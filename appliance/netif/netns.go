package netif

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// RunInNetns runs fn on an OS thread that is inside ns, for the few things
// netlink handles cannot do from outside: creating packet sockets (a socket
// belongs to the namespace of the thread that creates it) and writing
// /proc/sys/net. A closed handle (netns.None()) runs fn right here.
//
// fn runs on its own goroutine with a locked thread. The thread is unlocked
// only after it is back in its original namespace; if switching back fails
// the goroutine exits still locked, so the Go runtime destroys the thread
// instead of reusing it in the wrong namespace.
func RunInNetns(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("return from netns: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// OpenNetns opens the namespace at path; "" means the caller's own
// namespace, returned as netns.None() so that nothing switches.
func OpenNetns(path string) (netns.NsHandle, error) {
	if path == "" {
		return netns.None(), nil
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return netns.None(), fmt.Errorf("open netns %s: %w", path, err)
	}
	return h, nil
}
