package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"zerodrop.dev/zerodrop/internal/webhook"
)

// createFiles creates every object of the YAML files (paths relative to
// the repository root).
func createFiles(t *testing.T, c client.Client, paths ...string) {
	t.Helper()
	root, _ := filepath.Abs("../..")
	for _, p := range paths {
		raw, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range strings.Split(string(raw), "\n---\n") {
			var o map[string]any
			if err := yaml.Unmarshal([]byte(d), &o); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if o == nil {
				continue
			}
			u := &unstructured.Unstructured{Object: o}
			if err := c.Create(context.Background(), u); err != nil {
				t.Fatalf("%s: create %s %s: %v", p, u.GetKind(), u.GetName(), err)
			}
		}
	}
}

// TestWebhookGuard (M7): acting as the controller's ServiceAccount with
// only the generated certificate role (config/rbac/certs) and the policy
// of config/components/webhook-guard, the certificate rotator issues its
// Secret and patches both caBundles, and nothing else of the webhook
// configurations can be changed.
func TestWebhookGuard(t *testing.T) {
	e := startRoleEnv(t)
	ctx := context.Background()
	if err := e.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controllerNS}}); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: controllerNS, Name: "zerodrop-controller"}}); err != nil {
		t.Fatal(err)
	}
	vwc := &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zerodrop-controller"},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name: "targetbindings.zerodrop.dev", AdmissionReviewVersions: []string{"v1"}, SideEffects: ptr.To(admissionv1.SideEffectClassNone),
			ClientConfig: admissionv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:1" + webhook.BindingPath)},
			// Matches nothing in this control plane: only its caBundle matters.
			ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"zerodrop-test/never": "x"}},
		}},
	}
	if err := e.c.Create(ctx, vwc); err != nil {
		t.Fatal(err)
	}
	createFiles(t, e.c, "config/rbac/certs/role.yaml", "config/rbac/certs/role_binding.yaml", "config/components/webhook-guard/policy.yaml")

	as := rest.CopyConfig(e.cfg)
	as.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + controllerNS + ":zerodrop-controller"}
	sa, err := client.New(as, client.Options{Scheme: testScheme()})
	if err != nil {
		t.Fatal(err)
	}
	rot := &webhook.CertRotator{Client: sa, Secret: types.NamespacedName{Namespace: controllerNS, Name: "zerodrop-webhook-certs"},
		WebhookConfiguration: "zerodrop-controller", DNSNames: []string{"zerodrop-webhook." + controllerNS + ".svc"}}
	if err := rot.Ensure(ctx); err != nil {
		t.Fatalf("certificate rotation with only the zerodrop-certs role and the policy: %v", err)
	}
	var m admissionv1.MutatingWebhookConfiguration
	var v admissionv1.ValidatingWebhookConfiguration
	if err := e.c.Get(ctx, types.NamespacedName{Name: "zerodrop-controller"}, &m); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Get(ctx, types.NamespacedName{Name: "zerodrop-controller"}, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Webhooks[0].ClientConfig.CABundle) == 0 || string(v.Webhooks[0].ClientConfig.CABundle) != string(m.Webhooks[0].ClientConfig.CABundle) {
		t.Fatalf("caBundles not patched: mutating %d bytes, validating %d bytes", len(m.Webhooks[0].ClientConfig.CABundle), len(v.Webhooks[0].ClientConfig.CABundle))
	}

	// Anything but the caBundle is refused. The policy needs a moment to
	// become active: probe with a label of a new value each time (never a
	// no-op) until it is refused, then try each change once.
	evil := func(mut func(*admissionv1.MutatingWebhookConfiguration)) error {
		var cur admissionv1.MutatingWebhookConfiguration
		if err := sa.Get(ctx, types.NamespacedName{Name: "zerodrop-controller"}, &cur); err != nil {
			return err
		}
		patch := client.MergeFrom(cur.DeepCopy())
		mut(&cur)
		return sa.Patch(ctx, &cur, patch)
	}
	probe := 0
	eventually(t, "the policy is active", func() (bool, string) {
		probe++
		err := evil(func(c *admissionv1.MutatingWebhookConfiguration) {
			c.Labels = map[string]string{"zerodrop-test/probe": fmt.Sprint(probe)}
		})
		return err != nil && strings.Contains(err.Error(), "zerodrop controller may"), fmt.Sprint(err)
	})
	for name, mut := range map[string]func(*admissionv1.MutatingWebhookConfiguration){
		"clientConfig.url to another server": func(c *admissionv1.MutatingWebhookConfiguration) {
			c.Webhooks[0].ClientConfig.Service = nil
			c.Webhooks[0].ClientConfig.URL = ptr.To("https://attacker.example/mutate")
		},
		"namespaceSelector widened to every namespace": func(c *admissionv1.MutatingWebhookConfiguration) {
			c.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{}
		},
		"rules widened to every resource": func(c *admissionv1.MutatingWebhookConfiguration) {
			c.Webhooks[0].Rules[0].Resources = []string{"*"}
		},
		"an annotation": func(c *admissionv1.MutatingWebhookConfiguration) {
			c.Annotations = map[string]string{"x": "y"}
		},
	} {
		if err := evil(mut); err == nil || !strings.Contains(err.Error(), "zerodrop controller may") {
			t.Errorf("changing %s as the controller: %v, want refused by the policy", name, err)
		}
	}
	// The caBundle alone still changes (a CA rotation).
	if err := evil(func(c *admissionv1.MutatingWebhookConfiguration) {
		b := v.Webhooks[0].ClientConfig.CABundle
		c.Webhooks[0].ClientConfig.CABundle = append(append([]byte(nil), b...), b...) // old and new CA during a rotation
	}); err != nil {
		t.Fatalf("caBundle-only patch refused: %v", err)
	}
	if err := sa.Delete(ctx, &m); err == nil {
		t.Fatalf("the controller deleted its MutatingWebhookConfiguration")
	}
}
