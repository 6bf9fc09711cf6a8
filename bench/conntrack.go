package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"lbd/internal/lab"
	"lbd/lb"
)

// Section 3c: the cost of lbd's conntrack poll. For lc/wlc and
// max_connections lbd dumps the conntrack table once a second
// (lb.ActiveConnections); this measures one such dump's wall time and
// allocations with 100,000 entries (10,000 in quick mode). The entries are
// real flows through lbd: UDP datagrams from distinct source ports to two
// UDP services, each one conntrack entry lbd translated, so the dump
// parses and counts exactly what it would in production.

// ConntrackRun is one measurement of the poll.
type ConntrackRun struct {
	Entries     int     `json:"entries"`      // conntrack entries in the lb namespace
	Counted     int     `json:"counted"`      // flows ActiveConnections attributed to the services
	Polls       int     `json:"polls"`        // dumps measured
	WallMS      float64 `json:"wall_ms"`      // median per dump
	WallMaxMS   float64 `json:"wall_max_ms"`  // slowest dump
	AllocsPerOp float64 `json:"allocs_op"`    // heap allocations per dump
	MBPerOp     float64 `json:"mb_allocated"` // bytes allocated per dump, MB
}

const ctBasePort = 5300

func (o *opts) conntrackEntries() int {
	if o.quick {
		return 10000
	}
	return 100000
}

// conntrackPoll is section 3c.
func (o *opts) conntrackPoll(res *Results) {
	n := o.conntrackEntries()
	o.logf("conntrack poll: %d entries", n)
	s, err := lab.NewStandardClients("bench", 1, 1)
	if err != nil {
		o.fail(res, "conntrack: lab: %v", err)
		return
	}
	setCurrent(s)
	dir, err := os.MkdirTemp(o.work, "ct-")
	if err != nil {
		s.Close()
		o.fail(res, "conntrack: %v", err)
		return
	}
	defer func() { setCurrent(nil); s.Close(); _ = os.RemoveAll(dir) }()
	// Two UDP services, so that n/2 source ports per service suffice; each
	// on its own backend port, or the two flows from one source port would
	// have the same reply tuple and NAT would have to remap one (a first
	// try with one port stopped at 64,512 entries).
	var cfg strings.Builder
	var svcs []lb.Service
	for i := 0; i < 2; i++ {
		fmt.Fprintf(&cfg, "[[service]]\nname = \"u%d\"\nvip = %q\nport = %d\nprotocol = \"udp\"\nscheduler = \"rr\"\n"+
			"[[service.backend]]\naddress = \"%s:%d\"\n\n", i, lab.VIPv4, ctBasePort+i, lab.BackendV4(1), ctBasePort+i)
		svcs = append(svcs, lb.Service{Name: fmt.Sprintf("u%d", i), VIP: netip.MustParseAddr(lab.VIPv4),
			Proto: unix.IPPROTO_UDP, Port: uint16(ctBasePort + i)})
	}
	r := &rig{o: o, s: s, dir: dir, kind: LBD, cfgPath: filepath.Join(dir, "lb.toml"), socket: filepath.Join(dir, "lbd.sock")}
	if err := os.WriteFile(r.cfgPath, []byte(cfg.String()), 0o644); err != nil {
		o.fail(res, "conntrack: %v", err)
		return
	}
	if err := r.startLBD(); err != nil {
		o.fail(res, "conntrack: %v", err)
		return
	}
	defer r.killLBD()
	// Unreplied UDP entries expire after 30 s by default; the sysctl is
	// per namespace, so this lab's entries can live for the measurement.
	_ = s.Exec("lb", "sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=600")
	// be1 drops the datagrams quietly (no ICMP unreachable per packet).
	rules := filepath.Join(dir, "drop.nft")
	_ = os.WriteFile(rules, []byte(fmt.Sprintf("table inet benchdrop {\n chain in {\n  type filter hook input priority 0;\n  udp dport { %d, %d } drop\n }\n}\n", ctBasePort, ctBasePort+1)), 0o644)
	if err := s.Exec(s.Backend(1), "nft", "-f", rules); err != nil {
		o.fail(res, "conntrack: drop rule in be1: %v", err)
		return
	}
	t := time.Now()
	if err := s.InNS(s.Client(0), func() error { return sendUDPFlows(n) }); err != nil {
		o.fail(res, "conntrack: sending flows: %v", err)
		return
	}
	entries := 0
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out, err := s.Output("lb", "cat", "/proc/sys/net/netfilter/nf_conntrack_count")
		if err == nil {
			entries, _ = strconv.Atoi(strings.TrimSpace(out))
			if entries >= n {
				break
			}
		}
	}
	o.logf("  %d flows sent in %s; %d conntrack entries in the lb namespace", n, time.Since(t).Round(time.Millisecond), entries)
	polls := 10
	if o.quick {
		polls = 3
	}
	run := ConntrackRun{Entries: entries, Polls: polls}
	err = s.InNS("lb", func() error {
		// One warm-up dump, as the daemon's steady state has had many.
		if _, err := lb.ActiveConnections(svcs); err != nil {
			return err
		}
		var walls []float64
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		for i := 0; i < polls; i++ {
			t := time.Now()
			got, err := lb.ActiveConnections(svcs)
			walls = append(walls, float64(time.Since(t))/1e6)
			if err != nil {
				return err
			}
			run.Counted = 0
			for _, c := range got {
				run.Counted += c
			}
		}
		runtime.ReadMemStats(&m1)
		run.WallMS = median(walls)
		_, run.WallMaxMS = minMax(walls)
		run.AllocsPerOp = float64(m1.Mallocs-m0.Mallocs) / float64(polls)
		run.MBPerOp = float64(m1.TotalAlloc-m0.TotalAlloc) / float64(polls) / (1 << 20)
		return nil
	})
	if err != nil {
		o.fail(res, "conntrack: ActiveConnections: %v", err)
		return
	}
	o.logf("  ActiveConnections: %.1f ms median (max %.1f) per dump, %.0f allocs, %.1f MB allocated; counted %d flows",
		run.WallMS, run.WallMaxMS, run.AllocsPerOp, run.MBPerOp, run.Counted)
	res.Conntrack = append(res.Conntrack, run)
}

// sendUDPFlows sends one datagram from each of n distinct (source port,
// service) pairs to the VIP: n conntrack entries through lbd's DNAT.
func sendUDPFlows(n int) error {
	src := netip.MustParseAddr(lab.ClientAddr(0)).As4()
	vip := netip.MustParseAddr(lab.VIPv4).As4()
	for i := 0; i < n; i++ {
		svc, sport := i%2, 10000+i/2
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		err = unix.Bind(fd, &unix.SockaddrInet4{Addr: src, Port: sport})
		if err == nil {
			err = unix.Sendto(fd, []byte("x"), 0, &unix.SockaddrInet4{Addr: vip, Port: ctBasePort + svc})
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("flow %d (source port %d): %w", i, sport, err)
		}
	}
	return nil
}
