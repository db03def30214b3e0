package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/controller"
	lab "zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/testenv"
	"zerodrop.dev/zerodrop/internal/webhook"
	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/adapter"
	"zerodrop.dev/zerodrop/provider/haproxy"
)

// Scenario: a LoadBalancer of provider external whose adapter (in front of
// a real HAProxy) requires a client certificate and a bearer token, both
// from Secrets in the controller's namespace, read as main reads them.
// Expectation: the provider main builds reads the pool through the adapter
// with HAProxy's capabilities; with the token Secret missing, calls fail
// Unreachable naming the Secret.
func TestProvidersReachAnAdapterWithSecrets(t *testing.T) {
	testenv.RequireBinary(t, "haproxy")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := lab.Start(ctx, lab.Config{Backends: []lab.Backend{{Name: "app"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop() })
	hp, err := haproxy.New(haproxy.Config{Instances: []haproxy.Instance{{Name: "haproxy-a", Address: in.Socket()}}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := webhook.IssueMutualTLS(time.Now(), time.Hour, []string{"adapter.lb.test"}, "zerodrop-controller")
	if err != nil {
		t.Fatal(err)
	}
	cas := x509.NewCertPool()
	cas.AppendCertsFromPEM(m.CA)
	h, err := adapter.New(adapter.Options{Provider: hp, Token: []byte("s3cret"), ClientCAs: cas, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	pair, _ := tls.X509KeyPair(m.ServerCert, m.ServerKey)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = adapter.ServerTLSConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil }, cas)
	srv.TLS.Certificates = []tls.Certificate{pair}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	tlsSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: controllerNS, Name: "zerodrop-adapter-client"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": m.ClientCert, "tls.key": m.ClientKey, "ca.crt": m.CA}}
	tokSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: controllerNS, Name: "zerodrop-adapter-token"}, Data: map[string][]byte{"token": []byte("s3cret")}}
	c := fake.NewClientBuilder().WithObjects(tlsSecret, tokSecret).Build()
	secrets := &controller.TLSSecrets{Reader: c, Namespace: controllerNS}
	factory := Providers(slog.Default(), 2*time.Second, 0, secrets)[zv1.ProviderExternal]
	lb := &zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Name: "edge"}, Spec: zv1.LoadBalancerSpec{Provider: zv1.ProviderExternal, External: &zv1.ExternalProvider{
		URL:            srv.URL,
		TLS:            &zv1.InstanceTLS{SecretRef: zv1.SecretReference{Name: tlsSecret.Name}, ServerName: "adapter.lb.test"},
		TokenSecretRef: &zv1.SecretReference{Name: tokSecret.Name},
	}}}
	p, err := factory(lb)
	if err != nil {
		t.Fatalf("build provider: %v", err)
	}
	st, err := p.Status(ctx, provider.Pool{Name: "app"})
	if err != nil || len(st.Instances) != 1 || st.Instances[0].Instance != "haproxy-a" || st.Instances[0].Epoch == "" {
		t.Fatalf("status through the adapter: %v %v, want haproxy-a read", st, err)
	}
	want := hp.Capabilities()
	if got := p.Capabilities(); got != want {
		t.Fatalf("capabilities %+v, want HAProxy's", got)
	}

	lb.Spec.External.TokenSecretRef = &zv1.SecretReference{Name: "absent"}
	if p, err = factory(lb); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Status(ctx, provider.Pool{Name: "app"}); !errors.Is(err, provider.ErrUnreachable) ||
		!strings.Contains(err.Error(), "Secret zerodrop-system/absent not found") || !strings.Contains(err.Error(), "tokenSecretRef") {
		t.Fatalf("token Secret missing: %v, want Unreachable naming the Secret and spec.external.tokenSecretRef", err)
	}
}
