package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStateDirRule(t *testing.T) {
	dir := t.TempDir()
	withKey := filepath.Join(dir, "with.toml")
	// Valid TOML that fails validation still names its state_dir.
	os.WriteFile(withKey, []byte("[appliance]\nstate_dir = \"/srv/lbd-state\"\n[[service]]\nname = 1\n"), 0o644)
	without := filepath.Join(dir, "without.toml")
	os.WriteFile(without, []byte("[[service]]\n"), 0o644)

	t.Setenv("LBD_STATE_DIR", "")
	if got := resolveStateDir("", withKey); got != "/srv/lbd-state" {
		t.Errorf("state_dir from an invalid file: %q", got)
	}
	if got := resolveStateDir("", without); got != DefaultStateDir {
		t.Errorf("default: %q", got)
	}
	if got := resolveStateDir("", filepath.Join(dir, "missing.toml")); got != DefaultStateDir {
		t.Errorf("missing file: %q", got)
	}
	t.Setenv("LBD_STATE_DIR", "/run/x")
	if got := resolveStateDir("", withKey); got != "/run/x" {
		t.Errorf("LBD_STATE_DIR must win over the file: %q", got)
	}
	if got := resolveStateDir("/opt/y", withKey); got != "/opt/y" {
		t.Errorf("explicit option must win: %q", got)
	}
}

// startOn runs a daemon on fakes with no StateDir option, so the rule
// decides, and returns it with a stop function.
func startOn(t *testing.T, cfgPath string) (*Daemon, func()) {
	t.Helper()
	f := &fakes{dp: newFakeDataplane(), ct: &fakeConntrack{}, mon: &fakeMonitor{}}
	d := New(f.options(cfgPath, filepath.Join(t.TempDir(), "s.sock"), ""))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	waitFor(t, "daemon ready", func() bool { return d.configOrNil() != nil || d.Snapshot().Config.LastError != "" })
	return d, func() { cancel(); <-done }
}

// A broken file at start falls back to the last good copy, read from the
// same directory it was written to: the file's state_dir, or LBD_STATE_DIR.
func TestBrokenFileServesLastGoodFromTheConfiguredStateDir(t *testing.T) {
	for _, c := range []struct {
		viaEnv bool
		broken string // what breaks the file
	}{
		{false, `scheduler = "bogus"`}, // valid TOML, invalid config
		{false, "port = 70000"},        // duplicate key: not TOML at all
		{true, `scheduler = "bogus"`},
	} {
		viaEnv := c.viaEnv
		name := "state_dir key, " + c.broken
		if viaEnv {
			name = "LBD_STATE_DIR"
		}
		t.Run(name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "state")
			head := ""
			if viaEnv {
				t.Setenv("LBD_STATE_DIR", state)
			} else {
				t.Setenv("LBD_STATE_DIR", "")
				head = "[appliance]\nstate_dir = \"" + state + "\"\n"
			}
			cfg := filepath.Join(t.TempDir(), "lb.toml")
			good := head + svcTOML("a", "198.51.100.10", "", be1)
			os.WriteFile(cfg, []byte(good), 0o644)
			d, stop := startOn(t, cfg)
			if d.stateDir != state {
				t.Fatalf("state dir %q, want %q", d.stateDir, state)
			}
			stop()
			saved, err := os.ReadFile(filepath.Join(state, "last-good.toml"))
			if err != nil || string(saved) != good {
				t.Fatalf("last good not written to %s: %v", state, err)
			}
			os.WriteFile(cfg, []byte(head+svcTOML("b", "198.51.100.10", c.broken, be1)), 0o644)
			d, stop = startOn(t, cfg)
			defer stop()
			// startOn returns once the file's error is recorded, which is
			// before the last good copy has applied.
			waitFor(t, "the last good config applied", func() bool { return d.configOrNil() != nil })
			snap := d.Snapshot()
			if len(snap.Services) != 1 || snap.Services[0].Name != "a" {
				t.Fatalf("serving %v; want the last good config (service a)", snap.Services)
			}
			if snap.Config.Source != filepath.Join(state, "last-good.toml") || !strings.Contains(snap.Config.LastError, "lb.toml:") {
				t.Fatalf("status: source %q, last error %q", snap.Config.Source, snap.Config.LastError)
			}
		})
	}
}
