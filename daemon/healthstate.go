package daemon

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"lbd/health"
	"lbd/internal/atomicfile"
)

// Backend health outlives lbd: the sync loop writes the checked backends
// that are down to health.json after each sync that changed health, and a
// starting lbd adopts them, so a backend that was dead before kill -9, an
// upgrade or a reboot gets no new flows while its checks run again (it
// needs `rise` passes to come back). Backends the file does not name start
// up, as documented.

const healthStateVersion = 1

type healthFile struct {
	Version int               `json:"version"`
	SavedAt time.Time         `json:"saved_at"`
	Down    []healthFileEntry `json:"down"`
}

type healthFileEntry struct {
	Service string `json:"service"`
	Backend string `json:"backend"`
}

func healthStatePath(dir string) string { return filepath.Join(dir, "health.json") }

// loadDownBackends reads health.json; a missing file is no error (first
// start), a damaged one is reported and ignored (start as documented).
func loadDownBackends(dir string) (map[backendKey]bool, error) {
	data, err := os.ReadFile(healthStatePath(dir))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f healthFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", healthStatePath(dir), err)
	}
	if f.Version != healthStateVersion {
		return nil, fmt.Errorf("%s: version %d, expected %d", healthStatePath(dir), f.Version, healthStateVersion)
	}
	out := map[backendKey]bool{}
	for _, e := range f.Down {
		ap, err := netip.ParseAddrPort(e.Backend)
		if err != nil {
			return nil, fmt.Errorf("%s: backend %q: %w", healthStatePath(dir), e.Backend, err)
		}
		out[backendKey{e.Service, ap}] = true
	}
	return out, nil
}

// saveDownBackends writes the down set atomically (old or new file, never
// half of one).
func saveDownBackends(dir string, down []backendKey, now time.Time) error {
	slices.SortFunc(down, func(a, b backendKey) int {
		if a.Service != b.Service {
			if a.Service < b.Service {
				return -1
			}
			return 1
		}
		return a.Backend.Compare(b.Backend)
	})
	down = slices.Compact(down)
	f := healthFile{Version: healthStateVersion, SavedAt: now.UTC(), Down: []healthFileEntry{}}
	for _, k := range down {
		f.Down = append(f.Down, healthFileEntry{Service: k.Service, Backend: k.Backend.String()})
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(healthStatePath(dir), append(data, '\n'))
}

// downBackends lists the checked backends of targets the monitor has down.
func downBackends(m HealthMonitor, targets []health.Target) []backendKey {
	var out []backendKey
	for _, t := range targets {
		if ts, ok := m.Lookup(t.Service, t.Addr); ok && ts.State == health.StateDown {
			out = append(out, backendKey{t.Service, t.Addr})
		}
	}
	return out
}
