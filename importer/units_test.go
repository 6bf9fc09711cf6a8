package importer

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"lbd/config"
)

func kaImport(t *testing.T, text string, opt Options) (*Result, string) {
	t.Helper()
	res, err := Keepalived("k.conf", []byte(text), t.TempDir(), opt)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	WriteTOML(&b, res)
	if _, err := config.Parse("out.toml", b.Bytes()); err != nil {
		t.Fatalf("output does not validate: %v\n%s", err, b.String())
	}
	return res, b.String()
}

func warned(res *Result, sub string) bool {
	return slices.ContainsFunc(res.Warnings, func(w Warning) bool { return strings.Contains(w.Msg, sub) })
}

func TestGrammar(t *testing.T) {
	text := `$PORT=8080
virtual_server 10.0.0.1 80 { # comment after a brace
  lb_algo rr ! another comment
  protocol TCP
  real_server 192.0.2.1 ${PORT} { weight 1
    HTTP_GET { url { path "/a b#c" } connect_timeout 1 }
  }
  real_server 192.0.2.2 \
      $PORT
  {
    weight 1
  }
}
`
	res, out := kaImport(t, text, Options{})
	if len(res.Services) != 1 || len(res.Services[0].Backends) != 2 {
		t.Fatalf("want 1 service with 2 backends:\n%s", out)
	}
	b := res.Services[0].Backends
	if b[0].Port != 8080 || b[1].Port != 8080 {
		t.Errorf("$PORT not expanded: %d %d", b[0].Port, b[1].Port)
	}
	if h := b[0].Health; h == nil || h.Path != "/a b#c" || h.Timeout != time.Second {
		t.Errorf("one-line nested blocks / quoted '#' lost: %+v", h)
	}
}

func TestSyntaxErrorsNameTheLine(t *testing.T) {
	for text, want := range map[string]string{
		"virtual_server 10.0.0.1 80 {\n  lb_algo rr\n":    "k.conf:1:",
		"virtual_server 10.0.0.1 80 {\n}\n}\n":            "k.conf:3:",
		"virtual_server 10.0.0.1 80 {\n misc_path \"x\n}": "k.conf:2:",
		"{\n":                    "k.conf:1:",
		"include missing/*.conf": "",
	} {
		_, err := Keepalived("k.conf", []byte(text), t.TempDir(), Options{})
		if want == "" {
			if err != nil {
				t.Errorf("%q: an include matching nothing is a warning, got %v", text, err)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: error %v, want it to start with %s", text, err, want)
		}
	}
}

func TestIncludeRelativeToIncludingFile(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "sub", "vs"), 0o755)
	os.WriteFile(filepath.Join(dir, "keepalived.conf"), []byte("include sub/inner.conf\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "sub", "inner.conf"), []byte("include vs/*.conf\n"), 0o644)
	for i, ip := range []string{"10.0.0.1", "10.0.0.2"} {
		os.WriteFile(filepath.Join(dir, "sub", "vs", string(rune('a'+i))+".conf"),
			[]byte("virtual_server "+ip+" 80 {\n protocol TCP\n lb_algo rr\n real_server 192.0.2.1 80 {\n }\n}\n"), 0o644)
	}
	os.WriteFile(filepath.Join(dir, "loop.conf"), []byte("include loop.conf\n"), 0o644)
	res, err := KeepalivedFile(filepath.Join(dir, "keepalived.conf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Services) != 2 {
		t.Fatalf("want the 2 services of sub/vs/*.conf, got %d", len(res.Services))
	}
	if _, err := KeepalivedFile(filepath.Join(dir, "loop.conf"), Options{}); err == nil || !strings.Contains(err.Error(), "loop") {
		t.Errorf("include loop: %v", err)
	}
}

// TestSchedulerMapping pins the table in README and `lbd import --help`,
// with and without lbd's least-connection schedulers.
func TestSchedulerMapping(t *testing.T) {
	withLC := Options{Schedulers: []string{"rr", "random", "sh", "mh", "lc", "wlc"}}
	without := Options{Schedulers: []string{"rr", "random", "sh", "mh"}}
	cases := []struct {
		algo, flag    string
		opt           Options
		want          string
		warn          bool
		equalWeights  bool
		backupsLowest bool
	}{
		{"rr", "", withLC, "rr", false, true, false},
		{"wrr", "", withLC, "rr", false, false, false},
		{"lc", "", withLC, "lc", false, true, false},
		{"lc", "", without, "rr", true, true, false},
		{"wlc", "", withLC, "wlc", false, false, false},
		{"wlc", "", without, "rr", true, false, false},
		{"sed", "", withLC, "wlc", true, false, false},
		{"nq", "", without, "rr", true, false, false},
		{"sh", "", withLC, "sh", false, false, false},
		{"sh", "sh-port", withLC, "mh", false, false, false},
		{"mh", "", withLC, "sh", false, false, false},
		{"mh", "mh-port", withLC, "mh", false, false, false},
		{"dh", "", withLC, "sh", true, false, false},
		{"lblcr", "", withLC, "sh", true, false, false},
		{"fo", "", withLC, "rr", false, false, true},
		{"ovf", "", withLC, "rr", true, false, true},
		{"bogus", "", withLC, "rr", true, false, false},
	}
	for _, c := range cases {
		text := "virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_algo " + c.algo + "\n " + c.flag + "\n" +
			" real_server 192.0.2.1 80 {\n  weight 3\n }\n real_server 192.0.2.2 80 {\n  weight 1\n }\n}\n"
		res, _ := kaImport(t, text, c.opt)
		s := res.Services[0]
		if s.Scheduler != c.want {
			t.Errorf("%s %s: scheduler %s, want %s", c.algo, c.flag, s.Scheduler, c.want)
		}
		if got := warned(res, "scheduler"); got != c.warn {
			t.Errorf("%s %s: warned=%v, want %v: %v", c.algo, c.flag, got, c.warn, res.Warnings)
		}
		if eq := s.Backends[0].Weight == s.Backends[1].Weight; eq != c.equalWeights {
			t.Errorf("%s: weights %d/%d, equal want %v", c.algo, s.Backends[0].Weight, s.Backends[1].Weight, c.equalWeights)
		}
		if c.backupsLowest != s.Backends[1].Backup || s.Backends[0].Backup {
			t.Errorf("%s: backup flags %v/%v", c.algo, s.Backends[0].Backup, s.Backends[1].Backup)
		}
	}
}

func TestHealthMapping(t *testing.T) {
	text := `virtual_server 10.0.0.1 80 {
  protocol TCP
  lb_algo wrr
  delay_loop 10
  retry 2
  real_server 192.0.2.1 8080 {
    HTTP_GET {
      url {
        path /ok
        status_code 200-299 302
      }
      connect_port 81
      connect_timeout 2
    }
  }
  real_server 192.0.2.2 8080 {
    HTTP_GET {
      url {
        path /ok
        status_code 200-299 302
      }
      connect_port 81
      connect_timeout 2
    }
  }
  sorry_server 192.0.2.9 8080
}`
	res, _ := kaImport(t, text, Options{})
	s := res.Services[0]
	want := &Health{Type: "http", Port: 81, Interval: 10 * time.Second, Timeout: 2 * time.Second, Rise: 1, Fall: 3, Path: "/ok", ExpectStatus: []string{"200-299", "302"}}
	if !s.Health.equal(want) {
		t.Errorf("shared health %+v, want %+v", s.Health, want)
	}
	if s.Backends[0].Health != nil || s.Backends[2].Health == nil || s.Backends[2].Health.Type != "none" || !s.Backends[2].Backup {
		t.Errorf("sorry server must be an unchecked backup, real servers use the service check")
	}
}

func TestWeightScaling(t *testing.T) {
	res, _ := kaImport(t, "virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_algo wrr\n real_server 192.0.2.1 80 {\n weight 65535\n }\n real_server 192.0.2.2 80 {\n weight 1\n }\n real_server 192.0.2.3 80 {\n weight 0\n }\n}\n", Options{})
	b := res.Services[0].Backends
	if b[0].Weight != 1000 || b[1].Weight != 1 || b[2].Weight != 0 || !warned(res, "scaled") {
		t.Errorf("weights %d %d %d, want 1000 1 0 with a warning", b[0].Weight, b[1].Weight, b[2].Weight)
	}
}

func TestHelpers(t *testing.T) {
	if got, _ := kaHex([]string{"Ab12f", "3", "456", "546443123"}); !bytes.Equal(got, []byte{0xab, 0x12, 0x0f, 0x03, 0x45, 0x06, 0x54, 0x64, 0x43, 0x12, 0x03}) {
		t.Errorf("kaHex: % x (keepalived.conf(5) example)", got)
	}
	if got, _ := splitArgv(`/bin/check --name 'a b' c\ d`); !slices.Equal(got, []string{"/bin/check", "--name", "a b", "c d"}) {
		t.Errorf("splitArgv: %q", got)
	}
	addrs, err := expandRange("192.168.200.1-3")
	if err != nil || len(addrs) != 3 || addrs[2] != netip.MustParseAddr("192.168.200.3") {
		t.Errorf("expandRange: %v %v", addrs, err)
	}
	if _, err := expandRange("10.0.0.0/16"); err == nil {
		t.Errorf("a /16 group must be refused, not made into 65536 services")
	}
	for d, want := range map[time.Duration]string{6 * time.Second: "6s", 90 * time.Second: "90s", time.Hour: "1h", 2500 * time.Millisecond: "2500ms"} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %s, want %s", d, got, want)
		}
	}
	if got := quote("a\"b\\c\x01"); got != `"a\"b\\c\u0001"` {
		t.Errorf("quote: %s", got)
	}
}

func TestIpvsadmLongOptions(t *testing.T) {
	text := "ipvsadm --add-service --udp-service 10.0.0.1:53 --scheduler rr --persistent\n" +
		"ipvsadm --add-server --udp-service 10.0.0.1:53 --real-server 192.0.2.1:53 --masquerading --weight 2\n" +
		"--set 3600 120 60\n"
	res, err := Ipvsadm("rules", []byte(text), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Services[0]
	if s.Protocol != "udp" || s.Persistence != 300*time.Second || s.SNAT || len(s.Backends) != 1 || s.Backends[0].Weight != 1 {
		t.Errorf("service %+v backends %+v", s, s.Backends[0])
	}
	if res.Conntrack.TCPEstablished != time.Hour || res.Conntrack.UDP != time.Minute {
		t.Errorf("--set: %+v", res.Conntrack)
	}
}

func TestConditionalLines(t *testing.T) {
	text := "virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_algo rr\n" +
		"@lb1 real_server 192.0.2.1 80 {\n weight 1\n }\n" +
		"@^lb1\treal_server 192.0.2.2 80 {\n weight 1\n }\n}\n"
	for id, want := range map[string]string{"lb1": "192.0.2.1", "lb2": "192.0.2.2"} {
		res, _ := kaImport(t, text, Options{ConfigID: id})
		if b := res.Services[0].Backends; len(b) != 1 || b[0].Addr.String() != want {
			t.Errorf("config id %s: backends %v, want only %s", id, b, want)
		}
	}
	// Without an id both are skipped (with their blocks), so nothing is left.
	res, err := Keepalived("k.conf", []byte(text), ".", Options{})
	if err != nil || len(res.Services) != 0 || !warned(res, "--config-id") {
		t.Errorf("no id: %v services, err %v, warnings %v", len(res.Services), err, res.Warnings)
	}
}
