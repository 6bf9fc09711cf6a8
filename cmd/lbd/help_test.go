package main

import (
	"bytes"
	"strings"
	"testing"
)

// Every command answers --help with its usage on stdout and exit 0.
func TestEveryCommandHasHelp(t *testing.T) {
	for _, cmd := range []string{"run", "check", "reload", "ping", "status", "throttle", "console", "drain", "undrain", "drain-node", "undrain-node", "conns", "flush", "diff", "edit", "import", "update", "appliance-setup"} {
		var out, errb bytes.Buffer
		code := realMain([]string{cmd, "--help"}, &out, &errb)
		if code != 0 || errb.Len() != 0 || !strings.HasPrefix(out.String(), "usage: lbd "+cmd) {
			t.Errorf("lbd %s --help: exit %d, stderr %q, stdout starts %q", cmd, code, errb.String(), firstLine(out.String()))
		}
		if !strings.Contains(usage, "lbd "+cmd) {
			t.Errorf("lbd --help does not list %s", cmd)
		}
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
