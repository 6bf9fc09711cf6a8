package sysctl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// procSys is where the kernel exposes sysctls. Entries under net/ belong to
// the network namespace of the thread that opens them.
const procSys = "/proc/sys"

// Change is one sysctl whose value differed from the desired one.
type Change struct {
	Key string // dotted sysctl name
	Old string // value before
	New string // desired value
	// Warning is set when the write was refused in an expected way and the
	// kernel kept Old: nf_conntrack_max is global and read-only outside the
	// initial network namespace, so lbd run inside a test namespace (or a
	// container) cannot change it. The caller should log it, not fail.
	Warning string
}

// Applied reports whether the kernel now holds New.
func (c Change) Applied() bool { return c.Warning == "" }

// Apply writes every managed sysctl whose current value differs from s and
// returns what it changed. It carries on past a failing key so one refused
// write does not leave the others unapplied; the error joins one error per
// failed key, each naming the key. Refused writes of Global keys are not
// errors but Changes with Warning set.
func Apply(s Settings) ([]Change, error) {
	return apply(procSys, s)
}

func apply(root string, s Settings) ([]Change, error) {
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("kernel settings: %w", err)
	}
	var changes []Change
	var errs []error
	for _, k := range keys {
		want, set := k.value(&s)
		if !set {
			continue
		}
		c, err := applyKey(root, k, want)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if c != nil {
			changes = append(changes, *c)
		}
	}
	return changes, errors.Join(errs...)
}

// applyKey writes one key if it differs; nil Change means it already held want.
func applyKey(root string, k Key, want string) (*Change, error) {
	path := keyPath(root, k.Name)
	cur, err := readValue(path)
	if err != nil {
		return nil, fmt.Errorf("sysctl %s: %w", k.Name, missingHint(k.Name, bareErr(err)))
	}
	if cur == want {
		return nil, nil
	}
	c := &Change{Key: k.Name, Old: cur, New: want}
	// No O_CREATE: /proc/sys files cannot be created, and a missing key
	// must fail rather than make a file in a test root. O_TRUNC is what a
	// shell redirection does; procfs ignores it and test files need it.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		_, err = f.WriteString(want + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		return c, nil
	}
	if k.Global && refused(err) {
		c.Warning = fmt.Sprintf("%s is global and not writable from this network namespace (%v); the kernel keeps %s: set it from the initial namespace", k.Name, bareErr(err), cur)
		return c, nil
	}
	return nil, fmt.Errorf("sysctl %s: write %s (was %s): %w", k.Name, want, cur, bareErr(err))
}

// refused reports the errors /proc/sys gives for a key this namespace or
// process may not write.
func refused(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EPERM)
}

// missingHint explains the usual reason a net.netfilter key is absent: the
// conntrack module is loaded on demand by the first nftables rule using it.
func missingHint(name string, err error) error {
	if errors.Is(err, fs.ErrNotExist) && strings.HasPrefix(name, "net.netfilter.") {
		return fmt.Errorf("%w (nf_conntrack not loaded yet: apply after the nftables table is installed)", err)
	}
	return err
}

// bareErr drops the path from a *fs.PathError: the key name says it better.
func bareErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func keyPath(root, name string) string {
	return filepath.Join(root, strings.ReplaceAll(name, ".", "/"))
}

func readValue(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	// Multi-value keys separate with tabs; none of ours has several values,
	// but normalise whitespace so "1\n" and "1" compare equal.
	return strings.Join(strings.Fields(string(b)), " "), nil
}
