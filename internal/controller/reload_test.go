package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/event"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/drain"
	"zerodrop.dev/zerodrop/provider"
)

// Scenario: instance lb-b reloads (its old worker may serve the
// connections it had until the LoadBalancer's reloadGrace, 8 s here), the
// LoadBalancer is edited right after (its provider is rebuilt), and web-1
// is deleted; the new worker soon reports the target drained everywhere.
// Expectation: the drain verdict stays Draining until 8 s after the reload,
// then turns Drained (before the 10 s drain timeout). The reload is
// remembered by the controller, not by the provider the edit replaced:
// from the LB's own start time when it reports one, else from the epoch
// change the controller saw.
func TestLoadBalancerEditRightAfterReloadKeepsTheDrain(t *testing.T) {
	for _, reportStart := range []bool{true, false} {
		t.Run(fmt.Sprintf("startedAt reported=%v", reportStart), func(t *testing.T) {
			ctx := context.Background()
			h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", gateHealthy)...)
			h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 0)
			h.reconcile()
			reloaded := h.now
			h.w.reload(keyB, reloaded, reportStart)
			h.reconcile() // sees the new epoch; registers web-1 on lb-b again
			if h.w.get(keyB, hPool, hid("web-1")) == nil {
				t.Fatalf("web-1 not registered again on the reloaded lb-b")
			}
			var lb zv1.LoadBalancer
			if err := h.c.Get(ctx, types.NamespacedName{Name: hLB}, &lb); err != nil {
				t.Fatal(err)
			}
			lb.Spec.ReloadGrace = &metav1.Duration{Duration: 8 * time.Second}
			lb.Spec.PoolDefaults.HealthCheck.Rise = ptrTo(int32(3))
			lb.Generation++
			if err := h.c.Update(ctx, &lb); err != nil {
				t.Fatal(err)
			}
			h.deletePod("web-1")
			h.onBoth("web-1", "10.1.0.1:8080", provider.HealthDrained, 0)
			for _, at := range []time.Duration{time.Second, 4 * time.Second, 7 * time.Second} {
				h.now = reloaded.Add(at)
				h.reconcile()
				if v, ok := h.verdict("web-1"); !ok || v.Drained {
					t.Fatalf("%s after the reload, edit in between: verdict %+v (known %v), want Draining: the old worker may still send", at, v, ok)
				}
			}
			h.now = reloaded.Add(8*time.Second + 500*time.Millisecond)
			h.reconcile()
			if v, _ := h.verdict("web-1"); !v.Drained || v.Reason != ReasonDrained {
				t.Fatalf("grace over: verdict %+v, want Drained", v)
			}
		})
	}
}

func ptrTo[T any](v T) *T { return &v }

// Scenario: the pool has room for one server per instance; web-1 holds
// it and web-2 arrives. Expectation: web-2's gate stays False with reason
// PoolFull and a message that says so (not an opaque provider error), and
// the binding's Resolved condition says PoolFull too.
func TestFullPoolIsToldToThePodAndTheBinding(t *testing.T) {
	h := newHarness(t, zv1.PreStopNone, objs(hPod("web-1", "10.1.0.1", true, "", gateHealthy), hPod("web-2", "10.1.0.2", true, "", nil))...)
	h.w.capacity = 1
	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 0)
	h.reconcile()
	g := h.gate("web-2")
	if g == nil || g.Status != "False" || g.Reason != ReasonPoolFull || !strings.Contains(g.Message, "no room") {
		t.Fatalf("web-2's gate %+v: want False, reason %s, saying the pool has no room", g, ReasonPoolFull)
	}
	b, _ := h.binding()
	var found bool
	for _, c := range b.Status.Conditions {
		if c.Reason == ReasonPoolFull {
			found = true
		}
	}
	if !found {
		t.Fatalf("binding conditions %+v: want reason %s", b.Status.Conditions, ReasonPoolFull)
	}
}

// restart replaces the reconciler with a fresh one, as a new process (a
// restarted controller, a serve replica started later, a new leader):
// same cluster and load balancer, no memory, a new drain registry.
func (h *harness) restart(drainOnly bool) {
	old := h.r
	h.r = &TargetBindingReconciler{
		Client: old.Client, Recorder: old.Recorder, Metrics: old.Metrics, Log: old.Log, Now: old.Now, DrainHookHost: old.DrainHookHost,
		Providers: &Providers{Factories: old.Providers.Factories}, Drains: drain.NewRegistry(), DrainOnly: drainOnly,
	}
}

// Scenario: web-1 is deleted and keeps a session open on the LB; the
// controller (or, drain-only, a serve replica) restarts 8 s later and
// sees the pod for the first time. Expectation: the drain deadline still
// counts from the deletion request, not from the new process's first
// sighting: 1 s before the 10 s drain timeout the verdict is Draining,
// just after it DrainTimeout; not 10 s after the restart.
func TestRestartKeepsTheDrainDeadlineOfAPodDeletedBefore(t *testing.T) {
	for _, drainOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("drainOnly=%v", drainOnly), func(t *testing.T) {
			h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", gateHealthy)...)
			h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 1)
			h.reconcile()
			h.deletePod("web-1")
			var p corev1.Pod
			if err := h.c.Get(context.Background(), types.NamespacedName{Namespace: hNS, Name: "web-1"}, &p); err != nil {
				t.Fatal(err)
			}
			deleted, ok := deletionRequested(&p)
			if !ok {
				t.Fatal("the fake API server set no deletionTimestamp")
			}
			h.now = deleted
			h.reconcile()
			h.restart(drainOnly)
			h.now = deleted.Add(8 * time.Second)
			h.reconcile()
			h.now = deleted.Add(9 * time.Second)
			h.reconcile()
			if v, ok := h.verdict("web-1"); !ok || v.Drained {
				t.Fatalf("9 s after the deletion, a session open: verdict %+v (known %v), want Draining", v, ok)
			}
			h.now = deleted.Add(10*time.Second + 500*time.Millisecond)
			h.reconcile()
			if v, _ := h.verdict("web-1"); !v.Drained || v.Reason != ReasonDrainTimeout {
				t.Fatalf("10.5 s after the deletion (2.5 s after the restart): verdict %+v, want %s", v, ReasonDrainTimeout)
			}
		})
	}
}

// nginxLike declares a load balancer without active checks (NGINX open
// source): health checks nowhere.
type nginxLike struct{ *worldLB }

func (nginxLike) Capabilities() provider.Capabilities {
	return provider.Capabilities{Identity: provider.IdentityAddress, Promotion: provider.PromotionSelf, HealthCheckScope: provider.HealthCheckNone,
		DrainSignal: provider.DrainStateOnly, Topology: provider.TopologyInstances}
}

// Scenario: a binding sets spec.healthCheck on a LoadBalancer whose
// provider has no per-target checks. Expectation: targets are registered
// without check settings, and one Warning Event (HealthCheckIgnored) says
// the binding's healthCheck does not apply, not one per cycle.
func TestHealthCheckOfABindingIsIgnoredWhereTheLBHasNone(t *testing.T) {
	h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", nil)...)
	var sent []provider.HealthCheck
	h.r.Providers = &Providers{Factories: map[zv1.ProviderType]ProviderFactory{zv1.ProviderHAProxy: func(lb *zv1.LoadBalancer) (provider.Provider, error) {
		p, _ := h.w.factory(lb)
		return recordChecks{nginxLike{p.(*worldLB)}, &sent}, nil
	}}}
	b, _ := h.binding()
	b.Spec.HealthCheck = &zv1.HealthCheck{Rise: ptrTo(int32(5))}
	if err := h.c.Update(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	h.reconcile()
	h.advance(time.Second)
	h.reconcile()
	if len(sent) == 0 {
		t.Fatal("nothing registered")
	}
	for _, c := range sent {
		if c != (provider.HealthCheck{}) {
			t.Fatalf("check settings %+v sent to a provider without per-target checks", c)
		}
	}
	n := 0
	for _, e := range h.eventsSeen() {
		if strings.Contains(e, "HealthCheckIgnored") {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d HealthCheckIgnored events, want 1: %v", n, h.eventsSeen())
	}
}

type recordChecks struct {
	nginxLike
	sent *[]provider.HealthCheck
}

func (r recordChecks) Register(ctx context.Context, pl provider.Pool, t provider.Target) error {
	*r.sent = append(*r.sent, t.Check)
	return r.nginxLike.Register(ctx, pl, t)
}

// Scenario: two bindings share the pool; lb-b reloads (its runtime state,
// every registration, is lost) and one binding's cycle is the first to see
// the new epoch. Expectation: that cycle wakes every binding of the load
// balancer, the other one too, instead of leaving its targets out of lb-b
// until its next poll (seconds at rest, longer when many bindings share
// the workers).
func TestAReloadSeenByOneBindingWakesTheOthers(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", gateHealthy)...)
	h.r.wakes = make(chan event.GenericEvent, 16)
	other := &zv1.TargetBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: hNS, Name: "other", Finalizers: []string{Finalizer}, Generation: 1},
		Spec: zv1.TargetBindingSpec{ServiceRef: zv1.ServiceReference{Name: "web", Port: intstr.FromString("http")},
			LoadBalancerRef: zv1.LoadBalancerReference{Name: hLB}, Pool: hPool},
	}
	if err := h.c.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	otherKey := types.NamespacedName{Namespace: hNS, Name: "other"}
	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 0)
	h.reconcile()
	if _, err := h.r.Reconcile(ctx, reconcileRequest(otherKey)); err != nil {
		t.Fatal(err)
	}
	if n := len(h.r.wakes); n != 0 {
		t.Fatalf("%d wake-ups before any reload", n)
	}
	h.w.reload(keyB, h.now, true)
	h.now = h.now.Add(time.Second)
	h.reconcile() // hBinding sees lb-b's new epoch first
	woken := map[string]bool{}
	for len(h.r.wakes) > 0 {
		woken[(<-h.r.wakes).Object.GetName()] = true
	}
	if !woken["other"] || !woken[hBinding] {
		t.Fatalf("woken after the reload: %v, want every binding of the load balancer", woken)
	}
}
