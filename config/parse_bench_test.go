package config

import (
	"fmt"
	"strings"
	"testing"
)

// scaleConfig is n services of 8 backends, as `make bench` generates them.
func scaleConfig(n int) []byte {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "\n[[service]]\nname = \"s%d\"\nvip = \"203.0.113.%d\"\nport = %d\nscheduler = \"rr\"\n", i, 20+i/100, 10000+i%100)
		for j := 0; j < 8; j++ {
			fmt.Fprintf(&b, "[[service.backend]]\naddress = \"192.0.2.%d:8080\"\nweight = 1\n", 100+j)
		}
	}
	return []byte(b.String())
}

// BenchmarkParse10k parses and validates 10,000 services x 8 backends (the
// issue-13 scale config): the parse is most of a reload's time there.
func BenchmarkParse10k(b *testing.B) {
	data := scaleConfig(10000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Parse("lb.toml", data); err != nil {
			b.Fatal(err)
		}
	}
}
