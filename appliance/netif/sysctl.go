package netif

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netns"
)

// ensurePromoteSecondaries turns on net.ipv4.conf.<nic>.promote_secondaries.
// Without it, removing the primary IPv4 address of a subnet also removes
// every other address of that subnet, so replacing an address (a reload, a
// new DHCP lease) by adding the new one before removing the old one would
// silently lose the new one.
func (m *Manager) ensurePromoteSecondaries(changes *[]Change, name string) error {
	changed, err := SetSysctl(m.ns, filepath.Join("/proc/sys/net/ipv4/conf", name, "promote_secondaries"), "1")
	if err != nil {
		return err
	}
	if changed {
		m.record(changes, Change{name, "sysctl", "promote_secondaries=1"})
	}
	return nil
}

// SetSysctl writes value to a /proc/sys file inside ns when it differs,
// reporting whether it wrote. /proc/sys/net shows the namespace of the
// thread that opens it, hence RunInNetns.
func SetSysctl(ns netns.NsHandle, path, value string) (bool, error) {
	changed := false
	err := RunInNetns(ns, func() error {
		cur, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if strings.TrimSpace(string(cur)) == value {
			return nil
		}
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		changed = true
		return nil
	})
	return changed, err
}
