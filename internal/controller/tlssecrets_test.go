package controller

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/webhook"
)

func tlsSecret(t *testing.T, ns, name, client string) *corev1.Secret {
	t.Helper()
	m, err := webhook.IssueMutualTLS(time.Now(), time.Hour, []string{"haproxy-a.lb.test"}, client)
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": m.ClientCert, "tls.key": m.ClientKey, "ca.crt": m.CA}}
}

func clientName(t *testing.T, s *TLSSecrets, ref zv1.SecretReference) string {
	t.Helper()
	cfg, err := s.Config(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c.Subject.CommonName
}

// Scenario: a LoadBalancer names a Secret without a namespace; the Secret is
// renewed (cert-manager rewrites it). Expectation: the controller's
// namespace is used; the renewed certificate is in use once MaxAge has
// passed, and not before (one get per MaxAge, not one per command).
func TestTLSSecretsRereadsARenewedSecret(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithObjects(tlsSecret(t, "zerodrop-system", "zerodrop-haproxy-client", "first")).Build()
	now := time.Now()
	s := &TLSSecrets{Reader: c, Namespace: "zerodrop-system", MaxAge: 30 * time.Second, Now: func() time.Time { return now }}
	ref := zv1.SecretReference{Name: "zerodrop-haproxy-client"}
	if got := clientName(t, s, ref); got != "first" {
		t.Fatalf("client certificate %q, want first", got)
	}
	renewed := tlsSecret(t, "zerodrop-system", "zerodrop-haproxy-client", "second")
	var cur corev1.Secret
	if err := c.Get(ctx, client.ObjectKeyFromObject(renewed), &cur); err != nil {
		t.Fatal(err)
	}
	cur.Data = renewed.Data
	if err := c.Update(ctx, &cur); err != nil {
		t.Fatal(err)
	}
	now = now.Add(10 * time.Second)
	if got := clientName(t, s, ref); got != "first" {
		t.Fatalf("within MaxAge: client certificate %q, want the one read (first)", got)
	}
	now = now.Add(30 * time.Second)
	if got := clientName(t, s, ref); got != "second" {
		t.Fatalf("after MaxAge: client certificate %q, want the renewed one (second)", got)
	}
	cfg, err := s.For(ref, "haproxy-a.lb.test")(ctx)
	if err != nil || cfg.ServerName != "haproxy-a.lb.test" || cfg.RootCAs == nil {
		t.Fatalf("For: %+v, %v; want the server name and the CA pool", cfg, err)
	}
}

// Scenario: Secrets an operator gets wrong. Expectation: the error names
// the Secret and, where one is at fault, the key; a fixed Secret is picked
// up within seconds, not after MaxAge.
func TestTLSSecretsSayWhatIsWrong(t *testing.T) {
	ctx := context.Background()
	noCA := tlsSecret(t, "lb", "no-ca", "c")
	delete(noCA.Data, "ca.crt")
	badKey := tlsSecret(t, "lb", "bad-key", "c")
	badKey.Data["tls.key"] = tlsSecret(t, "lb", "other", "c").Data["tls.key"]
	halfPair := tlsSecret(t, "lb", "half-pair", "c")
	delete(halfPair.Data, "tls.key")
	badCA := tlsSecret(t, "lb", "bad-ca", "c")
	blk, _ := pem.Decode(badCA.Data["ca.crt"])
	badCA.Data["ca.crt"] = blk.Bytes // DER, not PEM
	forbidden := interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		if key.Name == "not-ours" {
			return apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, key.Name, nil)
		}
		return c.Get(ctx, key, obj, opts...)
	}}
	c := fake.NewClientBuilder().WithObjects(noCA, badKey, badCA, halfPair).WithInterceptorFuncs(forbidden).Build()
	now := time.Now()
	s := &TLSSecrets{Reader: c, Namespace: "zerodrop-system", Now: func() time.Time { return now }}
	for _, tc := range []struct {
		ref  zv1.SecretReference
		want []string
	}{
		{zv1.SecretReference{Name: "absent"}, []string{"Secret zerodrop-system/absent not found"}},
		{zv1.SecretReference{Namespace: "lb", Name: "no-ca"}, []string{"Secret lb/no-ca", `no key "ca.crt"`}},
		{zv1.SecretReference{Namespace: "lb", Name: "bad-key"}, []string{"Secret lb/bad-key", `"tls.crt" and "tls.key"`}},
		{zv1.SecretReference{Namespace: "lb", Name: "half-pair"}, []string{"Secret lb/half-pair", `no key "tls.key" beside the other half`}},
		{zv1.SecretReference{Namespace: "lb", Name: "bad-ca"}, []string{"Secret lb/bad-ca", `"ca.crt" holds no PEM certificate`}},
		{zv1.SecretReference{Namespace: "lb", Name: "not-ours"}, []string{"Secret lb/not-ours", "may not read it", "RBAC"}},
	} {
		_, err := s.Config(ctx, tc.ref)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %v; want it to mention %q", tc.ref, err, w)
			}
		}
	}
	// CA only: server TLS without a client certificate (an adapter that
	// takes a bearer token).
	caOnly := tlsSecret(t, "lb", "ca-only", "c")
	delete(caOnly.Data, "tls.crt")
	delete(caOnly.Data, "tls.key")
	if err := c.Create(ctx, caOnly); err != nil {
		t.Fatal(err)
	}
	if cfg, err := s.Config(ctx, zv1.SecretReference{Namespace: "lb", Name: "ca-only"}); err != nil || cfg.RootCAs == nil || len(cfg.Certificates) != 0 {
		t.Fatalf("CA-only Secret: config %+v, err %v; want server TLS without a client certificate", cfg, err)
	}
	if err := c.Create(ctx, tlsSecret(t, "zerodrop-system", "absent", "late")); err != nil {
		t.Fatal(err)
	}
	now = now.Add(6 * time.Second)
	if got := clientName(t, s, zv1.SecretReference{Name: "absent"}); got != "late" {
		t.Fatalf("created Secret: client %q, want late", got)
	}
}
