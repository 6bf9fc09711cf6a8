package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"lbd/appliance/control"
	"lbd/appliance/status"
)

const drainNodeUsage = `usage: lbd drain-node [--timeout DURATION] [--socket PATH]

Planned maintenance of one appliance of a fleet ([bgp]): withdraws every
VIP from the routers, then waits until no new connection has arrived for
2 s (the routers send new connections to the other appliances), at most
--timeout (default 30s). New connections do not fail. Connections this
appliance still holds move with the routes: the other appliances do not
know them and answer their next packet with a reset, so clients reconnect
at once. The node stays withdrawn (lbd status: draining) until
lbd undrain-node or a restart. SIGTERM does the same before lbd exits.
`

const undrainNodeUsage = `usage: lbd undrain-node [--socket PATH]

Ends lbd drain-node: the VIPs with a usable backend are announced again.
`

func cmdDrainNode(args []string, stdout, stderr io.Writer) int {
	fs, socket := newFlags("drain-node", drainNodeUsage, stderr)
	timeout := fs.Duration("timeout", 30*time.Second, "longest wait for the routers to stop sending new connections")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil || len(pos) != 0 {
		fs.Usage()
		return 2
	}
	resp, err := control.Call(*socket, control.Request{Command: "drain-node", Args: []string{timeout.String()}}, *timeout+2*time.Minute)
	return report("drain-node", resp, err, stdout, stderr)
}

func cmdUndrainNode(args []string, stdout, stderr io.Writer) int {
	fs, socket := newFlags("undrain-node", undrainNodeUsage, stderr)
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil || len(pos) != 0 {
		fs.Usage()
		return 2
	}
	resp, err := control.Call(*socket, control.Request{Command: "undrain-node"}, 2*time.Minute)
	return report("undrain-node", resp, err, stdout, stderr)
}

// printBGP is the fleet part of lbd status.
func printBGP(w io.Writer, b *status.BGP) {
	if b == nil {
		return
	}
	bird := "not running"
	if b.Bird.Running {
		bird = fmt.Sprintf("running (pid %d)", b.Bird.PID)
	}
	if b.Bird.Restarts > 0 {
		bird += fmt.Sprintf(", restarted %d times, last exit %s", b.Bird.Restarts, b.Bird.LastExit)
	}
	fmt.Fprintf(w, "  BGP AS%d router-id %s, bird %s\n", b.ASN, b.RouterID, bird)
	if b.Draining {
		fmt.Fprintf(w, "  NODE DRAINING since %s: every VIP withdrawn\n", b.DrainingSince.Format(time.RFC3339))
	}
	for _, n := range b.Neighbors {
		line := fmt.Sprintf("  neighbor %s AS%d %s", n.Address, n.ASN, n.State)
		if n.BFD != "" {
			line += " bfd " + n.BFD
		}
		line += fmt.Sprintf(", %d routes announced", n.Exported)
		if n.LastError != "" {
			line += ", last error: " + n.LastError
		}
		fmt.Fprintln(w, line)
	}
	for _, v := range b.VIPs {
		state := "announced"
		if !v.Announced {
			state = "withdrawn: " + v.Reason
		}
		fmt.Fprintf(w, "  vip %s (%s) %s\n", v.VIP, strings.Join(v.Services, ", "), state)
	}
}
