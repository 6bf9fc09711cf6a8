package netif

import (
	"context"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WaitAddressesReady waits until no address on the managed NICs is still
// tentative (IPv6 duplicate address detection, about a second after an
// add). Until then the kernel will not use the address as a source, so the
// daemon calls this before it reports ready. A duplicate address found by
// DAD is an error naming the NIC and the address.
func (m *Manager) WaitAddressesReady(ctx context.Context) error {
	for {
		pending, err := m.tentative()
		if err != nil {
			return err
		}
		if pending == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for duplicate address detection of %s: %w", pending, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tentative names one address still in DAD ("" when none).
func (m *Manager) tentative() (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range m.applied {
		link, err := m.h.LinkByIndex(a.index)
		if err != nil {
			return "", fmt.Errorf("interface %q: %w", a.spec.Name, err)
		}
		addrs, err := m.h.AddrList(link, netlink.FAMILY_V6)
		if err != nil {
			return "", fmt.Errorf("interface %q: list addresses: %w", a.spec.Name, err)
		}
		for _, ad := range addrs {
			if ad.Flags&unix.IFA_F_DADFAILED != 0 {
				return "", fmt.Errorf("interface %q: address %s is already used by another host (duplicate address detection failed)", a.spec.Name, ad.IPNet)
			}
			if ad.Flags&unix.IFA_F_TENTATIVE != 0 {
				return fmt.Sprintf("%s on %s", ad.IPNet, a.spec.Name), nil
			}
		}
	}
	return "", nil
}
