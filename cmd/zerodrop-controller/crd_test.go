package main

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
)

// TestCRDValidation: the generated CRDs' OpenAPI and CEL rules reject bad
// objects at the API server, with a message naming the field.
func TestCRDValidation(t *testing.T) {
	requireSuite(t)
	ctx := context.Background()
	ns := newNamespace(t, false)
	binding := func(name string, mut func(*zv1.TargetBinding)) *zv1.TargetBinding {
		b := &zv1.TargetBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: zv1.TargetBindingSpec{
			ServiceRef: zv1.ServiceReference{Name: "web", Port: intstr.FromInt32(80)}, LoadBalancerRef: zv1.LoadBalancerReference{Name: "edge"}, Pool: "be_web"}}
		if mut != nil {
			mut(b)
		}
		return b
	}
	lb := func(in ...zv1.LoadBalancerInstance) *zv1.LoadBalancer {
		return &zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{GenerateName: "bad-"}, Spec: zv1.LoadBalancerSpec{Provider: zv1.ProviderHAProxy, Instances: in}}
	}
	cases := []struct {
		name string
		obj  client.Object
		want string
	}{
		{"instance with socket and address", lb(zv1.LoadBalancerInstance{Name: "a", Socket: "/run/a.sock", Address: "10.0.0.1:9999"}), "exactly one of socket or address"},
		{"instance with neither", lb(zv1.LoadBalancerInstance{Name: "a"}), "exactly one of socket or address"},
		{"tls on a unix socket", lb(zv1.LoadBalancerInstance{Name: "a", Socket: "/run/a.sock", TLS: &zv1.InstanceTLS{SecretRef: zv1.SecretReference{Name: "s", Namespace: "n"}}}), "tls applies only"},
		{"tls secret name that is not a Secret name", lb(zv1.LoadBalancerInstance{Name: "a", Address: "10.0.0.1:9999", TLS: &zv1.InstanceTLS{SecretRef: zv1.SecretReference{Name: "Bad_Name"}}}), "secretRef.name"},
		{"tls secret namespace that is not a namespace", lb(zv1.LoadBalancerInstance{Name: "a", Address: "10.0.0.1:9999", TLS: &zv1.InstanceTLS{SecretRef: zv1.SecretReference{Name: "s", Namespace: "a.b"}}}), "secretRef.namespace"},
		{"tls server name with a space", lb(zv1.LoadBalancerInstance{Name: "a", Address: "10.0.0.1:9999", TLS: &zv1.InstanceTLS{SecretRef: zv1.SecretReference{Name: "s"}, ServerName: "lb a"}}), "serverName"},
		{"no instance", lb(), "needs at least one instance"},
		{"server options with a command separator", func() client.Object {
			l := lb(zv1.LoadBalancerInstance{Name: "a", Socket: "/run/a.sock"})
			l.Spec.PoolDefaults.ServerOptions = "maxconn 10; del server be/x"
			return l
		}(), "serverOptions"},
		{"pool grant from Selector without a selector", func() client.Object {
			l := lb(zv1.LoadBalancerInstance{Name: "a", Socket: "/run/a.sock"})
			l.Spec.Pools = []zv1.PoolGrant{{Name: "be_web", AllowedNamespaces: zv1.AllowedNamespaces{From: zv1.NamespacesFromSelector}}}
			return l
		}(), "selector is required"},
		{"pool grant with a selector but from All", func() client.Object {
			l := lb(zv1.LoadBalancerInstance{Name: "a", Socket: "/run/a.sock"})
			l.Spec.Pools = []zv1.PoolGrant{{Name: "be_web", AllowedNamespaces: zv1.AllowedNamespaces{From: zv1.NamespacesFromAll, Selector: &metav1.LabelSelector{}}}}
			return l
		}(), "selector is required"},
		{"pool grant from an unknown value", func() client.Object {
			l := lb(zv1.LoadBalancerInstance{Name: "a", Socket: "/run/a.sock"})
			l.Spec.Pools = []zv1.PoolGrant{{Name: "be_web", AllowedNamespaces: zv1.AllowedNamespaces{From: "Everyone"}}}
			return l
		}(), "from"},
		{"pool grant listed twice", func() client.Object {
			l := lb(zv1.LoadBalancerInstance{Name: "a", Socket: "/run/a.sock"})
			l.Spec.Pools = []zv1.PoolGrant{{Name: "be_web"}, {Name: "be_web"}}
			return l
		}(), "Duplicate"},
		{"provider external without external", &zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{GenerateName: "bad-"}, Spec: zv1.LoadBalancerSpec{Provider: zv1.ProviderExternal}}, "external is required"},
		{"provider external with instances", &zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{GenerateName: "bad-"}, Spec: zv1.LoadBalancerSpec{Provider: zv1.ProviderExternal,
			External: &zv1.ExternalProvider{URL: "https://adapter.lb:8443"}, Instances: []zv1.LoadBalancerInstance{{Name: "a", Socket: "/run/a.sock"}}}}, "leave instances empty"},
		{"external on provider haproxy", func() client.Object {
			l := lb(zv1.LoadBalancerInstance{Name: "a", Socket: "/run/a.sock"})
			l.Spec.External = &zv1.ExternalProvider{URL: "https://adapter.lb:8443"}
			return l
		}(), "external is required with provider external and allowed only with it"},
		{"external over plain http", &zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{GenerateName: "bad-"}, Spec: zv1.LoadBalancerSpec{Provider: zv1.ProviderExternal,
			External: &zv1.ExternalProvider{URL: "http://adapter.lb:8080"}}}, "https://"},
		{"reload grace over an hour", func() client.Object {
			l := lb(zv1.LoadBalancerInstance{Name: "a", Socket: "/run/a.sock"})
			l.Spec.ReloadGrace = &metav1.Duration{Duration: 2 * time.Hour}
			return l
		}(), "reloadGrace"},
		{"binding name longer than a condition name", binding(strings.Repeat("a", 64), nil), "at most 63 characters"},
		{"service port 0", binding("port0", func(b *zv1.TargetBinding) { b.Spec.ServiceRef.Port = intstr.FromInt32(0) }), "port must be"},
		{"gate timeout below 1s", binding("short", func(b *zv1.TargetBinding) { b.Spec.Gate.Timeout = &metav1.Duration{Duration: 1} }), "timeout must be between"},
		{"unknown onTimeout", binding("ontimeout", func(b *zv1.TargetBinding) { b.Spec.Gate.OnTimeout = "Maybe" }), "onTimeout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := suite.c.Create(ctx, c.obj)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("create: %v; want an error mentioning %q", err, c.want)
			}
		})
	}

	t.Run("a listed pool's grant defaults to from: Same", func(t *testing.T) {
		l := lb(zv1.LoadBalancerInstance{Name: "a", Socket: "/run/a.sock"})
		l.Spec.Pools = []zv1.PoolGrant{{Name: "be_web"}}
		if err := suite.c.Create(ctx, l); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = suite.c.Delete(context.Background(), l) })
		if got := l.Spec.Pools[0].AllowedNamespaces.From; got != zv1.NamespacesFromSame {
			t.Fatalf("allowedNamespaces.from defaulted to %q, want Same", got)
		}
	})

	t.Run("provider external without instances", func(t *testing.T) {
		l := &zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{GenerateName: "ext-"}, Spec: zv1.LoadBalancerSpec{Provider: zv1.ProviderExternal,
			External: &zv1.ExternalProvider{URL: "https://adapter.lb:8443", TokenSecretRef: &zv1.SecretReference{Name: "adapter-token"}}}}
		if err := suite.c.Create(ctx, l); err != nil {
			t.Fatalf("create: %v", err)
		}
		t.Cleanup(func() { suite.c.Delete(ctx, l) })
	})

	t.Run("tls with a Secret in the controller's namespace", func(t *testing.T) {
		l := lb(zv1.LoadBalancerInstance{Name: "a", Address: "haproxy-a.example:9999",
			TLS: &zv1.InstanceTLS{SecretRef: zv1.SecretReference{Name: "zerodrop-haproxy-client"}, ServerName: "haproxy-a.lb.internal"}})
		if err := suite.c.Create(ctx, l); err != nil {
			t.Fatalf("create: %v", err)
		}
		t.Cleanup(func() { suite.c.Delete(ctx, l) })
	})

	t.Run("defaults applied and pool immutable", func(t *testing.T) {
		b := binding("immutable", nil)
		if err := suite.c.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
		if b.Spec.Gate.OnTimeout != zv1.FailClosed || b.Spec.Drain.Timeout == nil || b.Spec.Drain.Timeout.Duration.String() != "30s" ||
			b.Spec.Drain.PreStop != zv1.PreStopNone || b.Spec.Drain.Enabled == nil || !*b.Spec.Drain.Enabled {
			t.Fatalf("defaults not applied: gate %+v drain %+v", b.Spec.Gate, b.Spec.Drain)
		}
		b.Spec.Pool = "be_other"
		if err := suite.c.Update(ctx, b); err == nil || !strings.Contains(err.Error(), "immutable") {
			t.Fatalf("pool change: %v; want immutable", err)
		}
	})
}
