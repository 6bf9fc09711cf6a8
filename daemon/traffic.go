package daemon

import (
	"context"
	"fmt"
	"sync"

	"lbd/appliance/status"
	"lbd/lb"
)

// Per-backend traffic counters (status.Traffic): conntrack accounting
// counts every packet of every flow per direction; a backend's totals are
// what its ended flows carried, taken from the kernel's DESTROY events as
// they come, plus what its live flows carry, taken from a dump when a
// snapshot is asked for. The event goroutine only reads events and adds to
// the book below; it never touches the data plane, so the one-owner rule
// of the sync loop holds.

// TrafficSource is where the counters come from: conntrack in production
// (kernelTraffic), a fake in tests.
type TrafficSource interface {
	// Start turns accounting on and reports each ended translated flow to
	// ended, from another goroutine, until ctx ends.
	Start(ctx context.Context, ended func(lb.FlowTraffic)) error
	// Live returns the counters of the services' live flows.
	Live(services []lb.Service) ([]lb.FlowTraffic, error)
	// Lost counts receive overruns: ended flows the totals missed.
	Lost() uint64
	// Drain hands every ended flow the kernel has reported so far to
	// Start's callback before it returns (events are read in batches).
	Drain()
}

// kernelTraffic is TrafficSource on the real kernel.
type kernelTraffic struct{ ended *lb.EndedFlows }

func (k *kernelTraffic) Start(ctx context.Context, ended func(lb.FlowTraffic)) error {
	// Subscribe first: it loads nf_conntrack, which creates the sysctl.
	ef, err := lb.SubscribeEndedFlows()
	if err != nil {
		return err
	}
	if err := lb.EnableAccounting(); err != nil {
		ef.Close()
		return err
	}
	k.ended = ef
	go func() { _ = ef.Run(ctx, ended) }()
	return nil
}

func (k *kernelTraffic) Live(s []lb.Service) ([]lb.FlowTraffic, error) { return lb.LiveTraffic(s) }

func (k *kernelTraffic) Drain() {
	if k.ended != nil {
		_ = k.ended.Drain()
	}
}

func (k *kernelTraffic) Lost() uint64 {
	if k.ended == nil {
		return 0
	}
	return k.ended.Lost.Load()
}

// noTraffic is the source of daemons built with a fake Conntrack (the unit
// tests): counters stay zero and nothing reaches the kernel.
type noTraffic struct{}

func (noTraffic) Start(context.Context, func(lb.FlowTraffic)) error { return nil }
func (noTraffic) Live([]lb.Service) ([]lb.FlowTraffic, error)       { return nil, nil }
func (noTraffic) Lost() uint64                                      { return 0 }
func (noTraffic) Drain()                                            {}
func defaultTraffic(ct Conntrack, t TrafficSource) TrafficSource {
	switch {
	case t != nil:
		return t
	case isKernel(ct):
		return &kernelTraffic{}
	}
	return noTraffic{}
}

func isKernel(ct Conntrack) bool { _, ok := ct.(kernelConntrack); return ok }

// trafficBook accumulates ended flows and turns them, with a dump of the
// live ones, into monotonic totals per (service endpoint, backend).
type trafficBook struct {
	src TrafficSource

	mu       sync.Mutex
	startErr error
	ended    map[lb.FlowKey]status.Traffic
	// windows are the dumps in progress: a flow that ends while a dump
	// runs may be in the dump and in ended; its tuple in the window says
	// "count the ended copy only".
	windows map[*trafficWindow]struct{}
	// reported is the last total handed out per key. A flow that ends
	// during a dump but whose event arrives after it is briefly in
	// neither; reporting max(reported, now) keeps counters from going
	// back (Prometheus would read a drop as a restart).
	reported map[lb.FlowKey]status.Traffic
}

type trafficWindow struct{ ended map[lb.FlowTuple]struct{} }

func newTrafficBook(src TrafficSource) *trafficBook {
	return &trafficBook{src: src, ended: map[lb.FlowKey]status.Traffic{},
		windows: map[*trafficWindow]struct{}{}, reported: map[lb.FlowKey]status.Traffic{}}
}

// start begins counting; a failure leaves the counters at zero and is
// reported as a warning in every snapshot, it does not stop lbd.
func (b *trafficBook) start(ctx context.Context) {
	err := b.src.Start(ctx, b.add)
	b.mu.Lock()
	b.startErr = err
	b.mu.Unlock()
}

func flowTraffic(f lb.FlowTraffic) status.Traffic {
	return status.Traffic{Connections: 1, PacketsIn: f.PacketsIn, PacketsOut: f.PacketsOut, BytesIn: f.BytesIn, BytesOut: f.BytesOut}
}

// add books one ended flow (the event goroutine).
func (b *trafficBook) add(f lb.FlowTraffic) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ended[f.Key] = b.ended[f.Key].Add(flowTraffic(f))
	for w := range b.windows {
		w.ended[f.Tuple] = struct{}{}
	}
}

// totals returns the traffic per backend of the given services and
// warnings to show. Keys of services no longer planned are forgotten, so
// the book stays as large as the config.
func (b *trafficBook) totals(plans []lb.Service) (map[lb.FlowKey]status.Traffic, []string) {
	w := &trafficWindow{ended: map[lb.FlowTuple]struct{}{}}
	b.mu.Lock()
	b.windows[w] = struct{}{}
	b.mu.Unlock()
	// Events are read in batches: book the flows that ended before the
	// dump now, and those that end during it before the window closes, so
	// each is counted once, from its event.
	b.src.Drain()
	live, err := b.src.Live(plans)
	b.src.Drain()
	var warns []string
	if err != nil {
		warns = append(warns, "traffic counters: "+err.Error())
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.windows, w)
	if b.startErr != nil {
		warns = append(warns, "traffic counters: "+b.startErr.Error())
	}
	if n := b.src.Lost(); n > 0 {
		warns = append(warns, fmt.Sprintf("traffic counters missed ended flows %d times (event buffer overrun): totals are low", n))
	}
	planned := make(map[string]bool, len(plans))
	for i := range plans {
		planned[plans[i].Endpoint()] = true
	}
	out := make(map[lb.FlowKey]status.Traffic, len(b.ended))
	for k, t := range b.ended {
		if !planned[k.Endpoint] {
			delete(b.ended, k)
			continue
		}
		out[k] = t
	}
	if err == nil {
		for _, f := range live {
			if _, gone := w.ended[f.Tuple]; gone {
				continue
			}
			out[f.Key] = out[f.Key].Add(flowTraffic(f))
		}
	}
	for k, r := range b.reported {
		if !planned[k.Endpoint] {
			delete(b.reported, k)
			continue
		}
		out[k] = maxTraffic(out[k], r)
	}
	for k, t := range out {
		b.reported[k] = t
	}
	return out, warns
}

func maxTraffic(a, b status.Traffic) status.Traffic {
	return status.Traffic{Connections: max(a.Connections, b.Connections), PacketsIn: max(a.PacketsIn, b.PacketsIn),
		PacketsOut: max(a.PacketsOut, b.PacketsOut), BytesIn: max(a.BytesIn, b.BytesIn), BytesOut: max(a.BytesOut, b.BytesOut)}
}
