package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"lbd/config"
	"lbd/internal/atomicfile"
)

// DefaultStateDir keeps the last good config, backend health, DHCP leases
// and address ownership across restarts.
const DefaultStateDir = "/var/lib/lbd"

// resolveStateDir is the one rule for where lbd keeps state, decided once
// at start: $LBD_STATE_DIR if set (tests, packaging), else [appliance]
// state_dir of the config file (read leniently, so a file that fails
// validation still names it), else DefaultStateDir. Reads (the last good
// config at start, health, leases) and writes use the same directory; a
// reload that changes state_dir takes effect at the next start.
func resolveStateDir(override, configPath string) string {
	if override != "" {
		return override
	}
	if v := os.Getenv("LBD_STATE_DIR"); v != "" {
		return v
	}
	if dir := peekStateDir(configPath); dir != "" {
		return dir
	}
	return DefaultStateDir
}

// peekStateDir reads only [appliance] state_dir from a config file that
// may be invalid in other ways; "" when the file cannot say. A file that
// is not even TOML any more is scanned for the key's line, so a typo
// elsewhere does not send lbd looking for its last good copy in the wrong
// place.
func peekStateDir(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var doc struct {
		Appliance struct {
			StateDir string `toml:"state_dir"`
		} `toml:"appliance"`
	}
	if toml.Unmarshal(data, &doc) == nil {
		return doc.Appliance.StateDir
	}
	if m := stateDirLine.FindSubmatch(data); m != nil {
		return string(m[1])
	}
	return ""
}

var stateDirLine = regexp.MustCompile(`(?m)^[ \t]*state_dir[ \t]*=[ \t]*"([^"\n]+)"`)

func lastGoodPath(dir string) string { return filepath.Join(dir, "last-good.toml") }

// readConfig loads the config file. At start (first), an invalid file
// falls back to the last good copy in the state directory; source then
// names that copy and fileErr keeps the file's errors for status.
// bigConfig is the service count from which a parse's garbage is given
// back at once.
const bigConfig = 1000

func (d *Daemon) readConfig(first bool) (cfg *config.Config, source string, fileErr error) {
	cfg, err := config.Load(d.opts.ConfigPath)
	if first && err == nil && len(cfg.Services) >= bigConfig {
		// The parse of a big file leaves its positioned tree behind (about
		// 60 MB at 10,000 services, 600 MB at 100,000): collect it and give
		// it back before the apply allocates its netlink messages, so the
		// two do not add up in lbd's peak (VmHWM at 100,000 services x 8:
		// 1.18 GB without this, 0.77 GB with it). Only at start: a reload
		// must not wait for a full collection.
		debug.FreeOSMemory()
	}
	if err == nil || !first {
		return cfg, "", err
	}
	lg := lastGoodPath(d.stateDir)
	if good, lgErr := config.Load(lg); lgErr == nil {
		d.log.Warn("config invalid; serving the last config that applied cleanly", "path", lg)
		return good, lg, err
	}
	return nil, "", err
}

// saveLastGood keeps a copy of a config that applied cleanly, for a start
// with a broken file. Best effort: a read-only state dir is no error.
func (d *Daemon) saveLastGood(cfg *config.Config) {
	data, err := os.ReadFile(cfg.Path)
	if err != nil {
		return
	}
	if err := os.MkdirAll(d.stateDir, 0o755); err != nil {
		d.log.Debug("state dir", "err", err)
		return
	}
	if err := atomicfile.WriteFile(lastGoodPath(d.stateDir), data); err != nil {
		d.log.Debug("last good config not saved", "err", err)
	}
}

// errorLines splits an error into the lines status shows, one
// "FILE:LINE:COL: message" per config error.
func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	var es config.Errors
	if errors.As(err, &es) {
		out := make([]string, len(es))
		for i, e := range es {
			out[i] = e.Error()
		}
		return out
	}
	return strings.Split(err.Error(), "\n")
}
