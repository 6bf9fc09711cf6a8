// Package update installs appliance update bundles into the inactive of two
// root slots (A/B) and reports the slots' state. The boot side is
// systemd-boot's boot counting: each slot has a unified kernel image (UKI)
// on the ESP at EFI/Linux/lbd-SLOT.efi; a freshly written slot's file is
// named lbd-SLOT+N.efi (N tries), systemd-boot picks the entry with the
// newest IMAGE_VERSION that still has tries left and counts one down
// before booting it (lbd-SLOT+0-1.efi), and systemd-bless-boot renames it
// to lbd-SLOT.efi once the boot is good (boot-complete.target, which lbd's
// boot check gates on lbd being READY with a config applied). A slot whose
// tries ran out sorts last: the other slot boots again by itself.
//
// A bundle is a tar archive: manifest.json first, then the root file
// system image (squashfs) and the UKI it names, each with its size and
// SHA-256. Everything is checked before any byte of a slot is written.
package update

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
)

// ManifestName is the first member of every bundle.
const ManifestName = "manifest.json"

// Manifest describes a bundle.
type Manifest struct {
	Format int `json:"format"`
	// Version is the image version (IMAGE_VERSION of os-release); it must
	// sort after the running one (CompareVersions) for systemd-boot to
	// try it.
	Version string `json:"version"`
	// LBD is the version of the lbd binary inside, for people.
	LBD  string `json:"lbd,omitempty"`
	Root File   `json:"root"`
	UKI  File   `json:"uki"`
}

// File is one member of the bundle.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

var (
	versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.~^_+-]{0,63}$`)
	sha256RE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)
)

func (m Manifest) validate() error {
	if m.Format != 1 {
		return fmt.Errorf("%s: format %d; this lbd reads format 1", ManifestName, m.Format)
	}
	if !versionRE.MatchString(m.Version) {
		return fmt.Errorf("%s: bad version %q", ManifestName, m.Version)
	}
	for _, f := range []struct {
		what string
		f    File
	}{{"root", m.Root}, {"uki", m.UKI}} {
		if !nameRE.MatchString(f.f.Name) || f.f.Name == ManifestName {
			return fmt.Errorf("%s: %s: bad name %q", ManifestName, f.what, f.f.Name)
		}
		if f.f.Size <= 0 {
			return fmt.Errorf("%s: %s: bad size %d", ManifestName, f.what, f.f.Size)
		}
		if !sha256RE.MatchString(f.f.SHA256) {
			return fmt.Errorf("%s: %s: bad sha256 %q", ManifestName, f.what, f.f.SHA256)
		}
	}
	if m.Root.Name == m.UKI.Name {
		return fmt.Errorf("%s: root and uki are the same member %q", ManifestName, m.Root.Name)
	}
	return nil
}

// Bundle is an opened bundle file.
type Bundle struct {
	Path     string
	Manifest Manifest
}

// Open reads the manifest of the bundle at path (it must be the first
// member) and checks every member named in it against its size and
// SHA-256, reading the whole file once. Nothing is written.
func Open(path string) (*Bundle, error) {
	b := &Bundle{Path: path}
	err := b.walk(func(m Manifest) error { b.Manifest = m; return nil }, nil)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", path, err)
	}
	return b, nil
}

// walk reads the bundle in order: onManifest gets the manifest, then for
// each of the root and UKI members onMember (when not nil) reads its
// contents; whatever onMember does not read is read here, and every member
// is hashed and checked. Members other than the named ones are ignored.
func (b *Bundle) walk(onManifest func(Manifest) error, onMember func(which string, f File, r io.Reader) error) error {
	fh, err := os.Open(b.Path)
	if err != nil {
		return err
	}
	defer fh.Close()
	tr := tar.NewReader(fh)
	h, err := tr.Next()
	if err != nil {
		return fmt.Errorf("not a bundle (a tar archive with %s first): %w", ManifestName, err)
	}
	if h.Name != ManifestName {
		return fmt.Errorf("not a bundle: first member is %q, want %s", h.Name, ManifestName)
	}
	raw, err := io.ReadAll(io.LimitReader(tr, 1<<16))
	if err != nil {
		return fmt.Errorf("%s: %w", ManifestName, err)
	}
	var m Manifest
	dec := json.NewDecoder(bytesReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("%s: %w", ManifestName, err)
	}
	if err := m.validate(); err != nil {
		return err
	}
	if err := onManifest(m); err != nil {
		return err
	}
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("after %d members: %w", len(seen)+1, err)
		}
		var which string
		var f File
		switch h.Name {
		case m.Root.Name:
			which, f = "root", m.Root
		case m.UKI.Name:
			which, f = "uki", m.UKI
		default:
			continue
		}
		if seen[which] {
			return fmt.Errorf("member %q twice", h.Name)
		}
		seen[which] = true
		if h.Size != f.Size {
			return fmt.Errorf("%s: %d bytes, the manifest says %d", h.Name, h.Size, f.Size)
		}
		sum := sha256.New()
		r := io.TeeReader(tr, sum)
		if onMember != nil {
			if err := onMember(which, f, r); err != nil {
				return err
			}
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		if got := hex.EncodeToString(sum.Sum(nil)); got != f.SHA256 {
			return fmt.Errorf("%s: sha256 %s, the manifest says %s (corrupt or truncated bundle)", h.Name, got, f.SHA256)
		}
	}
	for _, w := range []string{"root", "uki"} {
		if !seen[w] {
			n := m.Root.Name
			if w == "uki" {
				n = m.UKI.Name
			}
			return fmt.Errorf("member %q (%s) missing", n, w)
		}
	}
	return nil
}
