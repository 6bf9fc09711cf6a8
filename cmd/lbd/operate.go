package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"lbd/appliance/control"
	"lbd/appliance/status"
)

// The operator's runtime commands: each has its own flags and --help and
// talks to the daemon over the control socket.

const drainUsage = `usage: lbd drain SERVICE BACKEND [--timeout DURATION] [--no-wait] [--socket PATH]

Takes BACKEND (ip:port, or ip when unique in the service) out of new flows
at once, without editing the config (like weight 0). Established flows go
on. lbd then shows how many flows are left until they reach zero; with
--timeout, the flows left at the deadline are flushed (their clients get a
reset and reconnect to another backend). The drain stays across reloads
that keep the backend, until 'lbd undrain'. --no-wait returns at once; the
daemon finishes the drain either way.
`

const undrainUsage = `usage: lbd undrain SERVICE BACKEND [--socket PATH]

Lifts a runtime drain: the backend takes new flows again.
`

// parseInterspersed parses flags that may come before, between or after
// positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func newFlags(name, usage string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("lbd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	socket := fs.String("socket", control.DefaultSocket, "control socket of the daemon")
	return fs, socket
}

func cmdDrain(args []string, stdout, stderr io.Writer) int {
	fs, socket := newFlags("drain", drainUsage, stderr)
	timeout := fs.Duration("timeout", 0, "flush the flows left after this long (0 = wait for them)")
	noWait := fs.Bool("no-wait", false, "return once the backend takes no new flows")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil || len(pos) != 2 {
		fs.Usage()
		return 2
	}
	req := control.Request{Command: "drain", Args: []string{pos[0], pos[1], timeout.String()}}
	resp, err := control.Call(*socket, req, 2*time.Minute)
	if code := report("drain", resp, err, stdout, stderr); code != 0 || *noWait {
		return code
	}
	return watchDrain(*socket, pos[0], pos[1], stdout, stderr)
}

// watchDrain prints the flows left once a second until the daemon says
// the drain is done (no flows left, or flushed at the deadline).
func watchDrain(socket, svc, backend string, stdout, stderr io.Writer) int {
	last := -1
	for {
		snap, err := fetchStatus(socket)
		if err != nil {
			fmt.Fprintln(stderr, "lbd drain:", err)
			return 1
		}
		b := findStatusBackend(snap, svc, backend)
		switch {
		case b == nil || b.Drain == nil:
			fmt.Fprintf(stderr, "lbd drain: %s %s is no longer drained (undrained, or gone in a reload)\n", svc, backend)
			return 1
		case !b.Drain.Done.IsZero() && b.Drain.Flushed > 0:
			fmt.Fprintf(stdout, "%s %s: timeout reached; flushed %d flows; drained\n", svc, b.Address, b.Drain.Flushed)
			return 0
		case !b.Drain.Done.IsZero():
			fmt.Fprintf(stdout, "%s %s: no flows left; drained\n", svc, b.Address)
			return 0
		}
		if b.ActiveConnections != last {
			left := ""
			if !b.Drain.Deadline.IsZero() {
				left = fmt.Sprintf(" (flushed in %s)", time.Until(b.Drain.Deadline).Round(time.Second))
			}
			fmt.Fprintf(stdout, "%s %s: %d flows left%s\n", svc, b.Address, b.ActiveConnections, left)
			last = b.ActiveConnections
		}
		time.Sleep(time.Second)
	}
}

func findStatusBackend(s status.Snapshot, svc, backend string) *status.Backend {
	for i := range s.Services {
		if s.Services[i].Name != svc {
			continue
		}
		for j := range s.Services[i].Backends {
			b := &s.Services[i].Backends[j]
			if b.Address == backend || hostOf(b.Address) == backend {
				return b
			}
		}
	}
	return nil
}

func cmdUndrain(args []string, stdout, stderr io.Writer) int {
	fs, socket := newFlags("undrain", undrainUsage, stderr)
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil || len(pos) != 2 {
		fs.Usage()
		return 2
	}
	resp, err := control.Call(*socket, control.Request{Command: "undrain", Args: pos}, 2*time.Minute)
	return report("undrain", resp, err, stdout, stderr)
}

// report prints a daemon's answer: the message on success, else every
// error line; the exit code follows.
func report(cmd string, resp control.Response, err error, stdout, stderr io.Writer) int {
	if err != nil {
		fmt.Fprintf(stderr, "lbd %s: %v\n", cmd, err)
		return 1
	}
	if !resp.OK {
		if resp.Message != "" {
			fmt.Fprintf(stderr, "lbd %s: %s\n", cmd, resp.Message)
		}
		for _, e := range resp.Errors {
			fmt.Fprintf(stderr, "lbd %s: %s\n", cmd, e)
		}
		return 1
	}
	if resp.Message != "" {
		fmt.Fprintln(stdout, resp.Message)
	}
	return 0
}

// hostOf strips the port from ip:port or [v6]:port.
func hostOf(addrPort string) string {
	for i := len(addrPort) - 1; i >= 0; i-- {
		if addrPort[i] == ':' {
			h := addrPort[:i]
			if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
				return h[1 : len(h)-1]
			}
			return h
		}
	}
	return addrPort
}
