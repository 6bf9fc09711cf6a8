package host

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"lbd/config"
)

func loadConfig(t *testing.T, body string) *config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "lb.toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func TestApplyHostnameFromConfig(t *testing.T) {
	cfg := loadConfig(t, "[appliance]\nhostname = \"lb-edge-1\"\n")
	var set []string
	setter := func(b []byte) error { set = append(set, string(b)); return nil }

	got, err := ApplyHostname(cfg, func() (string, error) { return "lbd", nil }, setter)
	if err != nil || got != "lb-edge-1" || len(set) != 1 || set[0] != "lb-edge-1" {
		t.Fatalf("ApplyHostname = %q, %v; set %v", got, err, set)
	}
	// Already the name: no call.
	got, err = ApplyHostname(cfg, func() (string, error) { return "lb-edge-1", nil }, setter)
	if err != nil || got != "" || len(set) != 1 {
		t.Fatalf("second ApplyHostname = %q, %v; set %v", got, err, set)
	}
	// The kernel refuses (no CAP_SYS_ADMIN): the error names the key.
	_, err = ApplyHostname(cfg, func() (string, error) { return "lbd", nil }, func([]byte) error { return errors.New("operation not permitted") })
	if err == nil || err.Error() != `set hostname "lb-edge-1" ([appliance] hostname): operation not permitted` {
		t.Fatalf("refused: err = %v", err)
	}
	if n := Name(cfg); n != "lb-edge-1" {
		t.Errorf("Name = %q, want the configured lb-edge-1", n)
	}
}

func TestApplyHostnameUnset(t *testing.T) {
	cfg := loadConfig(t, "[appliance]\nstatus_listen = \"127.0.0.1:9100\"\n")
	got, err := ApplyHostname(cfg, os.Hostname, func([]byte) error { t.Fatal("set called without [appliance] hostname"); return nil })
	if err != nil || got != "" {
		t.Fatalf("ApplyHostname = %q, %v", got, err)
	}
	kernel, _ := os.Hostname()
	if n := Name(cfg); n != kernel {
		t.Errorf("Name = %q, want the kernel's %q", n, kernel)
	}
	if n := Name(nil); n != kernel {
		t.Errorf("Name(nil) = %q, want the kernel's %q", n, kernel)
	}
}

func TestHostnameValidated(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lb.toml")
	os.WriteFile(p, []byte("[appliance]\nhostname = \"bad name!\"\n"), 0o644)
	if _, err := config.Load(p); err == nil {
		t.Fatal("a hostname with a space and '!' was accepted")
	}
}
