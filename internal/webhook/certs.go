package webhook

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// +kubebuilder:rbac:groups="",namespace=zerodrop-system,resources=secrets,verbs=create
// +kubebuilder:rbac:groups="",namespace=zerodrop-system,resources=secrets,verbs=get;update,resourceNames=zerodrop-webhook-certs
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;patch,resourceNames=zerodrop-controller
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=get;patch,resourceNames=zerodrop-controller

// Defaults of the CA renewal.
const (
	// DefaultCATrustDelay is how long every webhook configuration's
	// caBundle must have been seen carrying a new CA before a certificate
	// that CA signed is issued: each API server sees a changed webhook
	// configuration through its informer, within moments.
	DefaultCATrustDelay = 10 * time.Minute
	// DefaultOldCAGrace is how long the previous CA stays in the caBundles
	// once its successor signs: serve replicas re-read the Secret every
	// minute, and one that cannot read it meanwhile still serves a
	// certificate of the previous CA.
	DefaultOldCAGrace = 24 * time.Hour
)

// Keys of the CA renewal in the Secret, besides ca.crt, ca.key, tls.crt,
// tls.key and ca-bundle.crt.
const (
	secretNextCACert    = "next-ca.crt"
	secretNextCAKey     = "next-ca.key"
	secretNextCATrusted = "next-ca-trusted-at"
	secretOldCADropAt   = "previous-ca-drop-at"
)

// CertRotator keeps the webhook's serving certificate valid without
// cert-manager: a CA and a serving certificate live in one Secret (shared by
// every replica, so they agree), are written to the webhook server's
// certificate directory (controller-runtime reloads changed files), and the
// CA is patched into the caBundle of the MutatingWebhookConfiguration and
// of the ValidatingWebhookConfiguration of the same name. The
// serving certificate is renewed when a third of its validity is left. The
// CA likewise, in three steps, so that the API server never meets a
// certificate its caBundle does not trust: a new CA joins the caBundles
// next to the current one (which keeps signing); once every caBundle has
// been seen carrying it for CATrustDelay, it signs a new serving
// certificate; OldCAGrace later the previous CA leaves the caBundles.
type CertRotator struct {
	// Client reads and writes the Secret and the webhook configuration
	// directly (not through a cache).
	Client client.Client
	// Secret holds ca.crt, ca.key, tls.crt, tls.key.
	Secret types.NamespacedName
	// WebhookConfiguration names the MutatingWebhookConfiguration (and the
	// ValidatingWebhookConfiguration, when there is one) to patch.
	WebhookConfiguration string
	// CertDir is the webhook server's certificate directory; empty writes no
	// files (a process that issues certificates but serves no webhook, such
	// as zerodrop-controller --role=reconcile).
	CertDir string
	// DNSNames are the serving certificate's names, e.g.
	// zerodrop-webhook.zerodrop-system.svc.
	DNSNames []string
	// CertValidity defaults to 90 days, CAValidity to 10 years.
	CertValidity, CAValidity time.Duration
	// CATrustDelay and OldCAGrace time a CA renewal; they default to
	// DefaultCATrustDelay and DefaultOldCAGrace.
	CATrustDelay, OldCAGrace time.Duration
	// CheckInterval defaults to one hour.
	CheckInterval time.Duration
	// Log is the structured logger.
	Log *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Observe, when set, is told the serving certificate's NotAfter each
	// time Ensure succeeds (zerodrop_webhook_certificate_expiry_timestamp_seconds).
	Observe func(notAfter time.Time)
	// ReadOnly makes the rotator a reader (zerodrop-controller
	// --role=serve): it copies the Secret's serving certificate to CertDir
	// and never creates or renews the Secret nor patches the caBundle, so a
	// serve replica needs only get on the one Secret. Ensure fails while the
	// Secret lacks a valid certificate for DNSNames (the reconcile role has
	// not issued it yet); callers retry.
	ReadOnly bool
}

func (c *CertRotator) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Start runs Ensure at once and then every CheckInterval until ctx ends (manager.Runnable;
// every replica runs it, leader or not, since every replica serves).
func (c *CertRotator) Start(ctx context.Context) error {
	every := c.CheckInterval
	if every <= 0 {
		every = time.Hour
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for first := true; ; first = false {
		// The first check runs at once: the certificate's expiry is
		// exported from the start, and a Secret that changed since the
		// process's first Ensure is picked up.
		if !first {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
		if err := c.Ensure(ctx); err != nil && c.Log != nil {
			c.Log.Error("webhook certificate rotation", "err", err)
		}
	}
}

// NeedLeaderElection tells the manager to run the rotator on every replica.
func (c *CertRotator) NeedLeaderElection() bool { return false }

// Ensure makes the Secret, the files and the caBundle valid and consistent.
//
// Several processes may Ensure at once (every replica runs a rotator): the
// Secret is written with the resourceVersion that was read, so of two
// concurrent renewals one update wins and the other gets a conflict (or an
// already-exists on creation), re-reads and uses the winner's certificate.
func (c *CertRotator) Ensure(ctx context.Context) error {
	if c.ReadOnly {
		bundle, err := c.readSecret(ctx)
		if err != nil {
			return err
		}
		if err := c.writeFiles(bundle); err != nil {
			return err
		}
		c.observe(bundle)
		return nil
	}
	for attempt := 0; attempt < 5; attempt++ {
		bundle, err := c.ensureSecret(ctx)
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			continue // another replica rotated at the same time: use its result
		}
		if err != nil {
			return err
		}
		if err := c.writeFiles(bundle); err != nil {
			return err
		}
		if err := c.patchCABundles(ctx, bundle.caBundle); err != nil {
			return err
		}
		c.observe(bundle)
		return nil
	}
	return fmt.Errorf("secret %s: conflicting updates, giving up for now", c.Secret)
}

// observe tells Observe the bundle's serving certificate's NotAfter.
func (c *CertRotator) observe(b certBundle) {
	if c.Observe == nil {
		return
	}
	if leaf, _, err := parsePair(b.cert, b.key); err == nil {
		c.Observe(leaf.NotAfter)
	}
}

type certBundle struct {
	caCert, caKey, cert, key, caBundle []byte
	// nextCACert and nextCAKey are a CA in the caBundle that signs
	// nothing yet; nextTrusted is when every caBundle was first seen
	// carrying it (zero: not yet).
	nextCACert, nextCAKey []byte
	nextTrusted           time.Time
	// dropOldCA is when the caBundle loses every CA but the current
	// (and the next); zero: nothing to drop.
	dropOldCA time.Time
}

func (c *CertRotator) ensureSecret(ctx context.Context) (certBundle, error) {
	var s corev1.Secret
	err := c.Client.Get(ctx, c.Secret, &s)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return certBundle{}, fmt.Errorf("get secret %s: %w", c.Secret, err)
	}
	b := certBundle{caCert: s.Data["ca.crt"], caKey: s.Data["ca.key"], cert: s.Data["tls.crt"], key: s.Data["tls.key"], caBundle: s.Data["ca-bundle.crt"],
		nextCACert: s.Data[secretNextCACert], nextCAKey: s.Data[secretNextCAKey],
		nextTrusted: parseTime(s.Data[secretNextCATrusted]), dropOldCA: parseTime(s.Data[secretOldCADropAt])}
	now := c.now()
	certValidity, caValidity := c.CertValidity, c.CAValidity
	if certValidity <= 0 {
		certValidity = 90 * 24 * time.Hour
	}
	if caValidity <= 0 {
		caValidity = 10 * 365 * 24 * time.Hour
	}
	trustDelay, oldGrace := c.CATrustDelay, c.OldCAGrace
	if trustDelay <= 0 {
		trustDelay = DefaultCATrustDelay
	}
	if oldGrace <= 0 {
		oldGrace = DefaultOldCAGrace
	}
	changed := false
	ca, caKey, caErr := parsePair(b.caCert, b.caKey)
	next, nextKey, nextErr := parsePair(b.nextCACert, b.nextCAKey)
	if len(b.nextCACert) > 0 && nextErr != nil {
		b.nextCACert, b.nextCAKey, b.nextTrusted, changed = nil, nil, time.Time{}, true
	}
	switch {
	case caErr != nil || !now.Before(ca.NotAfter):
		// No CA that signs (a new install, or the CA lost or expired):
		// nothing served now can stay valid, so a new CA signs at once.
		oldCA := b.caCert
		if b.caCert, b.caKey, err = newCA(now, caValidity, "zerodrop-webhook-ca"); err != nil {
			return certBundle{}, err
		}
		ca, caKey, _ = parsePair(b.caCert, b.caKey)
		b.caBundle = joinPEM(b.caCert, stillValid(oldCA, now))
		b.cert = nil
		b.nextCACert, b.nextCAKey, b.nextTrusted, b.dropOldCA = nil, nil, time.Time{}, time.Time{}
		changed = true
	case len(b.nextCACert) == 0 && now.After(ca.NotAfter.Add(-caValidity/3)):
		// Renewal, step 1: the next CA joins the caBundles (patched at
		// the end of this Ensure); the current CA keeps signing.
		if b.nextCACert, b.nextCAKey, err = newCA(now, caValidity, "zerodrop-webhook-ca"); err != nil {
			return certBundle{}, err
		}
		b.nextTrusted = time.Time{}
		b.caBundle = joinPEM(validCerts(b.caBundle, now), b.nextCACert)
		changed = true
	case len(b.nextCACert) > 0:
		// Step 2: the next CA signs once every caBundle has been seen
		// carrying it for trustDelay (read back, not assumed: a patch may
		// have failed, or another replica patched an older bundle).
		carried, err := c.caBundlesCarry(ctx, next)
		if err != nil {
			return certBundle{}, err
		}
		switch {
		case !carried:
			if !b.nextTrusted.IsZero() {
				b.nextTrusted, changed = time.Time{}, true
			}
		case b.nextTrusted.IsZero():
			b.nextTrusted, changed = now, true
		case !now.Before(b.nextTrusted.Add(trustDelay)):
			b.caCert, b.caKey, ca, caKey = b.nextCACert, b.nextCAKey, next, nextKey
			b.nextCACert, b.nextCAKey, b.nextTrusted = nil, nil, time.Time{}
			b.cert = nil
			b.dropOldCA = now.Add(oldGrace)
			changed = true
			if c.Log != nil {
				c.Log.Info("webhook CA renewed: the new CA signs from now on", "secret", c.Secret.String(), "previousCADroppedAt", b.dropOldCA)
			}
		}
	}
	if !b.dropOldCA.IsZero() && !now.Before(b.dropOldCA) {
		// Step 3: no replica serves a certificate of the previous CA any
		// more.
		b.caBundle = joinPEM(b.caCert, b.nextCACert)
		b.dropOldCA, changed = time.Time{}, true
	}
	if !pemHolds(b.caBundle, ca) {
		b.caBundle, changed = joinPEM(b.caCert, b.caBundle), true
	}
	leaf, _, leafErr := parsePair(b.cert, b.key)
	if leafErr != nil || now.After(leaf.NotAfter.Add(-certValidity/3)) || !coversNames(leaf, c.DNSNames) ||
		leaf.CheckSignatureFrom(ca) != nil {
		if b.cert, b.key, err = newServingCert(now, certValidity, ca, caKey, c.DNSNames); err != nil {
			return certBundle{}, err
		}
		changed = true
	}
	if !changed {
		return b, nil
	}
	s.Namespace, s.Name = c.Secret.Namespace, c.Secret.Name
	s.Type = corev1.SecretTypeOpaque
	s.Data = map[string][]byte{"ca.crt": b.caCert, "ca.key": b.caKey, "tls.crt": b.cert, "tls.key": b.key, "ca-bundle.crt": b.caBundle}
	if len(b.nextCACert) > 0 {
		s.Data[secretNextCACert], s.Data[secretNextCAKey] = b.nextCACert, b.nextCAKey
	}
	if !b.nextTrusted.IsZero() {
		s.Data[secretNextCATrusted] = []byte(b.nextTrusted.UTC().Format(time.RFC3339))
	}
	if !b.dropOldCA.IsZero() {
		s.Data[secretOldCADropAt] = []byte(b.dropOldCA.UTC().Format(time.RFC3339))
	}
	if exists {
		err = c.Client.Update(ctx, &s)
	} else {
		err = c.Client.Create(ctx, &s)
	}
	if err != nil {
		return certBundle{}, err
	}
	if c.Log != nil {
		c.Log.Info("webhook certificate issued", "secret", c.Secret.String(), "dnsNames", c.DNSNames)
	}
	return b, nil
}

// readSecret returns the Secret's certificate if it is usable now: it
// parses, is not expired, covers DNSNames and is signed by the Secret's CA.
func (c *CertRotator) readSecret(ctx context.Context) (certBundle, error) {
	var s corev1.Secret
	if err := c.Client.Get(ctx, c.Secret, &s); err != nil {
		return certBundle{}, fmt.Errorf("read webhook certificate secret %s: %w", c.Secret, err)
	}
	b := certBundle{caCert: s.Data["ca.crt"], cert: s.Data["tls.crt"], key: s.Data["tls.key"]}
	leaf, _, err := parsePair(b.cert, b.key)
	if err != nil {
		return certBundle{}, fmt.Errorf("secret %s: tls.crt/tls.key: %v", c.Secret, err)
	}
	now := c.now()
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return certBundle{}, fmt.Errorf("secret %s: serving certificate valid %s to %s, not now", c.Secret, leaf.NotBefore, leaf.NotAfter)
	}
	if !coversNames(leaf, c.DNSNames) {
		return certBundle{}, fmt.Errorf("secret %s: serving certificate does not cover %v (the issuing controller's --webhook-service or --namespace differ?)", c.Secret, c.DNSNames)
	}
	return b, nil
}

func (c *CertRotator) writeFiles(b certBundle) error {
	if c.CertDir == "" {
		return nil
	}
	if err := os.MkdirAll(c.CertDir, 0o700); err != nil {
		return fmt.Errorf("create cert dir %s: %w", c.CertDir, err)
	}
	for name, data := range map[string][]byte{"tls.key": b.key, "tls.crt": b.cert} {
		path := filepath.Join(c.CertDir, name)
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
			continue
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", tmp, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("rename %s: %w", tmp, err)
		}
	}
	return nil
}

// caBundlesCarry reports whether every client config of the webhook
// configurations (as the API server has them now) trusts ca; true when the
// rotator patches none.
func (c *CertRotator) caBundlesCarry(ctx context.Context, ca *x509.Certificate) (bool, error) {
	if c.WebhookConfiguration == "" {
		return true, nil
	}
	key := types.NamespacedName{Name: c.WebhookConfiguration}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := c.Client.Get(ctx, key, &mwc); err != nil {
		return false, fmt.Errorf("get MutatingWebhookConfiguration %s: %w", c.WebhookConfiguration, err)
	}
	for _, w := range mwc.Webhooks {
		if !pemHolds(w.ClientConfig.CABundle, ca) {
			return false, nil
		}
	}
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := c.Client.Get(ctx, key, &vwc); err != nil {
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, fmt.Errorf("get ValidatingWebhookConfiguration %s: %w", c.WebhookConfiguration, err)
	}
	for _, w := range vwc.Webhooks {
		if !pemHolds(w.ClientConfig.CABundle, ca) {
			return false, nil
		}
	}
	return true, nil
}

// patchCABundles gives the MutatingWebhookConfiguration (the pod gate
// injector) and the ValidatingWebhookConfiguration of the same name (the
// TargetBinding validator, served with the same certificate) the caBundle;
// an install without the validating one is left alone.
func (c *CertRotator) patchCABundles(ctx context.Context, bundle []byte) error {
	if c.WebhookConfiguration == "" {
		return nil
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := c.patchCABundle(ctx, &mwc, bundle, false, func() []*admissionregistrationv1.WebhookClientConfig {
		out := make([]*admissionregistrationv1.WebhookClientConfig, len(mwc.Webhooks))
		for i := range mwc.Webhooks {
			out[i] = &mwc.Webhooks[i].ClientConfig
		}
		return out
	}); err != nil {
		return err
	}
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	return c.patchCABundle(ctx, &vwc, bundle, true, func() []*admissionregistrationv1.WebhookClientConfig {
		out := make([]*admissionregistrationv1.WebhookClientConfig, len(vwc.Webhooks))
		for i := range vwc.Webhooks {
			out[i] = &vwc.Webhooks[i].ClientConfig
		}
		return out
	})
}

// patchCABundle reads the webhook configuration obj named
// c.WebhookConfiguration and patches bundle into every client config that
// configs returns (read after the Get), skipping the patch when all match.
// A missing object is an error unless optional.
func (c *CertRotator) patchCABundle(ctx context.Context, obj client.Object, bundle []byte, optional bool, configs func() []*admissionregistrationv1.WebhookClientConfig) error {
	kind := fmt.Sprintf("%T", obj)
	kind = kind[strings.LastIndexByte(kind, '.')+1:]
	if err := c.Client.Get(ctx, types.NamespacedName{Name: c.WebhookConfiguration}, obj); err != nil {
		if optional && apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("get %s %s: %w", kind, c.WebhookConfiguration, err)
	}
	patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
	changed := false
	for _, cc := range configs() {
		if !bytes.Equal(cc.CABundle, bundle) {
			cc.CABundle = bundle
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if err := c.Client.Patch(ctx, obj, patch); err != nil {
		return fmt.Errorf("patch caBundle of %s %s: %w", kind, c.WebhookConfiguration, err)
	}
	return nil
}

func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		return nil, nil, errors.New("missing")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New("key is not ECDSA")
	}
	return cert, key, nil
}

// pemCerts parses every certificate of a PEM bundle, skipping what does
// not parse.
func pemCerts(bundle []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for rest := bundle; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			return out
		}
		if cert, err := x509.ParseCertificate(blk.Bytes); err == nil {
			out = append(out, cert)
		}
	}
}

// pemHolds reports whether the PEM bundle holds cert.
func pemHolds(bundle []byte, cert *x509.Certificate) bool {
	for _, c := range pemCerts(bundle) {
		if c.Equal(cert) {
			return true
		}
	}
	return false
}

// validCerts returns the bundle's certificates that have not expired.
func validCerts(bundle []byte, now time.Time) []byte {
	var out []byte
	for _, c := range pemCerts(bundle) {
		if !now.After(c.NotAfter) {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
	}
	return out
}

// joinPEM concatenates PEM bundles.
func joinPEM(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		if len(p) == 0 {
			continue
		}
		out = append(out, p...)
		if p[len(p)-1] != '\n' {
			out = append(out, '\n')
		}
	}
	return out
}

// parseTime reads a time the rotator wrote (RFC 3339); zero if absent or
// unreadable.
func parseTime(b []byte) time.Time {
	t, err := time.Parse(time.RFC3339, string(b))
	if err != nil {
		return time.Time{}
	}
	return t
}

func stillValid(certPEM []byte, now time.Time) []byte {
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		return nil
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || now.After(cert.NotAfter) {
		return nil
	}
	return certPEM
}

func coversNames(cert *x509.Certificate, names []string) bool {
	for _, n := range names {
		if cert.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

func newCA(now time.Time, validity time.Duration, name string) ([]byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	return sign(tmpl, tmpl, key, key)
}

func newServingCert(now time.Time, validity time.Duration, ca *x509.Certificate, caKey *ecdsa.PrivateKey, names []string) ([]byte, []byte, error) {
	return newLeafCert(now, validity, ca, caKey, names, x509.ExtKeyUsageServerAuth)
}

// newLeafCert issues a certificate for names (the first is the common
// name) with one extended key usage: server or client authentication.
func newLeafCert(now time.Time, validity time.Duration, ca *x509.Certificate, caKey *ecdsa.PrivateKey, names []string, usage x509.ExtKeyUsage) ([]byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	cn := "zerodrop-webhook"
	if len(names) > 0 {
		cn = names[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	// A name that is an IP address goes where clients look for it (a
	// webhook called by URL at an address).
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return sign(tmpl, ca, key, caKey)
}

// IssueServingCertificate returns a new CA and a serving certificate signed
// by it for names (DNS names or IP addresses), all PEM-encoded: for a webhook
// whose certificates something else installs (the lab, which calls the
// webhook at 127.0.0.1 with --webhook-cert-mode=external).
func IssueServingCertificate(now time.Time, validity time.Duration, names []string) (caPEM, certPEM, keyPEM []byte, err error) {
	caPEM, caKeyPEM, err := newCA(now, validity, "zerodrop-webhook-ca")
	if err != nil {
		return nil, nil, nil, err
	}
	ca, caKey, err := parsePair(caPEM, caKeyPEM)
	if err != nil {
		return nil, nil, nil, err
	}
	certPEM, keyPEM, err = newServingCert(now, validity, ca, caKey, names)
	return caPEM, certPEM, keyPEM, err
}

// MutualTLS is a CA and two certificates it signed, PEM-encoded: one that
// serves and one that authenticates a client. Secrets of type
// kubernetes.io/tls with a ca.crt hold the client's half (tls.crt = ClientCert,
// tls.key = ClientKey, ca.crt = CA).
type MutualTLS struct {
	CA                    []byte
	ServerCert, ServerKey []byte
	ClientCert, ClientKey []byte
}

// IssueMutualTLS returns a new CA, a serving certificate for serverNames (DNS
// names or IP addresses) and a client certificate named client: for
// HAProxy's Runtime API over mutual TLS in tests and the lab.
func IssueMutualTLS(now time.Time, validity time.Duration, serverNames []string, client string) (MutualTLS, error) {
	var m MutualTLS
	caPEM, caKeyPEM, err := newCA(now, validity, "zerodrop-runtime-api-ca")
	if err != nil {
		return m, err
	}
	ca, caKey, err := parsePair(caPEM, caKeyPEM)
	if err != nil {
		return m, err
	}
	m.CA = caPEM
	if m.ServerCert, m.ServerKey, err = newLeafCert(now, validity, ca, caKey, serverNames, x509.ExtKeyUsageServerAuth); err != nil {
		return m, err
	}
	m.ClientCert, m.ClientKey, err = newLeafCert(now, validity, ca, caKey, []string{client}, x509.ExtKeyUsageClientAuth)
	return m, err
}

func sign(tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) ([]byte, []byte, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// EnsureCerts runs the rotator once before the manager starts. A serve
// replica's reader retries while the Secret is missing or not yet valid:
// at install the reconcile role issues it moments later.
func EnsureCerts(ctx context.Context, rot *CertRotator, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		err := rot.Ensure(ctx)
		if err == nil || !rot.ReadOnly {
			return err
		}
		log.Info("waiting for the webhook certificate Secret", "secret", rot.Secret.String(), "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (is a --role=reconcile or --role=all controller running with the same --namespace and --webhook-service?)", err)
		case <-time.After(2 * time.Second):
		}
	}
}
