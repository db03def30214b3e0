package provider

import "time"

// Capabilities declares what a load balancer does, instead of assuming
// HAProxy's behaviour. The controller's planner and `zerodrop check` read
// them; docs/providers.md has the matrix for the providers we ship and
// what others (F5, NetScaler, NGINX Plus, Envoy, AWS target groups) would
// declare.
type Capabilities struct {
	// Identity: how the LB names a target.
	Identity Identity `json:"identity"`
	// Promotion: who puts a healthy target in rotation.
	Promotion Promotion `json:"promotion"`
	// HealthCheckScope: where health checks are configured; the
	// controller refuses a binding's healthCheck on a provider whose
	// scope is not Target.
	HealthCheckScope HealthCheckScope `json:"healthCheckScope"`
	// DrainSignal: what "drained" is based on.
	DrainSignal DrainSignal `json:"drainSignal"`
	// Topology: how the LB's instances are found and written.
	Topology Topology `json:"topology"`
	// VolatileRuntimeState: the LB loses what was registered at run time
	// on a reload or restart (an Epoch change); the controller then
	// registers again whatever is absent.
	VolatileRuntimeState bool `json:"volatileRuntimeState"`
	// ReloadGrace is the default time after an instance's StartedAt during
	// which a previous process may still serve; the LoadBalancer's
	// spec.reloadGrace overrides it. 0: the LB has no such process.
	ReloadGrace time.Duration `json:"reloadGrace"`
	// MinStatusInterval is the shortest time between two Status calls
	// the LB tolerates (rate-limited APIs); 0: no limit.
	MinStatusInterval time.Duration `json:"minStatusInterval"`
	// HealthCheckDefaults is the LB's check when nothing sets one; the
	// timing model of `zerodrop check` uses it.
	HealthCheckDefaults HealthCheck `json:"healthCheckDefaults"`
	// ActiveHealthChecks is false when the LB has no active check of its
	// own (NGINX open source): Healthy then means "every instance
	// loaded the target", not "its checks passed".
	ActiveHealthChecks bool `json:"activeHealthChecks"`
	// PushesVerdicts: the provider implements Watcher and the LB reports
	// verdict changes as they happen, so the controller need not poll
	// pending targets quickly while the streams are up.
	PushesVerdicts bool `json:"pushesVerdicts,omitempty"`
}

// Identity says how the LB names a target.
type Identity string

const (
	// IdentityName: the LB keeps the TargetID as the target's name
	// (HAProxy dynamic servers, F5 members named by the controller).
	IdentityName Identity = "Name"
	// IdentityAddress: the LB knows only ip:port (HAProxy server-template
	// slots, NGINX upstream servers, AWS target groups); the provider maps
	// addresses back with Pool.Known.
	IdentityAddress Identity = "Address"
)

// Promotion says who puts a healthy target in rotation.
type Promotion string

const (
	// PromotionSelf: the LB does it once its checks pass (HAProxy).
	PromotionSelf Promotion = "Self"
	// PromotionExplicit: the controller calls Enable after the verdict
	// (F5 members added disabled).
	PromotionExplicit Promotion = "Explicit"
)

// HealthCheckScope says where the LB's health checks are configured.
type HealthCheckScope string

const (
	HealthCheckPerTarget HealthCheckScope = "Target"
	HealthCheckPerPool   HealthCheckScope = "Pool"
	HealthCheckNone      HealthCheckScope = "None"
)

// DrainSignal says what "drained" is based on.
type DrainSignal string

const (
	// DrainSessions: the LB counts sessions per target; drained at 0.
	DrainSessions DrainSignal = "Sessions"
	// DrainStateOnly: the LB reports when nothing can send to the target
	// any more (NGINX: no worker that had it is left), without counts.
	DrainStateOnly DrainSignal = "StateOnly"
	// DrainTimer: the LB says nothing; drained after the binding's
	// drain.deregistrationDelay (AWS target groups).
	DrainTimer DrainSignal = "Timer"
)

// Topology says how the LB's instances are found and written.
type Topology string

const (
	// TopologyInstances: a static list of instances, each written and
	// read separately; the verdict must be unanimous (HAProxy, NGINX).
	TopologyInstances Topology = "Instances"
	// TopologyControlPlane: one API for the whole LB (cloud LBs, an F5
	// HA pair behind config-sync).
	TopologyControlPlane Topology = "ControlPlane"
	// TopologyDiscovered: replicas found at run time (Envoy fed by xDS).
	TopologyDiscovered Topology = "Discovered"
)
