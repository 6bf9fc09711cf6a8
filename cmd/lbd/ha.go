package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"lbd/appliance/control"
)

const haUsage = `usage: lbd ha release [--timeout DURATION] [--socket PATH]
       lbd ha resume [--socket PATH]

A node of a pair ([ha] in lb.toml). release hands the VIPs and lan_address
to the peer: this node puts keepalived in FAULT (a priority-0 advert, the
peer takes over at once; conntrackd has already synced every flow), then
waits until the peer advertises as master (default 30s) and exits 0. With
preempt = false the node is then a backup again, ready to take over if the
peer dies; with preempt = true it stays held out until 'lbd ha resume'
(or it would take the VIPs straight back). If the peer does not take over
in time, this node takes the VIPs back and the command exits 1.
`

func cmdHA(args []string, stdout, stderr io.Writer) int {
	fs, socket := newFlags("ha", haUsage, stderr)
	timeout := fs.Duration("timeout", 30*time.Second, "how long release waits for the peer to become master")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil || len(pos) != 1 || (pos[0] != "release" && pos[0] != "resume") {
		fs.Usage()
		return 2
	}
	req := control.Request{Command: "ha", Args: []string{pos[0]}}
	wait := 10 * time.Second
	if pos[0] == "release" {
		req.Args = append(req.Args, timeout.String())
		wait = *timeout + 10*time.Second
	}
	resp, err := control.Call(*socket, req, wait)
	return report(fmt.Sprintf("ha %s", pos[0]), resp, err, stdout, stderr)
}
