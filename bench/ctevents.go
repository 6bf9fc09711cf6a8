package main

// `bench ctevents` (issue 13, used by `bench profile -readers`): lbd's
// conntrack DESTROY reader (lb.SubscribeEndedFlows + Run) alone, to measure
// what the reader costs per ended flow with the rest of lbd out of the
// picture. It counts the translated flows, runs until stdin closes and
// prints "flows N lost N". (Until d7bbd2b lbd read the events one netpoller
// wake-up at a time and this command also had a batched stand-in; lbd's
// reader is that batched one now.)

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"lbd/lb"
)

func ctEventsMain(args []string) int {
	fs := flag.NewFlagSet("ctevents", flag.ExitOnError)
	_ = fs.Parse(args)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); cancel() }()
	ef, err := lb.SubscribeEndedFlows()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ctevents:", err)
		return 1
	}
	var flows uint64
	if err := ef.Run(ctx, func(lb.FlowTraffic) { flows++ }); err != nil {
		fmt.Fprintln(os.Stderr, "ctevents:", err)
		return 1
	}
	fmt.Printf("flows %d lost %d\n", flows, ef.Lost.Load())
	return 0
}
