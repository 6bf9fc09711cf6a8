package lab

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestSweepRemovesOnlyOrphanedLabs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: needs root (network namespaces); CI runs as root")
	}
	dead := 1 << 22 // above the default pid_max's reach of live test pids
	for alive(dead) {
		dead--
	}
	orphan := fmt.Sprintf("lbdt-sweep-%d-a", dead)
	mine := fmt.Sprintf("lbdt-sweep-%d-a", os.Getpid())
	for _, n := range []string{orphan, mine} {
		if out, err := exec.Command("ip", "netns", "add", n).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v %s", n, err, out)
		}
		defer exec.Command("ip", "netns", "del", n).Run()
	}
	sleeper := exec.Command("ip", "netns", "exec", orphan, "sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sleeper.Wait() }()
	// `ip netns exec` enters the namespace after it starts: sweep only once
	// the namespace lists the process, or the sweep finds nobody to kill
	// (a race a loaded CI machine lost: the sleeper then ran its 300 s).
	for {
		pids, _ := exec.Command("ip", "netns", "pids", orphan).Output()
		if strings.Contains(" "+strings.Join(strings.Fields(string(pids)), " ")+" ", fmt.Sprintf(" %d ", sleeper.Process.Pid)) {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the process in the orphaned lab ended by itself: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}

	sweepOrphans()
	list, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(list), orphan) {
		t.Errorf("the orphaned lab %s is still there", orphan)
	}
	if !strings.Contains(string(list), mine) {
		t.Errorf("the sweep removed a lab of a live process (%s)", mine)
	}
	if err := <-done; err == nil {
		t.Errorf("the process in the orphaned lab was not killed")
	}
}
