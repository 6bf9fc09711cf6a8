package lb

import (
	"fmt"

	"github.com/google/nftables"
)

// A cold start into a kernel that holds nothing of table lbd commits in
// stages instead of one transaction (issue 13). One transaction of 10,000
// services x 8 backends is about 40 MB of netlink messages that the library
// keeps in a list and then copies into one growing buffer, and a table of
// 100,000 services needed more than 1 GB of lbd's memory that way. Nothing
// is reachable until the last stage hooks the table in (the dispatch maps'
// elements and the base chains come last), so no packet sees a half-built
// table; if a stage fails, the next attempt finds lbd's chains and rebuilds
// the whole table in one transaction, as a restart does.
//
// A cold sync over a table that exists (a restart, an upgrade, a resync
// after a refused apply) stays one transaction: traffic is flowing there.
const (
	// stagedMinServices: smaller tables are one transaction as before.
	stagedMinServices = 1000
	// Per stage: about 10,000 messages of service objects and rules, or
	// 50 messages of 1,000 elements (about 3 MB).
	stageServices = 2000
	stageElements = 50 * elementChunk
)

// stager commits a connection's queued messages every so often. A nil
// *stager is the single transaction: every method is a no-op.
type stager struct {
	c        *nftables.Conn
	services int
	elements int
	stages   int
}

func newStager(c *nftables.Conn) *stager { return &stager{c: c} }

func (s *stager) commit(what string) error {
	s.stages++
	if err := s.c.Flush(); err != nil {
		return fmt.Errorf("apply ruleset (cold start, stage %d: %s): %w", s.stages, what, err)
	}
	return nil
}

func (s *stager) serviceDone() error {
	if s == nil {
		return nil
	}
	if s.services++; s.services%stageServices == 0 {
		return s.commit("service chains")
	}
	return nil
}

func (s *stager) elementsQueued(n int) error {
	if s == nil || n == 0 {
		return nil
	}
	s.elements += n
	if s.elements >= stageElements {
		s.elements = 0
		return s.commit("slot elements")
	}
	return nil
}

// last commits the final stage, the one that makes the table reachable.
func (s *stager) last() error {
	if s == nil {
		return nil
	}
	return s.commit("dispatch and hooks")
}
