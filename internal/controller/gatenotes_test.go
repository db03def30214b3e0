package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider"
)

// Scenario (issue 12, a rollout at 1,000 pods over 100 bindings): web-1
// turns ContainersReady and is registered; 250 ms later the load balancer
// reports it INI (checks under way); 2 s after the first gate write it
// still does; 250 ms after that it reports it healthy. Expectation: the
// first cycle writes the gate False (NotRegistered); the second, 250 ms
// later, does not rewrite it for the new reason (a pod status patch, an
// Event and another cycle for a note), and emits no Event; the first cycle
// gateNoteInterval after the first write writes INI; the gate turns True
// at once on the healthy verdict, 250 ms after the INI write.
func TestAFalseGatesNoteIsRewrittenAtMostEveryInterval(t *testing.T) {
	h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", nil)...)

	h.reconcile()
	if g := h.gate("web-1"); g == nil || g.Status != "False" || g.Reason != ReasonNotRegistered {
		t.Fatalf("first cycle: gate %+v; want False NotRegistered", g)
	}
	if !h.onLB("web-1") {
		t.Fatal("web-1 not registered by the first cycle")
	}
	h.eventsSeen() // the first write's

	h.advance(250 * time.Millisecond)
	h.reconcile()
	if g := h.gate("web-1"); g == nil || g.Reason != ReasonNotRegistered {
		t.Fatalf("250 ms after the first write, the LB reporting INI: gate %+v; want NotRegistered kept (a note, held for %s)", g, gateNoteInterval)
	}
	for _, e := range h.eventsSeen() {
		if strings.Contains(e, "GateFalse") {
			t.Fatalf("a held note emitted an Event: %s", e)
		}
	}

	h.advance(gateNoteInterval)
	h.reconcile()
	if g := h.gate("web-1"); g == nil || g.Status != "False" || g.Reason != "INI" {
		t.Fatalf("%s after the first write: gate %+v; want False INI written", gateNoteInterval+250*time.Millisecond, g)
	}

	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 0)
	h.advance(250 * time.Millisecond)
	h.reconcile()
	if g := h.gate("web-1"); g == nil || g.Status != "True" || g.Reason != ReasonHealthy {
		t.Fatalf("healthy 250 ms after the last write: gate %+v; want True at once", g)
	}
}

// Scenario: web-1's gate is False (INI, written by this process) when
// its gate timeout passes 100 ms later. Expectation: GateTimeoutFailClosed
// is written at once: a reason someone has to act on is no note.
func TestAGateTimeoutIsWrittenAtOnce(t *testing.T) {
	h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", nil)...)
	h.reconcile()
	h.advance(250 * time.Millisecond)
	h.reconcile() // INI held
	h.advance(zv1.DefaultGateTimeout)
	h.reconcile()
	if g := h.gate("web-1"); g == nil || g.Reason != ReasonGateTimeoutClosed {
		t.Fatalf("gate timeout passed: gate %+v; want GateTimeoutFailClosed at once", g)
	}
}

// Scenario: as above, behind a LoadBalancer that pushes verdicts (both
// streams up, so a binding waiting only for verdicts polls every 30 s):
// the INI note is held 250 ms after the first write. Expectation: the
// cycle requeues by the end of the hold (1.75 s), not at the slow pushed
// interval: a held note is written within the hold, whatever the binding
// waits for (the envtest TestGateOpensOnAPushedVerdict waited 30 s for it).
func TestAHeldNoteRequeuesByTheEndOfTheHold(t *testing.T) {
	h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", nil)...)
	push := h.pushing()
	h.r.PushedPendingInterval = 30 * time.Second
	h.reconcile() // builds the provider, whose watch then reports
	if g := h.gate("web-1"); g == nil || g.Reason != ReasonNotRegistered {
		t.Fatalf("first cycle: gate %+v; want False NotRegistered", g)
	}
	for _, in := range []string{"lb-a", "lb-b"} {
		push <- provider.Event{Kind: provider.EventStreamUp, Instance: in}
		h.woken(hBinding)
	}
	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthInitial, 0)
	h.advance(250 * time.Millisecond)
	res := h.reconcile()
	if g := h.gate("web-1"); g == nil || g.Reason != ReasonNotRegistered {
		t.Fatalf("250 ms later, INI: gate %+v; want the note held", g)
	}
	if want := gateNoteInterval - 250*time.Millisecond; res.RequeueAfter <= 0 || res.RequeueAfter > want {
		t.Fatalf("held note: requeue after %s, want at most %s (the hold's end)", res.RequeueAfter, want)
	}
	h.advance(res.RequeueAfter)
	h.reconcile()
	if g := h.gate("web-1"); g == nil || g.Status != "False" || g.Reason != "INI" {
		t.Fatalf("at the hold's end: gate %+v; want False INI written", g)
	}
}

// Scenario: the pool has room for one server; web-1 holds it. web-2's
// gate is written False (WaitingForContainers) while its containers
// start; 250 ms later they are ready, the cycle plans NotRegistered (a
// note, held) and its Register fails: the pool is full. Expectation:
// PoolFull is written at once, though holdGateNotes held the note it
// replaced (the lab's fault campaign saw no PoolFull on the surge pod when
// writeGate honoured a hold decided before the call).
func TestPoolFullReplacingAHeldNoteIsWrittenAtOnce(t *testing.T) {
	h := newHarness(t, zv1.PreStopNone, objs(hPod("web-1", "10.1.0.1", true, "", gateHealthy), hPod("web-2", "10.1.0.2", true, "", nil))...)
	h.w.capacity = 1
	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 0)
	setContainersReady := func(status corev1.ConditionStatus) {
		t.Helper()
		var p corev1.Pod
		if err := h.c.Get(context.Background(), types.NamespacedName{Namespace: hNS, Name: "web-2"}, &p); err != nil {
			t.Fatal(err)
		}
		for i := range p.Status.Conditions {
			if p.Status.Conditions[i].Type == corev1.ContainersReady {
				p.Status.Conditions[i].Status = status
			}
		}
		if err := h.c.Status().Update(context.Background(), &p); err != nil {
			t.Fatal(err)
		}
	}
	setContainersReady(corev1.ConditionFalse)
	h.reconcile()
	if g := h.gate("web-2"); g == nil || g.Reason != ReasonWaitingContainers {
		t.Fatalf("containers starting: gate %+v; want False %s", g, ReasonWaitingContainers)
	}
	setContainersReady(corev1.ConditionTrue)
	h.advance(250 * time.Millisecond)
	h.reconcile()
	if g := h.gate("web-2"); g == nil || g.Status != "False" || g.Reason != ReasonPoolFull {
		t.Fatalf("containers ready 250 ms after the first write, the pool full: gate %+v; want False %s at once", g, ReasonPoolFull)
	}
}
