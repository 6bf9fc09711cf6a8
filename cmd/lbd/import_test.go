package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lbd/config"
)

const kaSample = `! two web servers
virtual_server 203.0.113.10 80 {
    delay_loop 6
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    real_server 192.0.2.11 8080 {
        weight 2
        TCP_CHECK {
            connect_timeout 3
        }
    }
    real_server 192.0.2.12 8080 {
        weight 1
        TCP_CHECK {
            connect_timeout 3
        }
    }
    quorum 2
}
`

func TestImportStdout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(path, []byte(kaSample), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := realMain([]string{"import", path}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if _, err := config.Parse("out.toml", out.Bytes()); err != nil {
		t.Fatalf("output does not validate: %v\n%s", err, out.String())
	}
	if !strings.Contains(errb.String(), path+":19: warning: quorum") {
		t.Errorf("want the quorum warning at its line on stderr, got:\n%s", errb.String())
	}
	if strings.Contains(out.String(), "warning") && !strings.Contains(out.String(), "# ") {
		t.Errorf("warnings leaked into the TOML:\n%s", out.String())
	}
}

func TestImportStdinAndOutputFile(t *testing.T) {
	dir := t.TempDir()
	dst := filepath.Join(dir, "lb.toml")
	if err := os.WriteFile(dst, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := runImport([]string{"--ipvsadm", "-", "-o", dst}, strings.NewReader("-A -t 203.0.113.10:80 -s wlc\n-a -t 203.0.113.10:80 -r 192.0.2.11:80 -m -w 1\n"), &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if out.Len() != 0 {
		t.Errorf("-o still printed to stdout: %q", out.String())
	}
	if _, err := config.Load(dst); err != nil {
		t.Fatalf("written file does not validate: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temporary files left beside the output: %v", ents)
	}
}

func TestImportErrorsAndUsage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broken.conf")
	if err := os.WriteFile(path, []byte("virtual_server 10.0.0.1 80 {\n  protocol TCP\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := realMain([]string{"import", path}, &out, &errb); code != 1 {
		t.Fatalf("unclosed block: exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), path+":1:") {
		t.Errorf("error does not name file and line: %s", errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := realMain([]string{"import", "--help"}, &out, &errb); code != 0 || errb.Len() != 0 {
		t.Fatalf("--help: exit %d, stderr %q (want the help on stdout only)", code, errb.String())
	}
	for _, want := range []string{"--ipvsadm", "-o FILE", "lb_algo", "TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK", "sorry_server", "persistence_timeout", "Exit status"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not mention %s", want)
		}
	}
	if code := realMain([]string{"import"}, &out, &errb); code != 2 {
		t.Errorf("no input: exit %d, want 2", code)
	}
	if code := realMain([]string{"import", "a", "b"}, &out, &errb); code != 2 {
		t.Errorf("two inputs: exit %d, want 2", code)
	}
	errb.Reset()
	if code := realMain([]string{"import", "--bogus", "x"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "usage: lbd import") {
		t.Errorf("unknown flag: exit %d, stderr %q", code, errb.String())
	}
}
