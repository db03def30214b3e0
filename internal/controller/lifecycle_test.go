package controller

import (
	"context"
	"fmt"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider"
)

// onBoth puts a pod's server on lb-a and lb-b.
func (h *harness) onBoth(pod, addr string, health provider.Health, sessions int64) {
	h.w.put(keyA, hPool, hid(pod), addr, health, sessions)
	h.w.put(keyB, hPool, hid(pod), addr, health, sessions)
}

func (h *harness) onLB(pod string) bool {
	return h.w.get(keyA, hPool, hid(pod)) != nil || h.w.get(keyB, hPool, hid(pod)) != nil
}

// Scenario: a binding is deleted mid-rollout: web-1 is healthy with two
// sessions open, web-2 is new and never passed the LB's checks, web-3 is
// being deleted with one session open. Expectation: the first cycle puts
// every target in drain and removes nothing; no gate is released yet, web-3
// is not reported drained, and the finalizer stays. Once the sessions end,
// the targets are deregistered, then the gates are released (web-1 as
// BindingDeleted; web-2, never healthy, with its own reason and a Warning),
// web-3 is reported drained, and the finalizer goes.
func TestBindingDeletionDrainsBeforeRemoving(t *testing.T) {
	h := newHarness(t, zv1.PreStopNone, objs(
		hPod("web-1", "10.1.0.1", true, "", gateHealthy),
		hPod("web-2", "10.1.0.2", true, "", gateINI),
		hPod("web-3", "10.1.0.3", true, "", gateHealthy))...)
	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 2)
	h.onBoth("web-2", "10.1.0.2:8080", provider.HealthInitial, 0)
	h.onBoth("web-3", "10.1.0.3:8080", provider.HealthHealthy, 1)
	h.deletePod("web-3")
	h.deleteBinding()

	res := h.reconcile()
	if res.RequeueAfter <= 0 {
		t.Fatalf("first finalize cycle: no requeue (%+v): the drain must be waited for by requeue", res)
	}
	if got := h.w.callsOf("deregister"); len(got) != 0 {
		t.Fatalf("deregistered before the drain: %v", got)
	}
	for _, pod := range []string{"web-1", "web-2", "web-3"} {
		if !h.onLB(pod) {
			t.Fatalf("%s removed from the LB at once", pod)
		}
		if s := h.w.get(keyA, hPool, hid(pod)); s.health != provider.HealthDraining && s.health != provider.HealthDrained {
			t.Fatalf("%s not put in drain on lb-a: %s", pod, s.health)
		}
	}
	if g := h.gate("web-2"); g.Status == corev1.ConditionTrue {
		t.Fatalf("gate of never-healthy web-2 released before the drain ended: %+v", g)
	}
	if v, ok := h.verdict("web-3"); !ok || v.Drained {
		t.Fatalf("web-3 with a session open: verdict %+v (known %v), want not drained", v, ok)
	}
	if _, ok := h.binding(); !ok {
		t.Fatalf("binding finalized while its targets drain")
	}

	h.w.setSessions(hPool, hid("web-1"), 0)
	h.w.setSessions(hPool, hid("web-3"), 0)
	h.advance(time.Second)
	h.eventsSeen()
	h.reconcile()
	for _, pod := range []string{"web-1", "web-2", "web-3"} {
		if h.onLB(pod) {
			t.Fatalf("%s left on the LB after the drain", pod)
		}
	}
	if g := h.gate("web-1"); g.Status != corev1.ConditionTrue || g.Reason != ReasonBindingDeleted {
		t.Fatalf("gate of healthy web-1: %+v, want True/%s", g, ReasonBindingDeleted)
	}
	if g := h.gate("web-2"); g.Status != corev1.ConditionTrue || g.Reason != ReasonBindingDeletedUnverified {
		t.Fatalf("gate of never-healthy web-2: %+v, want True/%s", g, ReasonBindingDeletedUnverified)
	}
	evs := h.eventsSeen()
	if !hasEvent(evs, corev1.EventTypeWarning, ReasonBindingDeletedUnverified, "web-2") {
		t.Fatalf("no Warning %s Event for web-2: %v", ReasonBindingDeletedUnverified, evs)
	}
	if hasEvent(evs, corev1.EventTypeWarning, ReasonBindingDeletedUnverified, "web-1") {
		t.Fatalf("healthy web-1 reported as never healthy: %v", evs)
	}
	if v, ok := h.verdict("web-3"); !ok || !v.Drained {
		t.Fatalf("web-3 after its sessions ended: %+v (known %v), want drained", v, ok)
	}
	if _, ok := h.binding(); ok {
		t.Fatalf("finalizer kept after the targets were removed")
	}
}

// Scenario: a binding is deleted while a target keeps a session open past
// drain.timeout, and HAProxy refuses to delete a server with connections.
// Expectation: the drain ends at drain.timeout, Deregister is retried on
// every cycle while it fails, and the finalizer stays until it succeeds:
// no server is left behind in maintenance.
func TestBindingDeletionRetriesDeregister(t *testing.T) {
	h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", gateHealthy)...)
	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 3)
	h.deleteBinding()
	h.reconcile()
	if got := h.w.callsOf("deregister"); len(got) != 0 {
		t.Fatalf("deregistered within drain.timeout with sessions open: %v", got)
	}
	h.advance(11 * time.Second) // past drain.timeout (10 s)
	h.reconcile()
	h.reconcile()
	if n := len(h.w.callsOf("deregister")); n < 2 {
		t.Fatalf("after drain.timeout: %d deregister calls over two cycles, want a retry each cycle", n)
	}
	if _, ok := h.binding(); !ok {
		t.Fatalf("finalizer removed while the server could not be deleted")
	}
	h.w.setSessions(hPool, hid("web-1"), 0)
	h.reconcile()
	h.reconcile()
	if h.onLB("web-1") {
		t.Fatalf("server left on the LB")
	}
	if _, ok := h.binding(); ok {
		t.Fatalf("finalizer kept after the server was deleted")
	}
}

// Scenario: a binding with a gated pod and a deleting pod is deleted and
// finalized, then its LoadBalancer is deleted. Expectation: nothing of the
// binding stays in the controller's memory: no drain verdict, no gauge
// series, no memo; and the LoadBalancer's provider is dropped.
func TestDeletedObjectsLeaveNoState(t *testing.T) {
	h := newHarness(t, zv1.PreStopNone, objs(
		hPod("web-1", "10.1.0.1", true, "", gateHealthy),
		hPod("web-3", "10.1.0.3", true, "", gateHealthy))...)
	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 0)
	h.onBoth("web-3", "10.1.0.3:8080", provider.HealthHealthy, 0)
	h.reconcile()
	h.deletePod("web-3")
	h.reconcile()
	if len(h.series("zerodrop_gates_pending")) == 0 {
		t.Fatalf("precondition: no zerodrop_gates_pending series")
	}
	h.reconcileLB()
	h.deleteBinding()
	for i := 0; i < 5; i++ {
		h.reconcile()
		h.advance(time.Second)
	}
	if _, ok := h.binding(); ok {
		t.Fatalf("binding not finalized")
	}
	h.reconcile() // the binding is gone
	if pods := h.r.Drains.Pods(hNS, hBinding); len(pods) != 0 {
		t.Fatalf("drain verdicts of the deleted binding kept: %v", pods)
	}
	for _, name := range []string{"zerodrop_gates_pending", "zerodrop_gates_stuck", "zerodrop_pods_ungated"} {
		if s := h.series(name); len(s) != 0 {
			t.Fatalf("%s kept after the binding was deleted: %v", name, s)
		}
	}
	h.r.mu.Lock()
	n := len(h.r.memos) + len(h.r.orphans) + h.r.book.size()
	h.r.mu.Unlock()
	if n != 0 {
		t.Fatalf("memos kept after the binding was deleted: %d", n)
	}

	var lb zv1.LoadBalancer
	if err := h.c.Get(context.Background(), types.NamespacedName{Name: hLB}, &lb); err != nil {
		t.Fatal(err)
	}
	if err := h.c.Delete(context.Background(), &lb); err != nil {
		t.Fatal(err)
	}
	h.reconcileLB()
	h.r.Providers.mu.Lock()
	_, built := h.r.Providers.built[hLB]
	h.r.Providers.mu.Unlock()
	if built {
		t.Fatalf("provider of the deleted LoadBalancer kept")
	}
	// A serve replica runs no LoadBalancer reconciler: its provider is
	// dropped when the LoadBalancer's delete event is mapped.
	if _, err := h.r.Providers.For(&lb); err != nil {
		t.Fatal(err)
	}
	h.r.bindingsOfLoadBalancer(context.Background(), &lb)
	h.r.Providers.mu.Lock()
	_, built = h.r.Providers.built[hLB]
	h.r.Providers.mu.Unlock()
	if built {
		t.Fatalf("provider of the deleted LoadBalancer kept by the binding reconciler's watch")
	}
}

// Scenario: LoadBalancer edge is deleted while binding web-edge uses it.
// Expectation: the LoadBalancer stays (finalizer), its Ready condition and
// a Warning Event name the binding, the binding keeps managing its targets;
// once the binding is gone the LoadBalancer goes too.
func TestLoadBalancerDeletionWaitsForBindings(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, zv1.PreStopNone)
	h.reconcileLB()
	var lb zv1.LoadBalancer
	if err := h.c.Get(ctx, types.NamespacedName{Name: hLB}, &lb); err != nil {
		t.Fatal(err)
	}
	if err := h.c.Delete(ctx, &lb); err != nil {
		t.Fatal(err)
	}
	h.reconcileLB()
	if err := h.c.Get(ctx, types.NamespacedName{Name: hLB}, &lb); err != nil {
		t.Fatalf("LoadBalancer deleted while binding %s/%s uses it: %v", hNS, hBinding, err)
	}
	c := meta.FindStatusCondition(lb.Status.Conditions, ConditionReady)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonDeletionBlocked || !strings.Contains(c.Message, hNS+"/"+hBinding) {
		t.Fatalf("Ready condition while deletion waits: %+v", c)
	}
	if evs := h.eventsSeen(); !hasEvent(evs, corev1.EventTypeWarning, ReasonDeletionBlocked, hNS+"/"+hBinding) {
		t.Fatalf("no Warning %s Event naming the binding: %v", ReasonDeletionBlocked, evs)
	}
	h.deleteBinding()
	for i := 0; i < 3; i++ {
		h.reconcile()
		h.advance(time.Second)
	}
	h.reconcileLB()
	if err := h.c.Get(ctx, types.NamespacedName{Name: hLB}, &lb); !apierrors.IsNotFound(err) {
		t.Fatalf("LoadBalancer kept after its last binding went: %v", err)
	}
}

// Scenario: the binding's LoadBalancer does not exist (never created, or
// its finalizer was removed by hand) while a pod is deleted. Expectation:
// nothing tells whether the pod is drained, so its verdict stays Draining
// until drain.timeout, then DrainTimeout; never drained at once.
func TestLoadBalancerMissingIsNotDrained(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", gateHealthy)...)
	var lb zv1.LoadBalancer
	if err := h.c.Get(ctx, types.NamespacedName{Name: hLB}, &lb); err != nil {
		t.Fatal(err)
	}
	if err := h.c.Delete(ctx, &lb); err != nil {
		t.Fatal(err)
	}
	h.deletePod("web-1")
	h.reconcile()
	v, ok := h.verdict("web-1")
	if !ok || v.Drained || v.Reason != ReasonDraining {
		t.Fatalf("LB missing, pod just deleted: verdict %+v (known %v), want Draining", v, ok)
	}
	h.advance(9 * time.Second)
	h.reconcile()
	if v, _ := h.verdict("web-1"); v.Drained {
		t.Fatalf("LB missing, 9 s into a 10 s drain.timeout: %+v, want not drained", v)
	}
	h.advance(2 * time.Second)
	h.reconcile()
	if v, _ := h.verdict("web-1"); !v.Drained || v.Reason != ReasonDrainTimeout {
		t.Fatalf("LB missing, past drain.timeout: %+v, want drained by %s", v, ReasonDrainTimeout)
	}
}

// Scenario: instance lb-b is removed from LoadBalancer edge (or given
// another address) while web-1 is registered and has a session on it.
// Expectation: web-1's server on the old lb-b is put in drain, then
// deleted once drained; lb-a keeps it; the new address is registered.
func TestRemovedInstanceIsDrainedAndDeregistered(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*zv1.LoadBalancer)
	}{
		{"instance removed", func(lb *zv1.LoadBalancer) { lb.Spec.Instances = []zv1.LoadBalancerInstance{instA} }},
		{"instance readdressed", func(lb *zv1.LoadBalancer) {
			lb.Spec.Instances = []zv1.LoadBalancerInstance{instA, {Name: "lb-b", Address: "10.0.0.3:9999"}}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", gateHealthy)...)
			h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 1)
			h.reconcile()
			var lb zv1.LoadBalancer
			if err := h.c.Get(ctx, types.NamespacedName{Name: hLB}, &lb); err != nil {
				t.Fatal(err)
			}
			c.edit(&lb)
			lb.Generation++
			if err := h.c.Update(ctx, &lb); err != nil {
				t.Fatal(err)
			}
			h.reconcile()
			s := h.w.get(keyB, hPool, hid("web-1"))
			if s == nil || s.health != provider.HealthDraining {
				t.Fatalf("web-1 on the old lb-b after the edit: %+v, want draining", s)
			}
			h.w.setSessions(hPool, hid("web-1"), 0)
			h.advance(time.Second)
			h.reconcile()
			if s := h.w.get(keyB, hPool, hid("web-1")); s != nil {
				t.Fatalf("web-1 left on the old lb-b after its drain: %+v", s)
			}
			if s := h.w.get(keyA, hPool, hid("web-1")); s == nil || s.health != provider.HealthHealthy {
				t.Fatalf("web-1 on lb-a: %+v, want kept healthy", s)
			}
		})
	}
}

// Scenario: in an opted-in namespace, the binding (preStop HTTPGet)
// selects web-1 (gate and hook to the drain Service's ClusterIP), web-2
// (no gate: created while the webhook was down), web-3 (hook to an old
// ClusterIP) and web-4 (gate, no hook). Expectation: a Warning Event for
// each of web-2, web-3, web-4, and zerodrop_pods_ungated = 3.
func TestUngatedPodsAreReported(t *testing.T) {
	h := newHarness(t, zv1.PreStopHTTPGet, objs(
		hPod("web-1", "10.1.0.1", true, hookHost, nil),
		hPod("web-2", "10.1.0.2", false, hookHost, nil),
		hPod("web-3", "10.1.0.3", true, "10.96.0.1", nil),
		hPod("web-4", "10.1.0.4", true, "", nil))...)
	h.reconcile()
	evs := h.eventsSeen()
	for _, c := range []struct{ pod, reason string }{
		{"web-2", ReasonGateMissing}, {"web-3", ReasonDrainHookStale}, {"web-4", ReasonDrainHookMissing},
	} {
		if !hasEvent(evs, corev1.EventTypeWarning, c.reason, c.pod) {
			t.Errorf("no Warning %s Event for %s: %v", c.reason, c.pod, evs)
		}
	}
	for _, reason := range []string{ReasonGateMissing, ReasonDrainHookMissing, ReasonDrainHookStale} {
		if hasEvent(evs, corev1.EventTypeWarning, reason, "web-1") {
			t.Errorf("Warning %s for the well-injected web-1: %v", reason, evs)
		}
	}
	got := h.series("zerodrop_pods_ungated")
	if got["binding="+hBinding+",namespace="+hNS] != 3 {
		t.Fatalf("zerodrop_pods_ungated = %v, want 3 for %s/%s", got, hNS, hBinding)
	}
	// Events only on a change: a second cycle repeats none.
	h.reconcile()
	if evs := h.eventsSeen(); len(evs) > 0 && hasEvent(evs, corev1.EventTypeWarning, ReasonGateMissing, "web-2") {
		t.Fatalf("Event repeated every cycle: %v", evs)
	}
}

// Scenario: a serve replica's drain-only reconciler sees the binding
// deleted while web-3 is being deleted with a session open. Expectation:
// it drains and reports web-3's verdict from its own look at the LB
// (Draining, then Drained), but never deregisters, never touches a gate
// and never removes the finalizer: the leader does.
func TestBindingDeletionDrainOnly(t *testing.T) {
	h := newHarness(t, zv1.PreStopNone, objs(
		hPod("web-2", "10.1.0.2", true, "", gateINI),
		hPod("web-3", "10.1.0.3", true, "", gateHealthy))...)
	h.r.DrainOnly = true
	h.onBoth("web-2", "10.1.0.2:8080", provider.HealthInitial, 0)
	h.onBoth("web-3", "10.1.0.3:8080", provider.HealthHealthy, 1)
	h.deletePod("web-3")
	h.deleteBinding()
	h.reconcile()
	if v, _ := h.verdict("web-3"); v.Drained || v.Reason != ReasonDraining {
		t.Fatalf("web-3 with a session: %+v, want Draining", v)
	}
	h.w.setSessions(hPool, hid("web-3"), 0)
	h.advance(20 * time.Second) // past drain.timeout too
	h.reconcile()
	h.reconcile()
	if v, _ := h.verdict("web-3"); !v.Drained {
		t.Fatalf("web-3 drained: %+v, want drained", v)
	}
	if got := h.w.callsOf("deregister"); len(got) != 0 {
		t.Fatalf("drain-only reconciler deregistered: %v", got)
	}
	if g := h.gate("web-2"); g.Status != corev1.ConditionFalse {
		t.Fatalf("drain-only reconciler released a gate: %+v", g)
	}
	if b, ok := h.binding(); !ok || len(b.Finalizers) == 0 {
		t.Fatalf("drain-only reconciler removed the finalizer")
	}
}

// Scenario: instance lb-b is removed from the spec while it cannot be
// reached (the host died). Expectation: nothing can be removed there; the
// controller retries until drain.timeout + FinalizeRetry, then emits a
// Warning InstanceRetireFailed and forgets the instance.
func TestRemovedUnreachableInstanceIsGivenUp(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", gateHealthy)...)
	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 0)
	h.reconcile()
	var lb zv1.LoadBalancer
	if err := h.c.Get(ctx, types.NamespacedName{Name: hLB}, &lb); err != nil {
		t.Fatal(err)
	}
	lb.Spec.Instances = []zv1.LoadBalancerInstance{instA}
	lb.Generation++
	if err := h.c.Update(ctx, &lb); err != nil {
		t.Fatal(err)
	}
	h.w.mu.Lock()
	h.w.down[keyB] = true
	h.w.mu.Unlock()
	h.reconcile()
	if n := len(h.r.Providers.Retired(hLB)); n != 1 {
		t.Fatalf("unreachable removed instance: %d retired, want 1 (retrying)", n)
	}
	h.eventsSeen()
	h.advance(10*time.Second + FinalizeRetry)
	h.reconcile()
	if evs := h.eventsSeen(); !hasEvent(evs, corev1.EventTypeWarning, "InstanceRetireFailed", "lb-b") {
		t.Fatalf("no Warning InstanceRetireFailed naming lb-b: %v", evs)
	}
	if n := len(h.r.Providers.Retired(hLB)); n != 0 {
		t.Fatalf("given-up instance still retired: %d", n)
	}
}

// Scenario: a deleted binding's target keeps a connection open for good,
// so HAProxy never deletes its server. Expectation: the finalizer stays
// until drain.timeout + FinalizeRetry, then goes with a Warning TargetsLeft
// naming the server (out of rotation, no longer managed): a deletion is
// never blocked forever.
func TestBindingDeletionGivesUpAfterFinalizeRetry(t *testing.T) {
	h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", gateHealthy)...)
	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 1)
	h.deleteBinding()
	h.reconcile()
	h.advance(10*time.Second + FinalizeRetry - time.Second)
	h.reconcile()
	if _, ok := h.binding(); !ok {
		t.Fatalf("finalizer removed before drain.timeout + FinalizeRetry")
	}
	h.eventsSeen()
	h.advance(2 * time.Second)
	h.reconcile()
	if _, ok := h.binding(); ok {
		t.Fatalf("finalizer kept past drain.timeout + FinalizeRetry")
	}
	if evs := h.eventsSeen(); !hasEvent(evs, corev1.EventTypeWarning, "TargetsLeft", string(hid("web-1"))) {
		t.Fatalf("no Warning TargetsLeft naming the server: %v", evs)
	}
	if s := h.w.get(keyA, hPool, hid("web-1")); s == nil || s.health == provider.HealthHealthy {
		t.Fatalf("server left behind must be out of rotation: %+v", s)
	}
}

// Scenario: the cache has not seen LoadBalancer edge yet (it was applied
// together with the binding), while the API server has it; web-1 waits
// behind its gate, never passed by the LB. Expectation: the gate is not
// released as "LoadBalancer not found" (the gate is one-way: it would stay
// True without the LB's verdict); the binding waits for the cache instead.
// Once the API server also says the LoadBalancer does not exist, the gate is
// released with reason LoadBalancerNotFound.
func TestLoadBalancerMissingOnlyInTheCacheReleasesNoGate(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", nil)...)
	var lb zv1.LoadBalancer
	if err := h.c.Get(ctx, types.NamespacedName{Name: hLB}, &lb); err != nil {
		t.Fatal(err)
	}
	api := fake.NewClientBuilder().WithScheme(hScheme(t)).WithObjects(lb.DeepCopy()).Build()
	h.r.APIReader = api
	lb.Finalizers = nil
	if err := h.c.Delete(ctx, &lb); err != nil {
		t.Fatal(err)
	}
	if res := h.reconcile(); res.RequeueAfter <= 0 {
		t.Fatalf("LB only missing from the cache: requeue %v, want a retry", res.RequeueAfter)
	}
	if g := h.gate("web-1"); g != nil && g.Status == corev1.ConditionTrue {
		t.Fatalf("LB only missing from the cache: gate %+v, want not released", g)
	}
	if err := api.Delete(ctx, &lb); err != nil {
		t.Fatal(err)
	}
	h.reconcile()
	if g := h.gate("web-1"); g == nil || g.Status != corev1.ConditionTrue || g.Reason != ReasonLoadBalancerMissing {
		t.Fatalf("LB gone from the API server too: gate %+v, want True/%s", g, ReasonLoadBalancerMissing)
	}
}

// Scenario: instance lb-b is removed from LoadBalancer edge while web-1 is
// registered on both instances with a session each; then web-1 is deleted.
// lb-a reports it drained at once, but the removed lb-b still has its
// session (it is being emptied). Expectation: in the leader and in a serve
// replica (drain-only), the verdict stays Draining until lb-b has drained
// it too: "drained" counts every instance that may still send the pod
// traffic, the removed one included.
func TestRemovedInstanceHoldsTheDrainVerdict(t *testing.T) {
	for _, drainOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("drainOnly=%v", drainOnly), func(t *testing.T) {
			ctx := context.Background()
			h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", gateHealthy)...)
			h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 1)
			h.reconcile()
			h.r.DrainOnly = drainOnly
			var lb zv1.LoadBalancer
			if err := h.c.Get(ctx, types.NamespacedName{Name: hLB}, &lb); err != nil {
				t.Fatal(err)
			}
			lb.Spec.Instances = []zv1.LoadBalancerInstance{instA}
			lb.Generation++
			if err := h.c.Update(ctx, &lb); err != nil {
				t.Fatal(err)
			}
			h.reconcile()
			h.deletePod("web-1")
			h.w.put(keyA, hPool, hid("web-1"), "10.1.0.1:8080", provider.HealthDrained, 0)
			h.w.put(keyB, hPool, hid("web-1"), "10.1.0.1:8080", provider.HealthDraining, 1)
			h.advance(time.Second)
			h.reconcile()
			if v, ok := h.verdict("web-1"); !ok || v.Drained {
				t.Fatalf("lb-a drained, removed lb-b still has a session: verdict %+v (known %v), want Draining", v, ok)
			}
			h.w.setSessions(hPool, hid("web-1"), 0)
			h.advance(time.Second)
			h.reconcile()
			if v, _ := h.verdict("web-1"); !v.Drained {
				t.Fatalf("drained on both: verdict %+v, want drained", v)
			}
		})
	}
}

// Scenario: a binding with one healthy, Ready pod and nothing pending, as
// the leader and as a serve replica's drain-only reconciler see it; then
// the pod is deleted. Expectation: the leader polls at the steady cycle
// (it registers, notices reloads and judges orphans); the drain-only
// reconciler, which carries nothing out for a pod that stays, polls six
// times slower; once the pod is deleting both poll at the pending cycle.
func TestADrainOnlyBindingAtRestPollsSlowly(t *testing.T) {
	for _, drainOnly := range []bool{false, true} {
		h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", gateHealthy)...)
		h.r.DrainOnly = drainOnly
		h.r.SteadyInterval = 5 * time.Second
		h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 1)
		want := 5 * time.Second
		if drainOnly {
			want = 30 * time.Second
		}
		if got := h.reconcile().RequeueAfter; got != want {
			t.Errorf("drainOnly=%v at rest: requeue after %s, want %s", drainOnly, got, want)
		}
		h.deletePod("web-1")
		if got := h.reconcile().RequeueAfter; got != h.r.pending() {
			t.Errorf("drainOnly=%v with web-1 deleting: requeue after %s, want the pending cycle %s", drainOnly, got, h.r.pending())
		}
	}
}
