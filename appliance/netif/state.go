package netif

import (
	"encoding/json"
	"errors"
	"fmt"
	"lbd/internal/atomicfile"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// owned records which addresses lbd added, per interface index, so that a
// removal from the config removes them and nothing else. Routes need no such
// record: lbd marks its routes with its own routing protocol number.
type owned struct {
	// BootID ties the record to one boot: interface indexes and addresses
	// do not survive a reboot, so an older record is ignored.
	BootID string               `json:"boot_id"`
	Links  map[int]*ownedOnLink `json:"links"`
}

type ownedOnLink struct {
	Static []netip.Prefix `json:"static,omitempty"`
	VIPs   []netip.Prefix `json:"vips,omitempty"`
}

func newOwned(bootID string) *owned {
	return &owned{BootID: bootID, Links: map[int]*ownedOnLink{}}
}

func (o *owned) link(index int) *ownedOnLink {
	l := o.Links[index]
	if l == nil {
		l = &ownedOnLink{}
		o.Links[index] = l
	}
	return l
}

// prune drops empty entries so the record does not grow forever.
func (o *owned) prune() {
	for i, l := range o.Links {
		if len(l.Static) == 0 && len(l.VIPs) == 0 {
			delete(o.Links, i)
		}
	}
}

func addPrefix(list []netip.Prefix, p netip.Prefix) []netip.Prefix {
	if slices.Contains(list, p) {
		return list
	}
	return append(list, p)
}

func delPrefix(list []netip.Prefix, p netip.Prefix) []netip.Prefix {
	return slices.DeleteFunc(list, func(q netip.Prefix) bool { return q == p })
}

// bootID reads the kernel's per-boot id; empty when unavailable.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// loadOwned reads the record at path; a missing file, or one from another
// boot, gives an empty record.
func loadOwned(path, boot string) (*owned, error) {
	o := newOwned(boot)
	if path == "" {
		return o, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return o, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read netif state: %w", err)
	}
	var got owned
	if err := json.Unmarshal(b, &got); err != nil {
		return nil, fmt.Errorf("parse netif state %s: %w", path, err)
	}
	if got.BootID != boot || got.Links == nil {
		return o, nil
	}
	return &got, nil
}

// save writes the record atomically (temp file + rename).
func (o *owned) save(path string) error {
	if path == "" {
		return nil
	}
	o.prune()
	b, err := json.MarshalIndent(o, "", "  ")
	if err != nil {
		return fmt.Errorf("encode netif state: %w", err)
	}
	if err := atomicfile.WriteFile(path, b); err != nil {
		return fmt.Errorf("write netif state: %w", err)
	}
	return nil
}
