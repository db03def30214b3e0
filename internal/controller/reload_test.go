package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
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
