// Package lab builds throw-away network labs for tests, the demo and the
// benchmarks: named network namespaces joined by veth pairs, with addresses
// from the documentation ranges only. Everything a Lab creates is removed by
// Close, and a Lab never touches the namespace it was started from.
package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Lab is a set of namespaces with a common name prefix.
type Lab struct {
	Prefix string
	mu     sync.Mutex
	ns     []string
	procs  []*exec.Cmd
}

// New makes an empty lab; prefix should be unique to the caller (it is
// combined with the pid).
func New(prefix string) *Lab {
	sweepOnce.Do(sweepOrphans)
	return &Lab{Prefix: fmt.Sprintf("lbdt-%s-%d", prefix, os.Getpid())}
}

// NS returns the full name of a namespace of this lab.
func (l *Lab) NS(short string) string { return l.Prefix + "-" + short }

// AddNS creates a namespace with loopback up.
func (l *Lab) AddNS(short string) (string, error) {
	name := l.NS(short)
	_ = exec.Command("ip", "netns", "del", name).Run() // left over from a crashed run
	if err := run("ip", "netns", "add", name); err != nil {
		return "", err
	}
	l.mu.Lock()
	l.ns = append(l.ns, name)
	l.mu.Unlock()
	return name, l.Exec(short, "ip", "link", "set", "lo", "up")
}

// Link joins two namespaces with a veth pair named ifA (in a) and ifB (in b).
func (l *Lab) Link(a, ifA, b, ifB string) error {
	tmpA := fmt.Sprintf("lv%d%s", os.Getpid()%100000, ifA)
	if len(tmpA) > 15 {
		tmpA = tmpA[:15]
	}
	tmpB := tmpA[:len(tmpA)-1] + "x"
	if err := run("ip", "link", "add", tmpA, "netns", l.NS(a), "type", "veth", "peer", "name", tmpB, "netns", l.NS(b)); err != nil {
		return err
	}
	if err := l.Exec(a, "ip", "link", "set", tmpA, "name", ifA); err != nil {
		return err
	}
	if err := l.Exec(b, "ip", "link", "set", tmpB, "name", ifB); err != nil {
		return err
	}
	if err := l.Exec(a, "ip", "link", "set", ifA, "up"); err != nil {
		return err
	}
	return l.Exec(b, "ip", "link", "set", ifB, "up")
}

// Exec runs a command in a namespace and returns an error with its output.
func (l *Lab) Exec(short string, args ...string) error {
	_, err := l.Output(short, args...)
	return err
}

// Output runs a command in a namespace and returns its stdout.
func (l *Lab) Output(short string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.NS(short)}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), short, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Command prepares a long-running command in a namespace; Start it yourself.
// The lab kills it on Close.
func (l *Lab) Command(short string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.NS(short)}, args...)...)
	l.mu.Lock()
	l.procs = append(l.procs, cmd)
	l.mu.Unlock()
	return cmd
}

// Close kills the lab's processes and deletes its namespaces (and with them
// their veths).
func (l *Lab) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.procs {
		if p.Process != nil && p.ProcessState == nil {
			_ = p.Process.Kill()
			_, _ = p.Process.Wait()
		}
	}
	for i := len(l.ns) - 1; i >= 0; i-- {
		_ = exec.Command("ip", "netns", "pids", l.ns[i]).Run()
		killNetnsPids(l.ns[i])
		_ = exec.Command("ip", "netns", "del", l.ns[i]).Run()
	}
	l.ns = nil
}

func killNetnsPids(ns string) {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		_ = exec.Command("kill", "-9", f).Run()
	}
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
