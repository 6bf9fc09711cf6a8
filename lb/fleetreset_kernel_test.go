package lb

import (
	"errors"
	"net"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"lbd/internal/lab"
)

// TestFleetReset: with ResetUnknown a TCP packet to a VIP that no flow of
// this node knows (here: its conntrack entry was flushed, as when the
// router moves a flow from another node) gets a reset from the node at
// once; without it conntrack picks the flow up again and it carries on.
func TestFleetReset(t *testing.T) {
	p := newKernelLab(t, "frst", 1, 1)
	plans := Plan(echoService(1, Protection{}), nil)
	for _, tc := range []struct {
		reset bool
		vip   string
	}{{false, lab.VIPv4}, {true, lab.VIPv4}, {true, "[" + lab.VIPv6 + "]"}} {
		if _, err := p.dp.ApplyState(plans, Firewall{ResetUnknown: tc.reset}); err != nil {
			t.Fatal(err)
		}
		out := p.nft(t, "list", "table", "inet", "lbd")
		if strings.Contains(out, "dport @svc4 counter") != tc.reset {
			t.Fatalf("ResetUnknown=%v but the table is:\n%s", tc.reset, out)
		}
		c, err := p.Dial("client", "tcp", tc.vip+":7000", 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lab.AskOn(c, "one"); err != nil {
			t.Fatal(err)
		}
		if err := p.Exec("lb", "conntrack", "-F"); err != nil {
			t.Fatal(err)
		}
		_, err = lab.AskOn(c, "two")
		c.Close()
		if tc.reset && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s: after the flush the flow should get a reset, got %v", tc.vip, err)
		}
		if !tc.reset && err != nil {
			t.Errorf("%s: without ResetUnknown the flow should be picked up again, got %v", tc.vip, err)
		}
	}
	out := p.nft(t, "list", "chain", "inet", "lbd", "prerouting")
	total := 0
	for _, m := range regexp.MustCompile(`counter packets (\d+)`).FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		total += n
	}
	if total != 2 {
		t.Errorf("reset counters: %d packets, want 2 (one per family):\n%s", total, out)
	}
	// A new connection (SYN) is not touched.
	c, err := p.Dial("client", "tcp", net.JoinHostPort(lab.VIPv4, "7000"), 3*time.Second)
	if err != nil {
		t.Fatalf("new connection with the reset chain on: %v", err)
	}
	c.Close()
	if _, err := p.dp.ApplyState(plans, Firewall{}); err != nil {
		t.Fatal(err)
	}
	if out := p.nft(t, "list", "table", "inet", "lbd"); strings.Contains(out, "dport @svc4 counter") {
		t.Errorf("the chain stays after turning it off:\n%s", out)
	}
}
