package health

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// script writes an executable shell script into dir.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

var backend = netip.MustParseAddrPort("192.0.2.11:8080") // never contacted by exec checks

func TestExecCheckFollowsExitStatus(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "healthy")
	// Healthy while the flag file exists: the test flips it.
	check := script(t, dir, "flip.sh", `test -e "`+flag+`"`)
	spec := Spec{Type: TypeExec, Command: []string{check}}

	if res := checkOnce(t, backend, spec); res.OK || res.Reason != "exit status 1" {
		t.Fatalf("without flag: %+v, want failed with \"exit status 1\"", res)
	}
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if res := checkOnce(t, backend, spec); !res.OK || res.Reason != "exit status 0" {
		t.Fatalf("with flag: %+v, want OK", res)
	}
	os.Remove(flag)
	if res := checkOnce(t, backend, spec); res.OK {
		t.Fatalf("flag removed again: %+v, want failed", res)
	}
}

// TestExecCheckEnvironment: the script learns what to check from its
// environment, argv is passed without a shell, and lbd's own environment
// does not leak in.
func TestExecCheckEnvironment(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "env")
	check := script(t, dir, "env.sh", `printf '%s|%s|%s|%s|%s|%s\n' "$LBD_SERVICE" "$LBD_BACKEND_ADDR" "$LBD_BACKEND_PORT" "$LBD_CHECK_PORT" "$1" "$LBD_TEST_SECRET" > "`+out+`"`)
	t.Setenv("LBD_TEST_SECRET", "leaked")
	res, err := Check(t.Context(), Target{
		Service: "web",
		Addr:    netip.MustParseAddrPort("[2001:db8::11]:8080"),
		Spec:    Spec{Type: TypeExec, Port: 9090, Command: []string{check, "two words; $(no shell)"}},
	})
	if err != nil || !res.OK {
		t.Fatalf("Check = %+v, %v", res, err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "web|2001:db8::11|8080|9090|two words; $(no shell)|\n"
	if string(got) != want {
		t.Errorf("script saw %q, want %q", got, want)
	}
}

// TestExecCheckTimeoutKillsProcessGroup: at the timeout the script and the
// children it started die; a surviving "sleep" would pile up every interval.
func TestExecCheckTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	check := script(t, dir, "hang.sh", `sleep 3600 &
echo $! > "`+pidFile+`"
wait`)
	// Long enough for a loaded machine to start sh and its child.
	res := checkOnce(t, backend, Spec{Type: TypeExec, Command: []string{check}, Timeout: 1500 * time.Millisecond})
	if res.OK || res.Reason != "timeout after 1.5s" {
		t.Fatalf("check = %+v, want failed with \"timeout after 1.5s\"", res)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the script never started its child: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// SIGKILL is delivered asynchronously; wait until the child is gone (or
	// a zombie, when no init reaps orphans in this container).
	waitFor(t, "the script's child to die", func() bool { return !alive(pid) })
}

// alive reports whether pid runs (a zombie counts as dead).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// Field 3, after "pid (comm)", is the state letter.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestExecCheckMissingProgram(t *testing.T) {
	res := checkOnce(t, backend, Spec{Type: TypeExec, Command: []string{filepath.Join(t.TempDir(), "nope")}})
	if res.OK || !strings.Contains(res.Reason, "no such file") {
		t.Fatalf("check = %+v, want failed naming the missing file", res)
	}
}
