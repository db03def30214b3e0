package nginx

// Stand-ins for the provider API v2 (issue 10) until package provider has
// them: the same names and shapes, so that switching is a matter of
// deleting this file and qualifying the names with provider.

import (
	"errors"
	"time"

	"zerodrop.dev/zerodrop/provider"
)

// Pool is a pool with every target the controller knows in it (with their
// addresses) and its health-check settings.
type Pool struct {
	Name  string
	Known []provider.Target
	Check provider.HealthCheck
}

// Identity says how the LB tells targets apart.
type Identity string

// Promotion says who puts a registered target in rotation.
type Promotion string

// HealthCheckScope says what the LB's health checks apply to.
type HealthCheckScope string

// DrainSignal says what "drained" is read from.
type DrainSignal string

// Topology says how the LB's instances are found.
type Topology string

// Capability values.
const (
	IdentityName    Identity = "Name"
	IdentityAddress Identity = "Address"

	PromotionSelf     Promotion = "Self"
	PromotionExplicit Promotion = "Explicit"

	ScopeTarget HealthCheckScope = "Target"
	ScopePool   HealthCheckScope = "Pool"
	ScopeNone   HealthCheckScope = "None"

	DrainSessions  DrainSignal = "Sessions"
	DrainStateOnly DrainSignal = "StateOnly"
	DrainTimer     DrainSignal = "Timer"

	TopologyInstances    Topology = "Instances"
	TopologyControlPlane Topology = "ControlPlane"
	TopologyDiscovered   Topology = "Discovered"
)

// Capabilities is what a provider declares it can and cannot promise.
type Capabilities struct {
	Identity             Identity
	Promotion            Promotion
	HealthCheckScope     HealthCheckScope
	DrainSignal          DrainSignal
	Topology             Topology
	VolatileRuntimeState bool
	ReloadGrace          time.Duration
	MinStatusInterval    time.Duration
	HealthCheckDefaults  provider.HealthCheck
}

// InstanceStatus is one instance's view of a pool.
type InstanceStatus struct {
	Instance string
	Err      error
	// Epoch names the master process and its current worker generation.
	Epoch string
	// StartedAt is when the current worker generation started.
	StartedAt time.Time
	// OldWorkers is true while a worker of an earlier generation is still
	// finishing its connections. Per-target Draining already counts the
	// old workers that had the target.
	OldWorkers bool
	Targets    map[provider.TargetID]provider.TargetStatus
}

// PoolStatus is a pool on every instance.
type PoolStatus struct {
	Pool      string
	Instances []InstanceStatus
}

// ErrUnreachable is wrapped by errors about an instance whose master cannot
// be found or signalled.
var ErrUnreachable = errors.New("instance unreachable")

// ErrPoolFull is never returned by this provider (an upstream has no fixed
// number of slots); declared for the v2 API's shape.
var ErrPoolFull = errors.New("pool full")
