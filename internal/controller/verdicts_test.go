package controller

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/event"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider"
)

// pushingLB is the world's LB with verdicts pushed: the test sends the
// events its Watch reports.
type pushingLB struct {
	*worldLB
	events <-chan provider.Event
}

func (p *pushingLB) Capabilities() provider.Capabilities {
	c := p.worldLB.Capabilities()
	c.PushesVerdicts = true
	return c
}

func (p *pushingLB) Watch(ctx context.Context, fn func(provider.Event)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-p.events:
			fn(ev)
		}
	}
}

// pushing makes the harness's LB push the events sent on the returned
// channel, wired as SetupWithManager wires a manager's reconciler.
func (h *harness) pushing() chan<- provider.Event {
	ch := make(chan provider.Event)
	h.r.Providers.Factories[zv1.ProviderHAProxy] = func(lb *zv1.LoadBalancer) (provider.Provider, error) {
		p, err := h.w.factory(lb)
		if err != nil {
			return nil, err
		}
		return &pushingLB{worldLB: p.(*worldLB), events: ch}, nil
	}
	h.r.wakes = make(chan event.GenericEvent, 16)
	h.r.Providers.OnEvent = h.r.verdictEvent
	return ch
}

// woken waits for the wake-up of a binding by an event.
func (h *harness) woken(name string) {
	h.t.Helper()
	select {
	case ev := <-h.r.wakes:
		if ev.Object.GetName() != name || ev.Object.GetNamespace() != hNS {
			h.t.Fatalf("woke %s/%s, want %s/%s", ev.Object.GetNamespace(), ev.Object.GetName(), hNS, name)
		}
	case <-time.After(5 * time.Second):
		h.t.Fatalf("binding %s not woken within 5s", name)
	}
}

// Scenario: two bindings share pool be_web; web-1 (gated by web-edge) is
// registered and not yet passed. The other binding reads the pool; 5 ms
// later the load balancer marks web-1 UP; 5 ms after that web-edge cycles.
// Expectation: without an event (the control), web-edge takes the other
// binding's read, made before the verdict, and its gate stays False until
// a later poll; with the LB's verdict event, both bindings are woken, the
// shared read is stale, web-edge reads afresh and its gate opens at once.
// And the gate comes from the read, not from the event: an event for a
// target the read does not show healthy opens nothing.
func TestVerdictEventOpensTheGateWithoutWaitingForThePoll(t *testing.T) {
	for _, withEvent := range []bool{false, true} {
		name := "no event"
		if withEvent {
			name = "verdict event"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", nil)...)
			push := h.pushing()
			other := &zv1.TargetBinding{
				ObjectMeta: metav1.ObjectMeta{Namespace: hNS, Name: "other", Finalizers: []string{Finalizer}, Generation: 1},
				Spec: zv1.TargetBindingSpec{ServiceRef: zv1.ServiceReference{Name: "web", Port: intstr.FromString("http")},
					LoadBalancerRef: zv1.LoadBalancerReference{Name: hLB}, Pool: hPool},
			}
			if err := h.c.Create(context.Background(), other); err != nil {
				t.Fatal(err)
			}
			otherKey := types.NamespacedName{Namespace: hNS, Name: "other"}
			verdictEvent := provider.Event{Kind: provider.EventVerdict, Instance: "lb-a", Pool: hPool, Entry: string(hid("web-1")), Health: provider.HealthHealthy}
			wokenBoth := func() {
				t.Helper()
				got := map[string]bool{}
				for range 2 {
					select {
					case ev := <-h.r.wakes:
						got[ev.Object.GetName()] = true
					case <-time.After(5 * time.Second):
						t.Fatal("no wake-up for the pool's bindings")
					}
				}
				if !got[hBinding] || !got["other"] {
					t.Fatalf("woken: %v, want both bindings of the pool", got)
				}
			}
			h.onBoth("web-1", "10.1.0.1:8080", provider.HealthInitial, 0)
			h.reconcile()
			if _, err := h.r.Reconcile(context.Background(), reconcileRequest(otherKey)); err != nil {
				t.Fatal(err)
			}
			if withEvent {
				// An event the read does not back opens nothing.
				push <- verdictEvent
				wokenBoth()
				h.advance(5 * time.Millisecond)
				h.reconcile()
				if g := h.gate("web-1"); g == nil || g.Status != corev1.ConditionFalse {
					t.Fatalf("gate after an event the LB's status does not back: %+v, want False", g)
				}
			}

			h.advance(h.r.pending())
			if _, err := h.r.Reconcile(context.Background(), reconcileRequest(otherKey)); err != nil {
				t.Fatal(err)
			}
			h.advance(5 * time.Millisecond)
			h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 0)
			if withEvent {
				push <- verdictEvent
				wokenBoth()
			}
			h.advance(5 * time.Millisecond)
			h.reconcile()
			g := h.gate("web-1")
			if withEvent && (g == nil || g.Status != corev1.ConditionTrue) {
				t.Fatalf("gate right after the verdict event: %+v, want True", g)
			}
			if !withEvent && (g == nil || g.Status != corev1.ConditionFalse) {
				t.Fatalf("gate on the shared read made before the verdict, without an event: %+v, want False (until a later poll)", g)
			}
		})
	}
}

// Scenario: web-1 waits for the LB's verdict. Expectation: while every
// instance's event stream is up, the binding resyncs at the pushed
// interval (the event wakes it); when one instance's stream is lost, the
// binding is woken and polls at the pending interval again; when the
// stream is back it is woken once more (events may have been missed).
func TestBindingPollsWhileAStreamIsDown(t *testing.T) {
	h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", nil)...)
	push := h.pushing()
	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthInitial, 0)
	if res := h.reconcile(); res.RequeueAfter != h.r.pending() {
		t.Fatalf("before any stream is up: requeue after %s, want the pending interval %s", res.RequeueAfter, h.r.pending())
	}
	for _, in := range []string{"lb-a", "lb-b"} {
		push <- provider.Event{Kind: provider.EventStreamUp, Instance: in}
		h.woken(hBinding)
	}
	if !h.r.Providers.Pushing(hLB) {
		t.Fatal("Pushing is false with both streams up")
	}
	if res := h.reconcile(); res.RequeueAfter != h.r.pushedPending() {
		t.Fatalf("streams up: requeue after %s, want the pushed interval %s", res.RequeueAfter, h.r.pushedPending())
	}

	push <- provider.Event{Kind: provider.EventStreamDown, Instance: "lb-b"}
	h.woken(hBinding)
	if res := h.reconcile(); res.RequeueAfter != h.r.pending() {
		t.Fatalf("lb-b's stream down: requeue after %s, want the pending interval %s", res.RequeueAfter, h.r.pending())
	}
	push <- provider.Event{Kind: provider.EventStreamUp, Instance: "lb-b"}
	h.woken(hBinding)
	if res := h.reconcile(); res.RequeueAfter != h.r.pushedPending() {
		t.Fatalf("lb-b's stream back: requeue after %s, want the pushed interval %s", res.RequeueAfter, h.r.pushedPending())
	}

	// A draining target is polled whatever the streams say: no LB pushes
	// "drained".
	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 1)
	h.reconcile()
	h.deletePod("web-1")
	if res := h.reconcile(); res.RequeueAfter != h.r.pending() {
		t.Fatalf("draining with streams up: requeue after %s, want the pending interval %s", res.RequeueAfter, h.r.pending())
	}
}

// Scenario: web-1 is healthy on both instances, its gate open: nothing is
// pending. The LB pushes verdicts. Expectation: the leader's binding
// resyncs at the steady cycle while some instance's stream is not known up,
// and slowSteadyFactor times slower while every stream is up (a verdict, a
// lost stream or a reload wakes it at once); when a stream is lost the
// binding is woken and resyncs at the steady cycle again; a pod deletion
// still makes it pending. At 1,000 bindings the 5 s resync filled the work
// queue of 4 workers with cycles that found nothing.
func TestABindingAtRestBehindAPushingLBResyncsSlowly(t *testing.T) {
	h := newHarness(t, zv1.PreStopNone, hPod("web-1", "10.1.0.1", true, "", gateHealthy)...)
	h.r.SteadyInterval = 5 * time.Second
	push := h.pushing()
	h.onBoth("web-1", "10.1.0.1:8080", provider.HealthHealthy, 1)
	if got := h.reconcile().RequeueAfter; got != 5*time.Second {
		t.Fatalf("at rest, no stream up yet: requeue after %s, want the steady 5s", got)
	}
	for _, in := range []string{"lb-a", "lb-b"} {
		push <- provider.Event{Kind: provider.EventStreamUp, Instance: in}
		h.woken(hBinding)
	}
	if got := h.reconcile().RequeueAfter; got != 30*time.Second {
		t.Fatalf("at rest, both streams up: requeue after %s, want 30s", got)
	}
	push <- provider.Event{Kind: provider.EventStreamDown, Instance: "lb-a"}
	h.woken(hBinding)
	if got := h.reconcile().RequeueAfter; got != 5*time.Second {
		t.Fatalf("at rest, lb-a's stream lost: requeue after %s, want the steady 5s", got)
	}
	push <- provider.Event{Kind: provider.EventStreamUp, Instance: "lb-a"}
	h.woken(hBinding)
	if got := h.reconcile().RequeueAfter; got != 30*time.Second {
		t.Fatalf("at rest, lb-a's stream back: requeue after %s, want 30s", got)
	}
	h.deletePod("web-1")
	if got := h.reconcile().RequeueAfter; got != h.r.pending() {
		t.Fatalf("web-1 deleting, streams up: requeue after %s, want the pending cycle %s", got, h.r.pending())
	}
}
