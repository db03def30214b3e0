package verify

import "time"

// Result is what happened to one request. Attack streams one per request.
type Result struct {
	// Seq numbers the requests in schedule order, from 0.
	Seq uint64 `json:"seq"`
	// Scheduled is when the request was due. In the open model this is the
	// schedule's time (start + Seq/rate); in the closed model it equals Sent.
	Scheduled time.Time `json:"scheduled"`
	// Sent is when a worker actually started the request. Sent - Scheduled
	// is the load generator's lag behind its schedule.
	Sent time.Time `json:"sent"`
	// Latency is the time from Scheduled to the end of the response body
	// (or the error): what a client arriving on schedule would have waited.
	Latency time.Duration `json:"latency_ns"`
	// Code is the HTTP status code, 0 when no response arrived.
	Code int `json:"code"`
	// Class is ClassOK or the failure class.
	Class Class `json:"class"`
	// Error is the error text for failures without a response, else empty.
	Error string `json:"error,omitempty"`
	// BytesIn counts response body bytes read.
	BytesIn int64 `json:"bytes_in"`
	// Stream names the load stream the request belongs to (Config.Streams);
	// empty for the main stream (Config.Load).
	Stream string `json:"stream,omitempty"`
}

// Lag returns how late the request was sent relative to its schedule.
func (r *Result) Lag() time.Duration { return r.Sent.Sub(r.Scheduled) }

// Failed reports whether the request failed.
func (r *Result) Failed() bool { return r.Class != ClassOK }
