package controller

import (
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/binding"
)

// refuse logs and reports (a Warning Event on the binding) that the
// binding's pool is not granted, once per refusal: when the binding's
// Ready condition does not say so already.
func (r *TargetBindingReconciler) refuse(log *slog.Logger, b *zv1.TargetBinding, msg string) {
	if c := meta.FindStatusCondition(b.Status.Conditions, ConditionReady); c != nil && c.Reason == binding.ReasonPoolNotGranted && c.Message == msg {
		return
	}
	log.Warn("pool not granted: no target is registered", "loadbalancer", b.Spec.LoadBalancerRef.Name, "pool", b.Spec.Pool, "why", msg)
	r.event(b, nil, corev1.EventTypeWarning, binding.ReasonPoolNotGranted, "Register", "%s", msg)
}

// refuseRegistrations applies a pool that the LoadBalancer does not grant
// to the binding's namespace (see binding.Granted) to one cycle's plans: no
// target is registered or re-registered, and a pod that is not Ready yet
// is not made Ready: its gate turns False with reason PoolNotGranted,
// whatever the LB says or the timeout policy (a pod that failed open would
// be Ready without being in the pool it was refused). A pod whose gate is
// True already keeps the plan's own rules: a revocation must not turn a
// whole Service unready at once. Everything that takes targets out of the
// pool goes ahead as planned: a target already there (registered before
// the grant was revoked) is drained, reported drained only when its
// sessions are gone, and deregistered, so a refusal never fails a drain
// open.
func refuseRegistrations(plans []targetPlan, targets []observedTarget, bindingName, msg string) {
	gateType := corev1.PodConditionType(zv1.GateConditionType(bindingName))
	ready := map[types.NamespacedName]bool{}
	for _, t := range targets {
		if c := podCondition(t.Pod, gateType); c != nil && c.Status == corev1.ConditionTrue {
			ready[t.Key] = true
		}
	}
	for i := range plans {
		p := &plans[i]
		if p.Action == actRegister {
			p.Action = actNone
		}
		if p.Drain != nil || ready[p.Key] {
			continue
		}
		p.Pending, p.Stuck, p.GateLatency = false, false, 0
		p.State = stWaiting
		if p.Gate != nil {
			p.Gate = &gateCondition{corev1.ConditionFalse, binding.ReasonPoolNotGranted, msg}
		}
	}
}

// refused reports whether the binding's status says its pool is not granted.
func refused(b *zv1.TargetBinding) bool {
	c := meta.FindStatusCondition(b.Status.Conditions, ConditionReady)
	return c != nil && c.Reason == binding.ReasonPoolNotGranted
}
