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
restarts; with [bgp] SIGTERM first withdraws every VIP and waits like
lbd drain-node. With [bgp] lbd runs BIRD 2 (bird in PATH) as its child,
with its config, control socket and pid file beside --socket.
Only one lbd runs per network namespace.
Environment: LBD_STATE_DIR (state directory), LBD_DEBUG=1 (debug logs),
LBD_CPUPROFILE=FILE / LBD_MEMPROFILE=FILE (Go CPU and allocation profiles
written at exit, for the benchmarks).
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
	"ping": `usage: lbd ping [--socket PATH]

The cheap readiness question, for scripts (a keepalived track script, a
boot-complete check, a benchmark waiting for a cold start): exit 0 and one
line when the daemon answers, holds a config and the kernel is in sync;
exit 1 with the reason otherwise. Unlike status it reads no counters and
walks no conntrack table, so it stays instant at 100,000 services.
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
