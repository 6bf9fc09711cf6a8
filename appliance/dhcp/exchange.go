package dhcp

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"

	"lbd/appliance/netif"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"golang.org/x/sys/unix"
)

// Each exchange opens its own socket inside the namespace and closes it
// when done. The raw packet socket (needed while the NIC has no address)
// sees every IPv4 frame on the NIC, so it must not stay open on a busy WAN
// port between exchanges.

var requestedOptions = dhcpv4.WithRequestedOptions(
	dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
	dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue,
)

// rawClient talks broadcast through a raw packet socket: DISCOVER, REQUEST
// and the T2 rebind.
func (c *Client) rawClient() (*nclient4.Client, error) {
	var conn net.PacketConn
	var hw net.HardwareAddr
	err := netif.RunInNetns(c.ns, func() error {
		ifc, err := net.InterfaceByName(c.cfg.Interface)
		if err != nil {
			return err
		}
		hw = ifc.HardwareAddr
		conn, err = nclient4.NewRawUDPConn(c.cfg.Interface, nclient4.ClientPort)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("raw socket on %s: %w", c.cfg.Interface, err)
	}
	cl, err := nclient4.NewWithConn(conn, hw, nclient4.WithTimeout(c.cfg.Timeout), nclient4.WithRetry(c.cfg.Retries))
	if err != nil {
		conn.Close()
		return nil, err
	}
	return cl, nil
}

// unicastClient talks from the leased address to the server (T1 renew and
// release), through an ordinary UDP socket. The socket listens on
// 0.0.0.0:68 bound to the NIC, not on the leased address: a server sends its
// NAK to the broadcast address, and a NAK missed is a renewal that hangs
// until T2. Replies to the server leave from the leased address, the
// primary address of the server's subnet.
func (c *Client) unicastClient(l Lease) (*nclient4.Client, error) {
	var conn net.PacketConn
	var hw net.HardwareAddr
	err := netif.RunInNetns(c.ns, func() error {
		ifc, err := net.InterfaceByName(c.cfg.Interface)
		if err != nil {
			return err
		}
		hw = ifc.HardwareAddr
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
				if serr == nil {
					serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, c.cfg.Interface)
				}
			})
			if err != nil {
				return err
			}
			return serr
		}}
		conn, err = lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", nclient4.ClientPort))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("udp socket on %s: %w", c.cfg.Interface, err)
	}
	server := &net.UDPAddr{IP: l.Server.AsSlice(), Port: nclient4.ServerPort}
	cl, err := nclient4.NewWithConn(conn, hw, nclient4.WithServerAddr(server),
		nclient4.WithTimeout(c.cfg.Timeout), nclient4.WithRetry(c.cfg.Retries))
	if err != nil {
		conn.Close()
		return nil, err
	}
	return cl, nil
}

// acquire runs DISCOVER/OFFER/REQUEST/ACK, asking for the previous address
// when there is one. The requested address goes only into the DISCOVER: the
// REQUEST must name what the server offered.
func (c *Client) acquire(ctx context.Context) (*nclient4.Lease, error) {
	cl, err := c.rawClient()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	mods := []dhcpv4.Modifier{requestedOptions}
	c.mu.Lock()
	want := c.requested
	c.mu.Unlock()
	if want.IsValid() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(want.AsSlice())))
	}
	offer, err := cl.DiscoverOffer(ctx, mods...)
	if err != nil {
		return nil, fmt.Errorf("discover: %w", err)
	}
	nl, err := cl.RequestFromOffer(ctx, offer, requestedOptions)
	if err != nil {
		return nil, fmt.Errorf("request %s from %s: %w", offer.YourIPAddr, offer.ServerIdentifier(), err)
	}
	return nl, nil
}

// freshXID gives each renewal its own transaction id (the library would
// reuse the ACK's).
func freshXID() (dhcpv4.Modifier, error) {
	xid, err := dhcpv4.GenerateTransactionID()
	if err != nil {
		return nil, err
	}
	return dhcpv4.WithTransactionID(xid), nil
}

// renew asks the lease's server, by unicast, to extend it (RENEWING).
func (c *Client) renew(ctx context.Context, l Lease, nl *nclient4.Lease) (*nclient4.Lease, error) {
	cl, err := c.unicastClient(l)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	xid, err := freshXID()
	if err != nil {
		return nil, err
	}
	return cl.Renew(ctx, nl, xid, requestedOptions)
}

// rebind asks any server, by broadcast, to extend the lease (REBINDING):
// the same REQUEST as a renewal, without a server identifier.
func (c *Client) rebind(ctx context.Context, nl *nclient4.Lease) (*nclient4.Lease, error) {
	cl, err := c.rawClient()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	xid, err := freshXID()
	if err != nil {
		return nil, err
	}
	req, err := dhcpv4.NewRenewFromAck(nl.ACK, xid, requestedOptions)
	if err != nil {
		return nil, err
	}
	resp, err := cl.SendAndRead(ctx, nclient4.DefaultServers, req,
		nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak))
	if err != nil {
		return nil, err
	}
	if resp.MessageType() == dhcpv4.MessageTypeNak {
		return nil, &nclient4.ErrNak{Offer: nl.Offer, Nak: resp}
	}
	// Another server may have answered: later renewals go to it.
	return &nclient4.Lease{Offer: resp, ACK: resp, CreationTime: time.Now()}, nil
}

// release gives the lease back (RELEASE, unicast to the server).
func (c *Client) release(nl *nclient4.Lease, l Lease) error {
	cl, err := c.unicastClient(l)
	if err != nil {
		return err
	}
	defer cl.Close()
	return cl.Release(nl)
}
