package update

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Slots are the two root slots; PartPrefix+upper(slot) is the GPT
// partition name of each (LBROOT_A, LBROOT_B).
var Slots = []string{"a", "b"}

// PartPrefix starts the GPT names of the root partitions.
const PartPrefix = "LBROOT_"

func validSlot(s string) bool { return s == "a" || s == "b" }

// Other is the slot that is not s.
func Other(s string) string {
	if s == "a" {
		return "b"
	}
	return "a"
}

// Layout says where the appliance keeps things; Default is the real one,
// tests point it at temporary files.
type Layout struct {
	ESP     string // mount point of the ESP (/efi)
	PartDir string // where partitions appear by GPT name (/dev/disk/by-partlabel)
	Cmdline string // the kernel command line (/proc/cmdline)
	// EFIVars holds the boot loader's variables (efivarfs); empty or
	// absent: a legacy BIOS boot (see bios.go).
	EFIVars string
	// freeSpace reports the free bytes of the ESP (tests); nil: statfs.
	freeSpace func(dir string) (int64, error)
}

// Default is the appliance's layout.
var Default = Layout{
	ESP:     "/efi",
	PartDir: "/dev/disk/by-partlabel",
	Cmdline: "/proc/cmdline",
	EFIVars: "/sys/firmware/efi/efivars",
}

// EntryDir is where the UKIs live on the ESP (Boot Loader Specification
// type #2 entries, found by systemd-boot without entry files).
const EntryDir = "EFI/Linux"

// Entry is one slot's UKI file on the ESP.
type Entry struct {
	Slot string
	File string // name in EntryDir, e.g. lbd-b+0-1.efi
	// Counting is true when the name has a boot counter (+LEFT[-DONE]):
	// the slot is on trial; false for a blessed (good) entry.
	Counting  bool
	TriesLeft int
	TriesDone int
}

var entryRE = regexp.MustCompile(`^lbd-([ab])(?:\+(\d+)(?:-(\d+))?)?\.efi$`)

// ParseEntry reads a UKI file name: lbd-a.efi, lbd-b+1.efi, lbd-a+0-3.efi.
func ParseEntry(name string) (Entry, bool) {
	m := entryRE.FindStringSubmatch(strings.ToLower(name))
	if m == nil {
		return Entry{}, false
	}
	e := Entry{Slot: m[1], File: name}
	if m[2] != "" {
		e.Counting = true
		e.TriesLeft, _ = strconv.Atoi(m[2])
		if m[3] != "" {
			e.TriesDone, _ = strconv.Atoi(m[3])
		}
	}
	return e, true
}

// State words a slot's entry for people.
func (e Entry) State() string {
	switch {
	case e.File == "":
		return "empty"
	case !e.Counting:
		return "good"
	case e.TriesLeft == 0:
		return fmt.Sprintf("bad (failed %d trial boot(s); systemd-boot skips it)", e.TriesDone)
	case e.TriesDone == 0:
		return fmt.Sprintf("new (%d trial boot(s) at the next boot)", e.TriesLeft)
	default:
		return fmt.Sprintf("on trial (%d tries left, %d done)", e.TriesLeft, e.TriesDone)
	}
}

// Slot is what `lbd update --status` shows of one slot.
type Slot struct {
	Name      string
	PartLabel string
	Entry     Entry
	Version   string // IMAGE_VERSION of its UKI
	Pretty    string // PRETTY_NAME of its UKI
	Booted    bool
	Err       string // why its UKI could not be read
}

// Status is both slots.
type Status struct {
	Booted string // slot of the running system ("" if its root is no slot)
	Slots  []Slot
	// Trial is true when this boot is counted by systemd-boot: it is
	// blessed (or not) once boot-complete.target is reached.
	Trial bool
}

// BootedSlot reads the root= argument of the kernel command line.
func (l Layout) BootedSlot() (string, error) {
	b, err := os.ReadFile(l.Cmdline)
	if err != nil {
		return "", err
	}
	for _, a := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(a, "root=PARTLABEL="+PartPrefix); ok && len(v) == 1 {
			s := strings.ToLower(v)
			if validSlot(s) {
				return s, nil
			}
		}
	}
	return "", nil
}

// Trial reports whether this boot is counted. Under UEFI systemd-boot
// sets LoaderBootCountPath only when the booted entry has a counter; under
// legacy BIOS (syslinux, which cannot count) the booted slot's entry
// having a counter is the sign (CountBIOSBoot counts it down early).
func (l Layout) Trial() bool {
	if !l.UEFI() {
		e, ok, err := l.bootedEntry()
		return err == nil && ok && e.Counting
	}
	_, err := os.Stat(filepath.Join(l.EFIVars, "LoaderBootCountPath-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"))
	return err == nil
}

// entries lists the UKIs of each slot on the ESP. More than one file for a
// slot (an interrupted install) is reported as an error.
func (l Layout) entries() (map[string][]Entry, error) {
	dir := filepath.Join(l.ESP, EntryDir)
	des, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("ESP: %w", err)
	}
	out := map[string][]Entry{}
	for _, de := range des {
		if e, ok := ParseEntry(de.Name()); ok {
			out[e.Slot] = append(out[e.Slot], e)
		}
	}
	for _, es := range out {
		sort.Slice(es, func(i, j int) bool { return es[i].File < es[j].File })
	}
	return out, nil
}

// Status reads both slots.
func (l Layout) Status() (Status, error) {
	var st Status
	var err error
	if st.Booted, err = l.BootedSlot(); err != nil {
		return st, fmt.Errorf("booted slot: %w", err)
	}
	st.Trial = l.Trial()
	ents, err := l.entries()
	if err != nil {
		return st, err
	}
	for _, s := range Slots {
		sl := Slot{Name: s, PartLabel: PartPrefix + strings.ToUpper(s), Booted: s == st.Booted}
		es := ents[s]
		if len(es) > 1 {
			names := make([]string, len(es))
			for i, e := range es {
				names[i] = e.File
			}
			sl.Err = fmt.Sprintf("several entries %s (an interrupted update); the next update of this slot replaces them", strings.Join(names, ", "))
		}
		if len(es) > 0 {
			sl.Entry = es[0]
			uki, err := os.ReadFile(filepath.Join(l.ESP, EntryDir, es[0].File))
			if err == nil {
				var osr map[string]string
				osr, err = OSRelease(uki)
				sl.Version, sl.Pretty = osr["IMAGE_VERSION"], osr["PRETTY_NAME"]
			}
			if err != nil && sl.Err == "" {
				sl.Err = err.Error()
			}
		}
		st.Slots = append(st.Slots, sl)
	}
	return st, nil
}

// Slot returns the named slot of st.
func (st Status) Slot(name string) Slot {
	for _, s := range st.Slots {
		if s.Name == name {
			return s
		}
	}
	return Slot{Name: name}
}
