package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"lbd/health"
)

const good = `
[appliance]
hostname = "lb-1"
status_listen = "192.0.2.1:9100"

[[service]]
name = "web"
vip = "198.51.100.10"
port = 80
scheduler = "sh"

  [service.health]
  type = "http"
  path = "/healthz"
  expect_status = ["200", "204-299"]

  [[service.backend]]
  address = "192.0.2.11:8080"
  weight = 2

  [[service.backend]]
  address = "192.0.2.12"

  [[service.backend]]
  address = "192.0.2.13:8080"
  backup = true

[[service]]
name = "dns6"
vip = "2001:db8::53"
port = 53
protocol = "udp"
backend = [{ address = "[2001:db8:2::11]:53" }, { address = "2001:db8:2::12" }]
`

func TestParseGood(t *testing.T) {
	c, err := Parse("lb.toml", []byte(good))
	if err != nil {
		t.Fatalf("unexpected error:\n%v", err)
	}
	if len(c.Services) != 2 {
		t.Fatalf("services: got %d want 2", len(c.Services))
	}
	web := c.Services[0]
	if web.Protocol != "tcp" || !web.SNATEnabled() || web.OnEmpty != "reject" || web.DownAction != "keep" {
		t.Errorf("defaults not applied: %+v", web)
	}
	if got := web.Backends[1].Addr.String(); got != "192.0.2.12:80" {
		t.Errorf("default port: got %s", got)
	}
	if web.Backends[0].EffectiveWeight() != 2 || web.Backends[1].EffectiveWeight() != 1 {
		t.Errorf("weights wrong")
	}
	h := web.Health.Spec()
	if h.Interval != 2*time.Second || h.Timeout != time.Second || h.Rise != 2 || h.Fall != 3 {
		t.Errorf("health defaults: %+v", h)
	}
	if len(h.ExpectStatus) != 2 || h.ExpectStatus[1] != (health.StatusRange{Min: 204, Max: 299}) {
		t.Errorf("expect_status: %v", h.ExpectStatus)
	}
	dns := c.Services[1]
	if dns.DownAction != "flush" || dns.Backends[1].Addr.String() != "[2001:db8:2::12]:53" {
		t.Errorf("udp/v6 service: %+v", dns)
	}
}

// Each case names the text, and the errors expected as "LINE:COL: path: substring".
func TestParseErrors(t *testing.T) {
	svc := "[[service]]\nname = \"a\"\nvip = \"198.51.100.1\"\nport = 80\n"
	be := "[[service.backend]]\naddress = \"192.0.2.11\"\n"
	cases := []struct {
		name string
		text string
		want []string
	}{
		{"unknown top key", "bogus = 1\n", []string{"1:1: bogus: unknown key"}},
		{"unknown service key", svc + "sheduler = \"rr\"\n" + be, []string{"5:1: service[0].sheduler: unknown key"}},
		{"bad scheduler", svc + "scheduler = \"wrr\"\n" + be, []string{"5:13: service[0].scheduler: unknown scheduler \"wrr\""}},
		{"bad duration", svc + "persistence = \"10 minutes\"\n" + be, []string{"5:15: service[0].persistence: bad duration"}},
		{"wrong type", svc + "snat = \"yes\"\n" + be, []string{"5:8: service[0].snat: expected true or false, got string"}},
		{"weight range", svc + be + "weight = 5000\n", []string{"7:10: service[0].backend[0].weight: 5000 out of range"}},
		{"negative weight", svc + be + "weight = -1\n", []string{"7:10: service[0].backend[0].weight: -1 out of range"}},
		{"wrong family", "[[service]]\nname = \"a\"\nvip = \"2001:db8::1\"\nport = 80\n" + be,
			[]string{"6:11: service[0].backend[0].address: backend 192.0.2.11 is not IPv6"}},
		{"duplicate name", svc + be + "[[service]]\nname = \"a\"\nvip = \"198.51.100.2\"\nport = 80\n" + be,
			[]string{"8:8: service[1].name: duplicate service name \"a\""}},
		{"duplicate endpoint", svc + be + "[[service]]\nname = \"b\"\nvip = \"198.51.100.1\"\nport = 80\n" + be,
			[]string{"9:7: service[1].vip: 198.51.100.1 tcp port 80 is already used"}},
		{"missing vip", "[[service]]\nname = \"a\"\nport = 80\n" + be, []string{"1:3: service[0]: missing key \"vip\""}},
		{"no backends", svc, []string{"1:3: service[0]: service \"a\" has no [[service.backend]]"}},
		{"bad backend address", svc + "[[service.backend]]\naddress = \"backend-1:80\"\n", []string{"6:11: service[0].backend[0].address: bad address"}},
		{"syntax", "[[service]\n", []string{"1:"}},
		{"bad health type", svc + "[service.health]\ntype = \"icmp\"\n" + be, []string{"6:8: service[0].health.type: unknown check type"}},
		{"timeout > interval", svc + "[service.health]\ninterval = \"1s\"\ntimeout = \"2s\"\n" + be, []string{"7:11: service[0].health.timeout: 2s is longer than the interval"}},
		{"bad rate", svc + "new_connection_rate = \"fast\"\n" + be, []string{"5:23: service[0].new_connection_rate: bad rate"}},
		{"bad cidr", svc + "deny = [\"203.0.113.0/33\"]\n" + be, []string{"5:9: service[0].deny[0]: bad network"}},
		{"slots not prime for sh", svc + "scheduler = \"sh\"\nslots = 100\n" + be, []string{"6:9: service[0].slots: 100 is not prime"}},
		{"three mistakes", svc + "scheduler = \"wrr\"\npersistence = \"x\"\n" + be + "weight = 9999\n", []string{
			"5:13: service[0].scheduler", "6:15: service[0].persistence", "9:10: service[0].backend[0].weight"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("lb.toml", []byte(tc.text))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("want Errors, got %v", err)
			}
			if len(errs) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tc.want), err)
			}
			for i, w := range tc.want {
				got := errs[i].Error()
				if !strings.HasPrefix(got, "lb.toml:") || !strings.Contains(got, "lb.toml:"+w) {
					t.Errorf("error %d:\n got  %s\n want lb.toml:%s...", i, got, w)
				}
			}
		})
	}
}
