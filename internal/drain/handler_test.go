package drain

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
)

func server(t *testing.T) (*httptest.Server, *Registry, chan event.GenericEvent) {
	t.Helper()
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = zv1.AddToScheme(s)
	web := map[string]string{"app": "web"}
	c := fake.NewClientBuilder().WithScheme(s).WithRuntimeObjects(
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: corev1.ServiceSpec{Selector: web}},
		&zv1.TargetBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-edge"}, Spec: zv1.TargetBindingSpec{
			ServiceRef: zv1.ServiceReference{Name: "web", Port: intstr.FromInt32(80)}, LoadBalancerRef: zv1.LoadBalancerReference{Name: "edge"}, Pool: "be"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", Labels: web,
			Annotations: map[string]string{TokenAnnotation: "tok123"}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "batch-1", Labels: map[string]string{"app": "batch"}}},
	).Build()
	reg := NewRegistry()
	nudges := make(chan event.GenericEvent, 10)
	mux := http.NewServeMux()
	(&Handler{Reader: c, Drains: reg, Nudge: nudges}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, reg, nudges
}

func get(t *testing.T, url string) (int, Answer) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a Answer
	_ = json.NewDecoder(resp.Body).Decode(&a)
	return resp.StatusCode, a
}

func TestDrainEndpoint(t *testing.T) {
	srv, reg, nudges := server(t)
	pod := types.NamespacedName{Namespace: "shop", Name: "web-1"}

	if code, _ := get(t, srv.URL+"/drain/v1/namespaces/shop/pods/batch-1?wait=0s"); code != http.StatusNotFound {
		t.Fatalf("pod no binding selects: %d, want 404", code)
	}
	if code, _ := get(t, srv.URL+"/drain/v1/namespaces/shop/pods/gone?wait=0s"); code != http.StatusNotFound {
		t.Fatalf("unknown pod: %d, want 404", code)
	}
	if code, _ := get(t, srv.URL+"/drain/v1/namespaces/shop/pods/web-1?wait=soon"); code != http.StatusBadRequest {
		t.Fatalf("bad wait: %d, want 400", code)
	}
	code, a := get(t, srv.URL+"/drain/v1/namespaces/shop/pods/web-1?wait=0")
	if code != http.StatusServiceUnavailable || a.Drained || len(a.Bindings) != 1 || a.Bindings[0].Reason != "Pending" {
		t.Fatalf("bound pod not draining yet: %d %+v, want 503 Pending", code, a)
	}
	select {
	case e := <-nudges:
		if e.Object.GetName() != "web-edge" {
			t.Fatalf("nudged %s, want web-edge", e.Object.GetName())
		}
	default:
		t.Fatalf("the request did not nudge the binding's reconcile")
	}

	reg.Report(pod, "web-edge", State{Reason: "Draining"})
	type res struct {
		code int
		a    Answer
	}
	done := make(chan res, 1)
	go func() {
		c, a := get(t, srv.URL+"/drain/v1/namespaces/shop/tokens/tok123?wait=30s")
		done <- res{c, a}
	}()
	select {
	case r := <-done:
		t.Fatalf("answered %d while draining", r.code)
	case <-time.After(100 * time.Millisecond):
	}
	reg.Report(pod, "web-edge", State{Drained: true, Reason: "Drained"})
	select {
	case r := <-done:
		if r.code != http.StatusOK || !r.a.Drained || r.a.Pod != "web-1" {
			t.Fatalf("drained, by token: %d %+v", r.code, r.a)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("long poll did not wake when the pod was reported drained")
	}
}

// Scenario: the binding whose gate web-1 carries is being deleted (its
// finalizer drains the targets first). Expectation: the hook still waits
// for that binding's verdict instead of being let go at once as unbound.
func TestDrainWaitsForBindingBeingDeleted(t *testing.T) {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = zv1.AddToScheme(s)
	now := metav1.Now()
	c := fake.NewClientBuilder().WithScheme(s).WithRuntimeObjects(
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}}},
		&zv1.TargetBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-edge", DeletionTimestamp: &now, Finalizers: []string{"zerodrop.dev/targets"}},
			Spec: zv1.TargetBindingSpec{ServiceRef: zv1.ServiceReference{Name: "web", Port: intstr.FromInt32(80)}, LoadBalancerRef: zv1.LoadBalancerReference{Name: "edge"}, Pool: "be"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{ReadinessGates: []corev1.PodReadinessGate{{ConditionType: corev1.PodConditionType(zv1.GateConditionType("web-edge"))}}}},
	).Build()
	reg := NewRegistry()
	mux := http.NewServeMux()
	(&Handler{Reader: c, Drains: reg}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	pod := types.NamespacedName{Namespace: "shop", Name: "web-1"}
	reg.Report(pod, "web-edge", State{Reason: "Draining"})
	if code, a := get(t, srv.URL+"/drain/v1/namespaces/shop/pods/web-1?wait=0s"); code != http.StatusServiceUnavailable {
		t.Fatalf("pod of a binding being deleted, draining: %d %+v, want 503", code, a)
	}
	reg.Report(pod, "web-edge", State{Drained: true, Reason: "Drained"})
	if code, a := get(t, srv.URL+"/drain/v1/namespaces/shop/pods/web-1?wait=0s"); code != http.StatusOK {
		t.Fatalf("drained: %d %+v, want 200", code, a)
	}
}
