package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// firstCert parses the first certificate of a PEM block.
func firstCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		t.Fatalf("no PEM certificate in %q", certPEM)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// caBundles returns the caBundle of every webhook of the mutating and the
// validating configuration, as the API server would use them now.
func caBundles(t *testing.T, c client.Client) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	out := map[string][]byte{}
	var m admissionregistrationv1.MutatingWebhookConfiguration
	var v admissionregistrationv1.ValidatingWebhookConfiguration
	if err := c.Get(ctx, types.NamespacedName{Name: "zerodrop-controller"}, &m); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, types.NamespacedName{Name: "zerodrop-controller"}, &v); err != nil {
		t.Fatal(err)
	}
	for _, w := range m.Webhooks {
		out["mutating "+w.Name] = w.ClientConfig.CABundle
	}
	for _, w := range v.Webhooks {
		out["validating "+w.Name] = w.ClientConfig.CABundle
	}
	return out
}

// bundleHolds reports whether a caBundle holds ca, and whether it holds
// another CA.
func bundleHolds(bundle []byte, ca *x509.Certificate) (has, other bool) {
	for rest := bundle; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			return has, other
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		switch {
		case err != nil:
		case c.Equal(ca):
			has = true
		default:
			other = true
		}
	}
}

// Scenario (review §3): the self-managed webhook CA (validity 30 days here)
// is renewed when a third of its life is left (day 20), while the API
// server calls the webhook. The issuer's Ensure runs every hour, twice in a
// row (as at a restart), and a serve replica's reader copies the Secret
// every hour (every minute for 3 hours from day 21); from day 19.9 to
// day 21 every caBundle patch fails.
// Expectation: at no moment is a serving certificate served, or written to
// the Secret the serve replicas copy, that the caBundle the API server
// holds at that moment does not verify: the new CA goes into every
// caBundle next to the old one first, a certificate it signed is served
// only on a later check, at least DefaultCATrustDelay after the caBundles
// were seen carrying it, and the old CA leaves the caBundles only
// DefaultOldCAGrace after the last certificate it signed stopped being
// issued.
func TestCARotationTrustsTheNewCABeforeServingIt(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start
	names := []string{"zerodrop-webhook.zerodrop-system.svc"}
	secret := types.NamespacedName{Namespace: "zerodrop-system", Name: "zerodrop-webhook-certs"}
	base := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(
		&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "zerodrop-controller"},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "pods.zerodrop.dev"}}},
		&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "zerodrop-controller"},
			Webhooks: []admissionregistrationv1.ValidatingWebhook{{Name: "targetbindings.zerodrop.dev"}}},
	).Build()
	issuerDir, readerDir := t.TempDir(), t.TempDir()

	var problems []string
	// trusted checks a serving certificate against every caBundle as it is
	// now. Before the first caBundle patch nothing is trusted and nothing
	// can be broken: the webhook does not work yet.
	trusted := func(what string, certPEM []byte) {
		t.Helper()
		if len(certPEM) == 0 {
			return
		}
		leaf := firstCert(t, certPEM)
		for name, bundle := range caBundles(t, base) {
			if len(bundle) == 0 {
				continue
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(bundle)
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: names[0], CurrentTime: now}); err != nil && len(problems) < 10 {
				problems = append(problems, fmt.Sprintf("day %.2f: %s: the %s caBundle does not verify it: %v",
					now.Sub(start).Hours()/24, what, name, err))
			}
		}
	}
	served := func(dir string) []byte {
		t.Helper()
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
		if err != nil {
			return nil // not written yet
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pair.Certificate[0]})
	}
	secretLeaf := func() []byte {
		var s corev1.Secret
		if err := base.Get(context.Background(), secret, &s); err != nil {
			return nil
		}
		return s.Data["tls.crt"]
	}
	var failPatches bool
	c := interceptor.NewClient(base, interceptor.Funcs{
		Create: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if s, ok := obj.(*corev1.Secret); ok {
				trusted("Secret created", s.Data["tls.crt"])
			}
			return cl.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if s, ok := obj.(*corev1.Secret); ok {
				trusted("Secret written", s.Data["tls.crt"])
			}
			return cl.Update(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, cl client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			// What is served and what serve replicas copy must verify
			// against the caBundles before this patch and after it.
			trusted("served before a caBundle patch", served(issuerDir))
			trusted("Secret before a caBundle patch", secretLeaf())
			if failPatches {
				return errors.New("the API server is unavailable")
			}
			if err := cl.Patch(ctx, obj, patch, opts...); err != nil {
				return err
			}
			trusted("served after a caBundle patch", served(issuerDir))
			trusted("Secret after a caBundle patch", secretLeaf())
			return nil
		},
	})
	clock := func() time.Time { return now }
	issuer := &CertRotator{Client: c, Secret: secret, WebhookConfiguration: "zerodrop-controller", CertDir: issuerDir,
		DNSNames: names, Now: clock, CAValidity: 30 * 24 * time.Hour, CertValidity: 3 * 24 * time.Hour}
	reader := &CertRotator{Client: c, Secret: secret, WebhookConfiguration: "zerodrop-controller", CertDir: readerDir,
		DNSNames: names, Now: clock, ReadOnly: true}
	ctx := context.Background()

	if err := issuer.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	firstCA := firstCert(t, func() []byte {
		var s corev1.Secret
		if err := base.Get(ctx, secret, &s); err != nil {
			t.Fatal(err)
		}
		return s.Data["ca.crt"]
	}())
	var newCAEverywhere, newLeafServed, oldCADropped, lastOldLeafIssued time.Time
	for now.Before(start.Add(35 * 24 * time.Hour)) {
		// Hourly, and every minute for the 3 hours after the patches
		// work again, where the renewal's steps are timed.
		step := time.Hour
		if since := now.Sub(start.Add(21 * 24 * time.Hour)); since >= 0 && since < 3*time.Hour {
			step = time.Minute
		}
		now = now.Add(step)
		// The API server refuses the patches around the renewal's start.
		failPatches = !now.Before(start.Add(19*24*time.Hour+21*time.Hour+36*time.Minute)) && now.Before(start.Add(21*24*time.Hour))
		for range 2 {
			if err := issuer.Ensure(ctx); err != nil && !failPatches {
				t.Fatalf("day %.2f: issuer: %v", now.Sub(start).Hours()/24, err)
			}
		}
		if err := reader.Ensure(ctx); err != nil {
			t.Fatalf("day %.2f: reader: %v", now.Sub(start).Hours()/24, err)
		}
		trusted("served by the issuer", served(issuerDir))
		trusted("served by a serve replica", served(readerDir))

		leaf := firstCert(t, secretLeaf())
		if leaf.CheckSignatureFrom(firstCA) == nil {
			lastOldLeafIssued = now
		} else if newLeafServed.IsZero() {
			newLeafServed = now
		}
		carriesNew, carriesOld := true, true
		for _, bundle := range caBundles(t, base) {
			old, other := bundleHolds(bundle, firstCA)
			carriesOld, carriesNew = carriesOld && old, carriesNew && other
		}
		if carriesNew && carriesOld && newCAEverywhere.IsZero() {
			newCAEverywhere = now
		}
		if !carriesOld && oldCADropped.IsZero() {
			oldCADropped = now
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
	day := func(at time.Time) string {
		if at.IsZero() {
			return "never"
		}
		return fmt.Sprintf("day %.2f", at.Sub(start).Hours()/24)
	}
	if newCAEverywhere.IsZero() || newLeafServed.IsZero() {
		t.Fatalf("CA not rotated within 35 days of a 30-day CA: new CA in every caBundle at %s, certificate from it at %s",
			day(newCAEverywhere), day(newLeafServed))
	}
	t.Logf("new CA in every caBundle %s, first certificate it signed %s, last one of the old CA %s, old CA dropped %s",
		day(newCAEverywhere), day(newLeafServed), day(lastOldLeafIssued), day(oldCADropped))
	if newLeafServed.Sub(newCAEverywhere) < DefaultCATrustDelay {
		t.Errorf("a certificate of the new CA was issued %s after every caBundle carried the CA, want at least %s",
			newLeafServed.Sub(newCAEverywhere), DefaultCATrustDelay)
	}
	if oldCADropped.IsZero() || oldCADropped.Sub(lastOldLeafIssued) < DefaultOldCAGrace {
		t.Errorf("old CA dropped at %s, the last certificate it signed was in the Secret at %s: want it kept %s longer",
			day(oldCADropped), day(lastOldLeafIssued), DefaultOldCAGrace)
	}
}
