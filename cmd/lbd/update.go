package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"lbd/appliance/update"
	"lbd/internal/configfile"
)

const updateUsage = `usage: lbd update FILE [--tries N]
       lbd update --status
       lbd update --from-config FILE
       lbd update --boot-check [--timeout D] [--socket PATH]
       lbd update --boot-sync

Appliance A/B updates (see image/README.md, "Updates and rollback").
FILE is an update bundle (out/lbd-update.bundle of make image): a tar of
manifest.json, the root squashfs and the unified kernel image (UKI), each
with its SHA-256. lbd update FILE checks the whole bundle, then writes it
into the slot that is not running (partition LBROOT_A or LBROOT_B and
EFI/Linux/lbd-SLOT+N.efi on the ESP) and prints what to do next: reboot.
systemd-boot then boots the new slot (it has the newest version) N times
(--tries, default 1); the boot is marked good once lbd is READY with a
config applied, and a slot that never gets there is dropped: the other
slot boots again by itself. Refused before anything is written: a corrupt
bundle, a version not newer than the running one, a running slot that is
itself still on trial.

--status       both slots: version, good / new / on trial / bad, which runs
--from-config  install FILE if it exists (the bundle dropped next to
               lb.toml), remove it and reboot; a bundle that is refused is
               renamed FILE.refused (lbd-update-config.service at boot)
--boot-check   on a trial boot, wait until lbd is READY with a config
               applied (exit 0: boot-complete.target, the boot is blessed).
               It fails when lbd.service restarted 3 times without READY,
               systemd gave up on it, lbd ran a minute with no config
               applied, or --timeout (10m) passed: then it marks this boot
               bad with systemd-bless-boot, keeps why in
               /var/lib/lbd/last-failed-trial.txt and exits 1
               (lbd-boot-check.service reboots then). Not a trial boot:
               exit 0 at once. Under legacy BIOS it also renames the
               entry itself (good or bad), as systemd-bless-boot cannot.
--boot-sync    at boot: on a legacy BIOS boot of a slot on trial, use one
               of its tries (what systemd-boot does under UEFI:
               lbd-b+1.efi -> lbd-b+0-1.efi) and start boot-complete.target
               (the boot check), once per boot (lbd-boot-sync.service,
               early, on BIOS trial boots: lbd.bios_trial on the kernel
               command line, which syslinux.cfg gives a slot with tries
               left); on every run point syslinux.cfg's
               DEFAULT at the slot systemd-boot would boot, so the disk
               boots the same slot with UEFI or legacy BIOS
               (lbd-slots.service, after lbd, and after
               systemd-bless-boot).

Legacy BIOS (SeaBIOS, the default of Proxmox VE and VirtualBox): on images
with syslinux on the ESP, lbd update also writes the new slot's kernel and
initrd (from its UKI) to ESP/syslinux/ and refuses, before writing, when
the ESP has no room for them. Older images (no syslinux) boot with UEFI
only; the BIOS files are skipped with a note.
`

// trialNote keeps why the last trial boot failed, on the state partition.
const trialNote = "/var/lib/lbd/last-failed-trial.txt"

// serviceState reads a few properties of a unit (systemctl show).
func serviceState(unit string) map[string]string {
	m := map[string]string{}
	out, err := exec.Command("systemctl", "show", unit, "-p", "ActiveState,SubState,NRestarts,Result,StatusText").Output()
	if err != nil {
		return m
	}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// blessBoot is systemd's tool behind boot counting (Debian: systemd-boot).
const blessBoot = "/lib/systemd/systemd-bless-boot"

func cmdUpdate(args []string, stdout, stderr io.Writer) int {
	fs, socket := newFlags("update", updateUsage, stderr)
	showStatus := fs.Bool("status", false, "show both slots")
	fromConfig := fs.Bool("from-config", false, "install FILE if present, remove it, reboot")
	bootCheck := fs.Bool("boot-check", false, "gate boot-complete.target on lbd READY")
	bootSync := fs.Bool("boot-sync", false, "count a legacy BIOS trial boot; point syslinux at the slot to boot")
	timeout := fs.Duration("timeout", 10*time.Minute, "how long --boot-check waits at most")
	tries := fs.Int("tries", 1, "trial boots of the new slot before it is given up")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	l := update.Default
	countMark := bootCountMark
	startCheck := func() error {
		out, err := exec.Command("systemctl", "start", "--no-block", "boot-complete.target").CombinedOutput()
		if err != nil {
			return fmt.Errorf("systemctl start boot-complete.target: %w: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if v := os.Getenv("LBD_UPDATE_ROOT"); v != "" {
		// Tests: the ESP, partitions and command line under one directory.
		l = update.Layout{ESP: filepath.Join(v, "efi"), PartDir: filepath.Join(v, "parts"), Cmdline: filepath.Join(v, "cmdline"), EFIVars: filepath.Join(v, "efivars")}
		countMark = filepath.Join(v, "boot-counted")
		startCheck = func() error { fmt.Fprintln(stdout, "(LBD_UPDATE_ROOT: boot-complete.target not started)"); return nil }
	}
	switch {
	case *showStatus && len(pos) == 0:
		return updateStatus(l, stdout, stderr)
	case *bootSync && len(pos) == 0:
		return updateBootSync(l, countMark, startCheck, stdout, stderr)
	case *bootCheck && len(pos) == 0:
		return updateBootCheck(l, *socket, *timeout, stdout, stderr)
	case *fromConfig && len(pos) == 1:
		return updateFromConfig(l, pos[0], *tries, stdout, stderr)
	case !*showStatus && !*bootCheck && !*fromConfig && !*bootSync && len(pos) == 1:
		b, err := update.Open(pos[0])
		if err != nil {
			fmt.Fprintln(stderr, "lbd update:", err)
			return 1
		}
		fmt.Fprintf(stdout, "bundle %s: version %s (lbd %s), checksums OK\n", pos[0], b.Manifest.Version, b.Manifest.LBD)
		res, err := l.Install(b, *tries, stdout)
		if err != nil {
			fmt.Fprintln(stderr, "lbd update:", err)
			return 1
		}
		fmt.Fprintf(stdout, "reboot to run %s from slot %s (slot %s with %s stays the fallback)\n", res.Version, res.Slot, update.Other(res.Slot), orDashStr(res.From))
		return 0
	}
	fs.Usage()
	return 2
}

func orDashStr(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func updateStatus(l update.Layout, stdout, stderr io.Writer) int {
	st, err := l.Status()
	if err != nil {
		fmt.Fprintln(stderr, "lbd update:", err)
		return 1
	}
	printSlots(stdout, l, st)
	return 0
}

func printSlots(w io.Writer, l update.Layout, st update.Status) {
	fmt.Fprintf(w, "%-6s %-9s %-28s %-22s %s\n", "SLOT", "PARTITION", "VERSION", "ENTRY", "STATE")
	for _, s := range st.Slots {
		name := s.Name
		if s.Booted {
			name += " *"
		}
		entry := s.Entry.File
		if entry == "" {
			entry = "-"
		}
		state := s.Entry.State()
		if s.Booted && st.Trial {
			// systemd-boot counted this boot down already (lbd-b+0-1.efi
			// reads as no tries left): it is the trial itself.
			state = "on trial: this boot, good once lbd is READY with a config applied"
		}
		fmt.Fprintf(w, "%-6s %-9s %-28s %-22s %s\n", name, s.PartLabel, orDashStr(s.Version), entry, state)
		if s.Err != "" {
			fmt.Fprintf(w, "       ! %s\n", s.Err)
		}
	}
	if st.Booted == "" {
		fmt.Fprintln(w, "* none: the running system was not booted from a slot")
		return
	}
	img := "unknown image"
	if b, err := os.ReadFile("/usr/lib/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "IMAGE_VERSION="); ok {
				img = "image " + strings.Trim(v, `"'`)
			}
		}
	}
	fmt.Fprintf(w, "* = running: slot %s (root=PARTLABEL=%s%s), %s\n", st.Booted, update.PartPrefix, strings.ToUpper(st.Booted), img)
	fmt.Fprintln(w, firmwareLine(l))
	if o := st.Slot(update.Other(st.Booted)); o.Entry.Counting && o.Entry.TriesLeft == 0 {
		fmt.Fprintf(w, "ROLLED BACK: slot %s (%s) failed its trial boot and is given up; slot %s runs instead (install a fixed bundle to replace it)\n",
			o.Name, orDashStr(o.Version), st.Booted)
		if b, err := os.ReadFile(trialNote); err == nil {
			fmt.Fprintf(w, "why (%s): %s", trialNote, b)
		}
	}
}

// updateFromConfig installs a bundle dropped on the config partition.
// Every line goes to stdout, which the unit sends to the console.
func updateFromConfig(l update.Layout, path string, tries int, stdout, stderr io.Writer) int {
	if _, err := os.Stat(path); err != nil {
		return 0
	}
	say := func(f string, a ...any) { fmt.Fprintf(stdout, "lbd-update: "+f+"\n", a...) }
	if l.Trial() {
		say("%s waits: this boot is still on trial (installed once it is marked good)", path)
		return 0
	}
	var w configfile.Writer
	b, err := update.Open(path)
	if err == nil {
		say("%s: version %s (lbd %s), checksums OK", path, b.Manifest.Version, b.Manifest.LBD)
		_, err = l.Install(b, tries, prefixWriter{stdout})
	}
	if err != nil {
		say("update refused: %v", err)
		if rerr := w.Rename(path, filepath.Base(path)+".refused"); rerr != nil {
			say("could not rename it: %v", rerr)
		} else {
			say("renamed to %s.refused", path)
		}
		return 1
	}
	if err := w.Remove(path); err != nil {
		// Installed but still there: the next boot would install it into
		// the other slot again. Better not reboot into that loop.
		say("installed, but removing %s failed: %v; remove it, then reboot", path, err)
		return 1
	}
	say("installed; %s removed; rebooting into the new slot", path)
	if out, err := exec.Command("systemctl", "reboot", "--no-block").CombinedOutput(); err != nil {
		say("systemctl reboot: %v: %s", err, strings.TrimSpace(string(out)))
		return 1
	}
	return 0
}

type prefixWriter struct{ w io.Writer }

func (p prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			fmt.Fprint(p.w, "lbd-update: "+line)
		}
	}
	return len(b), nil
}

// updateBootCheck gates boot-complete.target on a trial boot.
func updateBootCheck(l update.Layout, socket string, timeout time.Duration, stdout, stderr io.Writer) int {
	say := func(f string, a ...any) { fmt.Fprintf(stdout, "lbd-boot-check: "+f+"\n", a...) }
	if !l.Trial() {
		say("not a trial boot: nothing to check")
		return 0
	}
	st, _ := l.Status()
	me := st.Slot(st.Booted)
	other := st.Slot(update.Other(st.Booted))
	say("slot %s (%s) is on trial: waiting up to %s for lbd READY with a config applied", st.Booted, orDashStr(me.Version), timeout)
	// Not ordered after lbd.service: a start that keeps failing keeps its
	// start job (and anything ordered after it) waiting as long as systemd
	// restarts it. So this watches lbd.service instead: a few restarts
	// without READY, or systemd giving up, end the trial early; a slow
	// machine that merely takes long does not.
	t0 := time.Now()
	why := ""
	var activeSince time.Time
	for {
		snap, err := fetchStatus(socket)
		switch {
		case err != nil:
			why = "lbd does not answer: " + err.Error()
		case snap.Config.LoadedAt.IsZero():
			why = "lbd runs but has no config applied"
			if snap.Config.LastError != "" {
				why += ": " + snap.Config.LastError
			}
		default:
			say("slot %s (%s): lbd READY with %s applied, %s after this check started: this boot is good", st.Booted, orDashStr(me.Version), snap.Config.Path, time.Since(t0).Round(time.Second))
			if !l.UEFI() {
				// systemd-bless-boot needs systemd-boot's EFI variables.
				e, sync, err := l.MarkBIOSBoot(true)
				if err != nil {
					say("legacy BIOS: marking the entry good failed: %v", err)
					return 1
				}
				say("legacy BIOS: entry renamed to %s (good); syslinux boots slot %s next", e.File, orDashStr(sync.Default))
			}
			return 0
		}
		svc := serviceState("lbd.service")
		if n, _ := strconv.Atoi(svc["NRestarts"]); n >= 3 {
			why = fmt.Sprintf("lbd.service failed to start %d times", n+1)
			break
		}
		if svc["ActiveState"] == "failed" {
			why = "systemd gave up starting lbd.service"
			break
		}
		if svc["ActiveState"] == "active" && activeSince.IsZero() {
			activeSince = time.Now()
		}
		if !activeSince.IsZero() && time.Since(activeSince) > time.Minute {
			break
		}
		if time.Since(t0) >= timeout {
			why = fmt.Sprintf("not READY after %s: %s", timeout, why)
			break
		}
		time.Sleep(2 * time.Second)
	}
	if svc := serviceState("lbd.service"); len(svc) > 0 {
		why += fmt.Sprintf(" (lbd.service: %s/%s, result %s, %s restarts", svc["ActiveState"], svc["SubState"], svc["Result"], svc["NRestarts"])
		if svc["StatusText"] != "" {
			why += ", status \"" + svc["StatusText"] + "\""
		}
		why += ")"
	}
	say("slot %s (%s) FAILED its trial boot: %s", st.Booted, orDashStr(me.Version), why)
	// The journal is in memory: keep the reason on the state partition
	// for the console of the boot that follows (lbd update --status).
	note := fmt.Sprintf("%s slot %s (%s) failed its trial boot: %s\n", time.Now().UTC().Format(time.RFC3339), st.Booted, orDashStr(me.Version), why)
	if err := os.WriteFile(trialNote, []byte(note), 0o644); err != nil {
		say("could not keep the reason in %s: %v", trialNote, err)
	}
	if !l.UEFI() {
		e, sync, err := l.MarkBIOSBoot(false)
		if err != nil {
			say("legacy BIOS: marking the entry bad failed: %v", err)
		}
		say("marked bad (%s); rebooting: syslinux falls back to slot %s (%s)", e.File, orDashStr(sync.Default), orDashStr(other.Version))
		return 1
	}
	// The ESP is an automount: open it first, and name it (as the drop-in
	// of systemd-bless-boot.service does) rather than have the tool search.
	_, _ = os.ReadDir(filepath.Join(l.ESP, update.EntryDir))
	bless := exec.Command(blessBoot, "bad")
	bless.Env = append(os.Environ(), "SYSTEMD_ESP_PATH="+l.ESP)
	if out, err := bless.CombinedOutput(); err != nil {
		say("systemd-bless-boot bad: %v: %s", err, strings.TrimSpace(string(out)))
	}
	say("marked bad; rebooting: systemd-boot falls back to slot %s (%s)", other.Name, orDashStr(other.Version))
	return 1
}

// bootCountMark records in /run that this boot's BIOS try was counted, so
// a second --boot-sync in the same boot counts nothing.
const bootCountMark = "/run/lbd-boot-counted"

// firmwareLine says how this boot started and what boots next.
func firmwareLine(l update.Layout) string {
	fw := "firmware: legacy BIOS (syslinux)"
	if l.UEFI() {
		fw = "firmware: UEFI (systemd-boot)"
	}
	if !l.HasSyslinux() {
		return fw + "; the ESP has no syslinux: this disk boots with UEFI only"
	}
	return fw + "; under legacy BIOS syslinux boots slot " + orDashStr(l.BIOSDefault()) + " next"
}

// updateBootSync runs early at every boot (lbd-boot-sync.service, before
// lbd and the boot check): the legacy BIOS boot counting, then
// syslinux.cfg in line with the entries.
func updateBootSync(l update.Layout, mark string, startCheck func() error, stdout, stderr io.Writer) int {
	say := func(f string, a ...any) { fmt.Fprintf(stdout, "lbd-boot-sync: "+f+"\n", a...) }
	c, err := l.CountBIOSBoot(mark)
	if err != nil {
		fmt.Fprintln(stderr, "lbd update --boot-sync:", err)
		return 1
	}
	if c.Counted {
		say("legacy BIOS trial boot of slot %s: one try used (%s -> %s)", c.To.Slot, c.From.File, c.To.File)
	}
	switch {
	case c.SyncErr != nil:
		say("%v", c.SyncErr)
	case c.Sync.Changed:
		say("syslinux.cfg rewritten: legacy BIOS boots slot %s next", c.Sync.Default)
	}
	if !c.UEFI && c.First && l.Trial() {
		// Under UEFI systemd-bless-boot-generator puts boot-complete.target
		// (and so the boot check) into a counted boot; nothing does under
		// BIOS. --no-block: the check is ordered after this unit.
		say("trial boot: starting the boot check (boot-complete.target)")
		if err := startCheck(); err != nil {
			say("%v", err)
			return 1
		}
	}
	if c.SyncErr != nil {
		return 1
	}
	return 0
}
