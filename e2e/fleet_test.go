package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"lbd/appliance/control"
	"lbd/appliance/status"
	"lbd/internal/lab"
)

// VIPs of the fleet test (on no interface; the router learns them by BGP).
const (
	fleetWeb    = "203.0.113.10"   // rr over the three backends, line-echo :7000
	fleetAPI    = "203.0.113.11"   // HTTP :80, checked over HTTP
	fleetSticky = "203.0.113.12"   // sh: one client, one backend, whichever node
	fleetWeb6   = "2001:db8:3::10" // IPv6, announced over the IPv6 sessions
)

// fleetNode is one appliance: lbd (which runs its own BIRD) in namespace lbN.
type fleetNode struct {
	i                    int
	dir, cfgPath, socket string
	cmd                  *exec.Cmd
	logf                 *os.File
}

type fleetEnv struct {
	t     *testing.T
	f     *lab.Fleet
	nodes []*fleetNode
}

// fleetConfig is node i's lb.toml: the same services on every node; only
// the router ID and source address differ. bgpExtra goes into [bgp].
func fleetConfig(i int, bgpExtra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `[bgp]
asn = %d
router_id = %q
source_address = %q
announce_delay = "1s"
%s
[[bgp.neighbor]]
address = %q
asn = %d
bfd = true
hold_time = "9s"

[[bgp.neighbor]]
address = %q
asn = %d
bfd = true
`, lab.FleetASN, lab.NodeFrontV4(i), lab.NodeFrontV4(i), bgpExtra, lab.RouterFrontV4, lab.RouterASN, lab.RouterFrontV6, lab.RouterASN)
	svc := func(name, vip string, port int, sched, health string, v6 bool) {
		fmt.Fprintf(&b, "\n[[service]]\nname = %q\nvip = %q\nport = %d\nscheduler = %q\n", name, vip, port, sched)
		fmt.Fprintf(&b, "  [service.health]\n  %s\n  interval = \"500ms\"\n  timeout = \"400ms\"\n  rise = 1\n  fall = 1\n", health)
		for be := 1; be <= 3; be++ {
			addr := fmt.Sprintf("%s:%d", lab.BackendV4(be), port)
			if v6 {
				addr = fmt.Sprintf("[%s]:%d", lab.BackendV6(be), port)
			}
			fmt.Fprintf(&b, "  [[service.backend]]\n  address = %q\n", addr)
		}
	}
	svc("web", fleetWeb, 7000, "rr", `type = "tcp"`, false)
	svc("api", fleetAPI, 80, "rr", "type = \"http\"\n  path = \"/healthz\"", false)
	svc("sticky", fleetSticky, 7000, "sh", `type = "tcp"`, false)
	svc("web6", fleetWeb6, 7000, "rr", `type = "tcp"`, true)
	return b.String()
}

func newFleetEnv(t *testing.T, nodes int) *fleetEnv {
	t.Helper()
	needRoot(t)
	for _, tool := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s (Debian bird2, in TEST_DEBS) is needed: %v", tool, err)
		}
	}
	_, ls := binaries(t)
	labSeq++
	dir := t.TempDir()
	f, err := lab.NewFleet(fmt.Sprintf("fl%d", labSeq), dir, nodes, 3)
	if err != nil {
		t.Fatal(err)
	}
	e := &fleetEnv{t: t, f: f}
	t.Cleanup(func() {
		for _, n := range e.nodes {
			e.stop(n, true)
			if t.Failed() && n.logf != nil {
				if b, err := os.ReadFile(n.logf.Name()); err == nil {
					t.Logf("lb%d log:\n%s", n.i, b)
				}
			}
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "router-bird.log")); err == nil {
				t.Logf("router bird log (tail):\n%s", tail(string(b), 60))
			}
		}
		f.Close()
	})
	if err := f.StartBackends(ls); err != nil {
		t.Fatal(err)
	}
	if err := f.StartRouter(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= nodes; i++ {
		nd := filepath.Join(dir, f.Node(i))
		if err := os.MkdirAll(nd, 0o755); err != nil {
			t.Fatal(err)
		}
		n := &fleetNode{i: i, dir: nd, cfgPath: filepath.Join(nd, "lb.toml"), socket: filepath.Join(nd, "lbd.sock")}
		e.nodes = append(e.nodes, n)
		e.write(n, fleetConfig(i, ""))
		e.start(n)
	}
	return e
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (e *fleetEnv) write(n *fleetNode, text string) {
	e.t.Helper()
	if err := os.WriteFile(n.cfgPath, []byte(text), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *fleetEnv) start(n *fleetNode) {
	e.t.Helper()
	bin, _ := binaries(e.t)
	if n.logf == nil {
		f, err := os.Create(filepath.Join(n.dir, "lbd.log"))
		if err != nil {
			e.t.Fatal(err)
		}
		n.logf = f
	}
	cmd := e.f.Command(e.f.Node(n.i), bin, "run", "--config", n.cfgPath, "--socket", n.socket)
	cmd.Env = append(os.Environ(), "LBD_STATE_DIR="+filepath.Join(n.dir, "state"), "NOTIFY_SOCKET=")
	cmd.Stdout, cmd.Stderr = n.logf, n.logf
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	n.cmd = cmd
	for i := 0; i < 400; i++ {
		if _, err := control.Call(n.socket, control.Request{Command: "status"}, time.Second); err == nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	e.t.Fatalf("lbd on lb%d did not come up", n.i)
}

// stop ends a node's lbd (SIGKILL when kill, else SIGTERM and exit 0).
func (e *fleetEnv) stop(n *fleetNode, kill bool) {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	cmd := n.cmd
	n.cmd = nil
	if kill {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return
	}
	if err := terminate(cmd, 2*time.Minute); err != nil {
		e.t.Errorf("lb%d lbd on SIGTERM: %v", n.i, err)
	}
}

func (e *fleetEnv) status(n *fleetNode) status.Snapshot {
	e.t.Helper()
	resp, err := control.Call(n.socket, control.Request{Command: "status"}, 10*time.Second)
	if err != nil || resp.Status == nil {
		e.t.Fatalf("lb%d status: %v", n.i, err)
	}
	return *resp.Status
}

func (e *fleetEnv) lbd(n *fleetNode, args ...string) (string, error) {
	bin, _ := binaries(e.t)
	out, err := exec.Command(bin, append(args, "--socket", n.socket)...).CombinedOutput()
	return string(out), err
}

// waitHops polls the router until its route to vip has exactly the next
// hops of the given nodes (a generous deadline, not a timing assertion).
func (e *fleetEnv) waitHops(vip string, nodes ...int) time.Duration {
	e.t.Helper()
	var want []string
	for _, i := range nodes {
		if strings.Contains(vip, ":") {
			want = append(want, lab.NodeFrontV6(i))
		} else {
			want = append(want, lab.NodeFrontV4(i))
		}
	}
	slices.Sort(want)
	start := time.Now()
	var got []string
	var err error
	for time.Since(start) < 90*time.Second {
		got, err = e.f.NextHops(vip)
		if err == nil && slices.Equal(got, want) {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, _ := e.f.Birdc("show", "protocols")
	e.t.Fatalf("router's next hops for %s: %v (err %v), want %v\nrouter bird:\n%s", vip, got, err, want, out)
	return 0
}

// ask makes one new connection from client address c to vip:port and
// returns the backend's name and the node that carried it (the masquerade
// address the backend saw).
func (e *fleetEnv) ask(c int, addr string) (backend string, node int, err error) {
	conn, err := e.f.DialFrom("client", lab.FleetClientAddr(c), addr, 5*time.Second)
	if err != nil {
		return "", 0, err
	}
	defer conn.Close()
	ans, err := lab.AskOn(conn, "hi")
	if err != nil {
		return "", 0, err
	}
	return lab.Name(ans), nodeOf(ans), nil
}

// nodeOf reads the node from a labserver answer "beI 192.0.2.N:port line".
func nodeOf(ans string) int {
	f := strings.Fields(ans)
	if len(f) < 2 {
		return 0
	}
	host, _, err := net.SplitHostPort(f[1])
	if err != nil {
		return 0
	}
	for i := 1; i <= 9; i++ {
		if host == lab.NodeLanV4(i) || host == fmt.Sprintf("2001:db8:2::%d", i) {
			return i
		}
	}
	return 0
}

func vipPort(vip string, port int) string { return net.JoinHostPort(vip, strconv.Itoa(port)) }

func servicePackets(s status.Snapshot, name string) uint64 {
	for _, svc := range s.Services {
		if svc.Name == name {
			return svc.Packets
		}
	}
	return 0
}

func vipState(s status.Snapshot, vip string) status.VIPAnnounce {
	if s.BGP != nil {
		for _, v := range s.BGP.VIPs {
			if v.VIP == vip {
				return v
			}
		}
	}
	return status.VIPAnnounce{VIP: vip, Reason: "absent from status"}
}

// TestFleetBGP: three appliances behind a BIRD router with ECMP and BFD.
func TestFleetBGP(t *testing.T) {
	e := newFleetEnv(t, 3)
	all := []int{1, 2, 3}
	var took []string
	for _, vip := range []string{fleetWeb, fleetAPI, fleetSticky, fleetWeb6} {
		d := e.waitHops(vip, all...)
		took = append(took, fmt.Sprintf("%s %s", vip, d.Round(time.Millisecond)))
	}
	t.Logf("router holds every VIP with three next hops (waited: %s)", strings.Join(took, ", "))

	t.Run("status", func(t *testing.T) {
		for _, n := range e.nodes {
			s := e.status(n)
			if s.BGP == nil || !s.BGP.Bird.Running || len(s.BGP.Neighbors) != 2 {
				t.Fatalf("lb%d bgp status: %+v", n.i, s.BGP)
			}
			for _, nb := range s.BGP.Neighbors {
				if !nb.Up || nb.State != "Established" {
					t.Errorf("lb%d neighbor %s: %+v", n.i, nb.Address, nb)
				}
			}
			if nb := s.BGP.Neighbors[0]; nb.BFD != "Up" {
				t.Errorf("lb%d BFD to %s: %q, want Up", n.i, nb.Address, nb.BFD)
			}
			for _, v := range s.BGP.VIPs {
				if !v.Announced {
					t.Errorf("lb%d: %s not announced: %s", n.i, v.VIP, v.Reason)
				}
			}
		}
		out, err := e.lbd(e.nodes[0], "status")
		if err != nil || !strings.Contains(out, "Established bfd Up") || !strings.Contains(out, "vip 203.0.113.10 (web) announced") {
			t.Errorf("lbd status does not show the fleet: %v\n%s", err, out)
		}
	})

	t.Run("new connections spread over the three appliances", func(t *testing.T) {
		before := make([]uint64, 3)
		for i, n := range e.nodes {
			before[i] = servicePackets(e.status(n), "web")
		}
		byNode := map[int]int{}
		for k := 0; k < 90; k++ {
			_, node, err := e.ask(k%lab.FleetClients, vipPort(fleetWeb, 7000))
			if err != nil {
				t.Fatalf("connection %d: %v", k, err)
			}
			byNode[node]++
		}
		t.Logf("90 connections by node (masquerade address seen by the backends): %v", byNode)
		for i, n := range e.nodes {
			if byNode[n.i] == 0 {
				t.Errorf("no connection went through lb%d: %v", n.i, byNode)
			}
			if got := servicePackets(e.status(n), "web") - before[i]; got == 0 {
				t.Errorf("lb%d's web counter did not move", n.i)
			}
		}
		conn, err := e.f.Dial("client", "tcp", vipPort(fleetWeb6, 7000), 5*time.Second)
		if err != nil {
			t.Fatalf("IPv6 VIP: %v", err)
		}
		ans, err := lab.AskOn(conn, "hi")
		conn.Close()
		if err != nil || !strings.HasPrefix(ans, "be") {
			t.Fatalf("IPv6 VIP answer %q: %v", ans, err)
		}
	})

	t.Run("sh picks the same backend through every appliance", func(t *testing.T) {
		for c := 0; c < 3; c++ {
			backends, nodes := map[string]int{}, map[int]int{}
			for k := 0; k < 30; k++ {
				be, node, err := e.ask(c, vipPort(fleetSticky, 7000))
				if err != nil {
					t.Fatalf("client %d connection %d: %v", c, k, err)
				}
				backends[be]++
				nodes[node]++
			}
			t.Logf("client %s: backends %v through nodes %v", lab.FleetClientAddr(c), backends, nodes)
			if len(backends) != 1 {
				t.Errorf("client %s reached several backends: %v", lab.FleetClientAddr(c), backends)
			}
			if len(nodes) < 2 {
				t.Errorf("client %s's connections all took one node %v; the test proves nothing", lab.FleetClientAddr(c), nodes)
			}
		}
	})

	t.Run("a node that loses a service's backends withdraws only that VIP", func(t *testing.T) {
		// lb2's own health checks to port 80 fail (a rule in a test
		// table of its namespace, not lbd's); the other nodes see the
		// backends up.
		n2 := e.nodes[1]
		if err := e.f.Exec(e.f.Node(2), "nft", "add table inet fleettest; add chain inet fleettest out { type filter hook output priority 0; }; add rule inet fleettest out ip daddr 192.0.2.0/24 tcp dport 80 drop"); err != nil {
			t.Fatal(err)
		}
		e.waitHops(fleetAPI, 1, 3)
		for _, vip := range []string{fleetWeb, fleetSticky, fleetWeb6} {
			if hops, _ := e.f.NextHops(vip); len(hops) != 3 {
				t.Errorf("%s lost a next hop too: %v", vip, hops)
			}
		}
		if v := vipState(e.status(n2), fleetAPI); v.Announced || v.Reason != status.WithdrawnNoBackend {
			t.Errorf("lb2's status for %s: %+v", fleetAPI, v)
		}
		for k := 0; k < 20; k++ {
			conn, err := e.f.DialFrom("client", lab.FleetClientAddr(k%lab.FleetClients), vipPort(fleetAPI, 80), 5*time.Second)
			if err != nil {
				t.Fatalf("api connection %d while lb2 withdrew it: %v", k, err)
			}
			conn.Close()
		}
		if err := e.f.Exec(e.f.Node(2), "nft", "delete table inet fleettest"); err != nil {
			t.Fatal(err)
		}
		e.waitHops(fleetAPI, all...)
	})

	t.Run("a broken [bgp] is refused with its position and announcements stay", func(t *testing.T) {
		n1 := e.nodes[0]
		good, _ := os.ReadFile(n1.cfgPath)
		broken := strings.Replace(string(good), fmt.Sprintf("asn = %d\nrouter_id", lab.FleetASN), "asn = 0\nrouter_id", 1)
		if broken == string(good) {
			t.Fatal("test bug: the config was not broken")
		}
		e.write(n1, broken)
		out, err := e.lbd(n1, "reload")
		if err == nil || !strings.Contains(out, n1.cfgPath+":2:7: bgp.asn: 0 out of range") {
			t.Errorf("reload of a broken [bgp]: err %v, output:\n%s", err, out)
		}
		s := e.status(n1)
		if s.BGP == nil || !s.BGP.Bird.Running || s.BGP.Bird.Restarts != 0 {
			t.Errorf("bird after the refused reload: %+v", s.BGP)
		}
		for _, vip := range []string{fleetWeb, fleetAPI, fleetSticky, fleetWeb6} {
			if hops, _ := e.f.NextHops(vip); len(hops) != 3 {
				t.Errorf("%s next hops after the refused reload: %v", vip, hops)
			}
		}
		e.write(n1, string(good))
		if out, err := e.lbd(n1, "reload"); err != nil {
			t.Fatalf("reload of the good config: %v\n%s", err, out)
		}
	})

	t.Run("a new VIP is announced without restarting or reconfiguring BIRD", func(t *testing.T) {
		// lbd changes what BIRD announces through kernel table 4210:
		// the reload neither restarts BIRD nor rewrites or re-reads its
		// config. (Session times are logged, not asserted: on a loaded
		// machine a BFD session may flap for reasons of its own.)
		type birdRun struct {
			pid   int
			conf  string
			mtime time.Time
			since []string
		}
		snapshot := func(n *fleetNode) birdRun {
			s := e.status(n)
			r := birdRun{pid: s.BGP.Bird.PID}
			for _, nb := range s.BGP.Neighbors {
				r.since = append(r.since, nb.Since)
			}
			path := filepath.Join(n.dir, "bird.conf")
			b, err := os.ReadFile(path)
			fi, err2 := os.Stat(path)
			if err != nil || err2 != nil {
				t.Fatalf("lb%d bird.conf: %v %v", n.i, err, err2)
			}
			r.conf, r.mtime = string(b), fi.ModTime()
			return r
		}
		runs := map[int]birdRun{}
		for _, n := range e.nodes {
			runs[n.i] = snapshot(n)
			extra := "\n[[service]]\nname = \"new\"\nvip = \"203.0.113.13\"\nport = 7000\n  [[service.backend]]\n  address = \"192.0.2.11:7000\"\n"
			e.write(n, fleetConfig(n.i, "")+extra)
			if out, err := e.lbd(n, "reload"); err != nil {
				t.Fatalf("lb%d reload: %v\n%s", n.i, err, out)
			}
		}
		e.waitHops("203.0.113.13", all...)
		for _, n := range e.nodes {
			r, was := snapshot(n), runs[n.i]
			if r.pid != was.pid || r.conf != was.conf || !r.mtime.Equal(was.mtime) {
				t.Errorf("lb%d: bird restarted or its config rewritten: pid %d -> %d, bird.conf modified %v -> %v", n.i, was.pid, r.pid, was.mtime, r.mtime)
			}
			if !slices.Equal(r.since, was.since) {
				t.Logf("lb%d: sessions re-established meanwhile (%v -> %v); see bird's log for why", n.i, was.since, r.since)
			}
			e.write(n, fleetConfig(n.i, ""))
			if out, err := e.lbd(n, "reload"); err != nil {
				t.Fatalf("lb%d reload: %v\n%s", n.i, err, out)
			}
		}
		e.waitHops("203.0.113.13")
	})

	t.Run("a BIRD that dies is restarted", func(t *testing.T) {
		n2 := e.nodes[1]
		old := e.status(n2).BGP.Bird
		if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(90 * time.Second)
		for {
			b := e.status(n2).BGP.Bird
			if b.Running && b.PID != old.PID && b.Restarts == old.Restarts+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("bird not restarted: %+v", b)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, vip := range []string{fleetWeb, fleetAPI, fleetSticky, fleetWeb6} {
			e.waitHops(vip, all...)
		}
	})

	t.Run("drain-node moves new connections away and fails none", func(t *testing.T) {
		n3 := e.nodes[2]
		// Connections through lb3 before the drain, held open.
		var held []net.Conn
		for k := 0; k < 40 && len(held) < 5; k++ {
			conn, err := e.f.DialFrom("client", lab.FleetClientAddr(k%lab.FleetClients), vipPort(fleetWeb, 7000), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			ans, err := lab.AskOn(conn, "hold")
			if err == nil && nodeOf(ans) == 3 {
				held = append(held, conn)
			} else {
				conn.Close()
			}
		}
		if len(held) == 0 {
			t.Fatal("no connection went through lb3")
		}
		stopLoad := e.load(t, vipPort(fleetWeb, 7000))
		out, err := e.lbd(n3, "drain-node", "--timeout", "60s")
		t.Logf("lbd drain-node: %s", strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("drain-node: %v", err)
		}
		for _, vip := range []string{fleetWeb, fleetAPI, fleetSticky, fleetWeb6} {
			e.waitHops(vip, 1, 2)
		}
		// The maintenance itself: lb3 goes away. A new connection the
		// router still sent to it would now fail.
		e.link(3, "down")
		time.Sleep(time.Second)
		st := stopLoad()
		t.Logf("connections during the drain: %s", st)
		if st.newFailed != 0 || st.ok == 0 {
			t.Errorf("new connections during drain-node: %s; want none failed", st)
		}
		s := e.status(n3)
		if s.BGP == nil || !s.BGP.Draining || vipState(s, fleetWeb).Reason != status.WithdrawnDraining {
			t.Errorf("lb3 status does not show the drain: %+v", s.BGP)
		}
		if out, _ := e.lbd(n3, "status"); !strings.Contains(out, "NODE DRAINING") {
			t.Errorf("lbd status does not say draining:\n%s", out)
		}
		// Held flows moved with the route: another node does not know
		// them and answers with a reset (its fleet rule), not silence.
		before := e.resetCount(1) + e.resetCount(2)
		resets := 0
		for _, c := range held {
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := lab.AskOn(c, "after drain"); err != nil && isReset(err) {
				resets++
			} else {
				t.Logf("held connection after the drain: %v", err)
			}
			c.Close()
		}
		t.Logf("%d of %d connections held through lb3 ended with a reset", resets, len(held))
		if resets != len(held) {
			t.Errorf("%d of %d held connections got a reset", resets, len(held))
		}
		if sent := e.resetCount(1) + e.resetCount(2) - before; sent < resets {
			t.Errorf("lb1 and lb2 reset %d unknown flows, want at least %d (the resets must come from the appliances)", sent, resets)
		}
		e.link(3, "up")
		if out, err := e.lbd(n3, "undrain-node"); err != nil {
			t.Fatalf("undrain-node: %v\n%s", err, out)
		}
		e.waitHops(fleetWeb, all...)
	})

	t.Run("SIGTERM withdraws first and fails no new connection", func(t *testing.T) {
		n3 := e.nodes[2]
		stopLoad := e.load(t, vipPort(fleetWeb, 7000))
		began := time.Now()
		e.stop(n3, false) // fails the test unless lbd exits 0
		t.Logf("lbd on lb3 exited %s after SIGTERM", time.Since(began).Round(time.Millisecond))
		e.waitHops(fleetWeb, 1, 2)
		e.link(3, "down") // the reboot
		time.Sleep(time.Second)
		st := stopLoad()
		t.Logf("connections while lb3 stopped: %s", st)
		if st.newFailed != 0 || st.ok == 0 {
			t.Errorf("new connections while lb3 stopped: %s; want none failed", st)
		}
		e.link(3, "up")
		e.start(n3)
		for _, vip := range []string{fleetWeb, fleetAPI, fleetSticky, fleetWeb6} {
			e.waitHops(vip, all...)
		}
	})

	t.Run("a node that dies hard is dropped by BFD", func(t *testing.T) {
		n1 := e.nodes[0]
		birdPid := e.status(n1).BGP.Bird.PID
		// Connections held through the other nodes: how many survive the
		// router's rehash is measured (Linux's hash-threshold multipath
		// moves some of them), not asserted.
		var others []net.Conn
		for k := 0; k < 60 && len(others) < 20; k++ {
			conn, err := e.f.DialFrom("client", lab.FleetClientAddr(k%lab.FleetClients), vipPort(fleetWeb, 7000), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if ans, err := lab.AskOn(conn, "hold"); err == nil && nodeOf(ans) != 1 {
				others = append(others, conn)
			} else {
				conn.Close()
			}
		}
		// The link goes first, so no BGP Cease or TCP reset can reach
		// the router: only BFD (or the hold timer) can notice.
		e.link(1, "down")
		_ = syscall.Kill(birdPid, syscall.SIGKILL)
		e.stop(n1, true)
		d := e.waitHops(fleetWeb, 2, 3)
		t.Logf("router dropped lb1 %s after its link went down (BFD 100ms x 5; hold time 9s)", d.Round(time.Millisecond))
		for _, vip := range []string{fleetAPI, fleetSticky, fleetWeb6} {
			e.waitHops(vip, 2, 3)
		}
		for k := 0; k < 30; k++ {
			if _, node, err := e.ask(k%lab.FleetClients, vipPort(fleetWeb, 7000)); err != nil || node == 1 {
				t.Errorf("new connection %d after lb1 died: node %d, %v", k, node, err)
			}
		}
		survived := 0
		for _, c := range others {
			if _, err := lab.AskOn(c, "after"); err == nil {
				survived++
			}
			c.Close()
		}
		t.Logf("%d of %d connections held through lb2 and lb3 survived the router's rehash", survived, len(others))
		// A zombie (state Z, not reaped yet) has stopped running.
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", birdPid)); len(st) > 0 && strings.Contains(string(st), "(bird)") && !strings.Contains(string(st), ") Z ") {
			t.Errorf("lb1's bird (pid %d) still runs: %s", birdPid, st)
		}
	})
}

// loadStats counts the connections of a load: ok, failed before they
// were established (a new connection refused or lost: what a drain must
// avoid), and broken after (an established flow moved by the router to a
// node that does not know it, which answers with a reset).
type loadStats struct{ ok, newFailed, moved int64 }

func (s loadStats) String() string {
	return fmt.Sprintf("%d ok, %d new connections failed, %d established flows moved by the router (reset)", s.ok, s.newFailed, s.moved)
}

// load makes new connections to addr, one every 10 ms from the client
// addresses in turn, until the returned function stops it.
func (e *fleetEnv) load(t *testing.T, addr string) func() loadStats {
	var ok, newFailed, moved atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			conn, err := e.f.DialFrom("client", lab.FleetClientAddr(k%lab.FleetClients), addr, 5*time.Second)
			if err != nil {
				newFailed.Add(1)
				t.Logf("new connection failed: %v", err)
				continue
			}
			if _, err := lab.AskOn(conn, "hi"); err != nil {
				moved.Add(1)
				t.Logf("established connection broken: %v", err)
			} else {
				ok.Add(1)
			}
			conn.Close()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return func() loadStats {
		close(stop)
		wg.Wait()
		return loadStats{ok.Load(), newFailed.Load(), moved.Load()}
	}
}

// resetCount sums node i's counters of the rule that resets TCP packets
// of unknown flows to a VIP.
func (e *fleetEnv) resetCount(i int) int {
	e.t.Helper()
	out, err := e.f.Output(e.f.Node(i), "nft", "list", "chain", "inet", "lbd", "prerouting")
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, m := range regexp.MustCompile(`dport @svc[46] counter packets (\d+)`).FindAllStringSubmatch(out, -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	return n
}

// link sets node i's link to the router up or down.
func (e *fleetEnv) link(i int, state string) {
	e.t.Helper()
	if err := e.f.NodeLink(i, state == "up"); err != nil {
		e.t.Fatal(err)
	}
}

// isReset reports a connection reset by the peer.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
