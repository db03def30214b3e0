package controller

import "context"

// Reasons of the lifecycle rules: binding and LoadBalancer deletion, and
// pods the webhook did not inject.
const (
	// ReasonBindingDeletedUnverified is the gate reason of a pod whose
	// binding was deleted before the load balancer ever reported it
	// healthy: the gate is released (a rollout must not stay stuck) but
	// nobody vouched for the pod.
	ReasonBindingDeletedUnverified = "BindingDeletedUnverified"
	// ReasonDeletionBlocked is the LoadBalancer's Ready reason while its
	// deletion waits for the TargetBindings that use it.
	ReasonDeletionBlocked = "DeletionBlocked"
	// ReasonGateMissing: a pod the binding selects has no readiness gate.
	ReasonGateMissing = "GateMissing"
	// ReasonDrainHookMissing: a pod the binding selects has no drain hook
	// although the binding asks for one (drain.preStop HTTPGet).
	ReasonDrainHookMissing = "DrainHookMissing"
	// ReasonDrainHookStale: a pod's drain hook names a host that is not
	// the drain Service's current ClusterIP.
	ReasonDrainHookStale = "DrainHookStale"
)

var _ = context.Background
