package controller

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/drain"
	"zerodrop.dev/zerodrop/provider"
)

// hangingLB reads its pool at once (every target absent) and hangs in
// every other call until the caller's context ends: a load balancer whose
// actions stall.
type hangingLB struct {
	haproxyLike
	calls atomic.Int32 // a cycle's calls run side by side
}

func (h *hangingLB) wait(ctx context.Context) error {
	h.calls.Add(1)
	<-ctx.Done()
	return ctx.Err()
}
func (h *hangingLB) Register(ctx context.Context, _ provider.Pool, _ provider.Target) error {
	return h.wait(ctx)
}
func (h *hangingLB) SetDraining(ctx context.Context, _ provider.Pool, _ provider.Target) error {
	return h.wait(ctx)
}
func (h *hangingLB) Deregister(ctx context.Context, _ provider.Pool, _ provider.Target) error {
	return h.wait(ctx)
}
func (h *hangingLB) Status(_ context.Context, pl provider.Pool) (provider.PoolStatus, error) {
	pool := pl.Name
	return provider.PoolStatus{Pool: pool, Instances: []provider.InstanceStatus{{Instance: "lb-a", Targets: map[provider.TargetID]provider.TargetStatus{}}}}, nil
}

// Scenario: a binding with 4 ready pods to register, on a load balancer
// whose calls hang, and a cycle timeout of 300 ms.
// Expectation: the cycle ends soon after the timeout (the provider calls
// share one deadline, not one each), it asks for the pending requeue (not
// an error backoff), and the binding's status is still written and says
// why.
func TestReconcileBoundsTheLoadBalancerPartOfACycle(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := zv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	const ns = "shop"
	objs := []client.Object{
		&zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Name: "lb", UID: "lb-uid"}, Spec: zv1.LoadBalancerSpec{Provider: zv1.ProviderHAProxy,
			Instances: []zv1.LoadBalancerInstance{{Name: "lb-a", Address: "127.0.0.1:1"}}}},
		&zv1.TargetBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Finalizers: []string{Finalizer}}, Spec: zv1.TargetBindingSpec{
			ServiceRef:      zv1.ServiceReference{Name: "web", Port: intstr.FromInt32(80)},
			LoadBalancerRef: zv1.LoadBalancerReference{Name: "lb"}, Pool: "be_web"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}},
	}
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-1", Labels: map[string]string{
		discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: EndpointSliceControllerName}},
		AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}}}
	for i := 0; i < 4; i++ {
		name := fmt.Sprintf("web-%d", i)
		objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(name)},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.0.0.%d", i+1),
				Conditions: []corev1.PodCondition{{Type: corev1.ContainersReady, Status: corev1.ConditionTrue}}}})
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.0.0.%d", i+1)},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: name, UID: types.UID(name)}})
	}
	objs = append(objs, slice)
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithStatusSubresource(&zv1.TargetBinding{}).Build()
	lb := &hangingLB{}
	r := &TargetBindingReconciler{
		Client:       c,
		Providers:    &Providers{Factories: map[zv1.ProviderType]ProviderFactory{zv1.ProviderHAProxy: func(*zv1.LoadBalancer) (provider.Provider, error) { return lb, nil }}},
		Drains:       drain.NewRegistry(),
		Log:          slog.New(slog.DiscardHandler),
		CycleTimeout: 300 * time.Millisecond,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // hang guard
	defer cancel()
	start := time.Now()
	res, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "web"}})
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("Reconcile: %v, want the pending requeue, not an error backoff", err)
	}
	if lb.calls.Load() == 0 {
		t.Fatal("no provider call: the scenario registers nothing")
	}
	if elapsed > time.Second {
		t.Fatalf("cycle took %s with a 300 ms cycle timeout (%d provider calls)", elapsed.Round(time.Millisecond), lb.calls.Load())
	}
	if res.RequeueAfter != r.pending() {
		t.Fatalf("requeue after %s, want the pending interval %s", res.RequeueAfter, r.pending())
	}
	var b zv1.TargetBinding
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web"}, &b); err != nil {
		t.Fatal(err)
	}
	if cond := b.Status.Conditions; len(cond) == 0 || cond[0].Reason != "ProviderError" {
		t.Fatalf("binding status conditions %+v, want Ready False ProviderError", cond)
	}
}
