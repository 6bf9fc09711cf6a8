package dhcp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"lbd/appliance/netif"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Config configures the client of one interface.
type Config struct {
	// Interface is the NIC's name (after netif renamed it).
	Interface string
	// NetnsPath names the network namespace; empty is the caller's own.
	NetnsPath string
	// LeaseFile, when set, keeps the last lease so that a restart asks
	// for the same address.
	LeaseFile string
	// ResolvConf, when set, is rewritten with the lease's DNS servers
	// (e.g. /etc/resolv.conf). Empty leaves DNS alone; the servers are
	// reported in Lease either way.
	ResolvConf string
	// NoDefaultRoute skips the default route via the lease's router.
	NoDefaultRoute bool
	// RouteMetric of the default route; 0 means 1024 + interface index,
	// so two DHCP NICs never fight over one default route.
	RouteMetric int
	// KeepOnStop makes Stop leave the lease and address in place instead of
	// releasing them (a restart that must not drop traffic).
	KeepOnStop bool
	// OnChange is called after a lease is bound, renewed or replaced
	// (lease, true) and after it is lost or released (old lease, false).
	// It runs on the client's goroutine: keep it short.
	OnChange func(l Lease, bound bool)
	// Timeout is the first retransmission timeout of one exchange (it
	// doubles on each retry); default 2s. Retries defaults to 3.
	Timeout time.Duration
	Retries int
	// Logger gets one line per state change; nil discards.
	Logger *slog.Logger
}

// Stats counts what the client did, for the status page and tests.
type Stats struct {
	Acquired int // leases obtained by DISCOVER
	Renewed  int // renewals ACKed by unicast to the server (T1)
	Rebound  int // renewals ACKed by broadcast (T2)
	Naks     int
	Expired  int
	Changed  int // times the address on the NIC was replaced
}

// Client runs DHCPv4 on one interface.
type Client struct {
	cfg Config
	log *slog.Logger
	ns  netns.NsHandle
	h   *netlink.Handle

	kick   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	lease *Lease          // bound lease, nil when none
	nl    *nclient4.Lease // the raw exchange behind lease, for renew and release
	// onNIC is the lease whose address is on the NIC. After a NAK it
	// outlives lease until the next lease replaces it (new address added
	// before the old goes) or acquiring fails.
	onNIC     *Lease
	stats     Stats
	requested netip.Addr // address to ask for in the next DISCOVER
}

// New prepares a client; Start runs it.
func New(cfg Config) (*Client, error) {
	if cfg.Interface == "" {
		return nil, fmt.Errorf("dhcp: no interface")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 3
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("interface", cfg.Interface)
	requested, err := loadLease(cfg.LeaseFile)
	if err != nil {
		log.Warn("lease file ignored", "err", err)
	}
	ns, err := netif.OpenNetns(cfg.NetnsPath)
	if err != nil {
		return nil, fmt.Errorf("dhcp %s: %w", cfg.Interface, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("dhcp %s: netlink handle: %w", cfg.Interface, err)
	}
	return &Client{cfg: cfg, log: log, ns: ns, h: h, kick: make(chan struct{}, 1), requested: requested}, nil
}

// Start runs the client on its own goroutine until Stop.
func (c *Client) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.done = make(chan struct{})
	go func() {
		defer close(c.done)
		c.run(ctx)
	}()
}

// Stop ends the client. Unless KeepOnStop is set it sends a RELEASE and
// removes the leased address and route. The handles are closed either way.
func (c *Client) Stop() error {
	return c.stop(c.cfg.KeepOnStop)
}

// Release ends the client and gives the lease back (RELEASE, address and
// route removed) even when KeepOnStop is set. KeepOnStop is for a
// restarting daemon; Release is for a NIC whose DHCP the config turned off,
// where a kept address would stay on the NIC with nothing renewing it.
func (c *Client) Release() error {
	return c.stop(false)
}

func (c *Client) stop(keep bool) error {
	if c.cancel != nil {
		c.cancel()
		<-c.done
	}
	var err error
	c.mu.Lock()
	l, nl, onNIC := c.lease, c.nl, c.onNIC
	c.mu.Unlock()
	if l != nil && !keep {
		if rerr := c.release(nl, *l); rerr != nil {
			err = fmt.Errorf("dhcp %s: release: %w", c.cfg.Interface, rerr)
		}
	}
	if onNIC != nil && !keep {
		c.unbind("released")
	}
	c.h.Close()
	if c.ns.IsOpen() {
		c.ns.Close()
	}
	return err
}

// Lease returns the bound lease, if any.
func (c *Client) Lease() (Lease, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lease == nil {
		return Lease{}, false
	}
	return *c.lease, true
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// RenewNow makes the client renew (or, without a lease, acquire) at once
// instead of waiting for T1: for an operator's "renew" command and tests.
func (c *Client) RenewNow() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Client) count(f func(*Stats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}
