package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
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
	var observed time.Time
	r.Observe = func(notAfter time.Time) { observed = notAfter }
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
	if !observed.Equal(first.NotAfter) {
		t.Fatalf("Observe told %v, the serving certificate ends %v", observed, first.NotAfter)
	}

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
	if !observed.Equal(renewed.NotAfter) || !observed.After(first.NotAfter) {
		t.Fatalf("after renewal Observe told %v, the renewed certificate ends %v", observed, renewed.NotAfter)
	}
	if !bytes.Equal(bundle, bundle2) {
		t.Fatalf("CA changed although it is valid for years")
	}
	var s corev1.Secret
	if err := c.Get(ctx, r.Secret, &s); err != nil || len(s.Data["ca.key"]) == 0 {
		t.Fatalf("secret: %v", err)
	}
}

// TestCertRotatorReadOnly: a serve replica's reader waits for the Secret the
// reconcile role issues, then serves exactly that certificate; it never
// creates the Secret nor touches the caBundle.
func TestCertRotatorReadOnly(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zerodrop-controller"},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "pods.zerodrop.dev"}},
	}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(cfg).Build()
	ctx := context.Background()
	secret := types.NamespacedName{Namespace: "zerodrop-system", Name: "zerodrop-webhook-certs"}
	names := []string{"zerodrop-webhook.zerodrop-system.svc"}
	readerDir := t.TempDir()
	reader := &CertRotator{Client: c, Secret: secret, WebhookConfiguration: "zerodrop-controller", CertDir: readerDir,
		DNSNames: names, Now: func() time.Time { return now }, ReadOnly: true}

	if err := reader.Ensure(ctx); err == nil {
		t.Fatalf("reader Ensure without a Secret succeeded; want an error until the issuer wrote it")
	}
	var s corev1.Secret
	if err := c.Get(ctx, secret, &s); err == nil {
		t.Fatalf("reader created the Secret")
	}

	issuer := &CertRotator{Client: c, Secret: secret, WebhookConfiguration: "zerodrop-controller",
		DNSNames: names, Now: func() time.Time { return now }} // no CertDir: issues, writes no files
	if err := issuer.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	var before admissionregistrationv1.MutatingWebhookConfiguration
	if err := c.Get(ctx, types.NamespacedName{Name: "zerodrop-controller"}, &before); err != nil {
		t.Fatal(err)
	}
	// The issuer's patch is there; blank it to see whether the reader patches.
	before.Webhooks[0].ClientConfig.CABundle = nil
	if err := c.Update(ctx, &before); err != nil {
		t.Fatal(err)
	}
	if err := reader.Ensure(ctx); err != nil {
		t.Fatalf("reader Ensure after issuing: %v", err)
	}
	if err := c.Get(ctx, secret, &s); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(readerDir, "tls.crt"))
	if err != nil || !bytes.Equal(got, s.Data["tls.crt"]) {
		t.Fatalf("reader's tls.crt differs from the Secret's (%v)", err)
	}
	var after admissionregistrationv1.MutatingWebhookConfiguration
	if err := c.Get(ctx, types.NamespacedName{Name: "zerodrop-controller"}, &after); err != nil {
		t.Fatal(err)
	}
	if len(after.Webhooks[0].ClientConfig.CABundle) != 0 {
		t.Fatalf("reader patched the caBundle")
	}

	wrong := *reader
	wrong.DNSNames = []string{"other.zerodrop-system.svc"}
	if err := wrong.Ensure(ctx); err == nil || !strings.Contains(err.Error(), "does not cover") {
		t.Fatalf("reader with other DNS names: %v, want a 'does not cover' error", err)
	}
	now = now.Add(100 * 24 * time.Hour)
	if err := reader.Ensure(ctx); err == nil {
		t.Fatalf("reader accepted an expired certificate")
	}
}

// Scenario: a certificate for a webhook called by URL at an address (the
// lab's 127.0.0.1) carries the address as an IP SAN, so a client that checks
// it against the returned CA accepts it for that address and no other.
func TestIssueServingCertificateForAnAddress(t *testing.T) {
	caPEM, certPEM, keyPEM, err := IssueServingCertificate(time.Now(), time.Hour, []string{"127.0.0.1", "hook.example"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatalf("key pair: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA does not parse")
	}
	block, _ := pem.Decode(certPEM)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for name, ok := range map[string]bool{"127.0.0.1": true, "hook.example": true, "127.0.0.2": false} {
		_, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool})
		if (err == nil) != ok {
			t.Errorf("verify for %s: %v, want ok=%v", name, err, ok)
		}
	}
}

// TestCertRotatorPatchesValidatingConfiguration: the TargetBinding
// validator is served with the same certificate, so the
// ValidatingWebhookConfiguration of the same name gets the same caBundle;
// an install without it is not an error.
func TestCertRotatorPatchesValidatingConfiguration(t *testing.T) {
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zerodrop-controller"},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "pods.zerodrop.dev"}},
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zerodrop-controller"},
		Webhooks:   []admissionregistrationv1.ValidatingWebhook{{Name: "targetbindings.zerodrop.dev"}},
	}
	ctx := context.Background()
	for _, withVWC := range []bool{true, false} {
		b := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(mwc.DeepCopy())
		if withVWC {
			b = b.WithObjects(vwc.DeepCopy())
		}
		c := b.Build()
		r := &CertRotator{Client: c, Secret: types.NamespacedName{Namespace: "zerodrop-system", Name: "zerodrop-webhook-certs"},
			WebhookConfiguration: "zerodrop-controller", CertDir: t.TempDir(), DNSNames: []string{"zerodrop-webhook.zerodrop-system.svc"}}
		if err := r.Ensure(ctx); err != nil {
			t.Fatalf("with ValidatingWebhookConfiguration %v: %v", withVWC, err)
		}
		if !withVWC {
			continue
		}
		var m admissionregistrationv1.MutatingWebhookConfiguration
		var v admissionregistrationv1.ValidatingWebhookConfiguration
		if err := c.Get(ctx, types.NamespacedName{Name: "zerodrop-controller"}, &m); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, types.NamespacedName{Name: "zerodrop-controller"}, &v); err != nil {
			t.Fatal(err)
		}
		if len(v.Webhooks[0].ClientConfig.CABundle) == 0 || string(v.Webhooks[0].ClientConfig.CABundle) != string(m.Webhooks[0].ClientConfig.CABundle) {
			t.Fatalf("validating caBundle %q, want the mutating one", v.Webhooks[0].ClientConfig.CABundle)
		}
	}
}
