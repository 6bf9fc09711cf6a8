package config

import (
	"fmt"
	"strconv"

	"lbd/health"
)

// Health checks are defined once, in package health: its Spec holds the
// types, defaults and rules. This file only maps lb.toml's keys onto a
// health.Spec and points health's complaints at the key that has them.

// Spec returns the check h describes, defaults filled in. Call it on a
// validated config: a payload that does not parse is left empty here (the
// validator has already refused it).
func (h *Health) Spec() health.Spec {
	sp, _ := h.spec()
	return sp
}

func (h *Health) spec() (health.Spec, error) {
	sp := health.Spec{
		Type: health.Type(h.Type), Port: uint16(h.Port),
		Interval: h.Interval.D(), Timeout: h.Timeout.D(), Rise: h.Rise, Fall: h.Fall,
		Path: h.Path, Host: h.Host, ExpectStatus: h.ExpectStatus, ExpectBody: h.ExpectBody,
		TLSSkipVerify: h.TLSSkipVerify, SNI: h.SNI, Expect: h.Expect, Command: h.Command,
	}
	if sp.Type == "" {
		sp.Type = health.DefaultType
	}
	var err error
	if h.Payload != "" {
		sp.Payload, err = health.ParsePayload(h.Payload)
	}
	return sp.Normalize(), err
}

func (v *validator) health(h *Health, p string) {
	// The port is checked here because health.Spec holds it as a uint16.
	if h.Port < 0 || h.Port > 65535 {
		v.errorf(p+".port", "%d out of range; expected 1 to 65535 (0 = backend port)", h.Port)
	}
	sp, err := h.spec()
	if err != nil {
		v.errorf(p+".payload", "%v", err)
	}
	for _, pr := range sp.Problems() {
		v.errorf(p+"."+pr.Key, "%s", pr.Msg)
	}
	// lb.toml's own rule on top of health's: a timeout longer than the
	// interval is almost always a typo (the monitor would still cope).
	if sp.Timeout > sp.Interval && sp.Interval >= health.MinInterval {
		v.errorf(p+".timeout", "%s is longer than the interval %s; expected timeout <= interval", sp.Timeout, sp.Interval)
	}
}

// StatusRanges is expect_status: 200, "200-399", "2xx", or a list of them.
type StatusRanges []health.StatusRange

func (sr *StatusRanges) decodeTOML(v *value) error {
	items := []*value{v}
	if v.kind == kindArray {
		items = v.arr
	}
	for _, it := range items {
		var text string
		switch it.kind {
		case kindInt:
			text = strconv.FormatInt(it.i, 10)
		case kindString:
			text = it.s
		default:
			return fmt.Errorf("expected a status code, a range string such as \"200-399\", or a list of them, got %s", it.kind)
		}
		rs, err := health.ParseExpectStatus([]string{text})
		if err != nil {
			return err
		}
		*sr = append(*sr, rs...)
	}
	return nil
}
