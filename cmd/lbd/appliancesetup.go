package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"lbd/appliance/host"
	"lbd/config"
	"lbd/daemon"
)

const applianceSetupUsage = `usage: lbd appliance-setup [--config FILE]

The appliance's privileged set-up (lbd-setup.service, beside lbd.service,
so lbd run itself needs no CAP_SYS_ADMIN): reads FILE like lbd run does (an
invalid file: the last good copy in the state directory) and
  - sets the kernel's hostname to [appliance] hostname, if given;
  - starts the root login on the serial console (lbd-serial-login.service)
    when [appliance] console_login = true.
Without a readable config it changes nothing. Exit 0 unless a step failed.
`

func cmdApplianceSetup(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lbd appliance-setup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, applianceSetupUsage); fs.PrintDefaults() }
	cfgPath := fs.String("config", config.DefaultPath, "config file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		dir := os.Getenv("LBD_STATE_DIR")
		if dir == "" {
			dir = daemon.DefaultStateDir
		}
		lg := filepath.Join(dir, "last-good.toml")
		good, lgErr := config.Load(lg)
		if lgErr != nil {
			fmt.Fprintf(stdout, "lbd appliance-setup: %s does not load and there is no last good copy: hostname and console login unchanged\n", *cfgPath)
			return 0
		}
		fmt.Fprintf(stdout, "lbd appliance-setup: %s does not load: using the last good copy %s\n", *cfgPath, lg)
		cfg = good
	}
	rc := 0
	name, err := host.ApplyHostname(cfg, os.Hostname, syscall.Sethostname)
	switch {
	case err != nil:
		fmt.Fprintln(stderr, "lbd appliance-setup:", err)
		rc = 1
	case name != "":
		fmt.Fprintf(stdout, "lbd appliance-setup: hostname %s ([appliance] hostname)\n", name)
	}
	if cfg.Appliance.ConsoleLogin {
		fmt.Fprintln(stdout, "lbd appliance-setup: console_login = true: root login on ttyS0")
		if out, err := exec.Command("systemctl", "start", "--no-block", "lbd-serial-login.service").CombinedOutput(); err != nil {
			fmt.Fprintf(stderr, "lbd appliance-setup: systemctl start lbd-serial-login.service: %v: %s\n", err, strings.TrimSpace(string(out)))
			rc = 1
		}
	}
	return rc
}
