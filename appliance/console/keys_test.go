package console

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdamore/tcell/v2"

	"lbd/appliance/status"
)

// suspendScreen records whether the page handed the terminal over.
type suspendScreen struct {
	*recordingScreen
	mu        sync.Mutex
	suspended bool
	log       []string
}

func (s *suspendScreen) Suspend() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.suspended = true
	s.log = append(s.log, "suspend")
	return nil
}

func (s *suspendScreen) Resume() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.suspended = false
	s.log = append(s.log, "resume")
	return nil
}

func (s *suspendScreen) isSuspended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.suspended
}

// startKeys runs the page with keys; stop ends it and waits.
func startKeys(t *testing.T, k Keys) (scr *suspendScreen, stop func()) {
	t.Helper()
	scr = &suspendScreen{recordingScreen: newScreen(t)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	fetch := func() (status.Snapshot, error) { return fixedSnapshot(), nil }
	go func() { done <- runKeys(ctx, scr, fetch, time.Millisecond, k) }()
	return scr, func() {
		cancel()
		for {
			select {
			case <-done:
				return
			case <-scr.frames:
			}
		}
	}
}

// frameWith waits for a frame showing every one of want.
func frameWith(t *testing.T, scr *suspendScreen, want ...string) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case f := <-scr.frames:
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(f, w)
			}
			if ok {
				return f
			}
		case <-deadline:
			t.Fatalf("no frame shows %q", want)
			return ""
		}
	}
}

// r reloads and shows the daemon's answer on the bottom line, a failure
// too; the hint line names the keys there are.
func TestKeyReload(t *testing.T) {
	answers := make(chan error, 2)
	answers <- nil
	answers <- errors.New("/config/lb.toml:4:8: service[0].port: 99999 out of range")
	var calls int
	var mu sync.Mutex
	scr, stop := startKeys(t, Keys{Reload: func() (string, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		if err := <-answers; err != nil {
			return "", err
		}
		return "config reloaded (2 services)", nil
	}})
	defer stop()

	f := frameWith(t, scr, "r reload · q quit")
	if lines := strings.Split(strings.TrimRight(f, "\n"), "\n"); len(lines) != 24 || !strings.HasPrefix(lines[23], "r reload") {
		t.Errorf("the hint is not on the last of 24 rows:\n%s", f)
	}
	scr.InjectKey(tcell.KeyRune, 'r', tcell.ModNone)
	frameWith(t, scr, "reload: config reloaded (2 services)")
	scr.InjectKey(tcell.KeyRune, 'r', tcell.ModNone)
	frameWith(t, scr, "reload failed: /config/lb.toml:4:8: service[0].port: 99999 out of range")
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Errorf("Reload called %d times, want 2", calls)
	}
}

// e runs the editor with the page suspended, then resumes and says how it
// ended.
func TestKeyEditSuspends(t *testing.T) {
	var scr *suspendScreen
	ranSuspended := make(chan bool, 1)
	scr, stop := startKeys(t, Keys{
		Reload: func() (string, error) { return "", nil },
		Edit: func() (string, error) {
			ranSuspended <- scr.isSuspended()
			return "written, diff shown, reloaded", nil
		},
	})
	defer stop()
	frameWith(t, scr, "r reload · e edit lb.toml · q quit")
	scr.InjectKey(tcell.KeyRune, 'e', tcell.ModNone)
	frameWith(t, scr, "edit: written, diff shown, reloaded")
	if !<-ranSuspended {
		t.Error("Edit ran while the page still held the terminal")
	}
	scr.mu.Lock()
	defer scr.mu.Unlock()
	if strings.Join(scr.log, ",") != "suspend,resume" {
		t.Errorf("screen calls %q, want suspend then resume", scr.log)
	}
}

// s gives a shell only while console_login allows it: with it off the
// hint does not offer one and the key says why; once allowed (the config
// changed), s runs the shell with the page suspended.
func TestKeyShellGatedByConsoleLogin(t *testing.T) {
	var mu sync.Mutex
	allowed := false
	shells := 0
	var scr *suspendScreen
	scr, stop := startKeys(t, Keys{
		Reload: func() (string, error) { return "", nil },
		Shell: func() error {
			mu.Lock()
			defer mu.Unlock()
			if !scr.isSuspended() {
				t.Error("Shell ran while the page held the terminal")
			}
			shells++
			return nil
		},
		ShellAllowed: func() (bool, string) {
			mu.Lock()
			defer mu.Unlock()
			return allowed, "console_login = false in /config/lb.toml"
		},
	})
	defer stop()

	f := frameWith(t, scr, "r reload · q quit")
	if strings.Contains(f, "s shell") {
		t.Errorf("shell offered with console_login = false:\n%s", f)
	}
	scr.InjectKey(tcell.KeyRune, 's', tcell.ModNone)
	frameWith(t, scr, "no shell: console_login = false in /config/lb.toml")
	mu.Lock()
	if shells != 0 {
		t.Errorf("shell ran %d times with console_login = false", shells)
	}
	allowed = true
	mu.Unlock()

	frameWith(t, scr, "r reload · s shell · q quit")
	scr.InjectKey(tcell.KeyRune, 's', tcell.ModNone)
	frameWith(t, scr, "shell ended")
	mu.Lock()
	defer mu.Unlock()
	if shells != 1 {
		t.Errorf("shell ran %d times, want 1", shells)
	}
}

// Without Keys the page is exactly Render (no hint line): lbd console on a
// terminal other than tty1 stays as it was.
func TestNoKeysNoFooter(t *testing.T) {
	var ft footer
	if l := ft.lines(Keys{}); l != nil {
		t.Errorf("footer without keys: %v", l)
	}
}
