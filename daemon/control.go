package daemon

import (
	"context"
	"fmt"
	"strings"
	"time"

	"lbd/appliance/control"
	"lbd/config"
)

// applyTimeout bounds how long a control request waits for the loop.
const applyTimeout = 60 * time.Second

// handle answers the control socket. Requests that change the data plane
// record their change and wait until the sync loop has applied it.
func (d *Daemon) handle(ctx context.Context, req control.Request) control.Response {
	switch req.Command {
	case "status":
		snap := d.snaps.get()
		return control.Response{OK: true, Status: &snap}
	case "reload":
		lifted, err := d.Reload()
		if err != nil {
			return control.Response{OK: false, Message: "reload refused; the running config stays", Errors: errorLines(err)}
		}
		msg := "reloaded: " + d.summary()
		if len(lifted) > 0 {
			msg += "; lifted the throttles of " + strings.Join(lifted, ", ")
		}
		return control.Response{OK: true, Message: msg}
	case "ping":
		return d.ping()
	case "throttle":
		return d.throttle(req.Args)
	case "drain":
		return d.drain(req.Args)
	case "undrain":
		return d.undrain(req.Args)
	case "drain-node":
		return d.drainNode(req.Args)
	case "undrain-node":
		return d.undrainNode()
	case "conns":
		return d.conns(req.Args)
	case "diff":
		return d.diffRequest(req.Args)
	case "flush":
		return d.flush(req.Args)
	case "ha":
		return d.haRequest(req.Args)
	case "debug-wedge":
		if !d.opts.TestHooks {
			break
		}
		d.record(func(in *inputs) { in.wedge = true })
		return control.Response{OK: true, Message: "sync loop wedged (test hook)"}
	}
	return control.Response{OK: false, Errors: []string{fmt.Sprintf("unknown command %q", req.Command)}}
}

// ping answers readiness without building a snapshot: OK only when a
// config is applied and the kernel holds it.
func (d *Daemon) ping() control.Response {
	d.mu.Lock()
	// Out of sync means a failed apply being retried (as status says it);
	// the moment between publishing a config and marking it is not.
	applied, why := d.pub.cfg != nil, d.pub.sync.LastError
	inSync := d.pub.sync.InSync || d.pub.sync.OutOfSyncSince.IsZero()
	d.mu.Unlock()
	summary := d.summary()
	switch {
	case !applied:
		return control.Response{OK: false, Message: "no config applied: " + summary}
	case !inSync:
		return control.Response{OK: false, Message: "kernel out of sync: " + why}
	}
	return control.Response{OK: true, Message: "ready: " + summary}
}

// throttle sets or lifts a runtime new-connection rate on one service.
func (d *Daemon) throttle(args []string) control.Response {
	if len(args) != 2 {
		return control.Response{Errors: []string{"usage: lbd throttle SERVICE RATE|off"}}
	}
	name, arg := args[0], args[1]
	cfg := d.configOrNil()
	if cfg == nil || !hasService(cfg, name) {
		return control.Response{Errors: []string{fmt.Sprintf("no service %q", name)}}
	}
	var r config.Rate
	if arg != "off" {
		var err error
		if r, err = config.ParseRate(arg); err != nil {
			return control.Response{Errors: []string{err.Error()}}
		}
	}
	gen := d.record(func(in *inputs) {
		if r.IsSet() {
			in.throttles[name] = lbRate(r)
		} else {
			delete(in.throttles, name)
		}
		in.dirty[name] = true
	})
	if err := d.waitApplied(gen, applyTimeout); err != nil {
		return control.Response{Errors: []string{fmt.Sprintf("%s: throttle recorded but not in the kernel yet: %v", name, err)}}
	}
	d.log.Warn("throttle changed", "service", name, "rate", arg)
	if !r.IsSet() {
		return control.Response{OK: true, Message: fmt.Sprintf("%s: throttle lifted", name)}
	}
	return control.Response{OK: true, Message: fmt.Sprintf("%s: new connections throttled to %s until lifted or the next reload", name, r)}
}

func hasService(cfg *config.Config, name string) bool {
	for _, s := range cfg.Services {
		if s.Name == name {
			return true
		}
	}
	return false
}
