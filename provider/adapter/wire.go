package adapter

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// The wire types of protocol version 1: every JSON document the adapter
// and its clients exchange, and nothing else. docs/provider-protocol.openapi.yaml
// is generated from them (hack/genprotocol) and a test keeps it equal.
//
// Conventions: field names in lowerCamelCase; durations are strings in Go's
// duration syntax ("30s", "1.5s", "100ms"; units ns, us, ms, s, m, h);
// times are RFC 3339 strings in UTC; an absent optional field means "not
// set" (the provider's default).

// CapabilitiesResponse is the body of GET /v1/capabilities.
type CapabilitiesResponse struct {
	// APIVersion is the protocol version the adapter serves ("v1").
	APIVersion string `json:"apiVersion"`
	// Provider names the provider behind the adapter ("haproxy"), for logs.
	Provider string `json:"provider,omitempty"`
	// Capabilities declares what the load balancer does.
	Capabilities Capabilities `json:"capabilities"`
}

// Capabilities is provider.Capabilities on the wire.
type Capabilities struct {
	// Identity: Name when the LB keeps the target's id as its name,
	// Address when it knows only ip:port (targets are mapped back with
	// known).
	Identity string `json:"identity" enum:"Name,Address"`
	// Promotion: Self when the LB puts a target in rotation by itself once
	// its checks pass, Explicit when it waits for an enable change.
	Promotion string `json:"promotion" enum:"Self,Explicit"`
	// HealthCheckScope: where checks are configured (per Target, per Pool,
	// or None); a target's check is refused unless Target.
	HealthCheckScope string `json:"healthCheckScope" enum:"Target,Pool,None"`
	// DrainSignal: what drained is based on: Sessions counted per target,
	// StateOnly (the LB says when nothing can send), or Timer (the LB says
	// nothing; the controller waits the binding's deregistration delay).
	DrainSignal string `json:"drainSignal" enum:"Sessions,StateOnly,Timer"`
	// Topology: Instances (a static list, each read and written, verdicts
	// unanimous), ControlPlane (one API for the whole LB) or Discovered
	// (replicas found at run time).
	Topology string `json:"topology" enum:"Instances,ControlPlane,Discovered"`
	// VolatileRuntimeState: the LB forgets runtime registrations on a
	// reload or restart (an epoch change); the controller registers again.
	VolatileRuntimeState bool `json:"volatileRuntimeState"`
	// ReloadGrace: how long after an instance's startedAt a previous
	// process may still serve ("0s": never); the LoadBalancer's
	// spec.reloadGrace overrides it.
	ReloadGrace Duration `json:"reloadGrace"`
	// MinStatusInterval: the shortest time between two status requests
	// the LB tolerates; absent: no limit.
	MinStatusInterval Duration `json:"minStatusInterval,omitempty"`
	// HealthCheckDefaults: the check a target gets when it sets none.
	HealthCheckDefaults HealthCheck `json:"healthCheckDefaults"`
	// ActiveHealthChecks: false when the LB has no active check of its
	// own; Healthy then means "every instance loaded the target".
	ActiveHealthChecks bool `json:"activeHealthChecks"`
	// PushesVerdicts: the adapter serves GET /v1/events, a stream of the
	// LB's verdict changes as they happen. Absent (an adapter older than
	// the stream): false, and the client polls status.
	PushesVerdicts bool `json:"pushesVerdicts,omitempty"`
}

// HealthCheck is how the LB checks a target; zero or absent fields take
// the provider's defaults.
type HealthCheck struct {
	// Interval between two checks.
	Interval Duration `json:"interval,omitempty"`
	// Rise: consecutive passed checks that make a target healthy.
	Rise int `json:"rise,omitempty"`
	// Fall: consecutive failed checks that make a target unhealthy.
	Fall int `json:"fall,omitempty"`
	// Port checked instead of the target's port.
	Port int `json:"port,omitempty"`
}

// Target is one endpoint of a pool.
type Target struct {
	// ID names the target in the pool (at most 253 characters); an LB
	// that keeps names uses it as the target's name. An orphan's synthetic
	// ID starts with "slot:" and may come without ip and port (drain and
	// deregister only).
	ID string `json:"id"`
	// IP is the target's IPv4 or IPv6 address.
	IP string `json:"ip"`
	// Port is the target's port, 1-65535.
	Port int `json:"port"`
	// Check overrides the provider's health-check defaults.
	Check *HealthCheck `json:"check,omitempty"`
}

// StatusRequest is the body of POST /v1/pools/{pool}/status.
type StatusRequest struct {
	// Known is every target the controller knows in the pool.
	Known []Target `json:"known"`
}

// PoolStatus is the answer to a status request: the pool on every
// instance.
type PoolStatus struct {
	// Pool is the pool's name, as in the path.
	Pool string `json:"pool"`
	// Instances has one entry per LB instance, read or not.
	Instances []InstanceStatus `json:"instances"`
}

// InstanceStatus is one LB instance's view of the pool. When Error is set
// the instance could not be read and Targets is empty.
type InstanceStatus struct {
	// Instance names the LB instance.
	Instance string `json:"instance"`
	// Error says why the instance could not be read (code Unreachable,
	// most often).
	Error *Error `json:"error,omitempty"`
	// Epoch identifies the LB process; it changes on reload and restart.
	Epoch string `json:"epoch,omitempty"`
	// StartedAt is when the instance's current process started serving,
	// as the LB reports it; absent when it does not say.
	StartedAt *time.Time `json:"startedAt,omitempty"`
	// Targets is every target of the pool on this instance, including
	// ones configured statically in the LB, sorted by id.
	Targets []TargetStatus `json:"targets,omitempty"`
}

// TargetStatus is one instance's verdict on one target.
type TargetStatus struct {
	// ID is the target's id (a known target's, or "slot:..." for an entry
	// whose address no known target has).
	ID string `json:"id"`
	// Health is the LB's verdict: Initial (checks not passed yet, no
	// balanced request), Healthy (in rotation), Unhealthy, Draining (no new
	// request, sessions open), Drained (nothing sent), Unknown.
	Health string `json:"health" enum:"Unknown,Initial,Healthy,Unhealthy,Draining,Drained"`
	// Reason is the LB's short word for the state ("L7OK", "DRAIN").
	Reason string `json:"reason,omitempty"`
	// Message is the LB's longer text ("2/3 checks passed").
	Message string `json:"message,omitempty"`
	// Addr is the address the LB has for the target ("ip:port").
	Addr string `json:"addr,omitempty"`
	// Sessions is the number of sessions the LB has on the target now.
	Sessions int64 `json:"sessions"`
	// Selected counts how often the LB picked the target; it stops growing
	// once the target drains.
	Selected int64 `json:"selected"`
}

// Operations of a change.
const (
	OpRegister   = "register"
	OpEnable     = "enable"
	OpDrain      = "drain"
	OpDeregister = "deregister"
)

// ChangesRequest is the body of POST /v1/pools/{pool}/changes: changes
// applied in order, each to every instance.
type ChangesRequest struct {
	// Known is every target the controller knows in the pool.
	Known []Target `json:"known"`
	// Changes are applied in this order; at least one.
	Changes []Change `json:"changes"`
}

// Change is one operation on one target.
type Change struct {
	// Op is the operation: register, enable, drain or deregister.
	Op string `json:"op" enum:"register,enable,drain,deregister"`
	// Target is the target changed.
	Target Target `json:"target"`
}

// ChangesResponse holds one result per change, in the request's order.
type ChangesResponse struct {
	// Results has one entry per change, in order.
	Results []ChangeResult `json:"results"`
}

// ChangeResult says whether a change took effect on every instance; when
// not, Errors has one entry per failure (the other instances changed).
type ChangeResult struct {
	// OK: the change took effect on every instance.
	OK bool `json:"ok"`
	// Errors: one per failure, each naming its instance.
	Errors []Error `json:"errors,omitempty"`
}

// Error is a provider error on the wire: a code the controller acts on,
// the instance it concerns (absent: the whole LB or the request) and a
// message for people.
type Error struct {
	// Code is what the controller acts on (docs/provider-protocol.md has
	// the table).
	Code string `json:"code" enum:"Busy,Conflict,PoolFull,Unreachable,NotFound,Invalid,Internal,Unauthenticated,NotAcceptable,TooLarge"`
	// Instance names the LB instance the error concerns; absent for the
	// whole LB or the request.
	Instance string `json:"instance,omitempty"`
	// Message says what failed, for people.
	Message string `json:"message"`
}

// Wire-only error codes, of requests refused before any provider call.
const (
	CodeUnauthenticated = "Unauthenticated"
	CodeNotAcceptable   = "NotAcceptable"
	CodeTooLarge        = "TooLarge"
)

// ErrorResponse is the body of every answer other than 200.
type ErrorResponse struct {
	// Error says why the request was refused.
	Error Error `json:"error"`
	// Versions lists the protocol versions the adapter serves (406 and
	// 415 answers).
	Versions []string `json:"versions,omitempty"`
}

// HealthResponse is the body of GET /healthz and GET /readyz.
type HealthResponse struct {
	// Status is "ok" or, for readyz when an instance is unreachable,
	// "unready".
	Status string `json:"status" enum:"ok,unready"`
	// Instances: readyz only, one per LB instance.
	Instances []InstanceHealth `json:"instances,omitempty"`
}

// InstanceHealth says whether the adapter reaches one LB instance. Error
// is given to authenticated callers only.
type InstanceHealth struct {
	// Instance names the LB instance.
	Instance string `json:"instance"`
	// Reachable: the adapter reached it just now.
	Reachable bool `json:"reachable"`
	// Error says why not (authenticated callers only).
	Error *Error `json:"error,omitempty"`
}

// Event is one line of the answer to GET /v1/events (JSON Lines: one
// document per line): a change the LB reported, or the state of an
// instance's stream. An event is a hint to read the pool's status, never a
// verdict itself.
type Event struct {
	// Kind says what is reported: Verdict (the LB changed its verdict on
	// an entry of pool), Check (a health check's counter moved, no
	// verdict), Admin (an entry's administrative state changed),
	// StreamUp (the adapter receives the instance's events, again after
	// a loss: read every pool once), StreamDown (it does not: poll that
	// instance until StreamUp), Heartbeat (nothing happened; sent at least
	// every 10 s so that a client can tell a silent stream from a lost
	// one).
	Kind string `json:"kind" enum:"Verdict,Check,Admin,StreamUp,StreamDown,Heartbeat"`
	// Instance names the LB instance; absent for Heartbeat.
	Instance string `json:"instance,omitempty"`
	// Pool is the pool concerned; absent for stream events and Heartbeat.
	Pool string `json:"pool,omitempty"`
	// Entry is the LB's own name of the entry (a target's id, or a slot
	// name for an LB that knows only addresses).
	Entry string `json:"entry,omitempty"`
	// Health is what the LB says of the entry now (Healthy or Unhealthy
	// for a verdict); absent when the event does not say.
	Health string `json:"health,omitempty" enum:"Unknown,Initial,Healthy,Unhealthy,Draining,Drained"`
	// At is when the LB reported it (its own timestamp when it gives one).
	At time.Time `json:"at"`
	// Message is the LB's text, e.g. its log line.
	Message string `json:"message,omitempty"`
	// Error says why the stream is down (StreamDown).
	Error *Error `json:"error,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string; negative durations are refused.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	s, err := strconv.Unquote(string(b))
	if err != nil || len(b) == 0 || b[0] != '"' {
		return fmt.Errorf("want a duration string like \"30s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration string like \"30s\", got %q", s)
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", s)
	}
	*d = Duration(v)
	return nil
}
