package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"lbd/appliance/control"
	"lbd/internal/lab"
)

// TestDebPackage installs the Debian package into a fresh minimal Debian 12
// root (debootstrap --variant=minbase, cached under out/debroot/), then runs
// the installed lbd from that root the way lbd.service does: as user lbd
// with only the unit's three capabilities as ambient ones and no new
// privileges, in the lab's lb namespace. Traffic through the VIP must reach
// both backends, and an exec health check must run as user lbd with no
// permitted, effective or ambient capability. Last, dpkg --purge must take everything away.
//
// LBD_DEB names the package (make deb-test, make test); without it the test
// builds one with packaging/build-deb.sh from a CGO_ENABLED=0 lbd, as the
// Makefile does.
//
// Every command that needs /proc or /sys in the root runs in its own mount
// namespace (ip netns exec makes one; unshare --mount elsewhere) and mounts
// them there: the mounts end with the command, so no exit path of the test,
// not even a kill, leaves a mount behind on the host.
func TestDebPackage(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"debootstrap", "dpkg-deb", "curl", "unshare", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (make deps installs it): %v", tool, err)
		}
	}
	dir := t.TempDir()
	deb := os.Getenv("LBD_DEB")
	if deb == "" {
		deb = buildDeb(t, dir)
	}
	root := filepath.Join(dir, "root")
	debianRoot(t, root)
	// Whatever happens below, no mount may stay under the root (the temp
	// dir's removal would otherwise walk into it).
	t.Cleanup(func() {
		if m := mountsUnder(t, root); len(m) > 0 {
			t.Errorf("mounts left under the test root: %v", m)
		}
	})

	// Install.
	if err := copyFile(deb, filepath.Join(root, "tmp", "lbd.deb")); err != nil {
		t.Fatal(err)
	}
	if out, err := inRoot(root, "dpkg", "-i", "/tmp/lbd.deb"); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	for _, f := range []string{"usr/sbin/lbd", "lib/systemd/system/lbd.service", "usr/share/man/man8/lbd.8.gz",
		"usr/share/bash-completion/completions/lbd", "usr/share/doc/lbd/copyright", "usr/share/doc/lbd/changelog.gz"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("package did not install /%s: %v", f, err)
		}
	}
	if out, err := inRoot(root, "dpkg-query", "-W", "-f=${Conffiles}", "lbd"); err != nil || !strings.Contains(out, "/etc/lbd/lb.toml") {
		t.Errorf("/etc/lbd/lb.toml is not a conffile: %q %v", out, err)
	}
	pw, err := inRoot(root, "getent", "passwd", "lbd")
	if err != nil {
		t.Fatalf("postinst made no user lbd: %v %s", err, pw)
	}
	uid, _ := strconv.Atoi(strings.Split(pw, ":")[2])
	if uid == 0 || uid >= 1000 {
		t.Errorf("user lbd has uid %d, want a system uid", uid)
	}
	if out, err := inRoot(root, "stat", "-c", "%U:%G %a", "/etc/lbd/lb.toml"); err != nil || strings.TrimSpace(out) != "root:lbd 640" {
		t.Errorf("/etc/lbd/lb.toml is %q (%v), want root:lbd 640", out, err)
	}
	if out, err := inRoot(root, "bash", "-n", "/usr/share/bash-completion/completions/lbd"); err != nil {
		t.Errorf("bash completion does not parse: %v\n%s", err, out)
	}
	if out, err := inRoot(root, "bash", "-c", "source /usr/share/bash-completion/completions/lbd; COMP_WORDS=(lbd che); COMP_CWORD=1; _lbd; echo ${COMPREPLY[*]}"); err != nil || strings.TrimSpace(out) != "check" {
		t.Errorf("completing 'lbd che' gave %q (%v), want check", out, err)
	}

	// The shipped config: a commented example that checks clean.
	out, err := inRoot(root, "lbd", "check", "/etc/lbd/lb.toml")
	if err != nil || !strings.Contains(out, "/etc/lbd/lb.toml: OK (0 services") {
		t.Fatalf("lbd check /etc/lbd/lb.toml: %v\n%s", err, out)
	}

	// Run it in a lab. The exec check of the second service writes its
	// identity where the lbd user may write: its state directory.
	e := newEnv(t, 2, 1)
	cfg := fmt.Sprintf(`[[service]]
name = "web"
vip = %q
port = 80
protocol = "tcp"
scheduler = "rr"
snat = true

  [service.health]
  type = "tcp"
  interval = "200ms"
  rise = 1

%s
[[service]]
name = "probe"
vip = %q
port = 7000
protocol = "tcp"

  [service.health]
  type = "exec"
  command = ["/bin/sh", "-c", "{ id -u; grep -E '^Cap(Inh|Prm|Eff|Amb)' /proc/self/status; } > /var/lib/lbd/check-identity.tmp && mv /var/lib/lbd/check-identity.tmp /var/lib/lbd/check-identity"]
  interval = "2s"
  timeout = "2s"
  rise = 1

%s`, lab.VIPv4, backends(80, 1, 2), "203.0.113.11", backends(7000, 1))
	if err := os.WriteFile(filepath.Join(root, "etc/lbd/lb-test.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := inRoot(root, "lbd", "check", "/etc/lbd/lb-test.toml"); err != nil {
		t.Fatalf("lbd check of the test config: %v\n%s", err, out)
	}
	// What lbd.service does, by setpriv from util-linux in the root: user
	// lbd, the bounding set cut to three capabilities, those three
	// ambient, no new privileges. The state directory as StateDirectory=
	// would make it.
	if out, err := inRoot(root, "install", "-d", "-o", "lbd", "-g", "lbd", "-m", "0700", "/var/lib/lbd"); err != nil {
		t.Fatalf("state directory: %v\n%s", err, out)
	}
	if out, err := inRoot(root, "install", "-d", "-o", "lbd", "-g", "lbd", "-m", "0755", "/run/lbd"); err != nil {
		t.Fatalf("run directory: %v\n%s", err, out)
	}
	// lbd must write net.* sysctls as user lbd with CAP_NET_ADMIN alone
	// (the kernel's net_ctl_permissions): start from a value it changes.
	if err := e.lab.Exec("lb", "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"); err != nil {
		t.Fatal(err)
	}
	const caps = "+net_admin,+net_raw,+net_bind_service"
	logf, err := os.Create(filepath.Join(dir, "lbd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := e.lab.Command("lb", append([]string{"sh", "-c", mountScript, "sh", root},
		"setpriv", "--reuid=lbd", "--regid=lbd", "--init-groups", "--no-new-privs",
		"--inh-caps=-all,"+caps, "--ambient-caps=-all,"+caps, "--bounding-set=-all,"+caps,
		"/usr/sbin/lbd", "run", "--config", "/etc/lbd/lb-test.toml")...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			if err := terminate(cmd, time.Minute); err != nil {
				t.Errorf("lbd on SIGTERM: %v", err)
			}
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("lbd log:\n%s", b)
			}
		}
	})

	// Up and both web backends healthy, asked through the chroot's lbd.
	socket := filepath.Join(root, "run/lbd/lbd.sock")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := control.Call(socket, control.Request{Command: "status"}, 5*time.Second)
		up := 0
		if err == nil && resp.Status != nil {
			for _, s := range resp.Status.Services {
				for _, b := range s.Backends {
					if b.State == "up" {
						up++
					}
				}
			}
		}
		if up == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lbd from the package: %d of 3 backends up after 2 minutes (status err %v)", up, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, err := e.lab.Output("lb", "sysctl", "-n", "net.ipv4.conf.all.rp_filter"); err != nil || strings.TrimSpace(out) != "2" {
		t.Errorf("rp_filter in the lb namespace is %q (%v): lbd as user lbd did not set its default 2", out, err)
	}
	if out, err := e.lab.Output("lb", "chroot", root, "lbd", "status"); err != nil || !strings.Contains(out, "web") {
		t.Errorf("lbd status in the root: %v\n%s", err, out)
	}

	// curl through the VIP reaches both backends.
	seen := map[string]int{}
	for i := 0; i < 8; i++ {
		out, err := e.lab.Output("client", "curl", "-sS", "--max-time", "10", "http://"+lab.VIPv4+"/")
		if err != nil {
			t.Fatalf("curl through the VIP: %v", err)
		}
		seen[lab.Name(out)]++
	}
	if seen["be1"] == 0 || seen["be2"] == 0 || len(seen) != 2 {
		t.Errorf("curl through the VIP reached %v, want be1 and be2", seen)
	}

	// The exec check ran as user lbd with no permitted, effective or
	// ambient capability. The inheritable set may stay (lbd cannot empty
	// it under the unit's syscall filter): it grants nothing by itself,
	// and under no-new-privs no file capability adds to it.
	// Backends start up before their first check, so "3 up" above does
	// not mean the exec check has run yet: wait for what it writes.
	var b []byte
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if b, err = os.ReadFile(filepath.Join(root, "var/lib/lbd/check-identity")); err == nil && len(b) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the exec health check left no identity within a minute: %v", err)
		}
	}
	ident := parseIdentity(string(b))
	if ident["uid"] != strconv.Itoa(uid) {
		t.Errorf("exec check ran as uid %s, want lbd's %d\n%s", ident["uid"], uid, b)
	}
	for _, set := range []string{"CapPrm", "CapEff", "CapAmb"} {
		v, ok := ident[set]
		if !ok || strings.Trim(v, "0") != "" {
			t.Errorf("exec check has %s = %q, want none\n%s", set, v, b)
		}
	}
	stop()

	// Purge removes the binary, the conffile and the state directory.
	if out, err := inRoot(root, "dpkg", "--purge", "lbd"); err != nil {
		t.Fatalf("dpkg --purge: %v\n%s", err, out)
	}
	for _, f := range []string{"usr/sbin/lbd", "etc/lbd/lb.toml", "var/lib/lbd", "lib/systemd/system/lbd.service"} {
		if _, err := os.Stat(filepath.Join(root, f)); err == nil {
			t.Errorf("/%s is still there after dpkg --purge", f)
		}
	}
}

// mountScript mounts /proc and /sys in the root given as $1 and runs the
// rest of its arguments chrooted there. It runs in a mount namespace of its
// own (ip netns exec, unshare --mount), where the mounts die with it.
const mountScript = `set -e
r=$1; shift
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
exec chroot "$r" "$@"`

// inRoot runs a command chrooted into root, in a private mount namespace.
func inRoot(root string, args ...string) (string, error) {
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", mountScript, "sh", root}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "DEBIAN_FRONTEND=noninteractive"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// parseIdentity reads the exec check's output: the uid line, then
// "CapXxx:\tHEX" lines.
func parseIdentity(s string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			m["uid"] = strings.TrimSpace(sc.Text())
			continue
		}
		m[k] = strings.TrimSpace(v)
	}
	return m
}

// buildDeb builds lbd as the Makefile does (static, CGO_ENABLED=0: lbd
// clears its ambient capabilities with AllThreadsSyscall, which a cgo build
// cannot) and packages it.
func buildDeb(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "lbd")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "lbd/cmd/lbd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build lbd: %v\n%s", err, out)
	}
	out, err := exec.Command("../packaging/build-deb.sh", bin, dir, "0~test").CombinedOutput()
	if err != nil {
		t.Fatalf("build-deb.sh: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// debianRoot unpacks a minimal Debian 12 root at root. The first run
// debootstraps one (from LBD_DEBIAN_MIRROR, default deb.debian.org) and
// keeps it as a tar under out/debroot/; later runs unpack that in seconds.
func debianRoot(t *testing.T, root string) {
	t.Helper()
	cacheDir, err := filepath.Abs("../out/debroot")
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(cacheDir, "bookworm-minbase.tar")
	if _, err := os.Stat(cache); err != nil {
		mirror := os.Getenv("LBD_DEBIAN_MIRROR")
		if mirror == "" {
			mirror = "http://deb.debian.org/debian"
		}
		fresh := filepath.Join(filepath.Dir(root), "debootstrap")
		t.Logf("debootstrap --variant=minbase bookworm from %s (once; cached in %s)", mirror, cache)
		// In a mount namespace of its own: the /proc and /sys debootstrap
		// mounts in the new root go with it, however it ends.
		if out, err := exec.Command("unshare", "--mount", "--propagation", "private",
			"debootstrap", "--variant=minbase", "bookworm", fresh, mirror).CombinedOutput(); err != nil {
			t.Fatalf("debootstrap: %v\n%s", err, lastLines(string(out), 20))
		}
		if err := os.MkdirAll(cacheDir, 0o755); err != nil {
			t.Fatal(err)
		}
		tmp := cache + ".tmp"
		if out, err := exec.Command("tar", "-C", fresh, "--numeric-owner", "-cf", tmp, ".").CombinedOutput(); err != nil {
			os.Remove(tmp)
			t.Fatalf("tar of the debootstrapped root: %v\n%s", err, out)
		}
		if err := os.Rename(tmp, cache); err != nil {
			t.Fatal(err)
		}
		// The fresh tree is under the test's temp dir, which goes anyway;
		// removing it now halves the disk the test holds.
		_ = os.RemoveAll(fresh)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-C", root, "--numeric-owner", "-xf", cache).CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", cache, err, out)
	}
}

// mountsUnder lists the mount points at or below dir (from this process's
// view of the mount table, which is the host's).
func mountsUnder(t *testing.T, dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Errorf("mountinfo: %v", err)
		return nil
	}
	var found []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			found = append(found, f[4])
		}
	}
	return found
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
