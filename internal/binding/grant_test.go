package binding

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func lbWith(pools ...zv1.PoolGrant) *zv1.LoadBalancer {
	return &zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Name: "edge"}, Spec: zv1.LoadBalancerSpec{Pools: pools}}
}

func bound(ns, name, lb, pool string, age time.Duration) zv1.TargetBinding {
	b := zv1.TargetBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       zv1.TargetBindingSpec{LoadBalancerRef: zv1.LoadBalancerReference{Name: lb}, Pool: pool},
	}
	if age > 0 {
		b.CreationTimestamp = metav1.NewTime(t0.Add(-age))
	}
	return b
}

func deleting(b zv1.TargetBinding) zv1.TargetBinding {
	now := metav1.NewTime(t0)
	b.DeletionTimestamp = &now
	return b
}

func TestGranted(t *testing.T) {
	team := map[string]string{"team": "payments"}
	selector := zv1.PoolGrant{Name: "be_payments", AllowedNamespaces: zv1.AllowedNamespaces{
		From: zv1.NamespacesFromSelector, Selector: &metav1.LabelSelector{MatchLabels: team}}}
	cases := []struct {
		name     string
		lb       *zv1.LoadBalancer
		binding  zv1.TargetBinding // age 0: being admitted (no creation time yet)
		nsLabels map[string]string
		others   []zv1.TargetBinding
		want     bool
		says     string
	}{
		{name: "no pools listed, pool unused: the first namespace takes it",
			lb: lbWith(), binding: bound("a", "web", "edge", "be_web", 0), want: true},
		{name: "no pools listed, pool held by the same namespace",
			lb: lbWith(), binding: bound("a", "api", "edge", "be_web", 0),
			others: []zv1.TargetBinding{bound("a", "web", "edge", "be_web", time.Hour)}, want: true},
		{name: "no pools listed, pool held by another namespace: refused (as AWS LBC refuses a bound target group)",
			lb: lbWith(), binding: bound("b", "web", "edge", "be_web", 0),
			others: []zv1.TargetBinding{bound("a", "web", "edge", "be_web", time.Hour)}, want: false, says: "held by namespace a"},
		{name: "no pools listed, the other namespace binds another pool",
			lb: lbWith(), binding: bound("b", "web", "edge", "be_web", 0),
			others: []zv1.TargetBinding{bound("a", "web", "edge", "be_api", time.Hour)}, want: true},
		{name: "no pools listed, the other namespace binds the same pool name on another LB",
			lb: lbWith(), binding: bound("b", "web", "edge", "be_web", 0),
			others: []zv1.TargetBinding{bound("a", "web", "core", "be_web", time.Hour)}, want: true},
		{name: "no pools listed, the other namespace's binding is being deleted: the pool is free",
			lb: lbWith(), binding: bound("b", "web", "edge", "be_web", 0),
			others: []zv1.TargetBinding{deleting(bound("a", "web", "edge", "be_web", time.Hour))}, want: true},
		{name: "two namespaces raced past admission: the older one holds the pool",
			lb: lbWith(), binding: bound("a", "web", "edge", "be_web", time.Minute),
			others: []zv1.TargetBinding{bound("b", "web", "edge", "be_web", time.Hour)}, want: false, says: "held by namespace b"},
		{name: "same creation second: namespace/name breaks the tie",
			lb: lbWith(), binding: bound("b", "web", "edge", "be_web", time.Hour),
			others: []zv1.TargetBinding{bound("a", "web", "edge", "be_web", time.Hour)}, want: false, says: "held by namespace a"},
		{name: "explicit from: Same behaves as the default",
			lb:      lbWith(zv1.PoolGrant{Name: "be_web", AllowedNamespaces: zv1.AllowedNamespaces{From: zv1.NamespacesFromSame}}),
			binding: bound("b", "web", "edge", "be_web", 0),
			others:  []zv1.TargetBinding{bound("a", "web", "edge", "be_web", time.Hour)}, want: false, says: "held by namespace a"},
		{name: "a listed pool with allowedNamespaces unset is from: Same",
			lb: lbWith(zv1.PoolGrant{Name: "be_web"}), binding: bound("a", "web", "edge", "be_web", 0), want: true},
		{name: "from: All grants every namespace, also a shared pool",
			lb:      lbWith(zv1.PoolGrant{Name: "be_web", AllowedNamespaces: zv1.AllowedNamespaces{From: zv1.NamespacesFromAll}}),
			binding: bound("b", "web", "edge", "be_web", 0),
			others:  []zv1.TargetBinding{bound("a", "web", "edge", "be_web", time.Hour)}, want: true},
		{name: "from: Selector, namespace matches",
			lb: lbWith(selector), binding: bound("pay", "web", "edge", "be_payments", 0), nsLabels: team, want: true},
		{name: "from: Selector, namespace does not match (the review's cross-tenant capture)",
			lb: lbWith(selector), binding: bound("team-a", "proxy", "edge", "be_payments", 0),
			nsLabels: map[string]string{"team": "a"}, want: false, says: "team=payments"},
		{name: "pools listed, this pool not among them: refused for everyone",
			lb: lbWith(selector), binding: bound("pay", "web", "edge", "be_other", 0), nsLabels: team, want: false, says: "not among them"},
		{name: "from: Selector without a selector (only possible without the CRD's validation): refused",
			lb:      lbWith(zv1.PoolGrant{Name: "be_web", AllowedNamespaces: zv1.AllowedNamespaces{From: zv1.NamespacesFromSelector}}),
			binding: bound("a", "web", "edge", "be_web", 0), want: false, says: "has none"},
		{name: "unknown from: refused",
			lb:      lbWith(zv1.PoolGrant{Name: "be_web", AllowedNamespaces: zv1.AllowedNamespaces{From: "Everyone"}}),
			binding: bound("a", "web", "edge", "be_web", 0), want: false, says: "unknown"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Granted(c.lb, &c.binding, c.nsLabels, c.others)
			if got.Allowed != c.want || got.Message == "" || !strings.Contains(got.Message, c.says) {
				t.Fatalf("Granted = %+v, want allowed=%v with a message containing %q", got, c.want, c.says)
			}
		})
	}
}

func TestCheckGrantReads(t *testing.T) {
	s := selectingScheme(t)
	held := bound("a", "web", "edge", "be_web", time.Hour)
	self := bound("b", "web", "edge", "be_web", time.Minute)
	r := fake.NewClientBuilder().WithScheme(s).WithObjects(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "b", Labels: map[string]string{"team": "b"}}},
		&held, &self,
	).Build()
	ctx := context.Background()

	// from: Same reads the cluster's bindings; the stored copy of the
	// binding itself is replaced by the one being decided.
	g, err := CheckGrant(ctx, r, lbWith(), &self)
	if err != nil || g.Allowed {
		t.Fatalf("default grant of b's binding while a holds the pool: %+v %v, want refused", g, err)
	}
	// from: Selector reads the namespace's labels.
	lb := lbWith(zv1.PoolGrant{Name: "be_web", AllowedNamespaces: zv1.AllowedNamespaces{
		From: zv1.NamespacesFromSelector, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "b"}}}})
	if g, err := CheckGrant(ctx, r, lb, &self); err != nil || !g.Allowed {
		t.Fatalf("selector grant to team=b: %+v %v, want allowed", g, err)
	}
	// A namespace that cannot be read is an error, never a grant.
	missing := bound("gone", "web", "edge", "be_web", 0)
	if g, err := CheckGrant(ctx, r, lb, &missing); err == nil {
		t.Fatalf("selector grant for a namespace that does not exist: %+v, want an error", g)
	}
}

// Scenario: 300 bindings on other pools beside the two of pool be_web, as
// in a cluster with many services. Expectation: the grant check reads only
// the pool's bindings through PoolIndex (the reader hands it 2 bindings,
// not 302), decides as it does without the index (a reader that has none
// lists every binding and filters), and bindings of another load balancer
// or pool never decide who holds be_web.
func TestCheckGrantReadsOnlyThePoolsBindings(t *testing.T) {
	s := selectingScheme(t)
	held := bound("a", "web", "edge", "be_web", time.Hour)
	self := bound("b", "web", "edge", "be_web", time.Minute)
	objs := []client.Object{&held, &self}
	for i := range 300 {
		// Older than both, in a third namespace: they would hold be_web
		// if their pool or load balancer were ignored.
		lb, pool := "edge", fmt.Sprintf("be_%d", i)
		if i%2 == 1 {
			lb, pool = "other", "be_web"
		}
		o := bound("c", fmt.Sprintf("svc-%d", i), lb, pool, 2*time.Hour)
		objs = append(objs, &o)
	}
	read := 0
	count := interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		err := c.List(ctx, list, opts...)
		if l, ok := list.(*zv1.TargetBindingList); ok && err == nil {
			read += len(l.Items)
		}
		return err
	}}
	indexed := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).
		WithIndex(&zv1.TargetBinding{}, PoolIndex, PoolIndexValues).WithInterceptorFuncs(count).Build()
	plain := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build()
	ctx := context.Background()
	for _, c := range []struct {
		b    zv1.TargetBinding
		want bool
	}{{self, false}, {held, true}} {
		read = 0
		g, err := CheckGrant(ctx, indexed, lbWith(), &c.b)
		if err != nil || g.Allowed != c.want {
			t.Fatalf("grant of %s/%s through the index: %+v %v, want allowed=%v", c.b.Namespace, c.b.Name, g, err, c.want)
		}
		if read != 2 {
			t.Errorf("grant of %s/%s read %d bindings, want the pool's 2", c.b.Namespace, c.b.Name, read)
		}
		if g2, err := CheckGrant(ctx, plain, lbWith(), &c.b); err != nil || g2 != g {
			t.Errorf("grant of %s/%s without the index: %+v %v, want %+v", c.b.Namespace, c.b.Name, g2, err, g)
		}
	}
}
