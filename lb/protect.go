package lb

import (
	"github.com/google/nftables"
)

// Protection (limits, allow/deny, throttle) lands here: rules at the head of
// a service chain, and the sets and counters they use.

func protectionSets(t *nftables.Table) []*nftables.Set { return nil }

func protectionRules(t *nftables.Table, c *nftables.Chain, s *Service, maps *tableSets) []*nftables.Rule {
	return nil
}

func addProtectionBase(c *nftables.Conn, t *nftables.Table, sets *tableSets) {}

func addProtectionObjects(c *nftables.Conn, t *nftables.Table, s *Service) {}

func delProtectionObjects(c *nftables.Conn, t *nftables.Table, s *Service) {}
