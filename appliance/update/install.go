package update

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Result says what Install did.
type Result struct {
	Slot    string
	Version string
	Entry   string // the new UKI's file name in EntryDir
	From    string // version of the booted slot
}

// Install writes the bundle into the slot that is not booted: its root
// image onto that slot's partition, then its UKI (with root= naming that
// slot) onto the ESP as lbd-SLOT+TRIES.efi. It refuses, before writing
// anything, when the bundle is corrupt, when the running system is no slot
// or is itself on trial (its fallback would be overwritten), when the
// bundle's version does not sort after the booted one (systemd-boot would
// never pick it), or when the root image does not fit. The old entry of
// the target slot is removed first, so a slot half written by an
// interrupted install is never booted. On an ESP set up for legacy BIOS
// boot (syslinux) it also writes the slot's kernel and initrd, taken out
// of the UKI, and points syslinux.cfg at the slot systemd-boot will boot;
// it refuses up front when the ESP has no room for them. Progress lines
// go to log.
func (l Layout) Install(b *Bundle, tries int, log io.Writer) (Result, error) {
	m := b.Manifest
	if tries < 1 || tries > 9 {
		return Result{}, fmt.Errorf("tries %d: want 1..9", tries)
	}
	st, err := l.Status()
	if err != nil {
		return Result{}, err
	}
	if st.Booted == "" {
		return Result{}, errors.New("the running system was not booted from a root slot (no root=PARTLABEL=" + PartPrefix + "A|B on the kernel command line)")
	}
	if st.Trial {
		return Result{}, fmt.Errorf("slot %s is on trial (not yet marked good): installing now would overwrite the fallback slot %s; try again once this boot is good", st.Booted, Other(st.Booted))
	}
	cur := st.Slot(st.Booted)
	target := Other(st.Booted)
	res := Result{Slot: target, Version: m.Version, From: cur.Version, Entry: fmt.Sprintf("lbd-%s+%d.efi", target, tries)}
	if cur.Version != "" && CompareVersions(m.Version, cur.Version) <= 0 {
		return res, fmt.Errorf("bundle version %s is not newer than the running %s (slot %s): systemd-boot boots the newest version, so it would never be tried", m.Version, cur.Version, st.Booted)
	}
	part := filepath.Join(l.PartDir, PartPrefix+strings.ToUpper(target))
	size, err := deviceSize(part)
	if err != nil {
		return res, fmt.Errorf("slot %s: %w", target, err)
	}
	if m.Root.Size > size {
		return res, fmt.Errorf("slot %s: root image %d bytes does not fit its partition %s (%d bytes)", target, m.Root.Size, part, size)
	}
	if err := l.checkESPSpace(target, m.UKI.Size); err != nil {
		return res, err
	}
	bios := l.HasSyslinux()

	// 1. The old entry goes first: from here on systemd-boot does not see
	// the target slot until its new UKI is complete.
	ents, err := l.entries()
	if err != nil {
		return res, err
	}
	for _, e := range ents[target] {
		p := filepath.Join(l.ESP, EntryDir, e.File)
		if err := os.Remove(p); err != nil {
			return res, fmt.Errorf("remove old entry: %w", err)
		}
		fmt.Fprintf(log, "removed the old entry of slot %s (%s)\n", target, e.File)
	}
	if err := syncDir(filepath.Join(l.ESP, EntryDir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return res, err
	}
	if bios {
		// Its BIOS files too, and syslinux.cfg without it: syslinux
		// keeps booting the running slot meanwhile.
		if err := l.removeBIOSFiles(target); err != nil {
			return res, err
		}
		if _, err := l.SyncBIOS(); err != nil {
			// Only the running slot is left, and it has no BIOS
			// files (installed by an lbd without BIOS support): the
			// new slot's files below make syslinux.cfg whole again.
			fmt.Fprintf(log, "warning: %v\n", err)
		}
	}

	// 2. Root image and UKI, hashed again while written (the file could
	// have changed since Open checked it).
	var uki []byte
	err = b.walk(func(m2 Manifest) error {
		if m2 != m {
			return errors.New("the bundle changed since it was checked")
		}
		return nil
	}, func(which string, f File, r io.Reader) error {
		switch which {
		case "root":
			fmt.Fprintf(log, "writing %s (%d MiB) to %s\n", f.Name, (f.Size+1<<20-1)>>20, part)
			return writeDevice(part, r, f)
		case "uki":
			var err error
			uki, err = io.ReadAll(r)
			return err
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("bundle %s: %w", b.Path, err)
	}
	osr, err := OSRelease(uki)
	if err != nil {
		return res, fmt.Errorf("bundle UKI: %w", err)
	}
	if v := osr["IMAGE_VERSION"]; v != m.Version {
		return res, fmt.Errorf("bundle UKI: IMAGE_VERSION %q, the manifest says %q", v, m.Version)
	}
	if err := SetSlot(uki, target); err != nil {
		return res, fmt.Errorf("bundle UKI: %w", err)
	}
	if bios {
		if err := l.writeBIOSFiles(target, uki, log); err != nil {
			return res, err
		}
	}
	dir := filepath.Join(l.ESP, EntryDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, fmt.Errorf("ESP: %w", err)
	}
	tmp := filepath.Join(dir, ".lbd-"+target+".efi.new")
	if err := writeFileSync(tmp, uki); err != nil {
		os.Remove(tmp)
		return res, fmt.Errorf("ESP: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, res.Entry)); err != nil {
		os.Remove(tmp)
		return res, fmt.Errorf("ESP: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return res, fmt.Errorf("ESP: %w", err)
	}
	fmt.Fprintf(log, "slot %s now holds %s: %s/%s, tried %d time(s) from the next boot\n", target, m.Version, EntryDir, res.Entry, tries)
	if !bios {
		fmt.Fprintf(log, "legacy BIOS: the ESP has no syslinux (an image from before BIOS support): no BIOS boot files written; this disk boots with UEFI only\n")
		return res, nil
	}
	sync, err := l.SyncBIOS()
	if err != nil {
		return res, err
	}
	fmt.Fprintf(log, "legacy BIOS: syslinux boots slot %s next (%s/%s)\n", sync.Default, SyslinuxDir, syslinuxCfg)
	return res, nil
}

// writeDevice copies r onto the partition (or file) at path, fsyncs it and
// reads it back to check the SHA-256 of what landed there.
func writeDevice(path string, r io.Reader, f File) error {
	dev, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	n, err := io.Copy(dev, r)
	if err == nil && n != f.Size {
		err = fmt.Errorf("wrote %d of %d bytes", n, f.Size)
	}
	if err == nil {
		err = dev.Sync()
	}
	if cerr := dev.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	back, err := os.Open(path)
	if err != nil {
		return err
	}
	defer back.Close()
	sum := sha256.New()
	if _, err := io.CopyN(sum, back, f.Size); err != nil {
		return fmt.Errorf("%s: read back: %w", path, err)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != f.SHA256 {
		return fmt.Errorf("%s: read back sha256 %s, want %s", path, got, f.SHA256)
	}
	return nil
}

// deviceSize is the size of a block device (seek to its end) or file.
func deviceSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Seek(0, io.SeekEnd)
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, bytes.NewReader(data))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return nil
}
