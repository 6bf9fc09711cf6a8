package configfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// An appliance's mountinfo: squashfs root, /config as read-only vfat, and
// a path with an escaped space.
const applianceMountinfo = `22 1 7:0 / / ro,relatime shared:1 - squashfs /dev/loop0 ro,errors=continue
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
30 22 0:26 / /var rw,nosuid,nodev shared:13 - tmpfs tmpfs rw,size=505480k,mode=755
41 22 8:3 / /config ro,nosuid,nodev,noexec,relatime shared:20 - vfat /dev/sda3 ro,fmask=0133,dmask=0022,codepage=437
42 30 8:4 / /var/lib/lbd rw,nosuid,nodev,noexec,relatime shared:21 - ext4 /dev/sda4 rw
43 22 0:40 / /mnt/my\040disk rw,relatime - ext4 /dev/sdb1 rw
`

func TestParseMountInfoAndMountOf(t *testing.T) {
	ms, err := ParseMountInfo(strings.NewReader(applianceMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 6 {
		t.Fatalf("parsed %d mounts, want 6: %+v", len(ms), ms)
	}
	want := Mount{MountPoint: "/config", ReadOnly: true, FSType: "vfat", Source: "/dev/sda3"}
	if !reflect.DeepEqual(ms[3], want) {
		t.Errorf("/config line parsed as %+v, want %+v", ms[3], want)
	}
	for _, c := range []struct {
		path, mount string
		ro          bool
	}{
		{"/config", "/config", true},
		{"/config/sub", "/config", true},
		{"/configs", "/", true}, // a name prefix is not a parent
		{"/var/lib/lbd", "/var/lib/lbd", false},
		{"/var/lib", "/var", false},
		{"/etc", "/", true},
		{"/mnt/my disk/x", "/mnt/my disk", false},
	} {
		m, ok := MountOf(ms, c.path)
		if !ok || m.MountPoint != c.mount || m.ReadOnly != c.ro {
			t.Errorf("MountOf(%s) = %+v, %v; want %s ro=%v", c.path, m, ok, c.mount, c.ro)
		}
	}
}

// The later of two mounts on one point is the visible one.
func TestMountOfStacked(t *testing.T) {
	ms, err := ParseMountInfo(strings.NewReader(
		"41 22 8:3 / /config ro,relatime - vfat /dev/sda3 ro\n" +
			"50 41 0:50 / /config rw,relatime - tmpfs tmpfs rw\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := MountOf(ms, "/config"); m.ReadOnly || m.FSType != "tmpfs" {
		t.Errorf("got %+v, want the tmpfs stacked on top", m)
	}
}

func TestParseMountInfoMalformed(t *testing.T) {
	_, err := ParseMountInfo(strings.NewReader("22 1 7:0 / / ro\n"))
	if err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("err = %v, want one naming line 1", err)
	}
}

// fixture writes a mountinfo that puts dir on its own mount, ro or rw.
func fixture(t *testing.T, dir string, ro bool) string {
	t.Helper()
	opt := "rw"
	if ro {
		opt = "ro"
	}
	p := filepath.Join(t.TempDir(), "mountinfo")
	text := "22 1 7:0 / / ro,relatime - squashfs /dev/loop0 ro\n" +
		fmt.Sprintf("41 22 8:3 / %s %s,nosuid,nodev - vfat /dev/sda3 %s,fmask=0133\n", dir, opt, opt)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// recorder stands in for `mount -o remount`: it records the calls and
// never touches a real mount.
type recorder struct {
	calls []string
	fail  map[bool]error
}

func (r *recorder) remount(mp string, rw bool) error {
	r.calls = append(r.calls, fmt.Sprintf("%s rw=%v", mp, rw))
	return r.fail[rw]
}

// leftovers lists the directory's files other than lb.toml.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if e.Name() != "lb.toml" {
			out = append(out, e.Name())
		}
	}
	return out
}

func setup(t *testing.T) (dir, path string) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "lb.toml")
	if err := os.WriteFile(path, []byte("old\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

// On a read-only mount: remount rw, replace, remount ro, in that order;
// the file is a new inode (renamed over, not rewritten in place), keeps
// its mode, and no temp file stays behind.
func TestReplaceRemountsReadOnlyMount(t *testing.T) {
	dir, path := setup(t)
	before, _ := os.Stat(path)
	rec := &recorder{}
	w := Writer{MountInfo: fixture(t, dir, true), Remount: rec.remount}
	if err := w.Replace(path, []byte("new\n")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "new\n" {
		t.Errorf("file holds %q", got)
	}
	if want := []string{dir + " rw=true", dir + " rw=false"}; !reflect.DeepEqual(rec.calls, want) {
		t.Errorf("remounts %q, want %q", rec.calls, want)
	}
	after, _ := os.Stat(path)
	if os.SameFile(before, after) {
		t.Error("file was rewritten in place, not replaced by a rename")
	}
	if after.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want the old file's 0640", after.Mode().Perm())
	}
	if l := leftovers(t, dir); len(l) != 0 {
		t.Errorf("left behind %q", l)
	}
}

// A mount that is already writable is not remounted (and so not made
// read-only afterwards either).
func TestReplaceSkipsRemountWhenRW(t *testing.T) {
	dir, path := setup(t)
	rec := &recorder{}
	w := Writer{MountInfo: fixture(t, dir, false), Remount: rec.remount}
	if err := w.Replace(path, []byte("new\n")); err != nil {
		t.Fatal(err)
	}
	if len(rec.calls) != 0 {
		t.Errorf("remounted %q on a rw mount", rec.calls)
	}
	if got, _ := os.ReadFile(path); string(got) != "new\n" {
		t.Errorf("file holds %q", got)
	}
}

// A failed write leaves the old file, no temp file, and the mount
// read-only again.
func TestReplaceFailureLeavesOldFileAndNoTemp(t *testing.T) {
	dir, _ := setup(t)
	// The rename fails: the target is a non-empty directory.
	target := filepath.Join(dir, "conf.d")
	if err := os.MkdirAll(filepath.Join(target, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	w := Writer{MountInfo: fixture(t, dir, true), Remount: rec.remount}
	err := w.Replace(target, []byte("new\n"))
	if err == nil || !strings.Contains(err.Error(), target) {
		t.Fatalf("err = %v, want one naming %s", err, target)
	}
	if l := leftovers(t, dir); !reflect.DeepEqual(l, []string{"conf.d"}) {
		t.Errorf("directory holds %q after a failed replace, want only conf.d", l)
	}
	if want := []string{dir + " rw=true", dir + " rw=false"}; !reflect.DeepEqual(rec.calls, want) {
		t.Errorf("remounts %q, want %q (back to ro after the failure)", rec.calls, want)
	}
}

// When the partition cannot be made writable nothing is written; when it
// cannot be made read-only again the write stands and the error says so.
func TestReplaceRemountErrors(t *testing.T) {
	dir, path := setup(t)
	rec := &recorder{fail: map[bool]error{true: errors.New("permission denied")}}
	w := Writer{MountInfo: fixture(t, dir, true), Remount: rec.remount}
	err := w.Replace(path, []byte("new\n"))
	if err == nil || !strings.Contains(err.Error(), "read-only "+dir) {
		t.Errorf("err = %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "old\n" {
		t.Errorf("file holds %q after a failed remount", got)
	}
	if len(rec.calls) != 1 {
		t.Errorf("remounts %q, want only the failed rw one", rec.calls)
	}

	rec = &recorder{fail: map[bool]error{false: errors.New("busy")}}
	w.Remount = rec.remount
	err = w.Replace(path, []byte("new\n"))
	if err == nil || !strings.Contains(err.Error(), "back to read-only") {
		t.Errorf("err = %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "new\n" {
		t.Errorf("file holds %q", got)
	}
}
