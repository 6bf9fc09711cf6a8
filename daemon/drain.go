package daemon

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"lbd/appliance/control"
	"lbd/appliance/status"
	"lbd/config"
	"lbd/lb"
)

// A runtime drain (`lbd drain SERVICE BACKEND`) takes a backend out of new
// flows at once, without editing the file, like weight 0: established
// flows live on. When they reach zero the drain is done; at its deadline
// (if any) the flows left are flushed. A reload that keeps the backend
// keeps the drain; `lbd undrain` lifts it.

type drainState struct {
	since, deadline, done time.Time
	flushed               uint
}

func (d *Daemon) drain(args []string) control.Response {
	if len(args) < 2 || len(args) > 3 {
		return control.Response{Errors: []string{"usage: lbd drain SERVICE BACKEND [--timeout DURATION]"}}
	}
	k, err := d.findBackend(args[0], args[1])
	if err != nil {
		return control.Response{Errors: []string{err.Error()}}
	}
	var timeout time.Duration
	if len(args) == 3 && args[2] != "" && args[2] != "0" {
		if timeout, err = time.ParseDuration(args[2]); err != nil || timeout < 0 {
			return control.Response{Errors: []string{fmt.Sprintf("bad timeout %q; expected a duration such as 5m", args[2])}}
		}
	}
	now := time.Now()
	st := drainState{since: now}
	if timeout > 0 {
		st.deadline = now.Add(timeout)
	}
	gen := d.record(func(in *inputs) {
		if old, ok := in.drains[k]; ok {
			st.since = old.since // draining again only moves the deadline
		}
		in.drains[k] = st
		in.dirty[k.Service] = true
	})
	if err := d.waitApplied(gen, applyTimeout); err != nil {
		return control.Response{Errors: []string{fmt.Sprintf("drain recorded but not in the kernel yet: %v", err)}}
	}
	d.log.Warn("backend drained at runtime", "service", k.Service, "backend", k.Backend.String(), "timeout", timeout)
	msg := fmt.Sprintf("%s %s: draining (no new flows)", k.Service, k.Backend)
	if timeout > 0 {
		msg += fmt.Sprintf("; flows left at %s are flushed", st.deadline.Format(time.RFC3339))
	}
	return control.Response{OK: true, Message: msg}
}

func (d *Daemon) undrain(args []string) control.Response {
	if len(args) != 2 {
		return control.Response{Errors: []string{"usage: lbd undrain SERVICE BACKEND"}}
	}
	k, err := d.findBackend(args[0], args[1])
	if err != nil {
		return control.Response{Errors: []string{err.Error()}}
	}
	was := false
	gen := d.record(func(in *inputs) {
		_, was = in.drains[k]
		delete(in.drains, k)
		in.dirty[k.Service] = true
	})
	if !was {
		return control.Response{Errors: []string{fmt.Sprintf("%s %s is not drained at runtime", k.Service, k.Backend)}}
	}
	if err := d.waitApplied(gen, applyTimeout); err != nil {
		return control.Response{Errors: []string{fmt.Sprintf("undrain recorded but not in the kernel yet: %v", err)}}
	}
	d.log.Info("backend undrained", "service", k.Service, "backend", k.Backend.String())
	return control.Response{OK: true, Message: fmt.Sprintf("%s %s: takes new flows again", k.Service, k.Backend)}
}

// findBackend resolves SERVICE BACKEND against the running config. The
// backend may be given without its port when the address is unique.
func (d *Daemon) findBackend(svc, addr string) (backendKey, error) {
	cfg := d.configOrNil()
	if cfg == nil {
		return backendKey{}, fmt.Errorf("no config is running")
	}
	for _, s := range cfg.Services {
		if s.Name != svc {
			continue
		}
		var match []netip.AddrPort
		var all []string
		for _, b := range s.Backends {
			all = append(all, b.Addr.String())
			if b.Addr.String() == addr || b.Addr.Addr().String() == strings.Trim(addr, "[]") {
				match = append(match, b.Addr)
			}
		}
		switch len(match) {
		case 1:
			return backendKey{svc, match[0]}, nil
		case 0:
			return backendKey{}, fmt.Errorf("service %q has no backend %q; it has %s", svc, addr, strings.Join(all, ", "))
		default:
			return backendKey{}, fmt.Errorf("service %q has several backends at %q; give the port (%s)", svc, addr, strings.Join(all, ", "))
		}
	}
	return backendKey{}, fmt.Errorf("no service %q", svc)
}

// drainTick finishes drains: done when the backend has no flows left, and
// at the deadline the flows left are flushed (by the loop).
func (d *Daemon) drainTick(active map[lb.FlowKey]int, endpoint map[string]string) {
	now := time.Now()
	var finished []backendKey
	var flush []backendKey
	d.mu.Lock()
	for k, st := range d.in.drains {
		if !st.done.IsZero() {
			continue
		}
		n := active[lb.FlowKey{Endpoint: endpoint[k.Service], Backend: k.Backend}]
		switch {
		case n == 0:
			st.done = now
			d.in.drains[k] = st
			finished = append(finished, k)
		case !st.deadline.IsZero() && now.After(st.deadline):
			flush = append(flush, k)
		}
	}
	d.mu.Unlock()
	for _, k := range finished {
		d.log.Info("drain done: no flows left", "service", k.Service, "backend", k.Backend.String())
	}
	if len(flush) > 0 {
		d.record(func(in *inputs) { in.drainFlushes = append(in.drainFlushes, flush...) })
	}
}

// flushDrained runs in the loop: the flows a drain left at its deadline go.
func (d *Daemon) flushDrained(plans []lb.Service, keys []backendKey) {
	byName := map[string]*lb.Service{}
	for i := range plans {
		byName[plans[i].Name] = &plans[i]
	}
	for _, k := range keys {
		p, ok := byName[k.Service]
		if !ok {
			continue
		}
		n, err := d.ct.FlushBackend(p, k.Backend)
		if err != nil {
			d.log.Warn("drain timeout: conntrack flush", "service", k.Service, "backend", k.Backend.String(), "err", err)
			continue
		}
		d.mu.Lock()
		if st, ok := d.in.drains[k]; ok && st.done.IsZero() {
			st.done, st.flushed = time.Now(), n
			d.in.drains[k] = st
		}
		d.mu.Unlock()
		d.log.Warn("drain timeout: flushed the flows left", "service", k.Service, "backend", k.Backend.String(), "flows", n)
	}
}

// keepDrains drops the drains of backends a new config no longer has.
func keepDrains(drains map[backendKey]drainState, cfg *config.Config) {
	if len(drains) == 0 {
		// The common case: no map of every backend (80,000 entries at
		// 10,000 services) built under the lock on each reload.
		return
	}
	byName := make(map[string]*config.Service, len(cfg.Services))
	for i := range cfg.Services {
		byName[cfg.Services[i].Name] = &cfg.Services[i]
	}
	for k := range drains {
		if s := byName[k.Service]; s == nil || !hasBackend(s, k.Backend) {
			delete(drains, k)
		}
	}
}

func hasBackend(s *config.Service, addr netip.AddrPort) bool {
	for _, b := range s.Backends {
		if b.Addr == addr {
			return true
		}
	}
	return false
}

func (st drainState) status() *status.Drain {
	return &status.Drain{Since: st.since, Deadline: st.deadline, Done: st.done, Flushed: st.flushed}
}
