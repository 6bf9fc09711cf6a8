package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"lbd/appliance/control"
	"lbd/internal/lab"
)

// Contenders of the data-plane comparison.
const (
	Direct  = "direct"
	LBD     = "lbd"
	HAProxy = "haproxy"
	NFTLB   = "nftlb"
)

const (
	nBackends = 3
	httpPort  = 80
	iperfPort = 5201
	nftlbKey  = "lbd-bench"
)

// The schedulers the data-plane contenders run: like with like (issue 13:
// nftlb used to run "weight" against lbd's rr). Both rr, both snat.
const (
	lbdScheduler     = "rr"
	nftlbScheduler   = "rr"
	haproxyScheduler = "roundrobin"
)

// schedulers is what the report prints under "which schedulers ran".
func schedulers() map[string]string {
	return map[string]string{LBD: lbdScheduler + ", snat", NFTLB: nftlbScheduler + ", mode snat",
		HAProxy: haproxyScheduler + ", mode tcp", Direct: "none (client spreads over the backends)"}
}

// The lab that is up now, so that Ctrl-C can tear it down.
var (
	curMu  sync.Mutex
	curLab interface{ Close() }
)

func setCurrent(l interface{ Close() }) {
	curMu.Lock()
	curLab = l
	curMu.Unlock()
}

// closeCurrent tears down the lab that is up (signal handler).
func closeCurrent() {
	curMu.Lock()
	l := curLab
	curLab = nil
	curMu.Unlock()
	if l != nil {
		l.Close()
	}
}

// rig is one fresh lab: client, lb, 3 backends with nginx and an iperf3
// server, and one contender in the middle.
type rig struct {
	o        *opts
	s        *lab.Standard
	dir      string
	kind     string
	nginx    map[int]*exec.Cmd
	lbd      *exec.Cmd
	lbdLog   string
	cfgPath  string
	socket   string
	cfgExtra string   // extra TOML appended to the lbd config
	env      []string // extra environment for lbd (LBD_DEBUG=1 for the flip log)
}

// rigSpec says what to put in the middle.
type rigSpec struct {
	kind   string
	others int    // lbd: extra services besides the measured one
	health string // lbd: [service.health] body for the measured service
}

func newRig(o *opts, spec rigSpec) (*rig, error) {
	if err := o.ctx.Err(); err != nil {
		return nil, err
	}
	s, err := lab.NewStandardClients("bench", nBackends, 1)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(o.work, "rig-")
	if err != nil {
		s.Close()
		return nil, err
	}
	r := &rig{o: o, s: s, dir: dir, kind: spec.kind, nginx: map[int]*exec.Cmd{}}
	setCurrent(s)
	if err := r.setup(spec); err != nil {
		r.Close()
		return nil, fmt.Errorf("%s lab: %w", spec.kind, err)
	}
	return r, nil
}

func (r *rig) Close() {
	setCurrent(nil)
	r.s.Close()
	_ = os.RemoveAll(r.dir)
}

func (r *rig) setup(spec rigSpec) error {
	// The lab's lb namespace joins its ports with two bridges; with
	// br_netfilter (built into some kernels, on by default in every new
	// namespace) each bridged packet would also run the IP hooks from the
	// bridge layer, for every contender, direct included. An appliance
	// routes between NICs and has no bridge: turn that off in the lb
	// namespace (a per-namespace sysctl; absent without br_netfilter).
	for _, k := range []string{"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables", "net.bridge.bridge-nf-call-arptables"} {
		_ = r.s.Exec("lb", "sysctl", "-q", "-w", k+"=0")
	}
	for i := 1; i <= nBackends; i++ {
		if err := r.startNginx(i); err != nil {
			return err
		}
	}
	ip := r.s.Command(r.s.Backend(1), "iperf3", "-s", "-p", fmt.Sprint(iperfPort))
	ip.Stdout, ip.Stderr = io.Discard, io.Discard
	if err := ip.Start(); err != nil {
		return err
	}
	if err := r.s.WaitTCP(r.s.Backend(1), fmt.Sprintf("127.0.0.1:%d", iperfPort)); err != nil {
		return err
	}
	switch spec.kind {
	case Direct:
	case LBD:
		r.cfgPath = filepath.Join(r.dir, "lb.toml")
		r.socket = filepath.Join(r.dir, "lbd.sock")
		if err := os.WriteFile(r.cfgPath, []byte(lbdConfig(spec.others, spec.health, nil)), 0o644); err != nil {
			return err
		}
		if err := r.startLBD(); err != nil {
			return err
		}
	case HAProxy:
		if err := r.startHAProxy(); err != nil {
			return err
		}
	case NFTLB:
		if err := r.startNFTLB(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown contender %q", spec.kind)
	}
	// One request through the middle before measuring.
	var last error
	for i := 0; i < 50; i++ {
		if _, last = r.get(r.httpTargets()[0]); last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no answer through %s: %w", spec.kind, last)
}

// httpTargets are the addresses the client sends HTTP to: the backends
// themselves for direct, else the VIP.
func (r *rig) httpTargets() []string {
	if r.kind == Direct {
		var t []string
		for i := 1; i <= nBackends; i++ {
			t = append(t, fmt.Sprintf("%s:%d", lab.BackendV4(i), httpPort))
		}
		return t
	}
	return []string{fmt.Sprintf("%s:%d", lab.VIPv4, httpPort)}
}

func (r *rig) iperfTarget() string {
	if r.kind == Direct {
		return lab.BackendV4(1)
	}
	return lab.VIPv4
}

// get does one request from the client namespace.
func (r *rig) get(addr string) (string, error) {
	var be string
	err := r.s.InNS(r.s.Client(0), func() error {
		var err error
		be, err = oneRequest(addr, 2*time.Second)
		return err
	})
	return be, err
}

const nginxConf = `worker_processes 1;
master_process off;
daemon off;
pid %[1]s/nginx-%[2]s.pid;
error_log %[1]s/nginx-%[2]s.err warn;
events { worker_connections 16384; multi_accept on; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp-%[2]s;
  proxy_temp_path %[1]s/tmp-%[2]s;
  fastcgi_temp_path %[1]s/tmp-%[2]s;
  uwsgi_temp_path %[1]s/tmp-%[2]s;
  scgi_temp_path %[1]s/tmp-%[2]s;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  default_type text/plain;
  server {
    listen %[3]d backlog=4096;
    location / { return 200 "%[2]s\n"; }
  }
}
`

// startNginx (re)starts backend i's HTTP server: nginx, one worker, a
// fixed 4-byte answer naming the backend.
func (r *rig) startNginx(i int) error {
	b := r.s.Backend(i)
	conf := filepath.Join(r.dir, "nginx-"+b+".conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, r.dir, b, httpPort)), 0o644); err != nil {
		return err
	}
	cmd := r.s.Command(b, "nginx", "-e", filepath.Join(r.dir, "nginx-"+b+".err"), "-c", conf)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("nginx in %s: %w", b, err)
	}
	r.nginx[i] = cmd
	return r.s.WaitTCP(b, fmt.Sprintf("127.0.0.1:%d", httpPort))
}

// stopNginx kills backend i's HTTP server (its port closes at once).
func (r *rig) stopNginx(i int) {
	if c := r.nginx[i]; c != nil && c.Process != nil {
		_ = c.Process.Kill()
		_, _ = c.Process.Wait()
	}
	delete(r.nginx, i)
}

// lbdConfig is the measured service (VIP:80, rr, snat, 3 backends), the
// iperf3 service (VIP:5201 -> be1), and `others` more services of 8
// backends each on other VIP:port pairs of the documentation ranges.
// weights, when set, gives the HTTP backends' weights.
func lbdConfig(others int, health string, weights []int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[[service]]\nname = \"web\"\nvip = %q\nport = %d\nscheduler = %q\nsnat = true\n", lab.VIPv4, httpPort, lbdScheduler)
	if health != "" {
		fmt.Fprintf(&b, "[service.health]\n%s\n", health)
	}
	for i := 1; i <= nBackends; i++ {
		w := 1
		if i <= len(weights) {
			w = weights[i-1]
		}
		fmt.Fprintf(&b, "[[service.backend]]\naddress = \"%s:%d\"\nweight = %d\n", lab.BackendV4(i), httpPort, w)
	}
	fmt.Fprintf(&b, "\n[[service]]\nname = \"iperf\"\nvip = %q\nport = %d\nscheduler = \"rr\"\nsnat = true\n[[service.backend]]\naddress = \"%s:%d\"\n",
		lab.VIPv4, iperfPort, lab.BackendV4(1), iperfPort)
	writeOthers(&b, others, -1)
	return b.String()
}

// writeOthers appends n services x 8 backends: VIPs 203.0.113.20..219
// with 100 ports each for the first 20,000, then 198.51.100.20..99 with
// 1,000 ports each (up to 100,000 services in the documentation ranges).
// changed, when >= 0, names one service whose last backend gets weight 2
// (the "one service changes" reload).
func writeOthers(b *strings.Builder, n, changed int) { writeServices(b, n, changed, false) }

// mixedSchedulers are the four stateless schedulers the "mixed"
// row cycles through (sh and mh carry prime slot tables).
var mixedSchedulers = []string{"rr", "random", "sh", "mh"}

// writeServices is writeOthers; mixed cycles the services' schedulers
// through mixedSchedulers instead of rr only.
func writeServices(b *strings.Builder, n, changed int, mixed bool) {
	for i := 0; i < n; i++ {
		vip, port := otherEndpoint(i)
		sched := "rr"
		if mixed {
			sched = mixedSchedulers[i%len(mixedSchedulers)]
		}
		fmt.Fprintf(b, "\n[[service]]\nname = \"s%d\"\nvip = %q\nport = %d\nscheduler = %q\n", i, vip, port, sched)
		for j := 0; j < 8; j++ {
			w := 1
			if i == changed && j == 7 {
				w = 2
			}
			fmt.Fprintf(b, "[[service.backend]]\naddress = \"192.0.2.%d:8080\"\nweight = %d\n", 100+j, w)
		}
	}
}

// otherEndpoint is the VIP and port of generated service i.
func otherEndpoint(i int) (string, int) {
	if i < 20000 {
		return fmt.Sprintf("203.0.113.%d", 20+i/100), 10000 + i%100
	}
	j := i - 20000
	return fmt.Sprintf("198.51.100.%d", 20+j/1000), 20000 + j%1000
}

// startLBD runs lbd in the lb namespace and waits until its control socket
// answers (which it does only after the first apply).
func (r *rig) startLBD() error {
	if r.lbdLog == "" {
		r.lbdLog = filepath.Join(r.dir, "lbd.log")
	}
	f, err := os.OpenFile(r.lbdLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := r.s.Command("lb", r.o.lbd, "run", "--config", r.cfgPath, "--socket", r.socket)
	cmd.Env = append(os.Environ(), "LBD_STATE_DIR="+filepath.Join(r.dir, "state"), "NOTIFY_SOCKET=")
	cmd.Env = append(cmd.Env, r.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return err
	}
	r.lbd = cmd
	return r.waitLBD(r.o.startLimit)
}

func (r *rig) waitLBD(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		// ping answers as soon as the first apply is done and costs
		// nothing; status at 10,000 services is a 44 MB document that took
		// 1-3 s to build and was counted as part of the cold start.
		if _, err := control.Call(r.socket, control.Request{Command: "ping"}, 30*time.Second); err == nil {
			return nil
		}
		if r.lbd.ProcessState != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	b, _ := os.ReadFile(r.lbdLog)
	return fmt.Errorf("lbd did not answer on its control socket within %v; its log: %q", limit, b)
}

func (r *rig) killLBD() {
	if r.lbd != nil && r.lbd.Process != nil {
		_ = r.lbd.Process.Kill()
		_, _ = r.lbd.Process.Wait()
	}
}

// reload asks lbd to reload and fails when it refuses.
func (r *rig) reload() error {
	resp, err := control.Call(r.socket, control.Request{Command: "reload"}, 60*time.Second)
	if err != nil {
		return err
	}
	if !resp.OK {
		return fmt.Errorf("reload refused: %s %v", resp.Message, resp.Errors)
	}
	return nil
}

const haproxyConf = `global
  maxconn 8000
  nbthread 2
  pidfile %[1]s/haproxy.pid
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend web
  bind %[2]s:%[3]d
  default_backend web
backend web
  balance %[7]s
%[4]sfrontend iperf
  bind %[2]s:%[5]d
  default_backend iperf
backend iperf
  server be1 %[6]s:%[5]d
`

// startHAProxy puts the VIP on the lb's loopback and runs HAProxy in TCP
// mode there (two threads, one per core).
func (r *rig) startHAProxy() error {
	if err := r.s.Exec("lb", "ip", "addr", "add", lab.VIPv4+"/32", "dev", "lo"); err != nil {
		return err
	}
	var servers strings.Builder
	for i := 1; i <= nBackends; i++ {
		fmt.Fprintf(&servers, "  server be%d %s:%d\n", i, lab.BackendV4(i), httpPort)
	}
	conf := filepath.Join(r.dir, "haproxy.cfg")
	text := fmt.Sprintf(haproxyConf, r.dir, lab.VIPv4, httpPort, servers.String(), iperfPort, lab.BackendV4(1), haproxyScheduler)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return err
	}
	cmd := r.s.Command("lb", "haproxy", "-db", "-f", conf)
	logf, err := os.Create(filepath.Join(r.dir, "haproxy.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	return r.s.WaitTCP("lb", fmt.Sprintf("%s:%d", lab.VIPv4, httpPort))
}

// startNFTLB runs nftlb in the lb namespace and posts the same farms
// through its REST API: nftlbScheduler (rr, as lbd), snat mode.
func (r *rig) startNFTLB() error {
	cmd := r.s.Command("lb", "nftlb", "-k", nftlbKey, "-H", "127.0.0.1", "-P", "5555")
	logf, err := os.Create(filepath.Join(r.dir, "nftlb.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := r.s.WaitTCP("lb", "127.0.0.1:5555"); err != nil {
		return err
	}
	var bes []string
	for i := 1; i <= nBackends; i++ {
		bes = append(bes, fmt.Sprintf(`{"name":"be%d","ip-addr":"%s","port":"%d","weight":"1","state":"up"}`, i, lab.BackendV4(i), httpPort))
	}
	farms := fmt.Sprintf(`{"farms":[`+
		`{"name":"web","family":"ipv4","virtual-addr":"%[1]s","virtual-ports":"%[2]d","protocol":"tcp","mode":"snat","scheduler":"%[6]s","state":"up","backends":[%[3]s]},`+
		`{"name":"iperf","family":"ipv4","virtual-addr":"%[1]s","virtual-ports":"%[4]d","protocol":"tcp","mode":"snat","scheduler":"%[6]s","state":"up","backends":[{"name":"be1","ip-addr":"%[5]s","port":"%[4]d","weight":"1","state":"up"}]}]}`,
		lab.VIPv4, httpPort, strings.Join(bes, ","), iperfPort, lab.BackendV4(1), nftlbScheduler)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return r.s.Dial("lb", network, addr, 5*time.Second)
		}}}
	req, _ := http.NewRequest("POST", "http://127.0.0.1:5555/farms", strings.NewReader(farms))
	req.Header.Set("Key", nftlbKey)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("nftlb API: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(bufio.NewReader(resp.Body))
	if resp.StatusCode != 200 || !strings.Contains(string(body), "success") {
		return fmt.Errorf("nftlb API: %s %s", resp.Status, body)
	}
	return nil
}
