package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/config"
	"zerodrop.dev/zerodrop/internal/binding"
)

func grantLB(name string, pools ...zv1.PoolGrant) *zv1.LoadBalancer {
	return &zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: zv1.LoadBalancerSpec{
		Provider: zv1.ProviderHAProxy, Instances: []zv1.LoadBalancerInstance{{Name: "a", Socket: "/run/a.sock"}}, Pools: pools}}
}

func bindingTo(ns, name, lb, pool string) *zv1.TargetBinding {
	b := tb(ns, name, "web", zv1.PreStopNone)
	b.Spec.LoadBalancerRef.Name = lb
	b.Spec.Pool = pool
	return b
}

func admissionOf(t *testing.T, op admissionv1.Operation, b, old *zv1.TargetBinding) admission.Request {
	t.Helper()
	raw := func(o *zv1.TargetBinding) runtime.RawExtension {
		if o == nil {
			return runtime.RawExtension{}
		}
		j, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		return runtime.RawExtension{Raw: j}
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		Operation: op, Namespace: b.Namespace, Name: b.Name,
		Kind:   metav1.GroupVersionKind{Group: zv1.GroupVersion.Group, Version: zv1.GroupVersion.Version, Kind: "TargetBinding"},
		Object: raw(b), OldObject: raw(old),
	}}
}

func TestPoolGrantValidator(t *testing.T) {
	payments := zv1.PoolGrant{Name: "be_payments", AllowedNamespaces: zv1.AllowedNamespaces{
		From: zv1.NamespacesFromSelector, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "payments"}}}}
	shared := zv1.PoolGrant{Name: "be_shared", AllowedNamespaces: zv1.AllowedNamespaces{From: zv1.NamespacesFromAll}}
	held := bindingTo("team-a", "web", "open", "be_web")
	held.CreationTimestamp = metav1.NewTime(time.Now().Add(-time.Hour))
	renamed := bindingTo("team-b", "web", "edge", "be_payments")
	renamed.Spec.Pool = "be_shared"
	gone := bindingTo("team-b", "web", "edge", "be_payments")
	now := metav1.Now()
	gone.DeletionTimestamp = &now
	gone.Finalizers = []string{"zerodrop.dev/targets"}

	objs := []runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "payments", Labels: map[string]string{"team": "payments"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", Labels: map[string]string{"team": "a"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-b", Labels: map[string]string{"team": "b"}}},
		grantLB("edge", payments, shared), grantLB("open"), held,
	}
	cases := []struct {
		name    string
		op      admissionv1.Operation
		b, old  *zv1.TargetBinding
		allowed bool
		says    string
	}{
		{name: "create in a granted namespace", op: admissionv1.Create,
			b: bindingTo("payments", "web", "edge", "be_payments"), allowed: true},
		{name: "create in a namespace the selector does not match: refused", op: admissionv1.Create,
			b: bindingTo("team-a", "proxy", "edge", "be_payments"), says: binding.ReasonPoolNotGranted},
		{name: "create for a pool the LB does not list: refused", op: admissionv1.Create,
			b: bindingTo("payments", "web", "edge", "be_other"), says: "not among them"},
		{name: "create for a pool granted to all", op: admissionv1.Create,
			b: bindingTo("team-b", "web", "edge", "be_shared"), allowed: true},
		{name: "LB without pools: a pool held by another namespace is refused", op: admissionv1.Create,
			b: bindingTo("team-b", "web", "open", "be_web"), says: "held by namespace team-a"},
		{name: "LB without pools: the holder's namespace may add bindings", op: admissionv1.Create,
			b: bindingTo("team-a", "api", "open", "be_web"), allowed: true},
		{name: "LB without pools: a free pool is taken", op: admissionv1.Create,
			b: bindingTo("team-b", "web", "open", "be_free"), allowed: true},
		{name: "LB not found: allowed with a warning (the controller still refuses until granted)", op: admissionv1.Create,
			b: bindingTo("team-b", "web", "later", "be_web"), allowed: true, says: "not found"},
		{name: "update moving to an ungranted pool: refused", op: admissionv1.Update,
			b: bindingTo("team-a", "proxy", "edge", "be_payments"), old: bindingTo("team-a", "proxy", "edge", "be_shared"), says: binding.ReasonPoolNotGranted},
		{name: "update moving to a granted pool", op: admissionv1.Update,
			b: renamed, old: bindingTo("team-b", "web", "edge", "be_payments"), allowed: true},
		{name: "update that keeps load balancer and pool (finalizer, drain settings): allowed", op: admissionv1.Update,
			b: bindingTo("team-b", "web", "edge", "be_payments"), old: bindingTo("team-b", "web", "edge", "be_payments"), allowed: true},
		{name: "update of a binding being deleted (finalizer removal): allowed", op: admissionv1.Update,
			b: gone, old: bindingTo("team-b", "web", "edge", "be_shared"), allowed: true},
	}
	v := &PoolGrantValidator{
		Reader:  fake.NewClientBuilder().WithScheme(testScheme(t)).WithRuntimeObjects(objs...).Build(),
		Decoder: admission.NewDecoder(testScheme(t)),
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := v.Handle(context.Background(), admissionOf(t, c.op, c.b, c.old))
			said := resp.Result.Message + strings.Join(resp.Warnings, ";")
			if resp.Allowed != c.allowed || !strings.Contains(said, c.says) {
				t.Fatalf("allowed=%v (%q, warnings %q), want allowed=%v saying %q", resp.Allowed, resp.Result.Message, resp.Warnings, c.allowed, c.says)
			}
			if !resp.Allowed && resp.Result.Code != http.StatusForbidden {
				t.Fatalf("refusal code %d, want 403", resp.Result.Code)
			}
		})
	}
}

// TestPoolGrantValidatorReadError: when the grant cannot be decided the
// request is refused (failurePolicy Fail means the same when the webhook
// is down): never admitted unchecked.
func TestPoolGrantValidatorReadError(t *testing.T) {
	v := &PoolGrantValidator{
		// No namespaces: the selector grant cannot be read.
		Reader: fake.NewClientBuilder().WithScheme(testScheme(t)).WithRuntimeObjects(
			grantLB("edge", zv1.PoolGrant{Name: "be_web", AllowedNamespaces: zv1.AllowedNamespaces{
				From: zv1.NamespacesFromSelector, Selector: &metav1.LabelSelector{}}})).Build(),
		Decoder: admission.NewDecoder(testScheme(t)),
	}
	resp := v.Handle(context.Background(), admissionOf(t, admissionv1.Create, bindingTo("shop", "web", "edge", "be_web"), nil))
	if resp.Allowed {
		t.Fatalf("admitted although the namespace could not be read: %+v", resp.Result)
	}
}

// TestValidatingManifest: config/webhook/validating.yaml sends TargetBinding
// creates and updates to BindingPath with failurePolicy Fail, and its
// matchConditions let updates that keep the pool (the controller's
// finalizer) bypass the webhook.
func TestValidatingManifest(t *testing.T) {
	raw, err := config.FS.ReadFile("webhook/validating.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(raw, &vwc); err != nil {
		t.Fatal(err)
	}
	if len(vwc.Webhooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(vwc.Webhooks))
	}
	w := vwc.Webhooks[0]
	if w.ClientConfig.Service == nil || w.ClientConfig.Service.Path == nil || *w.ClientConfig.Service.Path != BindingPath {
		t.Errorf("clientConfig %+v: want the Service path %s", w.ClientConfig, BindingPath)
	}
	if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Fail {
		t.Errorf("failurePolicy %v, want Fail", w.FailurePolicy)
	}
	ops := fmt.Sprint(w.Rules[0].Operations)
	if len(w.Rules) != 1 || w.Rules[0].Resources[0] != "targetbindings" || !strings.Contains(ops, "CREATE") || !strings.Contains(ops, "UPDATE") {
		t.Errorf("rules %+v: want CREATE and UPDATE of targetbindings", w.Rules)
	}
	if len(w.MatchConditions) == 0 || !strings.Contains(w.MatchConditions[0].Expression, "oldObject.spec.pool") {
		t.Errorf("matchConditions %+v: want updates that keep the pool skipped", w.MatchConditions)
	}
}
