package controller

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/binding"
	"zerodrop.dev/zerodrop/provider"
)

// ungranted plans one cycle of a binding whose pool is not granted.
func ungranted(t *testing.T, in planInput) targetPlan {
	t.Helper()
	ps := plan(in)
	refuseRegistrations(ps, in.Targets, in.Binding.Name, "pool not granted")
	if len(ps) != 1 {
		t.Fatalf("want one target plan, got %+v", ps)
	}
	return ps[0]
}

func TestRefuseRegistrations(t *testing.T) {
	b := testBinding("FailOpen")
	check := provider.HealthCheck{}
	memos := func() map[provider.TargetID]*memo { return map[provider.TargetID]*memo{} }

	t.Run("a new ready pod is not registered and its gate says PoolNotGranted", func(t *testing.T) {
		p := ungranted(t, planInput{Binding: b, Check: check, Now: t0, Memo: memos(),
			Targets: []observedTarget{endpoint(gatedPod("web-1", true, nil), false)},
			Pool:    pool(id, "", "", 0)})
		if p.Action != actNone || p.Gate == nil || p.Gate.Status != corev1.ConditionFalse || p.Gate.Reason != binding.ReasonPoolNotGranted {
			t.Fatalf("plan %+v gate %+v: want no action, gate False PoolNotGranted", p, p.Gate)
		}
		if p.Pending || p.State != stWaiting {
			t.Fatalf("plan %+v: an ungranted target waits on the steady cycle, not the pending one", p)
		}
	})
	t.Run("the gate timeout does not fail open into the pool", func(t *testing.T) {
		old := &corev1.PodCondition{Status: corev1.ConditionFalse, Reason: binding.ReasonPoolNotGranted, LastTransitionTime: metav1.NewTime(t0.Add(-time.Hour))}
		m := memos()
		m[id] = &memo{containersReadySeen: t0.Add(-time.Hour)}
		p := ungranted(t, planInput{Binding: b, Check: check, Now: t0, Memo: m,
			Targets: []observedTarget{endpoint(gatedPod("web-1", true, old), false)},
			Pool:    pool(id, "", "", 0)})
		if p.Action != actNone || p.Gate == nil || p.Gate.Status != corev1.ConditionFalse || p.Gate.Reason != binding.ReasonPoolNotGranted {
			t.Fatalf("plan %+v gate %+v: want no action, gate False PoolNotGranted", p, p.Gate)
		}
	})
	t.Run("a target registered before the grant was revoked is not re-registered on a reloaded instance", func(t *testing.T) {
		g := &corev1.PodCondition{Status: corev1.ConditionTrue, Reason: ReasonHealthy}
		p := ungranted(t, planInput{Binding: b, Check: check, Now: t0, Memo: memos(),
			Targets: []observedTarget{endpoint(gatedPod("web-1", true, g), false)},
			Pool:    pool(id, provider.HealthHealthy, "", 0)})
		if p.Action != actNone {
			t.Fatalf("plan %+v: want no registration", p)
		}
	})
	t.Run("a pod not Ready yet is not made Ready by a target healthy in the pool", func(t *testing.T) {
		p := ungranted(t, planInput{Binding: b, Check: check, Now: t0, Memo: memos(),
			Targets: []observedTarget{endpoint(gatedPod("web-1", true, nil), false)},
			Pool:    pool(id, provider.HealthHealthy, provider.HealthHealthy, 0)})
		if p.Action != actNone || p.Gate == nil || p.Gate.Status != corev1.ConditionFalse || p.Gate.Reason != binding.ReasonPoolNotGranted {
			t.Fatalf("plan %+v gate %+v: want gate False PoolNotGranted", p, p.Gate)
		}
	})
	t.Run("a Ready pod whose target is healthy in the pool stays Ready", func(t *testing.T) {
		g := &corev1.PodCondition{Status: corev1.ConditionTrue, Reason: ReasonHealthy}
		p := ungranted(t, planInput{Binding: b, Check: check, Now: t0, Memo: memos(),
			Targets: []observedTarget{endpoint(gatedPod("web-1", true, g), false)},
			Pool:    pool(id, provider.HealthHealthy, provider.HealthHealthy, 0)})
		if p.Action != actNone || p.Gate == nil || p.Gate.Status != corev1.ConditionTrue {
			t.Fatalf("plan %+v gate %+v: a revocation does not turn a Service unready at once", p, p.Gate)
		}
	})
	t.Run("a deleted pod whose target is in the pool is still drained, not reported drained at once", func(t *testing.T) {
		pod := gatedPod("web-1", true, &corev1.PodCondition{Status: corev1.ConditionTrue, Reason: ReasonHealthy})
		now := metav1.NewTime(t0)
		pod.DeletionTimestamp = &now
		p := ungranted(t, planInput{Binding: b, Check: check, Now: t0, Memo: memos(),
			Targets: []observedTarget{endpoint(pod, true)},
			Pool:    pool(id, provider.HealthHealthy, provider.HealthHealthy, 3)})
		if p.Action != actDrain || p.Drain == nil || p.Drain.Drained || !p.Pending {
			t.Fatalf("plan %+v drain %+v: want SetDraining and not drained while 3 sessions are open", p, p.Drain)
		}
	})
	t.Run("a drained target is deregistered after the delay", func(t *testing.T) {
		pod := gatedPod("web-1", true, nil)
		now := metav1.NewTime(t0)
		pod.DeletionTimestamp = &now
		m := memos()
		m[id] = &memo{drainStart: t0.Add(-10 * time.Second), drainedAt: t0.Add(-5 * time.Second), drainReason: ReasonDrained}
		p := ungranted(t, planInput{Binding: b, Check: check, Now: t0, Memo: m,
			Targets: []observedTarget{endpoint(pod, true)},
			Pool:    pool(id, provider.HealthDrained, provider.HealthDrained, 0)})
		if p.Action != actDeregister || p.Drain == nil || !p.Drain.Drained {
			t.Fatalf("plan %+v drain %+v: want deregister, drained", p, p.Drain)
		}
	})
}

// Scenario: shop/web-edge holds pool be_web (no spec.pools: first come)
// and, as the pool's only binding, judges its orphans: an entry at an
// address no binding knows has been seen for 25 s of a 30 s grace. Then
// the LoadBalancer lists its pools and grants be_web to another team only.
// Expectation: from the first cycle after the revocation, while the
// binding's status still says Resolved, it never drains or frees the
// orphan: an ungranted binding does not judge the pool's entries. Granted
// again, it judges them again (the grace starts anew).
func TestUngrantedBindingJudgesNoOrphans(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, zv1.PreStopNone)
	h.r.OrphanGrace = 30 * time.Second
	orphan := provider.TargetID(provider.OrphanPrefix + "zd-slot3")
	h.w.put(keyA, hPool, orphan, "10.1.9.9:8080", provider.HealthHealthy, 0)
	h.w.put(keyB, hPool, orphan, "10.1.9.9:8080", provider.HealthHealthy, 0)
	for range 6 {
		h.reconcile()
		h.advance(5 * time.Second)
	}
	if calls := append(h.w.callsOf("drain"), h.w.callsOf("deregister")...); len(calls) != 0 {
		t.Fatalf("orphan judged before its 30 s grace: %v", calls)
	}
	setPools := func(pools []zv1.PoolGrant) {
		t.Helper()
		var lb zv1.LoadBalancer
		if err := h.c.Get(ctx, types.NamespacedName{Name: hLB}, &lb); err != nil {
			t.Fatal(err)
		}
		lb.Spec.Pools = pools
		lb.Generation++
		if err := h.c.Update(ctx, &lb); err != nil {
			t.Fatal(err)
		}
	}
	setPools([]zv1.PoolGrant{{Name: hPool, AllowedNamespaces: zv1.AllowedNamespaces{From: zv1.NamespacesFromSelector,
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "other"}}}}})
	for range 12 {
		h.advance(5 * time.Second)
		h.reconcile()
		if calls := append(h.w.callsOf("drain"), h.w.callsOf("deregister")...); len(calls) != 0 {
			t.Fatalf("the ungranted binding judged the pool's orphan: %v", calls)
		}
	}
	b, _ := h.binding()
	if !refused(b) {
		t.Fatalf("binding status %+v, want Ready False %s", b.Status.Conditions, binding.ReasonPoolNotGranted)
	}
	setPools([]zv1.PoolGrant{{Name: hPool, AllowedNamespaces: zv1.AllowedNamespaces{From: zv1.NamespacesFromAll}}})
	for range 10 {
		h.advance(5 * time.Second)
		h.reconcile()
	}
	if len(h.w.callsOf("drain")) == 0 {
		t.Fatalf("granted again, the binding never drained the orphan (seen for 50 s, grace 30 s)")
	}
}
