package netif

import (
	"net"
	"strings"
	"testing"
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func TestMatchNIC(t *testing.T) {
	nics := []nicInfo{
		{Index: 1, Name: "lo"},
		{Index: 2, Name: "eth0", MAC: mustMAC("52:54:00:00:00:01")},
		{Index: 3, Name: "lan", MAC: mustMAC("52:54:00:00:00:02")},
		{Index: 4, Name: "eth2", MAC: mustMAC("52:54:00:00:00:03")},
		{Index: 5, Name: "eth2.10", MAC: mustMAC("52:54:00:00:00:03")},
	}
	cases := []struct {
		spec    Spec
		prev    int
		want    int
		wantErr string
	}{
		{spec: Spec{Name: "wan", MAC: "52:54:00:00:00:01"}, want: 2},
		{spec: Spec{Name: "wan", MAC: "52:54:00:00:00:01", Device: "eth0"}, want: 2},
		{spec: Spec{Name: "wan", MAC: "52:54:00:00:00:01", Device: "eth9"}, wantErr: `interface "wan": NIC with mac`},
		{spec: Spec{Name: "wan", MAC: "52:54:00:00:00:09"}, wantErr: `interface "wan": no NIC with mac`},
		{spec: Spec{Name: "x", MAC: "52:54:00:00:00:03"}, wantErr: `interface "x": mac 52:54:00:00:00:03 is ambiguous, it matches eth2, eth2.10`},
		{spec: Spec{Name: "wan", Device: "eth0"}, want: 2},
		// eth1 was renamed to lan by an earlier run: found by its new name.
		{spec: Spec{Name: "lan", Device: "eth1"}, want: 3},
		{spec: Spec{Name: "dmz", Device: "eth1"}, prev: 4, want: 4},
		{spec: Spec{Name: "dmz", Device: "eth7"}, wantErr: `interface "dmz": no NIC named "eth7"`},
	}
	for _, c := range cases {
		got, err := matchNIC(nics, c.spec, c.prev)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%+v: err = %v, want %q", c.spec, err, c.wantErr)
			}
			continue
		}
		if err != nil || got.Index != c.want {
			t.Errorf("%+v: got %d, %v; want %d", c.spec, got.Index, err, c.want)
		}
	}
}

func TestMatchAllRejectsSharedNIC(t *testing.T) {
	nics := []nicInfo{{Index: 2, Name: "eth0", MAC: mustMAC("52:54:00:00:00:01")}}
	_, err := matchAll(nics, []Spec{{Name: "wan", Device: "eth0"}, {Name: "lan", MAC: "52:54:00:00:00:01"}}, nil)
	if err == nil || !strings.Contains(err.Error(), `interface "lan": NIC "eth0" is already used by interface "wan"`) {
		t.Errorf("err = %v", err)
	}
	_, err = matchAll(nics, []Spec{{Name: "wan", Device: "eth0"}, {Name: "wan", Device: "eth0"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Errorf("err = %v", err)
	}
}
