package binding

import (
	"context"
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
)

// Scenario (issue 12, the scale profile): a namespace holds 100 bindings,
// each with its own Service; binding b-7's Service selects the pod, and a
// deleted binding's Service selects it too; b-9's Service has no selector
// (hand-made endpoints) and b-11 names a Service that does not exist.
// Expectation: Selecting returns b-7 only, and reads the namespace with two
// Lists (bindings, Services), whatever the number of bindings: the
// controller maps every pod update through it, and one Service read per
// binding made that cost grow with the bindings.
func TestSelectingReadsTheNamespaceOnce(t *testing.T) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, zv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	var objs []client.Object
	for i := range 100 {
		name := fmt.Sprintf("b-%d", i)
		b := &zv1.TargetBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}, Spec: zv1.TargetBindingSpec{ServiceRef: zv1.ServiceReference{Name: name}}}
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name}}}
		switch i {
		case 3:
			b.DeletionTimestamp, b.Finalizers = ptrNow(), []string{"zerodrop.dev/targets"}
			svc.Spec.Selector = map[string]string{"app": "b-7"}
		case 9:
			svc.Spec.Selector = nil
		case 11:
			svc = nil
		}
		objs = append(objs, b)
		if svc != nil {
			objs = append(objs, svc)
		}
	}
	reads := 0
	count := func() { reads++ }
	r := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			count()
			return c.Get(ctx, key, obj, opts...)
		},
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			count()
			return c.List(ctx, list, opts...)
		},
	}).Build()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", Labels: map[string]string{"app": "b-7"}}}

	got, err := Selecting(context.Background(), r, pod)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range got {
		names = append(names, b.Name)
	}
	if !slices.Equal(names, []string{"b-7"}) {
		t.Fatalf("Selecting = %v; want [b-7]", names)
	}
	if reads > 2 {
		t.Fatalf("Selecting made %d reads for 100 bindings; want 2 (one List of bindings, one of Services)", reads)
	}
}

func ptrNow() *metav1.Time {
	now := metav1.Now()
	return &now
}
