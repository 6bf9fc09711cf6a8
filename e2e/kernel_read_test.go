package e2e

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// This file reads table inet lbd back from the kernel of a lab's lb
// namespace through github.com/google/nftables. Tests that prove the
// control loop compare the kernel with what they expect directly: lbd
// status reports what the daemon believes, and the bugs these tests hunt
// are exactly the cases where the two disagree.
//
// The decoding follows lb/rules.go (endpointKey, slotKey, backendValue):
// every concatenated field is padded to 4 bytes, ports are big-endian, the
// slot number is host-endian.

// kernelTable is the name of the one table lbd owns (lb.TableName). It is
// spelled out rather than imported so these tests keep compiling while lb
// is being reworked; a rename there would make every check here fail
// loudly (no table), not pass silently.
const kernelTable = "lbd"

// nftEndpoint is a service's key in svc4/svc6: daddr . l4proto . dport.
type nftEndpoint struct {
	VIP   netip.Addr
	Proto uint8
	Port  uint16
}

func (e nftEndpoint) String() string {
	p := "tcp"
	if e.Proto == 17 {
		p = "udp"
	} else if e.Proto != 6 {
		p = fmt.Sprint(e.Proto)
	}
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(e.VIP, e.Port), p)
}

// kernelState is what table lbd holds, decoded.
type kernelState struct {
	Chains []string // every chain of the table
	// Dispatch maps the keys of svc4 and svc6 (one per service) to the
	// chain their verdict jumps to.
	Dispatch map[nftEndpoint]string
	// Slots holds, per service key, the backend of each element of
	// slots4/slots6 (in slot order is not needed: only membership is
	// checked).
	Slots map[nftEndpoint][]netip.AddrPort
	// Objects are the names of the table's named objects (counters).
	Objects []string
	// Sets are the names of the table's named sets and maps.
	Sets []string
	// Rules maps a chain to its rules' expressions.
	Rules map[string][][]expr.Any
}

// readKernel dumps table inet lbd of the network namespace whose handle is
// nsFile (e.g. /run/netns/<name>). The caller's thread never changes
// namespace: the netlink socket is opened inside the target one.
func readKernel(nsFile string) (*kernelState, error) {
	f, err := os.Open(nsFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	t, err := c.ListTableOfFamily(kernelTable, nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("table inet %s: %w", kernelTable, err)
	}
	ks := &kernelState{Dispatch: map[nftEndpoint]string{}, Slots: map[nftEndpoint][]netip.AddrPort{}, Rules: map[string][][]expr.Any{}}

	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name != kernelTable {
			continue
		}
		ks.Chains = append(ks.Chains, ch.Name)
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return nil, fmt.Errorf("rules of %s: %w", ch.Name, err)
		}
		for _, r := range rules {
			ks.Rules[ch.Name] = append(ks.Rules[ch.Name], r.Exprs)
		}
	}
	sort.Strings(ks.Chains)

	sets, err := c.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		if !s.Anonymous {
			ks.Sets = append(ks.Sets, s.Name)
		}
	}
	sort.Strings(ks.Sets)

	for _, fam := range []struct {
		svc, slots string
		addrLen    int
	}{{"svc4", "slots4", 4}, {"svc6", "slots6", 16}} {
		els, err := setElements(c, t, fam.svc)
		if err != nil {
			return nil, err
		}
		for _, e := range els {
			ep, rest, err := decodeEndpoint(e.Key, fam.addrLen)
			if err != nil || len(rest) != 0 {
				return nil, fmt.Errorf("%s element key %x: bad length (%v)", fam.svc, e.Key, err)
			}
			ks.Dispatch[ep] = verdictChain(e.Val)
		}
		els, err = setElements(c, t, fam.slots)
		if err != nil {
			return nil, err
		}
		for _, e := range els {
			ep, rest, err := decodeEndpoint(e.Key, fam.addrLen)
			if err != nil || len(rest) != 4 {
				return nil, fmt.Errorf("%s element key %x: bad length (%v)", fam.slots, e.Key, err)
			}
			be, err := decodeBackend(e.Val, fam.addrLen)
			if err != nil {
				return nil, fmt.Errorf("%s element value %x: %v", fam.slots, e.Val, err)
			}
			ks.Slots[ep] = append(ks.Slots[ep], be)
		}
	}

	objs, err := c.GetNamedObjects(t)
	if err != nil {
		return nil, fmt.Errorf("named objects: %w", err)
	}
	for _, o := range objs {
		if no, ok := o.(*nftables.NamedObj); ok {
			ks.Objects = append(ks.Objects, no.Name)
		}
	}
	sort.Strings(ks.Objects)
	return ks, nil
}

// setElements lists a named set's elements; a set that does not exist is
// an error (lbd always creates all four static maps).
func setElements(c *nftables.Conn, t *nftables.Table, name string) ([]nftables.SetElement, error) {
	s, err := c.GetSetByName(t, name)
	if err != nil {
		return nil, fmt.Errorf("set %s: %w", name, err)
	}
	els, err := c.GetSetElements(s)
	if err != nil {
		return nil, fmt.Errorf("elements of %s: %w", name, err)
	}
	return els, nil
}

// verdictChain returns the chain a verdict map element jumps to. The
// library (v0.3.0) does not fill SetElement.VerdictData on a dump; it
// leaves the nested NFTA_DATA_VERDICT attributes in Val, so they are
// decoded here: NFTA_VERDICT_CODE (1), NFTA_VERDICT_CHAIN (2).
func verdictChain(val []byte) string {
	ad, err := netlink.NewAttributeDecoder(val)
	if err != nil {
		return ""
	}
	for ad.Next() {
		if ad.Type() == unix.NFTA_VERDICT_CHAIN {
			return ad.String()
		}
	}
	return ""
}

func decodeEndpoint(k []byte, addrLen int) (nftEndpoint, []byte, error) {
	if len(k) < addrLen+8 {
		return nftEndpoint{}, nil, fmt.Errorf("short key")
	}
	a, _ := netip.AddrFromSlice(k[:addrLen])
	ep := nftEndpoint{VIP: a, Proto: k[addrLen], Port: binary.BigEndian.Uint16(k[addrLen+4:])}
	return ep, k[addrLen+8:], nil
}

func decodeBackend(v []byte, addrLen int) (netip.AddrPort, error) {
	if len(v) != addrLen+4 {
		return netip.AddrPort{}, fmt.Errorf("want %d bytes", addrLen+4)
	}
	a, _ := netip.AddrFromSlice(v[:addrLen])
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(v[addrLen:])), nil
}

// throttleLeft lists what in the kernel still enforces a runtime throttle:
// the refusal counter throttle_<svc> (lb/protect.go refusedCounter) and
// any rule that counts into it. limitsAllowed says whether the config
// itself has rate limits; when it has none, any limit expression is a
// throttle left behind as well, whatever its counter is called.
func (ks *kernelState) throttleLeft(limitsAllowed bool) []string {
	var left []string
	for _, o := range ks.Objects {
		if strings.HasPrefix(o, "throttle_") {
			left = append(left, "object "+o)
		}
	}
	for ch, rules := range ks.Rules {
		for i, r := range rules {
			for _, e := range r {
				switch x := e.(type) {
				case *expr.Objref:
					if strings.HasPrefix(x.Name, "throttle_") {
						left = append(left, fmt.Sprintf("chain %s rule %d counts into %s", ch, i, x.Name))
					}
				case *expr.Limit:
					if !limitsAllowed {
						left = append(left, fmt.Sprintf("chain %s rule %d has a limit (%d/%d over=%v)", ch, i, x.Rate, x.Unit, x.Over))
					}
				}
			}
		}
	}
	sort.Strings(left)
	return left
}

// wantService is one service the kernel must hold, with the only backends
// its slots may point at (the ones up in the final health). Slots must be
// non-empty when up is.
type wantService struct {
	Name string
	EP   nftEndpoint
	Up   []netip.AddrPort
}

// diffKernel returns every way ks differs from a table holding exactly
// want: dispatch keys, service chains, slot targets, and no object, set or
// chain named after a service that is not wanted (gone lists the names of
// services that existed at some point, to look for leftovers by name).
func (ks *kernelState) diffKernel(want []wantService, gone []string) []string {
	d := ks.diffServices(want)
	for _, w := range want {
		bes := ks.Slots[w.EP]
		if len(w.Up) > 0 && len(bes) == 0 {
			d = append(d, fmt.Sprintf("service %s has no slot although %v are up", w.Name, w.Up))
		}
		seen := map[netip.AddrPort]int{}
		for _, b := range bes {
			seen[b]++
		}
		for b, n := range seen {
			if !slices.Contains(w.Up, b) {
				d = append(d, fmt.Sprintf("service %s: %d slots point at %s, which is not up in the final health", w.Name, n, b))
			}
		}
		for _, b := range w.Up {
			if seen[b] == 0 {
				d = append(d, fmt.Sprintf("service %s: up backend %s holds no slot", w.Name, b))
			}
		}
	}
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w.Name] = true
	}
	for _, g := range gone {
		if wanted[g] {
			continue
		}
		for _, n := range append(append(slices.Clone(ks.Objects), ks.Sets...), ks.Chains...) {
			if strings.HasSuffix(n, "_"+g) {
				d = append(d, fmt.Sprintf("%s is left over from removed service %s", n, g))
			}
		}
	}
	sort.Strings(d)
	return d
}

// diffServices compares only which services the table holds (dispatch
// keys and their jumps, service chains, and whose slots exist) with want,
// ignoring health (want's Up is not used).
func (ks *kernelState) diffServices(want []wantService) []string {
	var d []string
	wantEP := map[nftEndpoint]string{}
	wantChains := map[string]bool{}
	for _, w := range want {
		wantEP[w.EP] = w.Name
		wantChains["svc_"+w.Name] = true
	}
	for ep, ch := range ks.Dispatch {
		if _, ok := wantEP[ep]; !ok {
			d = append(d, fmt.Sprintf("dispatch map holds %s (jump %s), which the config does not have", ep, ch))
		}
	}
	for ep, name := range wantEP {
		ch, ok := ks.Dispatch[ep]
		switch {
		case !ok:
			d = append(d, fmt.Sprintf("dispatch map lacks %s (service %s)", ep, name))
		case ch != "svc_"+name:
			d = append(d, fmt.Sprintf("dispatch map sends %s to chain %q, want svc_%s", ep, ch, name))
		}
	}
	have := map[string]bool{}
	for _, ch := range ks.Chains {
		have[ch] = true
		if strings.HasPrefix(ch, "svc_") && !wantChains[ch] {
			d = append(d, fmt.Sprintf("chain %s exists but its service is not in the config", ch))
		}
	}
	for ch := range wantChains {
		if !have[ch] {
			d = append(d, "chain "+ch+" is missing")
		}
	}
	for ep, bes := range ks.Slots {
		if _, ok := wantEP[ep]; !ok {
			d = append(d, fmt.Sprintf("slots map holds %d elements of %s, which the config does not have", len(bes), ep))
		}
	}
	sort.Strings(d)
	return d
}
