package importer

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"lbd/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// convert runs the importer the way `lbd import` does and returns the TOML
// and the warnings as printed.
func convert(t testing.TB, path string, opt Options) (string, string, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var res *Result
	if strings.HasSuffix(path, ".save") {
		res, err = Ipvsadm(path, data, opt)
	} else {
		res, err = Keepalived(path, data, filepath.Dir(path), opt)
	}
	if err != nil {
		return "", "", err
	}
	var out, warns bytes.Buffer
	if err := WriteTOML(&out, res); err != nil {
		t.Fatal(err)
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(&warns, w)
	}
	return out.String(), warns.String(), nil
}

func samples(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, pat := range []string{"testdata/*.conf", "testdata/*.save"} {
		m, _ := filepath.Glob(pat)
		out = append(out, m...)
	}
	if len(out) < 5 {
		t.Fatalf("only %d samples in testdata", len(out))
	}
	return out
}

// TestGolden compares the TOML and the warnings of every sample with the
// reviewed output in testdata/golden (go test -update rewrites them).
func TestGolden(t *testing.T) {
	for _, in := range samples(t) {
		t.Run(filepath.Base(in), func(t *testing.T) {
			out, warns, err := convert(t, in, Options{})
			if err != nil {
				t.Fatal(err)
			}
			base := filepath.Join("testdata", "golden", filepath.Base(in))
			for _, f := range []struct{ path, got string }{{base + ".toml", out}, {base + ".warnings", warns}} {
				if *update {
					if err := os.WriteFile(f.path, []byte(f.got), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(f.path)
				if err != nil {
					t.Fatalf("%v (run go test -update to create it)", err)
				}
				if string(want) != f.got {
					t.Errorf("%s differs (go test -update rewrites it after review):\n--- got\n%s\n--- want\n%s", f.path, f.got, want)
				}
			}
		})
	}
}

// TestSamplesPassCheck: every generated file is accepted by lbd's own
// config parser, as `lbd check` would.
func TestSamplesPassCheck(t *testing.T) {
	for _, in := range samples(t) {
		out, _, err := convert(t, in, Options{})
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if _, err := config.Parse(in+".toml", []byte(out)); err != nil {
			t.Errorf("%s: generated config does not validate:\n%v\n%s", in, err, out)
		}
	}
}

// TestMutatedSamplesPassCheck is the property: whatever the input, import
// either fails with an error naming the file and line, or produces a file
// config.Parse accepts. Inputs are the samples with lines dropped,
// duplicated or their numbers and words replaced by others from the corpus.
func TestMutatedSamplesPassCheck(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	values := []string{"0", "1", "-1", "65535", "65536", "99999999999", "0.0001", "3.5", "2001:db8::1", "10.0.0.1",
		"rr", "wlc", "lc", "fo", "ovf", "mh", "sh-port", "NAT", "DR", "UDP", "TCP", "{", "}", "\"", "/", "x", "200-199", "700"}
	dir := t.TempDir()
	runs := 0
	for _, in := range samples(t) {
		data, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(data), "\n")
		for i := 0; i < 150; i++ {
			m := slices.Clone(lines)
			for k := 0; k < 1+rng.Intn(4); k++ {
				j := rng.Intn(len(m))
				switch rng.Intn(3) {
				case 0:
					m = slices.Delete(m, j, j+1)
				case 1:
					m = slices.Insert(m, j, m[rng.Intn(len(m))])
				default:
					f := strings.Fields(m[j])
					if len(f) > 0 {
						f[rng.Intn(len(f))] = values[rng.Intn(len(values))]
						m[j] = strings.Join(f, " ")
					}
				}
				if len(m) == 0 {
					m = []string{""}
				}
			}
			// Keep the mutant beside the original so relative includes
			// still resolve, but write it in the test's own directory.
			path := filepath.Join(dir, filepath.Base(in))
			if err := os.WriteFile(path, []byte(strings.Join(m, "\n")), 0o644); err != nil {
				t.Fatal(err)
			}
			var res *Result
			if strings.HasSuffix(in, ".save") {
				res, err = Ipvsadm(path, []byte(strings.Join(m, "\n")), Options{})
			} else {
				res, err = Keepalived(path, []byte(strings.Join(m, "\n")), "testdata", Options{})
			}
			if err != nil {
				if !strings.Contains(err.Error(), ":") {
					t.Errorf("error without a position: %v", err)
				}
				continue
			}
			var out bytes.Buffer
			WriteTOML(&out, res)
			if _, err := config.Parse("mutant.toml", out.Bytes()); err != nil {
				t.Fatalf("mutant of %s imports to an invalid config:\n%v\n--- input\n%s\n--- output\n%s", in, err, strings.Join(m, "\n"), out.String())
			}
			runs++
		}
	}
	if runs < 300 {
		t.Errorf("only %d mutants imported without error; the property is barely exercised", runs)
	}
}
