package controller

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/drain"
	"zerodrop.dev/zerodrop/provider"
)

// recordingProvider records the calls the reconciler makes.
type recordingProvider struct {
	haproxyLike
	calls []string
}

func (p *recordingProvider) Register(_ context.Context, _ provider.Pool, t provider.Target) error {
	p.calls = append(p.calls, "register "+string(t.ID))
	return nil
}
func (p *recordingProvider) SetDraining(_ context.Context, _ provider.Pool, t provider.Target) error {
	p.calls = append(p.calls, "drain "+string(t.ID))
	return nil
}
func (p *recordingProvider) Deregister(_ context.Context, _ provider.Pool, t provider.Target) error {
	p.calls = append(p.calls, "deregister "+string(t.ID))
	return nil
}
func (p *recordingProvider) Status(context.Context, provider.Pool) (provider.PoolStatus, error) {
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
			r := &TargetBindingReconciler{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Drains: drain.NewRegistry()}
			if c.reader {
				r.APIReader = fake.NewClientBuilder().WithScheme(scheme).WithObjects(c.fresh...).Build()
			}
			plan := tp
			if err := r.apply(context.Background(), context.Background(), r.Log, testBinding(zv1.FailClosed), p, "lb", provider.Pool{Name: "app"}, &plan,
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
	r := &TargetBindingReconciler{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Drains: drain.NewRegistry()}
	plain := tp
	plain.Readmit = false
	if err := r.apply(context.Background(), context.Background(), r.Log, testBinding(zv1.FailClosed), p, "lb", provider.Pool{Name: "app"}, &plain, []observedTarget{endpoint(cached, false)}); err != nil || len(p.calls) != 1 {
		t.Fatalf("plain registration: calls %v err %v", p.calls, err)
	}
}

// Scenario: observe tells a pod taken out of the Service (its labels no
// longer match the selector) from one merely without an endpoint (between
// EndpointSlice updates, or the Service gone): only the first leaves the
// LB's rotation.
func TestObserveMarksDeselectedPods(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	selected := gatedPod("web-1", true, nil)
	selected.Labels = map[string]string{"app": "web"}
	removed := gatedPod("web-2", true, nil)
	removed.Labels = map[string]string{"app": "web-debug"}
	b := testBinding(zv1.FailClosed)
	b.Spec.ServiceRef.Name = "web"
	b.Spec.ServiceRef.Port = intstr.FromString("http")
	for _, c := range []struct {
		name string
		objs []client.Object
		want map[string]bool
	}{
		{"Service present", []client.Object{svc, selected, removed}, map[string]bool{"web-1": false, "web-2": true}},
		{"Service gone", []client.Object{selected, removed}, map[string]bool{"web-1": false, "web-2": false}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &TargetBindingReconciler{Client: fake.NewClientBuilder().WithScheme(scheme).WithObjects(c.objs...).Build()}
			targets, _, err := r.observe(context.Background(), b)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, tg := range targets {
				got[tg.Key.Name] = tg.Deselected
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("deselected %v; want %v", got, c.want)
			}
		})
	}
}

// Scenario: web-0 was drained and deleted; the StatefulSet re-creates it
// under the same name. The registry still holds the old incarnation's
// "drained" verdict, keyed by the pod's name: once a cycle sees the pod
// alive it is dropped, so the new incarnation's preStop hook is never
// answered 200 from its predecessor's drain.
func TestLivePodDropsStaleDrainVerdict(t *testing.T) {
	pod := gatedPod("web-1", true, nil)
	key := endpoint(pod, false).Key
	drains := drain.NewRegistry()
	drains.Report(key, "web", drain.State{Drained: true, Reason: ReasonDrained})
	r := &TargetBindingReconciler{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Drains: drains, DrainOnly: true}
	tp := targetPlan{Key: key, Target: provider.Target{ID: id, IP: "10.0.0.7", Port: 8080}}
	if err := r.apply(context.Background(), context.Background(), r.Log, testBinding(zv1.FailClosed), &recordingProvider{}, "lb", provider.Pool{Name: "app"}, &tp,
		[]observedTarget{endpoint(pod, false)}); err != nil {
		t.Fatal(err)
	}
	if s, ok := drains.Lookup(key, "web"); ok {
		t.Fatalf("live pod still has the drain verdict %+v", s)
	}
}

// Scenario: a serve replica (DrainOnly) drains pods being deleted, so that
// the drain endpoint works while the leader is away; taking a live pod out
// of rotation (unready, de-selected, a previous incarnation's server) is
// the leader's alone, or a replica's lagging cache would fight the
// leader's readmission.
func TestDrainOnlyDrainsOnlyDeletedPods(t *testing.T) {
	pod := gatedPod("web-1", true, nil)
	for _, c := range []struct {
		name  string
		drain *drainVerdict
		want  int
	}{
		{"pod being deleted", &drainVerdict{false, ReasonDraining, ""}, 1},
		{"live pod taken out of rotation", nil, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &recordingProvider{}
			r := &TargetBindingReconciler{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Drains: drain.NewRegistry(), DrainOnly: true}
			tp := targetPlan{Key: endpoint(pod, false).Key, Action: actDrain, Drain: c.drain,
				Target: provider.Target{ID: id, IP: "10.0.0.7", Port: 8080}}
			if err := r.apply(context.Background(), context.Background(), r.Log, testBinding(zv1.FailClosed), p, "lb", provider.Pool{Name: "app"}, &tp,
				[]observedTarget{endpoint(pod, false)}); err != nil {
				t.Fatal(err)
			}
			if len(p.calls) != c.want {
				t.Fatalf("calls %v; want %d drain", p.calls, c.want)
			}
		})
	}
}
