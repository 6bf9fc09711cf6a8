package host

import (
	"fmt"
	"os"

	"lbd/config"
)

// Name is the machine name lbd shows (console, status page, /status.json,
// lbd status): [appliance] hostname of the config it serves, else the
// kernel's. The configured name wins even where lbd could not set the
// kernel's (a hardened service without CAP_SYS_ADMIN, a test namespace).
func Name(cfg *config.Config) string {
	if cfg != nil && cfg.Appliance.Hostname != "" {
		return cfg.Appliance.Hostname
	}
	n, _ := os.Hostname()
	return n
}

// ApplyHostname sets the kernel's hostname (through set, e.g.
// syscall.Sethostname) to [appliance] hostname of cfg. Nothing happens
// when the key is absent or the name is already current (get). It reports
// the name set, or "" when nothing changed.
func ApplyHostname(cfg *config.Config, get func() (string, error), set func([]byte) error) (string, error) {
	want := cfg.Appliance.Hostname
	if want == "" {
		return "", nil
	}
	if cur, err := get(); err == nil && cur == want {
		return "", nil
	}
	if err := set([]byte(want)); err != nil {
		return "", fmt.Errorf("set hostname %q ([appliance] hostname): %w", want, err)
	}
	return want, nil
}
