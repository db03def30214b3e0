package controller

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/binding"
	"zerodrop.dev/zerodrop/provider"
)

// Event-driven verdicts. A provider that declares PushesVerdicts and
// implements provider.Watcher is watched for as long as it is the
// LoadBalancer's provider (Providers.For starts the watch, a rebuild or
// Forget ends it). An event never decides anything: a verdict event marks
// the pool's earlier reads stale and wakes the pool's bindings, whose
// cycle reads the pool afresh and plans from that read, as on a poll. So
// the gate opens a few milliseconds after the LB's verdict instead of at
// the next poll, and while every instance's stream is up, bindings that
// wait only for verdicts poll slowly (PushedPendingInterval). A lost
// stream wakes the LoadBalancer's bindings, which poll at PendingInterval
// again until it is back; its return wakes them once more, since events
// may have been missed in between.

// verdictWatch is the watch of one built provider.
type verdictWatch struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu sync.Mutex
	// up holds each instance's stream state as last reported.
	up map[string]bool
}

// live reports whether some instance reported its stream up and none
// reported it down: every verdict will be pushed. An instance that has
// not reported yet is not known to be down; its first connect reports
// within a command timeout either way.
func (w *verdictWatch) live() bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.up) == 0 {
		return false
	}
	for _, up := range w.up {
		if !up {
			return false
		}
	}
	return true
}

func (w *verdictWatch) stop() {
	if w != nil {
		w.cancel()
	}
}

// watch starts watching p for LoadBalancer lb, when p pushes and someone
// listens (OnEvent); nil otherwise.
func (ps *Providers) watch(lb string, p provider.Provider) *verdictWatch {
	wp, ok := p.(provider.Watcher)
	if !ok || !p.Capabilities().PushesVerdicts || ps.OnEvent == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &verdictWatch{ctx: ctx, cancel: cancel, up: map[string]bool{}}
	onEvent := ps.OnEvent
	go func() {
		_ = wp.Watch(ctx, func(ev provider.Event) {
			if ctx.Err() != nil {
				return // a replaced provider's last words
			}
			switch ev.Kind {
			case provider.EventStreamUp, provider.EventStreamDown:
				w.mu.Lock()
				w.up[ev.Instance] = ev.Kind == provider.EventStreamUp
				w.mu.Unlock()
			}
			onEvent(lb, ev)
		})
		if ctx.Err() == nil {
			// Watch gave up on its own: nothing is pushed any more.
			w.mu.Lock()
			w.up = map[string]bool{"": false}
			w.mu.Unlock()
			onEvent(lb, provider.Event{Kind: provider.EventStreamDown})
		}
	}()
	return w
}

// Pushing reports whether LoadBalancer lb's provider pushes verdicts now:
// it is watched and every instance's stream is up.
func (ps *Providers) Pushing(lb string) bool {
	ps.mu.Lock()
	w := ps.built[lb].watch
	ps.mu.Unlock()
	return w.live()
}

// wakeBuffer bounds the wake-ups waiting for the work queue; when full,
// more are dropped (the bindings' polls catch up).
const wakeBuffer = 4096

// verdictEvent is Providers.OnEvent of a reconciler: it turns a provider
// event into fresh reads of the pools concerned.
func (r *TargetBindingReconciler) verdictEvent(lb string, ev provider.Event) {
	now := r.now()
	switch ev.Kind {
	case provider.EventVerdict:
		r.reads.invalidate(bookKey{lb, ev.Pool}, now)
		r.wake(lb, ev.Pool)
	case provider.EventStreamUp:
		// Events may have been missed: read every pool afresh.
		r.reads.invalidateLB(lb, now)
		r.wake(lb, "")
	case provider.EventStreamDown:
		// Back to polling at the pending interval, from now.
		r.wake(lb, "")
	}
	if r.Metrics != nil {
		r.Metrics.VerdictEvents.WithLabelValues(lb, ev.Instance, string(ev.Kind)).Inc()
	}
}

// wake enqueues the bindings of pool on lb (every pool: ""), without
// blocking.
func (r *TargetBindingReconciler) wake(lb, pool string) {
	if r.wakes == nil {
		return
	}
	for _, key := range r.bindingsOfPool(lb, pool) {
		b := &zv1.TargetBinding{}
		b.Namespace, b.Name = key.Namespace, key.Name
		select {
		case r.wakes <- event.GenericEvent{Object: b}:
		default:
			return // the queue is flooded: the polls catch up
		}
	}
}

// bindingsOfPool lists the bindings of pool on lb (every pool: "") from
// the cache, by the field index when the cache has it.
func (r *TargetBindingReconciler) bindingsOfPool(lb, pool string) []types.NamespacedName {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var list zv1.TargetBindingList
	if err := r.Client.List(ctx, &list, client.MatchingFields{binding.PoolIndex: binding.PoolKey(lb, pool)}, client.UnsafeDisableDeepCopy); err != nil {
		// No index (a client without one): list and filter.
		if err := r.Client.List(ctx, &list); err != nil {
			r.Log.Warn("list TargetBindings to wake", "loadbalancer", lb, "pool", pool, "err", err)
			return nil
		}
	}
	var out []types.NamespacedName
	for i := range list.Items {
		b := &list.Items[i]
		if b.Spec.LoadBalancerRef.Name == lb && (pool == "" || b.Spec.Pool == pool) {
			out = append(out, types.NamespacedName{Namespace: b.Namespace, Name: b.Name})
		}
	}
	return out
}

// pushedPending is the cycle of a binding whose pending targets wait only
// for the LB's verdict while the LB pushes verdicts: a slow resync.
func (r *TargetBindingReconciler) pushedPending() time.Duration {
	if r.PushedPendingInterval > 0 {
		return max(r.PushedPendingInterval, r.pending())
	}
	return max(time.Second, r.pending())
}

// invalidate makes every read of k that started before at unshareable: a
// binding woken by an event reads the pool afresh.
func (pr *poolReads) invalidate(k bookKey, at time.Time) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if cur := pr.reads[k]; cur != nil && cur.started.Before(at) {
		delete(pr.reads, k)
	}
}

// invalidateLB invalidates every pool of lb.
func (pr *poolReads) invalidateLB(lb string, at time.Time) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	for k, cur := range pr.reads {
		if k.lb == lb && cur.started.Before(at) {
			delete(pr.reads, k)
		}
	}
}
