package dhcp

import (
	"context"
	"errors"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// The client's life, RFC 2131 4.4: INIT (acquire) -> BOUND (wait for T1)
// -> RENEWING (unicast until T2) -> REBINDING (broadcast until expiry) ->
// INIT again. A NAK at any point also goes back to INIT.

const maxBackoff = 30 * time.Second

func (c *Client) run(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		c.mu.Lock()
		l, nl := c.lease, c.nl
		c.mu.Unlock()
		if l == nil {
			if err := c.acquireAndBind(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				c.log.Warn("dhcp acquire failed", "err", err, "retry_in", backoff.String())
				// A NAKed lease's address must not linger while no server
				// answers.
				c.unbind("no lease")
				c.wait(ctx, time.Now().Add(backoff))
				backoff = min(backoff*2, maxBackoff)
				continue
			}
			backoff = time.Second
			continue
		}
		if !c.wait(ctx, l.Renew) {
			return
		}
		c.extend(ctx, *l, nl)
	}
}

func (c *Client) acquireAndBind(ctx context.Context) error {
	nl, err := c.acquire(ctx)
	if err != nil {
		return err
	}
	l, err := leaseFromACK(nl.ACK, time.Now())
	if err != nil {
		return err
	}
	if err := c.bind(nl, l); err != nil {
		return err
	}
	c.count(func(s *Stats) { s.Acquired++ })
	return nil
}

// extend renews until T2, then rebinds until the lease expires. It returns
// once the lease is extended, refused or gone.
func (c *Client) extend(ctx context.Context, l Lease, nl *nclient4.Lease) {
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(l.Expiry) {
			c.count(func(s *Stats) { s.Expired++ })
			c.unbind("expired")
			return
		}
		rebinding := !now.Before(l.Rebind)
		deadline := l.Rebind
		if rebinding {
			deadline = l.Expiry
		}
		ectx, cancel := context.WithDeadline(ctx, deadline)
		var got *nclient4.Lease
		var err error
		if rebinding {
			got, err = c.rebind(ectx, nl)
		} else {
			got, err = c.renew(ectx, l, nl)
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		var nak *nclient4.ErrNak
		if errors.As(err, &nak) {
			c.count(func(s *Stats) { s.Naks++ })
			c.forget("NAK: " + nak.Error())
			return
		}
		if err == nil {
			var nlease Lease
			nlease, err = leaseFromACK(got.ACK, time.Now())
			if err == nil {
				err = c.bind(got, nlease)
			}
			if err == nil {
				c.count(func(s *Stats) {
					if rebinding {
						s.Rebound++
					} else {
						s.Renewed++
					}
				})
				return
			}
		}
		c.log.Warn("dhcp renewal failed", "rebinding", rebinding, "err", err)
		// RFC 2131 4.4.5: retry after half the time left, here at least a
		// second so a short test lease still gets several tries.
		next := now.Add(max(time.Until(deadline)/2, time.Second))
		if next.After(deadline) {
			next = deadline
		}
		if !c.wait(ctx, next) {
			return
		}
	}
}

// wait sleeps until t, RenewNow or the end of ctx; false means ctx ended.
func (c *Client) wait(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
	case <-c.kick:
	}
	return true
}
