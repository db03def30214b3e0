package remote

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/adapter"
)

// Backoff of the reconnection of a lost event stream, as the built-in
// HAProxy provider's.
const (
	watchMinBackoff = 100 * time.Millisecond
	watchMaxBackoff = 30 * time.Second
)

// silenceLimit is how long a stream may stay silent before it counts as
// lost: three heartbeats.
const silenceLimit = 3 * adapter.EventsHeartbeat

// maxEventBytes bounds one line of the stream.
const maxEventBytes = 64 << 10

var _ provider.Watcher = (*Client)(nil)

// Watch implements provider.Watcher over the adapter's event stream (GET
// /v1/events), for an adapter whose capabilities declare pushesVerdicts:
// it forwards the adapter's events (each instance's StreamUp and
// StreamDown included) until ctx ends. The link to the adapter is one more
// stream, reported under the instance name AdapterInstance: StreamUp when
// the stream is established, StreamDown when it cannot be or is lost
// (with StreamDown for every instance the adapter had reported up, whose
// events are lost with it). It then reconnects with a backoff from 100 ms
// to 30 s, and the controller polls meanwhile. An adapter that does not
// declare pushesVerdicts is never asked: Watch reports StreamDown once and
// waits for ctx.
func (c *Client) Watch(ctx context.Context, fn func(provider.Event)) error {
	backoff := watchMinBackoff
	up := map[string]bool{} // instances reported up and not down since
	down := func(err error) {
		now := time.Now()
		if !up[AdapterInstance] {
			// Never connected, or already reported: report the link
			// alone, once per attempt, so that the controller polls.
			fn(provider.Event{Kind: provider.EventStreamDown, Instance: AdapterInstance, At: now, Err: err})
		}
		for in, isUp := range up {
			if isUp {
				fn(provider.Event{Kind: provider.EventStreamDown, Instance: in, At: now, Err: err})
			}
		}
		clear(up)
	}
	for ctx.Err() == nil {
		caps, err := c.FetchCapabilities(ctx)
		if err == nil && !caps.PushesVerdicts {
			down(provider.Errorf(provider.CodeNotFound, "", "adapter %s does not push verdicts (capabilities.pushesVerdicts is false)", c.base))
			<-ctx.Done()
			break
		}
		var connected bool
		if err == nil {
			connected, err = c.stream(ctx, func(ev provider.Event) {
				switch ev.Kind {
				case provider.EventStreamUp:
					up[ev.Instance] = true
				case provider.EventStreamDown:
					up[ev.Instance] = false
				}
				fn(ev)
			})
		}
		if ctx.Err() != nil {
			break
		}
		if connected {
			backoff = watchMinBackoff
		}
		down(err)
		c.log.Warn("provider adapter: event stream lost; polling meanwhile", "adapter", c.base.String(), "retry", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(2*backoff, watchMaxBackoff)
	}
	return ctx.Err()
}

// stream holds one GET /v1/events and calls fn with each event (the
// link's own StreamUp first) until the stream ends; connected tells
// whether it was established. It always returns an error saying why it
// ended.
func (c *Client) stream(ctx context.Context, fn func(provider.Event)) (connected bool, err error) {
	const path = "/v1/events"
	where := fmt.Sprintf("adapter %s: GET %s", c.base, path)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := c.request(ctx, http.MethodGet, path, nil, adapter.EventsMediaType, where)
	if err != nil {
		return false, err
	}
	// Silence (no answer, then no line) for too long ends the stream.
	errSilent := fmt.Errorf("silent for too long: no answer within %s or no line within %s (the adapter sends a heartbeat every %s)",
		c.cfg.Timeout, silenceLimit, adapter.EventsHeartbeat)
	watchdog := time.AfterFunc(c.cfg.Timeout, func() { cancel(errSilent) })
	defer watchdog.Stop()
	resp, err := c.http.Do(req)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause
		}
		return false, &provider.Error{Code: provider.CodeUnreachable, Message: fmt.Sprintf("%s: %v", where, err), Cause: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxEventBytes))
		var er adapter.ErrorResponse
		if json.Unmarshal(raw, &er) == nil && er.Error.Code != "" {
			e := adapter.ToError(er.Error)
			e.Message = fmt.Sprintf("%s: %s: %s", where, resp.Status, e.Message)
			return false, e
		}
		return false, provider.Errorf(provider.CodeUnreachable, "", "%s: %s: %s", where, resp.Status, snippet(raw))
	}
	watchdog.Reset(silenceLimit)
	fn(provider.Event{Kind: provider.EventStreamUp, Instance: AdapterInstance, At: time.Now()})
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxEventBytes)
	for sc.Scan() {
		watchdog.Reset(silenceLimit)
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var w adapter.Event
		if err := json.Unmarshal(line, &w); err != nil {
			return true, provider.Errorf(provider.CodeInternal, "", "%s: a line that is not an event: %v: %s", where, err, snippet(line))
		}
		if w.Kind == adapter.EventHeartbeat {
			continue
		}
		fn(adapter.ToEvent(w))
	}
	err = sc.Err()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	if err == nil {
		err = io.EOF
	}
	return true, &provider.Error{Code: provider.CodeUnreachable, Message: fmt.Sprintf("%s: stream ended: %v", where, err), Cause: err}
}
