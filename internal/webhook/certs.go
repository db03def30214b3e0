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

// CertRotator keeps the webhook's serving certificate valid without
// cert-manager: a CA and a serving certificate live in one Secret (shared by
// every replica, so they agree), are written to the webhook server's
// certificate directory (controller-runtime reloads changed files), and the
// CA is patched into the caBundle of the MutatingWebhookConfiguration and
// of the ValidatingWebhookConfiguration of the same name. The
// serving certificate is renewed when a third of its validity is left; the
// CA likewise, with old and new CA both in the caBundle until the old one
// expires.
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
}

func (c *CertRotator) ensureSecret(ctx context.Context) (certBundle, error) {
	var s corev1.Secret
	err := c.Client.Get(ctx, c.Secret, &s)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return certBundle{}, fmt.Errorf("get secret %s: %w", c.Secret, err)
	}
	b := certBundle{caCert: s.Data["ca.crt"], caKey: s.Data["ca.key"], cert: s.Data["tls.crt"], key: s.Data["tls.key"], caBundle: s.Data["ca-bundle.crt"]}
	now := c.now()
	certValidity, caValidity := c.CertValidity, c.CAValidity
	if certValidity <= 0 {
		certValidity = 90 * 24 * time.Hour
	}
	if caValidity <= 0 {
		caValidity = 10 * 365 * 24 * time.Hour
	}
	changed := false
	ca, caKey, caErr := parsePair(b.caCert, b.caKey)
	if caErr != nil || now.After(ca.NotAfter.Add(-caValidity/3)) {
		oldCA := b.caCert
		if b.caCert, b.caKey, err = newCA(now, caValidity, "zerodrop-webhook-ca"); err != nil {
			return certBundle{}, err
		}
		ca, caKey, _ = parsePair(b.caCert, b.caKey)
		b.caBundle = append(append([]byte{}, b.caCert...), stillValid(oldCA, now)...)
		b.cert = nil
		changed = true
	}
	if len(b.caBundle) == 0 {
		b.caBundle, changed = b.caCert, true
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
