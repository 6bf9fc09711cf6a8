package update

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"1", "1", 0},
		{"1", "2", -1},
		{"10", "9", 1},
		{"20261130.123411", "20261130.123411.1", -1},
		{"20261130.123411.1", "20261130.123411.2", -1},
		{"20261201.000000", "20261130.235959", 1},
		{"1.0~rc1", "1.0", -1},
		{"1.0", "1.0.0", -1},
		{"123-9", "123.1-1", -1},
		{"1.0a", "1.0b", -1},
		{"1.0", "1.0a", -1}, // more segments: newer
		{"1.a", "1.1", -1},  // a numeric segment is newer than a letter one
		{"007", "7", 0},
		{"", "1", -1},
	} {
		if got := CompareVersions(c.a, c.b); got != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := CompareVersions(c.b, c.a); got != -c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.b, c.a, got, -c.want)
		}
	}
}

func TestParseEntry(t *testing.T) {
	for _, c := range []struct {
		name  string
		ok    bool
		want  Entry
		state string
	}{
		{"lbd-a.efi", true, Entry{Slot: "a", File: "lbd-a.efi"}, "good"},
		{"lbd-b+1.efi", true, Entry{Slot: "b", File: "lbd-b+1.efi", Counting: true, TriesLeft: 1}, "new (1 trial boot(s) at the next boot)"},
		{"lbd-b+2-1.efi", true, Entry{Slot: "b", File: "lbd-b+2-1.efi", Counting: true, TriesLeft: 2, TriesDone: 1}, "on trial (2 tries left, 1 done)"},
		{"lbd-a+0-3.efi", true, Entry{Slot: "a", File: "lbd-a+0-3.efi", Counting: true, TriesDone: 3}, "bad (failed 3 trial boot(s); systemd-boot skips it)"},
		{"LBD-A.EFI", true, Entry{Slot: "a", File: "LBD-A.EFI"}, "good"}, // FAT is case-insensitive
		{"lbd-c.efi", false, Entry{}, ""},
		{"lbd-a.efi.new", false, Entry{}, ""},
		{".lbd-a.efi.new", false, Entry{}, ""},
	} {
		e, ok := ParseEntry(c.name)
		if ok != c.ok || e != c.want {
			t.Errorf("ParseEntry(%q) = %+v, %v; want %+v, %v", c.name, e, ok, c.want, c.ok)
			continue
		}
		if ok && e.State() != c.state {
			t.Errorf("%s: State() = %q, want %q", c.name, e.State(), c.state)
		}
	}
}

// fakeUKI builds a minimal PE file with .osrel and .cmdline sections, all
// debug/pe (and so OSRelease, Cmdline, SetSlot) needs of a UKI.
func fakeUKI(t *testing.T, version, cmdline string) []byte {
	t.Helper()
	return fakePE([]struct{ name, data string }{
		{".osrel", "ID=debian\nIMAGE_ID=lbd\nIMAGE_VERSION=" + version + "\nPRETTY_NAME=\"lbd appliance " + version + "\"\n"},
		{".cmdline", cmdline},
	})
}

// fakePE is a minimal PE file with the given sections.
func fakePE(secs []struct{ name, data string }) []byte {
	var b bytes.Buffer
	dos := make([]byte, 64)
	copy(dos, "MZ")
	binary.LittleEndian.PutUint32(dos[0x3c:], 64)
	b.Write(dos)
	b.WriteString("PE\x00\x00")
	hdrEnd := 64 + 4 + 20 + 40*len(secs)
	fh := struct {
		Machine, NumberOfSections                         uint16
		TimeDateStamp, PointerToSymbolTable, NumberOfSyms uint32
		SizeOfOptionalHeader, Characteristics             uint16
	}{Machine: 0x8664, NumberOfSections: uint16(len(secs))}
	binary.Write(&b, binary.LittleEndian, fh)
	off := (hdrEnd + 511) / 512 * 512
	var body bytes.Buffer
	for i, s := range secs {
		raw := (len(s.data) + 511) / 512 * 512
		var name [8]byte
		copy(name[:], s.name)
		sh := struct {
			Name                                         [8]byte
			VirtualSize, VirtualAddress, SizeOfRawData   uint32
			PointerToRawData, PointerToRelocs, PtrToLine uint32
			NumRelocs, NumLines                          uint16
			Characteristics                              uint32
		}{Name: name, VirtualSize: uint32(len(s.data)), VirtualAddress: uint32(0x1000 * (i + 1)),
			SizeOfRawData: uint32(raw), PointerToRawData: uint32(off + body.Len()), Characteristics: 0x40000040}
		binary.Write(&b, binary.LittleEndian, sh)
		d := make([]byte, raw)
		copy(d, s.data)
		body.Write(d)
	}
	b.Write(make([]byte, off-b.Len()))
	b.Write(body.Bytes())
	return b.Bytes()
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// writeBundle writes a bundle of root and uki; mutate may change the
// manifest or the members before they are written.
func writeBundle(t *testing.T, path, version string, root, uki []byte, mutate func(m *Manifest, members map[string][]byte)) {
	t.Helper()
	m := Manifest{Format: 1, Version: version, LBD: "test",
		Root: File{Name: "root.sqfs", Size: int64(len(root)), SHA256: sum(root)},
		UKI:  File{Name: "lbd.efi", Size: int64(len(uki)), SHA256: sum(uki)}}
	members := map[string][]byte{"root.sqfs": root, "lbd.efi": uki}
	if mutate != nil {
		mutate(&m, members)
	}
	mj, _ := json.Marshal(m)
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, n := range []string{ManifestName, "root.sqfs", "lbd.efi"} {
		d := mj
		if n != ManifestName {
			var ok bool
			if d, ok = members[n]; !ok {
				continue
			}
		}
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(d))})
		tw.Write(d)
	}
	tw.Close()
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

const cmdlineA = "root=PARTLABEL=LBROOT_A rootfstype=squashfs ro console=ttyS0,115200"

func TestOpenChecksEveryMember(t *testing.T) {
	dir := t.TempDir()
	root := bytes.Repeat([]byte("squashfs"), 4096)
	uki := fakeUKI(t, "2.0", cmdlineA)
	good := filepath.Join(dir, "good.bundle")
	writeBundle(t, good, "2.0", root, uki, nil)
	b, err := Open(good)
	if err != nil {
		t.Fatalf("good bundle: %v", err)
	}
	if b.Manifest.Version != "2.0" || b.Manifest.Root.Size != int64(len(root)) {
		t.Fatalf("manifest %+v", b.Manifest)
	}
	for name, c := range map[string]struct {
		mutate func(m *Manifest, members map[string][]byte)
		want   string
	}{
		"flipped byte": {func(m *Manifest, ms map[string][]byte) {
			r := bytes.Clone(ms["root.sqfs"])
			r[100] ^= 1
			ms["root.sqfs"] = r
		}, "root.sqfs: sha256"},
		"missing UKI":    {func(m *Manifest, ms map[string][]byte) { delete(ms, "lbd.efi") }, `member "lbd.efi" (uki) missing`},
		"size mismatch":  {func(m *Manifest, ms map[string][]byte) { m.UKI.Size++ }, "the manifest says"},
		"bad version":    {func(m *Manifest, ms map[string][]byte) { m.Version = "../x" }, "bad version"},
		"unknown format": {func(m *Manifest, ms map[string][]byte) { m.Format = 2 }, "format 2"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		writeBundle(t, p, "2.0", root, uki, c.mutate)
		if _, err := Open(p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one containing %q", name, err, c.want)
		}
	}
	// A tar whose first member is not the manifest.
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "root.sqfs", Mode: 0o644, Size: 1})
	tw.Write([]byte{0})
	tw.Close()
	p := filepath.Join(dir, "nomanifest")
	os.WriteFile(p, tb.Bytes(), 0o644)
	if _, err := Open(p); err == nil || !strings.Contains(err.Error(), "first member") {
		t.Errorf("manifest not first: err = %v", err)
	}
}

func TestSetSlotAndOSRelease(t *testing.T) {
	uki := fakeUKI(t, "3.1", cmdlineA)
	if err := SetSlot(uki, "b"); err != nil {
		t.Fatal(err)
	}
	cl, err := Cmdline(uki)
	if err != nil || cl != strings.Replace(cmdlineA, "LBROOT_A", "LBROOT_B", 1) {
		t.Fatalf("cmdline after SetSlot(b) = %q, %v", cl, err)
	}
	osr, err := OSRelease(uki)
	if err != nil || osr["IMAGE_VERSION"] != "3.1" || osr["PRETTY_NAME"] != "lbd appliance 3.1" {
		t.Fatalf("os-release %v, %v", osr, err)
	}
	if err := SetSlot(fakeUKI(t, "1", "root=/dev/vda2 ro"), "a"); err == nil {
		t.Error("SetSlot on a command line without a slot root: no error")
	}
	if _, err := OSRelease([]byte("not a PE")); err == nil {
		t.Error("OSRelease of garbage: no error")
	}
}

// appliance makes a temporary layout: slot a booted and good, slot b's
// partition of partSize bytes.
func appliance(t *testing.T, partSize int64) Layout {
	t.Helper()
	d := t.TempDir()
	l := Layout{ESP: filepath.Join(d, "efi"), PartDir: filepath.Join(d, "parts"), Cmdline: filepath.Join(d, "cmdline"), EFIVars: filepath.Join(d, "efivars")}
	for _, p := range []string{filepath.Join(l.ESP, EntryDir), l.PartDir, l.EFIVars} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{"LBROOT_A", "LBROOT_B"} {
		if err := os.WriteFile(filepath.Join(l.PartDir, s), make([]byte, partSize), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(l.Cmdline, []byte(cmdlineA+"\n"), 0o644)
	os.WriteFile(filepath.Join(l.ESP, EntryDir, "lbd-a.efi"), fakeUKI(t, "1.0", cmdlineA), 0o644)
	return l
}

func TestInstallWritesTheOtherSlot(t *testing.T) {
	l := appliance(t, 1<<20)
	// Leftover of an earlier failed trial of slot b.
	os.WriteFile(filepath.Join(l.ESP, EntryDir, "lbd-b+0-1.efi"), fakeUKI(t, "1.5", strings.Replace(cmdlineA, "_A", "_B", 1)), 0o644)
	root := bytes.Repeat([]byte{0xab}, 300000)
	bp := filepath.Join(t.TempDir(), "u.bundle")
	writeBundle(t, bp, "2.0", root, fakeUKI(t, "2.0", cmdlineA), nil)
	b, err := Open(bp)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	res, err := l.Install(b, 1, &log)
	if err != nil {
		t.Fatalf("Install: %v\n%s", err, log.String())
	}
	if res.Slot != "b" || res.Entry != "lbd-b+1.efi" || res.From != "1.0" {
		t.Errorf("result %+v", res)
	}
	part, _ := os.ReadFile(filepath.Join(l.PartDir, "LBROOT_B"))
	if !bytes.Equal(part[:len(root)], root) {
		t.Error("LBROOT_B does not start with the bundle's root image")
	}
	if a, _ := os.ReadFile(filepath.Join(l.PartDir, "LBROOT_A")); !bytes.Equal(a, make([]byte, 1<<20)) {
		t.Error("the booted slot's partition LBROOT_A was written")
	}
	if _, err := os.Stat(filepath.Join(l.ESP, EntryDir, "lbd-b+0-1.efi")); !os.IsNotExist(err) {
		t.Error("the old entry of slot b is still there")
	}
	uki, err := os.ReadFile(filepath.Join(l.ESP, EntryDir, "lbd-b+1.efi"))
	if err != nil {
		t.Fatal(err)
	}
	if cl, _ := Cmdline(uki); !strings.HasPrefix(cl, "root=PARTLABEL=LBROOT_B ") {
		t.Errorf("new entry's command line %q does not boot LBROOT_B", cl)
	}
	st, err := l.Status()
	if err != nil {
		t.Fatal(err)
	}
	a, bs := st.Slot("a"), st.Slot("b")
	if st.Booted != "a" || !a.Booted || a.Version != "1.0" || a.Entry.State() != "good" ||
		bs.Version != "2.0" || bs.Entry.File != "lbd-b+1.efi" || bs.Err != "" {
		t.Errorf("status after install: %+v", st)
	}
	if !strings.Contains(log.String(), "slot b now holds 2.0") {
		t.Errorf("log: %s", log.String())
	}
}

func TestInstallRefusals(t *testing.T) {
	mk := func(t *testing.T, version string, rootSize int) *Bundle {
		bp := filepath.Join(t.TempDir(), "u.bundle")
		writeBundle(t, bp, version, make([]byte, rootSize), fakeUKI(t, version, cmdlineA), nil)
		b, err := Open(bp)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Run("not newer", func(t *testing.T) {
		l := appliance(t, 1<<20)
		_, err := l.Install(mk(t, "1.0", 1000), 1, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "not newer") {
			t.Fatalf("err = %v", err)
		}
		if _, err := os.Stat(filepath.Join(l.ESP, EntryDir, "lbd-b+1.efi")); !os.IsNotExist(err) {
			t.Error("an entry was written")
		}
	})
	t.Run("too big", func(t *testing.T) {
		l := appliance(t, 4096)
		if _, err := l.Install(mk(t, "2.0", 8192), 1, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "does not fit") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("running slot on trial", func(t *testing.T) {
		l := appliance(t, 1<<20)
		os.WriteFile(filepath.Join(l.EFIVars, "LoaderBootCountPath-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"), []byte{6, 0, 0, 0}, 0o644)
		if _, err := l.Install(mk(t, "2.0", 1000), 1, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "on trial") {
			t.Fatalf("err = %v", err)
		}
		if b, _ := os.ReadFile(filepath.Join(l.PartDir, "LBROOT_B")); !bytes.Equal(b, make([]byte, 1<<20)) {
			t.Error("LBROOT_B was written")
		}
	})
	t.Run("not booted from a slot", func(t *testing.T) {
		l := appliance(t, 1<<20)
		os.WriteFile(l.Cmdline, []byte("root=/dev/vda2 ro\n"), 0o644)
		if _, err := l.Install(mk(t, "2.0", 1000), 1, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "not booted from a root slot") {
			t.Fatalf("err = %v", err)
		}
	})
}
