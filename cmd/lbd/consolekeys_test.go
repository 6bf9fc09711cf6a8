package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The console's shell key follows [appliance] console_login in the file
// on disk, and a file that does not validate gives no shell.
func TestShellAllowedFollowsConsoleLogin(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, text string
		ok         bool
		why        string
	}{
		{"on", "[appliance]\nconsole_login = true\n" + editConfig, true, ""},
		{"off", "[appliance]\nconsole_login = false\n" + editConfig, false, "console_login = false"},
		{"unset", editConfig, false, "console_login = false"},
		{"broken", "[appliance]\nconsole_login = true\n" + strings.Replace(editConfig, "port = 80", "port = 99999", 1), false, "does not validate"},
		{"missing", "", false, "does not validate"},
	} {
		p := filepath.Join(dir, c.name+".toml")
		if c.name != "missing" {
			if err := os.WriteFile(p, []byte(c.text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		ok, why := shellAllowed(p)
		if ok != c.ok || !strings.Contains(why, c.why) {
			t.Errorf("%s: shellAllowed = %v, %q; want %v, %q", c.name, ok, why, c.ok, c.why)
		}
	}
}
