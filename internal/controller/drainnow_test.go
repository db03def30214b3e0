package controller

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider"
)

// drainNowHarness: web-1 (10.1.0.1) healthy on lb-a and lb-b with 2
// sessions each, and one cycle run (the address book knows its target).
func drainNowHarness(t *testing.T) *harness {
	h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", gateHealthy)...)
	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 2)
	h.reconcile()
	return h
}

func (h *harness) pod(name string) *corev1.Pod {
	h.t.Helper()
	var p corev1.Pod
	if err := h.c.Get(context.Background(), types.NamespacedName{Namespace: hNS, Name: name}, &p); err != nil {
		h.t.Fatal(err)
	}
	return &p
}

func (h *harness) healthOn(instance, pod string) provider.Health {
	if s := h.w.get(instance, hPool, hid(pod)); s != nil {
		return s.health
	}
	return ""
}

// Scenario (issue 12): web-1 is deleted; the informer hands the update to
// the pod handler. Expectation: its target is set to drain on lb-a and
// lb-b by the handler itself, before any cycle of the binding ran; the
// binding is enqueued first; the next cycle confirms (Draining verdict,
// 2 sessions left) and calls no drain again.
func TestADeletedPodIsDrainedWithoutACycle(t *testing.T) {
	h := drainNowHarness(t)
	h.r.drainSlots = make(chan struct{}, drainNowWidth)
	alive := h.pod("web-1")
	h.deletePod("web-1")
	q := priorityqueue.New[reconcile.Request]("drain-now-test")
	defer q.ShutDown()

	// controller-runtime cancels a handler's context when the handler
	// returns: the drain must not depend on it.
	hctx, done := context.WithCancel(context.Background())
	h.r.podEvents().Update(hctx, event.UpdateEvent{ObjectOld: alive, ObjectNew: h.pod("web-1")}, q)
	done()

	deadline := time.Now().Add(5 * time.Second)
	for h.healthOn(keyA, "web-1") != provider.HealthDraining || h.healthOn(keyB, "web-1") != provider.HealthDraining {
		if time.Now().After(deadline) {
			t.Fatalf("web-1 on lb-a %q, lb-b %q: want draining on both without a cycle", h.healthOn(keyA, "web-1"), h.healthOn(keyB, "web-1"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, priority, _ := q.GetWithPriority(); got.Name != hBinding || priority != wakePriority {
		t.Fatalf("queued %s at priority %d; want %s at %d", got, priority, hBinding, wakePriority)
	}
	drains := len(h.w.callsOf("drain"))
	h.reconcile()
	if v, ok := h.verdict("web-1"); !ok || v.Drained || v.Reason != ReasonDraining {
		t.Fatalf("verdict after the confirming cycle: %+v (found %v); want Draining (sessions left)", v, ok)
	}
	if n := len(h.w.callsOf("drain")); n != drains {
		t.Errorf("the confirming cycle made %d drain calls; want none (drained already on both)", n-drains)
	}
}

// Scenario: a cycle of the binding is between its observation and its
// provider calls when web-1 is deleted. Expectation: the direct drain
// waits for that cycle's calls (one writer of the binding's decisions at
// a time), then drains.
func TestADrainAtOnceWaitsForTheCycleInFlight(t *testing.T) {
	h := drainNowHarness(t)
	key := types.NamespacedName{Namespace: hNS, Name: hBinding}
	h.deletePod("web-1")
	unlock := h.r.lockCycle(key) // a cycle in flight
	done := make(chan struct{})
	go func() {
		h.r.drainNow(context.Background(), key, h.pod("web-1"))
		close(done)
	}()
	time.Sleep(100 * time.Millisecond)
	if got := h.healthOn(keyA, "web-1"); got != provider.HealthHealthy {
		t.Fatalf("web-1 on lb-a %q while the cycle is in flight; want healthy (untouched)", got)
	}
	unlock()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("direct drain still waiting after the cycle ended")
	}
	if h.healthOn(keyA, "web-1") != provider.HealthDraining || h.healthOn(keyB, "web-1") != provider.HealthDraining {
		t.Fatalf("web-1 on lb-a %q, lb-b %q: want draining on both", h.healthOn(keyA, "web-1"), h.healthOn(keyB, "web-1"))
	}
}

// Scenario: pods the binding's cycles never told the address book about
// at the pod's address. Expectation: no provider call; the cycle decides.
//   - web-2: no cycle ran since it appeared (the book does not know it);
//   - web-1: the book knows it at 10.1.0.1, the pod now says 10.1.0.9.
func TestADrainAtOnceLeavesUnknownTargetsToTheCycle(t *testing.T) {
	h := drainNowHarness(t)
	key := types.NamespacedName{Namespace: hNS, Name: hBinding}
	stranger := hPod("web-2", "10.1.0.2", true, "", nil)[0].(*corev1.Pod)
	moved := h.pod("web-1")
	moved.Status.PodIP = "10.1.0.9"
	for _, p := range []*corev1.Pod{stranger, moved} {
		h.r.drainNow(context.Background(), key, p)
	}
	if calls := h.w.callsOf("drain"); len(calls) > 0 {
		t.Fatalf("drain calls %v; want none", calls)
	}
}
