package controller

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider"
)

// delayedRegister is a provider whose Register takes delay, as a Register
// to a busy load balancer does, and that counts the Registers in flight.
type delayedRegister struct {
	provider.Provider
	delay          time.Duration
	inFlight, most atomic.Int32
}

func (p *delayedRegister) Register(ctx context.Context, pl provider.Pool, t provider.Target) error {
	raiseTo(&p.most, p.inFlight.Add(1))
	defer p.inFlight.Add(-1)
	time.Sleep(p.delay)
	return p.Provider.Register(ctx, pl, t)
}

// Scenario (issue 12, 1,000 pods over one binding): 8 new pods of one
// binding, ContainersReady with their endpoints, and a load balancer whose
// Register takes 100 ms. Expectation: one cycle registers all 8, side by
// side (more than one Register in flight at once, never more than
// callWidth), so the cycle takes about one Register, not 8.
func TestACycleRegistersItsNewTargetsSideBySide(t *testing.T) {
	var pods [][]client.Object
	for i := 1; i <= 8; i++ {
		pods = append(pods, hPod(fmt.Sprintf("web-%d", i), fmt.Sprintf("10.1.0.%d", i), true, "", nil))
	}
	h := newHarness(t, zv1.PreStopNone, objs(pods...)...)
	var slow *delayedRegister
	h.r.Providers.Factories[zv1.ProviderHAProxy] = func(lb *zv1.LoadBalancer) (provider.Provider, error) {
		p, err := h.w.factory(lb)
		slow = &delayedRegister{Provider: p, delay: 100 * time.Millisecond}
		return slow, err
	}

	start := time.Now()
	h.reconcile()
	took := time.Since(start)
	for i := 1; i <= 8; i++ {
		if !h.onLB(fmt.Sprintf("web-%d", i)) {
			t.Fatalf("web-%d not registered by the cycle", i)
		}
	}
	if most := slow.most.Load(); most < 4 || most > callWidth {
		t.Fatalf("at most %d Registers in flight at once (cycle took %s); want the 8 side by side, up to %d", most, took, callWidth)
	}
}

// Scenario (issue 12): web-1 turns healthy on every instance, the
// binding's status changes with it, and every status patch (pod or
// binding) takes 50 ms. Expectation: the binding's status is written
// while the gate write is under way, not after it: the cycle costs one API
// round trip, not two.
func TestTheStatusIsWrittenBesideTheGateWrites(t *testing.T) {
	h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", gateINI)...)
	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 0)
	slow := &slowStatusWrites{Client: h.c, delay: 50 * time.Millisecond}
	h.r.Client = slow

	h.reconcile()
	if g := h.gate("web-1"); g == nil || g.Status != "True" {
		t.Fatalf("web-1: gate %+v; want True", g)
	}
	b, _ := h.binding()
	if b.Status.Targets.Healthy != 1 {
		t.Fatalf("binding status %+v; want 1 healthy", b.Status.Targets)
	}
	if most := slow.most.Load(); most < 2 {
		t.Fatal("the binding's status was written only after the gate write")
	}
}

// Scenario (issue 12, a fill): the binding's targets change from one
// cycle to the next (web-2 registering, then healthy), 250 ms apart.
// Expectation: the first cycle writes the status; a later change of the
// counts alone is written by the first cycle statusCountsInterval after it
// (the cycle in between keeps its own requeue: counts never make a binding
// poll), while a change of the Ready condition is written at once.
func TestCountsOnlyStatusChangesAreCoalesced(t *testing.T) {
	h := newHarness(t, zv1.PreStopNone, objs(
		hPod("web-1", "10.1.0.1", true, "", gateINI),
		hPod("web-2", "10.1.0.2", true, "", nil))...)
	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 0)

	h.reconcile()
	b, _ := h.binding()
	if b.Status.Targets.Healthy != 1 || b.Status.Targets.Registering != 1 {
		t.Fatalf("first cycle: status %+v; want 1 healthy, 1 registering", b.Status.Targets)
	}

	h.onBoth("web-2", "10.1.0.2:8080", provider.HealthHealthy, 0)
	h.advance(250 * time.Millisecond)
	res := h.reconcile()
	if g := h.gate("web-2"); g == nil || g.Status != "True" {
		t.Fatalf("web-2: gate %+v; want True at once (gates are not coalesced)", g)
	}
	b, _ = h.binding()
	if b.Status.Targets.Healthy != 1 {
		t.Fatalf("counts written 250 ms after the last status write: %+v; want them held until %s after it", b.Status.Targets, statusCountsInterval)
	}
	if res.RequeueAfter != h.r.steady() {
		t.Fatalf("requeue after %s; want the steady %s: held counts never make a binding poll", res.RequeueAfter, h.r.steady())
	}

	h.advance(statusCountsInterval)
	h.reconcile()
	b, _ = h.binding()
	if b.Status.Targets.Healthy != 2 || b.Status.Targets.Registering != 0 {
		t.Fatalf("counts due: status %+v; want 2 healthy", b.Status.Targets)
	}

	h.w.mu.Lock()
	h.w.down[keyA] = true
	h.w.mu.Unlock()
	h.advance(100 * time.Millisecond)
	h.reconcile()
	b, _ = h.binding()
	if len(b.Status.Conditions) == 0 || b.Status.Conditions[0].Reason != "InstanceUnreachable" {
		t.Fatalf("Ready condition %+v 100 ms after the last write; want InstanceUnreachable written at once", b.Status.Conditions)
	}
}
