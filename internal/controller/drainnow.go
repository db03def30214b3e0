package controller

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider"
)

// A pod that turns terminating is the most urgent thing the reconciler
// sees: every request the load balancer still sends it after its process
// stops listening fails. So (issue 12):
//
//   - its bindings enter the work queue first (wakePriority), like a
//     binding woken by a drain request or a pushed verdict, instead of
//     behind every other binding's poll (at 1,000 pods over 100 bindings
//     a deletion waited 1-2 s for its cycle);
//   - and its target is set to drain on every instance at once
//     (drainNow), without waiting for that cycle at all. The cycle then
//     confirms: it reads the pool, reports the drain verdict and calls
//     SetDraining again if an instance still has the target in rotation.

// drainNowWidth bounds the direct drains in flight at once; beyond it a
// deletion waits for its binding's cycle (enqueued first anyway).
const drainNowWidth = 16

// drainNowTimeout bounds one pod's direct drains (its bindings' reads and
// provider calls; each provider call also within --cycle-timeout).
const drainNowTimeout = 10 * time.Second

// podEvents maps pod events to the bindings concerned (bindingsOfPod): a
// pod that turns terminating (drainUrgent) enqueues them at wakePriority
// and is drained at once (drainNow, in the background); any other event
// as before (priority 0; the initial list low).
func (r *TargetBindingReconciler) podEvents() handler.EventHandler {
	mapped := handler.EnqueueRequestsFromMapFunc(r.bindingsOfPod)
	urgent := func(ctx context.Context, pod *corev1.Pod, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		reqs := r.bindingsOfPod(ctx, pod)
		addFirst(q, reqs...)
		r.drainInBackground(ctx, pod, reqs)
	}
	return handler.Funcs{
		CreateFunc: mapped.Create,
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			o, ok1 := e.ObjectOld.(*corev1.Pod)
			n, ok2 := e.ObjectNew.(*corev1.Pod)
			if ok1 && ok2 && !podTerminating(o) && podTerminating(n) {
				urgent(ctx, n, q)
				return
			}
			mapped.Update(ctx, e, q)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			// Gone without ever being seen terminating (deleted with no
			// grace, or the watch missed the update): as urgent.
			if pod, ok := e.Object.(*corev1.Pod); ok && !podTerminating(pod) {
				urgent(ctx, pod, q)
				return
			}
			mapped.Delete(ctx, e, q)
		},
		GenericFunc: mapped.Generic,
	}
}

// sliceEvents maps EndpointSlice events to the bindings of their Service
// (bindingsOfSlice); a slice in which some pod's endpoint turns
// terminating enqueues them at wakePriority.
func (r *TargetBindingReconciler) sliceEvents() handler.EventHandler {
	mapped := handler.EnqueueRequestsFromMapFunc(r.bindingsOfSlice)
	return handler.Funcs{
		CreateFunc: mapped.Create,
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			o, ok1 := e.ObjectOld.(*discoveryv1.EndpointSlice)
			n, ok2 := e.ObjectNew.(*discoveryv1.EndpointSlice)
			if ok1 && ok2 && endpointTurnsTerminating(o, n) {
				addFirst(q, r.bindingsOfSlice(ctx, n)...)
				return
			}
			mapped.Update(ctx, e, q)
		},
		DeleteFunc:  mapped.Delete,
		GenericFunc: mapped.Generic,
	}
}

// podTerminating is the plan's "deleting" of a pod (planTarget): deletion
// requested, or its containers have stopped.
func podTerminating(p *corev1.Pod) bool {
	return !p.DeletionTimestamp.IsZero() || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// endpointTurnsTerminating reports whether n has a pod's endpoint marked
// terminating that o did not have so.
func endpointTurnsTerminating(o, n *discoveryv1.EndpointSlice) bool {
	was := map[string]bool{}
	for _, ep := range o.Endpoints {
		if ep.TargetRef != nil && ep.Conditions.Terminating != nil && *ep.Conditions.Terminating {
			was[ep.TargetRef.Name] = true
		}
	}
	for _, ep := range n.Endpoints {
		if ep.TargetRef != nil && ep.Conditions.Terminating != nil && *ep.Conditions.Terminating && !was[ep.TargetRef.Name] {
			return true
		}
	}
	return false
}

// addFirst enqueues reqs at wakePriority (a queue without priorities: at
// the end, as any event).
func addFirst(q workqueue.TypedRateLimitingInterface[reconcile.Request], reqs ...reconcile.Request) {
	if len(reqs) == 0 {
		return
	}
	if pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request]); ok {
		pq.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(wakePriority)}, reqs...)
		return
	}
	for _, req := range reqs {
		q.Add(req)
	}
}

// drainInBackground runs drainNow for each binding of the pod, off the
// informer's event goroutine, at most drainNowWidth at once: beyond that
// the binding's cycle, enqueued first, drains it.
func (r *TargetBindingReconciler) drainInBackground(ctx context.Context, pod *corev1.Pod, reqs []reconcile.Request) {
	if len(reqs) == 0 || r.drainSlots == nil {
		return
	}
	select {
	case r.drainSlots <- struct{}{}:
	default:
		return
	}
	pod = pod.DeepCopy() // the event's object belongs to the cache
	// The handler's context ends when the handler returns (controller-
	// runtime cancels it): the drain outlives it, bounded on its own.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainNowTimeout)
	go func() {
		defer func() { <-r.drainSlots }()
		defer cancel()
		for _, req := range reqs {
			r.drainNow(ctx, req.NamespacedName, pod)
		}
	}()
}

// drainNow sets the target of pod in binding key to drain on every
// instance of the binding's load balancer, through the provider, without
// a cycle. It acts only on what the binding's last cycle told the address
// book (the target, at the pod's own address): a target no cycle has seen
// yet is left to the cycle, as is a binding being deleted (finalize
// drains) or with drain disabled (the cycle deregisters at once).
//
// It is safe against the binding's cycle: it waits for a cycle in flight
// between observe and its provider calls (lockCycle), so a cycle that
// planned from the pod before its deletion (a Register, an Enable) has
// made its calls before the drain, and a cycle that starts after it sees
// the deletion in the cache (the informer updates the cache before it
// hands out the event) and plans a drain too. SetDraining is idempotent,
// so the serve replicas' drain-only reconcilers doing the same is
// harmless, as it was before.
func (r *TargetBindingReconciler) drainNow(ctx context.Context, key types.NamespacedName, pod *corev1.Pod) {
	var b zv1.TargetBinding
	if err := r.Client.Get(ctx, key, &b); err != nil || !b.DeletionTimestamp.IsZero() || !b.Spec.DrainEnabled() {
		return
	}
	var lb zv1.LoadBalancer
	if err := r.Client.Get(ctx, types.NamespacedName{Name: b.Spec.LoadBalancerRef.Name}, &lb); err != nil {
		return
	}
	p, err := r.Providers.For(&lb)
	if err != nil {
		return
	}
	unlock := r.lockCycle(key)
	defer unlock()
	pool := r.book.pool(lb.Name, b.Spec.Pool)
	t, ok := knownTarget(pool, TargetID(b.Namespace, b.Name, pod.Name))
	if !ok || podHasIP(pod, t.IP) != ipOwn {
		return // not known at the pod's address: the cycle decides
	}
	lbCtx, cancel := r.lbContext(ctx)
	defer cancel()
	start := time.Now()
	err = p.SetDraining(lbCtx, pool, t)
	r.observeCall(lb.Name, actDrain.String(), start, err)
	// The confirming cycle reads the pool afresh, not a read from before.
	r.reads.invalidate(bookKey{lb.Name, b.Spec.Pool}, r.now())
	if err != nil {
		r.Log.Warn("drain at once failed: the binding's cycle retries", "binding", key.String(), "pod", pod.Name, "target", t.ID, "err", err)
		return
	}
	r.Log.Info("target drain at once", "binding", key.String(), "pod", pod.Name, "target", t.ID, "addr", t.Addr(), "pool", b.Spec.Pool, "drainOnly", r.DrainOnly)
}

// knownTarget finds id among the pool's known targets.
func knownTarget(pool provider.Pool, id provider.TargetID) (provider.Target, bool) {
	for _, t := range pool.Known {
		if t.ID == id {
			return t, true
		}
	}
	return provider.Target{}, false
}

// lockCycle locks binding key's provider decisions (a cycle from observe
// to its last provider call, or a direct drain) and returns the unlock.
// The mutexes of deleted bindings are kept: a few bytes each, and never
// two mutexes for one binding.
func (r *TargetBindingReconciler) lockCycle(key types.NamespacedName) func() {
	r.mu.Lock()
	if r.cycles == nil {
		r.cycles = map[types.NamespacedName]*sync.Mutex{}
	}
	m := r.cycles[key]
	if m == nil {
		m = &sync.Mutex{}
		r.cycles[key] = m
	}
	r.mu.Unlock()
	m.Lock()
	return m.Unlock
}
