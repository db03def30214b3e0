package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/binding"
	"zerodrop.dev/zerodrop/internal/controller"
)

// TestPoolGrants (H2): a pool granted to namespace A only. A binding in
// namespace B is refused at admission; created while the validator is
// off, it never gets a target into the pool (Ready False PoolNotGranted, a
// Warning Event, the pod's gate False PoolNotGranted); once the
// LoadBalancer grants B too, the same binding registers.
func TestPoolGrants(t *testing.T) {
	requireSuite(t)
	ctx := context.Background()
	nsA, nsB := newNamespace(t, true), newNamespace(t, true)
	const grantedPool = "be_team_a"
	only := func(names ...string) []zv1.PoolGrant {
		return []zv1.PoolGrant{{Name: grantedPool, AllowedNamespaces: zv1.AllowedNamespaces{
			From: zv1.NamespacesFromSelector,
			Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: names}}}}}}
	}
	lb := &zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Name: nsA + "-lb"}, Spec: zv1.LoadBalancerSpec{
		Provider: zv1.ProviderHAProxy, Instances: []zv1.LoadBalancerInstance{{Name: "lb-a", Socket: "/run/a.sock"}},
		Pools: only(nsA)}}
	if err := suite.c.Create(ctx, lb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = suite.c.Delete(context.Background(), lb) })
	bindingIn := func(ns string) *zv1.TargetBinding {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
		}
		if err := suite.c.Create(ctx, svc); err != nil {
			t.Fatal(err)
		}
		return &zv1.TargetBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-edge"}, Spec: zv1.TargetBindingSpec{
			ServiceRef: zv1.ServiceReference{Name: "web", Port: intstr.FromString("http")}, LoadBalancerRef: zv1.LoadBalancerReference{Name: lb.Name},
			Pool: grantedPool}}
	}

	// Admission: B refused, A admitted. The validator reads the
	// LoadBalancer from the webhook's cache: retry until it is there.
	bB := bindingIn(nsB)
	eventually(t, "binding in "+nsB+" refused at admission", func() (bool, string) {
		err := suite.c.Create(ctx, bB.DeepCopy(), client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), binding.ReasonPoolNotGranted), fmt.Sprint(err)
	})
	if err := suite.c.Create(ctx, bindingIn(nsA)); err != nil {
		t.Fatalf("binding in the granted namespace %s: %v", nsA, err)
	}

	// Created while the validator is off (removed, as by an admin or a
	// broken install), B's binding reaches the reconciler.
	var vwc = suite.validating.DeepCopy()
	if err := suite.c.Delete(ctx, vwc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "binding in "+nsB+" created with the validator off", func() (bool, string) {
		err := suite.c.Create(ctx, bB)
		return err == nil, fmt.Sprint(err)
	})
	vwc.ResourceVersion, vwc.UID, vwc.CreationTimestamp, vwc.ManagedFields = "", "", metav1.Time{}, nil
	if err := suite.c.Create(ctx, vwc); err != nil {
		t.Fatalf("reinstall the validator: %v", err)
	}
	eventually(t, "webhook sees "+nsB+"'s binding", func() (bool, string) {
		p := newPod(nsB, "probe", map[string]string{"app": "web"})
		if err := suite.c.Create(ctx, p, client.DryRunAll); err != nil {
			return false, err.Error()
		}
		return len(p.Spec.ReadinessGates) > 0, fmt.Sprint(p.Spec.ReadinessGates)
	})
	startPod(t, nsB, "web-1", "web", "10.1.0.91")
	id := controller.TargetID(nsB, "web-edge", "web-1")

	eventually(t, "binding Ready False PoolNotGranted", func() (bool, string) {
		var got zv1.TargetBinding
		if err := suite.c.Get(ctx, types.NamespacedName{Namespace: nsB, Name: "web-edge"}, &got); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(got.Status.Conditions, controller.ConditionReady)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == binding.ReasonPoolNotGranted, fmt.Sprint(c)
	})
	waitEvent(t, nsB, "web-edge", binding.ReasonPoolNotGranted, corev1.EventTypeWarning)
	waitGate(t, nsB, "web-1", "web-edge", corev1.ConditionFalse, binding.ReasonPoolNotGranted)
	cyclesPass(t, suite.lb, 5)
	if suite.lb.called("register", grantedPool, id) || suite.lb.has(grantedPool, id) {
		t.Fatalf("the ungranted binding's target reached the load balancer: %v", suite.lb.callsOf("register"))
	}

	// Granting B re-checks its binding (the LoadBalancer's generation
	// changed) and the target is registered.
	eventually(t, "grant the pool to "+nsB, func() (bool, string) {
		var cur zv1.LoadBalancer
		if err := suite.c.Get(ctx, types.NamespacedName{Name: lb.Name}, &cur); err != nil {
			return false, err.Error()
		}
		cur.Spec.Pools = only(nsA, nsB)
		err := suite.c.Update(ctx, &cur)
		return err == nil, fmt.Sprint(err)
	})
	eventually(t, "target registered once granted", func() (bool, string) {
		return suite.lb.has(grantedPool, id), fmt.Sprint(suite.lb.callsOf("register"))
	})
}
