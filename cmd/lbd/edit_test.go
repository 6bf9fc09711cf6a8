package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"lbd/appliance/control"
	"lbd/appliance/status"
	"lbd/internal/configfile"
)

const editConfig = `[[service]]
name = "web"
vip = "203.0.113.10"
port = 80

  [[service.backend]]
  address = "192.0.2.11:80"
`

// TestEditHelperProcess is lbd itself when the tmux test runs this test
// binary as a child (the os/exec helper-process pattern), so the test needs
// no separate build.
func TestEditHelperProcess(t *testing.T) {
	if os.Getenv("LBD_EDIT_HELPER") != "1" {
		return // not a skip: nothing to report in the test summary
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	os.Exit(realMain(args, os.Stdout, os.Stderr))
}

// fakeDaemon answers the control protocol on a socket in dir and records
// the commands, as "command arg...".
type fakeDaemon struct {
	mu      sync.Mutex
	calls   []string
	cfgPath string
}

func (d *fakeDaemon) handle(_ context.Context, req control.Request) control.Response {
	d.mu.Lock()
	d.calls = append(d.calls, strings.TrimSpace(req.Command+" "+strings.Join(req.Args, " ")))
	d.mu.Unlock()
	switch req.Command {
	case "diff":
		return control.Response{OK: true, Lines: []string{"~ service web: port 80 -> 8080 (fake diff)"}}
	case "status":
		return control.Response{OK: true, Status: &status.Snapshot{Config: status.Config{Path: d.cfgPath}}}
	case "reload":
		return control.Response{OK: true, Message: "reloaded (fake daemon)"}
	}
	return control.Response{OK: false, Message: "unknown command " + req.Command}
}

func (d *fakeDaemon) log() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.calls...)
}

func startFakeDaemon(t *testing.T, dir, cfgPath string) (*fakeDaemon, string) {
	t.Helper()
	sock := filepath.Join(dir, "lbd.sock")
	srv, err := control.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDaemon{cfgPath: cfgPath}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv.Serve(ctx, d.handle, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return d, sock
}

// tmuxSession drives one detached tmux session on a private server.
type tmuxSession struct {
	t    *testing.T
	sock string
}

func (s tmuxSession) run(args ...string) string {
	s.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-f", "/dev/null", "-S", s.sock}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %q: %v: %s", args, err, out)
	}
	return string(out)
}

func (s tmuxSession) keys(keys ...string) {
	s.t.Helper()
	s.run(append([]string{"send-keys", "-t", "edit"}, keys...)...)
}

// text types literally (send-keys -l), so "=" or "9" are never key names.
func (s tmuxSession) text(txt string) {
	s.t.Helper()
	s.run("send-keys", "-t", "edit", "-l", txt)
}

func (s tmuxSession) screen() string {
	s.t.Helper()
	return s.run("capture-pane", "-p", "-t", "edit")
}

// waitFor polls the pane until it shows every one of want.
func (s tmuxSession) waitFor(what string, want ...string) string {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		scr := s.screen()
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(scr, w)
		}
		if ok {
			return scr
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: the pane never showed %q; it shows:\n%s", what, want, scr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEditInTmux uses lbd edit the way a person does, in a terminal with
// nano: an invalid change reopens nano with the error on top and the cursor
// on the bad line; the fix is saved; the file on disk is replaced by a
// rename (a new inode, no temp file left), then lbd edit runs diff, checks
// which file the daemon serves, and reloads.
func TestEditInTmux(t *testing.T) {
	for _, bin := range []string{"tmux", "nano"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not installed: make test installs it (TEST_DEBS); a missing tool is a failure, not a skip", bin)
		}
	}
	dir := t.TempDir()
	cfgDir := filepath.Join(dir, "config")
	tmpDir := filepath.Join(dir, "tmp")
	home := filepath.Join(dir, "home")
	for _, d := range []string{cfgDir, tmpDir, home} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(cfgDir, "lb.toml")
	if err := os.WriteFile(cfg, []byte(editConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	// lbd edit finds the file's mount in the real mountinfo; it must be
	// read-write here, so nothing real is ever remounted.
	if m := mountOfForTest(t, cfgDir); m.ReadOnly {
		t.Fatalf("%s is on read-only %s: the test must never remount a real mount", cfgDir, m.MountPoint)
	}
	before, err := os.Stat(cfg)
	if err != nil {
		t.Fatal(err)
	}
	daemon, sock := startFakeDaemon(t, dir, cfg)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exitFile := filepath.Join(dir, "exit")
	// The shell keeps the pane open after lbd edit ends so its output can
	// be read, and records the exit status.
	script := fmt.Sprintf("env -i PATH=%q HOME=%q TMPDIR=%q TERM=xterm-256color EDITOR=nano LBD_EDIT_HELPER=1 "+
		"%q -test.run='^TestEditHelperProcess$' -- edit --config %q --socket %q; echo $? >%q; sleep 600",
		os.Getenv("PATH"), home, tmpDir, exe, cfg, sock, exitFile)
	s := tmuxSession{t: t, sock: filepath.Join(dir, "tmux.sock")}
	s.run("new-session", "-d", "-s", "edit", "-x", "100", "-y", "30", "sh", "-c", script)
	t.Cleanup(func() { _ = exec.Command("tmux", "-S", s.sock, "kill-server").Run() })

	// nano shows the copy; the cursor starts on line 1.
	s.waitFor("first open", "GNU nano", `vip = "203.0.113.10"`)
	// Go to line 4 (Ctrl-_ is nano's "go to line"), make the port invalid.
	s.keys("C-_")
	s.waitFor("go-to-line prompt", "line number")
	s.text("4")
	s.keys("Enter", "End", "BSpace", "BSpace")
	s.text("99999")
	s.keys("C-s")
	s.waitFor("saved", "Wrote")
	s.keys("C-x")

	// nano comes back with the error at the top, its line and column as
	// lbd check prints them, and the cursor on the bad line (line 4 of the
	// file is screen row 1 + 3 header lines + 3: the title bar is row 0).
	scr := s.waitFor("reopened with errors", "# lbd edit: lb.toml does not validate", "# lbd edit: 4:", "port = 99999")
	t.Logf("nano reopened with the errors:\n%s", scr)
	if !strings.Contains(scr, "service[0].port") {
		t.Errorf("the error line does not name the key:\n%s", scr)
	}
	if y := strings.TrimSpace(s.run("display-message", "-p", "-t", "edit", "#{cursor_y}")); y != "7" {
		t.Errorf("cursor on screen row %s, want 7 (the bad line):\n%s", y, scr)
	}
	if got, _ := os.ReadFile(cfg); string(got) != editConfig {
		t.Errorf("the invalid edit reached the file:\n%s", got)
	}

	// Fix it on the line the cursor is on.
	s.keys("End", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace")
	s.text("8080")
	s.keys("C-s")
	s.waitFor("saved fix", "Wrote")
	s.keys("C-x")

	scr = s.waitFor("lbd edit done", "lb.toml written", "(fake diff)", "reloaded (fake daemon)")
	t.Logf("after nano:\n%s", scr)
	var code []byte
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, _ = os.ReadFile(exitFile); len(code) > 0 || time.Now().After(deadline) {
			break
		}
	}
	if strings.TrimSpace(string(code)) != "0" {
		t.Errorf("lbd edit exited %q:\n%s", code, scr)
	}

	want := strings.Replace(editConfig, "port = 80\n", "port = 8080\n", 1)
	if got, _ := os.ReadFile(cfg); string(got) != want {
		t.Errorf("file now:\n%s\nwant:\n%s", got, want)
	}
	after, err := os.Stat(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(before, after) {
		t.Error("lb.toml was rewritten in place, not replaced by a rename")
	}
	for _, d := range []string{cfgDir, tmpDir} {
		es, _ := os.ReadDir(d)
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		if d == cfgDir && !reflect.DeepEqual(names, []string{"lb.toml"}) || d == tmpDir && len(names) != 0 {
			t.Errorf("%s holds %q afterwards", d, names)
		}
	}
	if got, wantCalls := daemon.log(), []string{"diff " + cfg, "status", "reload"}; !reflect.DeepEqual(got, wantCalls) {
		t.Errorf("daemon saw %q, want %q", got, wantCalls)
	}
}

func mountOfForTest(t *testing.T, dir string) configfile.Mount {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ms, err := configfile.ParseMountInfo(f)
	if err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := configfile.MountOf(ms, real)
	return m
}

// The ways lbd edit gives up without writing, with editors that are shell
// commands (as $EDITOR may be).
func TestEditGivesUp(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	cfg := filepath.Join(dir, "lb.toml")
	w := configfile.Writer{MountInfo: writeMountinfo(t, dir)}
	reset := func() {
		if err := os.WriteFile(cfg, []byte(editConfig), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name, editor, want string
	}{
		{"unchanged save", "true", "no change"},
		{"editor fails", "false", "left unchanged"},
		{"changed back", `sed -i "s/port = 80/port = 80/"`, "no change"},
		{"invalid then unchanged", `sed -i "s/port = 80$/port = 99999/"`, "saved unchanged with errors: giving up"},
		{"file changed meanwhile", fmt.Sprintf(`echo "# other" >>%q; sed -i "s/port = 80$/port = 81/"`, cfg), "changed on disk while you edited"},
	} {
		reset()
		var out, errb strings.Builder
		code := runEdit(cfg, filepath.Join(dir, "none.sock"), c.editor, w, &out, &errb)
		if code != 1 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%s: exit %d, stderr %q; want 1 and %q", c.name, code, errb.String(), c.want)
		}
		if c.name != "file changed meanwhile" {
			if got, _ := os.ReadFile(cfg); string(got) != editConfig {
				t.Errorf("%s: file changed to:\n%s", c.name, got)
			}
		}
	}

	// A valid change with no daemon: written, and lbd edit says it is not
	// applied.
	reset()
	var out, errb strings.Builder
	code := runEdit(cfg, filepath.Join(dir, "none.sock"), `sed -i "s/port = 80$/port = 81/"`, w, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "saved but not reloaded") || !strings.Contains(out.String(), "written") {
		t.Errorf("no daemon: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	if got, _ := os.ReadFile(cfg); !strings.Contains(string(got), "port = 81\n") {
		t.Errorf("file not written:\n%s", got)
	}
}

func writeMountinfo(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mountinfo")
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("41 22 8:3 / "+real+" rw,relatime - ext4 /dev/sda3 rw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEditHelp(t *testing.T) {
	var out, errb strings.Builder
	// Asked-for help is output: stdout, exit 0 (as every command).
	if code := realMain([]string{"edit", "--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "usage: lbd edit") || errb.Len() != 0 {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}
