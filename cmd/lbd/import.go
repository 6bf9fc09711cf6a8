package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"lbd/config"
	"lbd/importer"
)

const importUsage = `usage: lbd import [-o FILE] [--config-id ID] keepalived.conf
       lbd import --ipvsadm [-o FILE] FILE      (FILE = output of ipvsadm-save -n)

Prints an lb.toml equivalent to a keepalived.conf (its virtual_server
blocks) or to saved ipvsadm rules. "-" reads standard input (keepalived
includes are then relative to the current directory).

  -o FILE     write the result to FILE (atomically: a temporary file renamed
              over it) instead of standard output
  --ipvsadm   the input is ipvsadm-save -n output, not keepalived.conf
  --config-id ID
              keep keepalived's conditional lines for this machine, as
              keepalived -i ID does: "@ID line" is kept, "@^ID line" dropped
              (keepalived's default id is the host name). Without it every
              conditional line is skipped with a warning

Every setting without an exact lbd equivalent is reported on standard error
as FILE:LINE: warning: ..., once per item; the output never depends on them.
The result is checked as lbd check would before it is written.

What maps:
  virtual_server IP PORT / -A -t|-u VIP:PORT   [[service]] vip, port, protocol
  lb_algo|lvs_sched / -s                       scheduler: rr and wrr -> rr (IPVS rr
                                               ignores weights, so they become 1),
                                               lc/wlc -> lc/wlc when this lbd has
                                               them (else rr), sh -> sh, mh -> sh,
                                               sh|mh with sh-port/mh-port -> mh,
                                               sed/nq/twos -> wlc or rr, dh/lblc/lblcr
                                               -> sh, fo/ovf -> highest weight as
                                               primaries and the rest backup = true
  lb_kind|lvs_method NAT / -m                  snat = false (backends route via lbd)
  lb_kind DR|TUN / -g|-i                       snat = true, with a warning
  persistence_timeout [N] / -p [N]             persistence (default 360s / 300s)
  real_server IP [PORT] / -a -r ADDR           [[service.backend]] address
  weight / -w                                  weight (scaled into 0-1000 if above)
  uthreshold / -x                              backend max_connections
  sorry_server IP [PORT]                       a backend with backup = true
  TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK     health type tcp, http, https, exec
  connect_port, connect_timeout                health port, timeout
  delay_loop                                   health interval (default 60s)
  retry|nb_get_retry                           fall = retry + 1 (rise = 1)
  url { path, status_code, virtualhost }       path, expect_status, host
  misc_path, misc_timeout                      command (argv), timeout
  lvs_timeouts / --set                         [conntrack] timeouts
Warned and approximated: digest, regex, delay_before_retry, quorum,
hysteresis, notify scripts, alpha, DR/TUN, SMTP_CHECK/DNS_CHECK/UDP_CHECK,
sed/nq/dh/lblc/lblcr/fo/ovf. Not imported: fwmark services, SCTP, VRRP.

Exit status: 0 written, 1 the input could not be read or parsed, 2 usage.
`

func cmdImport(args []string, stdout, stderr io.Writer) int {
	return runImport(args, os.Stdin, stdout, stderr)
}

func runImport(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lbd import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // printed below: --help to stdout, a bad flag to stderr
	out := fs.String("o", "", "write to FILE instead of standard output")
	ipvs := fs.Bool("ipvsadm", false, "the input is ipvsadm-save -n output")
	configID := fs.String("config-id", "", "keepalived config id (-i) selecting @ID lines")
	// The input may come before or after the flags.
	var pos []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, importUsage)
				return 0
			}
			fmt.Fprint(stderr, importUsage)
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(pos) != 1 {
		fmt.Fprint(stderr, importUsage)
		return 2
	}
	in := pos[0]
	name, dir := in, filepath.Dir(in)
	var data []byte
	var err error
	if in == "-" {
		name, dir = "<stdin>", "."
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(in)
	}
	if err != nil {
		fmt.Fprintln(stderr, "lbd import:", err)
		return 1
	}
	var res *importer.Result
	if *ipvs {
		res, err = importer.Ipvsadm(name, data, importer.Options{})
	} else {
		res, err = importer.Keepalived(name, data, dir, importer.Options{ConfigID: *configID})
	}
	if err != nil {
		fmt.Fprintln(stderr, "lbd import:", err)
		return 1
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(stderr, w)
	}
	var buf bytes.Buffer
	if err := importer.WriteTOML(&buf, res); err != nil {
		fmt.Fprintln(stderr, "lbd import:", err)
		return 1
	}
	// What we print must be what lbd accepts; a failure here is a bug in
	// the importer, and printing the file anyway would hide it.
	target := *out
	if target == "" {
		target = "<output>"
	}
	if _, err := config.Parse(target, buf.Bytes()); err != nil {
		fmt.Fprintf(stderr, "lbd import: the generated config does not validate (please report this):\n%v\n", err)
		return 1
	}
	if *out == "" {
		if _, err := stdout.Write(buf.Bytes()); err != nil {
			fmt.Fprintln(stderr, "lbd import:", err)
			return 1
		}
	} else if err := writeAtomic(*out, buf.Bytes()); err != nil {
		fmt.Fprintln(stderr, "lbd import:", err)
		return 1
	}
	backends := 0
	for _, s := range res.Services {
		backends += len(s.Backends)
	}
	fmt.Fprintf(stderr, "lbd import: %d services, %d backends, %d warnings\n", len(res.Services), backends, len(res.Warnings))
	return 0
}

// writeAtomic writes data to a temporary file beside path, syncs it and
// renames it over path, so a crash leaves the old file or the new one.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing left
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	// Make the rename itself durable.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
