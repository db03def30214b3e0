package provider

import (
	"context"
	"time"
)

// Watcher is implemented by a provider whose load balancer pushes its
// verdicts as they happen (Capabilities.PushesVerdicts), e.g. HAProxy's
// "Server b/s is UP" log lines read from a ring. The controller then reads
// a pool as soon as the LB reports a change in it, instead of at its next
// poll, and polls pending targets only slowly while every instance's
// stream is up.
//
// An event is a hint to read, never a verdict: the controller decides
// gates and drains only from Status. So a provider may report more events
// than changes, and may lose events, as long as it reports the loss
// (EventStreamDown): the controller then polls as if nothing were pushed.
//
// Watch is stateless like the rest of the API: it holds connections, not
// memory the controller needs. It blocks until ctx ends and returns
// ctx.Err(); it reconnects by itself (with backoff) after a stream is
// lost. fn is called from Watch's goroutines, possibly concurrently for
// different instances; it must not block.
type Watcher interface {
	Watch(ctx context.Context, fn func(Event)) error
}

// EventKind says what an Event reports.
type EventKind string

const (
	// EventVerdict: the LB changed its verdict on an entry of Pool
	// (HAProxy: a server went UP or DOWN by its checks).
	EventVerdict EventKind = "Verdict"
	// EventCheck: a health check of an entry of Pool changed its counter
	// without changing the verdict (HAProxy with option
	// log-health-checks: "1/3 checks passed"). Informational.
	EventCheck EventKind = "Check"
	// EventAdmin: an entry of Pool changed its administrative state
	// (drain, maintenance), usually by the controller's own call.
	EventAdmin EventKind = "Admin"
	// EventStreamUp: the instance's stream is established (again); events
	// in between may have been missed, so every pool should be read once.
	EventStreamUp EventKind = "StreamUp"
	// EventStreamDown: the instance's stream could not be established or
	// was lost (Err says why); until the next EventStreamUp no event of
	// that instance arrives, and its verdicts must be polled.
	EventStreamDown EventKind = "StreamDown"
)

// Event is one report of a Watcher.
type Event struct {
	Kind EventKind
	// Instance names the LB instance that reported it.
	Instance string
	// Pool is the pool concerned; empty for stream events (all pools).
	Pool string
	// Entry is the LB's own name of the entry (HAProxy: the server name,
	// a TargetID for dynamic servers, a slot name for server-template
	// slots); empty for stream events.
	Entry string
	// Health is what the LB says of the entry now (Healthy or Unhealthy
	// for a verdict); empty when the event does not say.
	Health Health
	// At is when the LB reported it (its own timestamp when it gives
	// one), or when the provider received it.
	At time.Time
	// Message is the LB's text, e.g. the log line.
	Message string
	// Err is why the stream is down (EventStreamDown).
	Err error
}
