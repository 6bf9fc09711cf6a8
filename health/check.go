package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"syscall"
	"time"
)

// Result is the outcome of one check.
type Result struct {
	OK bool
	// Reason is short and human: "connected", "status 200",
	// "connect refused", "status 503", "timeout after 1s".
	Reason  string
	Latency time.Duration
	At      time.Time // when the check started
}

// checker runs one check of one target. It returns nil when healthy and
// may return a passDetail to say what "healthy" looked like.
type checker interface {
	check(ctx context.Context) (passDetail string, err error)
}

// failure is a check that completed and found the backend unhealthy
// (wrong status, wrong body...): its text is the reason as is.
type failure string

func (f failure) Error() string { return string(f) }

func failf(format string, args ...any) error { return failure(fmt.Sprintf(format, args...)) }

// newChecker builds the checker for a normalized, valid target.
func newChecker(t Target) (checker, error) {
	switch t.Spec.Type {
	case TypeTCP:
		return tcpChecker{addr: t.CheckAddr()}, nil
	case TypeHTTP, TypeHTTPS:
		return newHTTPChecker(t), nil
	case TypeUDP:
		return udpChecker{addr: t.CheckAddr(), payload: t.Spec.Payload, expect: t.Spec.Expect}, nil
	case TypeExec:
		return newExecChecker(t), nil
	case TypeNone:
		return noneChecker{}, nil
	}
	return nil, fmt.Errorf("health check type %q: unknown", t.Spec.Type)
}

// Check runs one check of t now, bounded by its timeout, outside any
// Monitor: for a "check this backend now" command or a test.
func Check(ctx context.Context, t Target) (Result, error) {
	t.Spec = t.Spec.Normalize()
	if err := t.Spec.Validate(); err != nil {
		return Result{}, fmt.Errorf("health check of %s %s: %w", t.Service, t.Addr, err)
	}
	c, err := newChecker(t)
	if err != nil {
		return Result{}, err
	}
	return run(ctx, c, t.Spec.Timeout), nil
}

// run bounds one check by timeout and turns its outcome into a Result.
func run(ctx context.Context, c checker, timeout time.Duration) Result {
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	detail, err := c.check(cctx)
	res := Result{At: start, Latency: time.Since(start)}
	if err == nil {
		res.OK, res.Reason = true, detail
		return res
	}
	res.Reason = reason(cctx, err, timeout)
	return res
}

// reason turns a check error into the short text shown in logs and status.
func reason(ctx context.Context, err error, timeout time.Duration) string {
	var f failure
	if errors.As(err, &f) {
		return string(f)
	}
	// A deadline surfaces in many shapes (context error, i/o timeout,
	// "signal: killed" of an exec check): the context says what happened.
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, os.ErrDeadlineExceeded) {
		return "timeout after " + timeout.String()
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return "canceled"
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connect refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	}
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.As(err, &unknownCA):
		return "tls: certificate signed by unknown authority"
	case errors.As(err, &hostErr):
		return "tls: " + hostErr.Error()
	case errors.As(err, &certErr):
		return "tls: " + certErr.Err.Error()
	}
	// Strip the wrappers that repeat the URL or address the operator
	// already sees next to the reason.
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	var operr *net.OpError
	if errors.As(err, &operr) && operr.Err != nil {
		return operr.Op + ": " + operr.Err.Error()
	}
	return err.Error()
}

// noneChecker is type none: nothing is checked. The Monitor never runs it
// (the state stays "unchecked"); it exists so Check works for every type.
type noneChecker struct{}

func (noneChecker) check(context.Context) (string, error) { return "not checked", nil }
