package update

// Legacy BIOS boot (SeaBIOS, the default firmware of Proxmox VE and
// VirtualBox VMs). The same disk boots both ways: the protective MBR holds
// syslinux's gptmbr.bin, which starts the volume boot record of the
// partition with the GPT "legacy BIOS bootable" attribute (the ESP), where
// syslinux is installed (ESP/syslinux/ldlinux.sys). syslinux cannot run a
// unified kernel image, so the ESP also carries each slot's kernel and
// initrd, taken out of its UKI (syslinux/lbd-SLOT.linux, .initrd), and
// syslinux.cfg has one LABEL per slot with the UKI's command line.
//
// The A/B state stays where systemd-boot keeps it: in the names of the UKIs
// (lbd-b+1.efi, lbd-b+0-1.efi, lbd-b.efi). syslinux.cfg is only a view of
// it: its DEFAULT is the slot systemd-boot would boot from the same names
// (SyncBIOS). syslinux cannot count, so under BIOS lbd does early in
// userspace what systemd-boot does before it boots a counted entry
// (CountBIOSBoot: one try less, then DEFAULT goes back to the good slot),
// and what systemd-bless-boot does once the boot is judged (MarkBIOSBoot).
// A kernel that never reaches userspace is not counted (see image/README.md).

import (
	"bytes"
	"debug/pe"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// SyslinuxDir is syslinux's directory on the ESP: ldlinux.sys and
// ldlinux.c32 (installed by the image build), syslinux.cfg and the slots'
// kernels and initrds (written by lbd).
const SyslinuxDir = "syslinux"

const (
	syslinuxCfg = "syslinux.cfg"
	ldlinuxSys  = "ldlinux.sys"
)

// BIOSKernel and BIOSInitrd name a slot's files in SyslinuxDir.
func BIOSKernel(slot string) string { return "lbd-" + slot + ".linux" }

// BIOSInitrd is the initrd of slot in SyslinuxDir.
func BIOSInitrd(slot string) string { return "lbd-" + slot + ".initrd" }

// UEFI reports whether this system was booted by UEFI firmware: the EFI
// variables exist (/sys/firmware/efi is absent on a BIOS boot).
func (l Layout) UEFI() bool {
	if l.EFIVars == "" {
		return false
	}
	fi, err := os.Stat(l.EFIVars)
	return err == nil && fi.IsDir()
}

// HasSyslinux reports whether the ESP is set up for BIOS boot. Images from
// before BIOS support have no syslinux (and a 48 MiB ESP): lbd update then
// writes no BIOS files.
func (l Layout) HasSyslinux() bool {
	_, err := os.Stat(filepath.Join(l.ESP, SyslinuxDir, ldlinuxSys))
	return err == nil
}

// ukiSection reads one PE section of the UKI file at path without reading
// the rest (the kernel and initrd are most of it).
func ukiSection(path, name string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pf, err := pe.NewFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: not a PE/EFI image: %w", path, err)
	}
	s := pf.Section(name)
	if s == nil {
		return nil, fmt.Errorf("%s: no %s section (not a unified kernel image)", path, name)
	}
	n := s.Size
	if s.VirtualSize != 0 && s.VirtualSize < n {
		n = s.VirtualSize
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, int64(s.Offset)); err != nil {
		return nil, fmt.Errorf("%s: %s section: %w", path, name, err)
	}
	return b, nil
}

// bootable is one slot's entry as systemd-boot weighs it.
type bootable struct {
	Entry   Entry
	Version string
}

// chooseSlot is systemd-boot's choice among the entries (boot_entry_compare
// of systemd 252, for type #2 entries that all have IMAGE_ID=lbd as sort
// key): entries with tries left (or no counter) before those without, then
// the newest IMAGE_VERSION, then the file name (newest first). "" if none.
func chooseSlot(bs []bootable) string {
	if len(bs) == 0 {
		return ""
	}
	sorted := append([]bootable(nil), bs...)
	bad := func(b bootable) bool { return b.Entry.Counting && b.Entry.TriesLeft == 0 }
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if bad(a) != bad(b) {
			return !bad(a)
		}
		if c := CompareVersions(a.Version, b.Version); c != 0 {
			return c > 0
		}
		return CompareVersions(a.Entry.File, b.Entry.File) > 0
	})
	return sorted[0].Entry.Slot
}

// bootables reads each slot's entry and version (its first entry, as
// Status does).
func (l Layout) bootables() ([]bootable, error) {
	ents, err := l.entries()
	if err != nil {
		return nil, err
	}
	var bs []bootable
	for _, s := range Slots {
		if len(ents[s]) == 0 {
			continue
		}
		e := ents[s][0]
		b := bootable{Entry: e}
		if osr, err := ukiSection(filepath.Join(l.ESP, EntryDir, e.File), ".osrel"); err == nil {
			b.Version = parseOSRelease(osr)["IMAGE_VERSION"]
		}
		bs = append(bs, b)
	}
	return bs, nil
}

// BootNext is the slot systemd-boot would boot next, from the entries on
// the ESP.
func (l Layout) BootNext() (string, error) {
	bs, err := l.bootables()
	if err != nil {
		return "", err
	}
	return chooseSlot(bs), nil
}

// BIOSSync says what SyncBIOS did.
type BIOSSync struct {
	Default string   // the slot syslinux boots next
	Labels  []string // slots syslinux.cfg lists
	Changed bool     // syslinux.cfg was rewritten
}

// TrialArg is added to the kernel command line of a slot syslinux would
// boot on trial (its entry has tries left): lbd-boot-sync.service runs
// before lbd only on such boots (ConditionKernelCommandLine), so an
// ordinary BIOS boot does not wait for the ESP and a first lbd run.
const TrialArg = "lbd.bios_trial"

// renderSyslinux is syslinux.cfg for the slots in cmdlines (slot ->
// kernel command line), booting def.
func renderSyslinux(def string, cmdlines map[string]string) []byte {
	var b bytes.Buffer
	b.WriteString(`# Legacy BIOS boot of the lbd appliance (syslinux). Written by lbd: do not
# edit (lbd update and every boot rewrite it). DEFAULT is the slot
# systemd-boot would boot from the entries in EFI/Linux (see
# image/README.md, "Legacy BIOS"). To pick a slot by hand, hold Shift while
# syslinux starts and type its label at the boot: prompt.
PROMPT 0
TIMEOUT 0
`)
	fmt.Fprintf(&b, "DEFAULT lbd-%s\n", def)
	for _, s := range Slots {
		cl, ok := cmdlines[s]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "\nLABEL lbd-%s\n", s)
		fmt.Fprintf(&b, "\tLINUX /%s/%s\n", SyslinuxDir, BIOSKernel(s))
		fmt.Fprintf(&b, "\tINITRD /%s/%s\n", SyslinuxDir, BIOSInitrd(s))
		fmt.Fprintf(&b, "\tAPPEND %s\n", cl)
	}
	return b.Bytes()
}

// SyncBIOS rewrites syslinux.cfg (atomically, only when it changes) so
// that syslinux boots the slot systemd-boot would, listing every slot that
// has an entry and its BIOS kernel and initrd. Without syslinux on the ESP
// it does nothing and returns a zero BIOSSync.
func (l Layout) SyncBIOS() (BIOSSync, error) {
	var res BIOSSync
	if !l.HasSyslinux() {
		return res, nil
	}
	bs, err := l.bootables()
	if err != nil {
		return res, err
	}
	dir := filepath.Join(l.ESP, SyslinuxDir)
	cmdlines := map[string]string{}
	var usable []bootable
	for _, b := range bs {
		s := b.Entry.Slot
		if !fileExists(filepath.Join(dir, BIOSKernel(s))) || !fileExists(filepath.Join(dir, BIOSInitrd(s))) {
			continue
		}
		cl, err := ukiSection(filepath.Join(l.ESP, EntryDir, b.Entry.File), ".cmdline")
		if err != nil {
			continue
		}
		cmdlines[s] = strings.TrimSpace(string(bytes.TrimRight(cl, "\x00")))
		if b.Entry.Counting && b.Entry.TriesLeft > 0 {
			cmdlines[s] += " " + TrialArg
		}
		usable = append(usable, b)
		res.Labels = append(res.Labels, s)
	}
	res.Default = chooseSlot(usable)
	if res.Default == "" {
		return res, errors.New("legacy BIOS: no slot has an entry with its kernel and initrd in " + dir)
	}
	want := renderSyslinux(res.Default, cmdlines)
	path := filepath.Join(dir, syslinuxCfg)
	if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, want) {
		return res, nil
	}
	if err := replaceFile(path, want); err != nil {
		return res, fmt.Errorf("legacy BIOS: %w", err)
	}
	res.Changed = true
	return res, nil
}

// BIOSDefault reads the DEFAULT slot of syslinux.cfg ("" without one).
func (l Layout) BIOSDefault() string {
	b, err := os.ReadFile(filepath.Join(l.ESP, SyslinuxDir, syslinuxCfg))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.EqualFold(f[0], "DEFAULT") {
			if s, ok := strings.CutPrefix(f[1], "lbd-"); ok && validSlot(s) {
				return s
			}
		}
	}
	return ""
}

// bootedEntry is the entry of the slot the running system booted from.
func (l Layout) bootedEntry() (Entry, bool, error) {
	slot, err := l.BootedSlot()
	if err != nil || slot == "" {
		return Entry{}, false, err
	}
	ents, err := l.entries()
	if err != nil {
		return Entry{}, false, err
	}
	if len(ents[slot]) == 0 {
		return Entry{}, false, nil
	}
	return ents[slot][0], true, nil
}

// renameEntry renames an entry in EntryDir to the counter given (left < 0:
// no counter, a good entry) and returns the new entry.
func (l Layout) renameEntry(e Entry, left, done int) (Entry, error) {
	name := "lbd-" + e.Slot + ".efi"
	if left >= 0 {
		name = fmt.Sprintf("lbd-%s+%d-%d.efi", e.Slot, left, done)
		if done == 0 {
			name = fmt.Sprintf("lbd-%s+%d.efi", e.Slot, left)
		}
	}
	dir := filepath.Join(l.ESP, EntryDir)
	if name == e.File {
		return e, nil
	}
	if err := os.Rename(filepath.Join(dir, e.File), filepath.Join(dir, name)); err != nil {
		return e, fmt.Errorf("ESP: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return e, fmt.Errorf("ESP: %w", err)
	}
	ne, _ := ParseEntry(name)
	return ne, nil
}

// BIOSCount says what CountBIOSBoot did.
type BIOSCount struct {
	Counted    bool  // a try was used
	From, To   Entry // the booted entry before and after
	Sync       BIOSSync
	SyncErr    error
	UEFI       bool // nothing to count: systemd-boot counts
	NotCounted bool // booted slot has no counter (a good slot) or is no slot
	// First is true on the first run in this boot under BIOS (no mark
	// yet): the run that counts and starts the boot check.
	First bool
}

// CountBIOSBoot runs early on every boot. On a BIOS boot of a slot on
// trial with tries left it does what systemd-boot does before booting a
// counted entry: one try less (lbd-b+1.efi -> lbd-b+0-1.efi). It does so
// once per boot: mark is a file in /run created by the first run. On
// every boot (UEFI too) it then brings syslinux.cfg in line with the
// entries (SyncBIOS), so after the count syslinux boots the good slot
// again unless this boot is marked good first.
func (l Layout) CountBIOSBoot(mark string) (BIOSCount, error) {
	var res BIOSCount
	res.UEFI = l.UEFI()
	if !res.UEFI {
		e, ok, err := l.bootedEntry()
		if err != nil {
			return res, err
		}
		res.From, res.To = e, e
		res.First = !fileExists(mark)
		switch {
		case !ok || !e.Counting:
			res.NotCounted = true
		case e.TriesLeft > 0 && res.First:
			ne, err := l.renameEntry(e, e.TriesLeft-1, e.TriesDone+1)
			if err != nil {
				return res, err
			}
			res.To, res.Counted = ne, true
		}
		if res.First {
			if err := os.WriteFile(mark, []byte(res.To.File+"\n"), 0o644); err != nil {
				return res, fmt.Errorf("%s: %w", mark, err)
			}
		}
	}
	res.Sync, res.SyncErr = l.SyncBIOS()
	return res, nil
}

// MarkBIOSBoot judges a BIOS trial boot, as systemd-bless-boot does under
// UEFI: good renames the booted entry to lbd-SLOT.efi, bad to
// lbd-SLOT+0-DONE.efi (no tries left); then syslinux.cfg follows
// (SyncBIOS). The booted entry must have a counter.
func (l Layout) MarkBIOSBoot(good bool) (Entry, BIOSSync, error) {
	e, ok, err := l.bootedEntry()
	if err != nil {
		return e, BIOSSync{}, err
	}
	if !ok || !e.Counting {
		return e, BIOSSync{}, errors.New("the booted slot has no counted entry: not a trial boot")
	}
	left, done := -1, 0
	if !good {
		left, done = 0, e.TriesDone
		if done == 0 {
			done = 1
		}
	}
	ne, err := l.renameEntry(e, left, done)
	if err != nil {
		return e, BIOSSync{}, err
	}
	s, err := l.SyncBIOS()
	return ne, s, err
}

// biosFiles takes the kernel and initrd out of a UKI.
func biosFiles(uki []byte) (kernel, initrd []byte, err error) {
	if kernel, _, err = section(uki, ".linux"); err != nil {
		return nil, nil, err
	}
	if initrd, _, err = section(uki, ".initrd"); err != nil {
		return nil, nil, err
	}
	return kernel, initrd, nil
}

// espFree is the free space on the ESP's file system, in bytes.
func espFree(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("ESP: %w", err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// slotFiles lists the ESP files of slot: its entries and its BIOS files.
func (l Layout) slotFiles(slot string) ([]string, error) {
	ents, err := l.entries()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents[slot] {
		out = append(out, filepath.Join(l.ESP, EntryDir, e.File))
	}
	for _, n := range []string{BIOSKernel(slot), BIOSInitrd(slot)} {
		p := filepath.Join(l.ESP, SyslinuxDir, n)
		if fileExists(p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// checkESPSpace refuses, before anything is written, an update whose ESP
// files do not fit: the UKI, and with syslinux also its kernel and initrd
// (together smaller than the UKI they come from, so twice the UKI's size
// is the bound), against the free space plus what slot's old files free.
func (l Layout) checkESPSpace(slot string, ukiSize int64) error {
	need := ukiSize
	what := "its UKI"
	if l.HasSyslinux() {
		need = 2 * ukiSize
		what = "its UKI plus the kernel and initrd for legacy BIOS boot (at most the UKI's size again)"
	}
	free := l.freeSpace
	if free == nil {
		free = espFree
	}
	avail, err := free(l.ESP)
	if err != nil {
		return err
	}
	old, err := l.slotFiles(slot)
	if err != nil {
		return err
	}
	freed := int64(0)
	for _, p := range old {
		if fi, err := os.Stat(p); err == nil {
			freed += fi.Size()
		}
	}
	if need > avail+freed {
		return fmt.Errorf("ESP: slot %s needs %d MiB for %s; the ESP has %d MiB free with slot %s's old files (%d MiB) removed: the ESP of this disk is too small for this update",
			slot, mib(need), what, mib(avail+freed), slot, mib(freed))
	}
	return nil
}

func mib(n int64) int64 { return (n + 1<<20 - 1) >> 20 }

// writeBIOSFiles writes slot's kernel and initrd (from its UKI) into
// SyslinuxDir, each to a new file renamed into place.
func (l Layout) writeBIOSFiles(slot string, uki []byte, log io.Writer) error {
	kernel, initrd, err := biosFiles(uki)
	if err != nil {
		return fmt.Errorf("bundle UKI: %w", err)
	}
	dir := filepath.Join(l.ESP, SyslinuxDir)
	for _, f := range []struct {
		name string
		data []byte
	}{{BIOSKernel(slot), kernel}, {BIOSInitrd(slot), initrd}} {
		if err := replaceFile(filepath.Join(dir, f.name), f.data); err != nil {
			return fmt.Errorf("legacy BIOS: %w", err)
		}
	}
	fmt.Fprintf(log, "legacy BIOS: %s/%s (%d MiB) and %s (%d MiB) written from the UKI\n",
		SyslinuxDir, BIOSKernel(slot), mib(int64(len(kernel))), BIOSInitrd(slot), mib(int64(len(initrd))))
	return nil
}

// removeBIOSFiles removes slot's kernel and initrd from SyslinuxDir.
func (l Layout) removeBIOSFiles(slot string) error {
	dir := filepath.Join(l.ESP, SyslinuxDir)
	for _, n := range []string{BIOSKernel(slot), BIOSInitrd(slot)} {
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("legacy BIOS: %w", err)
		}
	}
	return syncDir(dir)
}

// replaceFile writes data to a new file beside path, syncs it and renames
// it over path (on FAT as atomic as it gets: the old file stays whole
// until the rename).
func replaceFile(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".new")
	if err := writeFileSync(tmp, data); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
