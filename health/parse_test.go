package health

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestParseExpectStatus(t *testing.T) {
	tests := []struct {
		in      []string
		want    []StatusRange
		wantErr string
	}{
		{nil, nil, ""},
		{[]string{"200"}, []StatusRange{{200, 200}}, ""},
		{[]string{"200", "200-399", "204"}, []StatusRange{{200, 200}, {200, 399}, {204, 204}}, ""},
		{[]string{" 301 - 302 "}, []StatusRange{{301, 302}}, ""},
		{[]string{"2xx", "3XX"}, []StatusRange{{200, 299}, {300, 399}}, ""},
		{[]string{"abc"}, nil, `expect_status "abc": expected a status code`},
		{[]string{"200-"}, nil, `expect_status "200-"`},
		{[]string{"399-200"}, nil, "empty range"},
		{[]string{"99"}, nil, "outside 100-599"},
		{[]string{"6xx"}, nil, `expect_status "6xx"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.in, ","), func(t *testing.T) {
			got, err := ParseExpectStatus(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("ParseExpectStatus(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseExpectStatusReportsEveryBadItem(t *testing.T) {
	_, err := ParseExpectStatus([]string{"x", "200", "y"})
	if err == nil || !strings.Contains(err.Error(), `"x"`) || !strings.Contains(err.Error(), `"y"`) {
		t.Fatalf("err = %v, want both bad items named", err)
	}
}

func TestParsePayload(t *testing.T) {
	tests := []struct {
		in      string
		want    []byte
		wantErr bool
	}{
		{"ping", []byte("ping"), false},
		{"", []byte{}, false},
		{"hex:0a0b", []byte{0x0a, 0x0b}, false},
		{"hex:DE AD:be:ef", []byte{0xde, 0xad, 0xbe, 0xef}, false},
		{"text:hex:00", []byte("hex:00"), false},
		{"hex:0", nil, true},
		{"hex:zz", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePayload(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParsePayload(%q) err = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && !bytes.Equal(got, tt.want) {
				t.Fatalf("ParsePayload(%q) = %x, want %x", tt.in, got, tt.want)
			}
		})
	}
}
