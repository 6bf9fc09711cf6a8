package dhcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"lbd/internal/atomicfile"
	"net/netip"
	"os"
)

// savedLease is the lease file: enough to ask for the same address after a
// restart (RFC 2131's "requested IP address" in the DISCOVER).
type savedLease struct {
	Interface string `json:"interface"`
	Lease     Lease  `json:"lease"`
}

func loadLease(path string) (netip.Addr, error) {
	if path == "" {
		return netip.Addr{}, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return netip.Addr{}, nil
	}
	if err != nil {
		return netip.Addr{}, fmt.Errorf("read lease file: %w", err)
	}
	var s savedLease
	if err := json.Unmarshal(b, &s); err != nil {
		return netip.Addr{}, fmt.Errorf("parse lease file %s: %w", path, err)
	}
	return s.Lease.Address.Addr(), nil
}

// saveLease writes the lease file atomically.
func saveLease(path, ifname string, l Lease) error {
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(savedLease{Interface: ifname, Lease: l}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode lease: %w", err)
	}
	if err := atomicfile.WriteFile(path, b); err != nil {
		return fmt.Errorf("write lease file: %w", err)
	}
	return nil
}
