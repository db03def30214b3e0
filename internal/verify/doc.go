// Package verify measures what a rolling deployment does to the requests of
// its clients: it sends load to a target at a constant rate (open model) or
// over a fixed number of connections (closed model), classifies every failure
// (HTTP 502/503/504, refused, reset, EOF, timeout, ...), optionally drives a
// rollout and watches it through the Kubernetes API (pods, readiness gates,
// EndpointSlices, Events), and lines everything up on one timeline.
//
// The package follows the shape of vegeta: the load generator (Attack)
// produces a stream of plain Result structs; a Recorder folds results and
// cluster events into a Report; reporters (WriteText, WriteJSON, WriteHTML)
// render a Report. Run ties the pieces together for the CLI and for callers
// that run load and rollouts in-process (the lab).
//
// Latency is measured from the time a request was scheduled to be sent, not
// from the time it was actually sent, so a slow target cannot hide its
// slowness by delaying the load generator (coordinated omission). See
// docs/verify.md.
package verify
