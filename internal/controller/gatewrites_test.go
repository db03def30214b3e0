package controller

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider"
)

// slowStatusWrites is a client whose status patches take a while, as they
// do on a busy API server, and that counts how many are in flight at once;
// patched, when set, is closed after the first patch.
type slowStatusWrites struct {
	client.Client
	delay          time.Duration
	inFlight, most atomic.Int32
	patched        chan struct{}
	once           sync.Once
}

func (c *slowStatusWrites) Status() client.SubResourceWriter {
	return slowStatusWriter{c.Client.Status(), c}
}

type slowStatusWriter struct {
	client.SubResourceWriter
	c *slowStatusWrites
}

func (w slowStatusWriter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	raiseTo(&w.c.most, w.c.inFlight.Add(1))
	defer w.c.inFlight.Add(-1)
	time.Sleep(w.c.delay)
	err := w.SubResourceWriter.Patch(ctx, obj, patch, opts...)
	if w.c.patched != nil {
		w.c.once.Do(func() { close(w.c.patched) })
	}
	return err
}

// Scenario (issue 12, the scale profile): 8 pods of one binding turn
// healthy on every instance at once, and each pod status patch takes 50 ms
// (a busy API server). Expectation: one cycle opens all 8 gates, writing
// them side by side rather than one after the other, so the cycle (and
// the worker every other binding waits for) takes about one round trip,
// not 8.
func TestACycleWritesItsGatesSideBySide(t *testing.T) {
	var pods [][]client.Object
	for i := 1; i <= 8; i++ {
		pods = append(pods, hPod(fmt.Sprintf("web-%d", i), fmt.Sprintf("10.1.0.%d", i), true, "", gateINI))
	}
	h := newHarness(t, zv1.PreStopNone, objs(pods...)...)
	slow := &slowStatusWrites{Client: h.c, delay: 50 * time.Millisecond}
	h.r.Client = slow
	for i := 1; i <= 8; i++ {
		h.onBoth(fmt.Sprintf("web-%d", i), fmt.Sprintf("10.1.0.%d:8080", i), provider.HealthHealthy, 0)
	}

	start := time.Now()
	h.reconcile()
	took := time.Since(start)
	for i := 1; i <= 8; i++ {
		if g := h.gate(fmt.Sprintf("web-%d", i)); g == nil || g.Status != "True" || g.Reason != ReasonHealthy {
			t.Fatalf("web-%d: gate %+v after the cycle; want True (%s)", i, g, ReasonHealthy)
		}
	}
	if most := slow.most.Load(); most < 4 {
		t.Fatalf("at most %d gate writes in flight at once (cycle took %s); want the 8 written side by side (up to %d at once)", most, took, gateWriteWidth)
	}
}

// slowRegister is a provider whose Register waits until a pod status patch
// has been made (or a second has passed), as a Register to a busy load
// balancer takes its time.
type slowRegister struct {
	provider.Provider
	patched chan struct{}
	waited  atomic.Bool
}

func (p *slowRegister) Register(ctx context.Context, pl provider.Pool, t provider.Target) error {
	select {
	case <-p.patched:
	case <-time.After(time.Second):
		p.waited.Store(true)
	}
	return p.Provider.Register(ctx, pl, t)
}

// Scenario (issue 12, a fill): web-1 is healthy on every instance, and in
// the same cycle web-2, new, is registered by a load balancer whose
// Register is slow. Expectation: web-1's gate is written while web-2's
// Register is still under way, not after it (the slow Register sees the
// patch before it returns); both plans are carried out.
func TestAGateTheLBOpenedDoesNotWaitForRegistrations(t *testing.T) {
	h := newHarness(t, zv1.PreStopNone, objs(
		hPod("web-1", "10.1.0.1", true, "", gateINI),
		hPod("web-2", "10.1.0.2", true, "", nil))...)
	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 0)
	patched := make(chan struct{})
	h.r.Client = &slowStatusWrites{Client: h.c, patched: patched}
	var slow *slowRegister
	h.r.Providers.Factories[zv1.ProviderHAProxy] = func(lb *zv1.LoadBalancer) (provider.Provider, error) {
		p, err := h.w.factory(lb)
		slow = &slowRegister{Provider: p, patched: patched}
		return slow, err
	}

	h.reconcile()
	if g := h.gate("web-1"); g == nil || g.Status != "True" {
		t.Fatalf("web-1: gate %+v after the cycle; want True", g)
	}
	if slow.waited.Load() {
		t.Fatal("web-1's gate was written only after web-2's Register returned")
	}
	if !h.onLB("web-2") {
		t.Fatal("web-2 was not registered")
	}
}

// raiseTo raises most to n if n is more: the most calls seen in flight.
func raiseTo(most *atomic.Int32, n int32) {
	for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
	}
}
