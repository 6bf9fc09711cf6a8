package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// WrkResult is the sum over the parallel wrk processes of one run.
type WrkResult struct {
	RPS    float64 `json:"rps"`
	Errors int     `json:"errors"` // socket errors + non-2xx
}

var (
	reRPS    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reSock   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	reNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// wrkConnections is the client concurrency of every CPS/RPS run: 63, as in
// the targets' reference measurement, split into 3 wrk processes of 21
// (one per backend for direct, all three on the VIP otherwise).
const wrkConnections = 63

// runWrk runs 3 wrk processes of one thread and 21 connections each from
// the client namespace at the rig's HTTP targets for d; close = one
// request per connection.
func (r *rig) runWrk(d time.Duration, close bool, conns int) (WrkResult, error) {
	targets := r.httpTargets()
	per := conns / 3
	var cmds [][]string
	for i := 0; i < 3; i++ {
		url := "http://" + targets[i%len(targets)] + "/"
		args := []string{"wrk", "-t1", fmt.Sprintf("-c%d", per), fmt.Sprintf("-d%ds", int(d.Seconds())), "--timeout", "3s"}
		if close {
			args = append(args, "-H", "Connection: close")
		}
		cmds = append(cmds, append(args, url))
	}
	outs, err := wrkAll(func(args ...string) (string, error) { return r.s.Output(r.s.Client(0), args...) }, cmds)
	var res WrkResult
	for _, w := range outs {
		res.RPS += w.rps
		res.Errors += w.socketErrors + w.non2xx
	}
	return res, err
}

// wrkAll runs the wrk command lines at once (run executes one in the
// client's namespace) and returns what each printed; on any failure, the
// error of the last one to fail.
func wrkAll(run func(args ...string) (string, error), cmds [][]string) ([]wrkResult, error) {
	var (
		mu   sync.Mutex
		outs []wrkResult
		wg   sync.WaitGroup
		fe   error
	)
	for _, args := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := run(args...)
			if err == nil {
				var w wrkResult
				if w, err = parseWrk(out); err == nil {
					mu.Lock()
					outs = append(outs, w)
					mu.Unlock()
					return
				}
			}
			mu.Lock()
			fe = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return outs, fe
}

// wrkResult is what one wrk run printed.
type wrkResult struct {
	rps          float64
	socketErrors int // connect + read + write + timeout
	non2xx       int
}

func parseWrk(out string) (wrkResult, error) {
	var w wrkResult
	m := reRPS.FindStringSubmatch(out)
	if m == nil {
		return w, fmt.Errorf("wrk output without Requests/sec: %s", out)
	}
	w.rps, _ = strconv.ParseFloat(m[1], 64)
	if m := reSock.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			w.socketErrors += n
		}
	}
	if m := reNon2xx.FindStringSubmatch(out); m != nil {
		w.non2xx, _ = strconv.Atoi(m[1])
	}
	return w, nil
}

// runIperf runs one iperf3 TCP stream through the middle for d and
// returns Gbit/s received.
func (r *rig) runIperf(d time.Duration) (float64, error) {
	out, err := r.s.Output(r.s.Client(0), "iperf3", "-c", r.iperfTarget(), "-p", fmt.Sprint(iperfPort),
		"-t", fmt.Sprint(int(d.Seconds())), "-J")
	if err != nil {
		return 0, err
	}
	var j struct {
		End struct {
			SumReceived struct {
				BPS float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		return 0, fmt.Errorf("iperf3 json: %w", err)
	}
	if j.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", j.Error)
	}
	return j.End.SumReceived.BPS / 1e9, nil
}

// runProbeUntil runs `bench probe` in the client namespace until stop is
// closed (at most limit): for runs whose length depends on how long the
// work under test takes (section 5's reloads and restart).
func (r *rig) runProbeUntil(rate int, limit time.Duration, stop <-chan struct{}) (ProbeSummary, error) {
	self, err := os.Executable()
	if err != nil {
		return ProbeSummary{}, err
	}
	cmd := r.s.Command(r.s.Client(0), self, "probe", "-targets", strings.Join(r.httpTargets(), ","),
		"-rate", fmt.Sprint(rate), "-dur", limit.String(), "-samples", "-until-eof")
	in, err := cmd.StdinPipe()
	if err != nil {
		return ProbeSummary{}, err
	}
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		return ProbeSummary{}, err
	}
	<-stop
	_ = in.Close()
	if err := cmd.Wait(); err != nil {
		return ProbeSummary{}, fmt.Errorf("probe: %w", err)
	}
	var sum ProbeSummary
	if err := json.Unmarshal([]byte(out.String()), &sum); err != nil {
		return sum, fmt.Errorf("probe output: %w", err)
	}
	return sum, nil
}

// runProbe runs `bench probe` in the client namespace.
func (r *rig) runProbe(rate int, d time.Duration, samples bool) (ProbeSummary, error) {
	self, err := os.Executable()
	if err != nil {
		return ProbeSummary{}, err
	}
	args := []string{self, "probe", "-targets", strings.Join(r.httpTargets(), ","),
		"-rate", fmt.Sprint(rate), "-dur", d.String()}
	if samples {
		args = append(args, "-samples")
	}
	out, err := r.s.Output(r.s.Client(0), args...)
	if err != nil {
		return ProbeSummary{}, err
	}
	var sum ProbeSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		return sum, fmt.Errorf("probe output: %w", err)
	}
	return sum, nil
}
