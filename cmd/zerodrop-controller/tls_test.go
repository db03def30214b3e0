package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/controller"
	lab "zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/testenv"
	"zerodrop.dev/zerodrop/internal/webhook"
	"zerodrop.dev/zerodrop/provider"
)

// Scenario: a LoadBalancer whose instance has tls naming a Secret in the
// controller's namespace (tls.crt, tls.key, ca.crt), in front of a real
// HAProxy whose Runtime API requires a client certificate. Expectation: the
// provider main builds reads the pool over mutual TLS; once the Secret is
// broken the instance's error names the Secret and the key; the same
// address without tls is refused as "not an HAProxy Runtime API".
func TestProvidersSpeakMutualTLSFromASecret(t *testing.T) {
	testenv.RequireBinary(t, "haproxy")
	m, err := webhook.IssueMutualTLS(time.Now(), time.Hour, []string{"haproxy-a.lb.test"}, "zerodrop-controller")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := lab.Start(ctx, lab.Config{AdminTLS: &lab.AdminTLS{Cert: m.ServerCert, Key: m.ServerKey, CA: m.CA}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop() })

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: controllerNS, Name: "zerodrop-haproxy-client"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": m.ClientCert, "tls.key": m.ClientKey, "ca.crt": m.CA}}
	c := fake.NewClientBuilder().WithObjects(secret).Build()
	now := time.Now()
	secrets := &controller.TLSSecrets{Reader: c, Namespace: controllerNS, Now: func() time.Time { return now }}
	factory := Providers(slog.Default(), 2*time.Second, 0, secrets)[zv1.ProviderHAProxy]
	lb := &zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Name: "edge"}, Spec: zv1.LoadBalancerSpec{Provider: zv1.ProviderHAProxy, Instances: []zv1.LoadBalancerInstance{
		{Name: "haproxy-a", Address: in.AdminTLSAddr(), TLS: &zv1.InstanceTLS{SecretRef: zv1.SecretReference{Name: secret.Name}, ServerName: "haproxy-a.lb.test"}},
		{Name: "haproxy-a-plaintext", Address: in.AdminTLSAddr()},
	}}}
	p, err := factory(lb)
	if err != nil {
		t.Fatalf("build provider: %v", err)
	}
	// Status joins the instances' errors; each instance's is in its status.
	st, _ := p.Status(ctx, provider.Pool{Name: "app"})
	if e := st.Instances[0].Err; e != nil {
		t.Fatalf("instance with tls: %v", e)
	}
	if e := st.Instances[1].Err; e == nil || !strings.Contains(e.Error(), "not an HAProxy Runtime API") {
		t.Fatalf("instance without tls on the TLS port: %v; want not an HAProxy Runtime API", e)
	}

	delete(secret.Data, "tls.key")
	if err := c.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	st, _ = p.Status(ctx, provider.Pool{Name: "app"})
	if e := st.Instances[0].Err; e == nil || !strings.Contains(e.Error(), "Secret zerodrop-system/zerodrop-haproxy-client") || !strings.Contains(e.Error(), `"tls.key"`) {
		t.Fatalf("instance with a broken Secret: %v; want an error naming the Secret and tls.key", e)
	}
}

// Scenario: a LoadBalancer's instance names a tls Secret that does not
// exist, then one that lacks ca.crt; no TargetBinding uses the
// LoadBalancer. Expectation: its status says the instance is not reachable
// and names the Secret (and then the key), without waiting for a binding.
func TestLoadBalancerStatusNamesABrokenTLSSecret(t *testing.T) {
	requireSuite(t)
	ctx := context.Background()
	ns := newNamespace(t, false)
	lb := &zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Name: ns + "-tls"}, Spec: zv1.LoadBalancerSpec{
		Provider: zv1.ProviderHAProxy, Instances: []zv1.LoadBalancerInstance{{Name: "lb-a", Address: "10.0.0.1:9999",
			TLS: &zv1.InstanceTLS{SecretRef: zv1.SecretReference{Namespace: ns, Name: "haproxy-client"}}}}}}
	if err := suite.c.Create(ctx, lb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { suite.c.Delete(ctx, lb) })
	message := func(want string) func() (bool, string) {
		return func() (bool, string) {
			var got zv1.LoadBalancer
			if err := suite.c.Get(ctx, client.ObjectKeyFromObject(lb), &got); err != nil {
				return false, err.Error()
			}
			for _, in := range got.Status.Instances {
				if in.Name == "lb-a" && !in.Reachable && strings.Contains(in.Message, want) {
					return true, ""
				}
			}
			return false, fmt.Sprintf("status %+v", got.Status)
		}
	}
	eventually(t, "status names the missing Secret", message("Secret "+ns+"/haproxy-client not found"))
	m, err := webhook.IssueMutualTLS(time.Now(), time.Hour, []string{"10.0.0.1"}, "zerodrop-controller")
	if err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "haproxy-client"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": m.ClientCert, "tls.key": m.ClientKey}}
	if err := suite.c.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	eventually(t, "status names the missing key", message(`no key "ca.crt"`))
}
