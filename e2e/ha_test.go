package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lbd/appliance/control"
	"lbd/appliance/status"
	"lbd/internal/lab"
)

// The HA pair end to end: two lbd nodes with real keepalived and
// conntrackd (started by lbd), a client and three backends on shared
// segments (lab.Pair). Every assertion is on behaviour (roles, addresses,
// bytes echoed, failed counts), never on how long anything took.

type haNode struct {
	t       *testing.T
	p       *lab.Pair
	idx     int
	dir     string
	cfgPath string
	socket  string
	cmd     *exec.Cmd
	logf    *os.File
}

func (n *haNode) name() string { return n.p.Node(n.idx) }

// haConfig is node idx's lb.toml: node 1 has the higher priority.
func haConfig(idx int, snat bool, priority int) string {
	return haConfigWith(idx, snat, priority, "")
}

// haPrio is node idx's priority: node 1 wins an election.
func haPrio(idx int) int { return map[int]int{1: 150, 2: 100}[idx] }

// haConfigWith adds service lines (a health section) to haConfig.
func haConfigWith(idx int, snat bool, priority int, extra string) string {
	peer, syncPeer := lab.PairWAN2, lab.PairLAN2
	if idx == 2 {
		peer, syncPeer = lab.PairWAN1, lab.PairLAN1
	}
	return fmt.Sprintf(`[ha]
mode = "vrrp"
interface = "wan"
router_id = 51
priority = %d
peer = %q
advert_interval = "200ms"
lan_interface = "lan"
lan_address = "%s/24"
lan_address6 = "%s/64"
sync_peer = %q

[[service]]
name = "echo"
vip = %q
port = 7000
snat = %v
%s%s
[[service]]
name = "echo6"
vip = %q
port = 7000
snat = %v
%s%s`, priority, peer, lab.PairLANFloat, lab.PairLANFloat6, syncPeer, lab.VIPv4, snat, extra, backends(7000, 1, 2, 3),
		lab.VIPv6, snat, extra, backends6(7000, 1, 2, 3))
}

func (n *haNode) writeConfig(text string) {
	n.t.Helper()
	if err := os.WriteFile(n.cfgPath, []byte(text), 0o644); err != nil {
		n.t.Fatal(err)
	}
}

func (n *haNode) start() {
	n.t.Helper()
	bin, _ := binaries(n.t)
	if n.logf == nil {
		f, err := os.Create(filepath.Join(n.dir, "lbd.log"))
		if err != nil {
			n.t.Fatal(err)
		}
		n.logf = f
	}
	cmd := n.p.Command(n.name(), bin, "run", "--config", n.cfgPath, "--socket", n.socket)
	cmd.Env = append(os.Environ(), "LBD_STATE_DIR="+filepath.Join(n.dir, "state"), "NOTIFY_SOCKET=")
	cmd.Stdout, cmd.Stderr = n.logf, n.logf
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.cmd = cmd
	waitFor(n.t, n.name()+" lbd answering", func() bool {
		_, err := control.Call(n.socket, control.Request{Command: "status"}, time.Second)
		return err == nil
	})
}

func (n *haNode) ha() status.HA {
	n.t.Helper()
	resp, err := control.Call(n.socket, control.Request{Command: "status"}, 10*time.Second)
	if err != nil || resp.Status == nil {
		n.t.Fatalf("%s status: %v", n.name(), err)
	}
	if resp.Status.HA == nil {
		n.t.Fatalf("%s status has no ha section", n.name())
	}
	return *resp.Status.HA
}

func (n *haNode) waitRole(role string) {
	n.t.Helper()
	waitFor(n.t, n.name()+" role "+role, func() bool { return n.ha().Role == role })
}

func (n *haNode) lbd(args ...string) (string, error) {
	bin, _ := binaries(n.t)
	out, err := exec.Command(bin, append(args, "--socket", n.socket)...).CombinedOutput()
	return string(out), err
}

// holds counts the VIPs (IPv4 and IPv6) on the node's wan and the
// floating addresses on its lan: 2 and 2 on the master, 0 and 0 on a
// backup.
func (n *haNode) holds() (vips, lans int) {
	n.t.Helper()
	w, err := n.p.Addrs(n.name(), "wan")
	if err != nil {
		n.t.Fatal(err)
	}
	l, err := n.p.Addrs(n.name(), "lan")
	if err != nil {
		n.t.Fatal(err)
	}
	for _, a := range []string{lab.VIPv4, lab.VIPv6} {
		if slices.Contains(w, a) {
			vips++
		}
	}
	for _, a := range []string{lab.PairLANFloat, lab.PairLANFloat6} {
		if slices.Contains(l, a) {
			lans++
		}
	}
	return vips, lans
}

// longConn is a long-lived connection through the pair. Every exchange
// must come back byte for byte from the same backend, seen by it from
// the same (NATed) client address: the flow, not a new one.
type longConn struct {
	c       net.Conn
	r       *bufio.Reader
	backend string
	seenAs  string
	n       atomic.Int64
}

func payload(seq int) string {
	b := make([]byte, 256)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%d-%s", seq, hex.EncodeToString(b))
}

func (l *longConn) exchange(seq int) error {
	p := payload(seq)
	// A bound for a broken test, long enough to ride out a takeover with
	// TCP's retransmissions; not a timing assertion.
	_ = l.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintln(l.c, p); err != nil {
		return err
	}
	ans, err := l.r.ReadString('\n')
	if err != nil {
		return err
	}
	f := strings.SplitN(strings.TrimSuffix(ans, "\n"), " ", 3)
	if len(f) != 3 {
		return fmt.Errorf("answer %q", ans)
	}
	if l.backend == "" {
		l.backend, l.seenAs = f[0], f[1]
	}
	if f[0] != l.backend || f[1] != l.seenAs || f[2] != p {
		return fmt.Errorf("answer changed: got backend %s seen as %s (payload equal: %v), want %s seen as %s", f[0], f[1], f[2] == p, l.backend, l.seenAs)
	}
	l.n.Add(1)
	return nil
}

// prober opens new connections one after the other until stopped and
// counts the answered and the failed ones.
type prober struct {
	ok, fail atomic.Int64
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	errs     []string
}

func startProber(p *lab.Pair) *prober {
	pr := &prober{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(pr.done)
		for {
			select {
			case <-pr.stop:
				return
			default:
			}
			c, err := p.DialFrom("client", lab.ClientV4, lab.VIPv4+":7000", 10*time.Second)
			if err == nil {
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, err = fmt.Fprintln(c, "probe")
				if err == nil {
					_, err = bufio.NewReader(c).ReadString('\n')
				}
				c.Close()
			}
			if err != nil {
				pr.fail.Add(1)
				pr.mu.Lock()
				pr.errs = append(pr.errs, err.Error())
				pr.mu.Unlock()
			} else {
				pr.ok.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return pr
}

func (pr *prober) halt() (ok, fail int64, errs []string) {
	close(pr.stop)
	<-pr.done
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.ok.Load(), pr.fail.Load(), pr.errs
}

// newHAPair builds the pair lab, starts the backends and writes both
// nodes' configs; no lbd runs yet.
func newHAPair(t *testing.T, config func(idx int) string) (*lab.Pair, *haNode, *haNode) {
	t.Helper()
	needRoot(t)
	for _, tool := range []string{"keepalived", "conntrackd"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat("/usr/sbin/" + tool); err != nil {
				t.Fatalf("%s is not installed (make test installs it: TEST_DEBS)", tool)
			}
		}
	}
	_, ls := binaries(t)
	labSeq++
	p, err := lab.NewPair(fmt.Sprintf("ha%d", labSeq), 3)
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	nodes := []*haNode{nil, {t: t, p: p, idx: 1}, {t: t, p: p, idx: 2}}
	for _, n := range nodes[1:] {
		n.dir = filepath.Join(base, n.name())
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		n.cfgPath, n.socket = filepath.Join(n.dir, "lb.toml"), filepath.Join(n.dir, "lbd.sock")
	}
	t.Cleanup(func() {
		for _, n := range nodes[1:] {
			if n.cmd != nil && n.cmd.ProcessState == nil {
				if err := terminate(n.cmd, time.Minute); err != nil {
					t.Errorf("%s lbd on SIGTERM: %v", n.name(), err)
				}
			}
			if t.Failed() && n.logf != nil {
				if b, err := os.ReadFile(n.logf.Name()); err == nil {
					t.Logf("%s log:\n%s", n.name(), b)
				}
			}
		}
		p.Close()
	})
	if err := p.StartBackends(ls); err != nil {
		t.Fatal(err)
	}
	n1, n2 := nodes[1], nodes[2]
	n1.writeConfig(config(1))
	n2.writeConfig(config(2))
	return p, n1, n2
}

// startHAPair builds the pair lab, starts the backends and both nodes
// with config(idx), and returns once node 1 is master and node 2 backup.
func startHAPair(t *testing.T, config func(idx int) string) (*lab.Pair, *haNode, *haNode) {
	t.Helper()
	p, n1, n2 := newHAPair(t, config)
	// Node 1 first: alone on the link it becomes master; node 2 then
	// hears its adverts and stays backup.
	n1.start()
	n1.waitRole("MASTER")
	n2.start()
	n2.waitRole("BACKUP")
	if vip, lan := n1.holds(); vip != 2 || lan != 2 {
		t.Fatalf("master lb1 holds %d VIPs, %d floating addresses; want 2 and 2", vip, lan)
	}
	if vip, lan := n2.holds(); vip != 0 || lan != 0 {
		t.Fatalf("backup lb2 holds %d VIPs, %d floating addresses; want none", vip, lan)
	}
	waitFor(t, "lb2 hearing lb1's adverts", func() bool {
		a := n2.ha().PeerAdvert
		return a != nil && a.From == lab.PairWAN1 && a.Priority == 150
	})
	return p, n1, n2
}

func TestHAPair(t *testing.T) {
	for _, snat := range []bool{true, false} {
		t.Run(fmt.Sprintf("snat=%v", snat), func(t *testing.T) { testHAPair(t, snat) })
	}
}

func testHAPair(t *testing.T, snat bool) {
	p, n1, n2 := startHAPair(t, func(idx int) string { return haConfig(idx, snat, haPrio(idx)) })
	nodes := []*haNode{nil, n1, n2}
	// The backup keeps the whole data plane loaded: a takeover needs no apply.
	for _, n := range nodes[1:] {
		out, err := p.Output(n.name(), "nft", "list", "table", "inet", "lbd")
		if err != nil || !strings.Contains(out, "chain svc_echo") {
			t.Fatalf("%s has no data plane for echo: %v\n%s", n.name(), err, out)
		}
	}
	if h := n1.ha(); !h.Serving || h.Keepalived.PID == 0 || h.Conntrackd.PID == 0 {
		t.Fatalf("lb1 status: %+v", h)
	}
	if out, err := n2.lbd("ha", "release"); err == nil || !strings.Contains(out, "this node is not master; nothing to release (role BACKUP)") {
		t.Fatalf("release on the backup: err %v\n%s", err, out)
	}
	for _, c := range []struct {
		n    *haNode
		want string
	}{{n1, "pair: MASTER"}, {n2, "pair: BACKUP"}, {n2, "peer " + lab.PairWAN1 + " advertised priority 150"}} {
		if out, err := c.n.lbd("status"); err != nil || !strings.Contains(out, c.want) {
			t.Fatalf("%s lbd status lacks %q: %v\n%s", c.n.name(), c.want, err, out)
		}
	}

	// Long-lived connections through the master: half idle, half
	// streaming; every third one (idle and streaming alike) over IPv6.
	const idle, streaming = 6, 6
	is6 := func(i int) bool { return i%3 == 2 }
	var conns []*longConn
	for i := 0; i < idle+streaming; i++ {
		from, to := lab.ClientV4, lab.VIPv4+":7000"
		if is6(i) {
			from, to = lab.ClientV6, "["+lab.VIPv6+"]:7000"
		}
		c, err := p.DialFrom("client", from, to, 5*time.Second)
		if err != nil {
			t.Fatalf("long-lived connection %d: %v", i, err)
		}
		l := &longConn{c: c, r: bufio.NewReader(c)}
		if err := l.exchange(0); err != nil {
			t.Fatalf("long-lived connection %d: %v", i, err)
		}
		conns = append(conns, l)
	}
	defer func() {
		for _, l := range conns {
			l.c.Close()
		}
	}()
	if snat {
		for i, l := range conns {
			want := lab.PairLANFloat + ":"
			if is6(i) {
				want = "[" + lab.PairLANFloat6 + "]:"
			}
			if !strings.HasPrefix(l.seenAs, want) {
				t.Fatalf("connection %d reaches its backend from %s; want the floating %s", i, l.seenAs, want)
			}
		}
	}
	var streamErrs sync.Map
	stopStream := make(chan struct{})
	var streamWG sync.WaitGroup
	for i := idle; i < idle+streaming; i++ {
		streamWG.Add(1)
		go func(i int) {
			defer streamWG.Done()
			for seq := 1; ; seq++ {
				select {
				case <-stopStream:
					return
				default:
				}
				if err := conns[i].exchange(seq); err != nil {
					streamErrs.Store(i, err)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}(i)
	}
	waitFor(t, "lb2's conntrackd holding the flows of lb1", func() bool {
		return n2.ha().FlowSync.External >= idle+streaming
	})

	// The master dies hard.
	pr := startProber(p)
	if err := p.HardKill(n1.name(), n1.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	_ = n1.cmd.Wait()
	n2.waitRole("MASTER")
	if vip, lan := n2.holds(); vip != 2 || lan != 2 {
		t.Fatalf("new master lb2 holds %d VIPs, %d floating addresses; want 2 and 2", vip, lan)
	}
	if h := n2.ha(); !strings.Contains(h.LastTransition, "BACKUP -> MASTER") || h.Transitions < 2 {
		t.Errorf("lb2 transition: %q (%d transitions)", h.LastTransition, h.Transitions)
	}
	checkLong := func(when string, seq int) {
		t.Helper()
		for i := 0; i < idle; i++ {
			if err := conns[i].exchange(seq); err != nil {
				// What each namespace holds, for the one reading the failure.
				for _, ns := range []string{"lb1", "lb2", "client", "be1"} {
					ct, _ := p.Output(ns, "conntrack", "-L")
					ng, _ := p.Output(ns, "ip", "neigh")
					ad, _ := p.Output(ns, "ip", "-br", "addr")
					t.Logf("%s conntrack:\n%s\nneighbours:\n%s\naddresses:\n%s", ns, ct, ng, ad)
				}
				t.Fatalf("%s: idle connection %d: %v", when, i, err)
			}
		}
		for i := idle; i < idle+streaming; i++ {
			before := conns[i].n.Load()
			waitFor(t, fmt.Sprintf("%s: streaming connection %d moving on", when, i), func() bool {
				if err, ok := streamErrs.Load(i); ok {
					t.Fatalf("%s: streaming connection %d: %v", when, i, err)
				}
				return conns[i].n.Load() >= before+3
			})
		}
	}
	checkLong("after lb1 died", 1000)
	ok, fail, errs := pr.halt()
	t.Logf("new connections during the hard takeover: %d answered, %d failed %v", ok, fail, errs)
	// New connections work on the new master.
	for i := 0; i < 20; i++ {
		if _, err := p.Ask("client", lab.VIPv4+":7000"); err != nil {
			t.Fatalf("new connection %d after takeover: %v", i, err)
		}
	}

	// lb1 comes back: it must not take the VIPs back (nopreempt).
	n1.start()
	if err := p.LinksUp(n1.name()); err != nil {
		t.Fatal(err)
	}
	n1.waitRole("BACKUP")
	waitFor(t, "lb1 hearing lb2's adverts", func() bool {
		a := n1.ha().PeerAdvert
		return a != nil && a.From == lab.PairWAN2 && a.Priority == 100
	})
	if r := n2.ha().Role; r != "MASTER" {
		t.Fatalf("lb2 is %s after lb1 came back; want MASTER (no preemption)", r)
	}
	if vip, lan := n1.holds(); vip != 0 || lan != 0 {
		t.Fatalf("returned lb1 holds %d VIPs, %d floating addresses; want none", vip, lan)
	}
	checkLong("after lb1 came back", 2000)
	waitFor(t, "lb1's conntrackd holding lb2's flows", func() bool {
		return n1.ha().FlowSync.External >= idle+streaming
	})

	// A planned handover: not one request fails.
	pr = startProber(p)
	time.Sleep(500 * time.Millisecond) // some requests before the handover
	out, err := n2.lbd("ha", "release")
	if err != nil {
		t.Fatalf("lbd ha release: %v\n%s", err, out)
	}
	t.Logf("lbd ha release: %s", strings.TrimSpace(out))
	n1.waitRole("MASTER")
	n2.waitRole("BACKUP")
	checkLong("after lbd ha release", 3000)
	ok, fail, errs = pr.halt()
	if fail != 0 || ok == 0 {
		t.Fatalf("requests during lbd ha release: %d answered, %d failed %v; want 0 failed", ok, fail, errs)
	}
	t.Logf("requests during lbd ha release: %d answered, 0 failed", ok)

	// A broken [ha] is refused with its place; the pair runs on untouched.
	before := n1.ha()
	n1.writeConfig(strings.Replace(haConfig(1, snat, 150), "priority = 150", "priority = 300", 1))
	out, err = n1.lbd("reload")
	if err == nil || !strings.Contains(out, n1.cfgPath+":5:12: ha.priority: 300 out of range") {
		t.Fatalf("broken [ha] reload: err %v, output:\n%s", err, out)
	}
	after := n1.ha()
	if after.Role != "MASTER" || after.Keepalived.PID != before.Keepalived.PID || after.Conntrackd.PID != before.Conntrackd.PID || after.Priority != 150 {
		t.Fatalf("refused reload touched the pair: before %+v after %+v", before, after)
	}
	checkLong("after the refused reload", 4000)
	close(stopStream)
	streamWG.Wait()
	streamErrs.Range(func(k, v any) bool {
		t.Errorf("streaming connection %v: %v", k, v)
		return true
	})
	for i, l := range conns {
		t.Logf("connection %d: %d exchanges with %s, byte-exact", i, l.n.Load(), l.backend)
	}
}

// TestHAPairGivesWay: a node that cannot serve hands over. The master whose
// health checks all fail (here: its own checks blocked; the backends are
// fine for the peer) goes to FAULT and the backup takes over; a link down
// does the same through keepalived's track_interface; a keepalived that
// dies is restarted by lbd; a reload that changes [ha] reloads keepalived
// in place (same process, new priority).
func TestHAPairGivesWay(t *testing.T) {
	health := "  [service.health]\n  type = \"tcp\"\n  interval = \"200ms\"\n  timeout = \"150ms\"\n  rise = 1\n  fall = 1\n"
	p, n1, n2 := startHAPair(t, func(idx int) string { return haConfigWith(idx, true, haPrio(idx), health) })

	// lb1's own health checks fail: no service has a live backend there.
	block := "table inet lbdtest { chain out { type filter hook output priority 0; tcp dport 7000 drop; }; }"
	if err := p.Exec(n1.name(), "nft", block); err != nil {
		t.Fatal(err)
	}
	n1.waitRole("FAULT")
	n2.waitRole("MASTER")
	if h := n1.ha(); h.Serving || !strings.Contains(h.NotServing, "no service has a live backend") ||
		!strings.Contains(h.LastTransition, "MASTER -> FAULT: cannot serve: no service has a live backend") {
		t.Fatalf("lb1 after its checks failed: %+v", h)
	}
	if vip, lan := n2.holds(); vip != 2 || lan != 2 {
		t.Fatalf("lb2 took over but holds %d VIPs, %d floating addresses", vip, lan)
	}
	for i := 0; i < 10; i++ {
		if _, err := p.Ask("client", lab.VIPv4+":7000"); err != nil {
			t.Fatalf("connection %d through lb2: %v", i, err)
		}
	}
	// lb1 can serve again: it comes back as backup (no preemption).
	if err := p.Exec(n1.name(), "nft", "delete", "table", "inet", "lbdtest"); err != nil {
		t.Fatal(err)
	}
	n1.waitRole("BACKUP")
	if h := n1.ha(); !h.Serving || h.NotServing != "" {
		t.Fatalf("lb1 after its checks passed: %+v", h)
	}

	// lb2's backend link goes down: keepalived's track_interface.
	if err := p.Exec(n2.name(), "ip", "link", "set", "lan", "down"); err != nil {
		t.Fatal(err)
	}
	n2.waitRole("FAULT")
	n1.waitRole("MASTER")
	if h := n2.ha(); !strings.Contains(h.LastTransition, "a tracked link") {
		t.Errorf("lb2 transition: %q", h.LastTransition)
	}
	if err := p.Exec(n2.name(), "ip", "link", "set", "lan", "up"); err != nil {
		t.Fatal(err)
	}
	n2.waitRole("BACKUP")

	// keepalived dies on the master: lbd starts it again. The backup
	// takes over meanwhile; the restarted one comes back as backup.
	before := n1.ha().Keepalived
	if err := exec.Command("kill", "-9", fmt.Sprint(before.PID)).Run(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "lbd restarting keepalived", func() bool {
		k := n1.ha().Keepalived
		return k.Restarts > before.Restarts && k.PID != 0 && k.PID != before.PID
	})
	n2.waitRole("MASTER")
	n1.waitRole("BACKUP")
	if _, err := p.Ask("client", lab.VIPv4+":7000"); err != nil {
		t.Fatalf("connection after keepalived restart: %v", err)
	}

	// A reload that changes [ha]: keepalived reloads its file in place.
	before = n1.ha().Keepalived
	n1.writeConfig(haConfigWith(1, true, 120, health))
	if out, err := n1.lbd("reload"); err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	conf, err := os.ReadFile(filepath.Join(n1.dir, "ha", "keepalived.conf"))
	if err != nil || !strings.Contains(string(conf), "priority 120\n") {
		t.Fatalf("keepalived.conf after reload: %v\n%s", err, conf)
	}
	if h := n1.ha(); h.Priority != 120 || h.Keepalived.PID != before.PID || h.Keepalived.Restarts != before.Restarts {
		t.Fatalf("after the [ha] reload: priority %d, keepalived %+v (before %+v); want 120 and the same process", h.Priority, h.Keepalived, before)
	}
	if r := n2.ha().Role; r != "MASTER" {
		t.Fatalf("lb2 is %s after lb1's reload; want MASTER", r)
	}

	// [ha] removed from lb2 (the master): keepalived and conntrackd stop,
	// taking the VIP and lan_address with them, and lb1 takes over.
	single := haConfigWith(2, true, 100, health)
	n2.writeConfig(single[strings.Index(single, "[[service]]"):])
	if out, err := n2.lbd("reload"); err != nil {
		t.Fatalf("reload without [ha]: %v\n%s", err, out)
	}
	n1.waitRole("MASTER")
	resp, err := control.Call(n2.socket, control.Request{Command: "status"}, 10*time.Second)
	if err != nil || resp.Status.HA != nil {
		t.Fatalf("lb2 status after [ha] went: %v %+v", err, resp.Status.HA)
	}
	if vip, lan := n2.holds(); vip != 0 || lan != 0 {
		t.Fatalf("lb2 without [ha] holds %d VIPs, %d floating addresses; want none", vip, lan)
	}
	waitFor(t, "keepalived and conntrackd gone from lb2", func() bool {
		out, err := exec.Command("ip", "netns", "pids", p.NS(n2.name())).Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, pid := range strings.Fields(string(out)) {
			comm, _ := os.ReadFile("/proc/" + pid + "/comm")
			if c := strings.TrimSpace(string(comm)); c == "keepalived" || c == "conntrackd" {
				return false
			}
		}
		return true
	})
}

// TestHAPairStartsLate: a node whose sync link has no address of its own
// yet (a NIC or DHCP still coming up) serves its data plane, says why the
// pair is not running, and starts it by itself once the address is there,
// without a reload.
func TestHAPairStartsLate(t *testing.T) {
	p, n1, _ := newHAPair(t, func(idx int) string { return haConfig(idx, true, haPrio(idx)) })
	if err := p.Exec(n1.name(), "ip", "addr", "del", lab.PairLAN1+"/24", "dev", "lan"); err != nil {
		t.Fatal(err)
	}
	n1.start()
	h := n1.ha()
	if h.Role != "UNKNOWN" || !strings.Contains(h.NotServing, "has no address of its own on the subnet of sync_peer") {
		t.Fatalf("lb1 without a sync address: %+v", h)
	}
	if out, err := p.Output(n1.name(), "nft", "list", "table", "inet", "lbd"); err != nil || !strings.Contains(out, "chain svc_echo") {
		t.Fatalf("lb1 has no data plane: %v\n%s", err, out)
	}
	if err := p.Exec(n1.name(), "ip", "addr", "add", lab.PairLAN1+"/24", "dev", "lan"); err != nil {
		t.Fatal(err)
	}
	n1.waitRole("MASTER")
	if h := n1.ha(); h.NotServing != "" || h.Keepalived.PID == 0 {
		t.Fatalf("lb1 after the address came: %+v", h)
	}
	if _, err := p.Ask("client", lab.VIPv4+":7000"); err != nil {
		t.Fatalf("connection through lb1: %v", err)
	}

	// Alone, lb1 cannot hand over: release says so and lb1 takes the
	// VIPs back.
	out, err := n1.lbd("ha", "release", "--timeout", "2s")
	if err == nil || !strings.Contains(out, "did not become master within 2s; this node takes the VIPs back") {
		t.Fatalf("release without a peer: err %v\n%s", err, out)
	}
	n1.waitRole("MASTER")
	if h := n1.ha(); h.Released || !h.Serving {
		t.Fatalf("lb1 after a failed release: %+v", h)
	}
	if _, err := p.Ask("client", lab.VIPv4+":7000"); err != nil {
		t.Fatalf("connection through lb1 after the failed release: %v", err)
	}
}
