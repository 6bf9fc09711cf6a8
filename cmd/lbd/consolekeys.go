package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"

	"lbd/appliance/console"
	"lbd/appliance/control"
	"lbd/appliance/status"
	"lbd/config"
)

// consoleRun is the full-screen page with its keys: r reload, e lbd edit,
// s root shell when [appliance] console_login = true. On the appliance it
// runs on tty1, where whoever stands at the machine is the admin (see the
// README's threat model); console_login only decides whether that admin
// also gets a shell, or just lb.toml.
func consoleRun(socket string) error {
	var mu sync.Mutex
	cfgPath := config.DefaultPath
	// The daemon says which file it serves; e edits that one and s reads
	// console_login from it.
	fetch := func() (status.Snapshot, error) {
		snap, err := fetchStatus(socket)
		if err == nil && snap.Config.Path != "" {
			mu.Lock()
			cfgPath = snap.Config.Path
			mu.Unlock()
		}
		return snap, err
	}
	path := func() string {
		mu.Lock()
		defer mu.Unlock()
		return cfgPath
	}
	keys := console.Keys{
		Reload: func() (string, error) { return consoleReload(socket) },
		Edit:   func() (string, error) { return consoleEdit(path(), socket) },
		Shell:  consoleShell,
		ShellAllowed: func() (bool, string) {
			return shellAllowed(path())
		},
	}
	return console.RunKeys(context.Background(), fetch, keys)
}

func consoleReload(socket string) (string, error) {
	resp, err := control.Call(socket, control.Request{Command: "reload"}, 2*time.Minute)
	if err != nil {
		return "", err
	}
	if !resp.OK {
		msg := resp.Message
		if len(resp.Errors) > 0 {
			msg = resp.Errors[0]
			if n := len(resp.Errors) - 1; n > 0 {
				msg += fmt.Sprintf(" (and %d more: lbd status)", n)
			}
		}
		return "", errors.New(msg)
	}
	return resp.Message, nil
}

// shellAllowed reads console_login from the config file on disk. A file
// that does not parse gives no shell: the gate fails closed.
func shellAllowed(path string) (bool, string) {
	cfg, err := config.Load(path)
	if err != nil {
		return false, path + " does not validate, so console_login is not known (fix it with e)"
	}
	if !cfg.Appliance.ConsoleLogin {
		return false, "[appliance] console_login = false in " + path
	}
	return true, ""
}

// restrictedEditor is the editor of e while the console offers no shell:
// nano's restricted mode cannot run commands, open or write other files,
// or suspend to a shell, so e gives lb.toml and nothing more.
func restrictedEditor() (string, error) {
	p, err := exec.LookPath("nano")
	if err != nil {
		return "", errors.New("no nano in the image: editing from the console needs its restricted mode")
	}
	return p + " --restricted", nil
}

// consoleEdit runs `lbd edit` on the console's terminal and waits for
// Enter afterwards, so its diff and reload result can be read before the
// page comes back.
func consoleEdit(path, socket string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(exe, "edit", "--config", path, "--socket", socket)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	env := os.Environ()
	if ok, _ := shellAllowed(path); !ok {
		ed, err := restrictedEditor()
		if err != nil {
			return "", err
		}
		env = append(env, "EDITOR="+ed) // the last one wins; $EDITOR from outside is ignored
	}
	cmd.Env = env
	fmt.Print("\x1b[H\x1b[2J") // lbd edit's messages start on a clean screen
	runErr := cmd.Run()
	fmt.Print("\nPress Enter to return to the status page.")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	if runErr != nil {
		return "", fmt.Errorf("lbd edit: %v: nothing applied (its output said why)", runErr)
	}
	return "saved, diff shown, reloaded", nil
}

// consoleShell runs a login shell as the console's user (root on tty1).
func consoleShell() error {
	sh := "/bin/bash"
	if _, err := os.Stat(sh); err != nil {
		sh = "/bin/sh"
	}
	fmt.Print("\x1b[H\x1b[2J" + "Root shell (console_login = true). Type exit to return to the status page.\n")
	cmd := exec.Command(sh, "-l")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = os.Environ()
	if os.Getenv("HOME") == "" {
		cmd.Env = append(cmd.Env, "HOME=/root")
	}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil // the shell's last command failed; the shell itself ended fine
		}
		return fmt.Errorf("%s: %w", sh, err)
	}
	return nil
}
