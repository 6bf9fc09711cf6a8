package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckListsEveryError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lb.toml")
	text := `[[service]]
name = "web"
vip = "203.0.113.10"
port = 80
scheduler = "wrr"
persistence = "5 min"

  [[service.backend]]
  address = "192.0.2.11:8080"
  weight = 5000
`
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := realMain([]string{"check", "--config", path}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	var lines []string
	for _, l := range strings.Split(errb.String(), "\n") {
		if strings.HasPrefix(l, path+":") && strings.Count(l, ":") >= 3 && !strings.HasSuffix(l, "error(s)") {
			lines = append(lines, l)
		}
	}
	want := []string{path + ":5:13: service[0].scheduler", path + ":6:15: service[0].persistence", path + ":10:12: service[0].backend[0].weight"}
	if len(lines) != 3 {
		t.Fatalf("want 3 FILE:LINE:COL lines, got:\n%s", errb.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d: got %q, want prefix %q", i, lines[i], w)
		}
	}
}

func TestCheckGoodExample(t *testing.T) {
	var out, errb bytes.Buffer
	if code := realMain([]string{"check", "--config", "../../examples/lb.toml"}, &out, &errb); code != 0 {
		t.Fatalf("examples/lb.toml should be valid: %s", errb.String())
	}
	if !strings.Contains(out.String(), "OK (1 services, 3 backends") {
		t.Errorf("summary: %s", out.String())
	}
}

func TestStatusWithoutDaemon(t *testing.T) {
	var out, errb bytes.Buffer
	code := realMain([]string{"status", "--socket", filepath.Join(t.TempDir(), "none.sock")}, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "no lbd is listening on") {
		t.Fatalf("status without a daemon: exit %d, %q", code, errb.String())
	}
}
