package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"lbd/appliance/control"
)

const connsUsage = `usage: lbd conns [SERVICE] [--backend IP:PORT] [--socket PATH]

Lists the tracked connections lbd translated, like 'ipvsadm -Lnc':
protocol, state, seconds until conntrack forgets the flow, client, VIP and
backend. Without SERVICE, every service.
`

const flushUsage = `usage: lbd flush SERVICE | --backend IP:PORT | SERVICE --backend IP:PORT | --all
                 [--yes] [--socket PATH]

Deletes the conntrack entries of a service's connections (all of them, or
only those to one backend), or of every service with --all: the article's
"clear the NAT table". The next packet of such a flow is scheduled afresh
as a new flow: UDP clients move to a live backend; a TCP connection goes on
only if it lands on the same backend with the same NAT port, else that
backend answers with a reset. Asks for confirmation when run on a terminal
(--yes skips it) and says how many entries went.
`

func cmdConns(args []string, stdout, stderr io.Writer) int {
	fs, socket := newFlags("conns", connsUsage, stderr)
	backend := fs.String("backend", "", "only connections to this backend (ip:port)")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil || len(pos) > 1 {
		fs.Usage()
		return 2
	}
	req := control.Request{Command: "conns", Args: append(pos, backendArgs(*backend)...)}
	resp, err := control.Call(*socket, req, time.Minute)
	if code := report("conns", resp, err, stdout, stderr); code != 0 {
		return code
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tPRO\tSTATE\tEXPIRES\tCLIENT\tVIP\tBACKEND")
	for _, c := range resp.Conns {
		state := c.State
		if state == "" {
			state = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Service, strings.ToUpper(c.Protocol), state,
			(time.Duration(c.ExpiresSeconds) * time.Second).String(), c.Client, c.VIP, c.Backend)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%d connections\n", len(resp.Conns))
	return 0
}

func backendArgs(b string) []string {
	if b == "" {
		return nil
	}
	return []string{"--backend", b}
}

func cmdFlush(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, socket := newFlags("flush", flushUsage, stderr)
	backend := fs.String("backend", "", "only connections to this backend (ip:port)")
	all := fs.Bool("all", false, "every service")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil || len(pos) > 1 || (*all && (len(pos) > 0 || *backend != "")) || (!*all && len(pos) == 0 && *backend == "") {
		fs.Usage()
		return 2
	}
	target := strings.Join(pos, "")
	if *backend != "" {
		target = strings.TrimSpace(target + " connections to " + *backend)
	}
	reqArgs := append(pos, backendArgs(*backend)...)
	if *all {
		target, reqArgs = "every service", []string{"--all"}
	}
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) && !*yes {
		fmt.Fprintf(stdout, "Delete the tracked connections of %s? Most TCP clients will see a reset. [y/N] ", target)
		line, _ := bufio.NewReader(stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			fmt.Fprintln(stdout, "nothing flushed")
			return 1
		}
	}
	resp, err := control.Call(*socket, control.Request{Command: "flush", Args: reqArgs}, time.Minute)
	return report("flush", resp, err, stdout, stderr)
}
