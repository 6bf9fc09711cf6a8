package daemon

import (
	"fmt"
	"net/netip"
	"sort"

	"lbd/appliance/control"
	"lbd/appliance/status"
	"lbd/lb"
)

// conns lists the tracked connections of one service, of one backend, or
// of all services (`lbd conns [SERVICE] [--backend ADDR]`).
func (d *Daemon) conns(args []string) control.Response {
	svc, backend, err := connsArgs(args)
	if err != nil {
		return control.Response{Errors: []string{err.Error()}}
	}
	plans, err := d.selectPlans(svc)
	if err != nil {
		return control.Response{Errors: []string{err.Error()}}
	}
	flows, err := d.ct.ListFlows(plans)
	if err != nil {
		return control.Response{Errors: []string{err.Error()}}
	}
	name := map[string]string{}
	for _, p := range plans {
		name[p.Endpoint()] = p.Name
	}
	out := []status.Conn{}
	for _, f := range flows {
		if backend.IsValid() && f.Backend != backend {
			continue
		}
		out = append(out, status.Conn{Service: name[f.Endpoint], Protocol: f.Proto, State: f.State,
			ExpiresSeconds: f.Expires, Client: f.Client.String(), VIP: f.VIP.String(), Backend: f.Backend.String()})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		if out[i].Backend != out[j].Backend {
			return out[i].Backend < out[j].Backend
		}
		return out[i].Client < out[j].Client
	})
	return control.Response{OK: true, Conns: out}
}

// flush deletes the conntrack entries of a service, of one backend (in
// every service, or in SERVICE), or of every service (`lbd flush`). The
// deletion runs in the sync loop, like every other change lbd makes.
func (d *Daemon) flush(args []string) control.Response {
	all := len(args) == 1 && args[0] == "--all"
	svc, backend, err := connsArgs(args)
	if !all && (err != nil || (svc == "" && !backend.IsValid())) {
		return control.Response{Errors: []string{"usage: lbd flush SERVICE | --backend ADDR | SERVICE --backend ADDR | --all"}}
	}
	plans, err := d.selectPlans(svc)
	if err != nil {
		return control.Response{Errors: []string{err.Error()}}
	}
	// The configured backends of the chosen services (only backend, when
	// given), deleted in one walk of the table.
	cfg := d.configOrNil()
	chosen := map[string]string{}
	for i := range plans {
		chosen[plans[i].Name] = plans[i].Endpoint()
	}
	var keys []lb.FlowKey
	for _, s := range cfg.Services {
		ep, ok := chosen[s.Name]
		if !ok {
			continue
		}
		for _, b := range s.Backends {
			if !backend.IsValid() || b.Addr == backend {
				keys = append(keys, lb.FlowKey{Endpoint: ep, Backend: b.Addr})
			}
		}
	}
	var n uint
	d.inLoop(func() { n, err = d.ct.FlushFlows(keys) })
	total := int(n)
	if err != nil {
		return control.Response{Errors: []string{err.Error()}, Count: total}
	}
	d.log.Warn("connections flushed by the operator", "service", svc, "backend", backend, "flows", total)
	return control.Response{OK: true, Count: total, Message: fmt.Sprintf("flushed %d connections", total)}
}

// connsArgs reads [SERVICE] [--backend ADDR].
func connsArgs(args []string) (svc string, backend netip.AddrPort, err error) {
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--backend":
			if i+1 >= len(args) {
				return "", backend, fmt.Errorf("--backend needs an ip:port")
			}
			if backend, err = netip.ParseAddrPort(args[i+1]); err != nil {
				return "", backend, fmt.Errorf("--backend %q: expected ip:port as in the config", args[i+1])
			}
			i++
		case "--all", "":
		default:
			if svc != "" {
				return "", backend, fmt.Errorf("one service at a time, got %q and %q", svc, args[i])
			}
			svc = args[i]
		}
	}
	return svc, backend, nil
}

// selectPlans is the running plan of one service, or of all ("").
func (d *Daemon) selectPlans(svc string) ([]lb.Service, error) {
	plans := d.plannedList()
	if svc == "" {
		return plans, nil
	}
	for _, p := range plans {
		if p.Name == svc {
			return []lb.Service{p}, nil
		}
	}
	return nil, fmt.Errorf("no service %q", svc)
}

// inLoop runs f on the sync loop between two syncs and waits for it.
func (d *Daemon) inLoop(f func()) {
	done := make(chan struct{})
	d.record(func(in *inputs) {
		in.calls = append(in.calls, func() { f(); close(done) })
	})
	<-done
}
