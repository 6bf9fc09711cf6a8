package config

import (
	"strings"
	"testing"
	"time"

	"lbd/health"
)

// The README documents these defaults; health holds them, config only maps.
func TestHealthSpecDefaults(t *testing.T) {
	c, err := Parse("lb.toml", []byte(`
[[service]]
name = "a"
vip = "198.51.100.1"
port = 80
backend = [{ address = "192.0.2.11" }]
[service.health]
[[service]]
name = "b"
vip = "198.51.100.1"
port = 81
backend = [{ address = "192.0.2.11", health = { type = "http", interval = "500ms" } }]
`))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Services[0].Health.Spec()
	if a.Type != health.TypeTCP || a.Interval != 2*time.Second || a.Timeout != time.Second || a.Rise != 2 || a.Fall != 3 {
		t.Errorf("defaults: %+v", a)
	}
	b := c.Services[1].Backends[0].Health.Spec()
	if b.Timeout != 500*time.Millisecond || b.Path != "/" || len(b.ExpectStatus) != 1 || b.ExpectStatus[0] != (health.StatusRange{Min: 200, Max: 399}) {
		t.Errorf("http override defaults: %+v", b)
	}
}

// Each rule of a check is health's; config must point its message at the key.
func TestHealthProblemsAtTheirKey(t *testing.T) {
	svc := "[[service]]\nname = \"a\"\nvip = \"198.51.100.1\"\nport = 80\nbackend = [{ address = \"192.0.2.11\" }]\n[service.health]\n"
	cases := map[string]string{
		"rise = -1\n":                            "7:8: service[0].health.rise: -1 out of range",
		"fall = 101\n":                           "7:8: service[0].health.fall: 101 out of range",
		"interval = \"1ms\"\n":                   "7:12: service[0].health.interval: 1ms is too short",
		"type = \"exec\"\n":                      "6:2: service[0].health.command: an exec check needs a program",
		"command = [\"/bin/true\"]\n":            "7:11: service[0].health.command: only used by type = \"exec\"",
		"expect_status = \"2xx\"\n":              "6:2: service[0].health.type: path/host/expect_status/expect_body need type",
		"type = \"udp\"\npayload = \"hex:zz\"\n": "8:11: service[0].health.payload: payload \"hex:zz\": bad hex",
		"type = \"http\"\nexpect_status = 700\n": "8:17: service[0].health.expect_status: expect_status \"700\": 700 is outside 100-599",
	}
	for text, want := range cases {
		_, err := Parse("lb.toml", []byte(svc+text))
		if err == nil || !strings.Contains(err.Error(), "lb.toml:"+want) {
			t.Errorf("%q:\n got  %v\n want lb.toml:%s...", text, err, want)
		}
	}
}
