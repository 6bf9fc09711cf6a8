package config

import (
	"strings"
	"testing"
)

// TestKernelBounds: each value here passed `lbd check` before and was then
// refused by the kernel (or silently truncated on the way to it). The
// accepted neighbours pin each bound to the exact value.
func TestKernelBounds(t *testing.T) {
	svc := func(extra string) string {
		return "[[service]]\nname = \"a\"\nvip = \"198.51.100.1\"\nport = 80\n" + extra +
			"[[service.backend]]\naddress = \"192.0.2.11\"\n"
	}
	cases := []struct {
		name, text string
		want       string // "" = accepted; else "LINE:COL: path: substring"
	}{
		// nft_limit_init: (3600e9 ns / 1) * burst must fit in 64 bits.
		{"issue 10: 1/h with a 32-bit burst", svc("new_connection_rate = \"1/h\"\nburst = 4294967295\n"),
			"6:9: service[0].burst: 4294967295 is too large for new_connection_rate \"1/h\" (the kernel's token bucket, unit/rate x burst, would overflow); expected at most 5124095"},
		{"1/h at the largest burst", svc("new_connection_rate = \"1/h\"\nburst = 5124095\n"), ""},
		{"1/h one past it", svc("new_connection_rate = \"1/h\"\nburst = 5124096\n"), "6:9: service[0].burst: 5124096 is too large"},
		{"1/m one past it", svc("new_connection_rate = \"1/m\"\nburst = 307445735\n"), "6:9: service[0].burst: 307445735 is too large"},
		{"1/m at it", svc("new_connection_rate = \"1/m\"\nburst = 307445734\n"), ""},
		{"1/s takes any 32-bit burst", svc("new_connection_rate = \"1/s\"\nburst = 4294967295\n"), ""},
		// NFTA_LIMIT_BURST is 32 bits: a wider burst was truncated (2^32 became 0, i.e. 5).
		{"burst wider than 32 bits", svc("new_connection_rate = \"100/s\"\nburst = 4294967296\n"),
			"6:9: service[0].burst: 4294967296 out of range; expected 0 (kernel default) to 4294967295"},
		// Per-client buckets also need 2 x refill time to fit a time.Duration
		// (with room for float rounding: refill <= MaxInt64/4 ns).
		{"per-client 1/h largest burst", svc("per_client_rate = \"1/h\"\nburst = 640511\n"), ""},
		{"per-client 1/h one past it", svc("per_client_rate = \"1/h\"\nburst = 640512\n"),
			"6:9: service[0].burst: 640512 is too large for per_client_rate \"1/h\""},
		// NFTA_CONNLIMIT_COUNT is 32 bits: 2^32 became "ct count over 0", refusing everything.
		{"max_connections wider than 32 bits", svc("max_connections = 4294967296\n"),
			"5:19: service[0].max_connections: 4294967296 out of range; expected 0 (no limit) to 4294967295"},
		{"max_connections at 32 bits", svc("max_connections = 4294967295\n"), ""},
		{"per_client_connections wider than 32 bits", svc("per_client_connections = 4294967296\n"),
			"5:26: service[0].per_client_connections: 4294967296 out of range"},
		// Set timeouts are milliseconds; under 1ms is sent as none = never expires.
		{"persistence under a millisecond", svc("persistence = \"999us\"\n"),
			"5:15: service[0].persistence: 999µs is too short; expected 0 (off) or at least 1ms"},
		{"persistence of a millisecond", svc("persistence = \"1ms\"\n"), ""},
		{"persistence of years", svc("persistence = \"87600h\"\n"), ""},
		// proc_dointvec_jiffies: seconds <= INT_MAX / HZ (HZ up to 1000).
		{"conntrack timeout over INT_MAX/HZ", "[conntrack]\ntcp_established_timeout = \"596h31m24s\"\n",
			"2:27: conntrack.tcp_established_timeout: 596h31m24s is too long for the kernel (an int of jiffies); expected at most 596h31m23s"},
		{"conntrack timeout at INT_MAX/1000", "[conntrack]\nudp_stream_timeout = \"596h31m23s\"\n", ""},
		// These two keys were not checked at all.
		{"close_wait under a second", "[conntrack]\ntcp_close_wait_timeout = \"500ms\"\n",
			"2:26: conntrack.tcp_close_wait_timeout: 500ms is too short"},
		{"fin_wait over the bound", "[conntrack]\ntcp_fin_wait_timeout = \"100000h\"\n",
			"2:24: conntrack.tcp_fin_wait_timeout: 100000h0m0s is too long"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("lb.toml", []byte(tc.text))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused:\n%v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "lb.toml:"+tc.want) {
				t.Fatalf("got  %v\nwant lb.toml:%s", err, tc.want)
			}
		})
	}
}

// Found by FuzzParseAddress: a zone was accepted on a backend (not on a VIP)
// and silently dropped on the way to the kernel's DNAT.
func TestBackendZoneRefused(t *testing.T) {
	for _, a := range []string{"[fe80::1%eth0]:80", "fe80::1%eth0"} {
		if ap, err := parseBackendAddr(a, 80); err == nil {
			t.Errorf("parseBackendAddr(%q) = %v, want refused", a, ap)
		}
	}
}
