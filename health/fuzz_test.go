package health

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// FuzzParsePayload: a udp payload never panics, plain text is taken as is,
// and every hex payload round-trips through its canonical spelling.
// Seeds: testdata/fuzz/FuzzParsePayload.
func FuzzParsePayload(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParsePayload(s)
		switch {
		case strings.HasPrefix(s, "hex:"):
			if err != nil {
				if b != nil || !strings.Contains(err.Error(), "bad hex") {
					t.Fatalf("ParsePayload(%q) = %q, %v", s, b, err)
				}
				return
			}
			again, err := ParsePayload("hex:" + hex.EncodeToString(b))
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("ParsePayload(%q) = %x does not round-trip: %x %v", s, b, again, err)
			}
		case strings.HasPrefix(s, "text:"):
			if err != nil || string(b) != s[len("text:"):] {
				t.Fatalf("ParsePayload(%q) = %q, %v", s, b, err)
			}
		default:
			if err != nil || string(b) != s {
				t.Fatalf("ParsePayload(%q) = %q, %v; plain text must be taken as is", s, b, err)
			}
		}
	})
}

// FuzzParseExpectStatus: every accepted range lies in 100-599, low <= high.
func FuzzParseExpectStatus(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParseExpectStatus([]string{s})
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.validate() != nil {
				t.Fatalf("ParseExpectStatus(%q) accepted %v", s, r)
			}
		}
	})
}
