package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// controlRowsOf lists the cold-start cases the run measured, in the order
// of the case lists (full, then quick-only ones).
func controlRowsOf(r *Results) []controlCase {
	var out []controlCase
	seen := map[controlCase]bool{}
	all := append(append([]controlCase(nil), controlCases...), quickControlCases...)
	for _, x := range r.Control { // -cold may have measured others
		all = append(all, controlCase{x.Services, x.Mixed})
	}
	for _, c := range all {
		if seen[c] {
			continue
		}
		seen[c] = true
		for _, x := range r.Control {
			if x.Services == c.n && x.Mixed == c.mixed {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// reloadOf is the service count of the reload-one-service row (runs
// before issue 13 did not record it: they used 10,000).
func reloadOf(r *Results) int {
	if r.ReloadOneOf == 0 {
		return 10000
	}
	return r.ReloadOneOf
}

func reportFlips(p func(string, ...any), r *Results) {
	if len(r.OneFlip) == 0 && len(r.BulkFlip) == 0 {
		return
	}
	services := 0
	for _, x := range r.OneFlip {
		services = x.Services
	}
	for _, x := range r.BulkFlip {
		services = x.Services
	}
	p("\n## 3b. Health flips on the running daemon\n\n"+
		"`lbd run` with %d services; some of them (8 backends each) have an HTTP check (interval %v,\n"+
		"timeout %v, rise 1, fall 1) against a server of the harness in be1, one port per backend. The\n"+
		"server holds each check %v around the bulk flip and answers it at once when the harness flips\n"+
		"the backend: a flip is seen within milliseconds by the checks in flight and within %v by the\n"+
		"others (the single flips are not held). Times come from lbd's own log (LBD_DEBUG=1): the\n"+
		"monitor's \"backend down\"/\"backend up\" line (logged before the transition is handed to the\n"+
		"sync loop) and the loop's \"sync applied\" line after each transaction; the first such line\n"+
		"after a transition carried it, the last after a bulk flip is when the kernel held all, and\n"+
		"their count is the transactions (what `sync.syncs` / `lbd_syncs_total` count). The log has\n"+
		"millisecond stamps. (Polling `lbd status` instead failed at 10,000 services on a loaded\n"+
		"machine: the answer took longer than lbd's 10 s control write deadline.)\n\n", services, flipInterval, flipInterval, flipHold, flipInterval-flipHold)
	if len(r.OneFlip) > 0 {
		p("| one backend | transition -> kernel ms | flip -> kernel ms | transactions | other backends' transitions meanwhile | runs |\n|---|---|---|---|---|---|\n")
		for _, dir := range []string{"down", "up"} {
			var tk, fk, sy []float64
			others := 0
			for _, x := range r.OneFlip {
				if x.Dir == dir {
					tk, fk, sy = append(tk, x.TransToKernelMS), append(fk, x.FlipToKernelMS), append(sy, float64(x.Syncs))
					others += x.Others
				}
			}
			p("| %s | %s | %s | %s | %d | %d |\n", dir, cell(tk), cell(fk), cell(sy), others, len(tk))
		}
		p("\nOther backends' transitions in the window (checks that timed out on a loaded machine) bring\n" +
			"their own transactions; with any, the row is an upper bound.\n")
		p("\n")
	}
	if len(r.BulkFlip) > 0 {
		p("| backends flipped down at once | transitions spread ms | first transition -> kernel holds all ms | last transition -> kernel holds all ms | flip -> kernel holds all ms | transactions | down before the flip |\n|---|---|---|---|---|---|---|\n")
		for _, x := range r.BulkFlip {
			p("| %d | %.0f | %.0f | %.0f | %.0f | %d | %d |\n", x.Flipped, x.SpreadMS, x.FirstToKernelMS, x.FirstToKernelMS-x.SpreadMS, x.FlipToKernelMS, x.Syncs, x.Early)
		}
		p("\n\"Transitions spread\" is first to last transition line: the checks' phases (at most\n" +
			"interval - hold) plus however long lbd takes to deliver them. \"Down before the flip\" are\n" +
			"held checks that missed their timeout on a loaded machine; they are left out.\n")
	}
}

func reportConntrack(p func(string, ...any), r *Results) {
	if len(r.Conntrack) == 0 {
		return
	}
	p("\n## 3c. Conntrack poll\n\n" +
		"For lc/wlc and `max_connections` lbd dumps the conntrack table once a second\n" +
		"(`lb.ActiveConnections`). Here the table of the lb namespace holds real UDP flows through\n" +
		"lbd (one datagram from each of N source ports to two UDP services; the backend drops them),\n" +
		"and the harness calls `lb.ActiveConnections` in that namespace: wall time per dump, heap\n" +
		"allocations and bytes per dump (runtime.MemStats over the dumps, after one warm-up).\n\n")
	p("| conntrack entries | flows counted | dumps | wall ms median (max) | allocations per dump | MB allocated per dump |\n|---|---|---|---|---|---|\n")
	for _, x := range r.Conntrack {
		p("| %d | %d | %d | %s (%s) | %.0f | %.1f |\n", x.Entries, x.Counted, x.Polls, num(x.WallMS), num(x.WallMaxMS), x.AllocsPerOp, x.MBPerOp)
	}
	p("\nAt one dump a second, the wall time is the share of a core the poll takes.\n")
}

// targetRow is one line of the Targets table.
type targetRow struct{ what, target, measured, verdict string }

const notMeasured = "not measured in this run"

// targets lists the targets against this run's numbers.
func targets(r *Results) []targetRow {
	var out []targetRow
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	add := func(what, target, measured, v string) {
		if r.Quick && (v == "met" || v == "**missed**") {
			// Quick mode's short runs say the path works, not where we are.
			v += " (quick mode: not a verdict)"
		}
		out = append(out, targetRow{what, target, measured, v})
	}
	ratio := func(what, target, m, other string, min float64) {
		rs := pairs(r.Data[m][LBD], r.Data[m][other])
		if len(rs) == 0 {
			add(what, target, notMeasured, "n/a")
			return
		}
		v := median(rs)
		add(what, target, fmt.Sprintf("%.2fx", v), verdict(v >= min))
	}
	ratio("CPS vs direct routing (paired median)", ">= 0.80x", mCPS, Direct, 0.80)
	nftlbWhat := "CPS vs nftlb, same scheduler (lbd rr vs nftlb rr, both snat)"
	if len(r.Schedulers) == 0 && r.Data != nil {
		nftlbWhat = "CPS vs nftlb (this run: nftlb **weight**, not like for like)"
	}
	ratio(nftlbWhat, ">= 1.05x", mCPS, NFTLB, 1.05)
	ratio("requests/s on keep-alive connections vs direct", ">= 0.95x", mRPS, Direct, 0.95)
	ratio("CPS vs HAProxy", ">= 1.4x", mCPS, HAProxy, 1.4)
	ratio("throughput, 1 iperf3 stream, vs direct", ">= 0.90x", mGbps, Direct, 0.90)
	if rs := pairs(r.Scale[10000], r.Scale[1]); len(rs) > 0 {
		v := median(rs)
		add("CPS with 10,000 services vs 1", ">= 0.95x", fmt.Sprintf("%.2fx", v), verdict(v >= 0.95))
	} else {
		add("CPS with 10,000 services vs 1", ">= 0.95x", notMeasured, "n/a")
	}

	cold := func(n int, mixed bool) (wall, hwm []float64) {
		for _, c := range r.Control {
			if c.Services == n && c.Mixed == mixed {
				wall, hwm = append(wall, c.WallMS), append(hwm, c.HWMMB)
			}
		}
		return wall, hwm
	}
	// coldRow prints a cold-start target, or what was measured instead in
	// quick mode (the smaller scale says nothing about the target).
	coldRow := func(what string, n int, mixed bool, target string, maxMS, maxMB float64, alt int) {
		wall, hwm := cold(n, mixed)
		if len(wall) == 0 {
			if why := problemFor(r, controlCase{n, mixed}); why != "" {
				add(what, target, "failed: "+why, "**missed**")
			} else if w, h := cold(alt, mixed); len(w) > 0 && r.Quick {
				add(what, target, fmt.Sprintf("%.0f ms, VmHWM %.0f MB at %d services (quick mode)", median(w), median(h), alt), "n/a")
			} else {
				add(what, target, notMeasured, "n/a")
			}
			return
		}
		mw, mh := median(wall), median(hwm)
		ok := mw < maxMS && (maxMB == 0 || mh < maxMB)
		add(what, target, fmt.Sprintf("%.0f ms, VmHWM %.0f MB", mw, mh), verdict(ok))
	}
	coldRow("10,000 services x 8 backends: exec to ready (cold)", 10000, false, "< 1 s", 1000, 0, 1000)
	coldRow("the same with rr, random, sh, mh mixed", 10000, true, "< 1.5 s, < 150 MB", 1500, 150, 1000)
	coldRow("100,000 services x 8 backends: exec to ready", 100000, false, "< 10 s, RSS < 1 GB", 10000, 1024, 1000)
	if _, hwm := cold(10000, false); len(hwm) > 0 {
		add("peak RSS at 10,000 x 8 (VmHWM)", "< 100 MB", fmt.Sprintf("%.0f MB", median(hwm)), verdict(median(hwm) < 100))
	} else {
		add("peak RSS at 10,000 x 8 (VmHWM)", "< 100 MB", notMeasured, "n/a")
	}

	switch {
	case len(r.ReloadOneMS) == 0:
		add("reload that changes 1 service of 10,000 (`lbd reload` wall)", "< 50 ms", notMeasured, "n/a")
	case reloadOf(r) != 10000:
		add("reload that changes 1 service of 10,000 (`lbd reload` wall)", "< 50 ms",
			fmt.Sprintf("%.1f ms at 1 of %d (quick mode)", median(r.ReloadOneMS), reloadOf(r)), "n/a")
	default:
		v := median(r.ReloadOneMS)
		add("reload that changes 1 service of 10,000 (`lbd reload` wall)", "< 50 ms", fmt.Sprintf("%.0f ms", v), verdict(v < 50))
	}

	bulkWhat := "1,000 backends flipping health within 100 ms at 10,000 services: until the kernel holds all"
	bulkTarget := "< 100 ms, a few (<= 5) transactions"
	if len(r.BulkFlip) == 0 {
		add(bulkWhat, bulkTarget, notMeasured, "n/a")
	} else {
		var ms, sy []float64
		for _, x := range r.BulkFlip {
			ms, sy = append(ms, x.FirstToKernelMS), append(sy, float64(x.Syncs))
		}
		x := r.BulkFlip[0]
		var spread []float64
		for _, y := range r.BulkFlip {
			spread = append(spread, y.SpreadMS)
		}
		m := fmt.Sprintf("%.0f ms, %.0f transactions (lbd logged the transitions over %.0f ms", median(ms), median(sy), median(spread))
		if median(spread) > 100 {
			m += ": more than the 100 ms the row assumes, see 3b"
		}
		m += ")"
		if x.Flipped != 1000 || x.Services != 10000 {
			add(bulkWhat, bulkTarget, fmt.Sprintf("%s for %d flips at %d services (quick mode)", m, x.Flipped, x.Services), "n/a")
		} else {
			add(bulkWhat, bulkTarget, m, verdict(median(ms) < 100 && median(sy) <= 5))
		}
	}
	oneWhat := "one health flip at 10,000 services, running daemon (transition -> kernel)"
	if len(r.OneFlip) == 0 {
		if r.FlipMS > 0 {
			add(oneWhat, "< 20 ms", fmt.Sprintf("not measured; package benchmark %.1f ms", r.FlipMS), "n/a")
		} else {
			add(oneWhat, "< 20 ms", notMeasured, "n/a")
		}
	} else {
		var ms []float64
		for _, x := range r.OneFlip {
			ms = append(ms, x.TransToKernelMS)
		}
		if n := r.OneFlip[0].Services; n != 10000 {
			add(oneWhat, "< 20 ms", fmt.Sprintf("%.1f ms at %d services (quick mode)", median(ms), n), "n/a")
		} else {
			add(oneWhat, "< 20 ms", fmt.Sprintf("%.1f ms median of %d", median(ms), len(ms)), verdict(median(ms) < 20))
		}
	}
	if len(r.Conntrack) > 0 {
		x := r.Conntrack[0]
		add(fmt.Sprintf("conntrack poll (lb.ActiveConnections, once a second) at %d entries", x.Entries), "none set (issue 13 asks for the number)",
			fmt.Sprintf("%.0f ms, %.0f allocations, %.1f MB per dump", x.WallMS, x.AllocsPerOp, x.MBPerOp), "—")
	}

	if len(r.Reload) > 0 {
		cross, failed, crossR, failedR, wrkErr := 0, 0, 0, 0, 0
		for _, x := range r.Reload {
			cross, failed = cross+x.ProbeCrossReload, failed+x.FailedCrossReload
			crossR, failedR = crossR+x.ProbeCrossRestart, failedR+x.FailedCrossRestart
			wrkErr += x.WrkErrors
		}
		if cross+crossR == 0 && r.Reload[0].ProbeSent > 0 {
			// Runs before issue 13 did not keep the probe's samples.
			add("0 failed connections across 100 reloads + kill -9/restart", "0 failed", "not counted in this run (estimated only)", "n/a")
		} else {
			add("0 failed connections across 100 reloads + kill -9/restart", "0 failed",
				fmt.Sprintf("new connections: %d failed of %d across a reload, %d of %d across the restart; keep-alive errors %d",
					failed, cross, failedR, crossR, wrkErr),
				crossVerdict(failed+failedR+wrkErr, cross, crossR))
		}
	}
	if len(r.Failover) > 0 {
		var dw []float64
		for _, f := range r.Failover {
			dw = append(dw, f.DownWindowMS)
		}
		lim := float64(time.Duration(healthFall)*healthInterval+500*time.Millisecond) / 1e6
		add("failover: stop -> last request sent to the stopped backend", fmt.Sprintf("<= fall x interval + timeout = %.0f ms", lim),
			fmt.Sprintf("%.0f ms median", median(dw)), verdict(median(dw) <= lim))
	}
	return out
}

// problemFor returns the start of the Problem recorded for a cold-start
// case, or "".
func problemFor(r *Results, c controlCase) string {
	prefix := fmt.Sprintf("control %v (not retried): ", c)
	for _, p := range r.Problems {
		if rest, ok := strings.CutPrefix(p, prefix); ok {
			if len(rest) > 160 {
				rest = rest[:160] + "... (see Problems)"
			}
			return strings.ReplaceAll(rest, "|", "/")
		}
	}
	return ""
}

// crossVerdict: any failure misses; no failure is "met" only when new
// connections really crossed both the reloads and the restart.
func crossVerdict(failed, cross, crossRestart int) string {
	switch {
	case failed > 0:
		return "**missed**"
	case cross == 0 || crossRestart == 0:
		return "n/a (no connection crossed them)"
	}
	return "met"
}

// The analysis is written by hand after reading a full run; bench/analysis.md
// must say which run it describes on a line "<!-- bench run: STARTED -->"
// (the results' "started", RFC 3339). A report includes it only when that
// is this run, so a new run never publishes an old run's analysis under
// its own tables.
var reAnalysisRun = regexp.MustCompile(`<!-- bench run: (\S+) -->`)

func analysisFor(o *opts, r *Results) string {
	if r.Quick {
		return ""
	}
	path := filepath.Join(o.repo, "bench", "analysis.md")
	notes, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	m := reAnalysisRun.FindSubmatch(notes)
	if m == nil {
		return "\n## Analysis\n\nbench/analysis.md names no run (`<!-- bench run: STARTED -->`); not included.\n"
	}
	at, err := time.Parse(time.RFC3339Nano, string(m[1]))
	if err != nil || !at.Truncate(time.Second).Equal(r.Started.Truncate(time.Second)) {
		return fmt.Sprintf("\n## Analysis\n\nNo analysis of this run yet: bench/analysis.md describes the run started %s,\n"+
			"not this one (started %s). Read this run's numbers, rewrite the analysis and set its\n"+
			"`<!-- bench run: %s -->` line.\n", m[1], r.Started.UTC().Format(time.RFC3339), r.Started.UTC().Format(time.RFC3339))
	}
	return "\n" + strings.TrimLeft(string(notes), "\n")
}
