// Command demo is `make demo`: a namespace lab with a client, lbd and three
// small HTTP backends, running examples/lb.toml. It shows requests
// spreading over the backends, a backend failing its health check and
// coming back, and `lbd status`; then it waits for Ctrl-C (or DEMO_SECONDS)
// and removes everything it made.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"lbd/internal/lab"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: demo LBD_BINARY CONFIG")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func run(lbdBin, cfgPath string) error {
	dir, err := os.MkdirTemp("", "lbd-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ls := filepath.Join(dir, "labserver")
	step("building the lab backend")
	if out, err := exec.Command("go", "build", "-o", ls, "lbd/internal/labserver").CombinedOutput(); err != nil {
		return fmt.Errorf("build labserver: %v\n%s", err, out)
	}
	step("creating namespaces: client 198.51.100.2 -> lb -> backends 192.0.2.11-13")
	s, err := lab.NewStandard("demo", 3)
	if err != nil {
		return err
	}
	defer func() {
		step("cleaning up the lab")
		s.Close()
	}()
	if err := s.StartBackends(ls, dir); err != nil {
		return err
	}
	socket := filepath.Join(dir, "lbd.sock")
	step("starting lbd with %s", cfgPath)
	cmd := s.Command("lb", lbdBin, "run", "--config", cfgPath, "--socket", socket)
	cmd.Env = append(os.Environ(), "LBD_STATE_DIR="+filepath.Join(dir, "state"), "NOTIFY_SOCKET=")
	cmd.Stdout, cmd.Stderr = prefixed("lbd | "), prefixed("lbd | ")
	if err := cmd.Start(); err != nil {
		return err
	}
	time.Sleep(time.Second)

	client := httpClientIn(s)
	spread := func(n int) {
		counts := map[string]int{}
		for i := 0; i < n; i++ {
			body, err := client("http://" + lab.VIPv4 + "/")
			if err != nil {
				fmt.Printf("   request %d: %v\n", i+1, err)
				continue
			}
			counts[strings.Fields(body)[0]]++
		}
		var names []string
		for k := range counts {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			fmt.Printf("   %-4s %s %d\n", k, strings.Repeat("#", counts[k]), counts[k])
		}
	}
	step("20 new HTTP connections to http://%s/ (be3 has weight 2)", lab.VIPv4)
	spread(20)
	lbdStatus(lbdBin, socket)

	step("be2 starts answering 503 on /healthz; after fall=2 checks it leaves the slots")
	_ = os.WriteFile(filepath.Join(dir, "be2.health"), []byte("503"), 0o644)
	time.Sleep(3 * time.Second)
	spread(20)
	lbdStatus(lbdBin, socket)

	step("be2 is healthy again; after rise=2 checks it is back")
	_ = os.Remove(filepath.Join(dir, "be2.health"))
	time.Sleep(3 * time.Second)
	spread(20)

	wait := 0
	if v, err := strconv.Atoi(os.Getenv("DEMO_SECONDS")); err == nil {
		wait = v
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if wait > 0 {
		step("the lab stays up for %ds (DEMO_SECONDS); Ctrl-C ends it sooner", wait)
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(wait) * time.Second):
		}
	} else if isTerminal() {
		step("the lab stays up: try `ip netns exec %s curl http://%s/` or `%s status --socket %s`; Ctrl-C ends the demo",
			s.NS("client"), lab.VIPv4, lbdBin, socket)
		<-ctx.Done()
	}
	_ = cmd.Process.Signal(os.Interrupt)
	_, _ = cmd.Process.Wait()
	return nil
}

func lbdStatus(bin, socket string) {
	step("lbd status")
	out, _ := exec.Command(bin, "status", "--socket", socket).CombinedOutput()
	fmt.Print(string(out))
}

// httpClientIn returns a GET function whose connections come from the
// client namespace (a new connection per request).
func httpClientIn(s *lab.Standard) func(string) (string, error) {
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return s.Dial("client", network, addr, 3*time.Second)
	}}
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	return func(url string) (string, error) {
		resp, err := c.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
}

func isTerminal() bool {
	fi, err := os.Stdin.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

type prefixWriter struct{ prefix string }

func prefixed(p string) io.Writer { return prefixWriter{p} }

func (w prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		fmt.Println(w.prefix + line)
	}
	return len(b), nil
}
