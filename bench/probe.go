package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// The probe is an open-loop, rate-limited HTTP client: every 1/rate it
// starts one request on a new TCP connection ("Connection: close"),
// whatever happened to the earlier ones, and times it from its scheduled
// start (so a stall is charged to every request it delays: no coordinated
// omission). wrk has no fixed-rate mode and wrk2 is not in Debian, hence
// this. The bench re-executes itself as `bench probe ...` inside the client
// namespace.

// Sample is one probe request.
type Sample struct {
	At      int64  `json:"at"`  // scheduled start, unix ns
	Lat     int64  `json:"lat"` // ns until the whole answer was read
	Backend string `json:"be,omitempty"`
	Err     string `json:"err,omitempty"`
}

// ProbeSummary is what `bench probe` prints last.
type ProbeSummary struct {
	Sent    int      `json:"sent"`
	Failed  int      `json:"failed"`
	P50     float64  `json:"p50_ms"`
	P90     float64  `json:"p90_ms"`
	P99     float64  `json:"p99_ms"`
	Max     float64  `json:"max_ms"`
	Samples []Sample `json:"samples,omitempty"`
}

func probeMain(args []string) int {
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	targets := fs.String("targets", "", "comma-separated host:port list, used in turn")
	rate := fs.Int("rate", 1000, "new connections per second")
	dur := fs.Duration("dur", 5*time.Second, "how long to send")
	timeout := fs.Duration("timeout", 2*time.Second, "per-request timeout")
	keep := fs.Bool("samples", false, "print every sample (failover analysis)")
	untilEOF := fs.Bool("until-eof", false, "also stop sending when stdin reaches end of file (-dur is then the upper bound)")
	_ = fs.Parse(args)
	tl := strings.Split(*targets, ",")
	if *targets == "" || *rate <= 0 || *rate > 20000 || *dur > 10*time.Minute {
		fmt.Fprintln(os.Stderr, "probe: bad arguments")
		return 2
	}
	var stop chan struct{}
	if *untilEOF {
		stop = make(chan struct{})
		go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(stop) }()
	}
	sum := runProbe(tl, *rate, *dur, *timeout, stop)
	if !*keep {
		sum.Samples = nil
	}
	_ = json.NewEncoder(os.Stdout).Encode(sum)
	return 0
}

// runProbe sends for dur, or until stop is closed (nil: never).
func runProbe(targets []string, rate int, dur, timeout time.Duration, stop <-chan struct{}) ProbeSummary {
	interval := time.Second / time.Duration(rate)
	n := int(dur / interval)
	samples := make([]Sample, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		select {
		case <-stop:
			n = i
		default:
		}
		if i == n {
			break
		}
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func(i int, at time.Time) {
			defer wg.Done()
			be, err := oneRequest(targets[i%len(targets)], timeout)
			s := Sample{At: at.UnixNano(), Lat: int64(time.Since(at)), Backend: be}
			if err != nil {
				s.Err = err.Error()
			}
			samples[i] = s
		}(i, at)
	}
	wg.Wait()
	samples = samples[:n]
	sum := ProbeSummary{Sent: n, Samples: samples}
	var lats []float64
	for _, s := range samples {
		if s.Err != "" {
			sum.Failed++
			continue
		}
		lats = append(lats, float64(s.Lat)/1e6)
	}
	sort.Float64s(lats)
	if len(lats) > 0 {
		sum.P50 = quantile(lats, 0.50)
		sum.P90 = quantile(lats, 0.90)
		sum.P99 = quantile(lats, 0.99)
		sum.Max = lats[len(lats)-1]
	}
	return sum
}

// oneRequest does GET / on a new connection and returns the first word of
// the body (the backend's name).
func oneRequest(addr string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(bufio.NewReader(c))
	if err != nil {
		return "", err
	}
	head, body, ok := strings.Cut(string(b), "\r\n\r\n")
	if !ok || !strings.HasPrefix(head, "HTTP/1.1 200") {
		return "", fmt.Errorf("bad answer %q", firstLine(string(b)))
	}
	f := strings.Fields(body)
	if len(f) == 0 {
		return "", fmt.Errorf("empty body")
	}
	return f[0], nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(l)
}

// quantile of sorted xs (nearest rank).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	i := int(q*float64(len(xs))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(xs) {
		i = len(xs) - 1
	}
	return xs[i]
}
