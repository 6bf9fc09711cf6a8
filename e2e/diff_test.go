package e2e

import (
	"strings"
	"testing"

	"lbd/internal/lab"
)

// TestDiffThenReload: `lbd diff` shows the change a reload would make and
// changes nothing; `lbd reload --diff` shows it and applies it.
func TestDiffThenReload(t *testing.T) {
	e := newEnv(t, 3, 1)
	e.writeConfig(svcHeader("hash", lab.VIPv4, 7000, `scheduler = "mh"`) + backends(7000, 1, 2, 3))
	e.startLBD()
	before := e.nft("list", "map", "inet", "lbd", "slots4")
	e.writeConfig(svcHeader("hash", lab.VIPv4, 7000, `scheduler = "mh"`) + backends(7000, 1, 2) +
		svcHeader("dns", lab.VIPv4, 7001, `protocol = "udp"`) + backends(7000, 3))
	out, err := e.lbdCmd("diff")
	t.Logf("lbd diff:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"+ service dns 203.0.113.10:7001/udp: added", "~ service hash", "- backend 192.0.2.13:7000", "move to another backend"} {
		if !strings.Contains(out, want) {
			t.Errorf("lbd diff lacks %q", want)
		}
	}
	// Maglev: removing one of three backends moves only its third, about.
	if after := e.nft("list", "map", "inet", "lbd", "slots4"); after != before {
		t.Fatal("lbd diff changed the kernel")
	}
	out, err = e.lbdCmd("reload", "--diff")
	if err != nil || !strings.Contains(out, "+ service dns") || !strings.Contains(out, "reloaded") {
		t.Fatalf("reload --diff: %v\n%s", err, out)
	}
	if got := e.status(); len(got.Services) != 2 {
		t.Fatalf("after reload: %d services", len(got.Services))
	}
	if out, _ := e.lbdCmd("diff"); !strings.Contains(out, "no change") {
		t.Fatalf("diff after the reload:\n%s", out)
	}
}
