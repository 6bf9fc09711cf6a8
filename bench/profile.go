package main

// `bench profile` (issue 13): where the data plane's CPU goes per request
// for direct routing, lbd and nftlb under the bench's own wrk loads, in the
// bench's own rigs. For each contender and load (cps: a new connection per
// request; ka: keep-alive) it records `perf record -a -g -e cpu-clock`
// while wrk runs, keeps the samples that belong to the measured traffic
// (wrk, nginx, the rig's lbd, and softirq work done from the idle loop or
// ksoftirqd), and prints CPU per request by kernel area. It also dumps
// each contender's ruleset and an nftrace of one connection (which chains
// and rules each packet walks), and, with -flowtable, measures keep-alive
// requests/s in one lbd rig with and without a software flowtable added
// beside lbd's table. bench/perf-dataplane.sh runs it.

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// perfFreq is the cpu-clock sampling rate: one sample = 1/perfFreq s of CPU.
const perfFreq = 2000

// ProfileRun is one contender under one load.
type ProfileRun struct {
	Contender string  `json:"contender"`
	Load      string  `json:"load"` // cps | ka | ka+ft
	Rep       int     `json:"rep"`
	RPS       float64 `json:"rps"`
	Errors    int     `json:"errors"`
	Seconds   float64 `json:"seconds"`
	Requests  float64 `json:"requests"` // RPS x seconds
	Samples   int     `json:"samples"`  // all samples, every process on the machine
	Kept      int     `json:"kept"`     // samples of the measured traffic
	Idle      int     `json:"idle"`     // idle-loop samples (no softirq under them)
	// Incl counts kept samples whose stack holds a frame of each area
	// (a sample counts once per area); Self by leaf symbol.
	Incl    map[string]int `json:"incl"`
	Self    map[string]int `json:"self"`
	LoadAvg string         `json:"loadavg"`
}

// usPer is CPU microseconds per request for n samples.
func (p ProfileRun) usPer(n int) float64 {
	if p.Requests == 0 {
		return 0
	}
	return float64(n) / perfFreq / p.Requests * 1e6
}

// areas are the inclusive buckets: a sample is in an area when any frame
// of its stack matches. Ordered for the report.
var areas = []struct {
	name string
	re   *regexp.Regexp
}{
	{"softirq (all)", regexp.MustCompile(`^(handle_softirqs|__do_softirq|net_rx_action)$`)},
	{"nf_hook_slow (all netfilter hooks)", regexp.MustCompile(`^nf_hook_slow$`)},
	{"nft_do_chain (rule walks)", regexp.MustCompile(`^nft_do_chain`)},
	{"nf_conntrack_in", regexp.MustCompile(`^nf_conntrack_in$`)},
	{"conntrack confirm", regexp.MustCompile(`^(ipv4_confirm|nf_confirm|__nf_conntrack_confirm)$`)},
	{"nf_nat (hooks)", regexp.MustCompile(`^(nf_nat_inet_fn|nf_nat_ipv4_(in|out|local_fn|fn|pre_routing|local_in)|nf_nat_ipv4_out)$`)},
	{"nf_nat_setup_info (new flows)", regexp.MustCompile(`^nf_nat_setup_info$`)},
	{"masquerade", regexp.MustCompile(`^(nf_nat_masquerade_ipv4|nft_masq_ipv4_eval|nft_masq_eval)$`)},
	{"conntrack destroy/gc", regexp.MustCompile(`^(nf_ct_delete|destroy_conntrack|nf_conntrack_destroy|nf_ct_destroy|gc_worker|nf_ct_gc_expired|nf_conntrack_free|nf_ct_tmpl_free|__nf_ct_delete_from_lists)$`)},
	{"ctnetlink events", regexp.MustCompile(`^(nf_ct_deliver_cached_events|nf_conntrack_eventmask_report|ctnetlink_conntrack_event|nf_ct_ecache_work|ecache_work)$`)},
	{"conntrack acct", regexp.MustCompile(`^(nf_ct_acct_add|nf_ct_acct_update|__nf_ct_acct_update|nf_ct_acct_ext_add)$`)},
	{"lbd process", regexp.MustCompile(`^LBDPROC$`)}, // the rig's lbd, or the ctevents reader
	{"flowtable", regexp.MustCompile(`^(nf_flow_offload_ip_hook|nf_flow_offload_inet_hook|flow_offload_add|nft_flow_offload_eval|nf_flow_)`)},
	{"bridge", regexp.MustCompile(`^br_handle_frame$`)},
	{"ip_forward", regexp.MustCompile(`^ip_forward$`)},
	{"tcp_v4_rcv (endpoints)", regexp.MustCompile(`^tcp_v4_rcv$`)},
	{"syscalls (wrk, nginx)", regexp.MustCompile(`^(do_syscall_64|entry_SYSCALL_64)`)},
}

// idleFrame marks the idle loop; softirqFrame marks network work done there.
var (
	idleFrame    = regexp.MustCompile(`^(do_idle|cpu_startup_entry|default_idle|pv_native_safe_halt)$`)
	softirqFrame = regexp.MustCompile(`^(handle_softirqs|__do_softirq|net_rx_action|run_ksoftirqd)$`)
)

type profOpts struct {
	*opts
	contenders []string
	loads      []string
	outDir     string
	flowtable  int // repetitions of the flowtable off/on pair (0: none)
	variants   int // repetitions of the lbd daemon variants (0: none)
	readers    int // repetitions of the DESTROY reader comparison (0: none)
	brnf       int // repetitions of the br_netfilter on/off pairs (0: none)
	perfDur    time.Duration
}

func profileMain(args []string) int {
	fs := flag.NewFlagSet("profile", flag.ExitOnError)
	o := &opts{}
	po := &profOpts{opts: o}
	cs := fs.String("contenders", "direct,lbd,nftlb", "contenders to profile")
	ls := fs.String("loads", "cps,ka", "loads: cps (new connection per request), ka (keep-alive)")
	fs.IntVar(&o.reps, "reps", 1, "repetitions of the contenders x loads round")
	fs.DurationVar(&o.dur, "dur", 8*time.Second, "wrk run length (perf records the middle, -dur minus 2 s)")
	fs.StringVar(&o.lbd, "lbd", "out/lbd", "lbd binary")
	fs.StringVar(&po.outDir, "out", "out/profile", "directory for perf data, reports, rulesets and the summary")
	fs.IntVar(&po.flowtable, "flowtable", 0, "keep-alive with and without a software flowtable in one lbd rig, this many off/on pairs")
	fs.IntVar(&po.brnf, "brnf", 0, "per contender, one rig with net.bridge.bridge-nf-call-iptables 1 and 0 alternated under each load, this many pairs")
	fs.IntVar(&po.readers, "readers", 0, "CPS in one lbd rig with lbd killed: no conntrack DESTROY reader against lbd's reader alone (bench ctevents), this many rounds")
	fs.IntVar(&po.variants, "variants", 0, "the loads in one lbd rig with the daemon up, killed (its table stays), and killed with nf_conntrack_acct=0, this many rounds")
	_ = fs.Parse(args)
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench profile: needs root")
		return 1
	}
	if o.dur < 4*time.Second || o.dur > 60*time.Second {
		fmt.Fprintln(os.Stderr, "bench profile: -dur between 4s and 60s")
		return 2
	}
	po.perfDur = o.dur - 2*time.Second
	po.contenders = splitList(*cs)
	po.loads = splitList(*ls)
	var err error
	if o.lbd, err = filepath.Abs(o.lbd); err != nil {
		return 1
	}
	if err := os.MkdirAll(po.outDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "bench profile:", err)
		return 1
	}
	o.startLimit = 60 * time.Second
	stop, err := o.begin("lbd-profile-")
	if err != nil {
		return 1
	}
	defer stop()
	ctx := o.ctx

	var runs []ProfileRun
	dumped := map[string]bool{}
	for rep := 1; rep <= o.reps; rep++ {
		for _, load := range po.loads {
			for _, c := range po.contenders {
				if ctx.Err() != nil {
					break
				}
				r, err := newRig(o, rigSpec{kind: c})
				if err != nil {
					o.logf("PROBLEM: %s rig: %v", c, err)
					continue
				}
				if !dumped[c] {
					dumped[c] = true
					po.dumpRules(r)
				}
				p, err := po.profile(r, c, load, rep)
				r.Close()
				if err != nil {
					o.logf("PROBLEM: %s %s: %v", c, load, err)
					continue
				}
				runs = append(runs, p)
				o.logf("%s %s rep %d: %.0f req/s, %.1f us CPU per request (kept), load %s", c, load, rep, p.RPS, p.usPer(p.Kept), p.LoadAvg)
			}
		}
	}
	if po.variants > 0 && ctx.Err() == nil {
		runs = append(runs, po.variantRuns()...)
	}
	if po.brnf > 0 && ctx.Err() == nil {
		runs = append(runs, po.brnfRuns()...)
	}
	if po.readers > 0 && ctx.Err() == nil {
		runs = append(runs, po.readerRuns()...)
	}
	var ft []FlowtableRun
	if po.flowtable > 0 && ctx.Err() == nil {
		ft = po.flowtableRuns()
	}
	b, _ := json.MarshalIndent(struct {
		Runs      []ProfileRun   `json:"runs"`
		Flowtable []FlowtableRun `json:"flowtable,omitempty"`
	}{runs, ft}, "", "  ")
	_ = os.WriteFile(filepath.Join(po.outDir, "profile.json"), append(b, '\n'), 0o644)
	sum := profileSummary(runs, ft)
	_ = os.WriteFile(filepath.Join(po.outDir, "summary.md"), []byte(sum), 0o644)
	fmt.Print(sum)
	return 0
}

func splitList(s string) []string {
	var l []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			l = append(l, f)
		}
	}
	return l
}

// profile runs wrk for -dur and perf over its middle, then reads the samples.
func (po *profOpts) profile(r *rig, label, load string, rep int, extraPids ...int) (ProfileRun, error) {
	p := ProfileRun{Contender: label, Load: load, Rep: rep, Seconds: po.perfDur.Seconds()}
	base := filepath.Join(po.outDir, fmt.Sprintf("%s-%s-%d", label, load, rep))
	data := base + ".perf.data"
	close := load == "cps"
	type wrkOut struct {
		w   WrkResult
		err error
	}
	done := make(chan wrkOut, 1)
	go func() {
		w, err := r.runWrk(po.dur, close, wrkConnections)
		done <- wrkOut{w, err}
	}()
	time.Sleep(time.Second) // let wrk ramp up before sampling
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		p.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	perf := exec.Command("perf", "record", "-q", "-e", "cpu-clock", "-F", fmt.Sprint(perfFreq), "-a", "-g",
		"-o", data, "--", "sleep", fmt.Sprint(po.perfDur.Seconds()))
	perfOut, perfErr := perf.CombinedOutput()
	wo := <-done
	if wo.err != nil {
		return p, fmt.Errorf("wrk: %w", wo.err)
	}
	if perfErr != nil {
		return p, fmt.Errorf("perf record: %w: %s", perfErr, perfOut)
	}
	p.RPS, p.Errors = wo.w.RPS, wo.w.Errors
	p.Requests = p.RPS * p.Seconds
	pids := map[string]bool{}
	if r.lbd != nil && r.lbd.Process != nil {
		pids[fmt.Sprint(r.lbd.Process.Pid)] = true
	}
	for _, pid := range extraPids {
		pids[fmt.Sprint(pid)] = true
	}
	if err := p.read(data, pids); err != nil {
		return p, err
	}
	// The human-readable report of the kept processes, for reading by hand.
	rep2, _ := exec.Command("perf", "report", "-i", data, "--stdio", "--no-children", "-g", "none",
		"--sort", "symbol", "--comms", "wrk,nginx,lbd,swapper,ksoftirqd/0,ksoftirqd/1", "--percent-limit", "0.3").Output()
	_ = os.WriteFile(base+".report.txt", rep2, 0o644)
	return p, nil
}

// read parses `perf script` of data: keeps samples of wrk, nginx, the
// given pids (the rig's lbd), and the softirq share of the idle loop and
// ksoftirqd. Other helpers' processes on this shared machine are dropped.
func (p *ProfileRun) read(data string, pids map[string]bool) error {
	cmd := exec.Command("perf", "script", "-i", data, "-F", "comm,pid,ip,sym")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := p.parseScript(out, pids); err != nil {
		_ = cmd.Wait()
		return err
	}
	return cmd.Wait()
}

// parseScript reads `perf script -F comm,pid,ip,sym` output: a "comm pid"
// line, one tab-indented "ip symbol" line per frame (leaf first), a blank
// line.
func (p *ProfileRun) parseScript(out io.Reader, pids map[string]bool) error {
	p.Incl, p.Self = map[string]int{}, map[string]int{}
	var comm, pid string
	var frames []string
	flush := func() {
		if comm == "" {
			return
		}
		p.Samples++
		defer func() { comm, frames = "", frames[:0] }()
		softirq, idle := false, false
		for _, f := range frames {
			softirq = softirq || softirqFrame.MatchString(f)
			idle = idle || idleFrame.MatchString(f)
		}
		switch {
		case pids[pid]:
			frames = append(frames, "LBDPROC")
		case comm == "wrk" || comm == "nginx":
		case (comm == "swapper" || strings.HasPrefix(comm, "ksoftirqd/")) && softirq:
		case comm == "swapper" && idle:
			p.Idle++
			return
		default:
			return
		}
		p.Kept++
		if len(frames) > 0 && frames[0] != "LBDPROC" {
			p.Self[frames[0]]++
		}
		for _, a := range areas {
			for _, f := range frames {
				if a.re.MatchString(f) {
					p.Incl[a.name]++
					break
				}
			}
		}
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		if line[0] != '\t' {
			flush()
			// "comm pid" (comm may hold spaces; pid is the last field)
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			comm, pid = strings.Join(f[:len(f)-1], " "), f[len(f)-1]
			continue
		}
		f := strings.Fields(line)
		if len(f) >= 2 {
			frames = append(frames, strings.SplitN(f[1], "+", 2)[0])
		} else if len(f) == 1 {
			frames = append(frames, f[0])
		}
	}
	flush()
	return sc.Err()
}

// traceTable marks every packet of the lb namespace for nftrace, before
// conntrack (priority -500): added only for the traced connection.
const traceTable = `table inet lbdperftrace {
	chain pre { type filter hook prerouting priority -500; meta nftrace set 1; }
	chain out { type filter hook output priority -500; meta nftrace set 1; }
}
`

// dumpRules writes the contender's ruleset (with handles) and the nftrace
// of one request on a new connection through it.
func (po *profOpts) dumpRules(r *rig) {
	base := filepath.Join(po.outDir, r.kind)
	rs, err := r.s.Output("lb", "nft", "-a", "list", "ruleset")
	if err != nil {
		po.logf("PROBLEM: %s ruleset: %v", r.kind, err)
	}
	_ = os.WriteFile(base+".ruleset.nft", []byte(rs), 0o644)
	tf := filepath.Join(r.dir, "trace.nft")
	if err := os.WriteFile(tf, []byte(traceTable), 0o644); err != nil {
		return
	}
	if err := r.s.Exec("lb", "nft", "-f", tf); err != nil {
		po.logf("PROBLEM: %s trace table: %v", r.kind, err)
		return
	}
	defer func() { _ = r.s.Exec("lb", "nft", "delete", "table", "inet", "lbdperftrace") }()
	mon := r.s.Command("lb", "nft", "monitor", "trace")
	var buf strings.Builder
	mon.Stdout = &buf
	if err := mon.Start(); err != nil {
		return
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := r.get(r.httpTargets()[0]); err != nil {
		po.logf("PROBLEM: %s traced request: %v", r.kind, err)
	}
	time.Sleep(500 * time.Millisecond)
	_ = mon.Process.Signal(os.Interrupt)
	_, _ = mon.Process.Wait()
	_ = os.WriteFile(base+".trace.txt", []byte(buf.String()), 0o644)
}

// FlowtableRun is one keep-alive run of the flowtable comparison.
type FlowtableRun struct {
	Flowtable bool    `json:"flowtable"`
	RPS       float64 `json:"rps"`
	Errors    int     `json:"errors"`
	Offloaded int     `json:"offloaded"` // conntrack entries flagged [OFFLOAD] after the run
}

// flowtableTable is a software flowtable on the lb's bridge ports, in its
// own table beside lbd's: established TCP flows are added at forward, so
// their later packets skip the bridge's IP stack, conntrack and every
// chain (lbd's included) at ingress.
const flowtableTable = `table inet lbdperfft {
	flowtable ft { hook ingress priority 0; devices = { wan0, lan1, lan2, lan3 }; }
	chain fastpath { type filter hook forward priority 0; policy accept; meta l4proto tcp ct state established flow add @ft; }
}
`

// flowtableRuns alternates keep-alive runs without and with the flowtable
// in one lbd rig (off on off on ...), so both see the same machine.
func (po *profOpts) flowtableRuns() []FlowtableRun {
	if ks, err := os.ReadFile("/proc/kallsyms"); err == nil && !strings.Contains(string(ks), " nf_flow_table_init") {
		po.logf("PROBLEM: flowtable not measured: this kernel has no nf_flow_table (CONFIG_NF_FLOW_TABLE is not set)")
		return nil
	}
	r, err := newRig(po.opts, rigSpec{kind: LBD})
	if err != nil {
		po.logf("PROBLEM: flowtable rig: %v", err)
		return nil
	}
	defer r.Close()
	tf := filepath.Join(r.dir, "ft.nft")
	if err := os.WriteFile(tf, []byte(flowtableTable), 0o644); err != nil {
		return nil
	}
	var runs []FlowtableRun
	for i := 0; i < po.flowtable; i++ {
		for _, on := range []bool{false, true} {
			if on {
				if err := r.s.Exec("lb", "nft", "-f", tf); err != nil {
					po.logf("PROBLEM: flowtable: %v", err)
					return runs
				}
			}
			w, err := r.runWrk(po.dur, false, wrkConnections)
			ct, _ := r.s.Output("lb", "conntrack", "-L")
			if on {
				_ = r.s.Exec("lb", "nft", "delete", "table", "inet", "lbdperfft")
				// Flows offloaded so far fall back to the slow path; drop
				// them so the next "off" run starts with no offloaded entry.
				_ = r.s.Exec("lb", "conntrack", "-F")
			}
			if err != nil {
				po.logf("PROBLEM: flowtable wrk: %v", err)
				continue
			}
			fr := FlowtableRun{Flowtable: on, RPS: w.RPS, Errors: w.Errors, Offloaded: strings.Count(ct, "[OFFLOAD]")}
			runs = append(runs, fr)
			po.logf("keep-alive flowtable=%v: %.0f req/s, %d errors, %d offloaded entries", on, fr.RPS, fr.Errors, fr.Offloaded)
		}
	}
	return runs
}

// profileSummary is the markdown summary of the runs.
func profileSummary(runs []ProfileRun, ft []FlowtableRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# bench profile (%s)\n\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "cpu-clock at %d Hz on all CPUs; kept = samples of wrk, nginx, the rig's lbd and softirq work in the idle loop / ksoftirqd. CPU in microseconds per request.\n\n", perfFreq)
	b.WriteString("| contender | load | rep | req/s | errors | load avg | samples all | kept | us/req kept |")
	for _, a := range areas {
		fmt.Fprintf(&b, " %s |", a.name)
	}
	b.WriteString("\n|---|---|---|---|---|---|---|---|---|")
	for range areas {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, p := range runs {
		fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %d | %s | %d | %d | %.1f |", p.Contender, p.Load, p.Rep, p.RPS, p.Errors, p.LoadAvg, p.Samples, p.Kept, p.usPer(p.Kept))
		for _, a := range areas {
			fmt.Fprintf(&b, " %.2f |", p.usPer(p.Incl[a.name]))
		}
		b.WriteString("\n")
	}
	for _, p := range runs {
		fmt.Fprintf(&b, "\n## %s %s rep %d: top self symbols (us per request, share of kept)\n\n", p.Contender, p.Load, p.Rep)
		type kv struct {
			k string
			v int
		}
		var l []kv
		for k, v := range p.Self {
			l = append(l, kv{k, v})
		}
		sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v || l[i].v == l[j].v && l[i].k < l[j].k })
		for i, e := range l {
			if i == 25 {
				break
			}
			fmt.Fprintf(&b, "- %s: %.2f us (%.1f%%)\n", e.k, p.usPer(e.v), 100*float64(e.v)/float64(max(p.Kept, 1)))
		}
	}
	if len(ft) > 0 {
		b.WriteString("\n## keep-alive requests/s in one lbd rig, software flowtable off/on (alternated)\n\n| flowtable | req/s | errors | [OFFLOAD] entries after |\n|---|---|---|---|\n")
		for _, f := range ft {
			fmt.Fprintf(&b, "| %v | %.0f | %d | %d |\n", f.Flowtable, f.RPS, f.Errors, f.Offloaded)
		}
	}
	return b.String()
}

// variantRuns isolates what the running daemon adds to a new connection
// beyond its ruleset: CPS in one lbd rig with lbd up (it subscribes to
// conntrack DESTROY events and turns nf_conntrack_acct on), with lbd
// killed (the table stays in the kernel, the event socket is gone), and
// killed with accounting off too. Then lbd is started again for the next
// round (it takes its table over).
func (po *profOpts) variantRuns() []ProfileRun {
	r, err := newRig(po.opts, rigSpec{kind: LBD})
	if err != nil {
		po.logf("PROBLEM: variants rig: %v", err)
		return nil
	}
	defer r.Close()
	var runs []ProfileRun
	run := func(label string, rep int) {
		for _, load := range po.loads {
			p, err := po.profile(r, label, load, rep)
			if err != nil {
				po.logf("PROBLEM: %s %s: %v", label, load, err)
				continue
			}
			runs = append(runs, p)
			po.logf("%s %s rep %d: %.0f req/s, %.1f us CPU per request (kept), load %s", label, load, rep, p.RPS, p.usPer(p.Kept), p.LoadAvg)
		}
	}
	for rep := 1; rep <= po.variants && po.ctx.Err() == nil; rep++ {
		run("lbd-up", rep)
		r.killLBD()
		run("lbd-killed", rep)
		// Entries keep the accounting extension they were created with:
		// flush so the next run's flows are all created without it.
		if err := r.s.Exec("lb", "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=0"); err != nil {
			po.logf("PROBLEM: acct off: %v", err)
		}
		_ = r.s.Exec("lb", "conntrack", "-F")
		run("lbd-killed-noacct", rep)
		if err := r.startLBD(); err != nil {
			po.logf("PROBLEM: lbd restart: %v", err)
			return runs
		}
	}
	return runs
}

// readerRuns measures lbd's conntrack DESTROY reader under the CPS load in
// one lbd rig whose lbd was killed (its table and nf_conntrack_acct stay):
// no reader, then lbd's reader code alone (`bench ctevents`). The reader's
// own samples are kept (by pid).
func (po *profOpts) readerRuns() []ProfileRun {
	r, err := newRig(po.opts, rigSpec{kind: LBD})
	if err != nil {
		po.logf("PROBLEM: readers rig: %v", err)
		return nil
	}
	defer r.Close()
	r.killLBD()
	self, err := os.Executable()
	if err != nil {
		return nil
	}
	var runs []ProfileRun
	for rep := 1; rep <= po.readers && po.ctx.Err() == nil; rep++ {
		for _, mode := range []string{"none", "lbd"} {
			label := "reader-" + mode
			var (
				cmd  *exec.Cmd
				in   interface{ Close() error }
				out  strings.Builder
				pids []int
			)
			if mode != "none" {
				cmd = r.s.Command("lb", self, "ctevents")
				w, err := cmd.StdinPipe()
				if err != nil {
					return runs
				}
				in = w
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					po.logf("PROBLEM: ctevents: %v", err)
					return runs
				}
				pids = append(pids, cmd.Process.Pid)
				time.Sleep(300 * time.Millisecond)
			}
			p, err := po.profile(r, label, "cps", rep, pids...)
			if cmd != nil {
				_ = in.Close()
				_ = cmd.Wait()
			}
			if err != nil {
				po.logf("PROBLEM: %s: %v", label, err)
				continue
			}
			runs = append(runs, p)
			po.logf("%s cps rep %d: %.0f req/s, %.1f us CPU per request (kept), load %s; reader: %s", label, rep, p.RPS, p.usPer(p.Kept), p.LoadAvg, strings.TrimSpace(out.String()))
		}
	}
	return runs
}

// brnfRuns measures what the rig's bridges cost through br_netfilter
// (built into this host's kernel, on by default in every namespace): per
// contender one rig, the loads run with bridge-nf-call-iptables 1 and 0
// alternated. The appliance has no bridge, so "off" is closer to it.
func (po *profOpts) brnfRuns() []ProfileRun {
	var runs []ProfileRun
	for _, c := range po.contenders {
		r, err := newRig(po.opts, rigSpec{kind: c})
		if err != nil {
			po.logf("PROBLEM: brnf %s rig: %v", c, err)
			continue
		}
		for rep := 1; rep <= po.brnf && po.ctx.Err() == nil; rep++ {
			for _, on := range []string{"1", "0"} {
				if err := r.s.Exec("lb", "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables="+on, "net.bridge.bridge-nf-call-ip6tables="+on); err != nil {
					po.logf("PROBLEM: brnf sysctl: %v", err)
				}
				for _, load := range po.loads {
					label := c + "-brnf" + on
					p, err := po.profile(r, label, load, rep)
					if err != nil {
						po.logf("PROBLEM: %s %s: %v", label, load, err)
						continue
					}
					runs = append(runs, p)
					po.logf("%s %s rep %d: %.0f req/s, %.1f us CPU per request (kept), load %s", label, load, rep, p.RPS, p.usPer(p.Kept), p.LoadAvg)
				}
			}
		}
		r.Close()
	}
	return runs
}
