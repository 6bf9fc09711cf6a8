package lab

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// A test binary killed by go test's timeout (a panic: no cleanup runs) or
// by a signal leaves its namespaces and the servers and lbd in them behind.
// Every lab is named lbdt-<name>-<pid of its creator>, so the first lab of
// a process removes the labs whose creator is gone: their processes are
// killed and their namespaces deleted. Labs of live processes (several
// test binaries run at once) are left alone.

var sweepOnce sync.Once

var labNS = regexp.MustCompile(`^lbdt-.+-(\d+)-[^-]+$`)

func sweepOrphans() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		m := labNS.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() || alive(pid) {
			continue
		}
		if pids, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
			for _, p := range strings.Fields(string(pids)) {
				if n, err := strconv.Atoi(p); err == nil {
					_ = syscall.Kill(n, syscall.SIGKILL)
				}
			}
		}
		_ = exec.Command("ip", "netns", "del", name).Run()
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
