// Package configfile replaces the appliance's config file on its own
// partition: it remounts the partition read-write only for the write (it is
// mounted read-only so nothing changes it by accident), writes a temporary
// file beside the target, fsyncs it, renames it over the target and fsyncs
// the directory, so a power cut leaves either the old file or the new one.
package configfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Mount is one line of /proc/self/mountinfo, the fields this package reads.
type Mount struct {
	MountPoint string
	ReadOnly   bool // the per-mount "ro" option, which remount changes
	FSType     string
	Source     string
}

// ParseMountInfo reads the format of proc(5) /proc/PID/mountinfo: ID,
// parent ID, major:minor, root, mount point, mount options, optional
// fields ended by "-", then fs type, source and super options.
func ParseMountInfo(r io.Reader) ([]Mount, error) {
	var ms []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 6 || sep < 0 || len(f) < sep+3 {
			return nil, fmt.Errorf("mountinfo line %d: malformed: %q", n, sc.Text())
		}
		m := Mount{MountPoint: unescape(f[4]), FSType: f[sep+1], Source: unescape(f[sep+2])}
		for _, o := range strings.Split(f[5], ",") {
			if o == "ro" {
				m.ReadOnly = true
			}
		}
		ms = append(ms, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	return ms, nil
}

// unescape undoes the kernel's octal escapes of space, tab, newline and
// backslash in mountinfo paths ("\040").
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// MountOf returns the mount that holds path (absolute, symlinks resolved):
// the one with the longest mount point that is path or a parent of it, the
// later line winning among mounts stacked on the same point, as the kernel
// lists them in mount order.
func MountOf(mounts []Mount, path string) (Mount, bool) {
	best, found := Mount{}, false
	for _, m := range mounts {
		if !within(path, m.MountPoint) {
			continue
		}
		if !found || len(m.MountPoint) >= len(best.MountPoint) {
			best, found = m, true
		}
	}
	return best, found
}

func within(path, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// Writer replaces files; the zero value works on the real system.
type Writer struct {
	// MountInfo is read to find the mount holding the file; default
	// /proc/self/mountinfo. Tests point it at a fixture.
	MountInfo string
	// Remount makes mountPoint read-write (rw) or read-only again; default
	// runs `mount -o remount,rw|ro MOUNTPOINT`, which keeps the other
	// options (nosuid, fmask, ...) that a bare mount(2) would drop.
	Remount func(mountPoint string, rw bool) error
}

func remountCmd(mountPoint string, rw bool) error {
	mode := "ro"
	if rw {
		mode = "rw"
	}
	out, err := exec.Command("mount", "-o", "remount,"+mode, mountPoint).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mount -o remount,%s %s: %v: %s", mode, mountPoint, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Replace writes data to path atomically. If the mount holding path is
// read-only it is remounted read-write for the write and read-only again
// afterwards, also when the write fails; a mount that is already
// read-write is left alone. An error names the file or the mount point.
func (w Writer) Replace(path string, data []byte) (err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// Resolve the directory, not the file: the rename replaces the name,
	// and the mount to remount is the one the directory lives on.
	dir, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	target := filepath.Join(dir, filepath.Base(abs))

	return w.writable(dir, target, func() error { return writeAtomic(target, data) })
}

// writable runs fn with the mount holding dir read-write: remounted for fn
// and read-only again afterwards when it was read-only, left alone when it
// was writable already. target names the file in errors.
func (w Writer) writable(dir, target string, fn func() error) (err error) {
	// One writer at a time: a second `lbd edit` (console and ssh) must not
	// remount read-only under the first one's write. flock works on any
	// file system, FAT included.
	lock, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("%s: lock: %w", dir, err)
	}

	mi := w.MountInfo
	if mi == "" {
		mi = "/proc/self/mountinfo"
	}
	f, err := os.Open(mi)
	if err != nil {
		return fmt.Errorf("find the mount of %s: %w", target, err)
	}
	mounts, err := ParseMountInfo(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", mi, err)
	}
	m, ok := MountOf(mounts, dir)
	if !ok {
		return fmt.Errorf("%s: no mount in %s holds it", target, mi)
	}
	if m.ReadOnly {
		remount := w.Remount
		if remount == nil {
			remount = remountCmd
		}
		if err := remount(m.MountPoint, true); err != nil {
			return fmt.Errorf("%s is on read-only %s, and making it writable failed: %w", target, m.MountPoint, err)
		}
		defer func() {
			if rerr := remount(m.MountPoint, false); rerr != nil {
				rerr = fmt.Errorf("%s: back to read-only failed (it stays writable until reboot): %w", m.MountPoint, rerr)
				err = errors.Join(err, rerr)
			}
		}()
	}
	return fn()
}

// writeAtomic is the write itself: temp file in the same directory (a
// rename is only atomic within one file system), fsync, rename over the
// target, fsync the directory so the rename itself is on disk. Any failure
// removes the temp file.
func writeAtomic(target string, data []byte) (err error) {
	dir := filepath.Dir(target)
	perm := os.FileMode(0o644)
	if fi, err := os.Stat(target); err == nil {
		perm = fi.Mode().Perm()
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(target)+".new-*")
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("%s: %w", tmp.Name(), err)
	}
	// Chmod can fail on FAT (no modes); the mount's fmask decides there.
	_ = tmp.Chmod(perm)
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("%s: fsync: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("%s: %w", tmp.Name(), err)
	}
	if err = os.Rename(tmp.Name(), target); err != nil {
		return fmt.Errorf("%s: %w", target, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("%s: fsync directory: %w", dir, err)
	}
	return nil
}
