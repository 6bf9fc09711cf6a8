package e2e

import (
	"strings"
	"testing"

	"lbd/internal/lab"
)

// TestKernelRefusedReloadKeepsRunningConfig: a file that validates but
// that the kernel refuses (here: a chain someone added to table lbd still
// jumps to the chain of the service the new file removes, so deleting it
// is EBUSY) is refused like a bad file: the running config keeps serving,
// status says why, and health keeps following the running config.
func TestKernelRefusedReloadKeepsRunningConfig(t *testing.T) {
	e := newEnv(t, 2, 1)
	both := svcHeader("web", lab.VIPv4, 7000, "") + fastHealth("tcp", "") + backends(7000, 1, 2) +
		svcHeader("old", lab.VIPv4, 7001, "") + backends(7000, 1)
	e.writeConfig(both)
	e.startLBD()
	e.nft("add", "chain", "inet", "lbd", "pinned")
	e.nft("add", "rule", "inet", "lbd", "pinned", "jump", "svc_old")

	e.writeConfig(svcHeader("web", lab.VIPv4, 7000, "") + fastHealth("tcp", "") + backends(7000, 1, 2))
	out, err := e.lbdCmd("reload")
	if err == nil {
		t.Fatalf("a reload the kernel refuses must fail:\n%s", out)
	}
	if !strings.Contains(out, "kernel refused") {
		t.Errorf("reload output should say the kernel refused it:\n%s", out)
	}
	st := e.status()
	if len(st.Services) != 2 || !strings.Contains(st.Config.LastError, "kernel refused") || st.Reloads.Failed != 1 {
		t.Fatalf("after the refused reload: %d services, last error %q, reloads %+v", len(st.Services), st.Config.LastError, st.Reloads)
	}
	if got := e.spread(0, vip4(7001), 2); got["be1"] != 2 {
		t.Fatalf("the running config's service old should still serve: %v", got)
	}
	// Health still drives the running config's slots.
	e.lab.StopBackend(2)
	e.waitState("web", lab.BackendV4(2)+":7000", "down")
	e.waitSlots("web", lab.BackendV4(2)+":7000", none)
	if got := e.spread(0, vip4(7000), 4); got["be1"] != 4 {
		t.Fatalf("after be2 died: %v", got)
	}
	if s := e.status().Sync; !s.InSync {
		t.Fatalf("the refused reload is not a sync failure: %+v", s)
	}
	// Once the blocker is gone the same file applies.
	e.nft("delete", "chain", "inet", "lbd", "pinned")
	e.reload()
	if st := e.status(); len(st.Services) != 1 || st.Config.LastError != "" {
		t.Fatalf("after removing the blocker: %d services, last error %q", len(st.Services), st.Config.LastError)
	}
}
