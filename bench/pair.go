package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"lbd/appliance/control"
	"lbd/internal/lab"
)

// The pair failover section (issue 11): two lbd nodes with keepalived and
// conntrackd (lab.Pair), long-lived connections and a stream of new ones
// through the master, then the master dies hard (links down, kill -9 of
// lbd, keepalived and conntrackd). Each run measures the takeover time
// (last answered new connection before the kill to the first after), the
// long-lived connections that still echo afterwards, and the new
// connections that failed. The dead node comes back as backup and the
// next run kills the other one.

// PairRun is one hard takeover.
type PairRun struct {
	TakeoverMS float64 `json:"takeover_ms"`
	Kept       int     `json:"kept"`
	Long       int     `json:"long"`
	NewFailed  int     `json:"new_failed"`
	NewSent    int     `json:"new_sent"`
	Killed     string  `json:"killed"`
}

const (
	pairLong     = 20
	pairAdvert   = 200 * time.Millisecond
	pairProbeGap = 10 * time.Millisecond
)

type pairNode struct {
	idx                 int
	name                string
	dir, cfgPath, sock  string
	cmd                 *exec.Cmd
	logf                *os.File
	priority            int
	peer, syncPeer, lbd string
}

func pairConfig(n *pairNode) string {
	var b strings.Builder
	fmt.Fprintf(&b, `[ha]
mode = "vrrp"
interface = "wan"
router_id = 51
priority = %d
peer = %q
advert_interval = %q
lan_interface = "lan"
lan_address = "%s/24"
sync_peer = %q

[[service]]
name = "echo"
vip = %q
port = 7000
snat = true
`, n.priority, n.peer, pairAdvert.String(), lab.PairLANFloat, n.syncPeer, lab.VIPv4)
	for i := 1; i <= nBackends; i++ {
		fmt.Fprintf(&b, "\n  [[service.backend]]\n  address = \"%s:7000\"\n", lab.BackendV4(i))
	}
	return b.String()
}

func (n *pairNode) start(p *lab.Pair) error {
	if n.logf == nil {
		f, err := os.Create(filepath.Join(n.dir, "lbd.log"))
		if err != nil {
			return err
		}
		n.logf = f
	}
	cmd := p.Command(n.name, n.lbd, "run", "--config", n.cfgPath, "--socket", n.sock)
	cmd.Env = append(os.Environ(), "LBD_STATE_DIR="+filepath.Join(n.dir, "state"), "NOTIFY_SOCKET=")
	cmd.Stdout, cmd.Stderr = n.logf, n.logf
	if err := cmd.Start(); err != nil {
		return err
	}
	n.cmd = cmd
	return waitUntil(time.Minute, func() bool {
		_, err := control.Call(n.sock, control.Request{Command: "status"}, time.Second)
		return err == nil
	})
}

func (n *pairNode) stop() {
	if n.cmd != nil && n.cmd.ProcessState == nil {
		_ = n.cmd.Process.Kill()
		_ = n.cmd.Wait()
	}
}

// ha returns the node's role and the flows in conntrackd's external cache.
func (n *pairNode) ha() (role string, external uint64) {
	resp, err := control.Call(n.sock, control.Request{Command: "status"}, 5*time.Second)
	if err != nil || resp.Status == nil || resp.Status.HA == nil {
		return "", 0
	}
	return resp.Status.HA.Role, resp.Status.HA.FlowSync.External
}

func (n *pairNode) waitRole(role string) error {
	if err := waitUntil(time.Minute, func() bool { r, _ := n.ha(); return r == role }); err != nil {
		r, _ := n.ha()
		return fmt.Errorf("%s never became %s (is %s)", n.name, role, r)
	}
	return nil
}

func waitUntil(limit time.Duration, f func() bool) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if f() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("timed out after %s", limit)
}

type pairSample struct {
	start, end time.Time
	ok         bool
}

func (o *opts) pairFailover(res *Results) {
	for _, tool := range []string{"keepalived", "conntrackd"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat("/usr/sbin/" + tool); err != nil {
				o.fail(res, "pair failover: %s not installed (scripts/apt-ensure %s)", tool, tool)
				return
			}
		}
	}
	labsrv := filepath.Join(o.work, "labserver")
	if out, err := exec.Command("go", "build", "-C", o.repo, "-o", labsrv, "./internal/labserver").CombinedOutput(); err != nil {
		o.fail(res, "pair failover: build labserver: %v %s", err, out)
		return
	}
	p, err := lab.NewPair("bpair", nBackends)
	if err != nil {
		o.fail(res, "pair failover: lab: %v", err)
		return
	}
	setCurrent(p)
	nodes := []*pairNode{
		{idx: 1, name: "lb1", priority: 150, peer: lab.PairWAN2, syncPeer: lab.PairLAN2, lbd: o.lbd},
		{idx: 2, name: "lb2", priority: 100, peer: lab.PairWAN1, syncPeer: lab.PairLAN1, lbd: o.lbd},
	}
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
		setCurrent(nil)
		p.Close()
	}()
	if err := p.StartBackends(labsrv); err != nil {
		o.fail(res, "pair failover: backends: %v", err)
		return
	}
	for _, n := range nodes {
		n.dir = filepath.Join(o.work, "pair-"+n.name)
		n.cfgPath, n.sock = filepath.Join(n.dir, "lb.toml"), filepath.Join(n.dir, "lbd.sock")
		if err := os.MkdirAll(n.dir, 0o755); err == nil {
			err = os.WriteFile(n.cfgPath, []byte(pairConfig(n)), 0o644)
		}
		if err != nil {
			o.fail(res, "pair failover: %v", err)
			return
		}
	}
	master, backup := nodes[0], nodes[1]
	for _, step := range []func() error{
		func() error { return master.start(p) }, func() error { return master.waitRole("MASTER") },
		func() error { return backup.start(p) }, func() error { return backup.waitRole("BACKUP") },
	} {
		if err := step(); err != nil {
			o.fail(res, "pair failover: start: %v", err)
			return
		}
	}
	for run := 0; run < o.reps && o.ctx.Err() == nil; run++ {
		pr, err := o.pairRun(p, master, backup)
		if err != nil {
			o.fail(res, "pair failover run %d: %v", run+1, err)
			return
		}
		o.logf("pair failover run %d: killed %s; takeover %.0f ms; long-lived kept %d/%d; new connections failed %d of %d",
			run+1, pr.Killed, pr.TakeoverMS, pr.Kept, pr.Long, pr.NewFailed, pr.NewSent)
		res.Pair = append(res.Pair, pr)
		// The dead node comes back as backup; the next run kills the
		// new master.
		if err := master.start(p); err == nil {
			err = p.LinksUp(master.name)
			if err == nil {
				err = master.waitRole("BACKUP")
			}
		}
		if err != nil {
			o.fail(res, "pair failover: bringing %s back: %v", master.name, err)
			return
		}
		master, backup = backup, master
	}
}

// pairRun opens the long-lived connections, waits until the backup holds
// their flows, starts the probe, kills the master and measures.
func (o *opts) pairRun(p *lab.Pair, master, backup *pairNode) (PairRun, error) {
	pr := PairRun{Long: pairLong, Killed: master.name}
	type long struct {
		c net.Conn
		r *bufio.Reader
	}
	var conns []long
	defer func() {
		for _, l := range conns {
			l.c.Close()
		}
	}()
	ask := func(l long) error {
		_ = l.c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintln(l.c, "keep"); err != nil {
			return err
		}
		ans, err := l.r.ReadString('\n')
		if err == nil && !strings.HasSuffix(ans, " keep\n") {
			err = fmt.Errorf("answer %q", ans)
		}
		return err
	}
	for i := 0; i < pairLong; i++ {
		c, err := p.DialFrom("client", lab.ClientV4, lab.VIPv4+":7000", 5*time.Second)
		if err != nil {
			return pr, fmt.Errorf("long-lived connection %d: %w", i, err)
		}
		l := long{c, bufio.NewReader(c)}
		conns = append(conns, l)
		if err := ask(l); err != nil {
			return pr, fmt.Errorf("long-lived connection %d: %w", i, err)
		}
	}
	if err := waitUntil(time.Minute, func() bool { _, ext := backup.ha(); return ext >= pairLong }); err != nil {
		return pr, fmt.Errorf("%s's conntrackd never held the %d flows", backup.name, pairLong)
	}
	var mu sync.Mutex
	var samples []pairSample
	stop := make(chan struct{})
	done := make(chan struct{})
	// Open loop: a new connection every pairProbeGap whatever the ones
	// in flight do, so a connection stuck on the dead master does not
	// hold the probe up and the silence measures the takeover itself.
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		defer wg.Wait()
		tick := time.NewTicker(pairProbeGap)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := pairSample{start: time.Now()}
				c, err := p.DialFrom("client", lab.ClientV4, lab.VIPv4+":7000", time.Second)
				if err == nil {
					_ = c.SetDeadline(time.Now().Add(time.Second))
					if _, err = fmt.Fprintln(c, "new"); err == nil {
						_, err = bufio.NewReader(c).ReadString('\n')
					}
					c.Close()
				}
				s.end, s.ok = time.Now(), err == nil
				mu.Lock()
				samples = append(samples, s)
				mu.Unlock()
			}()
		}
	}()
	time.Sleep(time.Second)
	tKill := time.Now()
	if err := p.HardKill(master.name, master.cmd.Process.Pid); err != nil {
		close(stop)
		<-done
		return pr, fmt.Errorf("kill %s: %w", master.name, err)
	}
	_ = master.cmd.Wait()
	err := backup.waitRole("MASTER")
	time.Sleep(2 * time.Second)
	close(stop)
	<-done
	if err != nil {
		return pr, err
	}
	// The takeover is the longest silence between two answers, which
	// spans the kill (the links go down a few ms after tKill, so "last
	// answer before tKill" would miss the connections still answered by
	// the dying master).
	sort.Slice(samples, func(i, j int) bool { return samples[i].end.Before(samples[j].end) })
	var prev time.Time
	var gap time.Duration
	answeredAfter := false
	for _, s := range samples {
		pr.NewSent++
		if !s.ok {
			pr.NewFailed++
			continue
		}
		if !prev.IsZero() && s.end.Sub(prev) > gap {
			gap = s.end.Sub(prev)
		}
		prev = s.end
		answeredAfter = answeredAfter || s.start.After(tKill)
	}
	if !answeredAfter || gap == 0 {
		return pr, fmt.Errorf("no answered new connection after the kill (%d sent, %d failed)", pr.NewSent, pr.NewFailed)
	}
	pr.TakeoverMS = float64(gap) / 1e6
	for _, l := range conns {
		if ask(l) == nil {
			pr.Kept++
		}
	}
	return pr, nil
}

func reportPair(p func(string, ...any), r *Results) {
	if len(r.Pair) == 0 {
		return
	}
	p("\n## Pair failover\n\nTwo lbd nodes with keepalived (VRRPv3, advert_interval %s, nopreempt) and conntrackd\n"+
		"(FTFW over the backend link), `lab.Pair`: shared client and backend segments, snat = true to the\n"+
		"floating lan_address. Per run: %d long-lived connections through the master (one exchange each,\n"+
		"then idle) and, once the backup's conntrackd holds their flows, a client opening a new connection\n"+
		"every %s (open loop, 1 s timeouts); then the master dies hard (links down, kill -9 of lbd,\n"+
		"keepalived and conntrackd). Takeover = the longest silence between two answered new connections\n"+
		"(last answer before the takeover -> first after it). Then every long-lived connection must still\n"+
		"echo. The dead node comes back as backup and the next run kills the other one. Target: takeover\n"+
		"< 1 s with 200 ms adverts, 100%% of connections kept.\n\n",
		pairAdvert, pairLong, pairProbeGap)
	p("| run | killed | takeover (ms) | long-lived kept | new connections failed / sent |\n|---|---|---|---|---|\n")
	var tk []float64
	kept, long := 0, 0
	for i, x := range r.Pair {
		p("| %d | %s | %.0f | %d/%d | %d / %d |\n", i+1, x.Killed, x.TakeoverMS, x.Kept, x.Long, x.NewFailed, x.NewSent)
		tk = append(tk, x.TakeoverMS)
		kept, long = kept+x.Kept, long+x.Long
	}
	p("| median (min–max) | | %s | %d/%d | |\n", cell(tk), kept, long)
}
