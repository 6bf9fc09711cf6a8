package console

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/gdamore/tcell/v2"

	"lbd/appliance/status"
)

// refresh is how often the page fetches a new snapshot.
const refresh = time.Second

// tcellStyle maps page styles to terminal styles; tcell drops colours the
// terminal lacks (the Linux console has 8), leaving the words.
var tcellStyle = map[style]tcell.Style{
	plain: tcell.StyleDefault,
	bold:  tcell.StyleDefault.Bold(true),
	good:  tcell.StyleDefault.Foreground(tcell.ColorGreen),
	bad:   tcell.StyleDefault.Foreground(tcell.ColorRed).Bold(true),
	warn:  tcell.StyleDefault.Foreground(tcell.ColorYellow),
	dim:   tcell.StyleDefault.Dim(true),
}

// Run shows the page full-screen on the controlling terminal, fetching a
// snapshot every second, until ctx ends or the user presses q, Esc or
// Ctrl-C. A failing fetch shows its error on the page and is retried.
// fetch runs off the input loop, so a slow daemon never delays quitting.
func Run(ctx context.Context, fetch func() (status.Snapshot, error)) error {
	scr, err := tcell.NewScreen()
	if err != nil {
		return fmt.Errorf("console: open terminal: %w", err)
	}
	if err := scr.Init(); err != nil {
		return fmt.Errorf("console: init terminal: %w", err)
	}
	defer scr.Fini()
	return run(ctx, scr, fetch, refresh)
}

// RunKeys is Run with the action keys k (reload, edit, shell) and their
// hint line at the bottom of the page.
func RunKeys(ctx context.Context, fetch func() (status.Snapshot, error), k Keys) error {
	scr, err := tcell.NewScreen()
	if err != nil {
		return fmt.Errorf("console: open terminal: %w", err)
	}
	if err := scr.Init(); err != nil {
		return fmt.Errorf("console: init terminal: %w", err)
	}
	defer scr.Fini()
	return runKeys(ctx, scr, fetch, refresh, k)
}

// result is one fetch outcome.
type result struct {
	snap status.Snapshot
	err  error
	at   time.Time
}

// run is Run on a given screen and period, so tests can drive a tcell
// simulation screen.
func run(ctx context.Context, scr tcell.Screen, fetch func() (status.Snapshot, error), every time.Duration) error {
	return runKeys(ctx, scr, fetch, every, Keys{})
}

func runKeys(ctx context.Context, scr tcell.Screen, fetch func() (status.Snapshot, error), every time.Duration, keys Keys) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	events := make(chan tcell.Event, 16)
	quit := make(chan struct{})
	defer close(quit)
	go scr.ChannelEvents(events, quit)

	results := make(chan result, 1)
	go fetchLoop(ctx, fetch, every, results)

	var last *result
	hist := &history{vt: linuxVT()}
	ft := &footer{}
	ft.refreshShell(keys)
	reloaded := make(chan footerMsg, 1)
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-results:
			last = &r
			if r.err == nil {
				hist.add(r.snap, r.at)
			}
			ft.refreshShell(keys)
			paint(scr, last, hist, ft.lines(keys))
		case m := <-reloaded:
			ft.reloading = false
			ft.set(m.st, "%s", m.text)
			paint(scr, last, hist, ft.lines(keys))
		case ev, ok := <-events:
			if !ok {
				return nil // screen finalised under us
			}
			switch ev := ev.(type) {
			case *tcell.EventKey:
				if quits(ev) {
					return nil
				}
				if handleKey(scr, ev, keys, ft, reloaded) {
					paint(scr, last, hist, ft.lines(keys))
				}
			case *tcell.EventResize:
				scr.Sync()
				if last != nil {
					paint(scr, last, hist, ft.lines(keys))
				}
			}
		}
	}
}

// fetchLoop fetches at once and then every period; one fetch at a time.
func fetchLoop(ctx context.Context, fetch func() (status.Snapshot, error), every time.Duration, out chan<- result) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		snap, err := fetch()
		select {
		case out <- result{snap: snap, err: err, at: time.Now()}:
		case <-ctx.Done():
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

func quits(ev *tcell.EventKey) bool {
	switch ev.Key() {
	case tcell.KeyCtrlC, tcell.KeyEscape:
		return true
	case tcell.KeyRune:
		return ev.Rune() == 'q' || ev.Rune() == 'Q'
	}
	return false
}

// linuxVT reports whether the page is on the Linux virtual console (tty1 of
// the appliance), whose built-in font lacks most block elements.
func linuxVT() bool { return os.Getenv("TERM") == "linux" }

// paint draws the frame for r on the whole screen, with graphs from h and
// the footer lines (key hints, last action) at the bottom; r is nil before
// the first fetch.
func paint(scr tcell.Screen, r *result, hist *history, foot []line) {
	w, h := scr.Size()
	f := &frame{}
	switch {
	case r == nil:
	case r.err != nil:
		f = errorFrame(r.err, r.at, w)
	default:
		f = build(r.snap, w, hist)
	}
	f.fit(h - len(foot))
	if len(foot) > 0 {
		for len(f.lines) < h-len(foot) {
			f.add(kindOther) // the footer sits on the last rows
		}
		f.lines = append(f.lines, foot...)
	}
	scr.Clear()
	for y, l := range f.lines {
		x := 0
		for _, s := range clip(l.spans, w) {
			for _, c := range s.text {
				scr.SetContent(x, y, c, nil, tcellStyle[s.st])
				x++
			}
		}
	}
	scr.Show()
}
