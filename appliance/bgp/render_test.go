package bgp

import (
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"testing"

	"lbd/config"
)

const fleetConf = `
[bgp]
asn = 65010
router_id = "203.0.113.129"
source_address = "203.0.113.129"

[[bgp.neighbor]]
address = "203.0.113.254"
asn = 65000
bfd = true
password = "s3cret"

[[bgp.neighbor]]
address = "2001:db8:4::fe"
asn = 65000
hold_time = "30s"

[[service]]
name = "web"
vip = "203.0.113.10"
port = 80
backend = [{ address = "192.0.2.11" }]
`

func loadBGP(t *testing.T, text string) *config.BGP {
	t.Helper()
	c, err := config.Parse("lb.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return c.BGP
}

func TestRender(t *testing.T) {
	got := Render(loadBGP(t, fleetConf), "lb.toml")
	for _, want := range []string{
		"router id 203.0.113.129;",
		"protocol kernel lbd_learn4 {\n\tkernel table 4210;\n\tlearn;",
		"ipv4 { table lbd_vips4; import all; export none; };",
		"ipv6 { table lbd_vips6; import all; export none; };",
		"protocol bfd lbd_bfd {",
		"min rx interval 100 ms;",
		"multiplier 5;",
		"protocol bgp peer_203_0_113_254 {\n\tlocal 203.0.113.129 as 65010;\n\tneighbor 203.0.113.254 as 65000;\n\thold time 9;",
		"\tbfd on;\n\tpassword \"s3cret\";\n\tipv4 { table lbd_vips4; import none; export all; next hop self; };",
		// The IPv6 session does not take the IPv4 source address.
		"protocol bgp peer_2001_db8_4__fe {\n\tlocal as 65010;\n\tneighbor 2001:db8:4::fe as 65000;\n\thold time 30;\n\tkeepalive time 10;",
		"\tipv6 { table lbd_vips6; import none; export all; next hop self; };",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered config lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "bfd on;") != 1 {
		t.Errorf("bfd on only for the neighbor that asks for it:\n%s", got)
	}
	noBFD := Render(loadBGP(t, strings.Replace(fleetConf, "bfd = true", "bfd = false", 1)), "lb.toml")
	if strings.Contains(noBFD, "protocol bfd") {
		t.Errorf("no BFD protocol without a BFD neighbor:\n%s", noBFD)
	}
}

// TestRenderParsesWithBIRD has the real BIRD parse what lbd writes.
func TestRenderParsesWithBIRD(t *testing.T) {
	if _, err := exec.LookPath("bird"); err != nil {
		t.Fatalf("bird (Debian bird2) is needed: %v", err)
	}
	s := NewSupervisor("", t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, text := range []string{fleetConf, strings.Replace(fleetConf, "bfd = true", "hold_time = \"0s\"", 1)} {
		if err := s.Check(Render(loadBGP(t, text), "lb.toml")); err != nil {
			t.Errorf("bird -p: %v", err)
		}
	}
	if err := s.Check("protocol bgp x { nonsense; }\n"); err == nil || !strings.Contains(err.Error(), "refused the generated config") {
		t.Errorf("a broken file must be refused, got %v", err)
	}
}
