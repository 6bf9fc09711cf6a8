package update

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// biosUKI is a fake UKI with a kernel and an initrd section.
func biosUKI(version, cmdline, kernel, initrd string) []byte {
	return fakePE([]struct{ name, data string }{
		{".osrel", "ID=debian\nIMAGE_ID=lbd\nIMAGE_VERSION=" + version + "\n"},
		{".cmdline", cmdline},
		{".linux", kernel},
		{".initrd", initrd},
	})
}

// biosAppliance is appliance() booted by legacy BIOS (no EFI variables)
// from an image with syslinux on the ESP: slot a good, with its kernel and
// initrd in syslinux/ and syslinux.cfg booting it.
func biosAppliance(t *testing.T) Layout {
	t.Helper()
	l := appliance(t, 1<<20)
	if err := os.RemoveAll(l.EFIVars); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(l.ESP, EntryDir, "lbd-a.efi"), biosUKI("1.0", cmdlineA, "kernel-1.0", "initrd-1.0"), 0o644)
	dir := filepath.Join(l.ESP, SyslinuxDir)
	os.MkdirAll(dir, 0o755)
	for n, d := range map[string]string{ldlinuxSys: "ldlinux", BIOSKernel("a"): "kernel-1.0", BIOSInitrd("a"): "initrd-1.0"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if l.UEFI() {
		t.Fatal("layout without EFI variables reads as a UEFI boot")
	}
	if s, err := l.SyncBIOS(); err != nil || s.Default != "a" || !s.Changed {
		t.Fatalf("first SyncBIOS = %+v, %v", s, err)
	}
	return l
}

func readESP(t *testing.T, l Layout, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.ESP, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func entryNames(t *testing.T, l Layout) string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(l.ESP, EntryDir))
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, de := range des {
		n = append(n, de.Name())
	}
	return strings.Join(n, " ")
}

func bootInto(t *testing.T, l Layout, slot string) {
	t.Helper()
	cl := strings.Replace(cmdlineA, "LBROOT_A", PartPrefix+strings.ToUpper(slot), 1)
	if err := os.WriteFile(l.Cmdline, []byte("BOOT_IMAGE=/syslinux/lbd-"+slot+".linux "+cl+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestChooseSlotLikeSystemdBoot(t *testing.T) {
	e := func(name string) Entry { x, _ := ParseEntry(name); return x }
	for _, c := range []struct {
		name string
		bs   []bootable
		want string
	}{
		{"nothing", nil, ""},
		{"one good", []bootable{{e("lbd-a.efi"), "1"}}, "a"},
		{"newest good", []bootable{{e("lbd-a.efi"), "1"}, {e("lbd-b.efi"), "2"}}, "b"},
		{"newest good, other order", []bootable{{e("lbd-a.efi"), "3"}, {e("lbd-b.efi"), "2"}}, "a"},
		{"new trial wins", []bootable{{e("lbd-a.efi"), "1"}, {e("lbd-b+1.efi"), "2"}}, "b"},
		{"trial with tries left", []bootable{{e("lbd-a.efi"), "1"}, {e("lbd-b+1-1.efi"), "2"}}, "b"},
		{"tries used up", []bootable{{e("lbd-a.efi"), "1"}, {e("lbd-b+0-1.efi"), "2"}}, "a"},
		{"only bad ones: the newest", []bootable{{e("lbd-a+0-1.efi"), "1"}, {e("lbd-b+0-1.efi"), "2"}}, "b"},
		{"older trial loses to newer good", []bootable{{e("lbd-a.efi"), "5"}, {e("lbd-b+1.efi"), "4"}}, "a"},
	} {
		if got := chooseSlot(c.bs); got != c.want {
			t.Errorf("%s: chooseSlot = %q, want %q", c.name, got, c.want)
		}
	}
}

// TestBIOSUpdateBlessed follows an update under legacy BIOS to a good
// boot: install, the early count, then READY.
func TestBIOSUpdateBlessed(t *testing.T) {
	l := biosAppliance(t)
	cfg := readESP(t, l, "syslinux/syslinux.cfg")
	for _, want := range []string{"DEFAULT lbd-a\n", "LABEL lbd-a\n", "LINUX /syslinux/lbd-a.linux\n", "INITRD /syslinux/lbd-a.initrd\n", "APPEND " + cmdlineA + "\n"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("syslinux.cfg lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Contains(cfg, "lbd-b") {
		t.Errorf("syslinux.cfg lists slot b, which has no entry:\n%s", cfg)
	}
	// Nothing to count on a boot of the good slot.
	mark := filepath.Join(t.TempDir(), "counted")
	c, err := l.CountBIOSBoot(mark)
	if err != nil || c.Counted || !c.NotCounted || !c.First || c.Sync.Default != "a" || c.Sync.Changed {
		t.Fatalf("count on a good boot: %+v, %v", c, err)
	}
	if l.Trial() {
		t.Fatal("boot of the good slot reads as a trial")
	}

	bp := filepath.Join(t.TempDir(), "u.bundle")
	writeBundle(t, bp, "2.0", bytes.Repeat([]byte{1}, 5000), biosUKI("2.0", cmdlineA, "kernel-2.0", "initrd-2.0"), nil)
	b, err := Open(bp)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	if _, err := l.Install(b, 1, &log); err != nil {
		t.Fatalf("Install: %v\n%s", err, log.String())
	}
	if k, i := readESP(t, l, "syslinux/lbd-b.linux"), readESP(t, l, "syslinux/lbd-b.initrd"); k != "kernel-2.0" || i != "initrd-2.0" {
		t.Errorf("slot b's BIOS files: %q, %q", k, i)
	}
	cfg = readESP(t, l, "syslinux/syslinux.cfg")
	if !strings.Contains(cfg, "DEFAULT lbd-b\n") || !strings.Contains(cfg, "APPEND root=PARTLABEL=LBROOT_B ") || !strings.Contains(cfg, "LABEL lbd-a\n") ||
		!strings.Contains(cfg, " "+TrialArg+"\n") || strings.Count(cfg, TrialArg) != 1 {
		t.Errorf("syslinux.cfg after install:\n%s", cfg)
	}
	if !strings.Contains(log.String(), "legacy BIOS: syslinux boots slot b next") {
		t.Errorf("log: %s", log.String())
	}

	// The reboot (a new /run): syslinux boots b; early in userspace the
	// try is used.
	mark = filepath.Join(t.TempDir(), "counted")
	bootInto(t, l, "b")
	if !l.Trial() {
		t.Fatal("BIOS boot of slot b (lbd-b+1.efi) is no trial")
	}
	c, err = l.CountBIOSBoot(mark)
	if err != nil || !c.Counted || !c.First || c.From.File != "lbd-b+1.efi" || c.To.File != "lbd-b+0-1.efi" || c.Sync.Default != "a" || !c.Sync.Changed {
		t.Fatalf("count: %+v, %v", c, err)
	}
	if got := l.BIOSDefault(); got != "a" {
		t.Errorf("during the trial syslinux would boot %q, want a (the fallback)", got)
	}
	if cfg := readESP(t, l, "syslinux/syslinux.cfg"); strings.Contains(cfg, TrialArg) {
		t.Errorf("no tries left, but a label still has %s:\n%s", TrialArg, cfg)
	}
	// A second run in the same boot counts nothing.
	if c, err := l.CountBIOSBoot(mark); err != nil || c.Counted || c.First {
		t.Errorf("second count in one boot: %+v, %v", c, err)
	}
	if !l.Trial() {
		t.Fatal("counted trial boot reads as no trial")
	}
	e, s, err := l.MarkBIOSBoot(true)
	if err != nil || e.File != "lbd-b.efi" || s.Default != "b" {
		t.Fatalf("MarkBIOSBoot(good) = %+v, %+v, %v", e, s, err)
	}
	if got := entryNames(t, l); got != "lbd-a.efi lbd-b.efi" {
		t.Errorf("entries after the good boot: %s", got)
	}
	if l.Trial() || l.BIOSDefault() != "b" {
		t.Errorf("after blessing: trial %v, syslinux default %q", l.Trial(), l.BIOSDefault())
	}
	if _, _, err := l.MarkBIOSBoot(true); err == nil {
		t.Error("MarkBIOSBoot on a good entry: no error")
	}
}

// TestBIOSUpdateRollsBack: a trial that fails (or whose tries run out)
// sends syslinux back to the good slot.
func TestBIOSUpdateRollsBack(t *testing.T) {
	l := biosAppliance(t)
	bp := filepath.Join(t.TempDir(), "u.bundle")
	writeBundle(t, bp, "2.0", []byte("root"), biosUKI("2.0", cmdlineA, "k2", "i2"), nil)
	b, err := Open(bp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Install(b, 2, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	// Two tries: the first boot leaves one, syslinux stays on b.
	bootInto(t, l, "b")
	c, err := l.CountBIOSBoot(filepath.Join(t.TempDir(), "counted"))
	if err != nil || c.To.File != "lbd-b+1-1.efi" || c.Sync.Default != "b" {
		t.Fatalf("first trial boot: %+v, %v", c, err)
	}
	// That boot dies without a judgement (power cut); the next uses the
	// last try and points syslinux at a.
	c, err = l.CountBIOSBoot(filepath.Join(t.TempDir(), "counted"))
	if err != nil || c.To.File != "lbd-b+0-2.efi" || c.Sync.Default != "a" {
		t.Fatalf("second trial boot: %+v, %v", c, err)
	}
	// The boot check gives up: bad.
	e, s, err := l.MarkBIOSBoot(false)
	if err != nil || e.File != "lbd-b+0-2.efi" || s.Default != "a" {
		t.Fatalf("MarkBIOSBoot(bad) = %+v, %+v, %v", e, s, err)
	}
	// Back on a: nothing to count, syslinux stays on a, status says bad.
	bootInto(t, l, "a")
	c, err = l.CountBIOSBoot(filepath.Join(t.TempDir(), "counted"))
	if err != nil || c.Counted || c.Sync.Default != "a" || l.Trial() {
		t.Fatalf("after the rollback: %+v, %v, trial %v", c, err, l.Trial())
	}
	st, err := l.Status()
	if err != nil || !strings.HasPrefix(st.Slot("b").Entry.State(), "bad") {
		t.Errorf("status after the rollback: %+v, %v", st, err)
	}

	// Marking bad with tries left ends the trial at once.
	l2 := biosAppliance(t)
	if _, err := l2.Install(b, 3, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	bootInto(t, l2, "b")
	if c, err := l2.CountBIOSBoot(filepath.Join(t.TempDir(), "counted")); err != nil || c.Sync.Default != "b" {
		t.Fatalf("count with 3 tries: %+v, %v", c, err)
	}
	if e, s, err := l2.MarkBIOSBoot(false); err != nil || e.File != "lbd-b+0-1.efi" || s.Default != "a" {
		t.Fatalf("MarkBIOSBoot(bad) with tries left = %+v, %+v, %v", e, s, err)
	}
}

// TestUEFIBootSyncsOnly: under UEFI systemd-boot counts; the boot only
// brings syslinux.cfg in line with the names systemd-boot left.
func TestUEFIBootSyncsOnly(t *testing.T) {
	l := biosAppliance(t)
	os.MkdirAll(l.EFIVars, 0o755)
	os.WriteFile(filepath.Join(l.ESP, EntryDir, "lbd-b+0-1.efi"), biosUKI("2.0", strings.Replace(cmdlineA, "_A", "_B", 1), "k", "i"), 0o644)
	os.WriteFile(filepath.Join(l.ESP, SyslinuxDir, BIOSKernel("b")), []byte("k"), 0o644)
	os.WriteFile(filepath.Join(l.ESP, SyslinuxDir, BIOSInitrd("b")), []byte("i"), 0o644)
	bootInto(t, l, "b")
	c, err := l.CountBIOSBoot(filepath.Join(t.TempDir(), "counted"))
	if err != nil || !c.UEFI || c.Counted || c.Sync.Default != "a" || len(c.Sync.Labels) != 2 {
		t.Fatalf("UEFI boot: %+v, %v", c, err)
	}
	if got := entryNames(t, l); got != "lbd-a.efi lbd-b+0-1.efi" {
		t.Errorf("entries renamed under UEFI: %s", got)
	}
}

func TestInstallWithoutSyslinuxSkipsBIOS(t *testing.T) {
	l := appliance(t, 1<<20)
	bp := filepath.Join(t.TempDir(), "u.bundle")
	writeBundle(t, bp, "2.0", []byte("root"), biosUKI("2.0", cmdlineA, "k2", "i2"), nil)
	b, err := Open(bp)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	if _, err := l.Install(b, 1, &log); err != nil {
		t.Fatalf("Install: %v", err)
	}
	if !strings.Contains(log.String(), "the ESP has no syslinux") {
		t.Errorf("log does not say BIOS files were skipped: %s", log.String())
	}
	if _, err := os.Stat(filepath.Join(l.ESP, SyslinuxDir)); !os.IsNotExist(err) {
		t.Errorf("a syslinux directory was made on an ESP without syslinux: %v", err)
	}
}

func TestInstallRefusesAFullESP(t *testing.T) {
	for _, c := range []struct {
		name     string
		syslinux bool
		free     int64
		ok       bool
	}{
		{"UEFI only, room for the UKI", false, 20000, true},
		{"UEFI only, no room", false, 100, false},
		{"BIOS, room for the UKI only", true, 20000 + 5000, false},
		{"BIOS, room for both", true, 2*20000 + 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var l Layout
			if c.syslinux {
				l = biosAppliance(t)
			} else {
				l = appliance(t, 1<<20)
			}
			uki := biosUKI("2.0", cmdlineA, strings.Repeat("k", 9000), strings.Repeat("i", 9000))
			uki = append(uki, make([]byte, 20000-len(uki))...)
			l.freeSpace = func(string) (int64, error) { return c.free, nil }
			bp := filepath.Join(t.TempDir(), "u.bundle")
			writeBundle(t, bp, "2.0", []byte("root"), uki, nil)
			b, err := Open(bp)
			if err != nil {
				t.Fatal(err)
			}
			_, err = l.Install(b, 1, &bytes.Buffer{})
			if c.ok {
				if err != nil {
					t.Fatalf("Install: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "too small for this update") {
				t.Fatalf("err = %v, want the ESP too small", err)
			}
			if p, _ := os.ReadFile(filepath.Join(l.PartDir, "LBROOT_B")); !bytes.Equal(p, make([]byte, 1<<20)) {
				t.Error("LBROOT_B was written before the refusal")
			}
			if got := entryNames(t, l); got != "lbd-a.efi" {
				t.Errorf("entries after the refusal: %s", got)
			}
		})
	}
}
