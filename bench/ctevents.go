package main

// `bench ctevents` (issue 13, used by `bench profile -readers`): a stand-in
// for lbd's conntrack DESTROY reader, to measure what the reader's shape
// costs per ended flow with lbd itself out of the picture.
//
//	-mode current: lb.SubscribeEndedFlows + Run, lbd's code path (mdlayher
//	               netlink in Go's netpoller: a wake-up, a MSG_PEEK and a
//	               buffer per message)
//	-mode batched: a plain non-blocking socket outside the netpoller,
//	               drained every -every into one reused buffer; the
//	               kernel's broadcast then finds no sleeper to wake.
//
// Both hand every message to lb.ParseDestroy and count translated flows.
// It runs until stdin closes and prints "flows N lost N".

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	mnl "github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"lbd/lb"
)

func ctEventsMain(args []string) int {
	fs := flag.NewFlagSet("ctevents", flag.ExitOnError)
	mode := fs.String("mode", "batched", "current | batched")
	every := fs.Duration("every", 100*time.Millisecond, "batched: drain period")
	_ = fs.Parse(args)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); cancel() }()
	var flows, lost uint64
	var err error
	switch *mode {
	case "current":
		var ef *lb.EndedFlows
		if ef, err = lb.SubscribeEndedFlows(); err == nil {
			err = ef.Run(ctx, func(lb.FlowTraffic) { flows++ })
			lost = ef.Lost.Load()
		}
	case "batched":
		flows, lost, err = batchedDestroy(ctx, *every)
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ctevents:", err)
		return 1
	}
	fmt.Printf("flows %d lost %d\n", flows, lost)
	return 0
}

// batchedDestroy reads the DESTROY group from a socket Go's netpoller
// never sees: nothing sleeps on it, so a broadcast only queues the message.
func batchedDestroy(ctx context.Context, every time.Duration) (flows, lost uint64, err error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return 0, 0, fmt.Errorf("conntrack events: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, 0, fmt.Errorf("conntrack events: bind: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, unix.NFNLGRP_CONNTRACK_DESTROY); err != nil {
		return 0, 0, fmt.Errorf("conntrack events: join destroy group: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	buf := make([]byte, 64<<10)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return flows, lost, nil
		case <-t.C:
		}
		for {
			n, _, _, _, err := unix.Recvmsg(fd, buf, nil, unix.MSG_DONTWAIT)
			if errors.Is(err, unix.EAGAIN) {
				break
			}
			if errors.Is(err, unix.ENOBUFS) {
				lost++
				continue
			}
			if err != nil {
				return flows, lost, fmt.Errorf("conntrack events: %w", err)
			}
			for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
				l := int(binary.NativeEndian.Uint32(b[0:4]))
				if l < unix.NLMSG_HDRLEN || l > len(b) {
					break
				}
				typ := mnl.HeaderType(binary.NativeEndian.Uint16(b[4:6]))
				if _, ok := lb.ParseDestroy(typ, b[unix.NLMSG_HDRLEN:l]); ok {
					flows++
				}
				b = b[min((l+3)&^3, len(b)):]
			}
		}
	}
}
