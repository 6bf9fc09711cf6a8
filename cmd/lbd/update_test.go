package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testUKI is a minimal PE file with the sections lbd reads of a UKI.
func testUKI(version, cmdline string) []byte {
	secs := []struct{ name, data string }{
		{".osrel", "IMAGE_ID=lbd\nIMAGE_VERSION=" + version + "\n"},
		{".cmdline", cmdline},
		{".linux", "kernel"},
		{".initrd", "initrd"},
	}
	var b bytes.Buffer
	dos := make([]byte, 64)
	copy(dos, "MZ")
	binary.LittleEndian.PutUint32(dos[0x3c:], 64)
	b.Write(dos)
	b.WriteString("PE\x00\x00")
	binary.Write(&b, binary.LittleEndian, struct {
		Machine, NumberOfSections                         uint16
		TimeDateStamp, PointerToSymbolTable, NumberOfSyms uint32
		SizeOfOptionalHeader, Characteristics             uint16
	}{Machine: 0x8664, NumberOfSections: uint16(len(secs))})
	off := (64 + 4 + 20 + 40*len(secs) + 511) / 512 * 512
	var body bytes.Buffer
	for i, s := range secs {
		raw := (len(s.data) + 511) / 512 * 512
		var name [8]byte
		copy(name[:], s.name)
		binary.Write(&b, binary.LittleEndian, struct {
			Name                                         [8]byte
			VirtualSize, VirtualAddress, SizeOfRawData   uint32
			PointerToRawData, PointerToRelocs, PtrToLine uint32
			NumRelocs, NumLines                          uint16
			Characteristics                              uint32
		}{Name: name, VirtualSize: uint32(len(s.data)), VirtualAddress: uint32(0x1000 * (i + 1)),
			SizeOfRawData: uint32(raw), PointerToRawData: uint32(off + body.Len()), Characteristics: 0x40000040})
		d := make([]byte, raw)
		copy(d, s.data)
		body.Write(d)
	}
	b.Write(make([]byte, off-b.Len()))
	b.Write(body.Bytes())
	return b.Bytes()
}

// TestUpdateBootSyncBIOS runs `lbd update --boot-sync` twice in one legacy
// BIOS trial boot of slot b (LBD_UPDATE_ROOT, no EFI variables): the first
// run uses the try and starts the boot check, the second does neither.
func TestUpdateBootSyncBIOS(t *testing.T) {
	root := t.TempDir()
	t.Setenv("LBD_UPDATE_ROOT", root)
	esp := filepath.Join(root, "efi")
	cl := "root=PARTLABEL=LBROOT_%s ro console=ttyS0"
	files := map[string][]byte{
		"efi/EFI/Linux/lbd-a.efi":   testUKI("1.0", strings.Replace(cl, "%s", "A", 1)),
		"efi/EFI/Linux/lbd-b+1.efi": testUKI("2.0", strings.Replace(cl, "%s", "B", 1)),
		"efi/syslinux/ldlinux.sys":  []byte("ldlinux"),
		"efi/syslinux/lbd-a.linux":  []byte("kernel"),
		"efi/syslinux/lbd-a.initrd": []byte("initrd"),
		"efi/syslinux/lbd-b.linux":  []byte("kernel"),
		"efi/syslinux/lbd-b.initrd": []byte("initrd"),
		"cmdline":                   []byte("BOOT_IMAGE=/syslinux/lbd-b.linux " + strings.Replace(cl, "%s", "B", 1) + "\n"),
		"parts/LBROOT_A":            make([]byte, 4096),
		"parts/LBROOT_B":            make([]byte, 4096),
	}
	for p, d := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), d, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out, errb bytes.Buffer
	if rc := cmdUpdate([]string{"--boot-sync"}, &out, &errb); rc != 0 {
		t.Fatalf("first --boot-sync: exit %d\n%s%s", rc, out.String(), errb.String())
	}
	for _, want := range []string{
		"lbd-boot-sync: legacy BIOS trial boot of slot b: one try used (lbd-b+1.efi -> lbd-b+0-1.efi)",
		"lbd-boot-sync: syslinux.cfg rewritten: legacy BIOS boots slot a next",
		"lbd-boot-sync: trial boot: starting the boot check",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("first run lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(filepath.Join(esp, "EFI/Linux/lbd-b+0-1.efi")); err != nil {
		t.Errorf("entry not counted down: %v", err)
	}
	out.Reset()
	if rc := cmdUpdate([]string{"--boot-sync"}, &out, &errb); rc != 0 || out.String() != "" {
		t.Errorf("second --boot-sync in the same boot: exit %d, printed %q", rc, out.String())
	}
	out.Reset()
	if rc := cmdUpdate([]string{"--status"}, &out, &errb); rc != 0 ||
		!strings.Contains(out.String(), "firmware: legacy BIOS (syslinux); under legacy BIOS syslinux boots slot a next") ||
		!strings.Contains(out.String(), "on trial: this boot") {
		t.Errorf("--status: exit %d\n%s", rc, out.String())
	}
}
