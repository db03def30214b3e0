package providers

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider/remote"
)

func externalLB(ext *zv1.ExternalProvider) *zv1.LoadBalancer {
	return &zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Name: "f5"}, Spec: zv1.LoadBalancerSpec{Provider: zv1.ProviderExternal, External: ext}}
}

// Scenario: a LoadBalancer of provider external with every field of
// spec.external set. Expectation: the remote client's configuration has
// the URL and the timeout; its TLS comes from the tls Secret with the
// server name; its token is key "token" of tokenSecretRef's Secret, read
// through Options.Secret; the registry builds a *remote.Client for it.
func TestExternalConfigFromTheLoadBalancer(t *testing.T) {
	var tlsAsked []string
	var secretAsked []string
	o := Options{
		Timeout: 3 * time.Second,
		TLS: func(ref zv1.SecretReference, serverName string) func(context.Context) (*tls.Config, error) {
			tlsAsked = append(tlsAsked, ref.Namespace+"/"+ref.Name+"@"+serverName)
			return func(context.Context) (*tls.Config, error) { return &tls.Config{ServerName: serverName}, nil }
		},
		Secret: func(_ context.Context, ref zv1.SecretReference, key string) ([]byte, error) {
			secretAsked = append(secretAsked, ref.Namespace+"/"+ref.Name+"#"+key)
			return []byte("tok\n"), nil
		},
	}
	lb := externalLB(&zv1.ExternalProvider{
		URL:            "https://lb-adapter.lb.svc:8443",
		TLS:            &zv1.InstanceTLS{SecretRef: zv1.SecretReference{Name: "adapter-tls", Namespace: "lb"}, ServerName: "lb-adapter.lb.svc"},
		TokenSecretRef: &zv1.SecretReference{Name: "adapter-token"},
		Timeout:        &metav1.Duration{Duration: 7 * time.Second},
	})
	cfg, err := ExternalConfig(o, lb)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.URL != "https://lb-adapter.lb.svc:8443" || cfg.Timeout != 7*time.Second || cfg.AllowInsecure {
		t.Fatalf("config %+v, want the URL and timeout of spec.external", cfg)
	}
	if len(tlsAsked) != 1 || tlsAsked[0] != "lb/adapter-tls@lb-adapter.lb.svc" {
		t.Fatalf("TLS asked for %v, want lb/adapter-tls with server name lb-adapter.lb.svc", tlsAsked)
	}
	if tc, err := cfg.TLS(context.Background()); err != nil || tc.ServerName != "lb-adapter.lb.svc" {
		t.Fatalf("TLS() = %v, %v", tc, err)
	}
	tok, err := cfg.Token(context.Background())
	if err != nil || string(tok) != "tok\n" || len(secretAsked) != 1 || secretAsked[0] != "/adapter-token#token" {
		t.Fatalf("Token() = %q, %v after asking %v; want key token of Secret adapter-token", tok, err, secretAsked)
	}
	p, err := Builtin(o)[zv1.ProviderExternal](lb)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := p.(*remote.Client); !ok || c.URL() != "https://lb-adapter.lb.svc:8443" {
		t.Fatalf("registry built %T, want a *remote.Client for the URL", p)
	}

	lb.Spec.External.Timeout = nil
	if cfg, _ := ExternalConfig(o, lb); cfg.Timeout != 3*time.Second {
		t.Fatalf("timeout without spec.external.timeout: %s, want the process's 3s", cfg.Timeout)
	}
	if cfg, _ := ExternalConfig(Options{}, externalLB(&zv1.ExternalProvider{URL: "https://a"})); cfg.Timeout != remote.DefaultTimeout || cfg.Token != nil || cfg.TLS != nil {
		t.Fatalf("bare config %+v, want the default timeout, no token, no TLS", cfg)
	}
}

func TestExternalConfigRefuses(t *testing.T) {
	readsNothing := Options{}
	for _, tc := range []struct {
		name string
		o    Options
		ext  *zv1.ExternalProvider
		says string
	}{
		{"no spec.external", readsNothing, nil, "spec.external: missing"},
		{"plain http without allowInsecure", readsNothing, &zv1.ExternalProvider{URL: "http://adapter:8080"}, "use https://"},
		{"tls without a Secret reader", readsNothing, &zv1.ExternalProvider{URL: "https://a", TLS: &zv1.InstanceTLS{SecretRef: zv1.SecretReference{Name: "s"}}}, "spec.external.tls"},
		{"token without a Secret reader", readsNothing, &zv1.ExternalProvider{URL: "https://a", TokenSecretRef: &zv1.SecretReference{Name: "s"}}, "spec.external.tokenSecretRef"},
		{"zero timeout", readsNothing, &zv1.ExternalProvider{URL: "https://a", Timeout: &metav1.Duration{}}, "spec.external.timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ExternalConfig(tc.o, externalLB(tc.ext)); err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("%v, want an error naming %q", err, tc.says)
			}
		})
	}
	if _, err := ExternalConfig(readsNothing, externalLB(&zv1.ExternalProvider{URL: "http://127.0.0.1:8080", AllowInsecure: true})); err != nil {
		t.Fatalf("http with allowInsecure: %v", err)
	}
}

// Scenario: the token Secret missing, without key token, empty, then
// present. Expectation: each error names the Secret and the key; a read
// value is kept (no GET per request) and a failure is retried.
func TestTokenFromASecret(t *testing.T) {
	good := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "zerodrop-system", Name: "tok"}, Data: map[string][]byte{"token": []byte("abc")}}
	noKey := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "zerodrop-system", Name: "nokey"}, Data: map[string][]byte{"other": []byte("x")}}
	empty := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "zerodrop-system", Name: "empty"}, Data: map[string][]byte{"token": []byte(" \n")}}
	c := fake.NewClientBuilder().WithObjects(good, noKey, empty).Build()
	o := Options{Secret: SecretKeys(c, "zerodrop-system")}
	token := func(name string) ([]byte, error) {
		cfg, err := ExternalConfig(o, externalLB(&zv1.ExternalProvider{URL: "https://a", TokenSecretRef: &zv1.SecretReference{Name: name}}))
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Token(context.Background())
	}
	if tok, err := token("tok"); err != nil || string(tok) != "abc" {
		t.Fatalf("token: %q %v", tok, err)
	}
	for name, says := range map[string]string{
		"missing": "Secret zerodrop-system/missing not found",
		"nokey":   `Secret zerodrop-system/nokey: no key "token"`,
		"empty":   `Secret empty key "token" is empty`,
	} {
		if _, err := token(name); err == nil || !strings.Contains(err.Error(), says) || !strings.Contains(err.Error(), "spec.external.tokenSecretRef") {
			t.Errorf("token of Secret %s: %v, want an error saying %q", name, err, says)
		}
	}
	// Kept: deleting the Secret does not change the value for a while.
	if err := c.Delete(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	if tok, err := token("tok"); err != nil || string(tok) != "abc" {
		t.Fatalf("token right after the Secret went: %q %v, want the kept value", tok, err)
	}
	if _, err := SecretKeys(c, "ns")(context.Background(), zv1.SecretReference{Name: "x"}, "token"); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("missing Secret: %v", err)
	}
}
