package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/controller"
	"zerodrop.dev/zerodrop/provider"
)

func waitEvent(t *testing.T, ns, pod, reason, kind string) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s Event %s on %s", kind, reason, pod), func() (bool, string) {
		var evs eventsv1.EventList
		if err := suite.c.List(context.Background(), &evs, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range evs.Items {
			if e.Regarding.Name == pod && (e.Reason == reason || strings.Contains(e.Note, reason)) && e.Type == kind {
				return true, ""
			}
			seen = append(seen, e.Type+"/"+e.Reason)
		}
		return false, fmt.Sprint(seen)
	})
}

func TestGateTimeoutFailOpen(t *testing.T) {
	requireSuite(t)
	ctx := context.Background()
	ns := newNamespace(t, true)
	b := createApp(t, ns, "web", zv1.PreStopNone)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := suite.c.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
			return err
		}
		b.Spec.Gate = zv1.GateSpec{Timeout: &metav1.Duration{Duration: time.Second}, OnTimeout: zv1.FailOpen}
		return suite.c.Update(ctx, b)
	})
	if err != nil {
		t.Fatal(err)
	}
	startPod(t, ns, "web-1", "web", "10.1.0.41")
	// The fake LB never reports the target healthy.
	waitGate(t, ns, "web-1", b.Name, corev1.ConditionTrue, controller.ReasonGateTimeoutOpen)
	waitEvent(t, ns, "web-1", controller.ReasonGateTimeoutOpen, corev1.EventTypeWarning)
}

func TestReloadReRegisters(t *testing.T) {
	requireSuite(t)
	ns := newNamespace(t, true)
	b := createApp(t, ns, "web", zv1.PreStopNone)
	id := controller.TargetID(ns, b.Name, "web-1")
	startPod(t, ns, "web-1", "web", "10.1.0.51")
	eventually(t, "registration", func() (bool, string) { return suite.lb.called("register", pool, id), "" })
	suite.lb.setHealth(pool, id, "", provider.HealthHealthy)
	waitGate(t, ns, "web-1", b.Name, corev1.ConditionTrue, controller.ReasonHealthy)
	before := suite.lb.registrations(pool, id)

	suite.lb.reload("lb-b")
	eventually(t, "re-registration on the reloaded instance", func() (bool, string) {
		n := suite.lb.registrations(pool, id)
		return n > before, fmt.Sprintf("%d register calls", n)
	})
	// Re-registered targets start unchecked on lb-b, which keeps them out of
	// its rotation by itself; the gate of the Ready pod stays True (one-way
	// gate), or the whole Service would turn NotReady.
	if c := gate(t, ns, "web-1", b.Name); c == nil || c.Status != corev1.ConditionTrue || c.Reason != controller.ReasonHealthy {
		t.Fatalf("gate after one instance's reload: %+v; want it kept True", c)
	}
	suite.lb.setHealth(pool, id, "", provider.HealthHealthy)
	waitGate(t, ns, "web-1", b.Name, corev1.ConditionTrue, controller.ReasonHealthy)
}

// Scenario: LoadBalancer X is deleted while binding web-lb2 uses it, with
// web-1 registered and not yet healthy. Expectation: X stays (finalizer),
// its Ready condition and a Warning Event name the binding, and web-1's
// gate is not released; once the binding is deleted (it drains and removes
// its targets, then releases web-1's gate as never verified, with a
// Warning), X goes too.
func TestLoadBalancerDeletionWaitsForItsBindings(t *testing.T) {
	requireSuite(t)
	ctx := context.Background()
	ns := newNamespace(t, true)
	lb := &zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Name: ns + "-lb"}, Spec: zv1.LoadBalancerSpec{
		Provider: zv1.ProviderHAProxy, Instances: []zv1.LoadBalancerInstance{{Name: "lb-a", Socket: "/run/a.sock"}}}}
	if err := suite.c.Create(ctx, lb); err != nil {
		t.Fatal(err)
	}
	b := createApp(t, ns, "web", zv1.PreStopNone)
	b.Spec.LoadBalancerRef.Name = lb.Name
	// loadBalancerRef is immutable: bind through a second binding instead.
	b2 := &zv1.TargetBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-lb2"}, Spec: b.Spec}
	b2.Spec.Pool = "be_web2"
	if err := suite.c.Delete(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := suite.c.Create(ctx, b2); err != nil {
		t.Fatal(err)
	}
	eventually(t, "webhook sees web-lb2", func() (bool, string) {
		p := newPod(ns, "probe", map[string]string{"app": "web"})
		if err := suite.c.Create(ctx, p, client.DryRunAll); err != nil {
			return false, err.Error()
		}
		for _, g := range p.Spec.ReadinessGates {
			if string(g.ConditionType) == zv1.GateConditionType("web-lb2") {
				return true, ""
			}
		}
		return false, fmt.Sprint(p.Spec.ReadinessGates)
	})
	startPod(t, ns, "web-1", "web", "10.1.0.61")
	waitGate(t, ns, "web-1", "web-lb2", corev1.ConditionFalse, "INI")
	eventually(t, "LoadBalancer finalizer", func() (bool, string) {
		var got zv1.LoadBalancer
		if err := suite.c.Get(ctx, client.ObjectKeyFromObject(lb), &got); err != nil {
			return false, err.Error()
		}
		return len(got.Finalizers) > 0, fmt.Sprint(got.Finalizers)
	})

	if err := suite.c.Delete(ctx, lb); err != nil {
		t.Fatal(err)
	}
	eventually(t, "LoadBalancer deletion blocked, naming the binding", func() (bool, string) {
		var got zv1.LoadBalancer
		if err := suite.c.Get(ctx, client.ObjectKeyFromObject(lb), &got); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(got.Status.Conditions, controller.ConditionReady)
		return c != nil && c.Reason == controller.ReasonDeletionBlocked && strings.Contains(c.Message, ns+"/web-lb2"), fmt.Sprintf("%+v", c)
	})
	waitEvent(t, "default", lb.Name, controller.ReasonDeletionBlocked, corev1.EventTypeWarning)
	time.Sleep(300 * time.Millisecond) // some cycles
	if c := gate(t, ns, "web-1", "web-lb2"); c == nil || c.Status != corev1.ConditionFalse {
		t.Fatalf("gate of web-1 while its LoadBalancer's deletion waits: %+v, want still False", c)
	}

	if err := suite.c.Delete(ctx, b2); err != nil {
		t.Fatal(err)
	}
	waitGate(t, ns, "web-1", "web-lb2", corev1.ConditionTrue, controller.ReasonBindingDeletedUnverified)
	waitEvent(t, ns, "web-1", controller.ReasonBindingDeletedUnverified, corev1.EventTypeWarning)
	eventually(t, "LoadBalancer gone after its last binding", func() (bool, string) {
		err := suite.c.Get(ctx, client.ObjectKeyFromObject(lb), &zv1.LoadBalancer{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

// Scenario: binding web-edge is deleted mid-rollout: web-1 is healthy with
// two sessions open, web-2 is being deleted and its preStop hook waits on
// the drain endpoint. Expectation: both are put in drain and nothing is
// removed while sessions are open; the hook is held and the binding kept;
// once the sessions end, the hook gets 200, the targets are removed, web-1's
// gate is released as BindingDeleted, and the binding goes.
func TestBindingDeletionDrainsFirst(t *testing.T) {
	requireSuite(t)
	ctx := context.Background()
	ns := newNamespace(t, true)
	b := createApp(t, ns, "web", zv1.PreStopHTTPGet)
	id1, id2 := controller.TargetID(ns, b.Name, "web-1"), controller.TargetID(ns, b.Name, "web-2")
	startPod(t, ns, "web-1", "web", "10.1.0.71")
	p2 := startPod(t, ns, "web-2", "web", "10.1.0.72")
	eventually(t, "registration", func() (bool, string) {
		return suite.lb.called("register", pool, id1) && suite.lb.called("register", pool, id2), ""
	})
	suite.lb.setHealth(pool, id1, "", provider.HealthHealthy)
	suite.lb.setHealth(pool, id2, "", provider.HealthHealthy)
	waitGate(t, ns, "web-1", b.Name, corev1.ConditionTrue, controller.ReasonHealthy)
	waitGate(t, ns, "web-2", b.Name, corev1.ConditionTrue, controller.ReasonHealthy)
	suite.lb.setSessions(pool, id1, 2)
	suite.lb.setSessions(pool, id2, 1)

	if err := suite.c.Delete(ctx, p2); err != nil {
		t.Fatal(err)
	}
	if err := suite.c.Delete(ctx, b); err != nil {
		t.Fatal(err)
	}
	hook := p2.Spec.Containers[0].Lifecycle.PreStop.HTTPGet
	answered := make(chan int, 1)
	go func() {
		code, _, _ := drainRequest(hook.Path[:strings.Index(hook.Path, "?")] + "?wait=20s")
		answered <- code
	}()
	eventually(t, "SetDraining of both targets", func() (bool, string) {
		return suite.lb.called("drain", pool, id1) && suite.lb.called("drain", pool, id2), fmt.Sprint(suite.lb.callsOf("drain"))
	})
	select {
	case code := <-answered:
		t.Fatalf("hook of web-2 answered %d while it had a session open", code)
	case <-time.After(500 * time.Millisecond):
	}
	if !suite.lb.has(pool, id1) || !suite.lb.has(pool, id2) {
		t.Fatalf("targets removed while sessions were open")
	}
	if err := suite.c.Get(ctx, client.ObjectKeyFromObject(b), &zv1.TargetBinding{}); err != nil {
		t.Fatalf("binding finalized while its targets drain: %v", err)
	}
	suite.lb.setSessions(pool, id1, 0)
	suite.lb.setSessions(pool, id2, 0)
	select {
	case code := <-answered:
		if code != http.StatusOK {
			t.Fatalf("hook of web-2 after its drain: %d, want 200", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("hook of web-2 not answered after its drain")
	}
	eventually(t, "targets removed", func() (bool, string) { return !suite.lb.has(pool, id1) && !suite.lb.has(pool, id2), "" })
	waitGate(t, ns, "web-1", b.Name, corev1.ConditionTrue, controller.ReasonBindingDeleted)
	eventually(t, "binding finalized", func() (bool, string) {
		err := suite.c.Get(ctx, client.ObjectKeyFromObject(b), &zv1.TargetBinding{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	_ = suite.c.Delete(ctx, p2, client.GracePeriodSeconds(0))
}

// Scenario: pod web-1 exists in an opted-in namespace before the binding
// that selects it (so the webhook gave it no gate). Expectation: a Warning
// GateMissing Event on the pod.
func TestUngatedPodReported(t *testing.T) {
	requireSuite(t)
	ns := newNamespace(t, true)
	startPod(t, ns, "web-1", "web", "10.1.0.81")
	createApp(t, ns, "web", zv1.PreStopNone)
	waitEvent(t, ns, "web-1", controller.ReasonGateMissing, corev1.EventTypeWarning)
}

// setContainersReady plays the kubelet when a readinessProbe starts failing
// or passes again.
func setContainersReady(t *testing.T, p *corev1.Pod, ready bool) {
	t.Helper()
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	patch, _ := json.Marshal(map[string]any{"status": map[string]any{
		"conditions": []corev1.PodCondition{{Type: corev1.ContainersReady, Status: st, LastTransitionTime: metav1.Now()}},
	}})
	if err := suite.c.Status().Patch(context.Background(), p, client.RawPatch(types.StrategicMergePatchType, patch)); err != nil {
		t.Fatal(err)
	}
}

// Scenario (AWS LBC behaviour): a Ready pod's readinessProbe fails. The
// controller takes its server out of rotation (drain, not deregister) and,
// once the pod is ContainersReady again and a fresh read of it from the API
// server shows it is not being deleted, puts it back in; the gate stays True.
func TestUnreadyPodLeavesRotationAndComesBack(t *testing.T) {
	requireSuite(t)
	ns := newNamespace(t, true)
	b := createApp(t, ns, "web", zv1.PreStopNone)
	id := controller.TargetID(ns, b.Name, "web-1")
	p := startPod(t, ns, "web-1", "web", "10.1.0.61")
	eventually(t, "registration", func() (bool, string) { return suite.lb.called("register", pool, id), "" })
	suite.lb.setHealth(pool, id, "", provider.HealthHealthy)
	waitGate(t, ns, "web-1", b.Name, corev1.ConditionTrue, controller.ReasonHealthy)

	setContainersReady(t, p, false)
	eventually(t, "out of rotation while unready", func() (bool, string) { return suite.lb.called("drain", pool, id), "no drain call" })
	if suite.lb.called("deregister", pool, id) {
		t.Fatalf("an unready pod was deregistered; want it drained and kept")
	}
	before := suite.lb.registrations(pool, id)
	setContainersReady(t, p, true)
	eventually(t, "back in rotation", func() (bool, string) {
		n := suite.lb.registrations(pool, id)
		return n > before, fmt.Sprintf("%d register calls", n)
	})
	if c := gate(t, ns, "web-1", b.Name); c == nil || c.Status != corev1.ConditionTrue {
		t.Fatalf("gate %+v; want it kept True", c)
	}
}

// Scenario (StatefulSet): web-1 is deleted while its server still holds a
// long connection, and re-created under the same name with another IP. The
// old incarnation's server is drained and removed once its sessions end;
// only then is the new address registered, and the new pod's gate waits
// for the LB's verdict on its own server.
func TestSameNameReplacementWaitsForThePreviousServer(t *testing.T) {
	requireSuite(t)
	ctx := context.Background()
	ns := newNamespace(t, true)
	b := createApp(t, ns, "web", zv1.PreStopNone)
	id := controller.TargetID(ns, b.Name, "web-1")
	old := startPod(t, ns, "web-1", "web", "10.1.0.71")
	eventually(t, "registration", func() (bool, string) { return suite.lb.called("register", pool, id), "" })
	suite.lb.setHealth(pool, id, "", provider.HealthHealthy)
	waitGate(t, ns, "web-1", b.Name, corev1.ConditionTrue, controller.ReasonHealthy)
	suite.lb.setSessions(pool, id, 1)
	if err := suite.c.Delete(ctx, old, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	addr := func() string {
		s, _ := suite.lb.Status(ctx, provider.Pool{Name: pool})
		return s.Instances[0].Targets[id].Addr
	}
	eventually(t, "old pod gone", func() (bool, string) {
		var p corev1.Pod
		err := suite.c.Get(ctx, client.ObjectKeyFromObject(old), &p)
		return err != nil, fmt.Sprint(err)
	})
	startPod(t, ns, "web-1", "web", "10.1.0.72")
	waitGate(t, ns, "web-1", b.Name, corev1.ConditionFalse, controller.ReasonReplacing)
	if a := addr(); a != "10.1.0.71:8080" {
		t.Fatalf("LB has %q while the previous server holds a session; want it kept at 10.1.0.71:8080", a)
	}
	suite.lb.setSessions(pool, id, 0)
	eventually(t, "new address registered", func() (bool, string) { return addr() == "10.1.0.72:8080", addr() })
	suite.lb.setHealth(pool, id, "", provider.HealthHealthy)
	waitGate(t, ns, "web-1", b.Name, corev1.ConditionTrue, controller.ReasonHealthy)
}

// rotationEvents returns the pod's Events of one reason.
func rotationEvents(t *testing.T, ns, pod, reason string) []eventsv1.Event {
	t.Helper()
	var evs eventsv1.EventList
	if err := suite.c.List(context.Background(), &evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range evs.Items {
		if e.Regarding.Name == pod && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// Scenario: a Ready pod's readinessProbe fails and passes again, then an
// operator takes it out of the Service by its labels. Each time the
// controller takes it out of rotation or puts it back, the pod gets a
// Normal Event (OutOfRotation, BackInRotation) related to the binding,
// once per transition: the cycles while it lasts add nothing (a repeat
// would make a new Event or turn the first into a series).
func TestRotationEventsOncePerTransition(t *testing.T) {
	requireSuite(t)
	ctx := context.Background()
	ns := newNamespace(t, true)
	b := createApp(t, ns, "web", zv1.PreStopNone)
	id := controller.TargetID(ns, b.Name, "web-1")
	p := startPod(t, ns, "web-1", "web", "10.1.0.101")
	eventually(t, "registration", func() (bool, string) { return suite.lb.called("register", pool, id), "" })
	suite.lb.setHealth(pool, id, "", provider.HealthHealthy)
	waitGate(t, ns, "web-1", b.Name, corev1.ConditionTrue, controller.ReasonHealthy)

	setContainersReady(t, p, false)
	waitEvent(t, ns, "web-1", controller.ReasonOutOfRotation, corev1.EventTypeNormal)
	setContainersReady(t, p, true)
	waitEvent(t, ns, "web-1", controller.ReasonBackInRotation, corev1.EventTypeNormal)
	suite.lb.setHealth(pool, id, "", provider.HealthHealthy)
	time.Sleep(2 * time.Second) // several cycles
	for _, reason := range []string{controller.ReasonOutOfRotation, controller.ReasonBackInRotation} {
		evs := rotationEvents(t, ns, "web-1", reason)
		if len(evs) != 1 || evs[0].Series != nil {
			t.Fatalf("%s Events %+v; want one, emitted once", reason, evs)
		}
		if e := evs[0]; e.Related == nil || e.Related.Kind != "TargetBinding" || e.Related.Name != b.Name {
			t.Fatalf("%s Event related to %+v; want binding %s", reason, e.Related, b.Name)
		}
	}

	// Taken out of the Service: the EndpointSlice controller drops it.
	patch := []byte(`{"metadata":{"labels":{"app":"web-debug"}}}`)
	if err := suite.c.Patch(ctx, p, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatal(err)
	}
	if err := suite.c.DeleteAllOf(ctx, &discoveryv1.EndpointSlice{}, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a second OutOfRotation, saying why", func() (bool, string) {
		evs := rotationEvents(t, ns, "web-1", controller.ReasonOutOfRotation)
		for _, e := range evs {
			if strings.Contains(e.Note, "selector") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d Events", len(evs))
	})
	time.Sleep(2 * time.Second) // several cycles
	evs := rotationEvents(t, ns, "web-1", controller.ReasonOutOfRotation)
	for _, e := range evs {
		if e.Series != nil {
			t.Fatalf("OutOfRotation emitted %d times in a row: %q", e.Series.Count, e.Note)
		}
	}
	if len(evs) != 2 {
		t.Fatalf("%d OutOfRotation Events; want two, one per transition", len(evs))
	}
	if n := len(rotationEvents(t, ns, "web-1", controller.ReasonBackInRotation)); n != 1 {
		t.Fatalf("%d BackInRotation Events while de-selected; want the first only", n)
	}
}
