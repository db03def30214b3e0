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

// slowStatusWrites is a client whose status patches take a while, as they
// do on a busy API server, and that counts how many are in flight at once.
type slowStatusWrites struct {
	client.Client
	delay          time.Duration
	inFlight, most atomic.Int32
}

func (c *slowStatusWrites) Status() client.SubResourceWriter {
	return slowStatusWriter{c.Client.Status(), c}
}

type slowStatusWriter struct {
	client.SubResourceWriter
	c *slowStatusWrites
}

func (w slowStatusWriter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	n := w.c.inFlight.Add(1)
	defer w.c.inFlight.Add(-1)
	for {
		m := w.c.most.Load()
		if n <= m || w.c.most.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(w.c.delay)
	return w.SubResourceWriter.Patch(ctx, obj, patch, opts...)
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
