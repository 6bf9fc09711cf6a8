package console

import (
	"strings"

	"lbd/appliance/status"
)

// fleetLines shows the BGP side ([bgp] only): draining first, then each
// session and each VIP, announced or why not.
func fleetLines(f *frame, b *status.BGP) {
	if b == nil {
		return
	}
	f.add(kindOther)
	f.add(kindOther, sp(bold, "BGP"), sp(plain, " AS%d router-id %s", b.ASN, b.RouterID))
	if b.Draining {
		f.add(kindOther, sp(warn, "  NODE DRAINING: every VIP withdrawn"))
	}
	if !b.Bird.Running {
		f.add(kindOther, sp(bad, "  bird not running (restarted %d times) %s", b.Bird.Restarts, b.Bird.LastExit))
	}
	for _, n := range b.Neighbors {
		st := good
		if !n.Up {
			st = bad
		}
		spans := []span{sp(plain, "  %-28s AS%-10d ", n.Address, n.ASN), sp(st, "%s", n.State)}
		if n.BFD != "" {
			bst := good
			if n.BFD != "Up" {
				bst = bad
			}
			spans = append(spans, sp(plain, "  bfd "), sp(bst, "%s", n.BFD))
		}
		f.add(kindOther, spans...)
	}
	for _, v := range b.VIPs {
		if v.Announced {
			f.add(kindOther, sp(plain, "  %-28s ", v.VIP), sp(good, "announced"), sp(dim, "  %s", strings.Join(v.Services, ", ")))
		} else {
			f.add(kindOther, sp(plain, "  %-28s ", v.VIP), sp(warn, "withdrawn: %s", v.Reason), sp(dim, "  %s", strings.Join(v.Services, ", ")))
		}
	}
}
