package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"lbd/appliance/httpstatus"
	"lbd/appliance/status"
)

const statusUsage = `usage: lbd status [--stats] [--rate] [-w|--watch] [--json] [--socket PATH]

The live table, one line per service and per backend, like 'ipvsadm -Ln':
protocol, VIP:port, scheduler and flags; then each backend with its state
(UP, DOWN, DRAIN, UNCHECKED), weight, slots, active connections and last
check.
  --stats   adds counters: per service new flows and their first-packet
            bytes since the service was created, refusals by reason; per
            service and backend the traffic since lbd started, as
            'ipvsadm -Ln --stats': Conns (flows, ended + live), InPkts,
            OutPkts, InBytes, OutBytes (in = from clients; K/M/G = 10^3..)
  --rate    adds per-second rates over the last --window (10s; like
            --rate): new flows/s, first-packet bytes/s, refusals/s; and per
            service and backend CPS, InPPS, OutPPS, InBPS, OutBPS. Without
            --watch it samples, waits --window, samples again and prints
  --watch   redraws every --interval (2s) until Ctrl-C; with --rate each
            frame's rates cover the --window before it (shorter while the
            watch is younger than the window)
  --json    the status document, byte for byte the same as /status.json
`

func cmdStatusView(args []string, stdout, stderr io.Writer) int {
	fs, socket := newFlags("status", statusUsage, stderr)
	asJSON := fs.Bool("json", false, "the status document as JSON")
	stats := fs.Bool("stats", false, "add counters")
	rate := fs.Bool("rate", false, "add per-second rates over the last --window")
	watch := fs.Bool("watch", false, "redraw every --interval")
	fs.BoolVar(watch, "w", false, "short for --watch")
	interval := fs.Duration("interval", 2*time.Second, "redraw interval for --watch")
	window := fs.Duration("window", 10*time.Second, "the span --rate measures over")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil || len(pos) > 0 || *interval <= 0 || *window <= 0 {
		fs.Usage()
		return 2
	}
	snap, err := fetchStatus(*socket)
	if err != nil {
		fmt.Fprintln(stderr, "lbd status:", err)
		return 1
	}
	if *asJSON {
		// The same bytes as /status.json.
		if err := httpstatus.EncodeJSON(stdout, snap); err != nil {
			fmt.Fprintln(stderr, "lbd status:", err)
			return 1
		}
		return 0
	}
	if !*watch {
		var prev *status.Snapshot
		if *rate {
			p := snap
			prev = &p
			time.Sleep(*window)
			if snap, err = fetchStatus(*socket); err != nil {
				fmt.Fprintln(stderr, "lbd status:", err)
				return 1
			}
		}
		printTable(stdout, snap, *stats, prev)
		return 0
	}
	// Watching: keep the samples of the last window, so each frame's
	// rates cover the window before it.
	var history []status.Snapshot
	for {
		history = append(history, snap)
		for len(history) > 1 && snap.Now.Sub(history[1].Now) >= *window {
			history = history[1:]
		}
		var prev *status.Snapshot
		if *rate && len(history) > 1 {
			prev = &history[0]
		}
		fmt.Fprint(stdout, "\x1b[H\x1b[2J") // home, clear
		printTable(stdout, snap, *stats, prev)
		time.Sleep(*interval)
		if snap, err = fetchStatus(*socket); err != nil {
			fmt.Fprintln(stderr, "lbd status:", err)
			return 1
		}
	}
}

// endpoint spells ip:port with brackets around IPv6 addresses.
func endpoint(ip string, port int) string {
	if a, err := netip.ParseAddr(ip); err == nil {
		return netip.AddrPortFrom(a, uint16(port)).String()
	}
	return fmt.Sprintf("%s:%d", ip, port)
}

func refusedTotal(r status.Refusals) uint64 {
	return r.NoBackend + r.MaxConnections + r.Rate + r.PerClientRate + r.PerClientConns + r.Denied + r.ThrottleRefused
}

// printTable writes the ipvsadm-like table. prev, when set, is the sample
// --rate divides by.
func printTable(w io.Writer, s status.Snapshot, stats bool, prev *status.Snapshot) {
	fmt.Fprintf(w, "lbd %s on %s, config %s loaded %s\n", s.Version, s.Hostname, s.Config.Path, s.Config.LoadedAt.Format(time.RFC3339))
	if s.Config.Source != "" {
		fmt.Fprintf(w, "  SERVING THE LAST GOOD CONFIG: %s\n", s.Config.Source)
	}
	for _, e := range s.Config.LastErrors {
		fmt.Fprintf(w, "  CONFIG ERROR: %s\n", e)
	}
	for _, warn := range s.Warnings {
		fmt.Fprintf(w, "  WARNING: %s\n", warn)
	}
	if s.HA != nil {
		fmt.Fprintf(w, "  %s\n", s.HA.Line(s.Now))
	}
	printBGP(w, s.BGP)
	var dt float64
	before := map[string]status.Service{}
	if prev != nil {
		dt = s.Now.Sub(prev.Now).Seconds()
		fmt.Fprintf(w, "  rates per second over the last %.1fs\n", dt)
		for _, p := range prev.Services {
			before[p.Name] = p
		}
	}
	// Widths shared by every block, so the table reads as one.
	aw := len("Backend")
	for _, svc := range s.Services {
		for _, b := range svc.Backends {
			aw = max(aw, len(b.Address))
		}
	}
	row := func(addr, state, weight, slots, active, traffic, check string) string {
		return strings.TrimRight(fmt.Sprintf("  -> %-*s  %-9s  %6s  %5s  %10s%s  %s", aw, addr, state, weight, slots, active, traffic, check), " ")
	}
	// trafficCols are the --stats and --rate columns of a service or
	// backend: totals, then rates against its sample in prev.
	trafficCols := func(tr status.Traffic, was *status.Traffic) string {
		var c string
		if stats {
			c += fmt.Sprintf("  %6s %6s %7s %7s %8s", human(float64(tr.Connections)), human(float64(tr.PacketsIn)),
				human(float64(tr.PacketsOut)), human(float64(tr.BytesIn)), human(float64(tr.BytesOut)))
		}
		if prev != nil && dt > 0 {
			if was == nil {
				was = &status.Traffic{}
			}
			per := func(now, then uint64) string {
				if now < then { // counters restarted with lbd
					then = 0
				}
				return human(float64(now-then) / dt)
			}
			c += fmt.Sprintf("  %6s %6s %7s %7s %8s", per(tr.Connections, was.Connections), per(tr.PacketsIn, was.PacketsIn),
				per(tr.PacketsOut, was.PacketsOut), per(tr.BytesIn, was.BytesIn), per(tr.BytesOut, was.BytesOut))
		}
		return c
	}
	var heads []string
	if stats {
		heads = append(heads, fmt.Sprintf("  %6s %6s %7s %7s %8s", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"))
	}
	if prev != nil {
		heads = append(heads, fmt.Sprintf("  %6s %6s %7s %7s %8s", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"))
	}
	fmt.Fprintln(w, "Prot VIP:Port Scheduler Flags [Service]"+map[bool]string{true: "  NewFlows FirstBytes Refused", false: ""}[stats]+
		map[bool]string{true: "  Flows/s Bytes/s Refused/s", false: ""}[prev != nil])
	fmt.Fprintln(w, row("Backend", "State", "Weight", "Slots", "ActiveConn", strings.Join(heads, ""), "Last check"))
	for _, svc := range s.Services {
		flags := "nat"
		if svc.SNAT {
			flags = "snat"
		}
		if svc.Throttle != "" {
			flags += " THROTTLED " + svc.Throttle
		}
		line := fmt.Sprintf("%-4s %s %s %s [%s]", strings.ToUpper(svc.Protocol), endpoint(svc.VIP, svc.Port), svc.Scheduler, flags, svc.Name)
		if stats {
			line += fmt.Sprintf("  %d %d %d", svc.Packets, svc.Bytes, refusedTotal(svc.Refused))
		}
		if prev != nil && dt > 0 {
			b := before[svc.Name]
			line += fmt.Sprintf("  %.1f %.0f %.1f", float64(svc.Packets-b.Packets)/dt, float64(svc.Bytes-b.Bytes)/dt,
				float64(refusedTotal(svc.Refused)-refusedTotal(b.Refused))/dt)
		}
		fmt.Fprintln(w, line)
		if stats || prev != nil {
			var was *status.Traffic
			if b, ok := before[svc.Name]; ok {
				was = &b.Traffic
			}
			// The service's traffic (its backends' sum), aligned with
			// the backends' columns below it.
			fmt.Fprintln(w, strings.Replace(row("all backends", "", "", "", "", trafficCols(svc.Traffic, was), ""), "->", "  ", 1))
		}
		if r := svc.Refused; stats && refusedTotal(r) > 0 {
			fmt.Fprintf(w, "     refused: no_backend %d, max_connections %d, rate %d, per_client_rate %d, per_client_connections %d, denied %d, throttle %d\n",
				r.NoBackend, r.MaxConnections, r.Rate, r.PerClientRate, r.PerClientConns, r.Denied, r.ThrottleRefused)
		}
		for _, b := range svc.Backends {
			check := b.LastCheck
			if b.LastCheckLatency > 0 {
				check += fmt.Sprintf(" (%s)", time.Duration(b.LastCheckLatency*float64(time.Second)).Round(time.Microsecond))
			}
			if b.Backup {
				check += " backup"
			}
			if b.Drain != nil {
				check += " runtime-drain"
				if !b.Drain.Done.IsZero() {
					check += "(done)"
				}
			}
			var was *status.Traffic
			for _, pb := range before[svc.Name].Backends {
				if pb.Address == b.Address {
					was = &pb.Traffic
				}
			}
			fmt.Fprintln(w, row(b.Address, strings.ToUpper(b.State), fmt.Sprint(b.Weight), fmt.Sprint(b.Slots),
				fmt.Sprint(b.ActiveConnections), trafficCols(b.Traffic, was), strings.TrimSpace(check)))
		}
	}
}

// human shortens a count or rate the way ipvsadm does: exact below 100,000,
// then K, M, G, T in powers of 1000 with three significant digits. Rates
// below 10 keep one decimal so a trickle does not read as zero.
func human(v float64) string {
	switch {
	case v < 10 && v != float64(uint64(v)):
		return fmt.Sprintf("%.1f", v)
	case v < 100000:
		return fmt.Sprintf("%.0f", v)
	}
	for _, u := range []string{"K", "M", "G", "T"} {
		v /= 1000
		if v < 1000 || u == "T" {
			if v < 100 {
				return fmt.Sprintf("%.1f%s", v, u)
			}
			return fmt.Sprintf("%.0f%s", v, u)
		}
	}
	return ""
}
