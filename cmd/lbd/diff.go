package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"lbd/appliance/control"
)

const diffUsage = `usage: lbd diff [--config FILE] [--socket PATH]

Shows what a reload would change against the running state, before doing
it: services and backends added, removed and changed, protection and
firewall changes, and for each changed service the share of slots (so of
new flows, and of clients pinned by persistence or sh/mh) that would move
to another backend. Without --config, the daemon's own config file.
Changes nothing. 'lbd reload --diff' prints the same and then reloads.
`

func cmdDiff(args []string, stdout, stderr io.Writer) int {
	fs, socket := newFlags("diff", diffUsage, stderr)
	file := fs.String("config", "", "the file to compare (default: the daemon's config file)")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil || len(pos) > 0 {
		fs.Usage()
		return 2
	}
	path := *file
	if path != "" {
		// The daemon resolves paths in its own working directory.
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
	}
	return printDiff(*socket, path, stdout, stderr)
}

func printDiff(socket, path string, stdout, stderr io.Writer) int {
	resp, err := control.Call(socket, control.Request{Command: "diff", Args: []string{path}}, time.Minute)
	if code := report("diff", resp, err, stdout, stderr); code != 0 {
		return code
	}
	for _, l := range resp.Lines {
		fmt.Fprintln(stdout, l)
	}
	return 0
}
