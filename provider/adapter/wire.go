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
	Identity             string      `json:"identity" enum:"Name,Address"`
	Promotion            string      `json:"promotion" enum:"Self,Explicit"`
	HealthCheckScope     string      `json:"healthCheckScope" enum:"Target,Pool,None"`
	DrainSignal          string      `json:"drainSignal" enum:"Sessions,StateOnly,Timer"`
	Topology             string      `json:"topology" enum:"Instances,ControlPlane,Discovered"`
	VolatileRuntimeState bool        `json:"volatileRuntimeState"`
	ReloadGrace          Duration    `json:"reloadGrace"`
	MinStatusInterval    Duration    `json:"minStatusInterval,omitempty"`
	HealthCheckDefaults  HealthCheck `json:"healthCheckDefaults"`
	ActiveHealthChecks   bool        `json:"activeHealthChecks"`
}

// HealthCheck is how the LB checks a target; zero or absent fields take
// the provider's defaults.
type HealthCheck struct {
	Interval Duration `json:"interval,omitempty"`
	Rise     int      `json:"rise,omitempty"`
	Fall     int      `json:"fall,omitempty"`
	Port     int      `json:"port,omitempty"`
}

// Target is one endpoint of a pool.
type Target struct {
	ID    string       `json:"id"`
	IP    string       `json:"ip"`
	Port  int          `json:"port"`
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
	Pool      string           `json:"pool"`
	Instances []InstanceStatus `json:"instances"`
}

// InstanceStatus is one LB instance's view of the pool. When Error is set
// the instance could not be read and Targets is empty.
type InstanceStatus struct {
	Instance  string         `json:"instance"`
	Error     *Error         `json:"error,omitempty"`
	Epoch     string         `json:"epoch,omitempty"`
	StartedAt *time.Time     `json:"startedAt,omitempty"`
	Targets   []TargetStatus `json:"targets,omitempty"`
}

// TargetStatus is one instance's verdict on one target.
type TargetStatus struct {
	ID       string `json:"id"`
	Health   string `json:"health" enum:"Unknown,Initial,Healthy,Unhealthy,Draining,Drained"`
	Reason   string `json:"reason,omitempty"`
	Message  string `json:"message,omitempty"`
	Addr     string `json:"addr,omitempty"`
	Sessions int64  `json:"sessions"`
	Selected int64  `json:"selected"`
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
	Known   []Target `json:"known"`
	Changes []Change `json:"changes"`
}

// Change is one operation on one target.
type Change struct {
	Op     string `json:"op" enum:"register,enable,drain,deregister"`
	Target Target `json:"target"`
}

// ChangesResponse holds one result per change, in the request's order.
type ChangesResponse struct {
	Results []ChangeResult `json:"results"`
}

// ChangeResult says whether a change took effect on every instance; when
// not, Errors has one entry per failure (the other instances changed).
type ChangeResult struct {
	OK     bool    `json:"ok"`
	Errors []Error `json:"errors,omitempty"`
}

// Error is a provider error on the wire: a code the controller acts on,
// the instance it concerns (absent: the whole LB or the request) and a
// message for people.
type Error struct {
	Code     string `json:"code" enum:"Busy,Conflict,PoolFull,Unreachable,NotFound,Invalid,Internal,Unauthenticated,NotAcceptable,TooLarge"`
	Instance string `json:"instance,omitempty"`
	Message  string `json:"message"`
}

// Wire-only error codes, of requests refused before any provider call.
const (
	CodeUnauthenticated = "Unauthenticated"
	CodeNotAcceptable   = "NotAcceptable"
	CodeTooLarge        = "TooLarge"
)

// ErrorResponse is the body of every answer other than 200.
type ErrorResponse struct {
	Error Error `json:"error"`
	// Versions lists the protocol versions the adapter serves (406 and
	// 415 answers).
	Versions []string `json:"versions,omitempty"`
}

// HealthResponse is the body of GET /healthz and GET /readyz.
type HealthResponse struct {
	// Status is "ok" or, for readyz when an instance is unreachable,
	// "unready".
	Status    string           `json:"status" enum:"ok,unready"`
	Instances []InstanceHealth `json:"instances,omitempty"`
}

// InstanceHealth says whether the adapter reaches one LB instance. Error
// is given to authenticated callers only.
type InstanceHealth struct {
	Instance  string `json:"instance"`
	Reachable bool   `json:"reachable"`
	Error     *Error `json:"error,omitempty"`
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
