package main

import (
	"strings"
	"testing"
)

// A perf script excerpt: wrk in the NAT path, the rig's lbd (pid 42), a
// softirq in the idle loop, a bare idle sample and another helper's process.
const scriptSample = "wrk  100 \n" +
	"\tffffffff81 nft_do_chain\n\tffffffff82 nft_do_chain_inet\n\tffffffff83 nf_hook_slow\n\tffffffff84 nf_conntrack_in\n\tffffffff85 do_syscall_64\n" +
	"\n" +
	"lbd  42 \n" +
	"\t1234 runtime.futex.abi0\n\t5678 lbd/lb.(*EndedFlows).Run\n" +
	"\n" +
	"swapper     0 \n" +
	"\tffffffff81 __nf_conntrack_find_get+0x10\n\tffffffff82 net_rx_action\n\tffffffff83 handle_softirqs\n\tffffffff84 do_idle\n" +
	"\n" +
	"swapper     0 \n" +
	"\tffffffff81 pv_native_safe_halt\n\tffffffff82 default_idle\n\tffffffff83 do_idle\n" +
	"\n" +
	"qemu-system-x86  7 \n" +
	"\tffffffff81 nft_do_chain\n" +
	"\n"

func TestParseScriptKeepsOnlyTheMeasuredTraffic(t *testing.T) {
	var p ProfileRun
	if err := p.parseScript(strings.NewReader(scriptSample), map[string]bool{"42": true}); err != nil {
		t.Fatal(err)
	}
	if p.Samples != 5 || p.Kept != 3 || p.Idle != 1 {
		t.Fatalf("samples %d kept %d idle %d, want 5, 3 (wrk, lbd, softirq in idle), 1", p.Samples, p.Kept, p.Idle)
	}
	want := map[string]int{
		"nft_do_chain (rule walks)":          1, // qemu's is not kept
		"nf_hook_slow (all netfilter hooks)": 1,
		"nf_conntrack_in":                    1,
		"softirq (all)":                      1,
		"lbd process":                        1,
		"syscalls (wrk, nginx)":              1,
	}
	for area, n := range want {
		if p.Incl[area] != n {
			t.Errorf("area %q: %d samples, want %d (all: %v)", area, p.Incl[area], n, p.Incl)
		}
	}
	// Self is by leaf symbol, offsets stripped; lbd's pseudo frame is not a symbol.
	if p.Self["nft_do_chain"] != 1 || p.Self["__nf_conntrack_find_get"] != 1 || p.Self["runtime.futex.abi0"] != 1 || p.Self["LBDPROC"] != 0 {
		t.Errorf("self: %v", p.Self)
	}
}

func TestUsPer(t *testing.T) {
	// 2,000 samples at 2,000 Hz = 1 s of CPU over 10,000 requests = 100 us.
	p := ProfileRun{Requests: 10000}
	if got := p.usPer(2000); got != 100 {
		t.Fatalf("usPer = %v, want 100", got)
	}
}
