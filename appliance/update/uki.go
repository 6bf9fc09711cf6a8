package update

import (
	"bufio"
	"bytes"
	"debug/pe"
	"fmt"
	"strings"
)

// section returns the bytes of a PE section of a UKI and their offset in
// the file, trimmed to the section's virtual size (the raw data is padded
// to the file alignment).
func section(uki []byte, name string) ([]byte, int, error) {
	f, err := pe.NewFile(bytes.NewReader(uki))
	if err != nil {
		return nil, 0, fmt.Errorf("not a PE/EFI image: %w", err)
	}
	s := f.Section(name)
	if s == nil {
		return nil, 0, fmt.Errorf("no %s section (not a unified kernel image)", name)
	}
	n := s.Size
	if s.VirtualSize != 0 && s.VirtualSize < n {
		n = s.VirtualSize
	}
	off := int(s.Offset)
	if off < 0 || off+int(n) > len(uki) {
		return nil, 0, fmt.Errorf("%s section out of the file", name)
	}
	return uki[off : off+int(n)], off, nil
}

// OSRelease parses the .osrel section of a UKI (os-release(5) format).
func OSRelease(uki []byte) (map[string]string, error) {
	b, _, err := section(uki, ".osrel")
	if err != nil {
		return nil, err
	}
	return parseOSRelease(b), nil
}

func parseOSRelease(b []byte) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(bytes.TrimRight(b, "\x00")))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		m[k] = v
	}
	return m
}

// Cmdline returns the kernel command line baked into a UKI.
func Cmdline(uki []byte) (string, error) {
	b, _, err := section(uki, ".cmdline")
	if err != nil {
		return "", err
	}
	return string(bytes.TrimRight(b, "\x00")), nil
}

// rootArg is how a UKI's command line names its slot's root partition.
const rootArg = "root=PARTLABEL=" + PartPrefix

// SetSlot rewrites, in place, the root= argument of the UKI's command line
// to name slot's partition (root=PARTLABEL=LBROOT_A -> LBROOT_B). A bundle
// carries one UKI for whichever slot it lands in; the letter is the only
// difference, so the section keeps its length and the PE its layout.
func SetSlot(uki []byte, slot string) error {
	if !validSlot(slot) {
		return fmt.Errorf("bad slot %q", slot)
	}
	b, _, err := section(uki, ".cmdline")
	if err != nil {
		return err
	}
	i := bytes.Index(b, []byte(rootArg))
	if i < 0 || i+len(rootArg) >= len(b) {
		return fmt.Errorf("kernel command line %q has no %sX", strings.TrimRight(string(b), "\x00"), rootArg)
	}
	p := i + len(rootArg)
	if !validSlot(strings.ToLower(string(b[p]))) || (p+1 < len(b) && b[p+1] != ' ' && b[p+1] != 0) {
		return fmt.Errorf("kernel command line %q: root= names no slot partition", strings.TrimRight(string(b), "\x00"))
	}
	b[p] = strings.ToUpper(slot)[0]
	return nil
}
