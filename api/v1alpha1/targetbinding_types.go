package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// GateConditionPrefix starts the readiness-gate condition type of every pod
// bound by a TargetBinding: `target-health.zerodrop.dev/<binding name>`.
const GateConditionPrefix = "target-health.zerodrop.dev/"

// GateConditionType is the pod condition (and readiness gate) a binding owns.
func GateConditionType(bindingName string) string { return GateConditionPrefix + bindingName }

// GatesNamespaceLabel opts a namespace into readiness-gate injection:
// `zerodrop.dev/gates=enabled`.
const GatesNamespaceLabel = "zerodrop.dev/gates"

// GatesEnabled is the value of GatesNamespaceLabel that opts a namespace in.
const GatesEnabled = "enabled"

// OnTimeout says what a gate does when the load balancer has not reported a
// target healthy within the gate timeout.
// +kubebuilder:validation:Enum=FailOpen;FailClosed
type OnTimeout string

const (
	// FailOpen sets the gate True after the timeout (reason GateTimeoutFailOpen):
	// the rollout continues although the LB has not put the pod in rotation
	// (the LB itself still sends it nothing until its checks pass), so the
	// Deployment may remove old pods the LB still serves from while the new
	// ones are not UP there: the LB's backend can run empty.
	FailOpen OnTimeout = "FailOpen"
	// FailClosed keeps the gate False after the timeout (reason
	// GateTimeoutFailClosed): the rollout stalls (and the Deployment's
	// progressDeadlineSeconds reports it) rather than risking failed requests.
	FailClosed OnTimeout = "FailClosed"
)

// PreStopHook is the drain hook the webhook injects into bound pods.
// +kubebuilder:validation:Enum=None;HTTPGet
type PreStopHook string

const (
	// PreStopNone injects no hook: the app (for example with the graceful
	// package) asks the drain endpoint itself, or nothing waits.
	PreStopNone PreStopHook = "None"
	// PreStopHTTPGet injects `lifecycle.preStop.httpGet` to the controller's
	// drain endpoint into every container that serves a port of the Service
	// (the first container when none declares the port) and has no preStop
	// hook of its own. The kubelet holds SIGTERM until it answers.
	PreStopHTTPGet PreStopHook = "HTTPGet"
)

// TargetBindingSpec binds one port of a Service to a pool of a LoadBalancer.
// +kubebuilder:validation:XValidation:rule="self.loadBalancerRef.name == oldSelf.loadBalancerRef.name && self.pool == oldSelf.pool",message="loadBalancerRef and pool are immutable: create a new binding instead"
type TargetBindingSpec struct {
	// ServiceRef is the Service whose endpoints become the pool's targets.
	ServiceRef ServiceReference `json:"serviceRef"`

	// LoadBalancerRef names the cluster-scoped LoadBalancer.
	LoadBalancerRef LoadBalancerReference `json:"loadBalancerRef"`

	// Pool is the load balancer's pool the targets join (HAProxy: the backend
	// name; it must use a dynamic algorithm such as roundrobin or leastconn).
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.:-]+$`
	// +kubebuilder:validation:MaxLength=128
	Pool string `json:"pool"`

	// HealthCheck overrides the LoadBalancer's pool defaults field by field.
	// +optional
	HealthCheck *HealthCheck `json:"healthCheck,omitempty"`

	// Gate configures the readiness gate.
	// +kubebuilder:default={}
	// +optional
	Gate GateSpec `json:"gate,omitempty"`

	// Drain configures the drain gate.
	// +kubebuilder:default={}
	// +optional
	Drain DrainSpec `json:"drain,omitempty"`
}

// ServiceReference names a Service in the binding's namespace and one of its
// ports.
type ServiceReference struct {
	// Name of the Service.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// Port is the Service port, by name or number (the Service's `port`,
	// not the targetPort); the target's port is the endpoint's port for it.
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == string ? self.size() > 0 : (self >= 1 && self <= 65535)",message="port must be a non-empty name or a number in 1..65535"
	Port intstr.IntOrString `json:"port"`
}

// LoadBalancerReference names a cluster-scoped LoadBalancer.
type LoadBalancerReference struct {
	// Name of the LoadBalancer.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// GateSpec configures the readiness gate.
type GateSpec struct {
	// Timeout bounds how long a registered target may wait for the load
	// balancer to report it healthy, counted from ContainersReady.
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="timeout must be between 1s and 24h"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// OnTimeout is what happens when the timeout passes. Both outcomes show
	// in the condition's reason and in an Event.
	// +kubebuilder:default=FailClosed
	// +optional
	OnTimeout OnTimeout `json:"onTimeout,omitempty"`
}

// DrainSpec configures what happens when a bound pod is deleted.
type DrainSpec struct {
	// Enabled drains a deleted pod's target (no new requests, existing
	// connections continue) and holds the drain endpoint until no instance
	// has a session on it. When false the target is deregistered at once.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// Timeout bounds how long the drain endpoint holds a pod waiting for its
	// sessions to end; after it the pod is reported drained (reason
	// DrainTimeout). Keep it below the pod's terminationGracePeriodSeconds
	// minus the app's own shutdown time.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('1h')",message="timeout must be between 0s and 1h"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// DeregistrationDelay is how long a drained target stays in the pool
	// (draining, receiving no new requests) before it is deleted, so that
	// late connections see the server in drain rather than absent.
	// +kubebuilder:default="0s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('1h')",message="deregistrationDelay must be between 0s and 1h"
	// +optional
	DeregistrationDelay *metav1.Duration `json:"deregistrationDelay,omitempty"`

	// PreStop is the hook the webhook injects into bound pods.
	// +kubebuilder:default=None
	// +optional
	PreStop PreStopHook `json:"preStop,omitempty"`
}

// TargetCounts counts a binding's targets by state.
type TargetCounts struct {
	// Total is the number of targets the binding tracks.
	Total int32 `json:"total"`
	// Registering targets are added to the pool but not yet healthy on every
	// instance.
	Registering int32 `json:"registering"`
	// Healthy targets are healthy on every instance.
	Healthy int32 `json:"healthy"`
	// Draining targets belong to deleted or terminating pods.
	Draining int32 `json:"draining"`
}

// TargetBindingStatus is the observed state of a TargetBinding.
type TargetBindingStatus struct {
	// ObservedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready (Service, port and LoadBalancer resolved and every
	// instance reachable).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Targets counts the binding's targets by state.
	// +optional
	Targets TargetCounts `json:"targets,omitempty"`
}

// TargetBinding binds a Service port to a pool of a LoadBalancer: the
// Service's pods are registered in the pool, their readiness gate
// `target-health.zerodrop.dev/<name>` turns True when every instance of the
// load balancer reports them healthy, and on deletion they are drained
// before the container is stopped.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=ztb,categories=zerodrop
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63",message="name must be at most 63 characters: it is the name part of the pod condition type"
// +kubebuilder:printcolumn:name="Service",type=string,JSONPath=`.spec.serviceRef.name`
// +kubebuilder:printcolumn:name="LoadBalancer",type=string,JSONPath=`.spec.loadBalancerRef.name`
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.spec.pool`
// +kubebuilder:printcolumn:name="Healthy",type=integer,JSONPath=`.status.targets.healthy`
// +kubebuilder:printcolumn:name="Registering",type=integer,JSONPath=`.status.targets.registering`
// +kubebuilder:printcolumn:name="Draining",type=integer,JSONPath=`.status.targets.draining`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TargetBinding struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired state.
	Spec TargetBindingSpec `json:"spec"`
	// Status is the observed state.
	// +optional
	Status TargetBindingStatus `json:"status,omitempty"`
}

// TargetBindingList is a list of TargetBindings.
//
// +kubebuilder:object:root=true
type TargetBindingList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the TargetBindings.
	Items []TargetBinding `json:"items"`
}
