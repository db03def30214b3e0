// Package controller holds zerodrop's reconcilers. The TargetBinding
// reconciler is level-based and idempotent: every cycle it reads the
// binding's targets from the Service's EndpointSlices and Pods, reads the
// load balancer's pool once per instance, and then registers, drains and
// deregisters targets, sets each pod's readiness-gate condition from the
// load balancer's own health verdict, and reports drain verdicts to the
// drain endpoint. Waiting is a requeue after a short interval, never an
// error backoff.
package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/binding"
	"zerodrop.dev/zerodrop/internal/drain"
	"zerodrop.dev/zerodrop/provider"
)

// Finalizer keeps a deleted TargetBinding until its gates are released and
// its targets removed from the load balancer.
const Finalizer = "zerodrop.dev/targets"

// ConditionReady is the TargetBinding and LoadBalancer status condition.
const ConditionReady = "Ready"

// EndpointSliceControllerName is the managed-by label value of the slices
// Kubernetes' EndpointSlice controller writes from the Service's selector
// and the pods' own status: the only slices the controller reads targets
// from.
const EndpointSliceControllerName = "endpointslice-controller.k8s.io"

// ReasonEndpointAddressMismatch is the Warning Event on a binding whose
// Service's EndpointSlice gives a pod an address that is not the pod's.
const ReasonEndpointAddressMismatch = "EndpointAddressMismatch"

// +kubebuilder:rbac:groups=zerodrop.dev,resources=targetbindings,verbs=get;list;watch;update
// +kubebuilder:rbac:groups=zerodrop.dev,resources=targetbindings/status,verbs=patch
// +kubebuilder:rbac:groups=zerodrop.dev,resources=targetbindings/finalizers,verbs=update
// +kubebuilder:rbac:groups=zerodrop.dev,resources=loadbalancers,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=services;namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=zerodrop-system,resources=leases,verbs=get;create;update
// Leader election records its transitions as core/v1 Events on the Lease,
// in the controller's namespace (found by the lab running under config/rbac).
// +kubebuilder:rbac:groups="",namespace=zerodrop-system,resources=events,verbs=create;patch

// TargetBindingReconciler reconciles TargetBindings.
type TargetBindingReconciler struct {
	// Client reads from the manager's cache and writes to the API server.
	Client client.Client
	// APIReader reads from the API server, not the cache (the manager's
	// GetAPIReader): a target out of rotation is put back only after it
	// shows the pod not being deleted. Nil never puts one back.
	APIReader client.Reader
	// Recorder emits Events on gate and drain transitions.
	Recorder events.EventRecorder
	// Providers builds the provider of each LoadBalancer.
	Providers *Providers
	// Drains receives drain verdicts for the drain endpoint.
	Drains *drain.Registry
	// Metrics may be nil in tests.
	Metrics *Metrics
	// Instances, when set, receives every pool status read for the
	// LoadBalancer's status.
	Instances *InstanceTracker
	// Log is the structured logger.
	Log *slog.Logger
	// PendingInterval is the cycle while any target registers or drains
	// (sub-second: it bounds gate and drain latency beyond the LB's own).
	PendingInterval time.Duration
	// PushedPendingInterval is the cycle while the only pending targets
	// wait for the LB's verdict and the LB pushes verdicts (every
	// instance's event stream is up, Providers.Pushing): the event wakes
	// the binding, so this is only a resync. Default 1s; never below
	// PendingInterval.
	PushedPendingInterval time.Duration
	// NoVerdictEvents ignores verdicts that providers push: poll only.
	NoVerdictEvents bool
	// SteadyInterval is the cycle when nothing is pending: it re-checks
	// healthy targets and notices LB reloads.
	SteadyInterval time.Duration
	// CycleTimeout bounds the load balancer's part of one cycle: the pool
	// status read and every provider call of the cycle share this deadline,
	// so a slow or black-holed instance cannot hold a worker (which every
	// binding of every load balancer shares) for calls × timeout. Calls
	// cut by it fail and are retried on the pending cycle; Kubernetes
	// writes (gates, status) keep the reconcile's own context. Zero: no
	// deadline.
	CycleTimeout time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// APIClock estimates the API server's clock offset from this
	// process's (from its responses, see APIClock.Wrap): times read from
	// the API are anchored with it. Nil assumes synchronised clocks.
	APIClock *APIClock
	// DrainOnly makes the reconciler the drain observer of a serve replica
	// (zerodrop-controller --role=serve): it reads the same objects and the
	// same pool status every cycle and plans exactly as the leader does, but
	// of each plan it carries out only SetDraining of pods being deleted (idempotent: harmless
	// when the leader did it already) and the drain verdict for its own
	// Drains registry. It never registers or deregisters a target, never
	// patches a gate condition, never writes the binding's status or
	// finalizer, emits no Event and records no gate or drain metric: the
	// leader does all that. So the drain endpoint of every serve replica
	// answers from its own look at the load balancer, and keeps answering
	// while the leader is down or being replaced.
	DrainOnly bool
	// OrphanGrace is how long an orphan of a pool (an entry whose address
	// no binding of the pool knows, see provider.AddressBook) must be seen
	// continuously before it is drained and freed; zero never frees.
	// Only the leader frees (never a DrainOnly reconciler).
	OrphanGrace time.Duration
	// DrainHookHost returns the host the webhook writes into injected drain
	// hooks now (the drain Service's ClusterIP); nil skips the check of
	// pods' hooks against it.
	DrainHookHost func(context.Context) (string, error)

	mu    sync.Mutex
	memos map[types.NamespacedName]map[provider.TargetID]*memo
	// deleted maps a deleted binding to its deletion time, read from the
	// API and anchored when first seen (finalize).
	deleted map[types.NamespacedName]anchored
	// orphans maps a binding to when each orphan of its pool was first
	// seen (see planOrphans).
	orphans map[types.NamespacedName]map[provider.TargetID]time.Time
	// reads shares pool status reads among a pool's bindings.
	reads poolReads
	// wakes carries the bindings an LB's event concerns to the work
	// queue (verdicts.go); nil: events wake nothing.
	wakes chan event.GenericEvent
	// epochs is what was seen of each instance's process (reloads).
	epochs epochs
	// book is what each binding knows of its targets' addresses: every
	// provider call carries the pool's union (provider.Pool.Known).
	book addressBook
	// checkWarned maps a binding to the generation whose healthCheck was
	// said not to apply (HealthCheckIgnored).
	checkWarned map[types.NamespacedName]int64
	// ungated is each binding's last injection findings (pod -> reason
	// and message), so that an Event is emitted only on a change.
	ungated map[types.NamespacedName]map[string]string
	// foreign maps a binding to the pods whose endpoint had an address
	// not their own, and that address: warned about once.
	foreign map[types.NamespacedName]map[string]string
	// cycles serialises each binding's provider decisions: a cycle's
	// and a direct drain's (lockCycle, drainnow.go).
	cycles map[types.NamespacedName]*sync.Mutex
	// statusWritten is when each binding's status was last written
	// (finishStatus, countsHeld).
	statusWritten map[types.NamespacedName]time.Time
	// drainSlots bounds the direct drains in flight (drainInBackground);
	// nil: none, every drain waits for its binding's cycle.
	drainSlots chan struct{}
}

func (r *TargetBindingReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *TargetBindingReconciler) memoFor(key types.NamespacedName) map[provider.TargetID]*memo {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.memos == nil {
		r.memos = map[types.NamespacedName]map[provider.TargetID]*memo{}
	}
	m := r.memos[key]
	if m == nil {
		m = map[provider.TargetID]*memo{}
		r.memos[key] = m
	}
	return m
}

func (r *TargetBindingReconciler) orphanMemoFor(key types.NamespacedName) map[provider.TargetID]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.orphans == nil {
		r.orphans = map[types.NamespacedName]map[provider.TargetID]time.Time{}
	}
	m := r.orphans[key]
	if m == nil {
		m = map[provider.TargetID]time.Time{}
		r.orphans[key] = m
	}
	return m
}

func (r *TargetBindingReconciler) forgetMemo(key types.NamespacedName) {
	r.mu.Lock()
	delete(r.memos, key)
	delete(r.deleted, key)
	delete(r.orphans, key)
	delete(r.foreign, key)
	delete(r.checkWarned, key)
	delete(r.statusWritten, key)
	r.mu.Unlock()
	r.forgetAddresses(key)
	r.reads.forget(key)
}

// Reconcile implements reconcile.Reconciler.
func (r *TargetBindingReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	log := r.Log.With("binding", req.String())
	var b zv1.TargetBinding
	if err := r.Client.Get(ctx, req.NamespacedName, &b); err != nil {
		if apierrors.IsNotFound(err) {
			r.forgetBinding(req.NamespacedName) // memos, addresses, verdicts, metrics
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	if !b.DeletionTimestamp.IsZero() {
		// Only the leader deregisters, releases gates and removes the
		// finalizer; a DrainOnly reconciler drains and reports verdicts.
		return r.finalize(ctx, log, &b)
	}
	if !r.DrainOnly && controllerutil.AddFinalizer(&b, Finalizer) {
		if err := r.Client.Update(ctx, &b); err != nil {
			return reconcile.Result{}, fmt.Errorf("add finalizer to %s: %w", req, err)
		}
	}

	var lb zv1.LoadBalancer
	if err := r.Client.Get(ctx, types.NamespacedName{Name: b.Spec.LoadBalancerRef.Name}, &lb); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		// The cache may not have seen a LoadBalancer applied together with
		// the binding: released gates stay True (a gate is one-way), so
		// only the API server's own word that it does not exist counts.
		if r.APIReader != nil {
			if err := r.APIReader.Get(ctx, types.NamespacedName{Name: b.Spec.LoadBalancerRef.Name}, &lb); err == nil {
				log.Info("LoadBalancer not in the cache yet: waiting for it", "loadbalancer", b.Spec.LoadBalancerRef.Name)
				return reconcile.Result{RequeueAfter: r.pending()}, nil
			} else if !apierrors.IsNotFound(err) {
				return reconcile.Result{}, err
			}
		}
		// Nothing can judge the targets: release every gate so that no
		// rollout stays stuck, and say so. But a missing load balancer is
		// never a drained one: deleting pods wait for drain.timeout.
		msg := fmt.Sprintf("LoadBalancer %q not found: gates released without a health verdict", b.Spec.LoadBalancerRef.Name)
		if err := r.releaseGates(ctx, &b, false, fmt.Sprintf("LoadBalancer %q not found", b.Spec.LoadBalancerRef.Name)); err != nil {
			return reconcile.Result{}, err
		}
		targets, _, err := r.observe(ctx, &b)
		if err != nil {
			return reconcile.Result{}, err
		}
		requeue := r.steady()
		if r.holdDrains(&b, targets, nil, fmt.Sprintf("LoadBalancer %q not found", b.Spec.LoadBalancerRef.Name)) {
			requeue = r.pending()
		}
		return r.finishStatus(ctx, &b, zv1.TargetCounts{}, metav1.ConditionFalse, ReasonLoadBalancerMissing, msg, requeue)
	}
	// The grant is checked every cycle (admission can be bypassed, and
	// grants change): an ungranted binding registers nothing, but targets
	// already in the pool are still drained and removed safely.
	grant, err := binding.CheckGrant(ctx, r.Client, &lb, &b)
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("pool grant of %s: %w", req, err)
	}
	if !grant.Allowed {
		r.refuse(log, &b, grant.Message)
	}
	p, err := r.Providers.For(&lb)
	if err != nil {
		return r.finishStatus(ctx, &b, b.Status.Targets, metav1.ConditionFalse, "ProviderError", err.Error(), r.steady())
	}

	// From what it observes to its last provider call, the cycle's
	// decisions are the binding's only ones: a direct drain of a pod that
	// turned terminating meanwhile waits (drainNow).
	unlock := sync.OnceFunc(r.lockCycle(req.NamespacedName))
	defer unlock()
	targets, resolveMsg, err := r.observe(ctx, &b)
	if err != nil {
		return reconcile.Result{}, err
	}
	r.checkInjection(ctx, &b, targets)

	memo := r.memoFor(req.NamespacedName)
	mine, poolRef := r.knowAddresses(lb.Name, &b, targets, memo) // slots carry no pod name: map them back by address
	lbCtx, cancel := r.lbContext(ctx)
	defer cancel()
	pool, statusErr := r.sharedStatus(lbCtx, req.NamespacedName, mine, p, lb.Name, poolRef)
	restarted := r.epochs.observe(lb.Name, pool, r.now())
	if r.Instances != nil {
		r.Instances.Observe(lb.Name, pool, restarted, r.now())
	}
	if len(restarted) > 0 && p.Capabilities().VolatileRuntimeState {
		// Every binding of the load balancer lost its registrations on
		// that instance: wake them all now (first in the queue) rather
		// than each at its next poll, and let none take a pool read from
		// before the restart.
		r.reads.invalidateLB(lb.Name, r.now())
		r.wake(lb.Name, "")
	}
	for _, name := range restarted {
		if !p.Capabilities().VolatileRuntimeState {
			log.Info("load balancer instance reloaded or restarted", "loadbalancer", lb.Name, "instance", name)
			continue
		}
		log.Info("load balancer instance restarted: re-registering its targets", "loadbalancer", lb.Name, "instance", name)
		r.event(&b, nil, corev1.EventTypeWarning, "InstanceRestarted", "Resync",
			"LoadBalancer %s instance %s lost its runtime state (reload or restart): targets re-registered", lb.Name, name)
		if r.Metrics != nil && !r.DrainOnly {
			r.Metrics.InstanceRestarts.WithLabelValues(lb.Name, name).Inc()
		}
	}
	if statusErr != nil && pool.NoneRead() {
		// Not one instance was read: nothing is planned from an empty read
		// (no registration, gate, orphan or count decision) and no call is
		// sent: a blind drain could not reach an instance that just failed
		// (refused, or skipped by the provider's breaker). Gates keep their
		// last word. A deleting pod is held as when the LoadBalancer is
		// missing: Draining, and DrainTimeout at drain.timeout since its
		// deletion request, never drained before. Retry on the pending
		// cycle.
		log.Warn("read pool status", "loadbalancer", lb.Name, "pool", b.Spec.Pool, "err", statusErr)
		r.holdDrains(&b, targets, nil, fmt.Sprintf("LoadBalancer %q: no instance could be read", lb.Name))
		return r.finishStatus(ctx, &b, b.Status.Targets, metav1.ConditionFalse, "LoadBalancerUnreachable", statusErr.Error(), r.pending())
	}

	plans := plan(planInput{
		Binding:   &b,
		Check:     r.targetCheck(log, &lb, &b, p.Capabilities()),
		Now:       r.now(),
		APIOffset: r.APIClock.readOffset(),
		Targets:   targets,
		Pool:      pool,
		Promotion: p.Capabilities().Promotion,
		// Taken now, not at the read: the grace only shrinks meanwhile.
		OldWorkers: r.epochs.oldWorkers(lb.Name, pool, reloadGrace(&lb, p), r.now()),
		Memo:       memo,
	})
	if !grant.Allowed {
		refuseRegistrations(plans, targets, b.Name, grant.Message)
	}
	noteWait := holdGateNotes(b.Name, plans, targets, memo, r.now())
	r.holdForRetired(lbCtx, &b, lb.Name, targets, plans)

	counts := zv1.TargetCounts{}
	pending := false
	// verdictsOnly: every pending target waits for the LB's verdict on its
	// registration, which a pushing LB reports by itself.
	verdictsOnly := true
	var stuck, waiting int
	var errs []error
	callErrs, gates := r.applyAll(ctx, lbCtx, log, &b, p, lb.Name, poolRef, plans, targets)
	errs = append(errs, callErrs...)
	unlock()
	for i := range plans {
		tp := &plans[i]
		pending = pending || tp.Pending
		if tp.Pending && (tp.State != stRegistering || tp.Action != actNone) {
			verdictsOnly = false
		}
		switch tp.State {
		case stRegistering:
			counts.Registering++
			if tp.Gate == nil || tp.Gate.Status != corev1.ConditionTrue {
				waiting++ // a kept Ready gate is not pending
			}
		case stHealthy:
			counts.Healthy++
		case stDraining:
			counts.Draining++
		}
		if tp.State != stDone {
			counts.Total++
		}
		if tp.Stuck {
			stuck++
		}
	}
	if r.Metrics != nil && !r.DrainOnly {
		r.Metrics.GatesPending.WithLabelValues(b.Namespace, b.Name).Set(float64(waiting))
		r.Metrics.GatesStuck.WithLabelValues(b.Namespace, b.Name).Set(float64(stuck))
		r.Metrics.setTargetVerdicts(b.Namespace, b.Name, lb.Name, pool, plans)
	}
	r.forgetGone(&b, plans)
	if r.retire(lbCtx, log, &b, lb.Name, targets) {
		pending = true
	}
	if grant.Allowed {
		// An ungranted binding never judges the pool's orphans.
		if err := r.handleOrphans(lbCtx, log, &b, p, lb.Name, poolRef, pool); err != nil {
			errs = append(errs, err)
		}
	}

	requeue := r.restCycle(lb.Name)
	switch {
	case statusErr != nil || len(errs) > 0:
		requeue = r.pending()
	case pending && verdictsOnly && !r.DrainOnly && r.Providers.Pushing(lb.Name):
		requeue = r.pushedPending()
	case pending:
		requeue = r.pending()
	}
	if noteWait > 0 {
		requeue = min(requeue, noteWait)
	}
	status, reason, msg := metav1.ConditionTrue, "Resolved", resolveMsg
	if statusErr != nil {
		status, reason, msg = metav1.ConditionFalse, "InstanceUnreachable", statusErr.Error()
	} else if len(errs) > 0 {
		status, reason, msg = metav1.ConditionFalse, "ProviderError", errors.Join(errs...).Error()
		if errors.Is(errors.Join(errs...), provider.ErrPoolFull) {
			reason = ReasonPoolFull
		}
	}
	if !grant.Allowed {
		status, reason, msg = metav1.ConditionFalse, binding.ReasonPoolNotGranted, grant.Message
	}
	if len(errs) > 0 {
		log.Warn("provider calls failed; retrying on the pending cycle", "err", errors.Join(errs...))
	}
	// Provider errors are retried on the pending cycle, not by error
	// backoff: a gate must not wait minutes because one call failed. The
	// status is written while the cycle's last gate writes are under way:
	// one API round trip of the cycle instead of two.
	res, err := r.finishStatus(ctx, &b, counts, status, reason, msg, requeue)
	if gateErrs := gates(); len(gateErrs) > 0 {
		log.Warn("gate writes failed; retrying on the pending cycle", "err", errors.Join(gateErrs...))
		res.RequeueAfter = min(res.RequeueAfter, r.pending())
	}
	return res, err
}

// targetCheck is the health check sent with each target: the binding's
// over the LoadBalancer's pool defaults, for a provider whose checks are
// set per target; none for one whose checks live in the pool or that has
// none, where a binding's healthCheck cannot apply (said once per binding
// generation, as a Warning Event).
func (r *TargetBindingReconciler) targetCheck(log *slog.Logger, lb *zv1.LoadBalancer, b *zv1.TargetBinding, caps provider.Capabilities) provider.HealthCheck {
	if caps.HealthCheckScope == provider.HealthCheckPerTarget {
		interval, rise, fall := zv1.EffectiveHealthCheck(&lb.Spec, &b.Spec)
		return provider.HealthCheck{Interval: interval, Rise: int(rise), Fall: int(fall)}
	}
	if b.Spec.HealthCheck != nil {
		key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
		r.mu.Lock()
		if r.checkWarned == nil {
			r.checkWarned = map[types.NamespacedName]int64{}
		}
		warned := r.checkWarned[key] == b.Generation
		r.checkWarned[key] = b.Generation
		r.mu.Unlock()
		if !warned {
			log.Warn("the binding's healthCheck does not apply to this load balancer", "loadbalancer", lb.Name, "healthCheckScope", caps.HealthCheckScope)
			r.event(b, nil, corev1.EventTypeWarning, "HealthCheckIgnored", "Plan",
				"LoadBalancer %s configures health checks %s (healthCheckScope %s): spec.healthCheck of this binding does not apply; configure the checks on the load balancer",
				lb.Name, map[provider.HealthCheckScope]string{provider.HealthCheckPerPool: "per pool", provider.HealthCheckNone: "nowhere (it has none)"}[caps.HealthCheckScope], caps.HealthCheckScope)
		}
	}
	return provider.HealthCheck{}
}

// lbContext returns the context of the cycle's load-balancer calls: ctx
// with the CycleTimeout deadline.
func (r *TargetBindingReconciler) lbContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if r.CycleTimeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, r.CycleTimeout)
}

func (r *TargetBindingReconciler) pending() time.Duration {
	if r.PendingInterval > 0 {
		return r.PendingInterval
	}
	return 250 * time.Millisecond
}

func (r *TargetBindingReconciler) steady() time.Duration {
	if r.SteadyInterval > 0 {
		return r.SteadyInterval
	}
	return 5 * time.Second
}

// slowSteadyFactor stretches the cycle of a binding with nothing pending
// where what the cycle would wait for wakes the binding at once
// (restCycle).
const slowSteadyFactor = 6

// restCycle is the cycle of a binding of LoadBalancer lb with nothing
// pending: the steady cycle (5 s by default), or slowSteadyFactor × it (30
// s) when the binding would be woken at once by what it waits for:
//   - on a DrainOnly reconciler (a serve replica), whose cycle carries
//     nothing out (it acts only on pods being deleted) and only keeps this
//     replica's address book fresh: a pod turning terminating (the pod
//     watch, first in the queue) and a drain request (a nudge) wake it;
//   - on the leader while lb's provider pushes verdicts (Providers.Pushing:
//     every instance's event stream is up): a verdict wakes the pool's
//     bindings, and a lost stream, a reload (the old worker's stream ends
//     and the new one's starts: events may have been missed) or a restart
//     wakes every binding of the LB, which reads every pool afresh and
//     polls at the steady cycle until the streams are back.
//
// At 1,000 bindings the 5 s cycle asked 200 cycles a second of 4 workers,
// so a binding woken by a verdict waited behind resyncs that found nothing
// (issue 12: 12 s mean queue wait at 5,000 pods); on a serve replica it
// cost 200 pool reads a second for nothing.
func (r *TargetBindingReconciler) restCycle(lb string) time.Duration {
	if r.DrainOnly || r.Providers.Pushing(lb) {
		return slowSteadyFactor * r.steady()
	}
	return r.steady()
}

// observe lists the binding's targets: every endpoint of the Service port
// that belongs to a pod, and every pod that carries the binding's gate but
// has no endpoint yet.
//
// It reads only the binding's own pods from the cache: those carrying its
// gate (the gateIndex) and those its endpoints name (one Get each), never
// the whole namespace, so a cycle costs the same whatever the number of
// other pods (a List copies every pod it returns: 1,000 pods of 100
// bindings made each cycle copy 1,000 pods).
func (r *TargetBindingReconciler) observe(ctx context.Context, b *zv1.TargetBinding) ([]observedTarget, string, error) {
	byName, err := r.gatedPods(ctx, b)
	if err != nil {
		return nil, "", err
	}
	var getErr error
	podNamed := func(name string) *corev1.Pod {
		if p, ok := byName[name]; ok {
			return p
		}
		var p corev1.Pod
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: name}, &p); err != nil {
			if !apierrors.IsNotFound(err) && getErr == nil {
				getErr = fmt.Errorf("get pod %s/%s: %w", b.Namespace, name, err)
			}
			return nil
		}
		byName[name] = &p
		return &p
	}
	seen := map[string]bool{}
	var out []observedTarget

	var svc corev1.Service
	msg := ""
	err = r.Client.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: b.Spec.ServiceRef.Name}, &svc)
	switch {
	case apierrors.IsNotFound(err):
		msg = fmt.Sprintf("Service %q not found", b.Spec.ServiceRef.Name)
	case err != nil:
		return nil, "", fmt.Errorf("get Service %s/%s: %w", b.Namespace, b.Spec.ServiceRef.Name, err)
	default:
		portName, ok := servicePortName(&svc, b.Spec.ServiceRef.Port)
		if !ok {
			msg = fmt.Sprintf("Service %q has no port %s", svc.Name, b.Spec.ServiceRef.Port.String())
			break
		}
		// Only the EndpointSlice controller's slices: it derives them from
		// the Service's selector and the pods' own status. A slice written
		// by hand or mirrored from an Endpoints object says whatever its
		// writer wants, and the LB would send traffic there.
		var slices discoveryv1.EndpointSliceList
		if err := r.Client.List(ctx, &slices, client.InNamespace(b.Namespace), client.MatchingLabels{
			discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: EndpointSliceControllerName}); err != nil {
			return nil, "", fmt.Errorf("list EndpointSlices of %s/%s: %w", b.Namespace, svc.Name, err)
		}
		for _, s := range slices.Items {
			if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
				continue
			}
			port := 0
			for _, sp := range s.Ports {
				if sp.Port != nil && (sp.Name == nil && portName == "" || sp.Name != nil && *sp.Name == portName) {
					port = int(*sp.Port)
				}
			}
			for _, ep := range s.Endpoints {
				if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" || len(ep.Addresses) == 0 || seen[ep.TargetRef.Name] {
					continue
				}
				pod := podNamed(ep.TargetRef.Name)
				if pod == nil || pod.UID != ep.TargetRef.UID && ep.TargetRef.UID != "" {
					continue // the pod is gone (or replaced under the same name)
				}
				switch podHasIP(pod, ep.Addresses[0]) {
				case ipUnknown:
					continue // the pod cache lags the slice: next cycle
				case ipForeign:
					r.warnForeignAddress(b, pod, ep.Addresses[0])
					continue // as if it had no endpoint
				}
				r.forgetForeignAddress(b, pod.Name)
				seen[pod.Name] = true
				out = append(out, observedTarget{
					Key:         types.NamespacedName{Namespace: b.Namespace, Name: pod.Name},
					Pod:         pod,
					IP:          ep.Addresses[0],
					Port:        port,
					HasEndpoint: port != 0,
					Terminating: ep.Conditions.Terminating != nil && *ep.Conditions.Terminating,
				})
			}
		}
		msg = fmt.Sprintf("Service %s port %s -> pool %s", svc.Name, b.Spec.ServiceRef.Port.String(), b.Spec.Pool)
	}
	if getErr != nil {
		return nil, "", getErr
	}
	// A pod the Service's selector no longer matches was taken out of the
	// Service on purpose; any other pod without an endpoint may just be
	// between EndpointSlice updates (or the Service is gone), and is not
	// taken out of rotation for it.
	var selector labels.Selector
	if err == nil && len(svc.Spec.Selector) > 0 {
		selector = labels.SelectorFromSet(svc.Spec.Selector)
	}
	r.pruneForeignAddresses(ctx, b, byName)
	for name, pod := range byName {
		if !seen[name] && binding.HasGate(pod, b.Name) {
			out = append(out, observedTarget{Key: types.NamespacedName{Namespace: b.Namespace, Name: name}, Pod: pod,
				Deselected: selector != nil && !selector.Matches(labels.Set(pod.Labels))})
		}
	}
	return out, msg, nil
}

// ipMatch is how an endpoint's address relates to its pod's IPs.
type ipMatch int

const (
	ipOwn     ipMatch = iota // one of the pod's IPs
	ipUnknown                // the pod has no IP yet (as far as the cache knows)
	ipForeign                // not the pod's
)

// podHasIP reports whether addr is one of the pod's status.podIPs (or its
// podIP, which older writers set alone).
func podHasIP(pod *corev1.Pod, addr string) ipMatch {
	ip := net.ParseIP(addr)
	known := false
	for _, pip := range append([]corev1.PodIP{{IP: pod.Status.PodIP}}, pod.Status.PodIPs...) {
		if pip.IP == "" {
			continue
		}
		known = true
		if ip != nil && ip.Equal(net.ParseIP(pip.IP)) {
			return ipOwn
		}
	}
	if !known {
		return ipUnknown
	}
	return ipForeign
}

// warnForeignAddress logs and reports, with a Warning Event on the binding,
// an endpoint whose address is not its pod's: once per pod and address, not
// every cycle.
func (r *TargetBindingReconciler) warnForeignAddress(b *zv1.TargetBinding, pod *corev1.Pod, addr string) {
	key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
	r.mu.Lock()
	if r.foreign == nil {
		r.foreign = map[types.NamespacedName]map[string]string{}
	}
	if r.foreign[key] == nil {
		r.foreign[key] = map[string]string{}
	}
	warned := r.foreign[key][pod.Name] == addr
	r.foreign[key][pod.Name] = addr
	r.mu.Unlock()
	if warned {
		return
	}
	r.Log.Warn("EndpointSlice address is not the pod's: endpoint ignored", "binding", key.String(),
		"service", b.Spec.ServiceRef.Name, "pod", pod.Name, "address", addr, "podIPs", pod.Status.PodIPs)
	r.event(b, pod, corev1.EventTypeWarning, ReasonEndpointAddressMismatch, "Observe",
		"EndpointSlice of Service %s gives pod %s the address %s, which is not one of the pod's IPs: endpoint ignored",
		b.Spec.ServiceRef.Name, pod.Name, addr)
}

// forgetForeignAddress forgets a warning once the pod's endpoint is its own.
func (r *TargetBindingReconciler) forgetForeignAddress(b *zv1.TargetBinding, pod string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.foreign[types.NamespacedName{Namespace: b.Namespace, Name: b.Name}], pod)
}

// pruneForeignAddresses forgets the warnings about pods that are gone:
// those neither in pods (the cycle's) nor in the cache.
func (r *TargetBindingReconciler) pruneForeignAddresses(ctx context.Context, b *zv1.TargetBinding, pods map[string]*corev1.Pod) {
	key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
	var unknown []string
	r.mu.Lock()
	for name := range r.foreign[key] {
		if pods[name] == nil {
			unknown = append(unknown, name)
		}
	}
	r.mu.Unlock()
	for _, name := range unknown {
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: name}, &corev1.Pod{}); apierrors.IsNotFound(err) {
			r.mu.Lock()
			delete(r.foreign[key], name)
			r.mu.Unlock()
		}
	}
}

// gateIndex is the Pod field index of the bindings whose readiness gate
// a pod carries (target-health.zerodrop.dev/<binding>).
const gateIndex = "zerodrop.dev/gate-bindings"

func gateIndexValues(o client.Object) []string {
	pod, ok := o.(*corev1.Pod)
	if !ok {
		return nil
	}
	var out []string
	for _, g := range pod.Spec.ReadinessGates {
		if name, ok := strings.CutPrefix(string(g.ConditionType), zv1.GateConditionPrefix); ok {
			out = append(out, name)
		}
	}
	return out
}

// gatedPods returns the pods of b's namespace that carry b's gate, by
// name, from the gateIndex (a client without it: the namespace's pods,
// filtered).
func (r *TargetBindingReconciler) gatedPods(ctx context.Context, b *zv1.TargetBinding) (map[string]*corev1.Pod, error) {
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(b.Namespace), client.MatchingFields{gateIndex: b.Name}); err != nil {
		if err := r.Client.List(ctx, &pods, client.InNamespace(b.Namespace)); err != nil {
			return nil, fmt.Errorf("list pods in %s: %w", b.Namespace, err)
		}
	}
	byName := make(map[string]*corev1.Pod, len(pods.Items))
	for i := range pods.Items {
		if binding.HasGate(&pods.Items[i], b.Name) {
			byName[pods.Items[i].Name] = &pods.Items[i]
		}
	}
	return byName, nil
}

// servicePortName maps the binding's port reference (the Service's port by
// name or number) to the port's name, which EndpointSlices carry.
func servicePortName(svc *corev1.Service, ref intstr.IntOrString) (string, bool) {
	for _, sp := range svc.Spec.Ports {
		if ref.Type == intstr.String && sp.Name == ref.StrVal || ref.Type == intstr.Int && sp.Port == ref.IntVal {
			return sp.Name, true
		}
	}
	return "", false
}

// sharedStatus is status, shared with the pool's other bindings
// (poolReads).
func (r *TargetBindingReconciler) sharedStatus(ctx context.Context, key types.NamespacedName, mine []provider.Target, p provider.Provider, lb string, pool provider.Pool) (provider.PoolStatus, error) {
	st, err, shared := r.reads.read(ctx, key, mine, lb, p, pool, r.shareWindow(p), r.now(), func(ctx context.Context, p provider.Provider, pool provider.Pool) (provider.PoolStatus, error) {
		return r.status(ctx, p, lb, pool)
	})
	if shared && r.Metrics != nil {
		r.Metrics.PoolReads.WithLabelValues(lb, pool.Name, "shared").Inc()
	}
	return st, err
}

// status reads the pool once (one call per instance) and records metrics.
func (r *TargetBindingReconciler) status(ctx context.Context, p provider.Provider, lb string, pool provider.Pool) (provider.PoolStatus, error) {
	start := time.Now()
	s, err := p.Status(ctx, pool)
	r.observeCall(lb, "status", start, err)
	if r.Metrics != nil {
		r.Metrics.PoolReads.WithLabelValues(lb, pool.Name, "read").Inc()
	}
	return s, err
}

func (r *TargetBindingReconciler) observeCall(lb, op string, start time.Time, err error) {
	if r.Metrics == nil {
		return
	}
	r.Metrics.ProviderLatency.WithLabelValues(lb, op).Observe(time.Since(start).Seconds())
	if err != nil {
		r.Metrics.ProviderErrors.WithLabelValues(lb, op).Inc()
	}
}

// apply carries out one target's plan with the applier of the process's
// role. The plan is the same in every role; the appliers differ only in
// which of its effects they carry out:
//
//   - applyLeader (roles all and reconcile): every provider call, the pod's
//     gate condition, the drain verdict, events and metrics;
//   - applyDrainOnly (role serve): the drain call of a pod being deleted
//     and the drain verdict its own drain endpoint answers from.
func (r *TargetBindingReconciler) apply(ctx, lbCtx context.Context, log *slog.Logger, b *zv1.TargetBinding, p provider.Provider, lb string, pref provider.Pool, tp *targetPlan, targets []observedTarget) error {
	var pod *corev1.Pod
	for i := range targets {
		if targets[i].Key == tp.Key {
			pod = targets[i].Pod
		}
	}
	if r.DrainOnly {
		return r.applyDrainOnly(lbCtx, log, b, p, lb, pref, tp, pod)
	}
	callErr := r.applyLeader(ctx, lbCtx, log, b, p, lb, pref, tp, pod)
	return errors.Join(callErr, r.writeGate(ctx, b, tp, pod))
}

// gateWriteWidth bounds the gate conditions one cycle writes at once.
const gateWriteWidth = 8

// callWidth bounds the targets whose load-balancer calls one cycle makes
// at once. The provider bounds its own connections to each instance
// (HAProxy: haproxy.MaxConns), so this bounds goroutines and the cycle's
// share of them, not the load on the load balancer.
const callWidth = 8

// applyAll applies every plan of a cycle (apply). It returns once every
// load-balancer call is made, with their errors, and gates, which waits
// for the cycle's gate writes and returns theirs.
//
// The targets' calls go side by side, up to callWidth at once: in a
// fill, one binding's cycle registered its new pods one after the other
// (issue 12: 1,000 pods over one binding, 130 Registers of 28 ms in a
// cycle of 13 s). A pod's plans (a previous incarnation's target beside
// the new one) stay together, in plan order, in one goroutine: the calls,
// then the gate writes. The leader's gate writes (one pod status patch
// each) go up to gateWriteWidth at once: written one by one, a binding
// whose 10 pods turned healthy held its worker, and every binding queued
// behind it, for 10 API round trips (issue 12). The gates of pods none of
// whose plans calls the load balancer (a target the LB's verdict already
// opened or closed) are written from the start, beside those calls: a
// gate the LB opened does not wait for the registrations of the binding's
// other new pods. The others follow their own pod's calls, whose outcome
// their gate may tell (PoolFull). Gate writes may outlast applyAll: the
// cycle writes the binding's status meanwhile (Reconcile).
func (r *TargetBindingReconciler) applyAll(ctx, lbCtx context.Context, log *slog.Logger, b *zv1.TargetBinding, p provider.Provider, lb string, pref provider.Pool, plans []targetPlan, targets []observedTarget) (callErrs []error, gates func() []error) {
	pods := make(map[types.NamespacedName]*corev1.Pod, len(targets))
	for i := range targets {
		pods[targets[i].Key] = targets[i].Pod
	}
	var (
		mu                sync.Mutex
		gateErrs          []error
		calls, writes     sync.WaitGroup
		callSem, writeSem = make(chan struct{}, callWidth), make(chan struct{}, gateWriteWidth)
	)
	fail := func(errs *[]error, err error) {
		mu.Lock()
		*errs = append(*errs, err)
		mu.Unlock()
	}
	// The pods' plans, in plan order, and whether any of them calls.
	var order []types.NamespacedName
	byPod := map[types.NamespacedName][]*targetPlan{}
	withCalls := map[types.NamespacedName]bool{}
	for i := range plans {
		tp := &plans[i]
		if byPod[tp.Key] == nil {
			order = append(order, tp.Key)
		}
		byPod[tp.Key] = append(byPod[tp.Key], tp)
		if tp.Action != actNone {
			withCalls[tp.Key] = true
		}
	}
	writeGates := func(key types.NamespacedName) {
		pod := pods[key]
		if r.DrainOnly || pod == nil {
			return
		}
		writeSem <- struct{}{}
		writes.Go(func() {
			defer func() { <-writeSem }()
			for _, tp := range byPod[key] {
				if err := r.writeGate(ctx, b, tp, pod); err != nil {
					fail(&gateErrs, err)
				}
			}
		})
	}
	applyPod := func(key types.NamespacedName) {
		for _, tp := range byPod[key] {
			var err error
			if r.DrainOnly {
				err = r.applyDrainOnly(lbCtx, log, b, p, lb, pref, tp, pods[key])
			} else {
				err = r.applyLeader(ctx, lbCtx, log, b, p, lb, pref, tp, pods[key])
			}
			if err != nil {
				fail(&callErrs, err)
			}
		}
	}
	// Pods without calls first: their gates need nothing but a writer.
	var quiet []types.NamespacedName
	for _, key := range order {
		if !withCalls[key] {
			applyPod(key) // verdicts, events: no call, nothing to wait for
			quiet = append(quiet, key)
		}
	}
	writes.Go(func() {
		for _, key := range quiet {
			writeGates(key)
		}
	})
	for _, key := range order {
		if !withCalls[key] {
			continue
		}
		callSem <- struct{}{}
		calls.Go(func() {
			defer func() { <-callSem }()
			applyPod(key)
			writeGates(key)
		})
	}
	calls.Wait()
	return callErrs, func() []error {
		writes.Wait()
		return gateErrs
	}
}

// applyDrainOnly is a serve replica's applier: of a target's plan it
// carries out only SetDraining of a pod being deleted (idempotent: harmless
// when the leader did it already) and the drain verdict, for its own drain
// endpoint. Taking a live pod out of rotation is the leader's (which also
// puts it back); gates, events, metrics and statuses are the leader's too.
func (r *TargetBindingReconciler) applyDrainOnly(lbCtx context.Context, log *slog.Logger, b *zv1.TargetBinding, p provider.Provider, lb string, pref provider.Pool, tp *targetPlan, pod *corev1.Pod) error {
	var callErr error
	if tp.Action == actDrain && tp.Drain != nil {
		callErr = r.call(lbCtx, log, b, p, lb, pref, tp, actDrain)
	}
	r.recordVerdict(b, pod, tp)
	return callErr
}

// applyLeader is the leader's applier: every effect of a target's plan
// but its gate write (writeGate), the provider call under lbCtx (the
// cycle's load-balancer deadline).
func (r *TargetBindingReconciler) applyLeader(ctx, lbCtx context.Context, log *slog.Logger, b *zv1.TargetBinding, p provider.Provider, lb string, pref provider.Pool, tp *targetPlan, pod *corev1.Pod) error {
	act := tp.Action
	if act == actRegister && tp.Readmit {
		if ok, why := r.mayReadmit(ctx, pod); !ok {
			// Retried on the pending cycle; by then the cache shows the
			// deletion and the plan drains instead.
			log.Info("target left out of rotation", "pod", tp.Key.Name, "target", tp.Target.ID, "why", why)
			act = actNone
		}
	}
	var callErr error
	if act != actNone {
		callErr = r.call(lbCtx, log, b, p, lb, pref, tp, act)
		if callErr == nil {
			r.reportRotation(b, pod, tp, act)
		}
	}
	if r.recordVerdict(b, pod, tp) {
		kind := corev1.EventTypeNormal
		if tp.Drain.Reason == ReasonDrainTimeout {
			kind = corev1.EventTypeWarning
		}
		r.event(pod, b, kind, tp.Drain.Reason, "Drain", "%s (binding %s, pool %s)", tp.Drain.Message, b.Name, b.Spec.Pool)
	}
	if tp.Drain != nil && tp.DrainLatency > 0 && r.Metrics != nil {
		result := "drained"
		if tp.Drain.Reason == ReasonDrainTimeout {
			result = "timeout"
		}
		r.Metrics.DrainDuration.WithLabelValues(b.Namespace, b.Name, result).Observe(tp.DrainLatency.Seconds())
	}
	if act == actRegister && errors.Is(callErr, provider.ErrPoolFull) && tp.Gate != nil && tp.Gate.Status != corev1.ConditionTrue {
		// Tell the pod why it waits: the pool has no room for it.
		g := *tp.Gate
		g.Reason, g.Message = ReasonPoolFull, fmt.Sprintf("the load balancer has no room for the target in pool %s: %v", b.Spec.Pool, errors.Unwrap(callErr))
		tp.Gate = &g
		// holdGateNotes ran before the call, on the reason it replaced
		// (NotRegistered: a note it may have held); PoolFull is urgent.
		tp.NoteHeld = false
	}
	return callErr
}

// writeGate writes the plan's gate condition on the pod (a no-op when it
// holds it already), with its Event and latency metric.
func (r *TargetBindingReconciler) writeGate(ctx context.Context, b *zv1.TargetBinding, tp *targetPlan, pod *corev1.Pod) error {
	if tp.Gate != nil && pod != nil && !tp.NoteHeld {
		prev := podCondition(pod, corev1.PodConditionType(zv1.GateConditionType(b.Name)))
		transition := prev == nil || prev.Status != tp.Gate.Status || prev.Reason != tp.Gate.Reason
		changed, err := r.setGate(ctx, pod, b.Name, tp.Gate)
		if err != nil {
			return err
		}
		if changed && transition {
			kind := corev1.EventTypeNormal
			if tp.Gate.Status != corev1.ConditionTrue || tp.Gate.Reason == ReasonGateTimeoutOpen {
				kind = corev1.EventTypeWarning
			}
			if tp.Gate.Reason == ReasonWaitingContainers || tp.Gate.Reason == ReasonWaitingEndpoint {
				kind = corev1.EventTypeNormal
			}
			r.event(pod, b, kind, "Gate"+string(tp.Gate.Status), "SetGate", "%s: %s: %s",
				zv1.GateConditionType(b.Name), tp.Gate.Reason, tp.Gate.Message)
		}
		if changed && tp.GateLatency > 0 && r.Metrics != nil {
			r.Metrics.GateLatency.WithLabelValues(b.Namespace, b.Name).Observe(tp.GateLatency.Seconds())
		}
	}
	return nil
}

// call makes the provider call act for a target, logs and measures it. A
// Deregister refused for open sessions is not an error: retried next cycle.
func (r *TargetBindingReconciler) call(lbCtx context.Context, log *slog.Logger, b *zv1.TargetBinding, p provider.Provider, lb string, pref provider.Pool, tp *targetPlan, act action) error {
	start := time.Now()
	var err error
	switch act {
	case actRegister:
		err = p.Register(lbCtx, pref, tp.Target)
	case actDrain:
		err = p.SetDraining(lbCtx, pref, tp.Target)
	case actEnable:
		err = p.Enable(lbCtx, pref, tp.Target)
	case actDeregister:
		err = p.Deregister(lbCtx, pref, tp.Target)
		if errors.Is(err, provider.ErrTargetBusy) {
			// Out of rotation already; sessions left. Retry next cycle.
			log.Debug("deregister waits for sessions", "pod", tp.Key.Name)
			return nil
		}
	}
	r.observeCall(lb, act.String(), start, err)
	if err != nil {
		return fmt.Errorf("%s %s in pool %s: %w", act, tp.Target.ID, b.Spec.Pool, err)
	}
	log.Info("target "+act.String(), "pod", tp.Key.Name, "target", tp.Target.ID, "addr", tp.Target.Addr(), "pool", b.Spec.Pool, "drainOnly", r.DrainOnly)
	return nil
}

// recordVerdict puts the plan's drain verdict in the drain registry (the
// drain endpoint answers from it), or drops a verdict a live pod must not
// keep, and reports whether the verdict changed for a pod that exists.
func (r *TargetBindingReconciler) recordVerdict(b *zv1.TargetBinding, pod *corev1.Pod, tp *targetPlan) (changed bool) {
	if tp.Drain == nil {
		if pod != nil {
			if _, had := r.Drains.Lookup(tp.Key, b.Name); had {
				// The pod is alive: a verdict left from a drain of its
				// previous incarnation (same name) or of an endpoint that
				// flapped terminating must not answer its preStop hook later.
				r.Drains.Forget(tp.Key)
			}
		}
		return false
	}
	prev, had := r.Drains.Lookup(tp.Key, b.Name)
	r.Drains.Report(tp.Key, b.Name, drain.State{Drained: tp.Drain.Drained, Reason: tp.Drain.Reason, Message: tp.Drain.Message, Since: r.now()})
	changed = pod != nil && (!had || prev.Drained != tp.Drain.Drained || prev.Reason != tp.Drain.Reason)
	if changed && tp.Drain.Reason == ReasonDrainTimeout {
		// Every role says so (a serve replica, which answers the hooks,
		// emits no Event): the pod's drain gate opens without the load
		// balancer's drained verdict.
		r.Log.Warn(DrainTimedOutLog, "pod", tp.Key.String(), "binding", b.Name, "message", tp.Drain.Message)
	}
	return changed
}

// DrainTimedOutLog is the message a reconciler logs (Warn) when a pod's
// drain verdict turns DrainTimeout.
const DrainTimedOutLog = "drain timed out: the pod's drain gate is released without the load balancer's drained verdict"

// reportRotation emits the Event of a live pod taken out of rotation or put
// back by the call act that just succeeded. The plan flags only the cycle
// that changes the load balancer (LeavesRotation: some instance still had
// the target in rotation; Readmit: some instance held it out), so each
// transition is reported once.
func (r *TargetBindingReconciler) reportRotation(b *zv1.TargetBinding, pod *corev1.Pod, tp *targetPlan, act action) {
	if pod == nil {
		return
	}
	switch {
	case act == actDrain && tp.LeavesRotation != "":
		r.event(pod, b, corev1.EventTypeNormal, ReasonOutOfRotation, "Drain",
			"%s: out of rotation (drained, still registered) in pool %s of binding %s until it serves again", tp.LeavesRotation, b.Spec.Pool, b.Name)
	case act == actRegister && tp.Readmit:
		r.event(pod, b, corev1.EventTypeNormal, ReasonBackInRotation, "Register",
			"serving again (ContainersReady, selected by the Service): back in rotation in pool %s of binding %s", b.Spec.Pool, b.Name)
	}
}

// mayReadmit reports whether a target out of rotation may be put back in:
// only when a fresh read of its pod from the API server (the cache may lag
// behind the process that drained it) shows the same pod, not being
// deleted. If not, why says so.
func (r *TargetBindingReconciler) mayReadmit(ctx context.Context, pod *corev1.Pod) (bool, string) {
	if r.APIReader == nil {
		return false, "no uncached API reader to confirm the pod is not being deleted"
	}
	if pod == nil {
		return false, "the pod is not known"
	}
	var fresh corev1.Pod
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(pod), &fresh); err != nil {
		if apierrors.IsNotFound(err) {
			return false, "the pod is gone"
		}
		return false, fmt.Sprintf("get pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	switch {
	case fresh.UID != pod.UID:
		return false, "the pod was re-created"
	case !fresh.DeletionTimestamp.IsZero():
		return false, "the pod is being deleted"
	}
	return true, ""
}

// setGate patches the pod's gate condition unless it already says the same
// (status patches skip no-ops). A strategic merge patch touches only this
// condition: conditions merge by type, so the kubelet's own conditions are
// never overwritten.
func (r *TargetBindingReconciler) setGate(ctx context.Context, pod *corev1.Pod, bindingName string, g *gateCondition) (bool, error) {
	ct := corev1.PodConditionType(zv1.GateConditionType(bindingName))
	current := podCondition(pod, ct)
	if sameCondition(current, g) {
		return false, nil
	}
	// In the API server's time, as every other time of the pod.
	transition := metav1.NewTime(r.APIClock.apiTime(r.now()))
	if current != nil && current.Status == g.Status {
		transition = current.LastTransitionTime
	}
	patch := map[string]any{"status": map[string]any{"conditions": []any{map[string]any{
		"type":               ct,
		"status":             g.Status,
		"reason":             g.Reason,
		"message":            g.Message,
		"lastTransitionTime": transition,
		"lastProbeTime":      nil,
	}}}}
	raw, err := json.Marshal(patch)
	if err != nil {
		return false, err
	}
	if err := r.Client.Status().Patch(ctx, pod, client.RawPatch(types.StrategicMergePatchType, raw)); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("set %s on pod %s/%s: %w", ct, pod.Namespace, pod.Name, err)
	}
	return true, nil
}

// knowWindow is how recently every binding of a pool must have told the
// provider its addresses for orphans to be judged: a binding cycles at
// least every restCycle (slowSteadyFactor × SteadyInterval at most), so
// three of those, and never less than the grace. A part told longer ago
// is not wrong, only possibly larger than today's (a binding tells the
// book before it registers anything), so waiting for it errs on the side
// of leaving a target in place.
func (r *TargetBindingReconciler) knowWindow() time.Duration {
	return max(r.OrphanGrace, 3*slowSteadyFactor*r.steady())
}

// handleOrphans judges the orphans of the binding's pool (planOrphans):
// only the leader, and of the pool's bindings only the one orphanDuty
// elects, drains and frees them. Each freed orphan is logged, counted and
// reported with an OrphanFreed Event on the binding.
func (r *TargetBindingReconciler) handleOrphans(ctx context.Context, log *slog.Logger, b *zv1.TargetBinding, p provider.Provider, lb string, pref provider.Pool, pool provider.PoolStatus) error {
	key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
	decide, why := false, "drain-only replica"
	if !r.DrainOnly {
		var list zv1.TargetBindingList
		// Read only, so not copied out of the cache (every cycle of
		// every binding lists them all).
		if err := r.Client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
			why = fmt.Sprintf("list TargetBindings: %v", err)
		} else {
			decide, why = orphanDuty(key, r.poolMembers(list.Items, lb, b.Spec.Pool), r.now(), r.knowWindow())
		}
	}
	plans := planOrphans(orphanInput{Now: r.now(), Grace: r.OrphanGrace, Decide: decide, Pool: pool, Memo: r.orphanMemoFor(key),
		OldWorkers: r.epochs.oldWorkers(lb, pool, p.Capabilities().ReloadGrace, r.now())})
	n := countOrphans(pool)
	if r.Metrics != nil && decide {
		r.Metrics.Orphans.WithLabelValues(lb, b.Spec.Pool).Set(float64(n))
	}
	if !decide || r.OrphanGrace <= 0 {
		if n > 0 {
			log.Debug("orphans not freed by this binding", "pool", b.Spec.Pool, "orphans", n, "why", why, "orphanGrace", r.OrphanGrace)
		}
		return nil
	}
	var errs []error
	for _, op := range plans {
		t := provider.Target{ID: op.ID}
		start := time.Now()
		var err error
		switch op.Action {
		case actNone:
			continue
		case actDrain:
			err = p.SetDraining(ctx, pref, t)
		case actDeregister:
			err = p.Deregister(ctx, pref, t)
			if errors.Is(err, provider.ErrTargetBusy) {
				continue // a session opened meanwhile: drained again next cycle
			}
		}
		r.observeCall(lb, op.Action.String(), start, err)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s orphan %s (%s) in pool %s: %w", op.Action, op.ID, op.Addr, b.Spec.Pool, err))
			continue
		}
		if op.Action == actDrain {
			log.Info("orphan drained", "loadbalancer", lb, "pool", b.Spec.Pool, "orphan", op.ID, "addr", op.Addr, "age", op.Age, "sessions", op.Sessions)
			r.event(b, nil, corev1.EventTypeNormal, "OrphanDraining", "DrainOrphan",
				"LoadBalancer %s pool %s: %s (%s) is known to no binding of the pool for %s: draining it", lb, b.Spec.Pool, op.ID, op.Addr, op.Age.Round(time.Second))
			continue
		}
		log.Info("orphan freed", "loadbalancer", lb, "pool", b.Spec.Pool, "orphan", op.ID, "addr", op.Addr, "age", op.Age)
		r.event(b, nil, corev1.EventTypeNormal, "OrphanFreed", "FreeOrphan",
			"LoadBalancer %s pool %s: %s (%s), known to no binding of the pool for %s, drained and freed", lb, b.Spec.Pool, op.ID, op.Addr, op.Age.Round(time.Second))
		if r.Metrics != nil {
			r.Metrics.OrphansFreed.WithLabelValues(lb, b.Spec.Pool).Inc()
		}
	}
	return errors.Join(errs...)
}

func countOrphans(s provider.PoolStatus) int {
	n := 0
	for _, id := range s.Targets() {
		if provider.IsOrphan(id) {
			n++
		}
	}
	return n
}

// forgetGone drops memos and drain verdicts of targets that are done and
// whose pod is gone.
func (r *TargetBindingReconciler) forgetGone(b *zv1.TargetBinding, plans []targetPlan) {
	live := map[provider.TargetID]bool{}
	for _, tp := range plans {
		live[tp.Target.ID] = true
	}
	memos := r.memoFor(types.NamespacedName{Namespace: b.Namespace, Name: b.Name})
	r.mu.Lock()
	for id := range memos {
		if !live[id] {
			delete(memos, id)
		}
	}
	r.mu.Unlock()
	for _, pod := range r.Drains.Pods(b.Namespace, b.Name) {
		if !live[TargetID(b.Namespace, b.Name, pod.Name)] {
			r.Drains.ForgetVerdict(pod, b.Name)
		}
	}
}

// finishStatus writes the binding's status unless it is unchanged (or the
// reconciler is DrainOnly: the leader writes it), and returns the requeue.
func (r *TargetBindingReconciler) finishStatus(ctx context.Context, b *zv1.TargetBinding, counts zv1.TargetCounts, status metav1.ConditionStatus, reason, msg string, requeue time.Duration) (reconcile.Result, error) {
	if r.DrainOnly {
		return reconcile.Result{RequeueAfter: requeue}, nil
	}
	next := b.Status.DeepCopy()
	next.ObservedGeneration = b.Generation
	next.Targets = counts
	meta.SetStatusCondition(&next.Conditions, metav1.Condition{
		Type: ConditionReady, Status: status, Reason: reason, Message: msg, ObservedGeneration: b.Generation,
	})
	key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
	if !statusEqual(&b.Status, next) {
		if r.countsHeld(key, &b.Status, next) {
			// Only the counts changed, and they were written less than
			// statusCountsInterval ago: written by a later cycle. Not
			// sooner than the binding's own requeue: counts never make a
			// binding poll (a binding waiting for a pushed verdict would
			// read its pool for them).
			return reconcile.Result{RequeueAfter: requeue}, nil
		}
		// The whole status in one merge patch: a diff-based patch would send
		// only the changed counts, and the API server refuses a targets
		// object without its required fields.
		raw, err := json.Marshal(map[string]any{"status": next})
		if err != nil {
			return reconcile.Result{}, err
		}
		// Patched into a copy: the cycle's gate writes, still under way,
		// read b.
		if err := r.Client.Status().Patch(ctx, b.DeepCopy(), client.RawPatch(types.MergePatchType, raw)); err != nil && !apierrors.IsNotFound(err) {
			return reconcile.Result{}, fmt.Errorf("update status of %s/%s: %w", b.Namespace, b.Name, err)
		}
		r.mu.Lock()
		if r.statusWritten == nil {
			r.statusWritten = map[types.NamespacedName]time.Time{}
		}
		r.statusWritten[key] = r.now()
		r.mu.Unlock()
	}
	return reconcile.Result{RequeueAfter: requeue}, nil
}

// statusCountsInterval is how often at most a binding's status is written
// when only its target counts changed. Every cycle of a fill changes them
// (one more registering, one more healthy), and the status patch was one
// of the two API round trips of each cycle, every binding waiting for the
// worker (issue 12); a change of the Ready condition or of the generation
// observed is written at once.
const statusCountsInterval = 2 * time.Second

// countsHeld reports whether the write of next over cur waits for a later
// cycle: only the counts differ, and the binding's status was written less
// than statusCountsInterval ago (by this process; a new process writes at
// once).
func (r *TargetBindingReconciler) countsHeld(key types.NamespacedName, cur, next *zv1.TargetBindingStatus) bool {
	if cur.ObservedGeneration != next.ObservedGeneration || len(cur.Conditions) != len(next.Conditions) ||
		!conditionsCover(cur.Conditions, next.Conditions) {
		return false
	}
	r.mu.Lock()
	at, ok := r.statusWritten[key]
	r.mu.Unlock()
	return ok && r.now().Sub(at) < statusCountsInterval
}

func statusEqual(a, b *zv1.TargetBindingStatus) bool {
	if a.ObservedGeneration != b.ObservedGeneration || a.Targets != b.Targets || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	return conditionsCover(a.Conditions, b.Conditions)
}

func (r *TargetBindingReconciler) event(regarding, related client.Object, kind, reason, action, note string, args ...any) {
	if r.Recorder == nil || r.DrainOnly {
		return
	}
	if related == nil {
		r.Recorder.Eventf(regarding, nil, kind, reason, action, note, args...)
		return
	}
	r.Recorder.Eventf(regarding, related, kind, reason, action, note, args...)
}
