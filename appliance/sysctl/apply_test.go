package sysctl

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeProc lays out a /proc/sys-like tree with every managed key at a
// kernel-like value, so Apply's diff logic is tested without root.
func fakeProc(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	kernel := map[string]string{
		"net.netfilter.nf_conntrack_max":                     "65536",
		"net.netfilter.nf_conntrack_tcp_timeout_established": "432000",
		"net.netfilter.nf_conntrack_tcp_timeout_time_wait":   "120",
		"net.netfilter.nf_conntrack_tcp_timeout_close_wait":  "60",
		"net.netfilter.nf_conntrack_tcp_timeout_fin_wait":    "120",
		"net.netfilter.nf_conntrack_udp_timeout":             "30",
		"net.netfilter.nf_conntrack_udp_timeout_stream":      "120",
		"net.netfilter.nf_conntrack_count":                   "12",
		"net.ipv4.ip_forward":                                "0",
		"net.ipv6.conf.all.forwarding":                       "0",
		"net.ipv4.conf.all.rp_filter":                        "1",
		"net.ipv4.conf.default.rp_filter":                    "1",
		"net.ipv4.tcp_syncookies":                            "1",
	}
	for k, v := range kernel {
		writeKey(t, root, k, v+"\n")
	}
	return root
}

func writeKey(t *testing.T, root, name, v string) {
	t.Helper()
	p := keyPath(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readKey(t *testing.T, root, name string) string {
	t.Helper()
	v, err := readValue(keyPath(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestApplyWritesOnlyDifferences(t *testing.T) {
	root := fakeProc(t)
	changes, err := apply(root, Defaults())
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	got := map[string]Change{}
	for _, c := range changes {
		got[c.Key] = c
	}
	want := map[string][2]string{
		"net.netfilter.nf_conntrack_max":                     {"65536", "262144"},
		"net.netfilter.nf_conntrack_tcp_timeout_established": {"432000", "3600"},
		"net.ipv4.ip_forward":                                {"0", "1"},
		"net.ipv6.conf.all.forwarding":                       {"0", "1"},
		"net.ipv4.conf.all.rp_filter":                        {"1", "2"},
		"net.ipv4.conf.default.rp_filter":                    {"1", "2"},
	}
	if len(got) != len(want) {
		t.Errorf("changed %d keys, want %d: %+v", len(got), len(want), changes)
	}
	for k, ov := range want {
		c, ok := got[k]
		if !ok {
			t.Errorf("%s not changed", k)
			continue
		}
		if c.Old != ov[0] || c.New != ov[1] || !c.Applied() {
			t.Errorf("%s: got %+v, want %s -> %s applied", k, c, ov[0], ov[1])
		}
		if v := readKey(t, root, k); v != ov[1] {
			t.Errorf("%s holds %q, want %q", k, v, ov[1])
		}
	}
	// Untouched keys keep their value (time_wait default equals kernel's).
	if v := readKey(t, root, "net.netfilter.nf_conntrack_tcp_timeout_time_wait"); v != "120" {
		t.Errorf("time_wait = %q", v)
	}

	again, err := apply(root, Defaults())
	if err != nil || len(again) != 0 {
		t.Errorf("second apply: changes %+v, err %v; want none (idempotent)", again, err)
	}
}

func TestApplyZeroKeepsKernelValue(t *testing.T) {
	root := fakeProc(t)
	s := Defaults()
	s.ConntrackMax = 0
	s.TCPEstablishedTimeout = 0
	changes, err := apply(root, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		if c.Key == "net.netfilter.nf_conntrack_max" || c.Key == "net.netfilter.nf_conntrack_tcp_timeout_established" {
			t.Errorf("zero setting changed %s", c.Key)
		}
	}
}

func TestApplyRoundsTimeoutsUp(t *testing.T) {
	root := fakeProc(t)
	s := Defaults()
	s.UDPTimeout = 1500 * time.Millisecond
	if _, err := apply(root, s); err != nil {
		t.Fatal(err)
	}
	if v := readKey(t, root, "net.netfilter.nf_conntrack_udp_timeout"); v != "2" {
		t.Errorf("udp timeout 1.5s written as %q, want 2", v)
	}
}

func TestApplyMissingKeyNamesItAndGoesOn(t *testing.T) {
	root := fakeProc(t)
	if err := os.Remove(keyPath(root, "net.netfilter.nf_conntrack_udp_timeout")); err != nil {
		t.Fatal(err)
	}
	_, err := apply(root, Defaults())
	if err == nil {
		t.Fatal("no error for a missing key")
	}
	if !strings.Contains(err.Error(), "net.netfilter.nf_conntrack_udp_timeout") || !strings.Contains(err.Error(), "nf_conntrack not loaded") {
		t.Errorf("error does not name the key and the likely cause: %v", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error does not wrap ErrNotExist: %v", err)
	}
	// The other keys were still applied.
	if v := readKey(t, root, "net.ipv4.ip_forward"); v != "1" {
		t.Errorf("ip_forward = %q after a failing key, want 1", v)
	}
}

func TestValidate(t *testing.T) {
	for name, mut := range map[string]func(*Settings){
		"negative max":      func(s *Settings) { s.ConntrackMax = -1 },
		"sub-second":        func(s *Settings) { s.UDPTimeout = 10 * time.Millisecond },
		"negative timeout":  func(s *Settings) { s.TCPFinWaitTimeout = -time.Second },
		"rp_filter 3":       func(s *Settings) { s.RPFilter = 3 },
		"tcp_syncookies -1": func(s *Settings) { s.TCPSyncookies = -1 },
	} {
		s := Defaults()
		mut(&s)
		if err := s.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
		if _, err := apply(t.TempDir(), s); err == nil {
			t.Errorf("%s: apply did not validate", name)
		}
	}
	if err := Defaults().Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
}

func TestRefusedClassifiesPermissionErrors(t *testing.T) {
	for _, e := range []error{syscall.EACCES, syscall.EPERM, syscall.EROFS} {
		if !refused(&fs.PathError{Op: "open", Path: "x", Err: e}) {
			t.Errorf("%v not treated as refused", e)
		}
	}
	if refused(&fs.PathError{Op: "open", Path: "x", Err: syscall.EINVAL}) {
		t.Error("EINVAL treated as refused")
	}
}

func TestConntrackUsage(t *testing.T) {
	root := fakeProc(t)
	count, max, err := conntrackUsage(root)
	if err != nil || count != 12 || max != 65536 {
		t.Errorf("usage = %d/%d, %v; want 12/65536", count, max, err)
	}
	_, _, err = conntrackUsage(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "nf_conntrack_count") {
		t.Errorf("missing count: err %v, want one naming nf_conntrack_count", err)
	}
}

func TestDocListsEveryKey(t *testing.T) {
	d := Doc()
	for _, k := range keys {
		if !strings.Contains(d, "`"+k.Name+"`") || !strings.Contains(d, "`"+k.Setting+"`") {
			t.Errorf("Doc lacks %s / %s", k.Name, k.Setting)
		}
	}
}
