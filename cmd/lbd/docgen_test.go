package main

import (
	"bytes"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// The man page has a section for every command of the usage that has help,
// and each section is that command's --help text.
func TestManPageCoversEveryCommand(t *testing.T) {
	var out bytes.Buffer
	if code := realMain([]string{"help", "--man"}, &out, io.Discard); code != 0 {
		t.Fatalf("lbd help --man exited %d", code)
	}
	man := out.String()
	if !strings.HasPrefix(man, ".TH LBD 8 ") {
		t.Fatalf("man page starts %q", man[:min(40, len(man))])
	}
	names := commandNames()
	if len(names) < 10 {
		t.Fatalf("only %d commands found in the usage: %v", len(names), names)
	}
	for _, c := range names {
		if c == "version" {
			continue
		}
		if !strings.Contains(man, "\n.SS "+c+"\n") {
			t.Errorf("no section for %s", c)
		}
		first, _, _ := strings.Cut(commandHelpText(c), "\n")
		if first == "" || !strings.Contains(man, roffLine(first)) {
			t.Errorf("section %s lacks its usage line %q", c, first)
		}
	}
	// groff-base (in TEST_DEBS) renders it without a warning.
	cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z")
	cmd.Stdin = strings.NewReader(man)
	if b, err := cmd.CombinedOutput(); err != nil || len(b) > 0 {
		t.Errorf("groff warns on the man page: %v\n%s", err, b)
	}
}

// The completion offers every command and each command's flags.
func TestBashCompletion(t *testing.T) {
	var out bytes.Buffer
	if code := realMain([]string{"completion", "bash"}, &out, io.Discard); code != 0 {
		t.Fatalf("lbd completion bash exited %d", code)
	}
	script := out.String()
	complete := func(words ...string) string {
		t.Helper()
		sh := script + "\nCOMP_WORDS=(" + strings.Join(words, " ") + "); COMP_CWORD=" +
			strconv.Itoa(len(words)-1) + "; _lbd; echo \"${COMPREPLY[*]}\"\n"
		b, err := exec.Command("bash", "-c", sh).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, b)
		}
		return strings.TrimSpace(string(b))
	}
	if got := complete("lbd", "dr"); got != "drain drain-node" {
		t.Errorf("lbd dr<TAB> = %q, want drain drain-node", got)
	}
	if got := complete("lbd", "appl"); got != "appliance-setup" {
		t.Errorf("lbd appl<TAB> = %q, want appliance-setup", got)
	}
	if got := complete("lbd", "status", "--js"); got != "--json" {
		t.Errorf("lbd status --js<TAB> = %q, want --json", got)
	}
	if got := complete("lbd", "flush", "--"); !strings.Contains(got, "--all") || !strings.Contains(got, "--yes") {
		t.Errorf("lbd flush --<TAB> = %q, want --all and --yes among them", got)
	}
	if got := complete("lbd", "import", "-"); strings.Contains(got, "-n") {
		t.Errorf("lbd import -<TAB> = %q offers ipvsadm's -n", got)
	}
	if code := realMain([]string{"completion", "zsh"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("lbd completion zsh exited %d, want 2", code)
	}
}
