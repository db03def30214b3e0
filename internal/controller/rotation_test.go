package controller

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/drain"
	"zerodrop.dev/zerodrop/provider"
)

// rotationLB is a two-instance load balancer holding one target: Register
// puts it in rotation (healthy), SetDraining takes it out.
type rotationLB struct {
	haproxyLike
	health provider.Health
}

func (l *rotationLB) Register(context.Context, provider.Pool, provider.Target) error {
	l.health = provider.HealthHealthy
	return nil
}
func (l *rotationLB) SetDraining(context.Context, provider.Pool, provider.Target) error {
	l.health = provider.HealthDrained
	return nil
}
func (l *rotationLB) Deregister(context.Context, provider.Pool, provider.Target) error {
	l.health = ""
	return nil
}
func (l *rotationLB) Status(context.Context, provider.Pool) (provider.PoolStatus, error) {
	return pool(id, l.health, l.health, 0), nil
}

// Scenario: a Ready pod's readinessProbe fails, it recovers, and later an
// operator takes it out of the Service by its labels. Each time the
// controller takes the live pod out of rotation or puts it back, the pod
// gets one Normal Event (OutOfRotation, BackInRotation) related to the
// binding: once per transition, not on every cycle while it lasts.
func TestRotationChangesAreReportedOncePerTransition(t *testing.T) {
	healthy := &corev1.PodCondition{Status: corev1.ConditionTrue, Reason: ReasonHealthy}
	serving := gatedPod("web-1", true, healthy.DeepCopy())
	serving.UID = "uid-1"
	unready := gatedPod("web-1", false, healthy.DeepCopy())
	unready.UID = serving.UID
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	events := &eventLog{}
	api := fake.NewClientBuilder().WithScheme(scheme).WithObjects(serving.DeepCopy()).WithStatusSubresource(&corev1.Pod{}).Build()
	r := &TargetBindingReconciler{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Drains: drain.NewRegistry(), Recorder: events,
		Client: api, APIReader: api}
	b := testBinding(zv1.FailClosed)
	lb := &rotationLB{health: provider.HealthHealthy}
	memo := map[provider.TargetID]*memo{}
	cycles := func(n int, tg observedTarget) {
		t.Helper()
		for i := 0; i < n; i++ {
			st, _ := lb.Status(context.Background(), provider.Pool{Name: b.Spec.Pool})
			tp := one(t, planInput{Binding: b, Now: t0, Pool: st, Memo: memo, Targets: []observedTarget{tg}})
			if err := r.apply(context.Background(), context.Background(), r.Log, b, lb, "lb", provider.Pool{Name: "app"}, &tp, []observedTarget{tg}); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func(reason string) int { return len(events.withReason(reason)) }
	steps := []struct {
		name     string
		target   observedTarget
		out, in  int // OutOfRotation, BackInRotation Events so far
		lbHealth provider.Health
	}{
		{"serving", endpoint(serving, false), 0, 0, provider.HealthHealthy},
		{"readinessProbe fails", endpoint(unready, false), 1, 0, provider.HealthDrained},
		{"readinessProbe passes again", endpoint(serving, false), 1, 1, provider.HealthHealthy},
		{"labels no longer match the Service's selector", observedTarget{Key: endpoint(serving, false).Key, Pod: serving, Deselected: true},
			2, 1, provider.HealthDrained},
	}
	for _, s := range steps {
		cycles(4, s.target)
		if lb.health != s.lbHealth {
			t.Fatalf("%s: target %s on the LB; want %s", s.name, lb.health, s.lbHealth)
		}
		if out, in := count(ReasonOutOfRotation), count(ReasonBackInRotation); out != s.out || in != s.in {
			t.Fatalf("%s: %d %s and %d %s Events after 4 cycles; want %d and %d: %+v",
				s.name, out, ReasonOutOfRotation, in, ReasonBackInRotation, s.out, s.in, events.events)
		}
	}
	for _, e := range events.events {
		if e.Reason != ReasonOutOfRotation && e.Reason != ReasonBackInRotation {
			continue
		}
		if e.Type != corev1.EventTypeNormal || e.Regarding != "shop/web-1" || e.Related != "shop/web" {
			t.Fatalf("Event %+v; want Normal, on the pod shop/web-1, related to the binding shop/web", e)
		}
	}
	out := events.withReason(ReasonOutOfRotation)
	for i, want := range []string{"ContainersReady", "selector"} {
		if !strings.Contains(out[i].Note, want) {
			t.Fatalf("%s Event %q does not say why (%s)", ReasonOutOfRotation, out[i].Note, want)
		}
	}
}
