package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"lbd/internal/lab"
)

// FleetRun is section 6: three lbd appliances behind a BIRD router with
// ECMP and BFD (internal/lab.Fleet), the same lab as e2e TestFleetBGP.
type FleetRun struct {
	// CPS by number of announcing appliances, one value per repetition.
	CPS       map[int][]float64 `json:"cps"`
	CPSErrors map[int]int       `json:"cps_errors"`
	// One entry per node loss (link down: only BFD can tell).
	DetectMS  []float64 `json:"bfd_detect_ms"`
	FailedNew []int     `json:"failed_new"`     // new connections that failed
	SlowNew   []int     `json:"slow_new"`       // new connections that took over 500 ms (a SYN retransmit)
	Attempted []int     `json:"attempted_new"`  // new connections tried meanwhile
	Held      []int     `json:"held_elsewhere"` // connections held on the other appliances
	Survived  []int     `json:"survived"`       // of those, still working after the rehash
}

const fleetVIP = "203.0.113.10"

// fleetNodeConfig is appliance i's lb.toml: VIP:80 rr over the three nginx
// backends, TCP-checked, announced to the router with BFD.
func fleetNodeConfig(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[bgp]\nasn = %d\nrouter_id = %q\nsource_address = %q\nannounce_delay = \"1s\"\n", lab.FleetASN, lab.NodeFrontV4(i), lab.NodeFrontV4(i))
	fmt.Fprintf(&b, "[[bgp.neighbor]]\naddress = %q\nasn = %d\nbfd = true\n", lab.RouterFrontV4, lab.RouterASN)
	fmt.Fprintf(&b, "[[service]]\nname = \"web\"\nvip = %q\nport = %d\nscheduler = %q\n", fleetVIP, httpPort, lbdScheduler)
	b.WriteString("[service.health]\ntype = \"tcp\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n")
	for be := 1; be <= nBackends; be++ {
		fmt.Fprintf(&b, "[[service.backend]]\naddress = \"%s:%d\"\n", lab.BackendV4(be), httpPort)
	}
	return b.String()
}

type fleetRig struct {
	o   *opts
	f   *lab.Fleet
	dir string
}

func (o *opts) newFleetRig() (*fleetRig, error) {
	if _, err := exec.LookPath("bird"); err != nil {
		return nil, fmt.Errorf("bird (Debian bird2) not installed")
	}
	dir, err := os.MkdirTemp(o.work, "fleet-")
	if err != nil {
		return nil, err
	}
	f, err := lab.NewFleet("bfl", dir, 3, nBackends)
	if err != nil {
		return nil, err
	}
	setCurrent(f)
	r := &fleetRig{o: o, f: f, dir: dir}
	fail := func(err error) (*fleetRig, error) { r.Close(); return nil, err }
	for i := 1; i <= nBackends; i++ {
		b := f.Backend(i)
		conf := filepath.Join(dir, "nginx-"+b+".conf")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, b, httpPort)), 0o644); err != nil {
			return fail(err)
		}
		cmd := f.Command(b, "nginx", "-e", filepath.Join(dir, "nginx-"+b+".err"), "-c", conf)
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err := cmd.Start(); err != nil {
			return fail(fmt.Errorf("nginx in %s: %w", b, err))
		}
		s := &lab.Standard{Lab: f.Lab}
		if err := s.WaitTCP(b, fmt.Sprintf("127.0.0.1:%d", httpPort)); err != nil {
			return fail(err)
		}
	}
	if err := f.StartRouter(); err != nil {
		return fail(err)
	}
	for i := 1; i <= 3; i++ {
		nd := filepath.Join(dir, f.Node(i))
		if err := os.MkdirAll(nd, 0o755); err != nil {
			return fail(err)
		}
		cfg := filepath.Join(nd, "lb.toml")
		if err := os.WriteFile(cfg, []byte(fleetNodeConfig(i)), 0o644); err != nil {
			return fail(err)
		}
		logf, err := os.Create(filepath.Join(nd, "lbd.log"))
		if err != nil {
			return fail(err)
		}
		cmd := f.Command(f.Node(i), o.lbd, "run", "--config", cfg, "--socket", r.socket(i))
		cmd.Env = append(os.Environ(), "LBD_STATE_DIR="+filepath.Join(nd, "state"), "NOTIFY_SOCKET=")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return fail(err)
		}
	}
	if _, err := r.waitHops(1, 2, 3); err != nil {
		return fail(err)
	}
	return r, nil
}

func (r *fleetRig) Close() {
	setCurrent(nil)
	r.f.Close()
}

func (r *fleetRig) socket(i int) string {
	return filepath.Join(r.dir, r.f.Node(i), "lbd.sock")
}

func (r *fleetRig) lbd(i int, args ...string) error {
	out, err := exec.Command(r.o.lbd, append(args, "--socket", r.socket(i))...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lbd %s on lb%d: %v: %s", args[0], i, err, out)
	}
	return nil
}

// waitHops polls the router (every 5 ms) until the VIP's next hops are
// exactly the given nodes and says how long that took.
func (r *fleetRig) waitHops(nodes ...int) (time.Duration, error) {
	var want []string
	for _, i := range nodes {
		want = append(want, lab.NodeFrontV4(i))
	}
	slices.Sort(want)
	start := time.Now()
	var got []string
	for time.Since(start) < 60*time.Second {
		got, _ = r.f.NextHops(fleetVIP)
		if slices.Equal(got, want) {
			return time.Since(start), nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, fmt.Errorf("router's next hops %v, want %v after 60s", got, want)
}

// announceOn makes exactly the first n appliances announce the VIP.
func (r *fleetRig) announceOn(n int) error {
	for i := 1; i <= 3; i++ {
		cmd := "undrain-node"
		if i > n {
			cmd = "drain-node"
		}
		// Both answer an error when there is nothing to do; the next hops
		// below are what counts.
		_ = r.lbd(i, cmd)
	}
	var nodes []int
	for i := 1; i <= n; i++ {
		nodes = append(nodes, i)
	}
	_, err := r.waitHops(nodes...)
	return err
}

// fleet is section 6. Every CPS run gets a fresh lab, like section 1: at
// thousands of connections per second, TIME_WAIT entries in the
// appliances' conntrack tables and on the backends pile up for minutes and
// would slow the runs that follow. The node losses share one more lab.
func (o *opts) fleet(res *Results) {
	fr := &FleetRun{CPS: map[int][]float64{}, CPSErrors: map[int]int{}}
	res.Fleet = fr
	for rep := 0; rep < o.reps && o.ctx.Err() == nil; rep++ {
		for _, n := range []int{1, 2, 3} {
			w, err := o.fleetCPS(n)
			if err != nil {
				o.fail(res, "fleet CPS with %d appliances: %v", n, err)
				continue
			}
			o.logf("fleet rep %d: %d appliances %.0f CPS (%d errors)", rep+1, n, w.RPS, w.Errors)
			fr.CPS[n] = append(fr.CPS[n], w.RPS)
			fr.CPSErrors[n] += w.Errors
		}
	}
	if o.ctx.Err() != nil {
		return
	}
	r, err := o.newFleetRig()
	if err != nil {
		o.fail(res, "fleet: %v", err)
		return
	}
	defer r.Close()
	losses := 5
	if o.quick {
		losses = 2
	}
	for k := 0; k < losses && o.ctx.Err() == nil; k++ {
		victim := k%3 + 1
		if err := r.loseNode(victim, fr); err != nil {
			o.fail(res, "fleet node loss %d: %v", k+1, err)
		}
	}
}

// fleetCPS measures CPS through the first n appliances of a fresh lab.
func (o *opts) fleetCPS(n int) (WrkResult, error) {
	r, err := o.newFleetRig()
	if err != nil {
		return WrkResult{}, err
	}
	defer r.Close()
	if err := r.announceOn(n); err != nil {
		return WrkResult{}, err
	}
	return r.wrkClose(o.dur)
}

// wrkClose is CPS through the router: three wrk processes (21
// connections each, Connection: close) from one client address; the
// router's L4 hash spreads them.
func (r *fleetRig) wrkClose(d time.Duration) (WrkResult, error) {
	var cmds [][]string
	for i := 0; i < 3; i++ {
		cmds = append(cmds, []string{"wrk", "-t1", fmt.Sprintf("-c%d", wrkConnections/3), fmt.Sprintf("-d%ds", int(d.Seconds())), "--timeout", "3s",
			"-H", "Connection: close", fmt.Sprintf("http://%s:%d/", fleetVIP, httpPort)})
	}
	outs, err := wrkAll(func(args ...string) (string, error) { return r.f.Output("client", args...) }, cmds)
	var res WrkResult
	for _, w := range outs {
		// Socket errors only, as the fleet section always counted.
		res.RPS += w.rps
		res.Errors += w.socketErrors
	}
	return res, err
}

// loseNode takes one appliance's link down (no Cease, no TCP reset can
// reach the router: only BFD notices) under a light load of new
// connections, with connections held through the other appliances, then
// brings it back.
func (r *fleetRig) loseNode(victim int, fr *FleetRun) error {
	if _, err := r.waitHops(1, 2, 3); err != nil {
		return err
	}
	held, err := r.holdElsewhere(victim, 20)
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	// Open loop: a new connection every 5 ms whatever the earlier ones
	// do, so every connection whose SYN the router sends to the dead
	// appliance during the detection window is counted.
	var tried, failed, slow atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			tried.Add(1)
			wg.Add(1)
			go func(k int) {
				defer wg.Done()
				began := time.Now()
				err := r.f.InNS("client", func() error {
					d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(lab.FleetClientAddr(k % lab.FleetClients))}}
					c, err := d.Dial("tcp", net.JoinHostPort(fleetVIP, strconv.Itoa(httpPort)))
					if err != nil {
						return err
					}
					defer c.Close()
					return httpOn(c, "close")
				})
				if err != nil {
					failed.Add(1)
				} else if time.Since(began) > 500*time.Millisecond {
					slow.Add(1)
				}
			}(k)
		}
	}()
	time.Sleep(500 * time.Millisecond)
	if err := r.f.NodeLink(victim, false); err != nil {
		close(stop)
		wg.Wait()
		return err
	}
	var others []int
	for i := 1; i <= 3; i++ {
		if i != victim {
			others = append(others, i)
		}
	}
	d, err := r.waitHops(others...)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	if err != nil {
		return err
	}
	survived := 0
	for _, c := range held {
		if httpOn(c, "keep-alive") == nil {
			survived++
		}
	}
	r.o.logf("fleet: lb%d lost: router dropped it after %s; of %d new connections %d failed, %d took over 500 ms; %d of %d held elsewhere survived",
		victim, d.Round(time.Millisecond), tried.Load(), failed.Load(), slow.Load(), survived, len(held))
	fr.DetectMS = append(fr.DetectMS, float64(d.Microseconds())/1000)
	fr.FailedNew = append(fr.FailedNew, int(failed.Load()))
	fr.SlowNew = append(fr.SlowNew, int(slow.Load()))
	fr.Attempted = append(fr.Attempted, int(tried.Load()))
	fr.Held = append(fr.Held, len(held))
	fr.Survived = append(fr.Survived, survived)
	if err := r.f.NodeLink(victim, true); err != nil {
		return err
	}
	_, err = r.waitHops(1, 2, 3)
	return err
}

// holdElsewhere opens keep-alive connections until n of them go through
// appliances other than victim (the backend sees the appliance's address).
func (r *fleetRig) holdElsewhere(victim, n int) ([]net.Conn, error) {
	var out []net.Conn
	for k := 0; k < 20*n && len(out) < n; k++ {
		var c net.Conn
		err := r.f.InNS("client", func() error {
			d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(lab.FleetClientAddr(k % lab.FleetClients))}}
			var err error
			c, err = d.Dial("tcp", net.JoinHostPort(fleetVIP, strconv.Itoa(httpPort)))
			return err
		})
		if err != nil {
			return out, err
		}
		if err := httpOn(c, "keep-alive"); err != nil {
			c.Close()
			return out, err
		}
		// Only connections whose appliance is known for sure (its
		// conntrack table holds the flow) and is not the victim.
		if via := r.viaNode(c); via == 0 || via == victim {
			c.Close()
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

// viaNode finds which appliance carries a connection from the conntrack
// tables: the one that holds the flow's client port.
func (r *fleetRig) viaNode(c net.Conn) int {
	port := strconv.Itoa(c.LocalAddr().(*net.TCPAddr).Port)
	found := 0
	for i := 1; i <= 3; i++ {
		out, err := r.f.Output(r.f.Node(i), "conntrack", "-L", "-p", "tcp", "--sport", port, "--dst", fleetVIP)
		if err != nil {
			return 0
		}
		if strings.Contains(out, "sport="+port+" ") {
			if found != 0 {
				return 0 // the same client port on two appliances: unsure
			}
			found = i
		}
	}
	return found
}

// httpOn does one GET on an open connection and reads the answer (nginx:
// a short fixed body with Content-Length).
func httpOn(c net.Conn, conn string) error {
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: bench\r\nConnection: %s\r\n\r\n", conn); err != nil {
		return err
	}
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(status, "HTTP/1.1 200") {
		return fmt.Errorf("bad answer %q", status)
	}
	length := 0
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		l = strings.TrimSpace(l)
		if l == "" {
			break
		}
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	_, err = io.CopyN(io.Discard, br, int64(length))
	return err
}

// fleetReport renders section 6.
func fleetReport(r *Results) string {
	fr := r.Fleet
	if fr == nil {
		return ""
	}
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("\n## 6. Fleet: BGP + ECMP + BFD (issue 12)\n\n")
	p("Three lbd appliances, each with its own BIRD 2, peer with a BIRD router (eBGP, BFD 100 ms x 5,\n" +
		"`merge paths on` into kernel multipath, `fib_multipath_hash_policy = 1`); the client sits\n" +
		"behind the router, the three nginx backends on one segment shared by the appliances\n" +
		"(internal/lab.Fleet, the lab of e2e TestFleetBGP). All namespaces share this machine's cores.\n\n")
	p("| announcing appliances | CPS median (min–max) | vs 1 appliance | wrk errors |\n|---|---|---|---|\n")
	base := median(fr.CPS[1])
	for _, n := range []int{1, 2, 3} {
		ratio := "–"
		if base > 0 && len(fr.CPS[n]) > 0 {
			ratio = fmt.Sprintf("%.2fx", median(fr.CPS[n])/base)
		}
		p("| %d | %s | %s | %d |\n", n, cell(fr.CPS[n]), ratio, fr.CPSErrors[n])
	}
	p("\nEach run on a freshly built lab; the appliances beyond n are withdrawn with `lbd drain-node`\n"+
		"before the run, and the 1, 2, 3 runs alternate within each repetition. Not linear here: the appliances, the router,\n"+
		"wrk and nginx all run on the same %s cores, so a second appliance adds no CPU, only another\n"+
		"conntrack table and softirq path; on separate machines each appliance brings its own cores.\n\n", r.Machine["cores"])
	if len(fr.DetectMS) > 0 {
		lo, hi := minMax(fr.DetectMS)
		p("Node loss (its link to the router down, so only BFD can tell), %d times, rotating the victim:\n\n", len(fr.DetectMS))
		p("| | median | all |\n|---|---|---|\n")
		p("| BFD detection: link down until the router's route lost the node | %.0f ms | %.0f–%.0f ms |\n", median(fr.DetectMS), lo, hi)
		var failed, tried []float64
		var shares []float64
		for i := range fr.DetectMS {
			failed = append(failed, float64(fr.FailedNew[i]))
			tried = append(tried, float64(fr.Attempted[i]))
			if fr.Held[i] > 0 {
				shares = append(shares, float64(fr.Survived[i])/float64(fr.Held[i]))
			}
		}
		var slowN []float64
		for _, x := range fr.SlowNew {
			slowN = append(slowN, float64(x))
		}
		p("| connections started during a node loss (open loop, one every 5 ms, 3 s timeouts) that failed | %.0f of %.0f | %s |\n", median(failed), median(tried), ints(fr.FailedNew))
		p("| of those, delayed over 500 ms (the SYN went to the dead appliance; TCP's retransmit 1 s later found the new route) | %.0f | %s |\n", median(slowN), ints(fr.SlowNew))
		p("| other appliances' established connections that survived the rehash | %.0f%% | %s of %s |\n", median(shares)*100, ints(fr.Survived), ints(fr.Held))
		p("\nA new connection whose SYN the router sends to the dead appliance inside the detection window\n" +
			"is not lost: TCP retransmits the SYN after 1 s, when the router has moved, so it is delayed by\n" +
			"about a second. One fails when its handshake got through the appliance just before it died.\n" +
			"Connections held by the appliances that stay are moved too when the router's\n" +
			"hash-threshold multipath redraws its ranges from three to two next hops; each moved one gets\n" +
			"a reset from the appliance it lands on. A resilient next-hop group on the router keeps them\n" +
			"(README, Running a fleet).\n")
	}
	return b.String()
}

func ints(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}
