package adapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"zerodrop.dev/zerodrop/provider"
)

// The event stream, GET /v1/events: a provider that pushes its verdicts
// (provider.Watcher with Capabilities.PushesVerdicts) is watched for as
// long as a client holds the request, and every event is written as one
// JSON line (Event) and flushed at once. The stream is negotiated by the
// capabilities: an adapter that does not declare pushesVerdicts (an older
// one, or a provider that cannot push) is polled, and answers the path
// with 404. Every client gets its own watch (the protocol stays stateless:
// a fresh adapter answers every stream the same way), up to
// Options.MaxEventStreams at once.
//
// A stream that cannot keep up (EventBuffer events waiting) is ended
// rather than thinned: the client sees the loss, reports it, reconnects
// and reads every pool, which is what a lost event requires.

// EventsMediaType is the media type of the event stream: JSON Lines.
const EventsMediaType = "application/jsonl"

// EventsHeartbeat is the longest the adapter stays silent on a stream: it
// writes a Heartbeat event when nothing else happened for this long. A
// client that reads nothing for three times as long treats the stream as
// lost.
const EventsHeartbeat = 10 * time.Second

// EventBuffer bounds the events waiting to be written to one stream.
const EventBuffer = 1024

// DefaultMaxEventStreams bounds the event streams open at once when
// Options.MaxEventStreams is zero.
const DefaultMaxEventStreams = 8

// Event kinds that exist only on the wire.
const EventHeartbeat = "Heartbeat"

// FromEvent converts an event to the wire.
func FromEvent(ev provider.Event) Event {
	w := Event{Kind: string(ev.Kind), Instance: ev.Instance, Pool: ev.Pool, Entry: ev.Entry, Health: string(ev.Health),
		At: ev.At.UTC(), Message: ev.Message}
	if ev.Err != nil {
		// A stream that could not be had is an unreachable one, unless
		// the provider said otherwise with a code.
		e := Error{Code: string(provider.CodeUnreachable), Message: ev.Err.Error()}
		var pe *provider.Error
		if errors.As(ev.Err, &pe) {
			e = FromError(ev.Err)[0]
		}
		if e.Instance == "" {
			e.Instance = ev.Instance
		}
		w.Error = &e
	}
	return w
}

// ToEvent converts an event from the wire.
func ToEvent(w Event) provider.Event {
	ev := provider.Event{Kind: provider.EventKind(w.Kind), Instance: w.Instance, Pool: w.Pool, Entry: w.Entry,
		Health: provider.Health(w.Health), At: w.At, Message: w.Message}
	if w.Error != nil {
		ev.Err = ToError(*w.Error)
	}
	return ev
}

// pushes returns the provider's watcher when it declares pushed verdicts.
func (h *Handler) pushes() provider.Watcher {
	w, ok := h.o.Provider.(provider.Watcher)
	if !ok || !h.o.Provider.Capabilities().PushesVerdicts {
		return nil
	}
	return w
}

// events serves GET /v1/events until the client leaves, the watch fails
// or the stream falls behind.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	if !h.method(w, r, http.MethodGet) {
		return
	}
	watcher := h.pushes()
	if watcher == nil {
		h.fail(w, http.StatusNotFound, provider.CodeNotFound, "this adapter does not push verdicts (capabilities.pushesVerdicts is false): poll status")
		return
	}
	if err := eventsAcceptable(r.Header.Values("Accept")); err != nil {
		h.write(w, http.StatusNotAcceptable, ErrorResponse{Error: Error{Code: CodeNotAcceptable, Message: err.Error()}, Versions: Versions})
		return
	}
	if n := h.streams.Add(1); n > int64(h.o.MaxEventStreams) {
		h.streams.Add(-1)
		h.fail(w, http.StatusServiceUnavailable, provider.CodeUnreachable, "%d event streams open already (the adapter's limit): retry later, poll meanwhile", n-1)
		return
	}
	defer h.streams.Add(-1)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stopOnClose := context.AfterFunc(h.closing, cancel)
	defer stopOnClose()
	rc := http.NewResponseController(w)
	// The server's read timeout would end the request's context: the
	// stream has no body to read, only a client to notice leaving.
	_ = rc.SetReadDeadline(time.Time{})

	queue := make(chan provider.Event, EventBuffer)
	var behind atomic.Bool
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		_ = watcher.Watch(ctx, func(ev provider.Event) {
			if ctx.Err() != nil {
				return
			}
			select {
			case queue <- ev:
			default:
				behind.Store(true)
				cancel()
			}
		})
	}()
	defer func() { cancel(); <-watched }()

	w.Header().Set("Content-Type", EventsMediaType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no") // a proxy in front must not hold lines back
	w.WriteHeader(http.StatusOK)
	send := func(ev Event) bool {
		b, err := json.Marshal(ev)
		if err != nil {
			return false
		}
		_ = rc.SetWriteDeadline(time.Now().Add(h.o.Timeout))
		if _, err := w.Write(append(b, '\n')); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if rc.Flush() != nil {
		return
	}
	beat := time.NewTicker(EventsHeartbeat)
	defer beat.Stop()
	for {
		select {
		case ev := <-queue:
			if !send(FromEvent(ev)) {
				return
			}
			beat.Reset(EventsHeartbeat)
		case now := <-beat.C:
			if !send(Event{Kind: EventHeartbeat, At: now.UTC()}) {
				return
			}
		case <-ctx.Done():
			if behind.Load() {
				h.o.Logger.Warn("adapter: event stream fell behind; ended so that the client reads every pool", "remote", r.RemoteAddr, "buffer", EventBuffer)
			}
			return
		}
	}
}

// CloseEventStreams ends every open event stream (and any
// opened after at once): call it before http.Server.Shutdown, which waits for requests to
// end and a stream does not end by itself.
func (h *Handler) CloseEventStreams() { h.close() }

// eventsAcceptable checks the Accept headers of an event stream request:
// absent, */*, application/* and EventsMediaType are acceptable.
func eventsAcceptable(values []string) error {
	asked, ok := accepts(values, func(mt string, _ map[string]string) bool {
		return mt == "*/*" || mt == "application/*" || mt == EventsMediaType
	})
	if ok {
		return nil
	}
	return fmt.Errorf("Accept %s: the event stream is %s", strings.Join(asked, ", "), EventsMediaType)
}
