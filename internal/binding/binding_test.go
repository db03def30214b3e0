package binding

import (
	"context"
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
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
// Read through a reader without the indexes (a direct client).
// Expectation: Selecting returns b-7 only, and reads the namespace with two
// Lists that answer (bindings, Services; the index query the reader refuses
// reads nothing), whatever the number of bindings: the controller maps
// every pod update through it, and one Service read per binding made that
// cost grow with the bindings.
func TestSelectingReadsTheNamespaceOnce(t *testing.T) {
	scheme, objs := selectingScheme(t), selectingWorld()
	reads := 0
	count := func() { reads++ }
	r := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			count()
			return c.Get(ctx, key, obj, opts...)
		},
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			err := c.List(ctx, list, opts...)
			if err == nil {
				count()
			}
			return err
		},
	}).Build()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", Labels: map[string]string{"app": "b-7"}}}

	got, err := Selecting(context.Background(), r, pod)
	if err != nil {
		t.Fatal(err)
	}
	if names := namesOf(got); !slices.Equal(names, []string{"b-7"}) {
		t.Fatalf("Selecting = %v; want [b-7]", names)
	}
	if reads > 2 {
		t.Fatalf("Selecting made %d reads for 100 bindings; want 2 (one List of bindings, one of Services)", reads)
	}
}

// Scenario: the namespace of TestSelectingReadsTheNamespaceOnce (100
// bindings, b-7's Service selects the pod, so does a deleted binding's,
// b-9's Service has no selector, b-11's does not exist), read through a
// reader with ServiceIndex and SelectorIndex, and through one without.
// Expectation: Selecting returns b-7 only both ways; with the indexes (the
// controller's cache in every role: the controller's pod mapper, the pod
// webhook and the drain endpoint all read it) it copies a handful of
// objects out of the reader, not the 200 of the namespace's two Lists.
func TestSelectingThroughIndexesReadsOnlyCandidates(t *testing.T) {
	objs := selectingWorld()
	for _, indexed := range []bool{true, false} {
		listed := 0
		b := fake.NewClientBuilder().WithScheme(selectingScheme(t)).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
			List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
				err := c.List(ctx, list, opts...)
				if err == nil {
					listed += meta.LenList(list)
				}
				return err
			},
		})
		if indexed {
			b = b.WithIndex(&zv1.TargetBinding{}, ServiceIndex, ServiceIndexValues).WithIndex(&corev1.Service{}, SelectorIndex, SelectorIndexValues)
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", Labels: map[string]string{"app": "b-7", "tier": "web"}}}
		got, err := Selecting(context.Background(), b.Build(), pod)
		if err != nil {
			t.Fatal(err)
		}
		if names := namesOf(got); !slices.Equal(names, []string{"b-7"}) {
			t.Fatalf("indexed %v: Selecting = %v; want [b-7]", indexed, names)
		}
		if indexed && listed > 4 {
			t.Fatalf("Selecting listed %d objects with the indexes; want at most 4 (b-7's and b-3's Services, their bindings)", listed)
		}
		t.Logf("indexed %v: %d objects listed", indexed, listed)
	}
}

// Scenario: a pod labelled app=web, tier=front, zone=a is selected by
// three Services through different labels (zz-by-app, mm-by-tier,
// aa-by-zone), each with its binding, read through a reader with the
// indexes and one without, 20 times each (the indexed path meets the pod's
// labels in map order).
// Expectation: the bindings come back sorted by name every time: the pod
// webhook injects their gates in this order, and a pod's spec must not
// depend on which replica's cache answered.
func TestSelectingSortsByName(t *testing.T) {
	var objs []client.Object
	for name, sel := range map[string]map[string]string{"zz-by-app": {"app": "web"}, "mm-by-tier": {"tier": "front"}, "aa-by-zone": {"zone": "a"}} {
		objs = append(objs,
			&zv1.TargetBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}, Spec: zv1.TargetBindingSpec{ServiceRef: zv1.ServiceReference{Name: name}}},
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}, Spec: corev1.ServiceSpec{Selector: sel}})
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", Labels: map[string]string{"app": "web", "tier": "front", "zone": "a"}}}
	want := []string{"aa-by-zone", "mm-by-tier", "zz-by-app"}
	for _, indexed := range []bool{true, false} {
		b := fake.NewClientBuilder().WithScheme(selectingScheme(t)).WithObjects(objs...)
		if indexed {
			b = b.WithIndex(&zv1.TargetBinding{}, ServiceIndex, ServiceIndexValues).WithIndex(&corev1.Service{}, SelectorIndex, SelectorIndexValues)
		}
		r := b.Build()
		for range 20 {
			got, err := Selecting(context.Background(), r, pod)
			if err != nil {
				t.Fatal(err)
			}
			if names := namesOf(got); !slices.Equal(names, want) {
				t.Fatalf("indexed %v: Selecting = %v; want %v", indexed, names, want)
			}
		}
	}
}

func namesOf(bs []zv1.TargetBinding) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Name)
	}
	return out
}

func selectingScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, zv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return scheme
}

// selectingWorld is namespace shop with 100 bindings b-N, each with its
// own Service selecting app=b-N, but for b-3 (deleted; its Service selects
// app=b-7), b-9 (a Service without selector) and b-11 (no Service).
func selectingWorld() []client.Object {
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
	return objs
}

func ptrNow() *metav1.Time {
	now := metav1.Now()
	return &now
}
