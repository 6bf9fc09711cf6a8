package main

// Help texts of the commands that share main.go's flag set (the others
// carry theirs beside their code). `lbd CMD --help` prints them on stdout
// and exits 0.
var commandHelp = map[string]string{
	"run": `usage: lbd run [--config FILE] [--socket PATH]

Runs the daemon in the foreground: loads FILE (a broken file at start
falls back to the last good copy in the state directory), programs table
inet lbd, runs the health checks and answers on the control socket.
systemd Type=notify: READY, STATUS, RELOADING, WATCHDOG (when WatchdogSec
is set, keep-alives come from the sync loop). SIGHUP reloads; SIGTERM and
SIGINT exit leaving the data plane in place, so traffic flows on while lbd
restarts. Only one lbd runs per network namespace.
Environment: LBD_STATE_DIR (state directory), LBD_DEBUG=1 (debug logs).
`,
	"check": `usage: lbd check [--config FILE | FILE]

Validates FILE without a daemon. Exit 0 when valid; otherwise prints every
error as FILE:LINE:COL: key.path: what is wrong; expected ..., and exits 1.
`,
	"reload": `usage: lbd reload [--diff] [--socket PATH]

Asks the daemon to re-read its config. Exit 0 once the kernel holds the new
config (and says which runtime throttles it lifted); otherwise prints the
errors and exits 1: the running config stays untouched. --diff first
prints what the reload changes (see lbd diff).
`,
	"throttle": `usage: lbd throttle SERVICE RATE|off [--socket PATH]

Emergency new-connection rate for one service, e.g. 100/s or 30/m, in force
until lifted with 'off' or until the next reload. Answers once the kernel
holds it.
`,
	"console": `usage: lbd console [--once] [--socket PATH]

The full-screen status page (tty1 of the image), with graphs. --once prints
one 80x24 frame and exits. Keys: r reload, e edit lb.toml, s root shell
(only with [appliance] console_login = true), q quit.
`,
}
