package netif

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Options configures a Manager.
type Options struct {
	// NetnsPath names the network namespace to manage (e.g.
	// /run/netns/lb); empty means the caller's own namespace.
	NetnsPath string
	// StatePath, when set, is a file where the Manager records which
	// addresses it added, so a restarted lbd still removes them when the
	// config drops them. Without it ownership lasts for the process only.
	StatePath string
	// Logger receives one line per change; nil discards.
	Logger *slog.Logger
	// AnnounceCount and AnnounceInterval set how often a new VIP is
	// announced (gratuitous ARP / unsolicited NA); defaults 3 and 250ms.
	AnnounceCount    int
	AnnounceInterval time.Duration
	// FirstApplyWait is how long the first Apply waits for a listed NIC
	// that is not there yet: at boot lbd may start before udev has loaded
	// a NIC's driver (or the driver its firmware). 0 does not wait. Later
	// Applies (reloads) never wait: a NIC missing then is a config error.
	FirstApplyWait time.Duration
}

// Manager applies Specs and VIPs to the NICs of one network namespace.
// Its methods are safe for concurrent use.
type Manager struct {
	mu   sync.Mutex
	opts Options
	log  *slog.Logger
	ns   netns.NsHandle
	h    *netlink.Handle
	own  *owned
	// waited is set once the first Apply has had its FirstApplyWait.
	waited bool
	// repeats are the background repeats of VIP announcements.
	repeats repeatTracker
	// applied maps each spec name of the last Apply to its interface
	// index: for Status, and to find a NIC again after lbd renamed it.
	applied []appliedNIC
}

type appliedNIC struct {
	spec  Spec
	index int
	// device is the kernel name the NIC had when lbd first matched it
	// (before the rename), for the status page.
	device string
}

// New opens a netlink handle in the namespace named by opts and loads the
// ownership record.
func New(opts Options) (*Manager, error) {
	if opts.AnnounceCount <= 0 {
		opts.AnnounceCount = 3
	}
	if opts.AnnounceInterval <= 0 {
		opts.AnnounceInterval = 250 * time.Millisecond
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ns, err := OpenNetns(opts.NetnsPath)
	if err != nil {
		return nil, err
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	own, err := loadOwned(opts.StatePath, bootID())
	if err != nil {
		h.Close()
		ns.Close()
		return nil, err
	}
	return &Manager{opts: opts, log: log, ns: ns, h: h, own: own}, nil
}

// Close releases the netlink handle and namespace; it changes nothing on
// the NICs.
func (m *Manager) Close() error {
	m.repeats.stopAll()
	m.repeats.wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.h.Close()
	if m.ns.IsOpen() {
		return m.ns.Close()
	}
	return nil
}

// record appends a change to the list and logs it.
func (m *Manager) record(list *[]Change, c Change) {
	*list = append(*list, c)
	m.log.Info("interface change", "interface", c.Link, "action", c.Action, "detail", c.Detail)
}
