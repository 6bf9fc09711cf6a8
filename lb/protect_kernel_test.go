package lb

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"lbd/internal/lab"
)

// protectLab is a standard lab with backends running and a Dataplane
// programming its lb namespace.
type protectLab struct {
	*lab.Standard
	dp *Dataplane
}

func newProtectLab(t *testing.T, name string, backends, clients int) *protectLab {
	t.Helper()
	needRoot(t)
	s, err := lab.NewStandardClients(name, backends, clients)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.StartBackends(labserver(t), ""); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(s.NSFile("lb"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &protectLab{Standard: s, dp: NewInNetNS(int(f.Fd()))}
}

func (p *protectLab) nft(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.Output("lb", append([]string{"nft"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// echoService is a config with one service named echo on the v4 VIP
// (and echo6 on the v6 VIP) over backends 1..n, plus extra keys.
func echoService(n int, extra string) string {
	var b strings.Builder
	for _, v := range []struct {
		name, vip string
		v6        bool
	}{{"echo", lab.VIPv4, false}, {"echo6", lab.VIPv6, true}} {
		fmt.Fprintf(&b, "[[service]]\nname = %q\nvip = %q\nport = 7000\n%s\n", v.name, v.vip, extra)
		for i := 1; i <= n; i++ {
			a := lab.BackendV4(i)
			if v.v6 {
				a = "[" + lab.BackendV6(i) + "]"
			}
			fmt.Fprintf(&b, "[[service.backend]]\naddress = \"%s:7000\"\n", a)
		}
	}
	return b.String()
}

func TestProtectionRulesLoad(t *testing.T) {
	p := newProtectLab(t, "pload", 2, 1)
	cfg := svcConfig(t, echoService(2, `max_connections = 5
new_connection_rate = "100/s"
burst = 10
per_client_rate = "20/s"
per_client_connections = 3
allow = ["198.51.100.0/24", "2001:db8:1::/64"]
deny = ["198.51.100.99/32", "2001:db8:1::99/128"]`))
	plans := Plan(cfg, nil)
	plans[0].Protect.Throttle = cfg.Services[0].NewConnRate
	if _, err := p.dp.Apply(plans); err != nil {
		t.Fatal(err)
	}
	t.Log(p.nft(t, "list", "ruleset"))
}
