package providertest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// load sends GET requests through every frontend from a few keep-alive
// connections each, paced, until stopped. What reaches a kit target is
// logged by the target; answers from other servers of the pool (or 503s
// while the pool has none) are not the kit's concern.
type load struct {
	stop chan struct{}
	wg   sync.WaitGroup
	done []atomic.Int64 // requests completed, per worker
}

const (
	workersPerFrontend = 2
	// loadPace between two requests of a worker: a few hundred requests a
	// second in all, enough to see a target in rotation within a check
	// interval without loading a small machine.
	loadPace = 2 * time.Millisecond
)

func startLoad(frontends []string) *load {
	n := len(frontends) * workersPerFrontend
	l := &load{stop: make(chan struct{}), done: make([]atomic.Int64, n)}
	for w := 0; w < n; w++ {
		fe := w / workersPerFrontend
		url := fmt.Sprintf("http://%s%sf%d/", frontends[fe], kitPath, fe)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1}
			c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
			defer tr.CloseIdleConnections()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				if resp, err := c.Get(url); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				} else {
					// The frontend refused or reset: back off a little.
					time.Sleep(20 * time.Millisecond)
				}
				l.done[w].Add(1)
				time.Sleep(loadPace)
			}
		}()
	}
	return l
}

func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// settle blocks until every worker completed n more requests: every
// request in flight when it was called has then completed, and the next
// ones were sent after.
func (l *load) settle(ctx context.Context, n int64, guard time.Duration) error {
	start := make([]int64, len(l.done))
	for i := range start {
		start[i] = l.done[i].Load()
	}
	return poll(ctx, guard, 5*time.Millisecond, func() (bool, string) {
		for i := range start {
			if got := l.done[i].Load() - start[i]; got < n {
				return false, fmt.Sprintf("load worker %d completed %d of %d requests", i, got, n)
			}
		}
		return true, ""
	})
}

// held is a request the kit holds open on one of its targets.
type held struct {
	tg       *target
	tok      string
	frontend int
	done     chan struct{}
	status   int
	body     string
	err      error
}

var holdSeq atomic.Int64

// hold sends requests through the frontends in turn until one lands on
// tg, and returns it, held open until release. Requests that another
// server of the pool answers are dropped.
func hold(ctx context.Context, tg *target, frontends []string, guard time.Duration) (*held, error) {
	deadline := time.Now().Add(guard)
	c := &http.Client{Timeout: guard + time.Minute}
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		fe := attempt % len(frontends)
		h := &held{tg: tg, tok: fmt.Sprintf("h%d", holdSeq.Add(1)), frontend: fe, done: make(chan struct{})}
		url := fmt.Sprintf("http://%s%s%s/f%d", frontends[fe], holdPath, h.tok, fe)
		go func() {
			defer close(h.done)
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				h.err = err
				return
			}
			resp, err := c.Do(req)
			if err != nil {
				h.err = err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			h.status, h.body = resp.StatusCode, strings.TrimSpace(string(b))
		}()
		for answered := false; !answered; {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-h.done: // answered elsewhere: try again
				answered = true
				time.Sleep(5 * time.Millisecond)
				continue
			case <-time.After(2 * time.Millisecond):
			}
			if tg.holding(h.tok) {
				return h, nil
			}
		}
	}
	return nil, fmt.Errorf("no request sent through the frontends landed on %s within %s", tg.t.ID, guard)
}

// finish releases the held request and waits for its answer; it returns
// an error unless the request completed with 200 from the target.
func (h *held) finish(guard time.Duration) error {
	h.tg.release(h.tok)
	select {
	case <-h.done:
	case <-time.After(guard):
		return fmt.Errorf("the open request through frontend %d did not complete within %s of its release", h.frontend, guard)
	}
	switch {
	case h.err != nil:
		return fmt.Errorf("the open request through frontend %d failed: %v", h.frontend, h.err)
	case h.status != http.StatusOK || h.body != string(h.tg.t.ID):
		return fmt.Errorf("the open request through frontend %d completed with %d %q, not 200 from %s", h.frontend, h.status, h.body, h.tg.t.ID)
	}
	return nil
}

// poll calls cond every step until it holds, ctx ends or guard passes;
// the error carries cond's last explanation.
func poll(ctx context.Context, guard, step time.Duration, cond func() (bool, string)) error {
	deadline := time.Now().Add(guard)
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %s", guard, why)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s", ctx.Err(), why)
		case <-time.After(step):
		}
	}
}
