package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/binding"
	"zerodrop.dev/zerodrop/internal/drain"
	"zerodrop.dev/zerodrop/internal/webhook"
	"zerodrop.dev/zerodrop/provider"
)

// Reasons of the lifecycle rules: binding and LoadBalancer deletion, and
// pods the webhook did not inject.
const (
	// ReasonBindingDeletedUnverified is the gate reason of a pod whose
	// binding was deleted before the load balancer reported it healthy:
	// the gate is released (a rollout must not stay stuck) but nobody
	// vouched for the pod, so a Warning Event says so.
	ReasonBindingDeletedUnverified = "BindingDeletedUnverified"
	// ReasonDeletionBlocked is the LoadBalancer's Ready reason while its
	// deletion waits for the TargetBindings that use it.
	ReasonDeletionBlocked = "DeletionBlocked"
	// ReasonGateMissing: a pod the binding selects has no readiness gate.
	ReasonGateMissing = "GateMissing"
	// ReasonDrainHookMissing: a pod the binding selects has a container
	// without a preStop hook although the binding asks for the drain hook.
	ReasonDrainHookMissing = "DrainHookMissing"
	// ReasonDrainHookStale: a pod's drain hook names a host that is not
	// the drain Service's current ClusterIP.
	ReasonDrainHookStale = "DrainHookStale"
)

// FinalizeRetry bounds how long a deleted binding keeps retrying to remove
// its targets after drain.timeout (HAProxy refuses to delete a server with
// connections; an instance may be unreachable). Past it the finalizer is
// removed with a Warning Event naming what was left: out of rotation, but
// no longer managed.
const FinalizeRetry = 5 * time.Minute

// finalize takes a deleted binding's targets off the load balancer without
// dropping a request: it puts every target in drain, waits (by requeue)
// until each is drained or drain.timeout has passed since the deletion,
// deregisters them (retrying while the LB refuses), and only then releases
// the gates and removes the finalizer. Meanwhile deleting pods get real
// drain verdicts. A DrainOnly reconciler does the drain calls and the
// verdicts only. When the LoadBalancer is gone nothing can be drained: the
// verdicts of deleting pods wait for drain.timeout.
func (r *TargetBindingReconciler) finalize(ctx context.Context, log *slog.Logger, b *zv1.TargetBinding) (reconcile.Result, error) {
	key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
	if !r.DrainOnly && !controllerutil.ContainsFinalizer(b, Finalizer) {
		return reconcile.Result{}, nil
	}
	now := r.now()
	deleted := r.deletedAt(key, b.DeletionTimestamp.Time, now)
	timeout := b.Spec.DrainTimeout()
	if !b.Spec.DrainEnabled() {
		timeout = 0
	}
	expired := !now.Before(deleted.Add(timeout))
	targets, _, err := r.observe(ctx, b)
	if err != nil {
		return reconcile.Result{}, err
	}
	memo := r.memoFor(key)
	// The load balancer's calls share the cycle's deadline (CycleTimeout);
	// Kubernetes reads and writes keep ctx.
	lbCtx, cancel := r.lbContext(ctx)
	defer cancel()

	var (
		pool     *provider.PoolStatus
		left     []string // targets still on the LB, or instances not read
		errs     []error
		lbExists bool
	)
	var lb zv1.LoadBalancer
	switch err := r.Client.Get(ctx, types.NamespacedName{Name: b.Spec.LoadBalancerRef.Name}, &lb); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return reconcile.Result{}, err
	default:
		lbExists = true
		p, err := r.Providers.For(&lb)
		if err != nil {
			left = append(left, err.Error())
			break
		}
		// After a controller restart the provider knows no slot's target:
		// tell it this binding's, so that they are found and removed.
		_, pref := r.knowAddresses(lb.Name, b, targets, memo)
		st, statusErr := r.status(lbCtx, p, lb.Name, pref)
		pool = &st
		if statusErr != nil {
			left = append(left, statusErr.Error())
			if len(st.Instances) == 0 {
				break
			}
		}
		oldWorkers := r.epochs.oldWorkers(lb.Name, st, reloadGrace(&lb, p), r.now())
		for _, id := range st.Targets() {
			if _, ok := podOfTarget(id, b.Namespace, b.Name); !ok {
				continue
			}
			t := provider.Target{ID: id}
			for _, in := range st.Instances {
				if ts, ok := in.Targets[id]; ok && ts.Addr != "" {
					t.IP, t.Port = splitAddr(ts.Addr)
					break
				}
			}
			drained, _ := drainedNow(st, oldWorkers, id)
			if !drained && !expired {
				if needsDrainCall(st, id) {
					start := time.Now()
					err := p.SetDraining(lbCtx, pref, t)
					r.observeCall(lb.Name, actDrain.String(), start, err)
					if err != nil {
						errs = append(errs, fmt.Errorf("drain %s in pool %s: %w", id, b.Spec.Pool, err))
					}
				}
				left = append(left, string(id))
				continue
			}
			if r.DrainOnly {
				left = append(left, string(id))
				continue
			}
			start := time.Now()
			err := p.Deregister(lbCtx, pref, t)
			r.observeCall(lb.Name, actDeregister.String(), start, err)
			if err != nil {
				left = append(left, string(id))
				if !errors.Is(err, provider.ErrTargetBusy) {
					errs = append(errs, fmt.Errorf("deregister %s in pool %s: %w", id, b.Spec.Pool, err))
				}
				continue
			}
			log.Info("target deregistered: binding deleted", "target", id, "pool", b.Spec.Pool)
		}
	}

	if lbExists && r.retire(lbCtx, log, b, lb.Name, targets) {
		left = append(left, "instances removed from the LoadBalancer")
	}
	why := fmt.Sprintf("TargetBinding %s deleted", b.Name)
	if !lbExists {
		why = fmt.Sprintf("TargetBinding %s deleted and LoadBalancer %q not found", b.Name, b.Spec.LoadBalancerRef.Name)
	}
	holding := r.holdDrains(b, targets, pool, why)
	done := len(left) == 0 && !holding
	if !lbExists {
		done = !holding
	}
	gaveUp := !done && !now.Before(deleted.Add(timeout+FinalizeRetry))
	if len(errs) > 0 {
		log.Warn("binding deletion: provider calls failed; retrying", "err", errors.Join(errs...))
	}
	if r.DrainOnly {
		return reconcile.Result{RequeueAfter: r.pending()}, nil
	}
	if !done && !gaveUp {
		msg := fmt.Sprintf("%s: draining its targets before removing them (drain.timeout %s); waiting for: %s",
			why, timeout, strings.Join(left, ", "))
		if holding {
			msg = fmt.Sprintf("%s: draining its targets before removing them (drain.timeout %s); waiting for drain verdicts", why, timeout)
		}
		return r.finishStatus(ctx, b, b.Status.Targets, metav1.ConditionFalse, "Finalizing", msg, r.pending())
	}
	if gaveUp && len(left) > 0 {
		log.Warn("binding deletion: targets left on the load balancer", "left", left, "retried", timeout+FinalizeRetry)
		r.event(b, nil, corev1.EventTypeWarning, "TargetsLeft", "Finalize",
			"TargetBinding %s deleted: %s after drain.timeout + %s could not be removed from the load balancer and is no longer managed: %s",
			b.Name, pluralTargets(len(left)), FinalizeRetry, strings.Join(left, ", "))
	}
	// Final verdicts: every deleting pod is let go now.
	for _, t := range targets {
		if t.Pod == nil || !targetDeleting(t) {
			continue
		}
		if s, ok := r.Drains.Lookup(t.Key, b.Name); !ok || !s.Drained {
			r.Drains.Report(t.Key, b.Name, drain.State{Drained: true, Reason: ReasonDrainTimeout,
				Message: why + ": released", Since: now})
		}
	}
	if err := r.releaseGates(ctx, b, true, why); err != nil {
		return reconcile.Result{}, err
	}
	r.event(b, nil, corev1.EventTypeNormal, ReasonBindingDeleted, "Finalize", "%s: targets drained and removed, gates released", why)
	controllerutil.RemoveFinalizer(b, Finalizer)
	if err := r.Client.Update(ctx, b); err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, fmt.Errorf("remove finalizer from %s/%s: %w", b.Namespace, b.Name, err)
	}
	if r.Metrics != nil && lbExists {
		r.Metrics.Orphans.DeleteLabelValues(lb.Name, b.Spec.Pool)
	}
	// The drain verdicts stay until the binding is gone (Reconcile's
	// NotFound): a hook held on one of them is answered first.
	r.forgetMemo(key)
	return reconcile.Result{}, nil
}

// anchored is a time read from the API (at) and the local instant it was
// anchored to when first seen (local).
type anchored struct{ at, local time.Time }

// deletedAt returns the local instant of binding key's deletion, at as the
// API says: anchored the first time it is seen (see anchor).
func (r *TargetBindingReconciler) deletedAt(key types.NamespacedName, at, now time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.deleted[key]; ok && d.at.Equal(at) {
		return d.local
	}
	if r.deleted == nil {
		r.deleted = map[types.NamespacedName]anchored{}
	}
	d := anchored{at, anchor(at, now, r.APIClock.readOffset())}
	r.deleted[key] = d
	return d.local
}

func pluralTargets(n int) string {
	if n == 1 {
		return "1 target"
	}
	return fmt.Sprintf("%d targets", n)
}

func targetDeleting(t observedTarget) bool {
	return t.Pod == nil || !t.Pod.DeletionTimestamp.IsZero() || t.Terminating ||
		t.Pod.Status.Phase == corev1.PodSucceeded || t.Pod.Status.Phase == corev1.PodFailed
}

// holdDrains reports the drain verdict of each deleting pod of the binding
// when the normal cycle cannot (binding deleted, LoadBalancer missing). A
// pod is drained only when the pool was read on every instance and no
// instance sends it traffic (pool nil: nothing was read), or once
// drain.timeout has passed since its drain started: a load balancer that
// cannot be asked is never taken for a drained one. A pod an earlier cycle
// reported drained keeps that verdict. It reports whether some pod is still
// held.
func (r *TargetBindingReconciler) holdDrains(b *zv1.TargetBinding, targets []observedTarget, pool *provider.PoolStatus, why string) bool {
	now := r.now()
	memos := r.memoFor(types.NamespacedName{Namespace: b.Namespace, Name: b.Name})
	holding := false
	for _, t := range targets {
		if t.Pod == nil || !targetDeleting(t) {
			continue
		}
		id := TargetID(b.Namespace, b.Name, t.Key.Name)
		r.mu.Lock()
		m := memos[id]
		if m == nil {
			m = &memo{}
			memos[id] = m
		}
		m.incarnation(t.Pod)
		start := m.startDrain(t.Pod, now, r.APIClock.readOffset())
		drainedBefore := !m.drainedAt.IsZero()
		r.mu.Unlock()
		if prev, had := r.Drains.Lookup(t.Key, b.Name); drainedBefore && had && prev.Drained {
			// A cycle that read the load balancer let the pod go already:
			// what cannot be read now takes nothing back.
			continue
		}
		var v drain.State
		switch drained, sessions := drainedIn(pool, id); {
		case !b.Spec.DrainEnabled():
			v = drain.State{Drained: true, Reason: ReasonDrainDisabled, Message: "drain is disabled"}
		case drained:
			v = drain.State{Drained: true, Reason: ReasonDrained, Message: why + ": no instance sends the target traffic"}
		case !now.Before(start.Add(b.Spec.DrainTimeout())):
			v = drain.State{Drained: true, Reason: ReasonDrainTimeout,
				Message: fmt.Sprintf("%s: drain timeout %s passed without a drained verdict", why, b.Spec.DrainTimeout())}
		default:
			holding = true
			msg := fmt.Sprintf("%s: draining, %d session(s) left", why, sessions)
			if pool == nil {
				msg = fmt.Sprintf("%s: the load balancer cannot be read, so the target is not known to be drained; waiting for drain.timeout %s", why, b.Spec.DrainTimeout())
			}
			v = drain.State{Drained: false, Reason: ReasonDraining, Message: msg}
		}
		v.Since = now
		prev, had := r.Drains.Lookup(t.Key, b.Name)
		r.Drains.Report(t.Key, b.Name, v)
		if !had || prev.Drained != v.Drained || prev.Reason != v.Reason {
			kind := corev1.EventTypeNormal
			if v.Reason == ReasonDrainTimeout {
				kind = corev1.EventTypeWarning
			}
			r.event(t.Pod, b, kind, v.Reason, "Drain", "pod %s: %s (binding %s, pool %s)", t.Key.Name, v.Message, b.Name, b.Spec.Pool)
		}
	}
	return holding
}

func drainedIn(pool *provider.PoolStatus, id provider.TargetID) (bool, int64) {
	if pool == nil {
		return false, 0
	}
	return pool.Drained(id)
}

// releaseGates sets the binding's gate True on every pod of the namespace
// that carries it and is not being deleted, so that nothing holds a
// rollout once the binding or its LoadBalancer is gone. On binding
// deletion (deleted) a pod the load balancer had reported healthy gets
// reason BindingDeleted; any other (never healthy, or opened by a gate
// timeout) gets BindingDeletedUnverified and a Warning Event. With the
// LoadBalancer missing every gate gets LoadBalancerNotFound and a Warning.
// A DrainOnly reconciler touches no gate.
func (r *TargetBindingReconciler) releaseGates(ctx context.Context, b *zv1.TargetBinding, deleted bool, why string) error {
	if r.DrainOnly {
		return nil
	}
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(b.Namespace)); err != nil {
		return fmt.Errorf("list pods in %s: %w", b.Namespace, err)
	}
	var errs []error
	for i := range pods.Items {
		pod := &pods.Items[i]
		if !binding.HasGate(pod, b.Name) || !pod.DeletionTimestamp.IsZero() {
			continue
		}
		current := podCondition(pod, corev1.PodConditionType(zv1.GateConditionType(b.Name)))
		g := gateCondition{corev1.ConditionTrue, ReasonLoadBalancerMissing, why + ": gate released without a health verdict"}
		kind := corev1.EventTypeWarning
		if deleted {
			g = gateCondition{corev1.ConditionTrue, ReasonBindingDeletedUnverified,
				why + ": gate released although the load balancer never reported the pod healthy"}
			if current != nil && current.Status == corev1.ConditionTrue && (current.Reason == ReasonHealthy || current.Reason == ReasonBindingDeleted) {
				g = gateCondition{corev1.ConditionTrue, ReasonBindingDeleted, why + ": gate released"}
				kind = corev1.EventTypeNormal
			}
		}
		changed, err := r.setGate(ctx, pod, b.Name, &g)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if changed {
			r.event(pod, b, kind, g.Reason, "ReleaseGate", "pod %s: %s set True: %s", pod.Name, zv1.GateConditionType(b.Name), g.Message)
		}
	}
	return errors.Join(errs...)
}

// forgetBinding drops everything the reconciler keeps about a binding that
// is gone: memos, addresses, drain verdicts, its injection findings and
// its metric series.
func (r *TargetBindingReconciler) forgetBinding(key types.NamespacedName) {
	r.forgetMemo(key)
	r.Drains.ForgetBinding(key.Namespace, key.Name)
	r.mu.Lock()
	delete(r.ungated, key)
	r.mu.Unlock()
	if r.Metrics == nil || r.DrainOnly {
		return
	}
	r.Metrics.GatesPending.DeleteLabelValues(key.Namespace, key.Name)
	r.Metrics.GatesStuck.DeleteLabelValues(key.Namespace, key.Name)
	r.Metrics.PodsUngated.DeleteLabelValues(key.Namespace, key.Name)
	match := prometheus.Labels{"namespace": key.Namespace, "binding": key.Name}
	r.Metrics.GateLatency.DeletePartialMatch(match)
	r.Metrics.DrainDuration.DeletePartialMatch(match)
	r.Metrics.TargetVerdicts.DeletePartialMatch(match)
}

// checkInjection finds the pods the binding selects that the webhook did
// not (or no longer correctly) inject, in a namespace opted in to gates:
// no readiness gate, no drain hook although drain.preStop asks for it, or a
// drain hook to a host that is not the drain Service's ClusterIP now (the
// Service was recreated). Each finding is a Warning Event on the pod when
// it first appears or changes, and zerodrop_pods_ungated counts them.
func (r *TargetBindingReconciler) checkInjection(ctx context.Context, b *zv1.TargetBinding, targets []observedTarget) {
	if r.DrainOnly {
		return
	}
	key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
	var ns corev1.Namespace
	if err := r.Client.Get(ctx, types.NamespacedName{Name: b.Namespace}, &ns); err != nil {
		r.Log.Debug("injection check: get namespace", "namespace", b.Namespace, "err", err)
		return
	}
	found := map[string]string{}
	if ns.Labels[zv1.GatesNamespaceLabel] == zv1.GatesEnabled {
		host := ""
		if r.DrainHookHost != nil {
			if h, err := r.DrainHookHost(ctx); err == nil {
				host = h
			} else {
				r.Log.Debug("injection check: drain hook host", "err", err)
			}
		}
		wantHook := b.Spec.PreStopHook() == zv1.PreStopHTTPGet && b.Spec.DrainEnabled()
		for _, t := range targets {
			if t.Pod == nil || targetDeleting(t) || !t.HasEndpoint || t.Pod.Labels[webhook.SkipLabel] == webhook.SkipValue {
				continue
			}
			if reason, msg := injectionProblem(t.Pod, b.Name, wantHook, host); reason != "" {
				found[t.Key.Name] = reason + "\x00" + msg
			}
		}
	}
	r.mu.Lock()
	if r.ungated == nil {
		r.ungated = map[types.NamespacedName]map[string]string{}
	}
	prev := r.ungated[key]
	r.ungated[key] = found
	r.mu.Unlock()
	names := make([]string, 0, len(found))
	for name := range found {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if prev[name] == found[name] {
			continue
		}
		reason, msg, _ := strings.Cut(found[name], "\x00")
		for _, t := range targets {
			if t.Key.Name == name {
				r.event(t.Pod, b, corev1.EventTypeWarning, reason, "CheckInjection", "pod %s: %s (binding %s)", name, msg, b.Name)
			}
		}
	}
	if r.Metrics != nil {
		r.Metrics.PodsUngated.WithLabelValues(b.Namespace, b.Name).Set(float64(len(found)))
	}
}

// injectionProblem names what the webhook should have injected into pod
// for binding bindingName and did not, or "".
func injectionProblem(pod *corev1.Pod, bindingName string, wantHook bool, host string) (reason, msg string) {
	if !binding.HasGate(pod, bindingName) {
		return ReasonGateMissing, fmt.Sprintf("selected by TargetBinding %s but has no readiness gate %s (created while the webhook was unavailable?): "+
			"Ready does not wait for the load balancer; recreate the pod", bindingName, zv1.GateConditionType(bindingName))
	}
	for _, c := range pod.Spec.Containers {
		h := c.Lifecycle
		if wantHook && (h == nil || h.PreStop == nil) {
			return ReasonDrainHookMissing, fmt.Sprintf("container %s has no preStop hook although TargetBinding %s injects the drain hook: "+
				"it gets SIGTERM without waiting for the drain; recreate the pod", c.Name, bindingName)
		}
		if host != "" && h != nil && h.PreStop != nil && h.PreStop.HTTPGet != nil &&
			strings.HasPrefix(h.PreStop.HTTPGet.Path, "/drain/v1/") && h.PreStop.HTTPGet.Host != host {
			return ReasonDrainHookStale, fmt.Sprintf("container %s's drain hook calls %s, but the drain Service's ClusterIP is now %s "+
				"(the Service was recreated?): the hook fails and the pod gets SIGTERM undrained; recreate the pod", c.Name, h.PreStop.HTTPGet.Host, host)
		}
	}
	return "", ""
}

// retire empties the instances an edit took out of the binding's
// LoadBalancer (Providers.Retired) of the binding's targets: each is put in
// drain, and deregistered once drained or drain.timeout after the instance
// was first handled. An instance that cannot be read, or that refuses to
// delete a server, is retried until drain.timeout + FinalizeRetry, then
// given up with a Warning Event: its servers stay as they are, no longer
// managed. It reports whether the binding still has work there.
func (r *TargetBindingReconciler) retire(ctx context.Context, log *slog.Logger, b *zv1.TargetBinding, lb string, targets []observedTarget) bool {
	retired := r.Providers.Retired(lb)
	if len(retired) == 0 || r.DrainOnly {
		return false
	}
	key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
	now := r.now()
	timeout := b.Spec.DrainTimeout()
	if !b.Spec.DrainEnabled() {
		timeout = 0
	}
	var users []types.NamespacedName
	var list zv1.TargetBindingList
	if err := r.Client.List(ctx, &list); err != nil {
		log.Warn("retire instances: list TargetBindings", "err", err)
		return true
	}
	for _, o := range list.Items {
		if o.Spec.LoadBalancerRef.Name == lb {
			users = append(users, types.NamespacedName{Namespace: o.Namespace, Name: o.Name})
		}
	}
	r.book.know(lb, b.Spec.Pool, key, knownTargets(b, targets, r.memoFor(key), &r.mu), now)
	pref := r.book.pool(lb, b.Spec.Pool)
	pending := false
	for _, ri := range retired {
		since := r.Providers.retiredStart(ri, now)
		giveUp := !now.Before(since.Add(timeout + FinalizeRetry))
		st, err := ri.p.Status(ctx, pref)
		if err != nil {
			if giveUp {
				log.Warn("retired instance unreachable: given up", "loadbalancer", lb, "instance", ri.name, "at", ri.how, "err", err)
				r.event(b, nil, corev1.EventTypeWarning, "InstanceRetireFailed", "Retire",
					"LoadBalancer %s: instance %s (%s) was removed from the spec but could not be read for %s: whatever servers of pool %s it holds stay as they were, no longer managed: %v",
					lb, ri.name, ri.how, timeout+FinalizeRetry, b.Spec.Pool, err)
				r.Providers.retiredDone(lb, ri, key, users)
				continue
			}
			pending = true
			continue
		}
		var left []string
		for _, id := range st.Targets() {
			if _, ok := podOfTarget(id, b.Namespace, b.Name); !ok {
				continue
			}
			t := provider.Target{ID: id}
			for _, in := range st.Instances {
				if ts, ok := in.Targets[id]; ok && ts.Addr != "" {
					t.IP, t.Port = splitAddr(ts.Addr)
				}
			}
			if drained, _ := drainedNow(st, r.epochs.oldWorkers(lb, st, ri.p.Capabilities().ReloadGrace, now), id); !drained && now.Before(since.Add(timeout)) {
				if needsDrainCall(st, id) {
					if err := ri.p.SetDraining(ctx, pref, t); err != nil {
						log.Warn("retired instance: drain", "instance", ri.name, "target", id, "err", err)
					}
				}
				left = append(left, string(id))
				continue
			}
			if err := ri.p.Deregister(ctx, pref, t); err != nil {
				left = append(left, string(id))
				continue
			}
			log.Info("target deregistered from a retired instance", "loadbalancer", lb, "instance", ri.name, "at", ri.how, "target", id)
		}
		switch {
		case len(left) == 0:
			if r.Providers.retiredDone(lb, ri, key, users) {
				r.event(b, nil, corev1.EventTypeNormal, "InstanceRetired", "Retire",
					"LoadBalancer %s: instance %s (%s), removed from the spec, holds no target of this binding any more", lb, ri.name, ri.how)
			}
		case giveUp:
			r.event(b, nil, corev1.EventTypeWarning, "InstanceRetireFailed", "Retire",
				"LoadBalancer %s: instance %s (%s) was removed from the spec; after %s it still refuses to remove %s, left as they are, no longer managed: %s",
				lb, ri.name, ri.how, timeout+FinalizeRetry, pluralTargets(len(left)), strings.Join(left, ", "))
			r.Providers.retiredDone(lb, ri, key, users)
		default:
			pending = true
		}
	}
	return pending
}

// holdForRetired keeps the drain verdicts of deleting pods at Draining
// while an instance removed from the LoadBalancer's spec (being emptied,
// see retire) still has their target in rotation or with sessions, or
// cannot be read: "drained" counts every instance that may still send the
// pod traffic, the removed ones included. It runs in every role (serve
// replicas answer the hooks) and only reads. Bounded like retirement: an
// instance removed longer than drain.timeout + FinalizeRetry ago holds
// nothing (the leader has given it up), and a verdict that timed out
// stays timed out.
func (r *TargetBindingReconciler) holdForRetired(ctx context.Context, b *zv1.TargetBinding, lb string, targets []observedTarget, plans []targetPlan) {
	retired := r.Providers.Retired(lb)
	if len(retired) == 0 {
		return
	}
	key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
	now := r.now()
	memos := r.memoFor(key)
	var drained []int
	r.mu.Lock()
	for i := range plans {
		d := plans[i].Drain
		if d == nil || !d.Drained || d.Reason == ReasonDrainTimeout || d.Reason == ReasonDrainDisabled {
			continue
		}
		if m := memos[plans[i].Target.ID]; m != nil && !m.drainStart.IsZero() && !now.Before(m.drainStart.Add(b.Spec.DrainTimeout())) {
			continue // the pod's own drain.timeout bounds the hold
		}
		drained = append(drained, i)
	}
	r.mu.Unlock()
	if len(drained) == 0 {
		return
	}
	for _, ri := range retired {
		if !now.Before(r.Providers.retiredStart(ri, now).Add(b.Spec.DrainTimeout() + FinalizeRetry)) {
			continue
		}
		r.book.know(lb, b.Spec.Pool, key, knownTargets(b, targets, r.memoFor(key), &r.mu), now)
		st, err := ri.p.Status(ctx, r.book.pool(lb, b.Spec.Pool))
		for _, i := range drained {
			why := ""
			if err != nil || !st.AllRead() {
				why = fmt.Sprintf("instance %s, removed from LoadBalancer %s, cannot be read: the target is not known to be drained there", ri.name, lb)
			} else if ok, sessions := drainedNow(st, r.epochs.oldWorkers(lb, st, ri.p.Capabilities().ReloadGrace, now), plans[i].Target.ID); !ok {
				why = fmt.Sprintf("instance %s, removed from LoadBalancer %s, still has the target (%d session(s)): draining it there", ri.name, lb, sessions)
			}
			if why != "" {
				plans[i].Drain = &drainVerdict{false, ReasonDraining, why}
				plans[i].Pending = true
			}
		}
	}
}
