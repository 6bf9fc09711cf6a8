// Command bench measures lbd against direct routing, HAProxy and nftlb in
// throw-away namespace labs (client, lb, 3 nginx backends) and writes
// BENCHMARKS.md: data plane (CPS, keep-alive RPS, iperf3, latency at a
// fixed rate), dispatch scale, control plane (cold starts up to 100,000
// services, reload of one service), health flips on the running daemon,
// the conntrack poll's cost, failover, and reloads and a restart under
// load. `make bench` runs it (BENCH_QUICK=1 or -quick for a
// smoke run of about three minutes). Needs root, wrk, haproxy, nftlb,
// iperf3 and nginx; `go` for the health flip benchmark of package lb.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

type opts struct {
	ctx      context.Context
	quick    bool
	reps     int
	dur      time.Duration
	lbd      string
	repo     string
	out      string
	jsonOut  string
	work     string
	sections map[string]bool
	// startLimit bounds how long an lbd cold start may take before that
	// case is given up (a 10,000-service config that parses for minutes).
	startLimit time.Duration
	// seed drives every random choice of the run (failover stop times),
	// printed so a run can be repeated.
	seed int64
	// cold, when set, replaces section 3's cold-start cases (-cold).
	cold []controlCase
	// renderedAt is set when -render rewrites an earlier run's report.
	renderedAt time.Time
}

// Results is everything one run measured (also written as JSON).
type Results struct {
	Started     time.Time                       `json:"started"`
	Finished    time.Time                       `json:"finished"`
	Quick       bool                            `json:"quick"`
	Reps        int                             `json:"reps"`
	RunSeconds  float64                         `json:"run_seconds"`
	Machine     map[string]string               `json:"machine"`
	Blocked     map[string]string               `json:"blocked,omitempty"`
	Data        map[string]map[string][]float64 `json:"data,omitempty"`
	DataErrors  map[string]map[string]int       `json:"data_errors,omitempty"`
	Scale       map[int][]float64               `json:"scale,omitempty"`
	ScaleErrors map[int]int                     `json:"scale_errors,omitempty"`
	Control     []ControlRow                    `json:"control,omitempty"`
	ReloadOneMS []float64                       `json:"reload_one_ms,omitempty"`
	ReloadOneOf int                             `json:"reload_one_of,omitempty"` // services in that config (0: 10,000)
	FlipMS      float64                         `json:"health_flip_ms,omitempty"`
	// Schedulers names the scheduler each contender ran (issue 13: nftlb
	// had run "weight" against lbd's rr); empty in runs before that.
	Schedulers map[string]string `json:"schedulers,omitempty"`
	// Seed is the random seed of the run (failover stop offsets).
	Seed       int64          `json:"seed,omitempty"`
	OneFlip    []OneFlipRun   `json:"one_flip,omitempty"`
	BulkFlip   []BulkFlipRun  `json:"bulk_flip,omitempty"`
	Conntrack  []ConntrackRun `json:"conntrack,omitempty"`
	Failover   []FailoverRun  `json:"failover,omitempty"`
	Pair       []PairRun      `json:"pair,omitempty"` // HA pair takeovers (pair.go)
	Reload     []ReloadRun    `json:"reload,omitempty"`
	Fleet      *FleetRun      `json:"fleet,omitempty"`
	Problems   []string       `json:"problems,omitempty"`
	IdleBefore []float64      `json:"idle_before,omitempty"` // machine idle share before each data-plane rep
	LoadAvg    string         `json:"loadavg"`
}

func (o *opts) fail(res *Results, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	o.logf("PROBLEM: %s", msg)
	if len(msg) > 600 {
		msg = msg[:600] + "..."
	}
	res.Problems = append(res.Problems, msg)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		os.Exit(probeMain(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "profile" {
		os.Exit(profileMain(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "ctevents" {
		os.Exit(ctEventsMain(os.Args[2:]))
	}
	os.Exit(benchMain(os.Args[1:]))
}

const allSections = "dataplane,scale,control,flip,conntrack,failover,pair,reload,fleet"

func benchMain(args []string) int {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	o := &opts{}
	fs.BoolVar(&o.quick, "quick", os.Getenv("BENCH_QUICK") == "1", "smoke mode: 1 repetition, short runs (also BENCH_QUICK=1)")
	fs.IntVar(&o.reps, "reps", 0, "repetitions per contender (default 5, quick 1)")
	fs.DurationVar(&o.dur, "dur", 0, "length of each load run (default 5s, quick 2s)")
	fs.StringVar(&o.lbd, "lbd", "out/lbd", "lbd binary")
	fs.StringVar(&o.repo, "repo", ".", "repository root (for go test -bench ./lb)")
	fs.StringVar(&o.out, "out", "BENCHMARKS.md", "report to write")
	fs.StringVar(&o.jsonOut, "json", "", "raw results as JSON (default: the report's name with .json)")
	fs.Int64Var(&o.seed, "seed", 0, "random seed (default: from the clock; printed in the log and the report)")
	sec := fs.String("sections", allSections, "comma-separated sections to run")
	cold := fs.String("cold", "", "section 3's cold starts only for these service counts, e.g. 100000 or 10000m (m: schedulers mixed)")
	render := fs.String("render", "", "only render the report from this results JSON (plus bench/analysis.md)")
	_ = fs.Parse(args)
	if *render != "" {
		return renderOnly(o, *render)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (network namespaces, nftables)")
		return 1
	}
	if o.reps == 0 {
		o.reps = 5
		if o.quick {
			o.reps = 1
		}
	}
	if o.dur == 0 {
		o.dur = 5 * time.Second
		if o.quick {
			o.dur = 2 * time.Second
		}
	}
	o.startLimit = 60 * time.Second
	if o.quick {
		o.startLimit = 15 * time.Second
	}
	if o.reps > 20 || o.dur > 30*time.Second || o.dur < time.Second {
		fmt.Fprintln(os.Stderr, "bench: -reps at most 20, -dur between 1s and 30s")
		return 2
	}
	if o.seed == 0 {
		o.seed = time.Now().UnixNano()
	}
	for _, f := range strings.Split(*cold, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		c := controlCase{mixed: strings.HasSuffix(f, "m")}
		if _, err := fmt.Sscan(strings.TrimSuffix(f, "m"), &c.n); err != nil || c.n < 1 || c.n > 200000 {
			fmt.Fprintf(os.Stderr, "bench: -cold %q: expected counts such as 100000 or 10000m\n", f)
			return 2
		}
		o.cold = append(o.cold, c)
	}
	o.sections = map[string]bool{}
	for _, s := range strings.Split(*sec, ",") {
		o.sections[strings.TrimSpace(s)] = true
	}
	var err error
	if o.lbd, err = filepath.Abs(o.lbd); err != nil {
		return 1
	}
	if _, err := os.Stat(o.lbd); err != nil {
		fmt.Fprintf(os.Stderr, "bench: lbd binary: %v (make build)\n", err)
		return 1
	}
	if o.jsonOut == "" {
		o.jsonOut = strings.TrimSuffix(o.out, filepath.Ext(o.out)) + ".json"
	}
	stop, err := o.begin("lbd-bench-")
	if err != nil {
		return 1
	}
	defer stop()
	ctx := o.ctx

	res := &Results{Started: time.Now(), Quick: o.quick, Reps: o.reps, RunSeconds: o.dur.Seconds(),
		Machine: machine(o), Blocked: blocked(), Seed: o.seed}
	o.logf("random seed %d (-seed %d repeats this run's choices)", o.seed, o.seed)
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.LoadAvg = strings.TrimSpace(string(b))
	}
	for c, why := range res.Blocked {
		o.logf("contender %s blocked: %s", c, why)
	}
	steps := []struct {
		name string
		f    func(*Results)
	}{
		{"dataplane", o.dataplane}, {"scale", o.scale}, {"control", o.control},
		{"flip", o.flips}, {"conntrack", o.conntrackPoll}, {"failover", o.failover}, {"pair", o.pairFailover}, {"reload", o.reloadUnderLoad},
		{"fleet", o.fleet},
	}
	for _, st := range steps {
		if o.sections[st.name] && ctx.Err() == nil {
			t := time.Now()
			st.f(res)
			o.logf("section %s took %s", st.name, time.Since(t).Round(time.Second))
		}
	}
	res.Finished = time.Now()
	if b, err := json.MarshalIndent(res, "", "  "); err == nil {
		_ = os.WriteFile(o.jsonOut, append(b, '\n'), 0o644)
	}
	if err := os.WriteFile(o.out, []byte(report(o, res)), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	o.logf("wrote %s and %s in %s", o.out, o.jsonOut, res.Finished.Sub(res.Started).Round(time.Second))
	return 0
}

// begin makes the run's work directory and context, and tears the current
// lab down on SIGINT/SIGTERM; stop removes both.
func (o *opts) begin(prefix string) (stop func(), err error) {
	if o.work, err = os.MkdirTemp("", prefix); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.ctx = ctx
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		o.logf("%v: tearing down the lab", s)
		cancel()
		closeCurrent()
		os.RemoveAll(o.work)
		os.Exit(130)
	}()
	return func() { cancel(); os.RemoveAll(o.work) }, nil
}

// blocked names the contenders whose tools are missing.
func blocked() map[string]string {
	b := map[string]string{}
	for c, tool := range map[string]string{HAProxy: "haproxy", NFTLB: "nftlb"} {
		if _, err := exec.LookPath(tool); err != nil {
			b[c] = tool + " not installed (scripts/apt-ensure " + tool + ")"
		}
	}
	return b
}

func machine(o *opts) map[string]string {
	m := map[string]string{}
	sh := func(args ...string) string {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return "?"
		}
		return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	m["cores"] = sh("nproc")
	m["kernel"] = sh("uname", "-r")
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m["cpu"] = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
		if len(f) > 1 {
			m["memory"] = f[1] + " kB"
		}
	}
	if b, err := os.ReadFile("/etc/debian_version"); err == nil {
		m["debian"] = strings.TrimSpace(string(b))
	}
	for _, p := range []string{"haproxy", "nftlb", "wrk", "iperf3", "nginx", "nftables"} {
		m[p] = sh("dpkg-query", "-W", "-f=${Version}", p)
	}
	m["lbd"] = sh(o.lbd, "version")
	m["go"] = sh("go", "version")
	return m
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minMax(xs []float64) (float64, float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	lo, hi := xs[0], xs[0]
	for _, x := range xs {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

// renderOnly rewrites the report from a results file of an earlier run.
func renderOnly(o *opts, path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	if o.jsonOut == "" {
		o.jsonOut = path
	}
	o.renderedAt = time.Now()
	if err := os.WriteFile(o.out, []byte(report(o, &res)), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}
