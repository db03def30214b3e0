package haproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// ErrInstanceSkipped is returned (wrapped) instead of sending a command to
// an instance whose last command timed out, until its backoff has passed
// (the circuit breaker is open): a black-holed instance then costs one
// timeout per backoff, not one per command.
var ErrInstanceSkipped = errors.New("instance skipped: its last command timed out (circuit breaker open)")

// DefaultBreakerBackoff is how long an instance is skipped after its first
// timeout when the Config sets no backoff; it doubles with every failed
// probe, up to maxBreakerBackoff.
const DefaultBreakerBackoff = 5 * time.Second

const maxBreakerBackoff = time.Minute

// breaker is one instance's circuit breaker. Closed, every command is
// sent. A command that times out (or whose transport fails only after half
// the timeout, like an unreachable host) opens it: commands fail at once
// with ErrInstanceSkipped for the backoff. Then one command is let through
// as a probe (half open) while the others still fail at once: its success
// closes the breaker, its failure opens it again for twice the backoff.
// Fast failures (connection refused, during a restart) do not open it:
// they cost nothing to repeat.
type breaker struct {
	backoff time.Duration

	mu        sync.Mutex
	openUntil time.Time     // zero: closed
	wait      time.Duration // the current backoff
	probing   bool
	last      error
}

func newBreaker(backoff time.Duration) *breaker {
	if backoff == 0 {
		backoff = DefaultBreakerBackoff
	}
	if backoff < 0 {
		return nil
	}
	return &breaker{backoff: backoff}
}

// allow reports whether a command may be sent now, and whether it is the
// half-open probe; err wraps ErrInstanceSkipped when it may not.
func (b *breaker) allow(now time.Time) (probe bool, err error) {
	if b == nil {
		return false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.openUntil.IsZero() {
		return false, nil
	}
	if b.probing || now.Before(b.openUntil) {
		return false, fmt.Errorf("%w for up to %s more; last error: %v", ErrInstanceSkipped, b.openUntil.Sub(now).Round(time.Millisecond), b.last)
	}
	b.probing = true
	return true, nil
}

// done records how a command went: err is its transport error, slow says
// whether it timed out or took at least half the timeout, cut whether the
// caller's context ended it (which says nothing about the instance).
func (b *breaker) done(now time.Time, probe bool, err error, slow, cut bool) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	switch {
	case cut:
	case err == nil:
		b.openUntil, b.wait, b.last = time.Time{}, 0, nil
	case slow || probe:
		switch {
		case b.wait == 0:
			b.wait = b.backoff
		case probe:
			b.wait = min(2*b.wait, max(maxBreakerBackoff, b.backoff))
		}
		b.openUntil, b.last = now.Add(b.wait), err
	}
}

// call is exchange behind the Client's circuit breaker (nil: none).
func (c *Client) call(ctx context.Context, line, what string) (string, error) {
	var answer string
	err := c.guarded(ctx, what, func() (err error) {
		answer, err = c.exchange(ctx, line, what)
		return err
	})
	return answer, err
}

// guarded runs one exchange behind the Client's circuit breaker, once one
// of the MaxConns command slots is free (the wait is not the instance's
// slowness: the breaker's clock starts after it).
func (c *Client) guarded(ctx context.Context, what string, exchange func() error) error {
	release, err := c.acquireConn(ctx)
	if err != nil {
		return fmt.Errorf("haproxy %s: %q: waiting for a connection: %w", c, what, err)
	}
	defer release()
	probe, err := c.breaker.allow(time.Now())
	if err != nil {
		return fmt.Errorf("haproxy %s: %q: %w", c, what, err)
	}
	start := time.Now()
	err = exchange()
	if c.breaker != nil {
		timeout := c.Timeout
		if timeout <= 0 {
			timeout = DefaultTimeout
		}
		var ne net.Error
		slow := errors.As(err, &ne) && ne.Timeout() || time.Since(start) >= timeout/2
		c.breaker.done(time.Now(), probe, err, slow, err != nil && ctx.Err() != nil)
	}
	return err
}
