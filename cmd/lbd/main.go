// Command lbd is the whole appliance: `lbd run` is the daemon, the other
// subcommands talk to it over its control socket or check a config file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"lbd/appliance/control"
	"lbd/appliance/notify"
	"lbd/appliance/status"
	"lbd/config"
	"lbd/daemon"
)

// version is set by the Makefile (-X main.version=...).
var version = "dev"

const usage = `lbd — declarative NAT load balancer

usage:
  lbd run     [--config FILE] [--socket PATH]   run the daemon in the foreground
  lbd check   [--config FILE | FILE]            validate a config; every error as FILE:LINE:COL
  lbd reload  [--diff] [--socket PATH]          re-read the config of the running daemon (--diff: show the change first)
  lbd ping    [--socket PATH]                   exit 0 when the daemon is up, configured and in sync
  lbd status  [--stats] [--rate] [-w] [--json]  the live table (ipvsadm -Ln [--stats|--rate])
  lbd throttle SERVICE RATE|off [--socket PATH] emergency new-connection rate, e.g. 100/s
  lbd console [--once] [--socket PATH]          full-screen status page
  lbd drain SERVICE BACKEND [--timeout D]       no new flows to BACKEND; waits for its flows to end
  lbd undrain SERVICE BACKEND                   lift a runtime drain
  lbd drain-node [--timeout D]                  [bgp]: withdraw every VIP, wait for the router to move away
  lbd undrain-node                              [bgp]: announce the healthy VIPs again
  lbd conns [SERVICE] [--backend B]             tracked connections (ipvsadm -Lnc)
  lbd flush SERVICE|--backend B|--all [--yes]   delete tracked connections ("clear the NAT table")
  lbd diff [--config FILE]                      what a reload would change, changing nothing
  lbd edit [--config FILE]                      edit the config on the box: validate, save atomically, diff, reload
  lbd import  [--ipvsadm] [-o FILE] FILE|-      lb.toml from keepalived.conf or ipvsadm-save -n
  lbd ha release|resume [--timeout D]           pair ([ha]): hand the VIPs to the peer, wait until it is master
  lbd update  FILE | --status                   appliance: install an update bundle into the other slot; show both slots
  lbd appliance-setup [--config FILE]           appliance: hostname and serial login from [appliance] (before lbd run)
  lbd version

defaults: --config ` + config.DefaultPath + `, --socket ` + control.DefaultSocket + `
`

func main() {
	stopProfiles := startProfiles()
	code := realMain(os.Args[1:], os.Stdout, os.Stderr)
	stopProfiles()
	os.Exit(code)
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	if wantsHelp(rest) {
		// Help asked for is output, not an error: every command's usage
		// goes to stdout and the command exits 0.
		stderr = stdout
	}
	fs := flag.NewFlagSet("lbd "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", config.DefaultPath, "config file")
	socket := fs.String("socket", control.DefaultSocket, "control socket")
	once := fs.Bool("once", false, "print one frame and exit (console)")
	showDiff := fs.Bool("diff", false, "print what the reload changes first (reload)")
	switch cmd {
	case "import": // own flags (-o, --ipvsadm)
		return cmdImport(rest, stdout, stderr)
	case "drain":
		return cmdDrain(rest, stdout, stderr)
	case "ha":
		return cmdHA(rest, stdout, stderr)
	case "undrain":
		return cmdUndrain(rest, stdout, stderr)
	case "drain-node":
		return cmdDrainNode(rest, stdout, stderr)
	case "undrain-node":
		return cmdUndrainNode(rest, stdout, stderr)
	case "conns":
		return cmdConns(rest, stdout, stderr)
	case "flush":
		return cmdFlush(rest, os.Stdin, stdout, stderr)
	case "diff":
		return cmdDiff(rest, stdout, stderr)
	case "edit":
		return cmdEdit(rest, stdout, stderr)
	case "update":
		return cmdUpdate(rest, stdout, stderr)
	case "appliance-setup":
		return cmdApplianceSetup(rest, stdout, stderr)
	case "status":
		return cmdStatusView(rest, stdout, stderr)
	case "-h", "--help", "help":
		if len(rest) == 1 && rest[0] == "--man" {
			return cmdHelpMan(stdout) // hidden: the Debian package's man page
		}
		fmt.Fprint(stdout, usage)
		return 0
	case "completion": // hidden: the Debian package's bash completion
		return cmdCompletion(rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "lbd", version)
		return 0
	}
	help, known := commandHelp[cmd]
	if known {
		fs.Usage = func() { fmt.Fprint(stderr, help) }
	}
	// Positional arguments may come before or after flags.
	var pos []string
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	switch cmd {
	case "run":
		return cmdRun(*cfgPath, *socket, stderr)
	case "check":
		// `lbd check FILE` as well as `lbd check --config FILE`.
		if len(pos) > 1 {
			fmt.Fprint(stderr, commandHelp[cmd])
			return 2
		}
		if len(pos) == 1 {
			*cfgPath = pos[0]
		}
		return cmdCheck(*cfgPath, stdout, stderr)
	case "reload":
		if *showDiff && printDiff(*socket, "", stdout, stderr) != 0 {
			return 1
		}
		return cmdReload(*socket, stdout, stderr)
	case "throttle":
		return cmdThrottle(*socket, pos, stdout, stderr)
	case "ping":
		return cmdPing(*socket, stdout, stderr)
	case "console":
		return cmdConsole(*socket, *once, stdout, stderr)
	}
	fmt.Fprintf(stderr, "lbd: unknown command %q\n\n%s", cmd, usage)
	return 2
}

func cmdRun(cfgPath, socket string, stderr io.Writer) int {
	log := newLogger(stderr)
	dropAmbientCaps(log)
	d := daemon.New(daemon.Options{ConfigPath: cfgPath, SocketPath: socket, Version: version, Logger: log, Notify: systemdNotifier(log),
		TestHooks: os.Getenv("LBD_TEST_HOOKS") == "1"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		if err := notify.Watchdog(ctx, d.Healthy, func(err error) { log.Warn("watchdog", "err", err) }); err != nil {
			log.Warn("watchdog", "err", err)
		}
	}()
	if err := d.Run(ctx); err != nil {
		log.Error("lbd run failed", "err", err)
		return 1
	}
	return 0
}

func cmdCheck(cfgPath string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		var es config.Errors
		if errors.As(err, &es) {
			for _, e := range es {
				fmt.Fprintln(stderr, e.Error())
			}
			fmt.Fprintf(stderr, "%s: %d error(s)\n", cfgPath, len(es))
		} else {
			fmt.Fprintln(stderr, err)
		}
		return 1
	}
	backends := 0
	for _, s := range cfg.Services {
		backends += len(s.Backends)
	}
	fmt.Fprintf(stdout, "%s: OK (%d services, %d backends, %d interfaces)\n", cfgPath, len(cfg.Services), backends, len(cfg.Interfaces))
	return 0
}

func cmdReload(socket string, stdout, stderr io.Writer) int {
	resp, err := control.Call(socket, control.Request{Command: "reload"}, 2*time.Minute)
	if err != nil {
		fmt.Fprintln(stderr, "lbd reload:", err)
		return 1
	}
	if !resp.OK {
		fmt.Fprintln(stderr, "lbd reload:", resp.Message)
		for _, e := range resp.Errors {
			fmt.Fprintln(stderr, e)
		}
		return 1
	}
	fmt.Fprintln(stdout, resp.Message)
	return 0
}

func cmdThrottle(socket string, pos []string, stdout, stderr io.Writer) int {
	if len(pos) != 2 {
		fmt.Fprintln(stderr, "usage: lbd throttle SERVICE RATE|off   (RATE like 100/s, 30/m)")
		return 2
	}
	resp, err := control.Call(socket, control.Request{Command: "throttle", Args: pos}, 30*time.Second)
	if err != nil {
		fmt.Fprintln(stderr, "lbd throttle:", err)
		return 1
	}
	if !resp.OK {
		for _, e := range resp.Errors {
			fmt.Fprintln(stderr, "lbd throttle:", e)
		}
		return 1
	}
	fmt.Fprintln(stdout, resp.Message)
	return 0
}

func fetchStatus(socket string) (status.Snapshot, error) {
	resp, err := control.Call(socket, control.Request{Command: "status"}, 10*time.Second)
	if err != nil {
		return status.Snapshot{}, err
	}
	if resp.Status == nil {
		return status.Snapshot{}, errors.New("daemon sent no status")
	}
	return *resp.Status, nil
}

func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}
