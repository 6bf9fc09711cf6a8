package dhcp

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// writeResolvConf replaces path with the lease's DNS servers. Only called
// when the integrator asked for it (Config.ResolvConf).
func writeResolvConf(path string, servers []netip.Addr) error {
	if len(servers) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("# written by lbd from a DHCP lease\n")
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".resolv-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}
