package console

import (
	"fmt"
	"strings"

	"github.com/gdamore/tcell/v2"
)

// Keys are the page's actions besides quitting; a nil func has no key.
// They are what the appliance's physical console offers an operator (see
// the README's threat model): reload, edit lb.toml and, only when
// [appliance] console_login allows it, a root shell.
type Keys struct {
	// Reload asks the daemon to re-read its config (r). It runs off the
	// page's loop; its line is shown at the bottom of the page.
	Reload func() (string, error)
	// Edit runs `lbd edit` on the terminal (e), with the page suspended.
	Edit func() (string, error)
	// Shell runs a root shell on the terminal (s), with the page
	// suspended, if ShellAllowed says so. ShellAllowed is asked at every
	// refresh, so the hint line follows the config file; a nil
	// ShellAllowed allows nothing.
	Shell        func() error
	ShellAllowed func() (bool, string)
}

func (k Keys) any() bool { return k.Reload != nil || k.Edit != nil || k.Shell != nil }

// footer is the bottom of the page when Keys are set: the last action's
// result and the key hints.
type footer struct {
	msg       string
	msgStyle  style
	reloading bool
	shellOK   bool
	shellWhy  string // why not, when !shellOK
}

func (ft *footer) lines(k Keys) []line {
	if !k.any() {
		return nil
	}
	var out []line
	if ft.msg != "" {
		out = append(out, line{spans: []span{sp(ft.msgStyle, "%s", ft.msg)}})
	}
	var hints []string
	if k.Reload != nil {
		hints = append(hints, "r reload")
	}
	if k.Edit != nil {
		hints = append(hints, "e edit lb.toml")
	}
	if k.Shell != nil && ft.shellOK {
		hints = append(hints, "s shell")
	}
	hints = append(hints, "q quit")
	return append(out, line{spans: []span{sp(dim, "%s", strings.Join(hints, " · "))}})
}

type footerMsg struct {
	text string
	st   style
}

// refreshShell re-reads whether the shell key is allowed.
func (ft *footer) refreshShell(k Keys) {
	ft.shellOK, ft.shellWhy = false, "no root shell on this console"
	if k.Shell != nil && k.ShellAllowed != nil {
		ft.shellOK, ft.shellWhy = k.ShellAllowed()
	}
}

func (ft *footer) set(st style, format string, a ...any) {
	ft.msg, ft.msgStyle = fmt.Sprintf(format, a...), st
}

// keyRune is the rune of a plain key press, 0 for anything else.
func keyRune(ev *tcell.EventKey) rune {
	if ev.Key() != tcell.KeyRune || ev.Modifiers()&(tcell.ModCtrl|tcell.ModAlt) != 0 {
		return 0
	}
	return ev.Rune()
}

// handleKey runs the action of ev, if it has one. Edit and Shell take the
// terminal: the screen is suspended (tcell restores the tty modes) while
// they run, then resumed and fully redrawn. Reload runs on a goroutine and
// reports on reloaded, so a slow daemon never freezes the page.
func handleKey(scr tcell.Screen, ev *tcell.EventKey, k Keys, ft *footer, reloaded chan<- footerMsg) bool {
	switch keyRune(ev) {
	case 'r', 'R':
		if k.Reload == nil {
			return false
		}
		if ft.reloading {
			return true
		}
		ft.reloading = true
		ft.set(plain, "reload: asking lbd to re-read its config…")
		go func() {
			msg, err := k.Reload()
			if err != nil {
				reloaded <- footerMsg{"reload failed: " + err.Error(), bad}
				return
			}
			reloaded <- footerMsg{"reload: " + msg, good}
		}()
		return true
	case 'e', 'E':
		if k.Edit == nil {
			return false
		}
		var msg string
		var err error
		suspended(scr, func() { msg, err = k.Edit() })
		if err != nil {
			ft.set(bad, "edit: %v", err)
		} else {
			ft.set(good, "edit: %s", msg)
		}
		ft.refreshShell(k)
		return true
	case 's', 'S':
		if k.Shell == nil {
			return false
		}
		ft.refreshShell(k)
		if !ft.shellOK {
			ft.set(warn, "no shell: %s", ft.shellWhy)
			return true
		}
		var err error
		suspended(scr, func() { err = k.Shell() })
		if err != nil {
			ft.set(bad, "shell: %v", err)
		} else {
			ft.set(plain, "shell ended")
		}
		return true
	}
	return false
}

func suspended(scr tcell.Screen, f func()) {
	_ = scr.Suspend()
	defer func() {
		_ = scr.Resume()
		scr.Sync()
	}()
	f()
}
