// Package netiftest builds throw-away network namespaces and veth pairs for
// the namespace tests of netif and dhcp. Nothing here touches the machine's
// own interfaces: every link is created inside a namespace the test made,
// and every namespace is deleted in t.Cleanup, also when the test fails.
package netiftest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// RequireRoot skips the test, loudly, when not running as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root (network namespaces); run the tests as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("SKIP: needs the ip command (iproute2)")
	}
}

// Netns is one test namespace.
type Netns struct {
	Name string         // lbdt-<tag>-<pid>
	Path string         // /run/netns/<Name>
	H    netns.NsHandle // open handle, closed in cleanup
	NL   *netlink.Handle
}

// NewNetns creates namespace lbdt-<tag>-<pid> and removes it in cleanup.
func NewNetns(t testing.TB, tag string) *Netns {
	t.Helper()
	name := fmt.Sprintf("lbdt-%s-%d", tag, os.Getpid())
	// A namespace left by a crashed earlier run of this same pid is ours.
	_ = exec.Command("ip", "netns", "del", name).Run()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	n := &Netns{Name: name, Path: "/run/netns/" + name}
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	n.H = h
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		h.Close()
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	n.NL = nl
	t.Cleanup(func() { nl.Close(); h.Close() })
	n.Run(t, "ip", "link", "set", "lo", "up")
	return n
}

// Run runs a command inside the namespace (ip netns exec) and returns its
// combined output; failure fails the test.
func (n *Netns) Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.Try(args...)
	if err != nil {
		t.Fatalf("in %s: %s: %v: %s", n.Name, strings.Join(args, " "), err, out)
	}
	return out
}

// Try is Run that returns the error instead of failing.
func (n *Netns) Try(args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Veth creates a veth pair: end a (with MAC macA, empty for random) in n,
// end b in peer. Both ends stay down.
func Veth(t testing.TB, n *Netns, a, macA string, peer *Netns, b string) {
	t.Helper()
	la := netlink.LinkAttrs{Name: a}
	if macA != "" {
		mac, err := net.ParseMAC(macA)
		if err != nil {
			t.Fatalf("mac %s: %v", macA, err)
		}
		la.HardwareAddr = mac
	}
	veth := &netlink.Veth{LinkAttrs: la, PeerName: b, PeerNamespace: netlink.NsFd(int(peer.H))}
	if err := n.NL.LinkAdd(veth); err != nil {
		t.Fatalf("create veth %s/%s in %s: %v", a, b, n.Name, err)
	}
}
