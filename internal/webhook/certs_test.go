package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func TestCertRotator(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zerodrop-controller"},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "pods.zerodrop.dev"}},
	}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(cfg).Build()
	dir := t.TempDir()
	r := &CertRotator{
		Client: c, Secret: types.NamespacedName{Namespace: "zerodrop-system", Name: "zerodrop-webhook-certs"},
		WebhookConfiguration: "zerodrop-controller", CertDir: dir,
		DNSNames: []string{"zerodrop-webhook.zerodrop-system.svc"},
		Now:      func() time.Time { return now },
	}
	ctx := context.Background()
	serving := func() (*x509.Certificate, []byte) {
		t.Helper()
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
		if err != nil {
			t.Fatalf("serving files: %v", err)
		}
		leaf, _ := x509.ParseCertificate(pair.Certificate[0])
		var got admissionregistrationv1.MutatingWebhookConfiguration
		if err := c.Get(ctx, types.NamespacedName{Name: "zerodrop-controller"}, &got); err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(got.Webhooks[0].ClientConfig.CABundle) {
			t.Fatalf("caBundle not patched")
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: r.DNSNames[0], CurrentTime: now}); err != nil {
			t.Fatalf("serving certificate does not verify against the caBundle: %v", err)
		}
		return leaf, got.Webhooks[0].ClientConfig.CABundle
	}

	if err := r.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	first, bundle := serving()

	t.Run("a second replica reuses the Secret", func(t *testing.T) {
		dir2 := t.TempDir()
		r2 := *r
		r2.CertDir = dir2
		if err := r2.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(filepath.Join(dir, "tls.crt"))
		b, _ := os.ReadFile(filepath.Join(dir2, "tls.crt"))
		if !bytes.Equal(a, b) {
			t.Fatalf("replicas serve different certificates")
		}
	})

	now = now.Add(40 * 24 * time.Hour)
	if err := r.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if same, _ := serving(); same.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("certificate renewed with 50 of 90 days left")
	}

	now = now.Add(25 * 24 * time.Hour)
	if err := r.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	renewed, bundle2 := serving()
	if renewed.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatalf("certificate not renewed with 25 of 90 days left")
	}
	if !bytes.Equal(bundle, bundle2) {
		t.Fatalf("CA changed although it is valid for years")
	}
	var s corev1.Secret
	if err := c.Get(ctx, r.Secret, &s); err != nil || len(s.Data["ca.key"]) == 0 {
		t.Fatalf("secret: %v", err)
	}
}
