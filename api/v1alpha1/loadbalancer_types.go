package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ProviderType names the kind of load balancer a provider drives.
// +kubebuilder:validation:Enum=haproxy;external
type ProviderType string

const (
	// ProviderHAProxy drives HAProxy through its Runtime API (stats socket
	// at "level admin"): dynamic servers or server-template slots,
	// health-checked, drained and removed.
	ProviderHAProxy ProviderType = "haproxy"
	// ProviderExternal drives any load balancer through an adapter that
	// speaks zerodrop's provider protocol over HTTP(S)
	// (docs/provider-protocol.md): spec.external says where it is.
	ProviderExternal ProviderType = "external"
)

// LoadBalancerSpec describes one external load balancer: its provider and how
// to reach each of its instances (an HAProxy active/standby pair is one
// LoadBalancer with two instances, and both must agree before a gate opens).
// +kubebuilder:validation:XValidation:rule="self.provider != 'haproxy' || has(self.instances) && size(self.instances) >= 1",message="provider haproxy needs at least one instance"
// +kubebuilder:validation:XValidation:rule="(self.provider == 'external') == has(self.external)",message="external is required with provider external and allowed only with it"
// +kubebuilder:validation:XValidation:rule="self.provider != 'external' || !has(self.instances) || size(self.instances) == 0",message="provider external: the adapter reports its instances; leave instances empty"
type LoadBalancerSpec struct {
	// Provider is the kind of load balancer.
	// +kubebuilder:default=haproxy
	Provider ProviderType `json:"provider"`

	// Instances are the load balancer's processes or appliances. Every
	// instance is driven, and a target counts as healthy only when every
	// instance reports it healthy. Required with provider haproxy; empty
	// with provider external, whose adapter reports its instances.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	// +optional
	Instances []LoadBalancerInstance `json:"instances,omitempty"`

	// External says where the provider adapter of a LoadBalancer of
	// provider external listens, and how to authenticate to it.
	// +optional
	External *ExternalProvider `json:"external,omitempty"`

	// ReloadGrace is how long after an instance's process started (a
	// reload or a restart) a previous process may still serve the
	// connections it accepted before: no drain completes on that instance
	// meanwhile. Set it to HAProxy's hard-stop-after (NGINX:
	// worker_shutdown_timeout). Defaults to the provider's (HAProxy: 30s).
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('1h')",message="reloadGrace must be between 0s and 1h"
	// +optional
	ReloadGrace *metav1.Duration `json:"reloadGrace,omitempty"`

	// PoolDefaults apply to every pool (HAProxy backend) of this load
	// balancer unless a TargetBinding overrides them.
	// +optional
	PoolDefaults PoolDefaults `json:"poolDefaults,omitempty"`

	// Pools grants this load balancer's pools to namespaces: a TargetBinding
	// may use a pool only if the pool's grant allows the binding's
	// namespace. Once any pool is listed the list is complete, and a pool
	// not listed is granted to no namespace. When empty, every pool behaves
	// as if listed with `from: Same`: the namespace of the pool's oldest
	// binding holds it and bindings from other namespaces are refused.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=256
	// +optional
	Pools []PoolGrant `json:"pools,omitempty"`
}

// ExternalProvider points at a provider adapter (docs/provider-protocol.md).
// +kubebuilder:validation:XValidation:rule="self.url.startsWith('https://') || has(self.allowInsecure) && self.allowInsecure",message="url must be https:// unless allowInsecure is true"
type ExternalProvider struct {
	// URL is the adapter's base URL, e.g. https://lb-adapter.lb.svc:8443.
	// +kubebuilder:validation:Pattern=`^https?://[^\s]+$`
	// +kubebuilder:validation:MaxLength=1024
	URL string `json:"url"`

	// TLS: the Secret with the CA that verifies the adapter (`ca.crt`) and,
	// for mutual TLS, the controller's client certificate (`tls.crt`,
	// `tls.key`).
	// +optional
	TLS *InstanceTLS `json:"tls,omitempty"`

	// TokenSecretRef names a Secret whose key `token` is sent as a bearer
	// token with every request.
	// +optional
	TokenSecretRef *SecretReference `json:"tokenSecretRef,omitempty"`

	// Timeout bounds each request to the adapter; default 10s.
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// AllowInsecure permits an http:// URL (a sidecar on loopback, the
	// lab); never across a network.
	// +optional
	AllowInsecure bool `json:"allowInsecure,omitempty"`
}

// PoolGrant says which namespaces' TargetBindings may put targets into one
// pool, in the manner of a Gateway API listener's allowedRoutes.
type PoolGrant struct {
	// Name is the pool (HAProxy: the backend name), as in a TargetBinding's
	// spec.pool.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.:-]+$`
	// +kubebuilder:validation:MaxLength=128
	Name string `json:"name"`

	// AllowedNamespaces selects the namespaces whose TargetBindings may use
	// the pool.
	// +kubebuilder:default={from: Same}
	// +optional
	AllowedNamespaces AllowedNamespaces `json:"allowedNamespaces,omitempty"`
}

// FromNamespaces says which namespaces a pool is granted to.
// +kubebuilder:validation:Enum=Same;All;Selector
type FromNamespaces string

const (
	// NamespacesFromSame grants the pool to one namespace at a time: the
	// namespace of the pool's oldest TargetBinding (by creation time, then
	// namespace/name) that is not being deleted. A LoadBalancer is
	// cluster-scoped and has no namespace of its own, so "the same
	// namespace" is the one that bound the pool first (as the AWS Load
	// Balancer Controller refuses a target group already bound).
	NamespacesFromSame FromNamespaces = "Same"
	// NamespacesFromAll grants the pool to every namespace.
	NamespacesFromAll FromNamespaces = "All"
	// NamespacesFromSelector grants the pool to the namespaces whose labels
	// match the selector (for one namespace:
	// `kubernetes.io/metadata.name: <namespace>`).
	NamespacesFromSelector FromNamespaces = "Selector"
)

// AllowedNamespaces selects namespaces.
// +kubebuilder:validation:XValidation:rule="(has(self.from) && self.from == 'Selector') == has(self.selector)",message="selector is required with from: Selector and allowed only with it"
type AllowedNamespaces struct {
	// From is Same (one namespace: the one that bound the pool first), All
	// or Selector.
	// +kubebuilder:default=Same
	// +optional
	From FromNamespaces `json:"from,omitempty"`

	// Selector selects namespaces by label when From is Selector.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
}

// LoadBalancerInstance is one instance of a load balancer and the address of
// its management API.
// +kubebuilder:validation:XValidation:rule="has(self.socket) != has(self.address)",message="exactly one of socket or address must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.tls) || has(self.address)",message="tls applies only to a TCP address"
type LoadBalancerInstance struct {
	// Name identifies the instance in status, metrics, events and logs.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// Socket is the absolute path of the instance's Runtime API unix socket,
	// as seen by the controller (mount it into the controller's pod).
	// +kubebuilder:validation:Pattern=`^/[^\s;]*$`
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Socket string `json:"socket,omitempty"`

	// Address is host:port of the instance's Runtime API over TCP. Set tls
	// with it: without, anyone who reaches the port controls the load
	// balancer (docs/haproxy.md).
	// +kubebuilder:validation:Pattern=`^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$`
	// +kubebuilder:validation:MaxLength=260
	// +optional
	Address string `json:"address,omitempty"`

	// TLS secures a TCP Runtime API connection with mutual TLS.
	// +optional
	TLS *InstanceTLS `json:"tls,omitempty"`
}

// InstanceTLS configures mutual TLS towards one instance's management API.
type InstanceTLS struct {
	// SecretRef names a Secret holding the controller's client certificate
	// (`tls.crt`, `tls.key`) and the CA that verifies the instance
	// (`ca.crt`): a kubernetes.io/tls Secret with a ca.crt, as cert-manager
	// writes it. The controller re-reads it, so a renewal needs no restart.
	SecretRef SecretReference `json:"secretRef"`

	// ServerName is the name verified in the instance's certificate;
	// defaults to the host part of the address.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9.:]*[A-Za-z0-9])?$`
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ServerName string `json:"serverName,omitempty"`
}

// SecretReference names a Secret.
type SecretReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Namespace of the Secret; defaults to the controller's namespace.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// PoolDefaults are the health-check and server settings a pool's targets get.
type PoolDefaults struct {
	// HealthCheck is how the load balancer checks each target.
	// +optional
	HealthCheck HealthCheck `json:"healthCheck,omitempty"`

	// ServerOptions are extra options appended to each server line the
	// provider adds (HAProxy: e.g. `ssl verify none`, `maxconn 100`).
	// Newlines and `;` are refused because the Runtime API treats them as
	// command separators.
	// +kubebuilder:validation:Pattern=`^[^\n\r;]*$`
	// +kubebuilder:validation:MaxLength=512
	// +optional
	ServerOptions string `json:"serverOptions,omitempty"`
}

// HealthCheck is the load balancer's own active health check of a target.
// A new target turns healthy after Rise consecutive passed checks Interval
// apart; that, not the pod's readinessProbe, is what opens the gate.
type HealthCheck struct {
	// Interval between two checks of one target (HAProxy `inter`).
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('100ms') && duration(self) <= duration('5m')",message="interval must be between 100ms and 5m"
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`

	// Rise is the number of consecutive passed checks that make a target
	// healthy.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	Rise *int32 `json:"rise,omitempty"`

	// Fall is the number of consecutive failed checks that make a target
	// unhealthy.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	Fall *int32 `json:"fall,omitempty"`
}

// InstanceStatus is what the controller last saw of one instance.
type InstanceStatus struct {
	// Name of the instance.
	Name string `json:"name"`
	// Reachable is true when the last status read succeeded.
	Reachable bool `json:"reachable"`
	// Message is the last error, when not reachable.
	// +optional
	Message string `json:"message,omitempty"`
	// LastReloadTime is when the controller last saw the instance lose its
	// dynamic servers (a reload or restart) and re-registered them.
	// +optional
	LastReloadTime *metav1.Time `json:"lastReloadTime,omitempty"`
}

// LoadBalancerStatus is the observed state of a LoadBalancer.
type LoadBalancerStatus struct {
	// ObservedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready (every instance reachable).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Instances is the last seen state of each instance.
	// +listType=map
	// +listMapKey=name
	// +optional
	Instances []InstanceStatus `json:"instances,omitempty"`

	// ReachableInstances counts the instances whose last read succeeded.
	// +optional
	ReachableInstances int32 `json:"reachableInstances,omitempty"`
}

// LoadBalancer is an external load balancer (for example an HAProxy pair)
// whose own health verdict gates pod readiness.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=zlb,categories=zerodrop
// +kubebuilder:printcolumn:name="Provider",type=string,JSONPath=`.spec.provider`
// +kubebuilder:printcolumn:name="Instances",type=integer,JSONPath=`.status.reachableInstances`,description="reachable instances"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type LoadBalancer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired state.
	Spec LoadBalancerSpec `json:"spec"`
	// Status is the observed state.
	// +optional
	Status LoadBalancerStatus `json:"status,omitempty"`
}

// LoadBalancerList is a list of LoadBalancers.
//
// +kubebuilder:object:root=true
type LoadBalancerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the LoadBalancers.
	Items []LoadBalancer `json:"items"`
}
