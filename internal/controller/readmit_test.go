package controller

import (
	"context"
	"io"
	"log/slog"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/provider"
)

// recordingProvider records the calls the reconciler makes.
type recordingProvider struct{ calls []string }

func (p *recordingProvider) Register(_ context.Context, _ string, t provider.Target) error {
	p.calls = append(p.calls, "register "+string(t.ID))
	return nil
}
func (p *recordingProvider) SetDraining(_ context.Context, _ string, t provider.Target) error {
	p.calls = append(p.calls, "drain "+string(t.ID))
	return nil
}
func (p *recordingProvider) Deregister(_ context.Context, _ string, t provider.Target) error {
	p.calls = append(p.calls, "deregister "+string(t.ID))
	return nil
}
func (p *recordingProvider) Status(context.Context, string) (provider.PoolStatus, error) {
	return provider.PoolStatus{}, nil
}

// Scenario: a serve replica saw web-1's deletion first and drained it; the
// leader's cache still shows the pod alive, so its plan says "out of
// rotation although alive: register again". The leader puts the target
// back in rotation only when a fresh read from the API server (not the
// cache) shows the same pod, not being deleted.
func TestReadmissionNeedsFreshPodRead(t *testing.T) {
	cached := gatedPod("web-1", true, nil)
	cached.UID = "uid-1"
	deleting := cached.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{Time: t0}
	deleting.Finalizers = []string{"test/keep"}
	recreated := cached.DeepCopy()
	recreated.UID = "uid-2"
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	tp := targetPlan{Key: endpoint(cached, false).Key, Action: actRegister, Readmit: true,
		Target: provider.Target{ID: id, IP: "10.0.0.7", Port: 8080}}
	for _, c := range []struct {
		name   string
		fresh  []client.Object // what the API server has
		reader bool
		want   int // Register calls
	}{
		{"API server: pod alive", []client.Object{cached.DeepCopy()}, true, 1},
		{"API server: pod being deleted", []client.Object{deleting}, true, 0},
		{"API server: pod gone", nil, true, 0},
		{"API server: pod re-created", []client.Object{recreated}, true, 0},
		{"no uncached reader", []client.Object{cached.DeepCopy()}, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &recordingProvider{}
			r := &TargetBindingReconciler{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			if c.reader {
				r.APIReader = fake.NewClientBuilder().WithScheme(scheme).WithObjects(c.fresh...).Build()
			}
			plan := tp
			if err := r.apply(context.Background(), r.Log, testBinding(zv1.FailClosed), p, "lb", &plan,
				[]observedTarget{endpoint(cached, false)}); err != nil {
				t.Fatal(err)
			}
			if len(p.calls) != c.want {
				t.Fatalf("provider calls %v; want %d register", p.calls, c.want)
			}
		})
	}
	// A plain registration (target absent, not out of rotation) needs no read.
	p := &recordingProvider{}
	r := &TargetBindingReconciler{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	plain := tp
	plain.Readmit = false
	if err := r.apply(context.Background(), r.Log, testBinding(zv1.FailClosed), p, "lb", &plain, []observedTarget{endpoint(cached, false)}); err != nil || len(p.calls) != 1 {
		t.Fatalf("plain registration: calls %v err %v", p.calls, err)
	}
}
